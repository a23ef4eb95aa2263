//! backendRef resolution: Services through their EndpointSlices (as kube-proxy
//! would), `portcullis.dev/StaticResponse` objects, ReferenceGrant checks for
//! references into other namespaces, and the shared [`Upstream`] pools.

use super::backend_tls::PolicyEffect;
use super::refs::{self, Referrer, Target, GATEWAY_GROUP};
use super::{Ctx, Problem};
use crate::dataplane::{BackendTarget, StaticResponse, Upstream, UpstreamProtocol};
use crate::model::core::{EndpointSlice, ServicePort, SERVICE_NAME_LABEL};
use crate::model::route::BackendObjectReference;
use crate::model::{ObjectKey, Service};
use crate::status::Reason;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Group of portcullis' own kinds.
const PORTCULLIS_GROUP: &str = "portcullis.dev";

/// The route that holds a backendRef: its kind and namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteRef<'a> {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'a str,
    /// The route's namespace.
    pub namespace: &'a str,
}

/// Resolves a backendRef; an `Err` carries the ResolvedRefs reason and the
/// caller routes the backend's share of requests to a 500.
pub(crate) fn resolve(
    ctx: &mut Ctx<'_>,
    route: RouteRef<'_>,
    backend: &BackendObjectReference,
) -> Result<BackendTarget, Problem> {
    let group = backend.group.as_deref().unwrap_or("");
    let kind = backend.kind.as_deref().unwrap_or("Service");
    let ns = backend.namespace.as_deref().unwrap_or(route.namespace);
    let name = &backend.name;
    let is_service = group.is_empty() && kind == "Service";
    let is_static = group == PORTCULLIS_GROUP && kind == "StaticResponse";
    if !is_service && !is_static {
        return Err(Problem::new(
            Reason::InvalidKind,
            format!("backend kind {group}/{kind} is not supported"),
        ));
    }
    let from = Referrer {
        group: GATEWAY_GROUP,
        kind: route.kind,
        namespace: route.namespace,
    };
    let to = Target {
        group,
        kind,
        namespace: ns,
        name,
    };
    if !refs::is_permitted(ctx.resources, from, to) {
        return Err(Problem::new(
            Reason::RefNotPermitted,
            format!("no ReferenceGrant allows a reference to {kind} {ns}/{name}"),
        ));
    }
    if is_static {
        return static_response(ctx, ns, name).map(BackendTarget::Static);
    }
    let service = ctx.resources.service(ns, name).ok_or_else(|| {
        Problem::new(
            Reason::BackendNotFound,
            format!("Service {ns}/{name} not found"),
        )
    })?;
    let port = backend.port.ok_or_else(|| {
        Problem::new(
            Reason::BackendNotFound,
            format!("backendRef to Service {ns}/{name} has no port"),
        )
    })?;
    upstream(ctx, service, port)
}

/// A weighted backendRef of a stream route (TLSRoute, TCPRoute, UDPRoute):
/// `(weight, target)`, where only core Services are valid targets and an
/// unresolved one becomes `Invalid` with its problem recorded in
/// `unresolved`; `Err` when the weight is negative (the route is invalid).
pub(crate) fn stream_backend(
    ctx: &mut Ctx<'_>,
    route: RouteRef<'_>,
    weight: Option<i64>,
    backend: &BackendObjectReference,
    unresolved: &mut Option<Problem>,
) -> Result<(u32, BackendTarget), Problem> {
    let weight = u32::try_from(weight.unwrap_or(1)).map_err(|_| {
        Problem::new(
            Reason::UnsupportedValue,
            "backend weight must not be negative",
        )
    })?;
    let group = backend.group.as_deref().unwrap_or("");
    let kind = backend.kind.as_deref().unwrap_or("Service");
    let target = if !group.is_empty() || kind != "Service" {
        Err(Problem::new(
            Reason::InvalidKind,
            format!(
                "backend kind {group}/{kind} is not supported on a {}",
                route.kind
            ),
        ))
    } else {
        resolve(ctx, route, backend)
    };
    let target = target.unwrap_or_else(|p| {
        unresolved.get_or_insert(p);
        BackendTarget::Invalid
    });
    Ok((weight, target))
}

fn static_response(
    ctx: &mut Ctx<'_>,
    ns: &str,
    name: &str,
) -> Result<Arc<StaticResponse>, Problem> {
    let key = ObjectKey::new(ns, name);
    if let Some(s) = ctx.statics.get(&key) {
        return Ok(s.clone());
    }
    let spec = find_static(ctx, &key).ok_or_else(|| {
        Problem::new(
            Reason::BackendNotFound,
            format!("StaticResponse {key} not found"),
        )
    })?;
    let status = u16::try_from(spec.status)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| {
            Problem::new(
                Reason::BackendNotFound,
                format!("StaticResponse {key} has an invalid status"),
            )
        })?;
    let response = Arc::new(StaticResponse {
        status,
        content_type: spec.content_type,
        body: bytes::Bytes::from(spec.body),
    });
    ctx.statics.insert(key, response.clone());
    Ok(response)
}

/// The fields of a `StaticResponse` object.
struct StaticSpec {
    status: i64,
    body: String,
    content_type: String,
}

/// Finds a `portcullis.dev/StaticResponse` object.
fn find_static(ctx: &Ctx<'_>, key: &ObjectKey) -> Option<StaticSpec> {
    ctx.resources
        .static_responses
        .iter()
        .find(|s| s.metadata.key() == *key)
        .map(|s| StaticSpec {
            status: s.spec.status,
            body: s.spec.body.clone(),
            content_type: s.spec.content_type.clone(),
        })
}

/// The upstream of a Service port, shared by every backendRef to it; a port
/// whose BackendTLSPolicy is invalid is `Invalid` (requests fail rather than
/// go out in cleartext).
fn upstream(ctx: &mut Ctx<'_>, service: &Service, port: i64) -> Result<BackendTarget, Problem> {
    let meta = &service.metadata;
    let name = format!("{}/{}:{port}", meta.namespace, meta.name);
    if let Some(u) = ctx.upstreams.get(&name) {
        return Ok(BackendTarget::Service(u.clone()));
    }
    if service.spec.kind.as_deref() == Some("ExternalName") {
        return Err(Problem::new(
            Reason::BackendNotFound,
            format!(
                "Service {} is of type ExternalName, which is not supported",
                meta.key()
            ),
        ));
    }
    let service_port = service
        .spec
        .ports
        .iter()
        .find(|p| p.port == port)
        .ok_or_else(|| {
            Problem::new(
                Reason::BackendNotFound,
                format!("Service {} has no port {port}", meta.key()),
            )
        })?;
    let slices: Vec<&EndpointSlice> = ctx
        .resources
        .endpoint_slices
        .iter()
        .filter(|s| {
            s.metadata.namespace == meta.namespace
                && s.metadata.labels.get(SERVICE_NAME_LABEL) == Some(&meta.name)
        })
        .map(Arc::as_ref)
        .collect();
    let (endpoints, slice_protocol) = endpoints(&slices, service_port);
    let protocol = upstream_protocol(
        service_port
            .app_protocol
            .as_deref()
            .or(slice_protocol.as_deref()),
    );
    let tls = match ctx.backend_tls.for_port(
        &meta.namespace,
        &meta.name,
        service_port.name.as_deref(),
    ) {
        None => None,
        Some(PolicyEffect::Broken(policy)) => {
            tracing::debug!(upstream = %name, %policy, "BackendTLSPolicy invalid; backend disabled");
            return Ok(BackendTarget::Invalid);
        }
        Some(PolicyEffect::Tls(settings)) => match ctx.backend_tls.upstream_tls(settings, protocol)
        {
            Ok(tls) => Some(tls),
            Err(error) => {
                tracing::warn!(upstream = %name, %error, "cannot build backend TLS configuration");
                return Ok(BackendTarget::Invalid);
            }
        },
    };
    let u = Arc::new(Upstream {
        name: name.clone(),
        endpoints,
        protocol,
        tls,
    });
    ctx.upstreams.insert(name, u.clone());
    Ok(BackendTarget::Service(u))
}

fn same_port_name(a: Option<&str>, b: Option<&str>) -> bool {
    a.unwrap_or("") == b.unwrap_or("")
}

/// Ready endpoint addresses for a Service port, sorted and deduplicated, and
/// the appProtocol the slices declare for that port.
fn endpoints(slices: &[&EndpointSlice], port: &ServicePort) -> (Vec<SocketAddr>, Option<String>) {
    let mut out = Vec::new();
    let mut app_protocol = None;
    for slice in slices {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let Some(slice_port) = slice
            .ports
            .iter()
            .find(|p| same_port_name(p.name.as_deref(), port.name.as_deref()))
        else {
            continue;
        };
        let Some(number) = slice_port
            .port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
        else {
            continue;
        };
        app_protocol = app_protocol.or_else(|| slice_port.app_protocol.clone());
        for e in slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.ready != Some(false))
        {
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, number));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    (out, app_protocol)
}

fn upstream_protocol(app_protocol: Option<&str>) -> UpstreamProtocol {
    match app_protocol {
        Some("kubernetes.io/h2c") => UpstreamProtocol::H2c,
        Some("kubernetes.io/ws") => UpstreamProtocol::WebSocket,
        _ => UpstreamProtocol::Http1,
    }
}
