//! The compile step: a pure function from a [`Resources`] snapshot to the
//! [`Dataplane`] the proxy serves and the [`Status`] every object should carry.
//! Almost all Gateway API semantics live here: GatewayClass ownership, listener
//! validation and conflicts ([`listeners`]), ListenerSets ([`gateway`]), route
//! attachment ([`routes`]), rules, matches and filters ([`rules`],
//! [`filters`]), backend resolution through EndpointSlices ([`backends`]) and
//! ReferenceGrants ([`refs`]).
//!
//! No I/O and no clock: time, when needed for certificate expiry messages, is
//! passed in [`CompileOptions::now`]. Certificates are parsed by
//! `crate::tls::certs`, in parallel and kept across compiles by [`CertCache`]
//! (`cert_cache`); route precedence sorting is left to
//! [`crate::dataplane::RouteTable`].

mod backend_tls;
mod backends;
mod binds;
mod cert_cache;
mod filters;
mod frontend_tls;
mod gateway;
mod l4_routes;
mod listener_hosts;
mod listeners;
mod matches;
mod refs;
mod routes;
mod rules;
mod spec_addresses;
mod tls_routes;

#[cfg(test)]
mod tests;

use crate::address_pool::{AddressPool, Assignment, HeldAddresses};
use crate::dataplane::{Dataplane, StaticResponse, Upstream};
use crate::model::{ObjectKey, Resources};
use crate::status::{Reason, Status};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

pub use cert_cache::CertCache;
pub use l4_routes::PROXY_PROTOCOL_ANNOTATION;
pub use spec_addresses::named_ips;

/// The controller name portcullis answers to unless told otherwise.
pub const DEFAULT_CONTROLLER_NAME: &str = "portcullis.dev/gateway-controller";

/// Settings of one compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// GatewayClasses whose `spec.controllerName` equals this are ours.
    pub controller_name: String,
    /// Where Gateways without an `IPAddress` in `spec.addresses` listen.
    pub listen_address: IpAddr,
    /// Added to every listener port to get the socket port (lets an
    /// unprivileged process serve manifests written for 80/443).
    pub port_offset: u16,
    /// The current time (Unix seconds), used only to warn about expired
    /// certificates in listener conditions; `None` skips the check.
    pub now: Option<i64>,
    /// How terminating listeners resume TLS sessions (one store shared by
    /// every compile made with clones of these options).
    pub resumption: crate::tls::sessions::Resumption,
    /// The ACME challenges the data plane answers (one board shared by
    /// every compile made with clones of these options; the issuer writes
    /// to it).
    pub challenges: Arc<crate::dataplane::challenges::ChallengeBoard>,
    /// `--gateway-address-pool`: where a Gateway whose `spec.addresses`
    /// names no IP address gets one of its own; empty, such Gateways
    /// share `listen_address`.
    pub address_pool: AddressPool,
    /// The pool address each Gateway holds already (what its status
    /// reports, else the previous compile's [`Compiled::pool_addresses`]),
    /// so addresses stay where they are ([`crate::address_pool::assign`]).
    pub held_addresses: Arc<HeldAddresses>,
    /// The `IPAddress`es Gateways name in `spec.addresses` that this node
    /// cannot bind (the runtime probes [`named_ips`] before compiling):
    /// such a Gateway is `Programmed=False/AddressNotUsable`. Empty,
    /// every named address is taken as bindable.
    pub unbindable_addresses: Arc<BTreeSet<IpAddr>>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            controller_name: DEFAULT_CONTROLLER_NAME.to_string(),
            listen_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_offset: 0,
            now: None,
            resumption: crate::tls::sessions::Resumption::default(),
            challenges: Arc::default(),
            address_pool: AddressPool::default(),
            held_addresses: Arc::default(),
            unbindable_addresses: Arc::default(),
        }
    }
}

/// The output of a compile: what to serve and what to report.
#[derive(Debug)]
pub struct Compiled {
    /// The data plane to swap in.
    pub dataplane: Dataplane,
    /// The status of every object portcullis owns.
    pub status: Status,
    /// The address pool's assignment, decided once per compile: Gateways
    /// bind on these addresses, their status reports them, and the next
    /// compile is given them as held.
    pub pool_addresses: Assignment,
}

/// Compiles a snapshot into a data plane and status. Pure: the same input
/// always yields the same output.
pub fn compile(resources: &Resources, options: &CompileOptions) -> Compiled {
    compile_cached(resources, options, &mut CertCache::new())
}

/// [`compile`], parsing only the Secrets whose certificate or key changed
/// since the previous compile with the same `certs` (a reloader keeps one).
/// The output is the same as [`compile`]'s, except that a Secret whose
/// content turned unusable keeps serving the last certificate it gave
/// (with ResolvedRefs False/InvalidCertificateRef in status) instead of
/// none.
pub fn compile_cached(
    resources: &Resources,
    options: &CompileOptions,
    certs: &mut CertCache,
) -> Compiled {
    let mut ctx = Ctx::new(resources, options);
    let (mut objects, classes) = gateway::compile_classes(resources, options);
    let mut world = gateway::collect(&ctx, &classes);
    listeners::validate_all(&mut world, &ctx, certs);
    listeners::resolve_conflicts(&mut world);
    let ours: Vec<&crate::model::Gateway> = world.gateways.iter().map(|g| g.gateway).collect();
    ctx.backend_tls = backend_tls::resolve(&ctx, &ours);
    let route_statuses = routes::attach_all(&mut world, &mut ctx);
    let dataplane = binds::build(&mut world, options);
    objects.extend(gateway::statuses(&world, &ctx.backend_tls));
    objects.append(&mut ctx.backend_tls.statuses);
    objects.extend(route_statuses);
    Compiled {
        dataplane,
        status: Status { objects },
        pool_addresses: std::mem::take(&mut world.pool_addresses),
    }
}

/// Why something is not accepted or not resolved: a condition reason and a
/// human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Condition reason.
    pub reason: Reason,
    /// Detail for the condition message.
    pub message: String,
}

impl Problem {
    /// Builds a problem.
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// State shared by one compile: the input, the options and the objects built
/// once and shared (`Arc`) wherever they are used.
pub(crate) struct Ctx<'a> {
    /// The snapshot.
    pub resources: &'a Resources,
    /// The options.
    pub options: &'a CompileOptions,
    /// Upstreams by name, so identical backends share one pool.
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// Static responses by object.
    pub statics: HashMap<ObjectKey, Arc<StaticResponse>>,
    /// BackendTLSPolicies and Gateway backend client certificates.
    pub backend_tls: backend_tls::BackendTls,
    /// Secrets by `(namespace, name)`: listeners look theirs up by key, not
    /// by scanning (10,000 listeners × 10,000 Secrets would be 10^8
    /// comparisons).
    secrets: HashMap<(&'a str, &'a str), &'a crate::model::Secret>,
}

impl<'a> Ctx<'a> {
    /// The Secret `namespace/name` (the first loaded, as
    /// `Resources::secret` finds it).
    pub(crate) fn secret(&self, namespace: &str, name: &str) -> Option<&'a crate::model::Secret> {
        self.secrets.get(&(namespace, name)).copied()
    }

    fn new(resources: &'a Resources, options: &'a CompileOptions) -> Self {
        Self {
            resources,
            options,
            upstreams: HashMap::new(),
            statics: HashMap::new(),
            backend_tls: backend_tls::BackendTls::default(),
            secrets: resources
                .secrets
                .iter()
                .rev()
                .map(|s| {
                    (
                        (s.metadata.namespace.as_str(), s.metadata.name.as_str()),
                        &**s,
                    )
                })
                .collect(),
        }
    }
}
