//! Hostname rules of the Gateway API: wildcard matching, listener/route
//! intersection and the normalisation of request hosts.
//!
//! A wildcard `*.example.com` matches one or more labels in front of
//! `example.com` (`a.example.com`, `a.b.example.com`) but not `example.com`
//! itself (Gateway API, `Hostname` type).

use std::borrow::Cow;

/// Whether `host` (a concrete name) matches `pattern` (exact or `*.` wildcard).
/// Both are compared case-insensitively; callers pass normalised hosts.
pub fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            host.len() > suffix.len()
                && host.ends_with(suffix)
                && !host[..host.len() - suffix.len()].is_empty()
        }
        None => pattern == host,
    }
}

/// The suffixes of `host` a wildcard pattern can stand for, longest first:
/// for `a.b.example.com`, `.b.example.com`, `.example.com`, `.com` (a
/// wildcard `*.x` is stored as `.x` and needs at least one character before
/// it, so `host` itself is never yielded).
pub fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.')
        .filter(|(dot, _)| *dot > 0)
        .map(move |(dot, _)| &host[dot..])
}

/// Whether `pattern` is a wildcard hostname.
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.starts_with("*.")
}

/// The hostnames a route may serve on a listener: the intersection of the
/// listener hostname (none = any) and the route hostname, as the more specific
/// of the two, or `None` when they do not intersect.
pub fn intersect(listener: Option<&str>, route: &str) -> Option<String> {
    let Some(listener) = listener else {
        return Some(route.to_string());
    };
    if listener == route {
        return Some(route.to_string());
    }
    match (is_wildcard(listener), is_wildcard(route)) {
        (false, false) => None,
        (true, false) => matches(listener, route).then(|| route.to_string()),
        (false, true) => matches(route, listener).then(|| listener.to_string()),
        (true, true) => {
            // The narrower wildcard wins when it lies within the wider one.
            let (l, r) = (&listener[1..], &route[1..]);
            if r.len() > l.len() && r.ends_with(l) {
                Some(route.to_string())
            } else if l.len() > r.len() && l.ends_with(r) {
                Some(listener.to_string())
            } else {
                None
            }
        }
    }
}

/// Whether two hostname patterns can both match some concrete host, i.e.
/// whether they intersect.
pub fn overlaps(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => intersect(Some(a), b).is_some(),
    }
}

/// Normalises a Host header or SNI value: lowercase, no port, no trailing dot,
/// IPv6 brackets kept. Returns `None` for an empty host. Borrows from `raw`
/// when it is already lowercase (almost always): no copy per request.
pub fn normalize_host(raw: &str) -> Option<Cow<'_, str>> {
    // Byte searches: this runs for every request and every handshake, and
    // `rsplit_once(':')` went through the generic `memrchr` (~300
    // instructions for a 15-byte host). Slicing at an ASCII byte found
    // here is always on a character boundary.
    let raw = raw.trim();
    let bytes = raw.as_bytes();
    let host = if bytes.first() == Some(&b'[') {
        // [v6]:port
        match bytes.iter().position(|&b| b == b']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match bytes.iter().rposition(|&b| b == b':') {
            Some(colon) if bytes[colon + 1..].iter().all(u8::is_ascii_digit) => &raw[..colon],
            _ => raw,
        }
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        None
    } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// Whether `name` is a valid Gateway API hostname: RFC 1123 labels, an optional
/// leading `*.` wildcard label, no IP address, at most 253 characters.
pub fn is_valid(name: &str) -> bool {
    let body = name.strip_prefix("*.").unwrap_or(name);
    if body.is_empty() || name.len() > 253 {
        return false;
    }
    if body.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    body.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_one_or_more_labels_but_not_the_apex() {
        assert!(matches("*.example.com", "a.example.com"));
        assert!(matches("*.example.com", "a.b.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", "aexample.com"));
        assert!(matches("foo.com", "foo.com"));
        assert!(!matches("foo.com", "a.foo.com"));
    }

    #[test]
    fn intersection_takes_the_more_specific_side() {
        assert_eq!(intersect(None, "a.com").as_deref(), Some("a.com"));
        assert_eq!(
            intersect(Some("*.example.com"), "a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect(Some("a.example.com"), "*.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect(Some("*.example.com"), "*.a.example.com").as_deref(),
            Some("*.a.example.com")
        );
        assert_eq!(
            intersect(Some("*.a.example.com"), "*.example.com").as_deref(),
            Some("*.a.example.com")
        );
        assert_eq!(intersect(Some("a.com"), "b.com"), None);
        assert_eq!(intersect(Some("*.example.com"), "example.com"), None);
        assert_eq!(intersect(Some("*.a.com"), "*.b.com"), None);
    }

    #[test]
    fn host_normalisation_strips_port_case_and_dot() {
        assert_eq!(normalize_host("Foo.COM:8080").as_deref(), Some("foo.com"));
        assert_eq!(normalize_host("foo.com.").as_deref(), Some("foo.com"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host(":443"), None);
        assert_eq!(normalize_host("a.example:").as_deref(), Some("a.example"));
        assert_eq!(normalize_host("a:b").as_deref(), Some("a:b"));
        assert_eq!(normalize_host("[::1").as_deref(), Some("[::1"));
        assert_eq!(
            normalize_host(" Ünï.Example:80 ").as_deref(),
            Some("Ünï.example")
        );
        assert!(matches!(
            normalize_host("a.example:8443"),
            Some(Cow::Borrowed("a.example"))
        ));
    }

    #[test]
    fn validity_follows_rfc1123_with_leading_wildcard() {
        assert!(is_valid("a-b.example.com"));
        assert!(is_valid("*.example.com"));
        assert!(!is_valid("a.*.com"));
        assert!(!is_valid("1.2.3.4"));
        assert!(!is_valid("-a.com"));
        assert!(!is_valid("A.com"));
        assert!(!is_valid(""));
    }

    #[test]
    fn wildcard_suffixes_run_longest_first_and_skip_the_host_itself() {
        let all: Vec<&str> = wildcard_suffixes("a.b.example.com").collect();
        assert_eq!(all, vec![".b.example.com", ".example.com", ".com"]);
        assert_eq!(
            wildcard_suffixes(".example.com").collect::<Vec<_>>(),
            vec![".com"]
        );
        assert_eq!(wildcard_suffixes("localhost").count(), 0);
    }
}
