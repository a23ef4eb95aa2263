//! Listeners of Gateways and ListenerSets: protocol, port, hostname and
//! allowed route kinds validation, certificate resolution for HTTPS, conflicts
//! between listeners sharing a socket, and the listener status conditions.

use super::cert_cache::{CertCache, Outcome, Parsed};
use super::gateway::World;
use super::refs::{self, Referrer, Target, GATEWAY_GROUP};
use super::{Ctx, Problem};
use crate::dataplane::router::RouteEntry;
use crate::dataplane::{BindProtocol, ListenerKey, RouteKind, StreamMode};
use crate::model::gateway::{Listener, SecretObjectReference, TlsMode};
use crate::model::{Gateway, ListenerSet, ObjectKey};
use crate::status::{Condition, ConditionType, ListenerStatus, Reason};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Listener protocols, grouped as conflicts see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `HTTP`.
    Http,
    /// `HTTPS`.
    Https,
    /// `TLS` (Passthrough or Terminate).
    Tls,
    /// `TCP` (TCPRoutes).
    Tcp,
    /// `UDP` (UDPRoutes).
    Udp,
    /// Anything else.
    Unknown,
}

impl Family {
    fn parse(protocol: &str) -> Self {
        match protocol {
            "HTTP" => Family::Http,
            "HTTPS" => Family::Https,
            "TLS" => Family::Tls,
            "TCP" => Family::Tcp,
            "UDP" => Family::Udp,
            _ => Family::Unknown,
        }
    }

    /// Listeners of one group may share a socket, told apart by hostname.
    fn group(self) -> u8 {
        match self {
            Family::Http => 0,
            Family::Https | Family::Tls => 1,
            Family::Tcp => 2,
            Family::Udp => 3,
            Family::Unknown => 4,
        }
    }

    fn bind_protocol(self) -> Option<BindProtocol> {
        match self {
            Family::Http => Some(BindProtocol::Http),
            // TLS listeners share HTTPS sockets: the front reads the
            // ClientHello and then terminates or forwards.
            Family::Https | Family::Tls => Some(BindProtocol::Https),
            Family::Tcp => Some(BindProtocol::Tcp),
            Family::Udp => Some(BindProtocol::Udp),
            Family::Unknown => None,
        }
    }

    /// The route kinds a listener of this family serves, the default of
    /// `allowedRoutes.kinds`.
    fn route_kinds(self) -> &'static [RouteKind] {
        match self {
            Family::Http | Family::Https => &[RouteKind::Http, RouteKind::Grpc],
            Family::Tls => &[RouteKind::Tls],
            Family::Tcp => &[RouteKind::Tcp],
            Family::Udp => &[RouteKind::Udp],
            Family::Unknown => &[],
        }
    }
}

/// Order in which listeners claim a socket (earlier wins a conflict):
/// Gateway listeners before ListenerSet listeners, older owners first, then
/// owner `namespace/name`, then listener index.
type Precedence = (bool, String, String, String, usize);

/// One listener being compiled.
pub(crate) struct ListenerState<'a> {
    /// Identity.
    pub key: ListenerKey,
    /// The manifest.
    pub spec: &'a Listener,
    /// Namespace of the Gateway or ListenerSet that declares it.
    pub owner_namespace: String,
    /// Index of its ListenerSet in [`World::sets`], if any.
    pub listener_set: Option<usize>,
    precedence: Precedence,
    /// Local address (port offset applied), when the port is usable and
    /// the Gateway has an address.
    pub socket: Option<SocketAddr>,
    family: Family,
    /// Route kinds that may attach.
    pub kinds: Vec<RouteKind>,
    /// Why the listener is not accepted.
    pub rejected: Option<Problem>,
    /// Why it lost a conflict.
    pub conflicted: Option<Problem>,
    /// Why a reference did not resolve.
    pub unresolved: Option<Problem>,
    /// Why a certificateRef's Secret no longer gives a usable certificate
    /// although the listener still serves the last one it gave: reported
    /// like `unresolved`, but the listener stays programmed.
    pub stale_certificate: Option<Problem>,
    /// Certificates to serve (HTTPS), with the Secrets they came from.
    pub certificates: Vec<crate::dataplane::ServedCertificate>,
    /// Routes accepted on this listener.
    pub attached_routes: u32,
    /// Stream entries of the TLSRoutes accepted here (TLS listeners).
    pub streams: Vec<crate::dataplane::StreamEntry>,
    /// Route table entries of the routes accepted here.
    pub entries: Vec<RouteEntry>,
    /// The Gateway the listener belongs to (for Gateway-wide TLS settings).
    pub gateway: &'a Gateway,
    /// Client-certificate validation (frontend validation), if configured.
    pub client_auth: Option<Arc<crate::tls::client_auth::ClientAuth>>,
}

impl<'a> ListenerState<'a> {
    /// A listener not validated yet.
    pub(crate) fn new(
        gw: &'a Gateway,
        set: Option<(usize, &'a ListenerSet)>,
        spec: &'a Listener,
        index: usize,
        ip: Option<IpAddr>,
    ) -> Self {
        let owner = set.map(|(_, s)| &s.metadata).unwrap_or(&gw.metadata);
        let precedence = (
            set.is_some(),
            owner.creation_timestamp.clone().unwrap_or_default(),
            owner.namespace.clone(),
            owner.name.clone(),
            index,
        );
        Self {
            key: ListenerKey {
                gateway: gw.metadata.key(),
                listener_set: set.map(|(_, s)| s.metadata.key()),
                name: spec.name.clone(),
            },
            spec,
            gateway: gw,
            client_auth: None,
            owner_namespace: owner.namespace.clone(),
            listener_set: set.map(|(i, _)| i),
            precedence,
            socket: ip.map(|ip| SocketAddr::new(ip, 0)),
            family: Family::parse(&spec.protocol),
            kinds: Vec::new(),
            rejected: None,
            conflicted: None,
            unresolved: None,
            stale_certificate: None,
            certificates: Vec::new(),
            attached_routes: 0,
            streams: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Accepted: valid and not conflicted; routes may attach.
    pub(crate) fn is_accepted(&self) -> bool {
        self.rejected.is_none() && self.conflicted.is_none()
    }

    /// Programmed: accepted, with an address, serving some route kind,
    /// and (HTTPS) holding a certificate.
    pub(crate) fn is_programmed(&self) -> bool {
        self.is_accepted()
            && self.socket.is_some()
            && !self.kinds.is_empty()
            && self
                .unresolved
                .as_ref()
                .is_none_or(|p| p.reason == Reason::InvalidRouteKinds)
            && (!self.terminates_tls() || !self.certificates.is_empty())
    }

    /// The protocol of the socket, for programmed listeners.
    pub(crate) fn bind_protocol(&self) -> Option<BindProtocol> {
        self.family.bind_protocol()
    }

    /// How a stream listener forwards connections: `TLS` listeners in
    /// `Passthrough` or `Terminate` mode (the default); none for HTTP(S).
    pub(crate) fn stream_mode(&self) -> Option<StreamMode> {
        if matches!(self.family, Family::Tcp | Family::Udp) {
            return Some(StreamMode::Plain);
        }
        if self.family != Family::Tls {
            return None;
        }
        match self.spec.tls_mode() {
            TlsMode::Passthrough => Some(StreamMode::Passthrough),
            TlsMode::Terminate | TlsMode::Unknown(_) => Some(StreamMode::Terminate),
        }
    }

    /// Whether TLS ends at this listener (HTTPS, or TLS in Terminate mode),
    /// so it needs certificates.
    pub(crate) fn terminates_tls(&self) -> bool {
        self.family == Family::Https || self.stream_mode() == Some(StreamMode::Terminate)
    }

    /// Hostname pattern, if any. `TCP` and `UDP` listeners have none: the
    /// specification says their `hostname` is ignored.
    pub(crate) fn hostname(&self) -> Option<&str> {
        if matches!(self.family, Family::Tcp | Family::Udp) {
            return None;
        }
        self.spec.hostname.as_deref()
    }

    /// The referrer kind for ReferenceGrants (`Gateway` or `ListenerSet`).
    fn referrer_kind(&self) -> &'static str {
        if self.listener_set.is_some() {
            "ListenerSet"
        } else {
            "Gateway"
        }
    }
}

/// Validates every listener: protocol, port, hostname, kinds and certificates.
/// The certificates of all listeners are parsed in one batch through `certs`
/// (in parallel, reusing the previous compile's parses); each listener's
/// outcome is the same as if it were validated alone.
pub(crate) fn validate_all(world: &mut World<'_>, ctx: &Ctx<'_>, certs: &mut CertCache) {
    let terminating: Vec<usize> = (0..world.listeners.len())
        .filter(|&i| validate(&mut world.listeners[i], ctx))
        .collect();
    let mut pairs: Vec<Pair<'_>> = Vec::new();
    let located: Vec<(usize, Vec<Located>)> = terminating
        .into_iter()
        .map(|i| {
            (
                i,
                locate_certificates(&mut world.listeners[i], ctx, &mut pairs),
            )
        })
        .collect();
    let parsed = certs.resolve(&pairs);
    // Bad content in a Secret never replaces a certificate that was being
    // served by nothing: the last good one is served on, and the status
    // says the reference is invalid.
    let mut good: HashMap<ObjectKey, Arc<Parsed>> = HashMap::new();
    for (i, refs) in located {
        let l = &mut world.listeners[i];
        for r in refs {
            let (name, pair) = match r {
                Ok(located) => located,
                Err(p) => {
                    l.unresolved.get_or_insert(p);
                    continue;
                }
            };
            let outcome = &parsed[pair];
            let served = match finish_certificate(&name, outcome, ctx) {
                Ok(current) => Some(current),
                Err(p) => {
                    let previous = certs.last_good(&name).filter(|prev| !is_expired(prev, ctx));
                    match previous {
                        Some(prev) => {
                            l.stale_certificate.get_or_insert(Problem::new(
                                p.reason,
                                format!("{}; still serving its last valid certificate", p.message),
                            ));
                            Some(prev)
                        }
                        None => {
                            l.unresolved.get_or_insert(p);
                            None
                        }
                    }
                }
            };
            if let Some(parsed) = served {
                l.certificates.push(crate::dataplane::ServedCertificate {
                    secret: name.clone(),
                    parsed: parsed.clone(),
                });
                good.insert(name, parsed);
            }
        }
        super::frontend_tls::resolve(l, ctx);
    }
    certs.set_last_good(good);
}

/// Validates everything but certificates; true when the listener goes on to
/// certificate and frontend TLS resolution (it terminates TLS).
fn validate(l: &mut ListenerState<'_>, ctx: &Ctx<'_>) -> bool {
    let port = u16::try_from(l.spec.port)
        .ok()
        .filter(|p| *p > 0)
        .and_then(|p| p.checked_add(ctx.options.port_offset));
    let Some(port) = port else {
        l.socket = None;
        l.rejected = Some(Problem::new(
            Reason::PortUnavailable,
            format!(
                "port {} plus offset {} is not a usable port",
                l.spec.port, ctx.options.port_offset
            ),
        ));
        return false;
    };
    // Without an address (the pool had none left) the listener is
    // validated all the same; it is only bound nowhere.
    l.socket = l.socket.map(|s| SocketAddr::new(s.ip(), port));
    if l.family.bind_protocol().is_none() {
        l.rejected = Some(Problem::new(
            Reason::UnsupportedProtocol,
            format!("protocol {} is not supported", l.spec.protocol),
        ));
        return false;
    }
    if let Some(h) = l.hostname() {
        if !crate::hostname::is_valid(h) {
            l.rejected = Some(Problem::new(
                Reason::UnsupportedValue,
                format!("invalid hostname {h}"),
            ));
            return false;
        }
    }
    if l.family == Family::Tls {
        if let TlsMode::Unknown(mode) = l.spec.tls_mode() {
            l.rejected = Some(Problem::new(
                Reason::UnsupportedValue,
                format!("unknown TLS mode {mode}"),
            ));
            return false;
        }
    }
    resolve_kinds(l);
    l.terminates_tls()
}

/// `allowedRoutes.kinds`: HTTPRoute and GRPCRoute are supported on HTTP and
/// HTTPS listeners, TLSRoute on TLS listeners; any other kind makes
/// ResolvedRefs False/InvalidRouteKinds.
fn resolve_kinds(l: &mut ListenerState<'_>) {
    let requested = l
        .spec
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_ref())
        .filter(|k| !k.is_empty());
    let supported = l.family.route_kinds();
    let Some(requested) = requested else {
        l.kinds = supported.to_vec();
        return;
    };
    let mut invalid = Vec::new();
    for k in requested {
        let group_ok = k.group.as_deref().is_none_or(|g| g == GATEWAY_GROUP);
        let kind = supported
            .iter()
            .copied()
            .find(|s| group_ok && s.name() == k.kind);
        match kind {
            Some(kind) if !l.kinds.contains(&kind) => l.kinds.push(kind),
            Some(_) => {}
            None => invalid.push(k.kind.clone()),
        }
    }
    if !invalid.is_empty() {
        l.unresolved = Some(Problem::new(
            Reason::InvalidRouteKinds,
            format!("unsupported route kinds: {}", invalid.join(", ")),
        ));
    }
}

/// A certificateRef that names a readable Secret: its `namespace/name` and
/// the index of its `(tls.crt, tls.key)` in the batch being parsed; or why
/// it does not.
type Located = Result<(ObjectKey, usize), Problem>;

/// The `tls.crt` and `tls.key` bytes of a Secret.
type Pair<'a> = (&'a [u8], &'a [u8]);

/// Checks the TLS settings and certificateRefs of a terminating listener,
/// appending the bytes of each readable Secret to `pairs`. Problems that
/// concern the listener as a whole are recorded on it at once.
fn locate_certificates<'a>(
    l: &mut ListenerState<'_>,
    ctx: &Ctx<'a>,
    pairs: &mut Vec<Pair<'a>>,
) -> Vec<Located> {
    let tls = l.spec.tls.as_ref();
    if l.spec.tls_mode() != TlsMode::Terminate {
        l.rejected = Some(Problem::new(
            Reason::UnsupportedValue,
            "HTTPS listeners terminate TLS",
        ));
        return Vec::new();
    }
    let refs = tls
        .map(|t| t.certificate_refs.as_slice())
        .unwrap_or_default();
    if refs.is_empty() {
        l.unresolved.get_or_insert(Problem::new(
            Reason::InvalidCertificateRef,
            "an HTTPS listener needs tls.certificateRefs",
        ));
        return Vec::new();
    }
    refs.iter()
        .map(|r| {
            let (name, pair) = locate_certificate(l, r, ctx)?;
            pairs.push(pair);
            Ok((name, pairs.len() - 1))
        })
        .collect()
}

fn invalid_ref(message: String) -> Problem {
    Problem::new(Reason::InvalidCertificateRef, message)
}

/// The Secret a certificateRef names, if the reference is permitted and the
/// Secret holds a certificate and key: its key and bytes.
fn locate_certificate<'a>(
    l: &ListenerState<'_>,
    r: &SecretObjectReference,
    ctx: &Ctx<'a>,
) -> Result<(ObjectKey, Pair<'a>), Problem> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err(invalid_ref(format!(
            "unsupported certificateRef {group}/{kind}"
        )));
    }
    let ns = r.namespace.as_deref().unwrap_or(&l.owner_namespace);
    let name = ObjectKey::new(ns, &r.name);
    let from = Referrer {
        group: GATEWAY_GROUP,
        kind: l.referrer_kind(),
        namespace: &l.owner_namespace,
    };
    let to = Target {
        group: "",
        kind: "Secret",
        namespace: ns,
        name: &r.name,
    };
    if !refs::is_permitted(ctx.resources, from, to) {
        return Err(Problem::new(
            Reason::RefNotPermitted,
            format!("no ReferenceGrant allows a reference to Secret {name}"),
        ));
    }
    let secret = ctx
        .secret(ns, &r.name)
        .ok_or_else(|| invalid_ref(format!("Secret {name} not found")))?;
    if !secret.kind.is_empty() && secret.kind != "kubernetes.io/tls" {
        return Err(invalid_ref(format!(
            "Secret {name} is of type {}, not kubernetes.io/tls",
            secret.kind
        )));
    }
    let (Some(cert), Some(key)) = (secret.data.get("tls.crt"), secret.data.get("tls.key")) else {
        return Err(invalid_ref(format!(
            "Secret {name} lacks tls.crt or tls.key"
        )));
    };
    Ok((name, (cert.as_slice(), key.as_slice())))
}

/// The certificate of Secret `name` once parsed, or why it cannot be served.
fn finish_certificate(
    name: &ObjectKey,
    parsed: &Outcome,
    ctx: &Ctx<'_>,
) -> Result<Arc<Parsed>, Problem> {
    let parsed = parsed
        .as_ref()
        .map_err(|e| invalid_ref(format!("Secret {name}: {e}")))?;
    // An expired (or not yet valid) certificate is a broken reference: clients
    // reject it anyway, and saying so in status is what gets it fixed.
    if is_expired(parsed, ctx) {
        return Err(invalid_ref(format!(
            "certificate in Secret {name} is outside its validity period"
        )));
    }
    Ok(parsed.clone())
}

/// Whether the certificate is outside its validity period at compile time.
fn is_expired(parsed: &Parsed, ctx: &Ctx<'_>) -> bool {
    ctx.options
        .now
        .is_some_and(|now| parsed.leaf.is_expired_at(now))
}

/// Marks listeners that lose a conflict on a shared socket. Listeners are
/// visited in precedence order; a listener conflicts with an earlier winner
/// of another protocol group (ProtocolConflict) or of the same hostname
/// (HostnameConflict). Invalid listeners never win but can still lose.
pub(crate) fn resolve_conflicts(world: &mut World<'_>) {
    let mut order: Vec<usize> = (0..world.listeners.len())
        .filter(|&i| {
            world.listeners[i].socket.is_some() && world.listeners[i].family != Family::Unknown
        })
        .collect();
    order.sort_by(|&a, &b| {
        world.listeners[a]
            .precedence
            .cmp(&world.listeners[b].precedence)
    });
    let mut winners: HashMap<(SocketAddr, bool), Claims> = HashMap::new();
    for i in order {
        let l = &world.listeners[i];
        let Some(socket) = l.socket else { continue };
        let key = (socket, l.family == Family::Udp);
        let claimed = winners.entry(key).or_default();
        let conflict = conflict_with(&world.listeners, claimed, i);
        let l = &world.listeners[i];
        match conflict {
            Some(p) => world.listeners[i].conflicted = Some(p),
            None if l.rejected.is_none() => {
                claimed.group.get_or_insert((l.family.group(), i));
                claimed
                    .hostnames
                    .insert(l.hostname().map(str::to_string), i);
            }
            None => {}
        }
    }
}

/// What the winners on one socket hold: their protocol group (all winners
/// share one, or they would conflict) and their hostnames. Lookups instead
/// of scans keep 10,000 listeners on one port linear.
#[derive(Default)]
struct Claims {
    /// The group and the first listener that claimed it.
    group: Option<(u8, usize)>,
    /// Hostname (none = catch-all) → the listener that holds it.
    hostnames: HashMap<Option<String>, usize>,
}

fn conflict_with(all: &[ListenerState<'_>], claims: &Claims, i: usize) -> Option<Problem> {
    let l = &all[i];
    if let Some((_, w)) = claims.group.filter(|(g, _)| *g != l.family.group()) {
        return Some(Problem::new(
            Reason::ProtocolConflict,
            format!("listener {} uses another protocol on this port", all[w].key),
        ));
    }
    claims
        .hostnames
        .get(&l.hostname().map(str::to_string))
        .map(|&w| {
            Problem::new(
                Reason::HostnameConflict,
                format!(
                    "listener {} uses the same hostname on this port",
                    all[w].key
                ),
            )
        })
}

/// Status of one listener.
pub(crate) fn status(l: &ListenerState<'_>, generation: i64) -> ListenerStatus {
    let cond = |kind, ok: bool, reason, message: &str| {
        Condition::new(kind, ok, reason, message, generation)
    };
    let accepted = match (&l.conflicted, &l.rejected) {
        (Some(p), _) | (None, Some(p)) => {
            cond(ConditionType::Accepted, false, p.reason, &p.message)
        }
        (None, None) => cond(ConditionType::Accepted, true, Reason::Accepted, ""),
    };
    let resolved = match l.unresolved.as_ref().or(l.stale_certificate.as_ref()) {
        Some(p) => cond(ConditionType::ResolvedRefs, false, p.reason, &p.message),
        None => cond(ConditionType::ResolvedRefs, true, Reason::ResolvedRefs, ""),
    };
    let programmed = if l.is_programmed() {
        cond(ConditionType::Programmed, true, Reason::Programmed, "")
    } else if l.is_accepted() && l.socket.is_none() {
        cond(
            ConditionType::Programmed,
            false,
            Reason::Pending,
            "the Gateway has no address yet",
        )
    } else {
        let reason = l
            .conflicted
            .as_ref()
            .map(|p| p.reason)
            .unwrap_or(Reason::Invalid);
        cond(
            ConditionType::Programmed,
            false,
            reason,
            "the listener is not programmed",
        )
    };
    let conflicted = match &l.conflicted {
        Some(p) => cond(ConditionType::Conflicted, true, p.reason, &p.message),
        None => cond(ConditionType::Conflicted, false, Reason::NoConflicts, ""),
    };
    ListenerStatus {
        name: l.spec.name.clone(),
        attached_routes: l.attached_routes,
        supported_kinds: l.kinds.iter().map(|k| k.name().to_string()).collect(),
        conditions: vec![accepted, resolved, programmed, conflicted],
        certificate_refs: l
            .certificates
            .iter()
            .map(|c| c.secret.to_string())
            .collect(),
    }
}
