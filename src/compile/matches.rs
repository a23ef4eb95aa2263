//! HTTPRoute and GRPCRoute matches compiled to [`RequestMatch`]: path, header,
//! query parameter and method matches, and gRPC service/method matches turned
//! into path matches (`/package.Service/Method`).

use super::Problem;
use crate::dataplane::{HeaderMatch, PathMatch, QueryMatch, RequestMatch, ValueMatch};
use crate::model::route::{GrpcMethodMatch, GrpcRouteMatch, HttpHeaderMatch, HttpRouteMatch};
use crate::status::Reason;

fn unsupported(message: String) -> Problem {
    Problem::new(Reason::UnsupportedValue, message)
}

/// Compiles a regular expression that must match the whole input.
pub(crate) fn anchored(pattern: &str) -> Result<regex::Regex, Problem> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| unsupported(format!("invalid regular expression {pattern:?}: {e}")))
}

/// The match of a rule without matches: every request.
pub(crate) fn match_all() -> RequestMatch {
    RequestMatch {
        path: PathMatch::Prefix("/".to_string()),
        headers: Vec::new(),
        query: Vec::new(),
        method: None,
    }
}

/// Compiles one `HTTPRouteMatch`.
pub(crate) fn compile_http(m: &HttpRouteMatch) -> Result<RequestMatch, Problem> {
    let path = match &m.path {
        None => PathMatch::Prefix("/".to_string()),
        Some(p) => {
            let value = p.value.clone().unwrap_or_else(|| "/".to_string());
            match p.kind.as_deref().unwrap_or("PathPrefix") {
                "Exact" if value.starts_with('/') => PathMatch::Exact(value),
                "PathPrefix" if value.starts_with('/') => PathMatch::Prefix(value),
                "RegularExpression" => PathMatch::Regex(anchored(&value)?),
                other => {
                    return Err(unsupported(format!(
                        "path match {other} {value:?} is not supported"
                    )))
                }
            }
        }
    };
    let method = m
        .method
        .as_deref()
        .map(|s| {
            http::Method::from_bytes(s.as_bytes())
                .map_err(|_| unsupported(format!("invalid method {s}")))
        })
        .transpose()?;
    Ok(RequestMatch {
        path,
        headers: headers(&m.headers)?,
        query: m
            .query_params
            .iter()
            .map(|q| {
                Ok(QueryMatch {
                    name: q.name.clone(),
                    value: value_match(q)?,
                })
            })
            .collect::<Result<_, Problem>>()?,
        method,
    })
}

fn headers(list: &[HttpHeaderMatch]) -> Result<Vec<HeaderMatch>, Problem> {
    list.iter()
        .map(|h| {
            let name = http::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| unsupported(format!("invalid header name {:?}", h.name)))?;
            Ok(HeaderMatch {
                name,
                value: value_match(h)?,
            })
        })
        .collect()
}

fn value_match(h: &HttpHeaderMatch) -> Result<ValueMatch, Problem> {
    match h.kind.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(ValueMatch::Exact(h.value.clone())),
        "RegularExpression" => Ok(ValueMatch::Regex(anchored(&h.value)?)),
        other => Err(unsupported(format!("match type {other} is not supported"))),
    }
}

/// Compiles one `GRPCRouteMatch`.
pub(crate) fn compile_grpc(m: &GrpcRouteMatch) -> Result<RequestMatch, Problem> {
    let path = match &m.method {
        None => PathMatch::Prefix("/".to_string()),
        Some(method) => grpc_path(method)?,
    };
    Ok(RequestMatch {
        path,
        headers: headers(&m.headers)?,
        query: Vec::new(),
        method: None,
    })
}

/// gRPC calls are `POST /service/method`: exact service and method give an
/// exact path, a service alone a prefix, a method alone (or regular
/// expressions) a regex over the whole path.
fn grpc_path(m: &GrpcMethodMatch) -> Result<PathMatch, Problem> {
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    match m.kind.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(match (service, method) {
            (Some(s), Some(m)) => PathMatch::Exact(format!("/{s}/{m}")),
            (Some(s), None) => PathMatch::Prefix(format!("/{s}")),
            (None, Some(m)) => PathMatch::Regex(anchored(&format!("/[^/]+/{}", regex::escape(m)))?),
            (None, None) => PathMatch::Prefix("/".to_string()),
        }),
        "RegularExpression" => {
            // Validate each part on its own so errors name the culprit.
            let s = service.unwrap_or("[^/]+");
            let m = method.unwrap_or("[^/]+");
            anchored(s)?;
            anchored(m)?;
            Ok(PathMatch::Regex(anchored(&format!("/(?:{s})/(?:{m})"))?))
        }
        other => Err(unsupported(format!(
            "method match type {other} is not supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(kind: &str, service: Option<&str>, method: Option<&str>) -> PathMatch {
        grpc_path(&GrpcMethodMatch {
            kind: Some(kind.to_string()),
            service: service.map(str::to_string),
            method: method.map(str::to_string),
        })
        .expect("valid match")
    }

    #[test]
    fn grpc_service_and_method_is_an_exact_path() {
        assert!(
            matches!(grpc("Exact", Some("a.B"), Some("C")), PathMatch::Exact(p) if p == "/a.B/C")
        );
        assert!(matches!(grpc("Exact", Some("a.B"), None), PathMatch::Prefix(p) if p == "/a.B"));
    }

    #[test]
    fn grpc_method_only_matches_any_service() {
        let PathMatch::Regex(re) = grpc("Exact", None, Some("Get")) else {
            panic!("expected a regex");
        };
        assert!(re.is_match("/x.Y/Get"));
        assert!(!re.is_match("/x.Y/GetMore"));
    }

    #[test]
    fn grpc_regular_expressions_cover_service_and_method() {
        let PathMatch::Regex(re) = grpc("RegularExpression", Some("foo\\..*"), None) else {
            panic!("expected a regex");
        };
        assert!(re.is_match("/foo.Bar/Baz"));
        assert!(!re.is_match("/bar.Foo/Baz"));
    }

    #[test]
    fn regex_path_is_anchored() {
        let m = HttpRouteMatch {
            path: Some(crate::model::route::HttpPathMatch {
                kind: Some("RegularExpression".into()),
                value: Some("/v[0-9]+".into()),
            }),
            ..Default::default()
        };
        let PathMatch::Regex(re) = compile_http(&m).expect("valid").path else {
            panic!("expected a regex");
        };
        assert!(re.is_match("/v2"));
        assert!(!re.is_match("/v2/x"));
    }

    #[test]
    fn invalid_regex_is_unsupported_value() {
        let h = HttpHeaderMatch {
            kind: Some("RegularExpression".into()),
            name: "x".into(),
            value: "(".into(),
        };
        assert_eq!(
            value_match(&h).err().map(|p| p.reason),
            Some(Reason::UnsupportedValue)
        );
    }
}
