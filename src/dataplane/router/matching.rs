//! Whether one [`RequestMatch`] holds for a request, and the path
//! normalisation every match sees.
//!
//! Path, header and query semantics follow `HTTPRouteMatch`:
//! - paths are compared after [`normalize_path`], case-sensitively;
//! - header names are case-insensitive, values case-sensitive; a header sent
//!   several times is matched against its values joined with `,` (RFC 9110
//!   §5.3, as the specification suggests for repeated headers);
//! - query parameter names are exact and case-sensitive, values are compared
//!   after percent-decoding; when a parameter repeats, the first value counts;
//! - the method is compared exactly.

use super::{
    prefix_key, HeaderMatch, PathMatch, QueryMatch, RequestMatch, RequestView, ValueMatch,
};
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

impl RequestMatch {
    /// Whether every part of this match holds for `req`. The path is
    /// normalised first (see [`normalize_path`]).
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let path = normalize_path(req.path);
        self.matches_normalized(&RequestView {
            path: &path,
            ..*req
        })
    }

    /// [`Self::matches`] for a request whose path is already normalised.
    pub(crate) fn matches_normalized(&self, req: &RequestView<'_>) -> bool {
        self.path.matches(req.path) && self.matches_besides_path(req)
    }

    /// Method, headers and query parameters (the path is known to match).
    pub(crate) fn matches_besides_path(&self, req: &RequestView<'_>) -> bool {
        if let Some(m) = &self.method {
            if m != req.method {
                return false;
            }
        }
        self.headers.iter().all(|h| h.matches(req.headers))
            && self.query.iter().all(|q| q.matches(req.query))
    }
}

impl PathMatch {
    /// Whether `path` (already normalised) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(v) => v == path,
            PathMatch::Prefix(v) => prefix_matches(prefix_key(v), path),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// `PathPrefix` semantics: `key` (the value without trailing `/`) is a prefix
/// of `path` ending at a segment boundary. The empty key (`/`) matches all.
fn prefix_matches(key: &str, path: &str) -> bool {
    key.is_empty()
        || (path.starts_with(key)
            && (path.len() == key.len() || path.as_bytes()[key.len()] == b'/'))
}

impl ValueMatch {
    /// Whether `value` matches (exact comparison is case-sensitive).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(r) => r.is_match(value),
        }
    }

    fn matches_bytes(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(v) => v.as_bytes() == value,
            ValueMatch::Regex(r) => std::str::from_utf8(value).is_ok_and(|s| r.is_match(s)),
        }
    }
}

impl HeaderMatch {
    /// Whether the header is present and its value (repeated values joined
    /// with `,`) matches.
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        let Some(second) = values.next() else {
            return self.value.matches_bytes(first.as_bytes());
        };
        let mut joined = first.as_bytes().to_vec();
        for v in std::iter::once(second).chain(values) {
            joined.push(b',');
            joined.extend_from_slice(v.as_bytes());
        }
        self.value.matches_bytes(&joined)
    }
}

impl QueryMatch {
    /// Whether the parameter is present and its first value, percent-decoded,
    /// matches.
    pub fn matches(&self, query: Option<&str>) -> bool {
        query
            .and_then(|q| first_query_value(q, &self.name))
            .is_some_and(|v| self.value.matches(&v))
    }
}

/// The percent-decoded first value of parameter `name` in a raw query string
/// (`a=1&b=2`); a parameter without `=` has the empty value.
pub(crate) fn first_query_value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        let name_matches = if n.contains('%') {
            percent_decode_str(n).decode_utf8_lossy() == name
        } else {
            n == name
        };
        name_matches.then(|| percent_decode_str(v).decode_utf8_lossy())
    })
}

/// Normalises a request path for matching and forwarding:
///
/// 1. percent-encoded unreserved characters (RFC 3986 §2.3: letters, digits,
///    `-._~`) are decoded, as RFC 3986 §6.2.2.2 allows; so is `%2F`, which
///    thereby splits segments: a backend that would decode it could
///    otherwise be led out of the prefix the gateway matched
///    (`/foo/x%2F..%2F..%2Fadmin`). Every other escape is kept as received;
/// 2. `.` and `..` segments are resolved (RFC 3986 §5.2.4), so that
///    `/foo/../admin` is `/admin` and cannot match a `/foo` prefix.
///
/// Paths without `%` or dot segments, the vast majority, are returned
/// borrowed. The proxy must forward this form, so that the backend sees the
/// path the route matched.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if !path.bytes().any(|b| b == b'%' || b == b'.') {
        return Cow::Borrowed(path);
    }
    let decoded = if path.contains('%') {
        decode_unreserved(path)
    } else {
        Cow::Borrowed(path)
    };
    let has_dots = decoded.split('/').any(|s| s == "." || s == "..");
    let out = if has_dots {
        Cow::Owned(remove_dot_segments(&decoded))
    } else {
        decoded
    };
    match out {
        Cow::Owned(s) if s.is_empty() => Cow::Owned("/".to_string()),
        Cow::Owned(s) if s == path => Cow::Borrowed(path),
        other => other,
    }
}

/// Decodes `%XX` escapes of unreserved characters and of `/`.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of `path` already in `out`
    let mut i = 0;
    while let Some(off) = path[i..].find('%') {
        let at = i + off;
        let decoded = match (bytes.get(at + 1), bytes.get(at + 2)) {
            (Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match decoded {
            Some(b) if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) => {
                let s = out.get_or_insert_with(|| String::with_capacity(path.len()));
                s.push_str(&path[copied..at]);
                s.push(char::from(b));
                copied = at + 3;
                i = at + 3;
            }
            _ => i = at + 1,
        }
    }
    match out {
        Some(mut s) => {
            s.push_str(&path[copied..]);
            Cow::Owned(s)
        }
        None => Cow::Borrowed(path),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §5.2.4 `remove_dot_segments`.
fn remove_dot_segments(mut input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop_segment(&mut out);
        } else if input == "/.." {
            input = "/";
            pop_segment(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let skip = usize::from(input.starts_with('/'));
            let end = input[skip..].find('/').map_or(input.len(), |i| i + skip);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

fn pop_segment(out: &mut String) {
    match out.rfind('/') {
        Some(i) => out.truncate(i),
        None => out.clear(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_resolved_per_rfc3986() {
        assert_eq!(normalize_path("/a/b/c/./../../g"), "/a/g");
        assert_eq!(normalize_path("/foo/../admin"), "/admin");
        assert_eq!(normalize_path("/foo/./bar"), "/foo/bar");
        assert_eq!(normalize_path("/.."), "/");
        assert_eq!(normalize_path("/../../x"), "/x");
        assert_eq!(normalize_path("/a/.."), "/");
        assert_eq!(normalize_path("/a/b/."), "/a/b/");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
    }

    #[test]
    fn ordinary_paths_are_borrowed_unchanged() {
        for p in [
            "/",
            "/foo/bar",
            "/file.js",
            "/a..b/c.",
            "/%20x",
            "/.well-known/x",
        ] {
            assert!(matches!(normalize_path(p), Cow::Borrowed(_)), "{p}");
            assert_eq!(normalize_path(p), p);
        }
    }

    #[test]
    fn encoded_dots_and_slashes_are_decoded_before_resolving() {
        assert_eq!(normalize_path("/foo/%2e%2e/admin"), "/admin");
        assert_eq!(normalize_path("/foo/%2E%2E/admin"), "/admin");
        assert_eq!(normalize_path("/foo/x%2F..%2F..%2Fadmin"), "/admin");
        assert_eq!(normalize_path("/foo%2fbar"), "/foo/bar");
        assert_eq!(normalize_path("/%7Euser/%41"), "/~user/A");
        // Reserved and non-ASCII escapes stay as received.
        assert_eq!(normalize_path("/a%20b/%3F/%C3%A9"), "/a%20b/%3F/%C3%A9");
        // Malformed escapes are left alone.
        assert_eq!(normalize_path("/a%zz/%4"), "/a%zz/%4");
    }

    #[test]
    fn prefix_matches_on_segment_boundary() {
        let p = PathMatch::Prefix("/foo".into());
        assert!(p.matches("/foo"));
        assert!(p.matches("/foo/"));
        assert!(p.matches("/foo/bar"));
        assert!(!p.matches("/foobar"));
        assert!(!p.matches("/fo"));
        assert!(!p.matches("/"));
    }

    #[test]
    fn prefix_trailing_slash_is_ignored() {
        let p = PathMatch::Prefix("/foo/".into());
        assert!(p.matches("/foo"));
        assert!(p.matches("/foo/"));
        assert!(p.matches("/foo/bar"));
        assert!(!p.matches("/foobar"));
    }

    #[test]
    fn root_prefix_matches_everything() {
        let p = PathMatch::Prefix("/".into());
        for path in ["/", "/a", "/a/b/", "*"] {
            assert!(p.matches(path), "{path}");
        }
    }

    #[test]
    fn exact_path_is_case_sensitive_and_whole() {
        let p = PathMatch::Exact("/two".into());
        assert!(p.matches("/two"));
        assert!(!p.matches("/Two"));
        assert!(!p.matches("/two/"));
    }

    #[test]
    fn regex_must_match_the_whole_path_when_anchored() {
        let p = PathMatch::Regex(regex::Regex::new("^(?:/v[0-9]+/.*)$").expect("valid"));
        assert!(p.matches("/v2/x"));
        assert!(!p.matches("/api/v2/x"));
    }

    #[test]
    fn repeated_headers_are_joined_with_commas() {
        let mut h = http::HeaderMap::new();
        h.append("x-a", http::HeaderValue::from_static("one"));
        h.append("x-a", http::HeaderValue::from_static("two"));
        let m = |v: &str| HeaderMatch {
            name: http::HeaderName::from_static("x-a"),
            value: ValueMatch::Exact(v.into()),
        };
        assert!(m("one,two").matches(&h));
        assert!(!m("one").matches(&h));
    }

    #[test]
    fn header_names_are_case_insensitive_values_are_not() {
        let mut h = http::HeaderMap::new();
        h.insert("Version", http::HeaderValue::from_static("One"));
        let m = |v: &str| HeaderMatch {
            name: http::HeaderName::from_static("version"),
            value: ValueMatch::Exact(v.into()),
        };
        assert!(m("One").matches(&h));
        assert!(!m("one").matches(&h));
    }

    #[test]
    fn query_values_are_percent_decoded_and_first_wins() {
        assert_eq!(first_query_value("a=1&a=2", "a").as_deref(), Some("1"));
        assert_eq!(
            first_query_value("a=hello%20world", "a").as_deref(),
            Some("hello world")
        );
        assert_eq!(first_query_value("flag&b=1", "flag").as_deref(), Some(""));
        assert_eq!(first_query_value("A=1", "a"), None);
        assert_eq!(first_query_value("x%5Fy=1", "x_y").as_deref(), Some("1"));
        assert_eq!(
            first_query_value("animal=whaledolphin", "animal").as_deref(),
            Some("whaledolphin")
        );
    }
}
