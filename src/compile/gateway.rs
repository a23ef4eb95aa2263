//! GatewayClasses, Gateways and ListenerSets: which ones are ours, where each
//! Gateway binds, which ListenerSets a Gateway admits, and the object-level
//! status conditions of all three. Listener-level rules are in `listeners`.

use super::backend_tls::BackendTls;
use super::listeners::{self, ListenerState};
use super::refs::{self, GATEWAY_GROUP};
use super::{CompileOptions, Ctx, Problem};
use crate::address_pool::{Assignment, Claimant, PoolAddress};
use crate::model::gateway::Listener;
use crate::model::{Gateway, ListenerSet, ObjectKey, ObjectMeta, Resources};
use crate::status::{Condition, ConditionType, ObjectStatus, Reason};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Names of the GatewayClasses we own, and whether each was accepted.
pub(crate) struct Classes {
    accepted: BTreeSet<String>,
    rejected: BTreeSet<String>,
}

/// A Gateway of one of our classes.
pub(crate) struct GatewayState<'a> {
    /// The manifest.
    pub gateway: &'a Gateway,
    /// Address its listeners bind to; `None` when the address pool had
    /// none left for it (its listeners are then bound nowhere).
    pub ip: Option<IpAddr>,
    /// The usable IP address its `spec.addresses` names, if any.
    spec_ip: Option<IpAddr>,
    /// Whether its `spec.addresses` names any address (it then takes none
    /// from the pool).
    names_address: bool,
    /// What the pool gave it, if it needed an address.
    pub pool_address: Option<PoolAddress>,
    /// Why the Gateway is not accepted, if it is not.
    pub rejected: Option<Problem>,
    /// Why the Gateway is accepted but cannot be programmed.
    pub unprogrammed: Option<Problem>,
    /// Its own listeners (indices into [`World::listeners`]), in spec order.
    pub listeners: Vec<usize>,
}

/// A ListenerSet whose parent is one of our Gateways.
pub(crate) struct ListenerSetState<'a> {
    /// The manifest.
    pub set: &'a ListenerSet,
    /// Index of the parent in [`World::gateways`].
    pub gateway: usize,
    /// Why the parent does not admit it, if it does not.
    pub rejected: Option<Problem>,
    /// Its listeners (indices into [`World::listeners`]), in spec order.
    pub listeners: Vec<usize>,
}

/// Everything of ours in one compile, with listeners flattened.
pub(crate) struct World<'a> {
    /// Gateways of our classes.
    pub gateways: Vec<GatewayState<'a>>,
    /// ListenerSets whose parent is one of our Gateways.
    pub sets: Vec<ListenerSetState<'a>>,
    /// Listeners of accepted Gateways and admitted ListenerSets.
    pub listeners: Vec<ListenerState<'a>>,
    /// Per Gateway (same order as `gateways`), its own listeners by
    /// hostname; filled before routes attach.
    pub gateway_hosts: Vec<super::listener_hosts::ListenerHosts>,
    /// What the address pool gave the Gateways that name no IP address.
    pub pool_addresses: Assignment,
}

impl World<'_> {
    /// Index of our Gateway `key`.
    pub(crate) fn gateway_index(&self, key: &ObjectKey) -> Option<usize> {
        self.gateways
            .iter()
            .position(|g| g.gateway.metadata.key() == *key)
    }

    /// Index of our ListenerSet `key`.
    pub(crate) fn set_index(&self, key: &ObjectKey) -> Option<usize> {
        self.sets.iter().position(|s| s.set.metadata.key() == *key)
    }
}

fn condition(
    meta: &ObjectMeta,
    kind: ConditionType,
    problem: Option<&Problem>,
    ok: Reason,
) -> Condition {
    match problem {
        Some(p) => Condition::new(kind, false, p.reason, &p.message, meta.generation()),
        None => Condition::new(kind, true, ok, "", meta.generation()),
    }
}

/// Status of our GatewayClasses and the set of class names we serve.
pub(crate) fn compile_classes(
    resources: &Resources,
    options: &CompileOptions,
) -> (Vec<ObjectStatus>, Classes) {
    let mut statuses = Vec::new();
    let mut classes = Classes {
        accepted: BTreeSet::new(),
        rejected: BTreeSet::new(),
    };
    for class in &resources.gateway_classes {
        if class.spec.controller_name != options.controller_name {
            continue;
        }
        let problem = class.spec.parameters_ref.as_ref().map(|_| {
            Problem::new(
                Reason::InvalidParameters,
                "portcullis takes no GatewayClass parameters",
            )
        });
        let name = class.metadata.name.clone();
        if problem.is_some() {
            classes.rejected.insert(name);
        } else {
            classes.accepted.insert(name);
        }
        let mut status = ObjectStatus::new("GatewayClass", "", &class.metadata.name);
        status.conditions.push(condition(
            &class.metadata,
            ConditionType::Accepted,
            problem.as_ref(),
            Reason::Accepted,
        ));
        statuses.push(status);
    }
    (statuses, classes)
}

/// Gathers our Gateways and ListenerSets, gives the Gateways that need one
/// an address from the pool, and creates a listener state for every
/// listener of an accepted Gateway or admitted ListenerSet.
pub(crate) fn collect<'a>(ctx: &Ctx<'a>, classes: &Classes) -> World<'a> {
    let mut gateways = Vec::new();
    for gw in &ctx.resources.gateways {
        let class = &gw.spec.gateway_class_name;
        if !classes.accepted.contains(class) && !classes.rejected.contains(class) {
            continue;
        }
        let mut state = gateway_state(gw, ctx.options);
        if state.rejected.is_none() && classes.rejected.contains(class) {
            state.rejected = Some(Problem::new(
                Reason::Invalid,
                format!("GatewayClass {class} is not accepted"),
            ));
        }
        gateways.push(state);
    }
    let mut world = World {
        gateways: Vec::new(),
        sets: Vec::new(),
        listeners: Vec::new(),
        gateway_hosts: Vec::new(),
        pool_addresses: assign_pool_addresses(&mut gateways, ctx.options),
    };
    for mut state in gateways {
        if state.rejected.is_none() {
            let gw = state.gateway;
            state.listeners = push_listeners(&mut world, gw, state.ip, None, &gw.spec.listeners);
        }
        world.gateways.push(state);
    }
    for set in &ctx.resources.listener_sets {
        let Some((gateway, rejected)) = admit_set(ctx.resources, &world, set) else {
            continue;
        };
        let set_index = world.sets.len();
        let listeners = match rejected {
            None => {
                let (gw, ip) = (world.gateways[gateway].gateway, world.gateways[gateway].ip);
                push_listeners(
                    &mut world,
                    gw,
                    ip,
                    Some((set_index, set)),
                    &set.spec.listeners,
                )
            }
            Some(_) => Vec::new(),
        };
        world.sets.push(ListenerSetState {
            set,
            gateway,
            rejected,
            listeners,
        });
    }
    world
}

/// Gives each accepted Gateway that names no IP address one of the pool's
/// (nothing without a pool): the one decision compile binds and status
/// reports. A Gateway the pool has no address left for is not programmed.
fn assign_pool_addresses(
    gateways: &mut [GatewayState<'_>],
    options: &CompileOptions,
) -> Assignment {
    let pool = &options.address_pool;
    if pool.is_empty() {
        return Assignment::default();
    }
    let claims =
        |g: &GatewayState<'_>| g.rejected.is_none() && g.unprogrammed.is_none() && !g.names_address;
    let claimants: Vec<Claimant> = gateways
        .iter()
        .filter(|g| claims(g))
        .map(|g| Claimant {
            key: g.gateway.metadata.key(),
            created: g
                .gateway
                .metadata
                .creation_timestamp
                .clone()
                .unwrap_or_default(),
        })
        .collect();
    let reserved: BTreeSet<IpAddr> = gateways.iter().filter_map(|g| g.spec_ip).collect();
    let assignment =
        crate::address_pool::assign(pool, &claimants, &options.held_addresses, &reserved);
    for g in gateways.iter_mut() {
        g.pool_address = assignment.get(&g.gateway.metadata.key());
        match g.pool_address {
            Some(PoolAddress::Assigned(ip)) => g.ip = Some(ip),
            Some(PoolAddress::Exhausted) => {
                g.ip = None;
                g.unprogrammed = Some(Problem::new(
                    Reason::AddressNotAssigned,
                    format!("the address pool ({pool}) has no address left"),
                ));
            }
            None => {}
        }
    }
    assignment
}

fn push_listeners<'a>(
    world: &mut World<'a>,
    gw: &'a Gateway,
    ip: Option<IpAddr>,
    set: Option<(usize, &'a ListenerSet)>,
    specs: &'a [Listener],
) -> Vec<usize> {
    let mut out = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        out.push(world.listeners.len());
        world
            .listeners
            .push(ListenerState::new(gw, set, spec, index, ip));
    }
    out
}

fn gateway_state<'a>(gw: &'a Gateway, options: &CompileOptions) -> GatewayState<'a> {
    let mut state = GatewayState {
        gateway: gw,
        ip: Some(options.listen_address),
        spec_ip: None,
        names_address: false,
        pool_address: None,
        rejected: None,
        unprogrammed: None,
        listeners: Vec::new(),
    };
    let has_parameters = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
        .is_some_and(|p| !p.is_null());
    if has_parameters {
        state.rejected = Some(Problem::new(
            Reason::InvalidParameters,
            "portcullis takes no infrastructure parameters",
        ));
        return state;
    }
    match super::spec_addresses::resolve(gw, &options.unbindable_addresses) {
        Err(p) => state.rejected = Some(p),
        Ok(spec) if spec.names_any => {
            // Bound on the first usable address it names, else nowhere;
            // never on the shared listen address nor one of the pool's.
            state.ip = spec.bound;
            state.spec_ip = spec.bound;
            state.names_address = true;
            state.unprogrammed = spec.not_usable;
        }
        Ok(_) => {}
    }
    state
}

/// The parent (index in `world.gateways`) of a ListenerSet that targets one of
/// our Gateways, and why it is not admitted if it is not. `None` when the
/// parent is not ours (another controller reports on it).
fn admit_set(
    resources: &Resources,
    world: &World<'_>,
    set: &ListenerSet,
) -> Option<(usize, Option<Problem>)> {
    let parent = &set.spec.parent_ref;
    let group_ok = parent.group.as_deref().is_none_or(|g| g == GATEWAY_GROUP);
    let kind_ok = parent.kind.as_deref().is_none_or(|k| k == "Gateway");
    if !group_ok || !kind_ok {
        return None;
    }
    let ns = parent
        .namespace
        .as_deref()
        .unwrap_or(&set.metadata.namespace);
    let index = world.gateway_index(&ObjectKey::new(ns, &parent.name))?;
    let gw = &world.gateways[index];
    if gw.rejected.is_some() {
        let p = Problem::new(
            Reason::ParentNotAccepted,
            "the parent Gateway is not accepted",
        );
        return Some((index, Some(p)));
    }
    let filter = gw
        .gateway
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    let allowed = refs::namespace_allowed(
        resources,
        filter,
        "None",
        &gw.gateway.metadata.namespace,
        &set.metadata.namespace,
    );
    let problem = (!allowed).then(|| {
        Problem::new(
            Reason::NotAllowed,
            "the parent Gateway's allowedListeners does not admit this namespace",
        )
    });
    Some((index, problem))
}

/// Whether a ListenerSet is accepted: admitted, with at least one programmed
/// listener.
pub(crate) fn set_problem(world: &World<'_>, set: &ListenerSetState<'_>) -> Option<Problem> {
    if let Some(p) = &set.rejected {
        return Some(p.clone());
    }
    let any_valid = set
        .listeners
        .iter()
        .any(|&i| world.listeners[i].is_programmed());
    (!any_valid).then(|| Problem::new(Reason::ListenersNotValid, "no listener is valid"))
}

/// Status of every Gateway and ListenerSet of ours.
pub(crate) fn statuses(world: &World<'_>, backend_tls: &BackendTls) -> Vec<ObjectStatus> {
    let mut out = Vec::new();
    for (index, gw) in world.gateways.iter().enumerate() {
        out.push(gateway_status(world, index, gw, backend_tls));
    }
    for set in &world.sets {
        let meta = &set.set.metadata;
        let mut status = ObjectStatus::new("ListenerSet", &meta.namespace, &meta.name);
        let problem = set_problem(world, set);
        status.conditions.push(condition(
            meta,
            ConditionType::Accepted,
            problem.as_ref(),
            Reason::Accepted,
        ));
        status.conditions.push(condition(
            meta,
            ConditionType::Programmed,
            problem.as_ref(),
            Reason::Programmed,
        ));
        status.listeners = set
            .listeners
            .iter()
            .map(|&i| listeners::status(&world.listeners[i], meta.generation()))
            .collect();
        out.push(status);
    }
    out
}

fn gateway_status(
    world: &World<'_>,
    index: usize,
    gw: &GatewayState<'_>,
    backend_tls: &BackendTls,
) -> ObjectStatus {
    let meta = &gw.gateway.metadata;
    let mut status = ObjectStatus::new("Gateway", &meta.namespace, &meta.name);
    status.pool_address = gw.pool_address;
    status.spec_address = gw.spec_ip;
    let own: Vec<&ListenerState<'_>> = gw.listeners.iter().map(|&i| &world.listeners[i]).collect();
    let accepted_count = own.iter().filter(|l| l.is_accepted()).count();
    let accepted = match &gw.rejected {
        Some(p) => Condition::new(
            ConditionType::Accepted,
            false,
            p.reason,
            &p.message,
            meta.generation(),
        ),
        None if !own.is_empty() && accepted_count == 0 => Condition::new(
            ConditionType::Accepted,
            false,
            Reason::ListenersNotValid,
            "no listener is valid",
            meta.generation(),
        ),
        None if accepted_count < own.len() => Condition::new(
            ConditionType::Accepted,
            true,
            Reason::ListenersNotValid,
            "some listeners are invalid",
            meta.generation(),
        ),
        None => Condition::new(
            ConditionType::Accepted,
            true,
            Reason::Accepted,
            "",
            meta.generation(),
        ),
    };
    let programmed_problem = if accepted.status == crate::status::ConditionStatus::False {
        Some(Problem::new(Reason::Invalid, "the Gateway is not accepted"))
    } else {
        gw.unprogrammed.clone()
    };
    status.conditions.push(accepted);
    status.conditions.push(condition(
        meta,
        ConditionType::Programmed,
        programmed_problem.as_ref(),
        Reason::Programmed,
    ));
    if let Some((c, attached)) = attached_sets_condition(world, index, gw) {
        status.conditions.push(c);
        status.attached_listener_sets = Some(attached);
    }
    if let Some(c) = backend_cert_condition(gw.gateway, backend_tls) {
        status.conditions.push(c);
    }
    if let Some(c) = insecure_frontend_condition(gw.gateway) {
        status.conditions.push(c);
    }
    status.listeners = own
        .iter()
        .map(|l| listeners::status(l, meta.generation()))
        .collect();
    status
}

/// The `AttachedListenerSets` condition and the number of attached
/// ListenerSets, for Gateways that admit ListenerSets or that some
/// ListenerSet targets.
fn attached_sets_condition(
    world: &World<'_>,
    index: usize,
    gw: &GatewayState<'_>,
) -> Option<(Condition, u32)> {
    let meta = &gw.gateway.metadata;
    let targeted: Vec<&ListenerSetState<'_>> =
        world.sets.iter().filter(|s| s.gateway == index).collect();
    if gw.gateway.spec.allowed_listeners.is_none() && targeted.is_empty() {
        return None;
    }
    let attached = targeted
        .iter()
        .filter(|s| set_problem(world, s).is_none())
        .count();
    let allows = gw
        .gateway
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
        .and_then(|n| n.from.as_deref())
        .is_some_and(|f| f != "None");
    let message = format!("{attached} ListenerSets attached");
    let condition = if attached > 0 {
        Condition::new(
            ConditionType::AttachedListenerSets,
            true,
            Reason::Accepted,
            message,
            meta.generation(),
        )
    } else if !allows {
        Condition::new(
            ConditionType::AttachedListenerSets,
            false,
            Reason::NotAllowed,
            message,
            meta.generation(),
        )
    } else {
        Condition::new(
            ConditionType::AttachedListenerSets,
            false,
            Reason::NoResources,
            message,
            meta.generation(),
        )
    };
    Some((condition, u32::try_from(attached).unwrap_or(u32::MAX)))
}

/// The Gateway's `ResolvedRefs` condition, for Gateways that name a backend
/// client certificate (`spec.tls.backend.clientCertificateRef`).
fn backend_cert_condition(gw: &Gateway, backend_tls: &BackendTls) -> Option<Condition> {
    gw.spec
        .tls
        .as_ref()
        .and_then(|t| t.backend.as_ref())
        .and_then(|b| b.client_certificate_ref.as_ref())?;
    let problem = backend_tls.gateway_cert_problems.get(&gw.metadata.key());
    Some(condition(
        &gw.metadata,
        ConditionType::ResolvedRefs,
        problem,
        Reason::ResolvedRefs,
    ))
}

/// `InsecureFrontendValidationMode`, True when some frontend validation
/// lets clients without a valid certificate through.
fn insecure_frontend_condition(gw: &Gateway) -> Option<Condition> {
    let frontend = gw.spec.tls.as_ref()?.frontend.as_ref()?;
    let insecure = frontend
        .default
        .iter()
        .chain(frontend.per_port.iter().map(|p| &p.tls))
        .filter_map(|c| c.validation.as_ref())
        .any(|v| v.mode.as_deref() == Some("AllowInsecureFallback"));
    insecure.then(|| {
        Condition::new(
            ConditionType::InsecureFrontendValidationMode,
            true,
            Reason::ConfigurationChanged,
            "clients without a valid certificate are let through (AllowInsecureFallback)",
            gw.metadata.generation(),
        )
    })
}
