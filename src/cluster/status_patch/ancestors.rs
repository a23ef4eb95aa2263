//! The ancestors of each BackendTLSPolicy: the Gateways of ours through
//! which it takes effect. The Gateway API recommends the Gateway as the
//! ancestor of a policy on a Service (`PolicyAncestorStatus`), and the
//! conformance suite looks for the Gateway there. A policy takes effect
//! through a Gateway when a route accepted by that Gateway (directly or
//! through one of its ListenerSets) sends traffic to a targeted Service
//! port: as a backendRef or as a request mirror.
//!
//! Compile's status gives which parents accepted each route; the routes'
//! backendRefs and the policies' targets come from the snapshot.

use super::{OwnedParents, GATEWAY_GROUP};
use crate::model::route::{BackendObjectReference, HttpRouteFilter};
use crate::model::{ObjectKey, Resources};
use crate::status::{ConditionStatus, ConditionType, ParentRefStatus, Status};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A Service some route sends traffic to: namespace, name.
type ServiceKey = (String, String);

/// Who sends traffic to a Service: per backend, its port and the Gateways
/// of ours that accepted the route.
type ServiceUses<'a> = HashMap<ServiceKey, Vec<(Option<i64>, &'a BTreeSet<ObjectKey>)>>;

/// Per BackendTLSPolicy with at least one, its ancestor Gateways (sorted),
/// as `ancestorRef`s for [`super::Target::BackendTlsPolicy`].
pub fn policy_ancestors(
    resources: &Resources,
    status: &Status,
) -> BTreeMap<ObjectKey, Vec<ParentRefStatus>> {
    let accepted = accepting_gateways(resources, status);
    let mut uses: ServiceUses<'_> = HashMap::new();
    let mut add = |kind: &str, route: &ObjectKey, backends: Vec<&BackendObjectReference>| {
        let Some(gateways) = accepted.get(&(kind.to_string(), route.clone())) else {
            return;
        };
        for b in backends {
            let core = b.group.as_deref().unwrap_or("").is_empty();
            if !core || b.kind.as_deref().unwrap_or("Service") != "Service" {
                continue;
            }
            let ns = b.namespace.as_deref().unwrap_or(&route.namespace);
            uses.entry((ns.to_string(), b.name.clone()))
                .or_default()
                .push((b.port, gateways));
        }
    };
    for r in &resources.http_routes {
        let rules = r.spec.rules.as_deref().unwrap_or_default();
        let backends = rules
            .iter()
            .flat_map(|rule| http_backends(&rule.backend_refs, &rule.filters))
            .collect();
        add("HTTPRoute", &r.metadata.key(), backends);
    }
    for r in &resources.grpc_routes {
        let rules = r.spec.rules.as_deref().unwrap_or_default();
        let backends = rules
            .iter()
            .flat_map(|rule| http_backends(&rule.backend_refs, &rule.filters))
            .collect();
        add("GRPCRoute", &r.metadata.key(), backends);
    }
    for r in &resources.tls_routes {
        let backends = r
            .spec
            .rules
            .iter()
            .flat_map(|rule| rule.backend_refs.iter().map(|b| &b.backend))
            .collect();
        add("TLSRoute", &r.metadata.key(), backends);
    }
    let l4 = resources
        .tcp_routes
        .iter()
        .map(|r| ("TCPRoute", &r.metadata, &r.spec))
        .chain(
            resources
                .udp_routes
                .iter()
                .map(|r| ("UDPRoute", &r.metadata, &r.spec)),
        );
    for (kind, meta, spec) in l4 {
        let backends = spec
            .rules
            .iter()
            .flat_map(|rule| rule.backend_refs.iter().map(|b| &b.backend))
            .collect();
        add(kind, &meta.key(), backends);
    }

    let mut out = BTreeMap::new();
    for policy in &resources.backend_tls_policies {
        let ns = &policy.metadata.namespace;
        let mut gateways: BTreeSet<&ObjectKey> = BTreeSet::new();
        for t in &policy.spec.target_refs {
            if !t.group.is_empty() || t.kind != "Service" {
                continue;
            }
            let Some(used) = uses.get(&(ns.clone(), t.name.clone())) else {
                continue;
            };
            // A policy on one named port applies to backendRefs of that
            // port's number; a Service without that port name matches none.
            let port = match t.section_name.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(section) => {
                    let number = resources.service(ns, &t.name).and_then(|s| {
                        s.spec
                            .ports
                            .iter()
                            .find(|p| p.name.as_deref() == Some(section))
                            .map(|p| p.port)
                    });
                    match number {
                        Some(n) => Some(n),
                        None => continue,
                    }
                }
            };
            for (used_port, gws) in used {
                if port.is_none() || *used_port == port {
                    gateways.extend(gws.iter());
                }
            }
        }
        if !gateways.is_empty() {
            let refs = gateways
                .into_iter()
                .map(|g| ParentRefStatus {
                    group: GATEWAY_GROUP.to_string(),
                    kind: "Gateway".to_string(),
                    namespace: g.namespace.clone(),
                    name: g.name.clone(),
                    section_name: None,
                    port: None,
                })
                .collect();
            out.insert(policy.metadata.key(), refs);
        }
    }
    out
}

/// The backends of an HTTPRoute or GRPCRoute rule: its backendRefs and the
/// mirrors of its filters and of the backendRefs' filters.
fn http_backends<'a>(
    refs: &'a [crate::model::route::HttpBackendRef],
    filters: &'a [HttpRouteFilter],
) -> impl Iterator<Item = &'a BackendObjectReference> {
    let mirrors = |fs: &'a [HttpRouteFilter]| {
        fs.iter()
            .filter_map(|f| f.request_mirror.as_ref().map(|m| &m.backend_ref))
    };
    refs.iter()
        .map(|b| &b.backend)
        .chain(mirrors(filters))
        .chain(refs.iter().flat_map(move |b| mirrors(&b.filters)))
}

/// Per route (kind, key), the Gateways of ours that accepted it: parents of
/// ours with `Accepted=True`, a ListenerSet standing for its parent Gateway.
fn accepting_gateways(
    resources: &Resources,
    status: &Status,
) -> HashMap<(String, ObjectKey), BTreeSet<ObjectKey>> {
    let owned = OwnedParents::from_status(status);
    let set_parent: HashMap<ObjectKey, ObjectKey> = resources
        .listener_sets
        .iter()
        .map(|s| {
            let p = &s.spec.parent_ref;
            let ns = p.namespace.as_deref().unwrap_or(&s.metadata.namespace);
            (s.metadata.key(), ObjectKey::new(ns, &p.name))
        })
        .collect();
    let mut out: HashMap<(String, ObjectKey), BTreeSet<ObjectKey>> = HashMap::new();
    for o in status.objects.iter().filter(|o| !o.parents.is_empty()) {
        for p in &o.parents {
            let accepted = p
                .conditions
                .iter()
                .any(|c| c.kind == ConditionType::Accepted && c.status == ConditionStatus::True);
            if !accepted || !owned.owns(&p.parent_ref) {
                continue;
            }
            let r = &p.parent_ref;
            let key = ObjectKey::new(&r.namespace, &r.name);
            let gateway = match r.kind.as_str() {
                "Gateway" => Some(key),
                "ListenerSet" => set_parent.get(&key).cloned(),
                _ => None,
            };
            if let Some(g) = gateway {
                out.entry((o.kind.clone(), ObjectKey::new(&o.namespace, &o.name)))
                    .or_default()
                    .insert(g);
            }
        }
    }
    out
}
