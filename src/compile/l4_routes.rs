//! TCPRoutes and UDPRoutes: weighted Service backends (resolved like
//! HTTPRoute backends, ReferenceGrants from kind `TCPRoute` / `UDPRoute`),
//! the stream entry each accepted listener receives, and the
//! `portcullis.dev/proxy-protocol` annotation shared with TLSRoutes.
//!
//! Attachment (which listener takes which route, and the oldest-route-wins
//! rule for a listener claimed twice) is left to `super::routes`.

use super::backends::{self, RouteRef};
use super::gateway::World;
use super::routes::RouteView;
use super::{Ctx, Problem};
use crate::dataplane::{BackendTarget, RouteKind, StreamEntry, WeightedBackend};
use crate::model::l4_route::L4RouteSpec;
use crate::model::ObjectMeta;
use crate::status::Reason;
use std::collections::BTreeSet;

/// Route annotation asking the gateway to write a binary PROXY protocol v2
/// header (client and gateway addresses) to the backend before any other
/// byte, so the backend learns the client's address. Read on TCPRoutes and
/// TLSRoutes; its only accepted value is `v2`.
///
/// ```yaml
/// metadata:
///   annotations:
///     portcullis.dev/proxy-protocol: v2
/// ```
pub const PROXY_PROTOCOL_ANNOTATION: &str = "portcullis.dev/proxy-protocol";

/// Whether `meta` asks for a PROXY protocol v2 header, or why its
/// annotation value is unsupported.
pub(crate) fn proxy_protocol(meta: &ObjectMeta) -> Result<bool, Problem> {
    match meta
        .annotations
        .get(PROXY_PROTOCOL_ANNOTATION)
        .map(|v| v.trim())
    {
        None | Some("") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("v2") => Ok(true),
        Some(v) => Err(Problem::new(
            Reason::UnsupportedValue,
            format!("annotation {PROXY_PROTOCOL_ANNOTATION}: unsupported value {v:?} (only v2)"),
        )),
    }
}

/// A TCPRoute or UDPRoute after backend resolution.
#[derive(Debug)]
pub(crate) struct CompiledL4 {
    /// `(weight, target)` of every backendRef of every rule.
    pub backends: Vec<(u32, BackendTarget)>,
    /// PROXY protocol v2 toward the backends (TCPRoutes only).
    pub proxy_protocol: bool,
    /// Why the route cannot be accepted, if so.
    pub invalid: Option<Problem>,
    /// The first reference that did not resolve.
    pub unresolved: Option<Problem>,
}

/// Resolves the backends of a TCPRoute (`kind` [`RouteKind::Tcp`]) or a
/// UDPRoute ([`RouteKind::Udp`]). Only core Services are valid backends;
/// anything else, or an unresolved Service, becomes an `Invalid` target
/// whose share of connections (datagrams) is refused, as the specification
/// requires.
pub(crate) fn compile_l4(
    kind: RouteKind,
    meta: &ObjectMeta,
    spec: &L4RouteSpec,
    ctx: &mut Ctx<'_>,
) -> CompiledL4 {
    let mut out = CompiledL4 {
        backends: Vec::new(),
        proxy_protocol: false,
        invalid: None,
        unresolved: None,
    };
    if kind == RouteKind::Tcp {
        match proxy_protocol(meta) {
            Ok(on) => out.proxy_protocol = on,
            Err(p) => out.invalid = Some(p),
        }
    }
    let from = RouteRef {
        kind: kind.name(),
        namespace: &meta.namespace,
    };
    for rule in &spec.rules {
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

/// The stream entry of `route` on one listener: no hostname (TCP and UDP
/// carry none), every backend.
pub(crate) fn entry(meta: &ObjectMeta, compiled: &CompiledL4) -> StreamEntry {
    StreamEntry {
        hostname: None,
        route: meta.key(),
        order: order(meta),
        backends: compiled
            .backends
            .iter()
            .map(|(weight, target)| WeightedBackend {
                weight: *weight,
                target: target.clone(),
                filters: Vec::new(),
            })
            .collect(),
        proxy_protocol: compiled.proxy_protocol,
    }
}

/// Of the `listeners` a TCPRoute or UDPRoute was accepted by, those it may
/// take, and a note when an older route holds some: a TCP or UDP listener
/// has no hostname or match to tell routes apart, so it serves only the
/// first route to claim it (routes are attached oldest first, the Gateway
/// API's conflict rule). A listener already held by an older route still
/// counts this route in `attachedRoutes` (attachment depends only on
/// parentRefs and allowedRoutes) but gets no entry; the route stays
/// Accepted (Gateway API v1.6's `TCPRouteMultipleRoutesAttachment` and
/// `UDPRouteMultipleRoutesAttachment` conformance tests), its condition's
/// message naming the route that takes the traffic.
pub(crate) fn claim(
    world: &mut World<'_>,
    view: &RouteView<'_>,
    listeners: Vec<usize>,
    seen: &mut BTreeSet<usize>,
) -> (Vec<usize>, Option<String>) {
    let key = view.meta.key();
    let mut free = Vec::new();
    let mut holder = None;
    for i in listeners {
        let l = &mut world.listeners[i];
        match l.streams.iter().find(|e| e.route != key) {
            Some(older) => {
                holder.get_or_insert_with(|| older.route.clone());
                if seen.insert(i) {
                    l.attached_routes += 1;
                }
            }
            None => free.push(i),
        }
    }
    let note = holder.map(|older| {
        format!(
            "the listener already serves {} {older}, which takes precedence (older): this route gets no traffic there",
            view.kind.name()
        )
    });
    (free, note)
}

/// Precedence between routes claiming one listener: older creation time
/// first, then `namespace/name` (Gateway API route precedence).
pub(crate) fn order(meta: &ObjectMeta) -> (String, String, String) {
    (
        meta.creation_timestamp.clone().unwrap_or_default(),
        meta.namespace.clone(),
        meta.name.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(annotation: Option<&str>) -> ObjectMeta {
        let mut m = ObjectMeta::default();
        if let Some(v) = annotation {
            m.annotations
                .insert(PROXY_PROTOCOL_ANNOTATION.to_string(), v.to_string());
        }
        m
    }

    #[test]
    fn proxy_protocol_annotation_accepts_only_v2() {
        assert_eq!(proxy_protocol(&meta(None)), Ok(false));
        assert_eq!(proxy_protocol(&meta(Some("v2"))), Ok(true));
        assert_eq!(proxy_protocol(&meta(Some("V2"))), Ok(true));
        let err = proxy_protocol(&meta(Some("v1"))).expect_err("v1 is unsupported");
        assert_eq!(err.reason, Reason::UnsupportedValue);
    }
}
