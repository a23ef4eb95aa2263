//! The compiled, immutable data plane: what every socket serves, which listener
//! a TLS handshake or Host header selects, and the route tables, filters and
//! backends requests are matched against. Built by `crate::compile`, published
//! whole through one `ArcSwap`, read once per handshake or request.
//!
//! Nothing here refers back to manifest types; everything is resolved (regexes
//! compiled, header names parsed, Service ports turned into addresses).

pub mod challenges;
pub mod filter;
pub mod router;

use crate::model::ObjectKey;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use filter::{CorsPolicy, Filter, HeaderEdit, Mirror, PathRewrite, Redirect, Rewrite};
pub use router::{HeaderMatch, PathMatch, QueryMatch, RequestMatch, RouteTable, ValueMatch};

/// Everything the gateway serves, for one configuration generation.
#[derive(Debug, Default)]
pub struct Dataplane {
    /// One entry per socket to listen on.
    pub binds: Vec<Bind>,
    /// Pending ACME challenges, answered before routing (HTTP-01) and
    /// before listener selection (TLS-ALPN-01): one board, shared by every
    /// snapshot compiled with the same options, that the issuer writes.
    pub challenges: Arc<challenges::ChallengeBoard>,
}

impl Dataplane {
    /// The stream (TCP) bind for a local socket address.
    pub fn bind(&self, addr: SocketAddr) -> Option<&Bind> {
        self.binds
            .iter()
            .find(|b| b.addr == addr && b.protocol != BindProtocol::Udp)
    }

    /// The listener of the bind at `bind` that a raw SNI value selects: the
    /// SNI is normalised first; without SNI, the bind's only (or catch-all)
    /// listener.
    pub fn select_listener(&self, bind: SocketAddr, sni: Option<&str>) -> Option<Arc<Listener>> {
        let bind = self.bind(bind)?;
        let host = sni.and_then(crate::hostname::normalize_host);
        bind.select(host.as_deref()).cloned()
    }

    /// The UDP bind for a local socket address (a UDP and a TCP bind may
    /// share an address).
    pub fn datagram_bind(&self, addr: SocketAddr) -> Option<&Bind> {
        self.binds
            .iter()
            .find(|b| b.addr == addr && b.protocol == BindProtocol::Udp)
    }
}

/// What a listening socket carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindProtocol {
    /// Plain HTTP (h1, and h2c with prior knowledge).
    Http,
    /// TLS terminated here, then HTTP (h1 or h2 by ALPN).
    Https,
    /// Plain TCP forwarded to the TCPRoute of the socket's only listener.
    Tcp,
    /// UDP datagrams forwarded per client session to the UDPRoute of the
    /// socket's only listener.
    Udp,
}

/// One socket: an address and the listeners (from any Gateway or ListenerSet)
/// that share it, distinguished by hostname.
#[derive(Debug)]
pub struct Bind {
    /// Local address, port offset applied.
    pub addr: SocketAddr,
    /// Protocol of every listener on this socket.
    pub protocol: BindProtocol,
    /// Listeners, most specific hostname first (exact, then longer wildcard
    /// suffixes, then the catch-all).
    pub listeners: Vec<Arc<Listener>>,
    /// Hostname lookup into `listeners`, so selection does not scan them.
    index: HostIndex,
}

impl Bind {
    /// A bind serving `listeners`, given most specific hostname first; the
    /// first listener of each hostname wins.
    pub fn new(addr: SocketAddr, protocol: BindProtocol, listeners: Vec<Arc<Listener>>) -> Self {
        let index = HostIndex::new(listeners.iter().map(|l| l.hostname.as_deref()));
        Self {
            addr,
            protocol,
            listeners,
            index,
        }
    }

    /// The listener whose hostname best matches `host` (a normalised SNI or
    /// Host): exact beats wildcard, longer wildcard beats shorter, a listener
    /// without hostname catches the rest. Costs a hash lookup per label of
    /// `host`, whatever the number of listeners.
    pub fn select(&self, host: Option<&str>) -> Option<&Arc<Listener>> {
        match host {
            Some(h) => self.index.lookup(h).and_then(|i| self.listeners.get(i)),
            None => {
                // No SNI / Host: only unambiguous when one listener serves here.
                if self.listeners.len() == 1 {
                    self.listeners.first()
                } else {
                    self.listeners.iter().find(|l| l.hostname.is_none())
                }
            }
        }
    }
}

/// Hostname patterns indexed for lookup: exact names, wildcard suffixes
/// (`*.example.com` is stored as `.example.com`) and the catch-all.
#[derive(Debug, Default)]
pub struct HostIndex {
    exact: crate::hashing::FastMap<String, usize>,
    wildcard: crate::hashing::FastMap<String, usize>,
    catch_all: Option<usize>,
}

impl HostIndex {
    /// An index over `patterns` (none = catch-all); for a pattern given
    /// twice the first position is kept.
    pub fn new<'a>(patterns: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut index = HostIndex::default();
        for (i, p) in patterns.into_iter().enumerate() {
            match p {
                Some(p) => match p.strip_prefix('*') {
                    Some(suffix) => {
                        index.wildcard.entry(suffix.to_string()).or_insert(i);
                    }
                    None => {
                        index.exact.entry(p.to_string()).or_insert(i);
                    }
                },
                None => {
                    index.catch_all.get_or_insert(i);
                }
            }
        }
        index
    }

    /// The position of the pattern that best matches `host`: exact, then
    /// the longest wildcard suffix (a wildcard needs at least one character
    /// before its suffix), then the catch-all.
    pub fn lookup(&self, host: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        if !self.wildcard.is_empty() {
            if let Some(i) = crate::hostname::wildcard_suffixes(host)
                .find_map(|suffix| self.wildcard.get(suffix).copied())
            {
                return Some(i);
            }
        }
        self.catch_all
    }
}

/// Identifies a listener: the Gateway, and the ListenerSet it came from if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerKey {
    /// The Gateway the listener belongs to.
    pub gateway: ObjectKey,
    /// The ListenerSet that contributed it, if not the Gateway itself.
    pub listener_set: Option<ObjectKey>,
    /// Listener (section) name.
    pub name: String,
}

impl fmt::Display for ListenerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.listener_set {
            Some(ls) => write!(f, "{}/{}", ls, self.name),
            None => write!(f, "{}/{}", self.gateway, self.name),
        }
    }
}

/// A certificate and key parsed once, when its Secret's bytes entered a
/// compile (`crate::compile` keeps it while the bytes stay the same): what
/// handshakes serve, and what status, expiry checks and the certificate
/// metrics read, with no parse of their own.
#[derive(Debug)]
pub struct ParsedCertificate {
    /// The chain and signing key, as rustls serves them.
    pub key: Arc<rustls::sign::CertifiedKey>,
    /// Subject, SANs, validity and serial of the leaf.
    pub leaf: crate::tls::certs::CertInfo,
    /// The same of every certificate after the leaf, in chain order.
    pub intermediates: Vec<crate::tls::certs::CertInfo>,
}

impl ParsedCertificate {
    /// Every certificate of the chain, leaf first.
    pub fn chain(&self) -> impl Iterator<Item = &crate::tls::certs::CertInfo> {
        std::iter::once(&self.leaf).chain(&self.intermediates)
    }
}

/// A certificate a listener serves, and the Secret it came from.
#[derive(Debug, Clone)]
pub struct ServedCertificate {
    /// The Secret named by the listener's `certificateRefs` (or filled by
    /// the issuer).
    pub secret: ObjectKey,
    /// The parsed pair, shared by every listener serving the same bytes.
    pub parsed: Arc<ParsedCertificate>,
}

/// A programmed listener.
#[derive(Debug)]
pub struct Listener {
    /// Which listener this is.
    pub key: ListenerKey,
    /// Hostname pattern; none matches every host.
    pub hostname: Option<String>,
    /// The port as written in the manifest (before the offset), used for
    /// redirects and `X-Forwarded-*` headers.
    pub port: u16,
    /// HTTP or HTTPS.
    pub protocol: BindProtocol,
    /// Certificates to choose from by the client's signature schemes
    /// (HTTPS), each with the Secret it came from and its parsed chain.
    pub certificates: Vec<ServedCertificate>,
    /// The TLS server configuration of a terminating listener: its
    /// certificates, client-certificate validation and ALPN.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Client-certificate validation, when the Gateway configures it: what
    /// turns a presented certificate into the identity header.
    pub client_auth: Option<Arc<crate::tls::client_auth::ClientAuth>>,
    /// Route table of the HTTPRoutes and GRPCRoutes attached here.
    pub routes: RouteTable,
    /// For a listener that forwards byte streams rather than HTTP requests
    /// (`TLS` listeners with TLSRoutes), how and where: `routes` is unused.
    pub streams: Option<Streams>,
}

/// How a stream listener treats the bytes of a connection before forwarding
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamMode {
    /// `TLS` listener, mode `Passthrough`: forwarded unterminated, chosen by
    /// the SNI of the ClientHello.
    Passthrough,
    /// `TLS` listener, mode `Terminate`: TLS ends here (with the listener's
    /// `certificates`), the decrypted stream is forwarded.
    Terminate,
    /// `TCP` (or `UDP`) listener: bytes (datagrams) forwarded as received.
    Plain,
}

/// The stream routes of one listener.
#[derive(Debug)]
pub struct Streams {
    /// What happens to TLS on this listener.
    pub mode: StreamMode,
    /// Where connections go.
    pub table: StreamTable,
}

/// Stream routes (TLSRoutes, TCPRoutes) of a listener, most specific
/// hostname first.
#[derive(Debug, Default)]
pub struct StreamTable {
    /// Entries, exact hostnames first, then longer wildcards, then entries
    /// without hostname.
    pub entries: Vec<StreamEntry>,
}

impl StreamTable {
    /// A table of `entries`, sorted most specific hostname first (then by
    /// route order).
    pub fn new(mut entries: Vec<StreamEntry>) -> Self {
        entries.sort_by(|a, b| {
            specificity(a.hostname.as_deref())
                .cmp(&specificity(b.hostname.as_deref()))
                .then_with(|| a.order.cmp(&b.order))
        });
        Self { entries }
    }

    /// The entry for a normalised SNI: exact beats wildcard, longer wildcard
    /// beats shorter, an entry without hostname catches the rest. Without
    /// SNI only an entry without hostname matches.
    pub fn select(&self, sni: Option<&str>) -> Option<&StreamEntry> {
        self.entries.iter().find(|e| match (&e.hostname, sni) {
            (None, _) => true,
            (Some(p), Some(h)) => crate::hostname::matches(p, h),
            (Some(_), None) => false,
        })
    }
}

/// Sort rank of a hostname pattern: exact (longer first), wildcard (longer
/// first), none.
fn specificity(h: Option<&str>) -> (u8, std::cmp::Reverse<usize>) {
    match h {
        Some(h) if crate::hostname::is_wildcard(h) => (1, std::cmp::Reverse(h.len())),
        Some(h) => (0, std::cmp::Reverse(h.len())),
        None => (2, std::cmp::Reverse(0)),
    }
}

/// One route hostname on a stream listener.
#[derive(Debug)]
pub struct StreamEntry {
    /// SNI pattern (intersection of route and listener hostnames); none
    /// matches every SNI and connections without one.
    pub hostname: Option<String>,
    /// The route (TLSRoute or TCPRoute).
    pub route: ObjectKey,
    /// Tie-break between routes of equal hostname: creation time, then
    /// `namespace/name` (older first).
    pub order: (String, String, String),
    /// Weighted backends of every rule; `Invalid` targets close connections.
    pub backends: Vec<WeightedBackend>,
    /// Write a PROXY protocol v2 header (client and gateway addresses) to
    /// the backend before any other byte: the route's
    /// `portcullis.dev/proxy-protocol: v2` annotation.
    pub proxy_protocol: bool,
}

/// Identifies the rule a request matched, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleKey {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: RouteKind,
    /// The route.
    pub route: ObjectKey,
    /// Index of the rule in the route.
    pub index: usize,
    /// The rule's name, if it has one.
    pub name: Option<String>,
}

impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.route, self.index)
    }
}

/// Kinds of routes the HTTP router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// HTTPRoute.
    Http,
    /// GRPCRoute.
    Grpc,
    /// TLSRoute (stream listeners only; never in an HTTP route table).
    Tls,
    /// TCPRoute (`TCP` listeners only).
    Tcp,
    /// UDPRoute (`UDP` listeners only).
    Udp,
}

impl RouteKind {
    /// The Gateway API kind name (`HTTPRoute`, `TCPRoute`...).
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Tcp => "TCPRoute",
            RouteKind::Udp => "UDPRoute",
        }
    }
}

/// What to do with a request that matched a rule.
#[derive(Debug)]
pub struct Rule {
    /// Which rule.
    pub key: RuleKey,
    /// Request and response filters, in manifest order.
    pub filters: Vec<Filter>,
    /// Weighted backends. Empty with no redirect filter means 500.
    pub backends: Vec<WeightedBackend>,
    /// Sum of backend weights (0 means every weight was 0: answer 500).
    pub total_weight: u32,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
}

/// `HTTPRoute.rules[].timeouts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Whole request, from first byte received to last response byte sent
    /// (we apply it until response headers arrive, across retries).
    pub request: Option<Duration>,
    /// One attempt to the backend.
    pub backend_request: Option<Duration>,
}

/// `HTTPRoute.rules[].retry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Status codes that trigger a retry.
    pub codes: Vec<u16>,
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Wait between attempts.
    pub backoff: Duration,
}

/// A backendRef after resolution.
#[derive(Debug)]
pub struct WeightedBackend {
    /// Weight.
    pub weight: u32,
    /// Where requests go.
    pub target: BackendTarget,
    /// Filters that apply only when this backend is picked.
    pub filters: Vec<Filter>,
}

/// Where a backendRef sends requests.
#[derive(Debug, Clone)]
pub enum BackendTarget {
    /// A Service port resolved to endpoints.
    Service(Arc<Upstream>),
    /// A response made by the gateway itself (`portcullis.dev/StaticResponse`).
    Static(Arc<StaticResponse>),
    /// The reference is invalid (not found, not permitted, unknown kind):
    /// requests routed here get 500, as the specification requires.
    Invalid,
}

/// A pool of endpoints for one Service port.
#[derive(Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `namespace/service:port`, for logs, metrics and pooling.
    pub name: String,
    /// Ready endpoint addresses; empty means 503.
    pub endpoints: Vec<SocketAddr>,
    /// Protocol to speak.
    pub protocol: UpstreamProtocol,
    /// TLS toward the endpoints (a BackendTLSPolicy targets this port).
    pub tls: Option<Arc<UpstreamTls>>,
}

/// How the gateway speaks TLS to an upstream (BackendTLSPolicy).
#[derive(Debug)]
pub struct UpstreamTls {
    /// The policy this comes from.
    pub policy: ObjectKey,
    /// The SNI sent (the policy's `validation.hostname`).
    pub server_name: rustls::pki_types::ServerName<'static>,
    /// Client configuration (trust, names, ALPN) without a client
    /// certificate.
    pub config: Arc<rustls::ClientConfig>,
    /// The same configuration presenting the client certificate of a
    /// Gateway (`spec.tls.backend.clientCertificateRef`), per Gateway.
    pub gateway_configs: std::collections::BTreeMap<ObjectKey, Arc<rustls::ClientConfig>>,
}

impl UpstreamTls {
    /// The configuration for requests that came through `gateway`.
    pub fn config_for(&self, gateway: Option<&ObjectKey>) -> &Arc<rustls::ClientConfig> {
        gateway
            .and_then(|g| self.gateway_configs.get(g))
            .unwrap_or(&self.config)
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.policy == other.policy
            && self.server_name == other.server_name
            && Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for UpstreamTls {}

/// Protocol spoken to an upstream, from the Service port's `appProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (default; also carries WebSocket upgrades).
    Http1,
    /// Cleartext HTTP/2 with prior knowledge (`kubernetes.io/h2c`).
    H2c,
    /// WebSocket over HTTP/1.1 (`kubernetes.io/ws`).
    WebSocket,
}

/// A fixed response answered by the gateway (`portcullis.dev/StaticResponse`
/// backendRef kind, defined by a ConfigMap with keys `status`, `body` and
/// optional `contentType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticResponse {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: bytes::Bytes,
}

#[cfg(test)]
mod tests {
    use super::HostIndex;

    /// The rule the index replaces: the first matching pattern in
    /// most-specific-first order.
    fn linear(patterns: &[Option<&str>], host: &str) -> Option<usize> {
        patterns.iter().position(|p| match p {
            Some(p) => crate::hostname::matches(p, host),
            None => true,
        })
    }

    #[test]
    fn host_index_agrees_with_the_ordered_scan() {
        let patterns = [
            Some("a.example.com"),
            Some("example.com"),
            Some("*.b.example.com"),
            Some("*.example.com"),
            Some("*.com"),
            None,
        ];
        let index = HostIndex::new(patterns.iter().copied());
        for host in [
            "a.example.com",
            "example.com",
            "x.b.example.com",
            "b.example.com",
            "y.x.b.example.com",
            "z.example.com",
            "com",
            "other.com",
            "other.org",
            ".example.com",
            "",
        ] {
            assert_eq!(index.lookup(host), linear(&patterns, host), "{host}");
        }
    }

    #[test]
    fn without_catch_all_an_unmatched_host_selects_nothing() {
        let patterns = [Some("*.example.com"), Some("a.test")];
        let index = HostIndex::new(patterns.iter().copied());
        assert_eq!(index.lookup("example.com"), None);
        assert_eq!(index.lookup("b.test"), None);
        assert_eq!(index.lookup("q.example.com"), Some(0));
    }

    #[test]
    fn the_first_of_duplicate_patterns_wins() {
        let index = HostIndex::new([Some("a.test"), Some("a.test"), None, None]);
        assert_eq!(index.lookup("a.test"), Some(0));
        assert_eq!(index.lookup("b.test"), Some(2));
    }
}
