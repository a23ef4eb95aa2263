//! HTTPRoute / GRPCRoute filters compiled to [`Filter`]s: header modifiers,
//! redirects, rewrites, mirrors and CORS. Invalid values reject the route
//! (Accepted=False/UnsupportedValue); an `ExtensionRef` cannot be resolved, so
//! the rule answers 500 and ResolvedRefs is False/InvalidKind, as the
//! specification requires for unresolvable custom filters.

use super::backends::{self, RouteRef};
use super::{Ctx, Problem};
use crate::dataplane::{
    CorsPolicy, Filter, HeaderEdit, Mirror, PathRewrite, Redirect, Rewrite, RouteKind,
};
use crate::model::route::{HeaderModifier, HttpRouteFilter, PathModifier, RequestMirror};
use crate::status::Reason;
use std::sync::Arc;

fn unsupported(message: impl Into<String>) -> Problem {
    Problem::new(Reason::UnsupportedValue, message)
}

/// What compiling a filter list yielded besides the filters.
#[derive(Debug, Default)]
pub(crate) struct Side {
    /// The first reference that did not resolve (mirror backends, ExtensionRef).
    pub unresolved: Option<Problem>,
    /// An ExtensionRef was present: the rule must answer 500.
    pub has_extension: bool,
}

impl Side {
    fn note(&mut self, p: Problem) {
        self.unresolved.get_or_insert(p);
    }
}

/// Compiles a filter list of a rule or backendRef.
pub(crate) fn compile(
    ctx: &mut Ctx<'_>,
    route: RouteRef<'_>,
    kind: RouteKind,
    list: &[HttpRouteFilter],
    side: &mut Side,
) -> Result<Vec<Filter>, Problem> {
    let mut out = Vec::new();
    for f in list {
        let grpc_allowed = matches!(
            f.kind.as_str(),
            "RequestHeaderModifier" | "ResponseHeaderModifier" | "RequestMirror" | "ExtensionRef"
        );
        if kind == RouteKind::Grpc && !grpc_allowed {
            return Err(unsupported(format!(
                "filter {} is not valid on a GRPCRoute",
                f.kind
            )));
        }
        let missing = || unsupported(format!("filter {} lacks its configuration", f.kind));
        match f.kind.as_str() {
            "RequestHeaderModifier" => {
                let m = f.request_header_modifier.as_ref().ok_or_else(missing)?;
                out.push(Filter::RequestHeaders(header_edit(m)?));
            }
            "ResponseHeaderModifier" => {
                let m = f.response_header_modifier.as_ref().ok_or_else(missing)?;
                out.push(Filter::ResponseHeaders(header_edit(m)?));
            }
            "RequestRedirect" => {
                let r = f.request_redirect.as_ref().ok_or_else(missing)?;
                out.push(Filter::Redirect(redirect(r)?));
            }
            "URLRewrite" => {
                let r = f.url_rewrite.as_ref().ok_or_else(missing)?;
                out.push(Filter::Rewrite(Rewrite {
                    hostname: r.hostname.clone(),
                    path: r.path.as_ref().map(path_rewrite).transpose()?,
                }));
            }
            "RequestMirror" => {
                let m = f.request_mirror.as_ref().ok_or_else(missing)?;
                if let Some(mirror) = mirror(ctx, route, m, side)? {
                    out.push(Filter::Mirror(mirror));
                }
            }
            "CORS" => {
                let c = f.cors.as_ref().ok_or_else(missing)?;
                out.push(Filter::Cors(Arc::new(CorsPolicy {
                    allow_origins: c.allow_origins.clone(),
                    allow_credentials: c.allow_credentials.unwrap_or(false),
                    allow_methods: c.allow_methods.clone(),
                    allow_headers: c.allow_headers.clone(),
                    expose_headers: c.expose_headers.clone(),
                    max_age: u32::try_from(c.max_age.unwrap_or(5))
                        .map_err(|_| unsupported("CORS maxAge must not be negative"))?,
                })));
            }
            "ExtensionRef" => {
                side.has_extension = true;
                side.note(Problem::new(
                    Reason::InvalidKind,
                    "ExtensionRef filters are not supported",
                ));
            }
            other => return Err(unsupported(format!("filter type {other} is not supported"))),
        }
    }
    Ok(out)
}

fn header_name(name: &str) -> Result<http::HeaderName, Problem> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| unsupported(format!("invalid header name {name:?}")))
}

fn header_edit(m: &HeaderModifier) -> Result<HeaderEdit, Problem> {
    let pairs = |list: &[crate::model::route::HttpHeader]| {
        list.iter()
            .map(|h| {
                let value = http::HeaderValue::from_str(&h.value)
                    .map_err(|_| unsupported(format!("invalid value for header {}", h.name)))?;
                Ok((header_name(&h.name)?, value))
            })
            .collect::<Result<Vec<_>, Problem>>()
    };
    Ok(HeaderEdit {
        set: pairs(&m.set)?,
        add: pairs(&m.add)?,
        remove: m
            .remove
            .iter()
            .map(|n| header_name(n))
            .collect::<Result<_, _>>()?,
    })
}

/// `RequestRedirect`; the status code defaults to 302 (Gateway API v1).
fn redirect(r: &crate::model::route::RequestRedirect) -> Result<Redirect, Problem> {
    let status = r.status_code.unwrap_or(302);
    if ![301, 302, 303, 307, 308].contains(&status) {
        return Err(unsupported(format!(
            "redirect status {status} is not supported"
        )));
    }
    if let Some(s) = r.scheme.as_deref() {
        if s != "http" && s != "https" {
            return Err(unsupported(format!("redirect scheme {s} is not supported")));
        }
    }
    let port = r
        .port
        .map(|p| {
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| unsupported(format!("invalid port {p}")))
        })
        .transpose()?;
    Ok(Redirect {
        scheme: r.scheme.clone(),
        hostname: r.hostname.clone(),
        port,
        path: r.path.as_ref().map(path_rewrite).transpose()?,
        status: status as u16,
    })
}

fn path_rewrite(p: &PathModifier) -> Result<PathRewrite, Problem> {
    match p.kind.as_str() {
        "ReplaceFullPath" => Ok(PathRewrite::Full(
            p.replace_full_path
                .clone()
                .unwrap_or_else(|| "/".to_string()),
        )),
        "ReplacePrefixMatch" => Ok(PathRewrite::Prefix(
            p.replace_prefix_match
                .clone()
                .unwrap_or_else(|| "/".to_string()),
        )),
        other => Err(unsupported(format!(
            "path modifier {other} is not supported"
        ))),
    }
}

/// `RequestMirror`: `percent` or `fraction` (denominator default 100); absent
/// means every request. An unresolvable mirror backend drops the mirror.
fn mirror(
    ctx: &mut Ctx<'_>,
    route: RouteRef<'_>,
    m: &RequestMirror,
    side: &mut Side,
) -> Result<Option<Mirror>, Problem> {
    let (numerator, denominator) = match (&m.fraction, m.percent) {
        (Some(f), _) => (f.numerator, f.denominator.unwrap_or(100)),
        (None, Some(p)) => (p, 100),
        (None, None) => (100, 100),
    };
    if denominator <= 0 || numerator < 0 || numerator > denominator {
        return Err(unsupported(format!(
            "invalid mirror fraction {numerator}/{denominator}"
        )));
    }
    let (numerator, denominator) = (
        u32::try_from(numerator).map_err(|_| unsupported("mirror fraction out of range"))?,
        u32::try_from(denominator).map_err(|_| unsupported("mirror fraction out of range"))?,
    );
    match backends::resolve(ctx, route, &m.backend_ref) {
        Ok(target) => Ok(Some(Mirror {
            target,
            numerator,
            denominator,
        })),
        Err(p) => {
            side.note(p);
            Ok(None)
        }
    }
}
