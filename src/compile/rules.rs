//! Route rules compiled to [`Rule`]s: matches, filters, weighted backends,
//! timeouts and retries. A route whose rules hold an unsupported value is
//! rejected whole (Accepted=False/UnsupportedValue); unresolved backends only
//! make ResolvedRefs False and answer 500 for their share of requests.

use super::backends::{self, RouteRef};
use super::filters::{self, Side};
use super::matches;
use super::{Ctx, Problem};
use crate::dataplane::{
    BackendTarget, Filter, PathMatch, PathRewrite, RequestMatch, RetryPolicy, RouteKind, Rule,
    RuleKey, Timeouts, WeightedBackend,
};
use crate::model::route::{HttpBackendRef, HttpRouteFilter, HttpRouteRetry, HttpRouteTimeouts};
use crate::model::{GrpcRoute, HttpRoute, ObjectMeta};
use crate::status::Reason;
use std::sync::Arc;
use std::time::Duration;

/// Backoff between retries when a retry policy names none.
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

/// One compiled rule and the matches that select it.
pub(crate) struct CompiledRule {
    /// The rule, shared by every entry that points at it.
    pub rule: Arc<Rule>,
    /// Its matches, in manifest order.
    pub matches: Vec<RequestMatch>,
}

/// A compiled route.
pub(crate) struct CompiledRoute {
    /// Rules in manifest order (empty when the route is invalid).
    pub rules: Vec<CompiledRule>,
    /// Why the route cannot be accepted, if so.
    pub invalid: Option<Problem>,
    /// The first reference that did not resolve.
    pub unresolved: Option<Problem>,
}

/// The parts of a rule both route kinds share.
struct RuleInput<'a> {
    index: usize,
    name: Option<&'a String>,
    matches: Vec<RequestMatch>,
    filters: &'a [HttpRouteFilter],
    backends: &'a [HttpBackendRef],
    timeouts: Option<&'a HttpRouteTimeouts>,
    retry: Option<&'a HttpRouteRetry>,
}

/// Compiles an HTTPRoute's rules.
pub(crate) fn compile_http(route: &HttpRoute, ctx: &mut Ctx<'_>) -> CompiledRoute {
    let default_rules = [crate::model::route::HttpRouteRule::default()];
    let rules = route.spec.rules.as_deref().unwrap_or(&default_rules);
    let mut inputs = Vec::new();
    for (index, r) in rules.iter().enumerate() {
        let matches = match r.matches.as_deref() {
            None | Some([]) => Ok(vec![matches::match_all()]),
            Some(list) => list.iter().map(matches::compile_http).collect(),
        };
        let matches = match matches {
            Ok(m) => m,
            Err(p) => return invalid(p),
        };
        inputs.push(RuleInput {
            index,
            name: r.name.as_ref(),
            matches,
            filters: &r.filters,
            backends: &r.backend_refs,
            timeouts: r.timeouts.as_ref(),
            retry: r.retry.as_ref(),
        });
    }
    compile_rules(ctx, &route.metadata, RouteKind::Http, inputs)
}

/// Compiles a GRPCRoute's rules.
pub(crate) fn compile_grpc(route: &GrpcRoute, ctx: &mut Ctx<'_>) -> CompiledRoute {
    let default_rules = [crate::model::route::GrpcRouteRule::default()];
    let rules = route.spec.rules.as_deref().unwrap_or(&default_rules);
    let mut inputs = Vec::new();
    for (index, r) in rules.iter().enumerate() {
        let matches = match r.matches.as_deref() {
            None | Some([]) => Ok(vec![matches::match_all()]),
            Some(list) => list.iter().map(matches::compile_grpc).collect(),
        };
        let matches = match matches {
            Ok(m) => m,
            Err(p) => return invalid(p),
        };
        inputs.push(RuleInput {
            index,
            name: r.name.as_ref(),
            matches,
            filters: &r.filters,
            backends: &r.backend_refs,
            timeouts: None,
            retry: None,
        });
    }
    compile_rules(ctx, &route.metadata, RouteKind::Grpc, inputs)
}

fn invalid(problem: Problem) -> CompiledRoute {
    CompiledRoute {
        rules: Vec::new(),
        invalid: Some(problem),
        unresolved: None,
    }
}

fn compile_rules(
    ctx: &mut Ctx<'_>,
    meta: &ObjectMeta,
    kind: RouteKind,
    inputs: Vec<RuleInput<'_>>,
) -> CompiledRoute {
    let kind_name = kind.name();
    let route = RouteRef {
        kind: kind_name,
        namespace: &meta.namespace,
    };
    let mut side = Side::default();
    let mut rules = Vec::new();
    for input in inputs {
        match compile_rule(ctx, meta, kind, route, input, &mut side) {
            Ok(rule) => rules.push(rule),
            Err(p) => return invalid(p),
        }
    }
    CompiledRoute {
        rules,
        invalid: None,
        unresolved: side.unresolved,
    }
}

fn compile_rule(
    ctx: &mut Ctx<'_>,
    meta: &ObjectMeta,
    kind: RouteKind,
    route: RouteRef<'_>,
    input: RuleInput<'_>,
    side: &mut Side,
) -> Result<CompiledRule, Problem> {
    let mut rule_side = Side::default();
    let filters = filters::compile(ctx, route, kind, input.filters, &mut rule_side)?;
    check_prefix_rewrites(&filters, &input.matches)?;
    let mut backends = Vec::new();
    for b in input.backends {
        let weight = u32::try_from(b.weight.unwrap_or(1)).map_err(|_| {
            Problem::new(
                Reason::UnsupportedValue,
                "backend weight must not be negative",
            )
        })?;
        let backend_filters = filters::compile(ctx, route, kind, &b.filters, &mut rule_side)?;
        check_prefix_rewrites(&backend_filters, &input.matches)?;
        let target = match backends::resolve(ctx, route, &b.backend) {
            Ok(t) => t,
            Err(p) => {
                rule_side.unresolved.get_or_insert(p);
                BackendTarget::Invalid
            }
        };
        backends.push(WeightedBackend {
            weight,
            target,
            filters: backend_filters,
        });
    }
    if rule_side.has_extension {
        // An unresolvable custom filter must not be skipped: answer 500.
        backends = vec![WeightedBackend {
            weight: 1,
            target: BackendTarget::Invalid,
            filters: Vec::new(),
        }];
    }
    if let Some(p) = rule_side.unresolved {
        side.unresolved.get_or_insert(p);
    }
    let total_weight = backends
        .iter()
        .map(|b| b.weight)
        .fold(0u32, u32::saturating_add);
    let rule = Rule {
        key: RuleKey {
            kind,
            route: meta.key(),
            index: input.index,
            name: input.name.cloned(),
        },
        filters,
        backends,
        total_weight,
        timeouts: timeouts(input.timeouts)?,
        retry: input.retry.map(retry).transpose()?,
    };
    Ok(CompiledRule {
        rule: Arc::new(rule),
        matches: input.matches,
    })
}

/// `ReplacePrefixMatch` only makes sense after a `PathPrefix` match.
fn check_prefix_rewrites(filters: &[Filter], matches: &[RequestMatch]) -> Result<(), Problem> {
    let uses_prefix = filters.iter().any(|f| match f {
        Filter::Redirect(r) => matches!(r.path, Some(PathRewrite::Prefix(_))),
        Filter::Rewrite(r) => matches!(r.path, Some(PathRewrite::Prefix(_))),
        _ => false,
    });
    if uses_prefix
        && matches
            .iter()
            .any(|m| !matches!(m.path, PathMatch::Prefix(_)))
    {
        return Err(Problem::new(
            Reason::UnsupportedValue,
            "ReplacePrefixMatch requires PathPrefix matches",
        ));
    }
    Ok(())
}

fn timeouts(t: Option<&HttpRouteTimeouts>) -> Result<Timeouts, Problem> {
    let Some(t) = t else {
        return Ok(Timeouts::default());
    };
    Ok(Timeouts {
        request: t
            .request
            .as_deref()
            .map(parse_timeout)
            .transpose()?
            .flatten(),
        backend_request: t
            .backend_request
            .as_deref()
            .map(parse_timeout)
            .transpose()?
            .flatten(),
    })
}

/// A timeout: `0s` disables it.
fn parse_timeout(s: &str) -> Result<Option<Duration>, Problem> {
    parse_duration(s).map(|d| (!d.is_zero()).then_some(d))
}

fn retry(r: &HttpRouteRetry) -> Result<RetryPolicy, Problem> {
    let codes = r
        .codes
        .iter()
        .map(|&c| {
            u16::try_from(c)
                .ok()
                .filter(|c| (400..=599).contains(c))
                .ok_or_else(|| {
                    Problem::new(Reason::UnsupportedValue, format!("invalid retry code {c}"))
                })
        })
        .collect::<Result<_, _>>()?;
    let attempts = u32::try_from(r.attempts.unwrap_or(1)).map_err(|_| {
        Problem::new(
            Reason::UnsupportedValue,
            "retry attempts must not be negative",
        )
    })?;
    let backoff = match r.backoff.as_deref() {
        Some(b) => parse_duration(b)?,
        None => DEFAULT_BACKOFF,
    };
    Ok(RetryPolicy {
        codes,
        attempts,
        backoff,
    })
}

/// Parses a Gateway API duration (`1h`, `30m`, `10s`, `500ms`, `1h30m`):
/// one to four number-unit pairs, units h, m, s, ms.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, Problem> {
    let bad = || Problem::new(Reason::UnsupportedValue, format!("invalid duration {s:?}"));
    let mut rest = s;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total += unit * u32::try_from(n).map_err(|_| bad())?;
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_gateway_api_grammar() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("1h30m").ok(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("1m1s1ms").ok(),
            Some(Duration::from_millis(61_001))
        );
        for bad in ["", "10", "1d", "s", "1.5s", "123456s", "1h1m1s1ms1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_timeout_means_none() {
        assert_eq!(parse_timeout("0s").ok(), Some(None));
        assert_eq!(parse_timeout("2s").ok(), Some(Some(Duration::from_secs(2))));
    }
}
