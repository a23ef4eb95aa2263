//! Compiled HTTPRoute filters: header modification, redirects, rewrites,
//! mirrors and CORS, with the pure functions the proxy applies them with.
//!
//! Everything here is a plain function of its arguments: the proxy owns the
//! I/O (building responses, sending mirrors, drawing random samples) and calls
//! in with what it read from the request.

mod cors;
mod edit;
mod sample;

use super::BackendTarget;

pub use edit::{rewrite_path, RedirectRequest};
pub use sample::{mirror_selected, pick_weighted};

/// One filter.
#[derive(Debug, Clone)]
pub enum Filter {
    /// `RequestHeaderModifier`.
    RequestHeaders(HeaderEdit),
    /// `ResponseHeaderModifier`.
    ResponseHeaders(HeaderEdit),
    /// `RequestRedirect`: answered by the gateway.
    Redirect(Redirect),
    /// `URLRewrite`.
    Rewrite(Rewrite),
    /// `RequestMirror`.
    Mirror(Mirror),
    /// `CORS`.
    Cors(std::sync::Arc<CorsPolicy>),
}

/// Set, add and remove header operations.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdit {
    /// Replace (or create) these headers.
    pub set: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Append these values.
    pub add: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Remove these headers.
    pub remove: Vec<http::HeaderName>,
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// Replace the whole path.
    Full(String),
    /// Replace the part matched by the rule's `PathPrefix`.
    Prefix(String),
}

/// `RequestRedirect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// New scheme.
    pub scheme: Option<String>,
    /// New hostname.
    pub hostname: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path.
    pub path: Option<PathRewrite>,
    /// Status code.
    pub status: u16,
}

/// `URLRewrite`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// New Host.
    pub hostname: Option<String>,
    /// New path.
    pub path: Option<PathRewrite>,
}

/// `RequestMirror`.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Where copies go.
    pub target: BackendTarget,
    /// Share of requests mirrored, as numerator/denominator.
    pub numerator: u32,
    /// Denominator (> 0).
    pub denominator: u32,
}

/// `CORS` filter.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    /// Allowed origins: `*`, exact, or with wildcard host labels.
    pub allow_origins: Vec<String>,
    /// Allow credentials.
    pub allow_credentials: bool,
    /// Allowed methods (`*` allowed).
    pub allow_methods: Vec<String>,
    /// Allowed headers (`*` allowed).
    pub allow_headers: Vec<String>,
    /// Exposed headers.
    pub expose_headers: Vec<String>,
    /// Preflight max age in seconds.
    pub max_age: u32,
}
