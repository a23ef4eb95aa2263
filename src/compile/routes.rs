//! Route attachment: for each HTTPRoute, GRPCRoute, TLSRoute, TCPRoute and
//! UDPRoute parentRef, which listeners accept the route (sectionName, port,
//! allowedRoutes namespaces and kinds, hostname intersection, one TCP/UDP
//! route per listener), the per-parent status conditions, and the route table
//! (or stream) entries the accepted listeners receive.

use super::gateway::World;
use super::l4_routes::{self, CompiledL4};
use super::listener_hosts::ListenerHosts;
use super::refs::{self, GATEWAY_GROUP};
use super::rules::{self, CompiledRoute};
use super::tls_routes::{self, CompiledTls};
use super::{Ctx, Problem};
use crate::dataplane::router::{EntryOrder, RouteEntry, RouteRank};
use crate::dataplane::RouteKind;
use crate::model::route::ParentReference;
use crate::model::{ObjectKey, ObjectMeta, Resources};
use crate::status::{
    Condition, ConditionType, ObjectStatus, ParentRefStatus, ParentStatus, Reason,
};
use std::sync::Arc;

/// The parts of a route that attachment reads, whatever its kind.
pub(crate) struct RouteView<'a> {
    /// HTTPRoute or GRPCRoute.
    pub kind: RouteKind,
    /// Metadata.
    pub meta: &'a ObjectMeta,
    /// Parents.
    pub parent_refs: &'a [ParentReference],
    /// Hostnames.
    pub hostnames: &'a [String],
}

impl RouteView<'_> {
    fn kind_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// A compiled route of any kind.
#[derive(Clone, Copy)]
enum Compiled<'c> {
    /// HTTPRoute or GRPCRoute rules.
    Rules(&'c CompiledRoute),
    /// TLSRoute backends.
    Tls(&'c CompiledTls),
    /// TCPRoute or UDPRoute backends.
    L4(&'c CompiledL4),
}

impl Compiled<'_> {
    fn invalid(&self) -> Option<&Problem> {
        match self {
            Compiled::Rules(c) => c.invalid.as_ref(),
            Compiled::Tls(c) => c.invalid.as_ref(),
            Compiled::L4(c) => c.invalid.as_ref(),
        }
    }

    fn unresolved(&self) -> Option<&Problem> {
        match self {
            Compiled::Rules(c) => c.unresolved.as_ref(),
            Compiled::Tls(c) => c.unresolved.as_ref(),
            Compiled::L4(c) => c.unresolved.as_ref(),
        }
    }
}

/// Attaches every route, filling listener entries and counts, and returns the
/// status of every route with at least one parent of ours.
pub(crate) fn attach_all(world: &mut World<'_>, ctx: &mut Ctx<'_>) -> Vec<ObjectStatus> {
    let resources = ctx.resources;
    world.gateway_hosts = world
        .gateways
        .iter()
        .map(|g| {
            ListenerHosts::new(
                g.listeners
                    .iter()
                    .map(|&i| (i, world.listeners[i].hostname())),
            )
        })
        .collect();
    let mut out = Vec::new();
    for route in &resources.http_routes {
        let view = RouteView {
            kind: RouteKind::Http,
            meta: &route.metadata,
            parent_refs: &route.spec.parent_refs,
            hostnames: &route.spec.hostnames,
        };
        if !has_our_parent(world, resources, &view) {
            continue;
        }
        let compiled = rules::compile_http(route, ctx);
        out.extend(attach(
            world,
            resources,
            &view,
            Compiled::Rules(&compiled),
            &ctx.options.controller_name,
        ));
    }
    for route in &resources.grpc_routes {
        let view = RouteView {
            kind: RouteKind::Grpc,
            meta: &route.metadata,
            parent_refs: &route.spec.parent_refs,
            hostnames: &route.spec.hostnames,
        };
        if !has_our_parent(world, resources, &view) {
            continue;
        }
        let compiled = rules::compile_grpc(route, ctx);
        out.extend(attach(
            world,
            resources,
            &view,
            Compiled::Rules(&compiled),
            &ctx.options.controller_name,
        ));
    }
    for route in &resources.tls_routes {
        let view = RouteView {
            kind: RouteKind::Tls,
            meta: &route.metadata,
            parent_refs: &route.spec.parent_refs,
            hostnames: &route.spec.hostnames,
        };
        if !has_our_parent(world, resources, &view) {
            continue;
        }
        let compiled = tls_routes::compile_tls(route, ctx);
        out.extend(attach(
            world,
            resources,
            &view,
            Compiled::Tls(&compiled),
            &ctx.options.controller_name,
        ));
    }
    // Oldest first: a TCP or UDP listener serves one route, the oldest.
    let mut l4: Vec<(RouteKind, &ObjectMeta, &crate::model::l4_route::L4RouteSpec)> = Vec::new();
    l4.extend(
        resources
            .tcp_routes
            .iter()
            .map(|r| (RouteKind::Tcp, &r.metadata, &r.spec)),
    );
    l4.extend(
        resources
            .udp_routes
            .iter()
            .map(|r| (RouteKind::Udp, &r.metadata, &r.spec)),
    );
    l4.sort_by_key(|(_, meta, _)| l4_routes::order(meta));
    for (kind, meta, spec) in l4 {
        let view = RouteView {
            kind,
            meta,
            parent_refs: &spec.parent_refs,
            hostnames: &[],
        };
        if !has_our_parent(world, resources, &view) {
            continue;
        }
        let compiled = l4_routes::compile_l4(kind, meta, spec, ctx);
        out.extend(attach(
            world,
            resources,
            &view,
            Compiled::L4(&compiled),
            &ctx.options.controller_name,
        ));
    }
    out
}

fn has_our_parent(world: &World<'_>, resources: &Resources, view: &RouteView<'_>) -> bool {
    view.parent_refs
        .iter()
        .any(|p| !matches!(find_parent(world, resources, view, p), Parent::NotOurs))
}

/// What a parentRef points at.
enum Parent {
    /// A parent another controller owns, or a kind we do not serve.
    NotOurs,
    /// A parent that does not exist.
    Missing,
    /// Our Gateway (index in `world.gateways`).
    Gateway(usize),
    /// Our ListenerSet (index in `world.sets`).
    ListenerSet(usize),
}

fn parent_key(view: &RouteView<'_>, p: &ParentReference) -> ObjectKey {
    ObjectKey::new(
        p.namespace.as_deref().unwrap_or(&view.meta.namespace),
        &p.name,
    )
}

fn find_parent(
    world: &World<'_>,
    resources: &Resources,
    view: &RouteView<'_>,
    p: &ParentReference,
) -> Parent {
    if p.group.as_deref().is_some_and(|g| g != GATEWAY_GROUP) {
        return Parent::NotOurs;
    }
    let key = parent_key(view, p);
    match p.kind.as_deref().unwrap_or("Gateway") {
        "Gateway" => match world.gateway_index(&key) {
            Some(i) => Parent::Gateway(i),
            None if resources.gateways.iter().any(|g| g.metadata.key() == key) => Parent::NotOurs,
            None => Parent::Missing,
        },
        "ListenerSet" => match world.set_index(&key) {
            Some(i) => Parent::ListenerSet(i),
            None if resources
                .listener_sets
                .iter()
                .any(|s| s.metadata.key() == key) =>
            {
                Parent::NotOurs
            }
            None => Parent::Missing,
        },
        _ => Parent::NotOurs,
    }
}

fn attach(
    world: &mut World<'_>,
    resources: &Resources,
    view: &RouteView<'_>,
    compiled: Compiled<'_>,
    controller_name: &str,
) -> Option<ObjectStatus> {
    let generation = view.meta.generation();
    let mut status = ObjectStatus::new(view.kind_name(), &view.meta.namespace, &view.meta.name);
    // Most routes have one parent: no room for four (a route status is
    // kept twice while a compile replaces the last).
    status.parents.reserve_exact(view.parent_refs.len());
    let rank = RouteRank::new(
        view.meta.creation_timestamp.as_deref().unwrap_or_default(),
        &view.meta.namespace,
        &view.meta.name,
    );
    // A listener selected by several parentRefs still holds the route once.
    let mut seen = std::collections::BTreeSet::new();
    for p in view.parent_refs {
        let parent = find_parent(world, resources, view, p);
        let result = match parent {
            Parent::NotOurs => continue,
            Parent::Missing => Err(Problem::new(
                Reason::NoMatchingParent,
                "the parent does not exist",
            )),
            Parent::Gateway(i) => select_indexed(world, resources, view, p, i),
            Parent::ListenerSet(i) => select(world, resources, view, p, &world.sets[i].listeners),
        };
        let result = result.and_then(|ls| match compiled.invalid() {
            Some(problem) => Err(problem.clone()),
            None => Ok(ls),
        });
        let mut note = None;
        let result = match compiled {
            Compiled::L4(_) => result.map(|ls| {
                let (free, held) = l4_routes::claim(world, view, ls, &mut seen);
                note = held;
                free
            }),
            _ => result,
        };
        let accepted = match result {
            Ok(listeners) => {
                for i in listeners {
                    if seen.insert(i) {
                        add_entries(world, i, view, &rank, compiled);
                    }
                }
                Condition::new(
                    ConditionType::Accepted,
                    true,
                    Reason::Accepted,
                    note.unwrap_or_default(),
                    generation,
                )
            }
            Err(p) => Condition::new(
                ConditionType::Accepted,
                false,
                p.reason,
                p.message,
                generation,
            ),
        };
        let resolved = match compiled.unresolved() {
            Some(p) => Condition::new(
                ConditionType::ResolvedRefs,
                false,
                p.reason,
                &p.message,
                generation,
            ),
            None => Condition::new(
                ConditionType::ResolvedRefs,
                true,
                Reason::ResolvedRefs,
                "",
                generation,
            ),
        };
        let key = parent_key(view, p);
        status.parents.push(ParentStatus {
            parent_ref: ParentRefStatus {
                group: p.group.clone().unwrap_or_else(|| GATEWAY_GROUP.to_string()),
                kind: p.kind.clone().unwrap_or_else(|| "Gateway".to_string()),
                namespace: key.namespace,
                name: key.name,
                section_name: p.section_name.clone(),
                port: p.port,
            },
            controller_name: controller_name.to_string(),
            conditions: vec![accepted, resolved],
        });
    }
    (!status.parents.is_empty()).then_some(status)
}

/// [`select`] over the listeners of Gateway `gateway`, first among those
/// the route's hostnames can select ([`ListenerHosts`]); the full scan runs
/// only when that finds none (to name the precise reason) or the route has
/// wildcard or no hostnames.
fn select_indexed(
    world: &World<'_>,
    resources: &Resources,
    view: &RouteView<'_>,
    p: &ParentReference,
    gateway: usize,
) -> Result<Vec<usize>, Problem> {
    let all = &world.gateways[gateway].listeners;
    let candidates = world
        .gateway_hosts
        .get(gateway)
        .and_then(|h| h.candidates(view.hostnames));
    if let Some(candidates) = candidates {
        if let Ok(found) = select(world, resources, view, p, &candidates) {
            return Ok(found);
        }
    }
    select(world, resources, view, p, all)
}

/// The listeners (indices) among `candidates` that accept the route through
/// parentRef `p`, or why none does.
fn select(
    world: &World<'_>,
    resources: &Resources,
    view: &RouteView<'_>,
    p: &ParentReference,
    candidates: &[usize],
) -> Result<Vec<usize>, Problem> {
    let named: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| {
            p.section_name
                .as_deref()
                .is_none_or(|s| world.listeners[i].spec.name == s)
        })
        .filter(|&i| {
            p.port
                .is_none_or(|port| world.listeners[i].spec.port == port)
        })
        .collect();
    if named.is_empty() {
        return Err(Problem::new(
            Reason::NoMatchingParent,
            "no listener matches the parentRef's sectionName and port",
        ));
    }
    let allowed: Vec<usize> = named
        .into_iter()
        .filter(|&i| {
            let l = &world.listeners[i];
            let filter = l
                .spec
                .allowed_routes
                .as_ref()
                .and_then(|a| a.namespaces.as_ref());
            l.is_accepted()
                && l.kinds.contains(&view.kind)
                && refs::namespace_allowed(
                    resources,
                    filter,
                    "Same",
                    &l.owner_namespace,
                    &view.meta.namespace,
                )
        })
        .collect();
    if allowed.is_empty() {
        return Err(Problem::new(
            Reason::NotAllowedByListeners,
            "no listener allows this route's kind and namespace",
        ));
    }
    let matching: Vec<usize> = allowed
        .into_iter()
        .filter(|&i| !hostnames_on(world.listeners[i].hostname(), view.hostnames).is_empty())
        .collect();
    if matching.is_empty() {
        return Err(Problem::new(
            Reason::NoMatchingListenerHostname,
            "no listener hostname intersects the route's hostnames",
        ));
    }
    Ok(matching)
}

/// The hostnames a route serves on a listener: the listener's hostname when
/// the route names none, else each intersection (deduplicated, in order).
pub(crate) fn hostnames_on(listener: Option<&str>, route: &[String]) -> Vec<Option<String>> {
    if route.is_empty() {
        return vec![listener.map(str::to_string)];
    }
    let mut out: Vec<Option<String>> = Vec::new();
    for h in route {
        let h = h.to_ascii_lowercase();
        if let Some(x) = crate::hostname::intersect(listener, &h) {
            if !out.iter().any(|o| o.as_deref() == Some(x.as_str())) {
                out.push(Some(x));
            }
        }
    }
    out
}

fn add_entries(
    world: &mut World<'_>,
    index: usize,
    view: &RouteView<'_>,
    rank: &Arc<RouteRank>,
    compiled: Compiled<'_>,
) {
    let l = &mut world.listeners[index];
    l.attached_routes += 1;
    let compiled = match compiled {
        Compiled::Rules(c) => c,
        Compiled::Tls(c) => {
            for host in hostnames_on(l.spec.hostname.as_deref(), view.hostnames) {
                l.streams.push(tls_routes::entry(view.meta, host, c));
            }
            return;
        }
        Compiled::L4(c) => {
            l.streams.push(l4_routes::entry(view.meta, c));
            return;
        }
    };
    for host in hostnames_on(l.spec.hostname.as_deref(), view.hostnames) {
        for (rule_index, rule) in compiled.rules.iter().enumerate() {
            for (match_index, m) in rule.matches.iter().enumerate() {
                l.entries.push(RouteEntry {
                    hostname: host.clone(),
                    matcher: m.clone(),
                    rule: rule.rule.clone(),
                    order: EntryOrder::new(rank, rule_index, match_index),
                });
            }
        }
    }
}
