//! Request matching: the compiled form of HTTPRoute/GRPCRoute matches and the
//! per-listener route table that orders them by the specification's precedence.

use super::Rule;
use std::sync::Arc;

/// A compiled `HTTPRouteMatch` (GRPCRoute method matches compile to paths).
#[derive(Debug, Clone)]
pub struct RequestMatch {
    /// Path match.
    pub path: PathMatch,
    /// Header matches, all of which must hold.
    pub headers: Vec<HeaderMatch>,
    /// Query parameter matches, all of which must hold.
    pub query: Vec<QueryMatch>,
    /// Method, if restricted.
    pub method: Option<http::Method>,
}

/// Path match types.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path equals the value.
    Exact(String),
    /// The path starts with the value at a `/` segment boundary.
    Prefix(String),
    /// The whole path matches the regular expression.
    Regex(regex::Regex),
}

/// Header match.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// Header name.
    pub name: http::HeaderName,
    /// Value match.
    pub value: ValueMatch,
}

/// Query parameter match (names are case-sensitive).
#[derive(Debug, Clone)]
pub struct QueryMatch {
    /// Parameter name.
    pub name: String,
    /// Value match.
    pub value: ValueMatch,
}

/// Exact or regular-expression value match.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// Equal.
    Exact(String),
    /// The whole value matches.
    Regex(regex::Regex),
}

/// One match of one rule, placed under the hostname it serves.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// The hostname this entry serves (route ∩ listener), none for any host.
    pub hostname: Option<String>,
    /// The match.
    pub matcher: RequestMatch,
    /// The rule to apply.
    pub rule: Arc<Rule>,
    /// Tie-breakers after match specificity: route creation time, then
    /// `namespace/name`, then rule index, then match index.
    pub order: EntryOrder,
}

/// Precedence tie-breakers of the Gateway API (oldest route first, then
/// alphabetical `namespace/name`, then rule and match order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryOrder {
    /// RFC 3339 creation timestamp; missing sorts as oldest.
    pub created: String,
    /// Route namespace.
    pub namespace: String,
    /// Route name.
    pub name: String,
    /// Rule index.
    pub rule: usize,
    /// Match index within the rule.
    pub index: usize,
}

/// The routes of one listener, indexed by hostname, each list in precedence
/// order so that the first entry whose match holds wins.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub(crate) entries: Vec<RouteEntry>,
}

/// The parts of a request that route matching reads.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a http::Method,
    /// Path, without the query string, as received (not decoded).
    pub path: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
    /// Headers.
    pub headers: &'a http::HeaderMap,
}

impl RouteTable {
    /// Builds the table for one listener from every entry attached to it.
    // OWNER(router): sort by precedence and index by hostname.
    pub fn new(entries: Vec<RouteEntry>) -> Self {
        RouteTable { entries }
    }

    /// Whether no route is attached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry that serves a request for `host` (normalised), if any.
    // OWNER(router): precedence-ordered lookup.
    pub fn find(&self, host: &str, req: &RequestView<'_>) -> Option<&RouteEntry> {
        let _ = (host, req);
        self.entries.first()
    }
}
