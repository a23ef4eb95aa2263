//! Route kinds of the Gateway API (HTTPRoute, GRPCRoute) as serde input types.

use super::meta::ObjectMeta;
use serde::Deserialize;

/// A route's `parentRefs[]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ParentReference {
    /// Group; default `gateway.networking.k8s.io`.
    pub group: Option<String>,
    /// Kind; default `Gateway` (or `ListenerSet`).
    pub kind: Option<String>,
    /// Namespace; default the route's.
    pub namespace: Option<String>,
    /// Parent name.
    pub name: String,
    /// Listener name to attach to.
    pub section_name: Option<String>,
    /// Listener port to attach to.
    pub port: Option<i64>,
}

/// `HTTPRoute`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRoute {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: HttpRouteSpec,
}

/// `HTTPRoute.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Parents (Gateways, ListenerSets).
    pub parent_refs: Vec<ParentReference>,
    /// Hostnames; empty means every hostname of the listener.
    pub hostnames: Vec<String>,
    /// Rules; none means one rule that matches `/` with no backends.
    pub rules: Option<Vec<HttpRouteRule>>,
}

/// `HTTPRoute.spec.rules[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Optional rule name.
    pub name: Option<String>,
    /// Matches; none means `PathPrefix /`.
    pub matches: Option<Vec<HttpRouteMatch>>,
    /// Filters applied to requests of this rule.
    pub filters: Vec<HttpRouteFilter>,
    /// Backends.
    pub backend_refs: Vec<HttpBackendRef>,
    /// Timeouts.
    pub timeouts: Option<HttpRouteTimeouts>,
    /// Retry policy.
    pub retry: Option<HttpRouteRetry>,
}

/// `HTTPRouteMatch`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Path match; default `PathPrefix /`.
    pub path: Option<HttpPathMatch>,
    /// Header matches (ANDed).
    pub headers: Vec<HttpHeaderMatch>,
    /// Query parameter matches (ANDed).
    pub query_params: Vec<HttpHeaderMatch>,
    /// Method.
    pub method: Option<String>,
}

/// `HTTPPathMatch`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Value; default `/`.
    pub value: Option<String>,
}

/// Header or query parameter match.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpHeaderMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Header or parameter name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// `HTTPRouteFilter`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// Filter type.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `RequestHeaderModifier`.
    pub request_header_modifier: Option<HeaderModifier>,
    /// For `ResponseHeaderModifier`.
    pub response_header_modifier: Option<HeaderModifier>,
    /// For `RequestRedirect`.
    pub request_redirect: Option<RequestRedirect>,
    /// For `URLRewrite`.
    pub url_rewrite: Option<UrlRewrite>,
    /// For `RequestMirror`.
    pub request_mirror: Option<RequestMirror>,
    /// For `CORS`.
    pub cors: Option<Cors>,
    /// For `ExtensionRef`.
    pub extension_ref: Option<serde_json::Value>,
}

/// Header modifier (set, add, remove).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Headers to overwrite.
    pub set: Vec<HttpHeader>,
    /// Headers to append.
    pub add: Vec<HttpHeader>,
    /// Header names to remove.
    pub remove: Vec<String>,
}

/// A name/value header.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpHeader {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// `RequestRedirect`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestRedirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Path modifier.
    pub path: Option<PathModifier>,
    /// Port.
    pub port: Option<i64>,
    /// 301 (default), 302, 303, 307 or 308.
    pub status_code: Option<i64>,
}

/// `URLRewrite`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct UrlRewrite {
    /// Hostname.
    pub hostname: Option<String>,
    /// Path modifier.
    pub path: Option<PathModifier>,
}

/// `HTTPPathModifier`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For ReplaceFullPath.
    pub replace_full_path: Option<String>,
    /// For ReplacePrefixMatch.
    pub replace_prefix_match: Option<String>,
}

/// `RequestMirror`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestMirror {
    /// Where to mirror.
    pub backend_ref: BackendObjectReference,
    /// Percentage of requests mirrored.
    pub percent: Option<i64>,
    /// Fraction of requests mirrored.
    pub fraction: Option<Fraction>,
}

/// A fraction.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Fraction {
    /// Numerator.
    pub numerator: i64,
    /// Denominator; default 100.
    pub denominator: Option<i64>,
}

/// `HTTPCORSFilter`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Cors {
    /// Allowed origins (`*`, exact, or with a `*` wildcard host label).
    pub allow_origins: Vec<String>,
    /// Whether credentials are allowed.
    pub allow_credentials: Option<bool>,
    /// Allowed methods (or `*`).
    pub allow_methods: Vec<String>,
    /// Allowed request headers (or `*`).
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts (or `*`).
    pub expose_headers: Vec<String>,
    /// Preflight cache lifetime in seconds (default 5).
    pub max_age: Option<i64>,
}

/// A backend reference without weight.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct BackendObjectReference {
    /// Group; empty means core.
    pub group: Option<String>,
    /// Kind; default `Service`.
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace; default the route's.
    pub namespace: Option<String>,
    /// Port (required for Services).
    pub port: Option<i64>,
}

/// `HTTPBackendRef`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpBackendRef {
    /// The backend.
    #[serde(flatten)]
    pub backend: BackendObjectReference,
    /// Weight (default 1).
    pub weight: Option<i64>,
    /// Filters applied only when this backend is chosen.
    pub filters: Vec<HttpRouteFilter>,
}

/// `HTTPRouteTimeouts` (Gateway API durations such as `10s`, `500ms`, `1h2m`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// Whole-request timeout.
    pub request: Option<String>,
    /// Per-attempt backend timeout.
    pub backend_request: Option<String>,
}

/// `HTTPRouteRetry`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteRetry {
    /// Status codes to retry on.
    pub codes: Vec<i64>,
    /// Maximum number of retries.
    pub attempts: Option<i64>,
    /// Backoff between attempts.
    pub backoff: Option<String>,
}

/// `GRPCRoute`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GrpcRoute {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: GrpcRouteSpec,
}

/// `GRPCRoute.spec`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    /// Parents.
    pub parent_refs: Vec<ParentReference>,
    /// Hostnames.
    pub hostnames: Vec<String>,
    /// Rules.
    pub rules: Option<Vec<GrpcRouteRule>>,
}

/// `GRPCRoute.spec.rules[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GrpcRouteRule {
    /// Optional rule name.
    pub name: Option<String>,
    /// Matches; none matches every call.
    pub matches: Option<Vec<GrpcRouteMatch>>,
    /// Filters (header modifiers and mirrors).
    pub filters: Vec<HttpRouteFilter>,
    /// Backends.
    pub backend_refs: Vec<HttpBackendRef>,
}

/// `GRPCRouteMatch`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GrpcRouteMatch {
    /// Service/method match.
    pub method: Option<GrpcMethodMatch>,
    /// Header matches.
    pub headers: Vec<HttpHeaderMatch>,
}

/// `GRPCMethodMatch`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GrpcMethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Fully qualified service name.
    pub service: Option<String>,
    /// Method name.
    pub method: Option<String>,
}
