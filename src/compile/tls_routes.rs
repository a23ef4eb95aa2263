//! TLSRoutes compiled for TLS listeners (Passthrough and Terminate): weighted
//! Service backends (resolved like HTTPRoute backends, ReferenceGrants from
//! kind `TLSRoute`), the PROXY protocol annotation, and the stream entries
//! each accepted listener receives.

use super::backends::{self, RouteRef};
use super::{Ctx, Problem};
use crate::dataplane::{BackendTarget, StreamEntry, WeightedBackend};
use crate::model::{ObjectMeta, TlsRoute};
use crate::status::Reason;

/// A TLSRoute after backend resolution.
#[derive(Debug)]
pub(crate) struct CompiledTls {
    /// `(weight, target)` of every backendRef of every rule.
    pub backends: Vec<(u32, BackendTarget)>,
    /// Why the route cannot be accepted, if so.
    pub invalid: Option<Problem>,
    /// The first reference that did not resolve.
    pub unresolved: Option<Problem>,
}

/// Resolves the backends of a TLSRoute. Only core Services are valid
/// backends; anything else (or an unresolved Service) gets an `Invalid`
/// target, whose share of connections is closed.
pub(crate) fn compile_tls(route: &TlsRoute, ctx: &mut Ctx<'_>) -> CompiledTls {
    let mut out = CompiledTls {
        backends: Vec::new(),
        invalid: None,
        unresolved: None,
    };
    if let Err(p) = super::l4_routes::proxy_protocol(&route.metadata) {
        out.invalid = Some(p);
    }
    let from = RouteRef {
        kind: "TLSRoute",
        namespace: &route.metadata.namespace,
    };
    for rule in &route.spec.rules {
        for b in &rule.backend_refs {
            let Ok(weight) = u32::try_from(b.weight.unwrap_or(1)) else {
                out.invalid.get_or_insert(Problem::new(
                    Reason::UnsupportedValue,
                    "backend weight must not be negative",
                ));
                continue;
            };
            let group = b.backend.group.as_deref().unwrap_or("");
            let kind = b.backend.kind.as_deref().unwrap_or("Service");
            let target = if !group.is_empty() || kind != "Service" {
                Err(Problem::new(
                    Reason::InvalidKind,
                    format!("backend kind {group}/{kind} is not supported on a TLSRoute"),
                ))
            } else {
                backends::resolve(ctx, from, &b.backend)
            };
            let target = target.unwrap_or_else(|p| {
                out.unresolved.get_or_insert(p);
                BackendTarget::Invalid
            });
            out.backends.push((weight, target));
        }
    }
    out
}

/// The passthrough entry of `route` for one hostname on one listener.
pub(crate) fn entry(
    meta: &ObjectMeta,
    hostname: Option<String>,
    compiled: &CompiledTls,
) -> StreamEntry {
    StreamEntry {
        hostname,
        route: meta.key(),
        order: (
            meta.creation_timestamp.clone().unwrap_or_default(),
            meta.namespace.clone(),
            meta.name.clone(),
        ),
        backends: compiled
            .backends
            .iter()
            .map(|(weight, target)| WeightedBackend {
                weight: *weight,
                target: target.clone(),
                filters: Vec::new(),
            })
            .collect(),
        proxy_protocol: super::l4_routes::proxy_protocol(meta).unwrap_or(false),
    }
}
