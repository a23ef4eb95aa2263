//! Request matching: the compiled form of HTTPRoute/GRPCRoute matches and the
//! per-listener route table that orders them by the specification's precedence.
//!
//! This module owns *which rule serves a request*; what the rule then does
//! (filters, backends) lives in [`super::filter`] and the proxy. Matching is
//! pure: no I/O, no clock, no allocation on the common path.
//!
//! # Precedence
//!
//! Gateway API (`HTTPRouteRule`, "across all rules of the routes attached to
//! the same parent") orders matches by, highest first:
//!
//! 1. hostname: an exact hostname, then wildcards by length (longest first),
//!    then the catch-all (a route and listener without hostnames);
//! 2. path: `Exact`, then `PathPrefix` by number of characters (longest
//!    first), then `RegularExpression`. Where regular expressions rank is
//!    implementation-specific: we put them after every prefix, ordered by
//!    pattern length (longest first);
//! 3. a method match before none;
//! 4. more header matches first;
//! 5. more query parameter matches first;
//! 6. [`EntryOrder`]: oldest route, then `namespace/name`, then rule and match
//!    index.
//!
//! The first entry in that order whose hostname and match hold wins, so a
//! request for an exact host falls back to wildcard and catch-all entries when
//! none of the host's own entries match.
//!
//! # Lookup
//!
//! [`RouteTable::new`] sorts every entry once and groups them by hostname. A
//! lookup hashes the host (then each of its parent domains for wildcards) and,
//! inside a hostname group, hashes the path (`Exact`) and each of its
//! `/`-boundary prefixes (`PathPrefix`, longest first) before scanning the
//! regular expressions. The cost grows with the number of path segments, not
//! with the number of routes.

mod matching;
#[cfg(test)]
mod tests;

use super::Rule;
use crate::hashing::FastMap;
use std::cmp::Reverse;
use std::ops::Range;
use std::sync::Arc;

pub use matching::normalize_path;

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
    /// The path starts with the value at a `/` segment boundary; a trailing
    /// `/` in the value is ignored (`/foo` and `/foo/` both match `/foo`,
    /// `/foo/` and `/foo/bar`, never `/foobar`).
    Prefix(String),
    /// The whole path matches the regular expression. The compiler anchors
    /// the expression (`^(?:…)$`); matching only calls `is_match`.
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
    /// The whole value matches (the compiler anchors the expression).
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
    /// The route's part, shared by all its entries.
    pub route: Arc<RouteRank>,
    /// Rule index.
    pub rule: usize,
    /// Match index within the rule.
    pub index: usize,
}

impl EntryOrder {
    /// The order of match `index` of rule `rule` of a route ranked `route`.
    pub fn new(route: &Arc<RouteRank>, rule: usize, index: usize) -> Self {
        Self {
            route: Arc::clone(route),
            rule,
            index,
        }
    }
}

/// What ranks a route among routes of equal match specificity. One per
/// route, shared by its entries (a route yields an entry per listener,
/// hostname, rule and match).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteRank {
    /// RFC 3339 creation timestamp; missing sorts as oldest.
    pub created: String,
    /// Route namespace.
    pub namespace: String,
    /// Route name.
    pub name: String,
}

impl RouteRank {
    /// The rank of route `namespace/name` created at `created`.
    pub fn new(created: &str, namespace: &str, name: &str) -> Arc<Self> {
        Arc::new(Self {
            created: created.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// The routes of one listener, indexed by hostname, each list in precedence
/// order so that the first entry whose match holds wins.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Every entry, grouped by hostname, each group in precedence order.
    pub(crate) entries: Vec<RouteEntry>,
    /// Exact hostname → its group.
    exact_hosts: FastMap<Box<str>, HostGroup>,
    /// Wildcard suffix (`.example.com` for `*.example.com`) → its group.
    wildcard_hosts: FastMap<Box<str>, HostGroup>,
    /// Entries without hostname.
    catch_all: HostGroup,
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

/// The entries of one hostname, indexed by path. Indices point into
/// `RouteTable::entries` and every list is in precedence order.
#[derive(Debug, Default)]
struct HostGroup {
    /// `Exact` path value → entries.
    exact: PathIndex,
    /// `PathPrefix` value without trailing `/` (empty for `/`) → entries.
    prefix: PathIndex,
    /// `RegularExpression` entries.
    regex: Box<[u32]>,
}

/// Path values → the entries (in precedence order) that name them. Most
/// groups hold one or two values (a route per hostname, matching `/`), so
/// a short list, compared in order, serves them without a hash table's
/// allocation; a group with more values gets the table.
#[derive(Debug)]
enum PathIndex {
    /// At most [`PathIndex::FEW`] values.
    Few(Box<[PathEntries]>),
    /// More.
    Many(Box<FastMap<Box<str>, Box<[u32]>>>),
}

/// A path value and its entries.
type PathEntries = (Box<str>, Box<[u32]>);

impl Default for PathIndex {
    fn default() -> Self {
        Self::Few(Box::default())
    }
}

impl PathIndex {
    /// The most values a linear search is kept for.
    const FEW: usize = 4;

    fn new(values: FastMap<Box<str>, Vec<u32>>) -> Self {
        let values = values.into_iter().map(|(k, v)| (k, v.into_boxed_slice()));
        if values.len() <= Self::FEW {
            Self::Few(values.collect())
        } else {
            Self::Many(Box::new(values.collect()))
        }
    }

    fn get(&self, value: &str) -> Option<&[u32]> {
        match self {
            Self::Few(list) => list.iter().find(|(k, _)| **k == *value).map(|(_, v)| &**v),
            Self::Many(map) => map.get(value).map(|v| &**v),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Few(list) => list.is_empty(),
            Self::Many(map) => map.is_empty(),
        }
    }
}

/// Specificity of an entry within its hostname group; smaller sorts first.
type Specificity = (
    (u8, Reverse<usize>, Reverse<usize>),
    bool,
    Reverse<usize>,
    Reverse<usize>,
);

/// Hostname class: exact hosts, then wildcards, then the catch-all.
fn host_class(hostname: Option<&str>) -> (u8, Reverse<usize>) {
    match hostname {
        Some(h) if crate::hostname::is_wildcard(h) => (1, Reverse(h.len())),
        Some(h) => (0, Reverse(h.len())),
        None => (2, Reverse(0)),
    }
}

/// The prefix value that decides what a `PathPrefix` matches: the value
/// without trailing slashes (empty for `/`, which matches every path).
pub(crate) fn prefix_key(value: &str) -> &str {
    value.trim_end_matches('/')
}

impl RequestMatch {
    /// The specificity of this match (rules 2 to 5 of the precedence).
    fn specificity(&self) -> Specificity {
        let path = match &self.path {
            PathMatch::Exact(v) => (0, Reverse(v.len()), Reverse(0)),
            // The key length first keeps the order consistent with the index
            // when a value carries several trailing slashes; for ordinary
            // values it is the same as ordering by characters.
            PathMatch::Prefix(v) => (1, Reverse(prefix_key(v).len()), Reverse(v.len())),
            PathMatch::Regex(r) => (2, Reverse(r.as_str().len()), Reverse(0)),
        };
        (
            path,
            self.method.is_none(),
            Reverse(self.headers.len()),
            Reverse(self.query.len()),
        )
    }
}

/// Total precedence order of two entries (used to sort, and by tests as the
/// reference order).
pub(crate) fn precedence(a: &RouteEntry, b: &RouteEntry) -> std::cmp::Ordering {
    host_class(a.hostname.as_deref())
        .cmp(&host_class(b.hostname.as_deref()))
        .then_with(|| a.hostname.cmp(&b.hostname))
        .then_with(|| a.matcher.specificity().cmp(&b.matcher.specificity()))
        .then_with(|| a.order.cmp(&b.order))
}

impl RouteTable {
    /// Builds the table for one listener from every entry attached to it:
    /// one entry per (route, effective hostname, rule, match).
    pub fn new(mut entries: Vec<RouteEntry>) -> Self {
        for e in &mut entries {
            if let Some(h) = &mut e.hostname {
                h.make_ascii_lowercase();
            }
        }
        entries.sort_by(precedence);

        let mut table = RouteTable::default();
        let mut start = 0;
        while start < entries.len() {
            let host = entries[start].hostname.clone();
            let len = entries[start..]
                .iter()
                .take_while(|e| e.hostname == host)
                .count();
            let group = HostGroup::build(&entries, start..start + len);
            match host {
                None => table.catch_all = group,
                Some(h) => match h.strip_prefix('*') {
                    Some(suffix) => {
                        table.wildcard_hosts.insert(suffix.into(), group);
                    }
                    None => {
                        table.exact_hosts.insert(h.into(), group);
                    }
                },
            }
            start += len;
        }
        // The compile pushed entries one by one: no spare capacity kept
        // for the life of the snapshot.
        entries.shrink_to_fit();
        table.entries = entries;
        table
    }

    /// Whether no route is attached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries (one per route hostname, rule and match).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, grouped by hostname, each group in precedence order.
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    /// The entry that serves a request for `host` (as returned by
    /// [`crate::hostname::normalize_host`]: lowercase, no port), if any.
    ///
    /// The request path is matched after [`normalize_path`], so the proxy
    /// must forward that normalised path for the match to mean anything.
    pub fn find(&self, host: &str, req: &RequestView<'_>) -> Option<&RouteEntry> {
        let host = normalized_host(host);
        let path = normalize_path(req.path);
        self.find_normalized(
            &host,
            &RequestView {
                path: &path,
                ..*req
            },
        )
    }

    /// [`Self::find`] for a caller that has normalised both already: `host`
    /// by [`crate::hostname::normalize_host`] (or empty), `req.path` by
    /// [`normalize_path`]. The proxy does, since it forwards both.
    pub(crate) fn find_normalized(&self, host: &str, req: &RequestView<'_>) -> Option<&RouteEntry> {
        if let Some(i) = self
            .exact_hosts
            .get(host)
            .and_then(|g| g.find(&self.entries, req))
        {
            return Some(&self.entries[i]);
        }
        if !self.wildcard_hosts.is_empty() {
            // `*.example.com` matches `a.example.com` and `a.b.example.com`:
            // try every parent domain, longest (most specific) first. A dot
            // at position 0 would leave an empty first label: skip it.
            for (i, _) in host.match_indices('.').filter(|(i, _)| *i > 0) {
                if let Some(found) = self
                    .wildcard_hosts
                    .get(&host[i..])
                    .and_then(|g| g.find(&self.entries, req))
                {
                    return Some(&self.entries[found]);
                }
            }
        }
        self.catch_all
            .find(&self.entries, req)
            .map(|i| &self.entries[i])
    }
}

/// Lowercases and strips the port only when the caller did not already.
fn normalized_host(host: &str) -> std::borrow::Cow<'_, str> {
    let clean = !host
        .bytes()
        .any(|b| b.is_ascii_uppercase() || b == b':' || b == b' ')
        && !host.ends_with('.');
    if clean || host.starts_with('[') {
        return std::borrow::Cow::Borrowed(host);
    }
    crate::hostname::normalize_host(host).unwrap_or(std::borrow::Cow::Borrowed(host))
}

impl HostGroup {
    /// Indexes `entries[range]` (one hostname, already in precedence order).
    fn build(entries: &[RouteEntry], range: Range<usize>) -> Self {
        let mut exact: FastMap<Box<str>, Vec<u32>> = FastMap::default();
        let mut prefix: FastMap<Box<str>, Vec<u32>> = FastMap::default();
        let mut regex = Vec::new();
        for i in range {
            // Route tables hold far fewer than 2^32 entries.
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            match &entries[i].matcher.path {
                PathMatch::Exact(v) => exact.entry(v.as_str().into()).or_default().push(idx),
                PathMatch::Prefix(v) => prefix.entry(prefix_key(v).into()).or_default().push(idx),
                PathMatch::Regex(_) => regex.push(idx),
            }
        }
        HostGroup {
            exact: PathIndex::new(exact),
            prefix: PathIndex::new(prefix),
            regex: regex.into_boxed_slice(),
        }
    }

    /// The first entry of this group whose match holds for `req` (whose path
    /// is already normalised).
    fn find(&self, entries: &[RouteEntry], req: &RequestView<'_>) -> Option<usize> {
        let first = |candidates: &[u32], path_known: bool| {
            candidates.iter().map(|&i| i as usize).find(|&i| {
                let m = &entries[i].matcher;
                if path_known {
                    m.matches_besides_path(req)
                } else {
                    m.matches_normalized(req)
                }
            })
        };
        // Every Exact entry outranks every prefix, and two Exact entries with
        // different values cannot both match: one hash lookup suffices.
        if !self.exact.is_empty() {
            if let Some(found) = self.exact.get(req.path).and_then(|c| first(c, true)) {
                return Some(found);
            }
        }
        if !self.prefix.is_empty() {
            // Longer prefixes outrank shorter ones; the keys that can match
            // are the path cut at each `/` boundary (and at its end).
            let path = req.path;
            let ends = std::iter::once(path.len())
                .chain(path.rmatch_indices('/').map(|(i, _)| i))
                .filter(|&i| i > 0);
            for end in ends {
                let key = &path[..end];
                if key.ends_with('/') {
                    continue; // keys never end with '/'
                }
                if let Some(found) = self.prefix.get(key).and_then(|c| first(c, true)) {
                    return Some(found);
                }
            }
            if let Some(found) = self.prefix.get("").and_then(|c| first(c, true)) {
                return Some(found);
            }
        }
        first(&self.regex, false)
    }
}
