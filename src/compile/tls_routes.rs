//! TLSRoutes compiled for TLS listeners (Passthrough and Terminate): weighted
//! Service backends (resolved like HTTPRoute backends, ReferenceGrants from
//! kind `TLSRoute`), the PROXY protocol annotation, and the stream entries
//! each accepted listener receives.

use super::backends::{self, RouteRef};
use super::{Ctx, Problem};
use crate::dataplane::{BackendTarget, StreamEntry, WeightedBackend};
use crate::model::{ObjectMeta, TlsRoute};

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
            match backends::stream_backend(ctx, from, b.weight, &b.backend, &mut out.unresolved) {
                Ok(backend) => out.backends.push(backend),
                Err(p) => {
                    out.invalid.get_or_insert(p);
                }
            }
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
