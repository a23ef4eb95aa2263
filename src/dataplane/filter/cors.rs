//! The `CORS` filter (Fetch standard, "CORS protocol"; Gateway API
//! `HTTPCORSFilter`): answering preflights at the gateway and adding the
//! `Access-Control-*` headers to actual responses.
//!
//! Choices where the specification leaves room:
//! - a preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`)
//!   is always answered by the gateway, never forwarded; from an origin that
//!   is not allowed the answer carries no `Access-Control-*` header, which
//!   makes the browser refuse the actual request;
//! - `allowOrigins: ["*"]` answers `*` without credentials and echoes the
//!   origin with credentials (a browser rejects `*` with credentials);
//! - `allowMethods`/`allowHeaders` of `*` echo what the preflight asked for,
//!   which is valid with and without credentials;
//! - the requested method and headers are not checked against the allowed
//!   lists: the browser compares them with the answer and enforces.

use super::CorsPolicy;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

impl CorsPolicy {
    /// Status of a gateway-made preflight answer.
    pub const PREFLIGHT_STATUS: StatusCode = StatusCode::NO_CONTENT;

    /// If the request is a CORS preflight, the headers of the response the
    /// gateway answers it with (status [`Self::PREFLIGHT_STATUS`], no body);
    /// `None` for any other request, which goes on to the backend.
    pub fn preflight(&self, req_headers: &HeaderMap, method: &Method) -> Option<HeaderMap> {
        if method != Method::OPTIONS {
            return None;
        }
        let origin = req_headers.get(ORIGIN)?;
        let requested_method = req_headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut out = HeaderMap::new();
        if !self.allow_origin_headers(origin, &mut out) {
            return Some(out);
        }
        let methods = if self.allow_methods.iter().any(|m| m == "*") {
            Some(requested_method.clone())
        } else {
            join(&self.allow_methods)
        };
        if let Some(v) = methods {
            out.insert(ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        let headers = if self.allow_headers.iter().any(|h| h == "*") {
            req_headers.get(ACCESS_CONTROL_REQUEST_HEADERS).cloned()
        } else {
            join(&self.allow_headers)
        };
        if let Some(v) = headers {
            out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(v) = join(&self.expose_headers) {
            out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
        out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age));
        Some(out)
    }

    /// Adds `Access-Control-Allow-Origin`, `-Allow-Credentials` and
    /// `-Expose-Headers` to the response of an actual (non-preflight) request
    /// whose `Origin` is allowed; leaves other responses alone.
    pub fn response_headers(&self, req_headers: &HeaderMap, resp_headers: &mut HeaderMap) {
        let Some(origin) = req_headers.get(ORIGIN) else {
            return;
        };
        if self.allow_origin_headers(origin, resp_headers) {
            if let Some(v) = join(&self.expose_headers) {
                resp_headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v);
            }
        }
    }

    /// Whether `origin` is allowed: `*`, an exact origin (ASCII
    /// case-insensitive), or a pattern whose `*` stands for one or more host
    /// labels (`https://*.bar.com` allows `https://a.b.bar.com`).
    pub fn is_origin_allowed(&self, origin: &str) -> bool {
        self.allow_origins.iter().any(|p| origin_matches(p, origin))
    }

    /// Writes the allow-origin (and credentials) headers when `origin` is
    /// allowed; reports whether it was.
    fn allow_origin_headers(&self, origin: &HeaderValue, out: &mut HeaderMap) -> bool {
        let Ok(origin_str) = origin.to_str() else {
            return false;
        };
        if !self.is_origin_allowed(origin_str) {
            return false;
        }
        let any = self.allow_origins.iter().any(|p| p == "*");
        if any && !self.allow_credentials {
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else {
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            // The answer depends on the Origin: caches must key on it.
            out.append(VARY, HeaderValue::from_static("Origin"));
        }
        if self.allow_credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        true
    }
}

/// `a, b, c`, or `None` for an empty list or a value that is not a valid
/// header value (the compiler validates names, so that means a bug upstream).
fn join(items: &[String]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(", ")).ok()
}

fn origin_matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let Some((head, tail)) = pattern.split_once('*') else {
        return pattern.eq_ignore_ascii_case(origin);
    };
    if origin.len() <= head.len() + tail.len() {
        return false; // the wildcard stands for at least one character
    }
    let (Some(o_head), Some(rest)) = (origin.get(..head.len()), origin.get(head.len()..)) else {
        return false;
    };
    let split = rest.len() - tail.len();
    let (Some(middle), Some(o_tail)) = (rest.get(..split), rest.get(split..)) else {
        return false;
    };
    o_head.eq_ignore_ascii_case(head)
        && o_tail.eq_ignore_ascii_case(tail)
        && middle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests;
