//! Header edits, path rewrites and redirect locations
//! (`RequestHeaderModifier`, `ResponseHeaderModifier`, `URLRewrite`,
//! `RequestRedirect`).

use super::{HeaderEdit, PathRewrite, Redirect, Rewrite};
use crate::dataplane::router::{prefix_key, PathMatch};

impl HeaderEdit {
    /// Applies the edit: `set` replaces every value, `add` appends the value
    /// to any existing one (`existing,new`, as one field, like the
    /// specification's example; `set-cookie` gets a separate field since its
    /// values cannot be joined), then `remove` deletes. Names are
    /// case-insensitive by construction of `HeaderName`.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            append_value(headers, name, value);
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }

    /// Whether the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

fn append_value(headers: &mut http::HeaderMap, name: &http::HeaderName, value: &http::HeaderValue) {
    if name == http::header::SET_COOKIE || !headers.contains_key(name) {
        headers.append(name.clone(), value.clone());
        return;
    }
    let mut joined = Vec::new();
    for v in headers.get_all(name) {
        joined.extend_from_slice(v.as_bytes());
        joined.push(b',');
    }
    joined.extend_from_slice(value.as_bytes());
    // Joining valid field values with ',' yields a valid field value; should
    // that ever fail, a separate field carries the same meaning.
    match http::HeaderValue::from_bytes(&joined) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// The path after a `URLRewrite` or `RequestRedirect` path modifier.
///
/// `path` is the (normalised) request path, without query. `Full` replaces
/// it. `Prefix` replaces the part matched by `matched`, which must be a
/// `PathPrefix` (the specification makes any other combination invalid at
/// compile time; here the path is then returned unchanged). The replacement
/// and the remainder are joined with exactly one `/`, and an empty result is
/// `/`: with prefix `/prefix/one`, `/prefix/one/two` becomes `/one/two` under
/// `/one` and `/two` under `/`, and `/prefix/one` becomes `/`.
pub fn rewrite_path(path: &str, rewrite: &PathRewrite, matched: &PathMatch) -> String {
    match (rewrite, matched) {
        (PathRewrite::Full(p), _) => p.clone(),
        (PathRewrite::Prefix(replacement), PathMatch::Prefix(prefix)) => {
            let key = prefix_key(prefix);
            let Some(rest) = path.strip_prefix(key) else {
                return path.to_string();
            };
            // `rest` is empty or starts with '/' when the prefix matched.
            let head = replacement.trim_end_matches('/');
            let mut out = String::with_capacity(head.len() + rest.len() + 1);
            out.push_str(head);
            if !rest.is_empty() && !rest.starts_with('/') {
                out.push('/');
            }
            out.push_str(rest);
            if out.is_empty() {
                out.push('/');
            }
            out
        }
        (PathRewrite::Prefix(_), _) => path.to_string(),
    }
}

impl Rewrite {
    /// The rewritten path, if this rewrite changes the path (see
    /// [`rewrite_path`]).
    pub fn apply_path(&self, path: &str, matched: &PathMatch) -> Option<String> {
        self.path.as_ref().map(|r| rewrite_path(path, r, matched))
    }
}

/// What a redirect needs to know about the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct RedirectRequest<'a> {
    /// Scheme the request arrived with (`http` or `https`).
    pub scheme: &'a str,
    /// Request host, without port.
    pub host: &'a str,
    /// Port of the listener the request arrived on (as in the manifest).
    pub port: u16,
    /// Request path (normalised), without query.
    pub path: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
    /// The path match of the matched rule.
    pub matched: &'a PathMatch,
}

/// Well-known port of a scheme.
fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    }
}

impl Redirect {
    /// The `Location` of the redirect (an absolute URL).
    ///
    /// Per `HTTPRequestRedirectFilter`: the scheme and hostname default to
    /// the request's; the port is `port` if set, else the new scheme's
    /// well-known port when the scheme changes, else the listener port; it
    /// is left out when it is the scheme's default (80, 443). The path is
    /// kept unless rewritten; the query is always kept.
    pub fn location(&self, req: &RedirectRequest<'_>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let host = self.hostname.as_deref().unwrap_or(req.host);
        let scheme_changed = !scheme.eq_ignore_ascii_case(req.scheme);
        let port = match self.port {
            Some(p) => Some(p),
            None if scheme_changed => default_port(scheme),
            None => Some(req.port),
        };
        let path = match &self.path {
            Some(rewrite) => rewrite_path(req.path, rewrite, req.matched),
            None => req.path.to_string(),
        };

        let mut out = String::with_capacity(scheme.len() + host.len() + path.len() + 16);
        out.push_str(scheme);
        out.push_str("://");
        out.push_str(host);
        if let Some(p) = port.filter(|&p| Some(p) != default_port(scheme)) {
            out.push(':');
            out.push_str(&p.to_string());
        }
        if !path.starts_with('/') {
            out.push('/');
        }
        out.push_str(&path);
        if let Some(q) = req.query.filter(|q| !q.is_empty()) {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};

    fn prefix(v: &str) -> PathMatch {
        PathMatch::Prefix(v.into())
    }

    fn hv(v: &'static str) -> HeaderValue {
        HeaderValue::from_static(v)
    }

    fn hn(v: &'static str) -> HeaderName {
        HeaderName::from_static(v)
    }

    #[test]
    fn set_replaces_add_appends_remove_deletes() {
        // HTTPRouteRequestHeaderModifier, /multiple.
        let edit = HeaderEdit {
            set: vec![
                (hn("x-header-set-1"), hv("header-set-1")),
                (hn("x-header-set-2"), hv("header-set-2")),
            ],
            add: vec![
                (hn("x-header-add-1"), hv("header-add-1")),
                (hn("x-header-add-2"), hv("header-add-2")),
                (hn("x-header-add-3"), hv("header-add-3")),
            ],
            remove: vec![hn("x-header-remove-1"), hn("x-header-remove-2")],
        };
        let mut h = HeaderMap::new();
        h.insert("x-header-set-2", hv("set-val-2"));
        h.insert("x-header-add-2", hv("add-val-2"));
        h.insert("x-header-remove-2", hv("remove-val-2"));
        h.insert("another-header", hv("another-header-val"));
        edit.apply(&mut h);
        assert_eq!(h["x-header-set-1"], "header-set-1");
        assert_eq!(h["x-header-set-2"], "header-set-2");
        assert_eq!(h["x-header-add-1"], "header-add-1");
        assert_eq!(h["x-header-add-2"], "add-val-2,header-add-2");
        assert_eq!(h.get_all("x-header-add-2").iter().count(), 1);
        assert_eq!(h["x-header-add-3"], "header-add-3");
        assert_eq!(h["another-header"], "another-header-val");
        assert!(!h.contains_key("x-header-remove-1"));
        assert!(!h.contains_key("x-header-remove-2"));
    }

    #[test]
    fn set_overwrites_every_existing_value() {
        let edit = HeaderEdit {
            set: vec![(hn("x-header-set"), hv("set-overwrites-values"))],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.append("X-Header-Set", hv("a"));
        h.append("x-header-set", hv("b"));
        edit.apply(&mut h);
        let all: Vec<_> = h.get_all("x-header-set").iter().collect();
        assert_eq!(all, vec!["set-overwrites-values"]);
    }

    #[test]
    fn add_joins_repeated_values_and_keeps_set_cookie_separate() {
        let edit = HeaderEdit {
            add: vec![(hn("x-a"), hv("c")), (http::header::SET_COOKIE, hv("k=v"))],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.append("x-a", hv("a"));
        h.append("x-a", hv("b"));
        h.append("set-cookie", hv("s=1"));
        edit.apply(&mut h);
        assert_eq!(h["x-a"], "a,b,c");
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn rewrite_path_cases_from_conformance() {
        // HTTPRouteRewritePath: (request, match prefix, rewrite, expected).
        let cases = [
            (
                "/prefix/one/two",
                "/prefix/one",
                PathRewrite::Prefix("/one".into()),
                "/one/two",
            ),
            (
                "/strip-prefix/three",
                "/strip-prefix",
                PathRewrite::Prefix("/".into()),
                "/three",
            ),
            (
                "/strip-prefix",
                "/strip-prefix",
                PathRewrite::Prefix("/".into()),
                "/",
            ),
            (
                "/full/one/two",
                "/full/one",
                PathRewrite::Full("/one".into()),
                "/one",
            ),
            (
                "/full/rewrite-path-and-modify-headers/test",
                "/full/rewrite-path-and-modify-headers",
                PathRewrite::Full("/test".into()),
                "/test",
            ),
            (
                "/prefix/rewrite-path-and-modify-headers/one",
                "/prefix/rewrite-path-and-modify-headers",
                PathRewrite::Prefix("/prefix".into()),
                "/prefix/one",
            ),
        ];
        for (path, m, rw, want) in cases {
            assert_eq!(rewrite_path(path, &rw, &prefix(m)), want, "{path}");
        }
    }

    #[test]
    fn replace_prefix_follows_the_specification_table() {
        // HTTPPathModifier.ReplacePrefixMatch documentation table.
        let cases = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/anything", "/", "/base", "/base/anything"),
        ];
        for (path, m, r, want) in cases {
            let got = rewrite_path(path, &PathRewrite::Prefix(r.into()), &prefix(m));
            assert_eq!(got, want, "{path} {m} {r}");
        }
    }

    #[test]
    fn replace_prefix_needs_a_prefix_match() {
        let rw = PathRewrite::Prefix("/x".into());
        assert_eq!(
            rewrite_path("/a", &rw, &PathMatch::Exact("/a".into())),
            "/a"
        );
    }

    fn req<'a>(
        scheme: &'a str,
        port: u16,
        path: &'a str,
        matched: &'a PathMatch,
    ) -> RedirectRequest<'a> {
        RedirectRequest {
            scheme,
            host: "gw.example",
            port,
            path,
            query: None,
            matched,
        }
    }

    fn redirect(scheme: Option<&str>, host: Option<&str>, port: Option<u16>) -> Redirect {
        Redirect {
            scheme: scheme.map(str::to_string),
            hostname: host.map(str::to_string),
            port,
            path: None,
            status: 302,
        }
    }

    #[test]
    fn redirect_port_and_scheme_cases_from_conformance() {
        // HTTPRouteRedirectPortAndScheme: (listener scheme, listener port,
        // redirect scheme, redirect port, expected Location).
        let cases = [
            ("http", 80, None, None, "http://example.org/p"),
            ("http", 80, None, Some(80), "http://example.org/p"),
            ("http", 80, None, Some(8080), "http://example.org:8080/p"),
            ("http", 80, Some("https"), None, "https://example.org/p"),
            (
                "http",
                80,
                Some("https"),
                Some(443),
                "https://example.org/p",
            ),
            (
                "http",
                80,
                Some("https"),
                Some(8443),
                "https://example.org:8443/p",
            ),
            ("http", 8080, None, None, "http://example.org:8080/p"),
            ("http", 8080, None, Some(80), "http://example.org/p"),
            ("http", 8080, Some("https"), None, "https://example.org/p"),
            ("https", 443, None, None, "https://example.org/p"),
            ("https", 443, None, Some(443), "https://example.org/p"),
            ("https", 443, None, Some(8443), "https://example.org:8443/p"),
            ("https", 443, Some("http"), None, "http://example.org/p"),
            ("https", 443, Some("http"), Some(80), "http://example.org/p"),
            (
                "https",
                443,
                Some("http"),
                Some(8080),
                "http://example.org:8080/p",
            ),
        ];
        let m = prefix("/p");
        for (scheme, port, rs, rp, want) in cases {
            let r = redirect(rs, Some("example.org"), rp);
            assert_eq!(
                r.location(&req(scheme, port, "/p", &m)),
                want,
                "{scheme}:{port} {rs:?} {rp:?}"
            );
        }
    }

    #[test]
    fn redirect_port_keeps_request_host() {
        // HTTPRouteRedirectPort.
        let m = prefix("/port");
        let r = redirect(None, None, Some(8083));
        assert_eq!(
            r.location(&req("http", 80, "/port", &m)),
            "http://gw.example:8083/port"
        );
        let r = redirect(None, Some("example.org"), Some(8083));
        assert_eq!(
            r.location(&req("http", 80, "/port-and-host", &m)),
            "http://example.org:8083/port-and-host"
        );
    }

    #[test]
    fn redirect_scheme_change_uses_the_default_port() {
        // HTTPRouteRedirectScheme.
        let m = prefix("/scheme");
        let r = redirect(Some("https"), None, None);
        assert_eq!(
            r.location(&req("http", 80, "/scheme", &m)),
            "https://gw.example/scheme"
        );
        let r = redirect(Some("https"), Some("example.org"), None);
        assert_eq!(
            r.location(&req("http", 80, "/scheme-and-host", &m)),
            "https://example.org/scheme-and-host"
        );
    }

    #[test]
    fn redirect_hostname_keeps_scheme_and_path() {
        // HTTPRouteRedirectHostAndStatus.
        let m = prefix("/hostname-redirect");
        let r = redirect(None, Some("example.org"), None);
        assert_eq!(
            r.location(&req("http", 80, "/hostname-redirect", &m)),
            "http://example.org/hostname-redirect"
        );
    }

    #[test]
    fn redirect_path_cases_from_conformance() {
        // HTTPRouteRedirectPath: (request, match prefix, rewrite, host, Location).
        let cases = [
            (
                "/original-prefix/lemon",
                "/original-prefix",
                PathRewrite::Prefix("/replacement-prefix".into()),
                None,
                "http://gw.example/replacement-prefix/lemon",
            ),
            (
                "/full/path/original",
                "/full",
                PathRewrite::Full("/full-path-replacement".into()),
                None,
                "http://gw.example/full-path-replacement",
            ),
            (
                "/path-and-host",
                "/path-and-host",
                PathRewrite::Prefix("/replacement-prefix".into()),
                Some("example.org"),
                "http://example.org/replacement-prefix",
            ),
            (
                "/path-and-status",
                "/path-and-status",
                PathRewrite::Prefix("/replacement-prefix".into()),
                None,
                "http://gw.example/replacement-prefix",
            ),
            (
                "/full-path-and-host",
                "/full-path-and-host",
                PathRewrite::Full("/replacement-full".into()),
                Some("example.org"),
                "http://example.org/replacement-full",
            ),
        ];
        for (path, m, rw, host, want) in cases {
            let m = prefix(m);
            let mut r = redirect(None, host, None);
            r.path = Some(rw);
            assert_eq!(r.location(&req("http", 80, path, &m)), want, "{path}");
        }
    }

    #[test]
    fn redirect_keeps_the_query() {
        let m = prefix("/");
        let r = redirect(Some("https"), None, None);
        let mut rq = req("http", 80, "/a", &m);
        rq.query = Some("x=1&y=2");
        assert_eq!(r.location(&rq), "https://gw.example/a?x=1&y=2");
    }

    #[test]
    fn rewrite_apply_path_only_when_configured() {
        let m = prefix("/a");
        let none = Rewrite {
            hostname: Some("h".into()),
            path: None,
        };
        assert_eq!(none.apply_path("/a/b", &m), None);
        let some = Rewrite {
            hostname: None,
            path: Some(PathRewrite::Prefix("/z".into())),
        };
        assert_eq!(some.apply_path("/a/b", &m).as_deref(), Some("/z/b"));
    }
}
