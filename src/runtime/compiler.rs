//! Compiling one loaded snapshot ([`Compiler`]): the issuer's certificates
//! added, compile run with the current time, the certificates parsed by
//! the previous compile and which addresses Gateways name that this node
//! cannot bind ([`unbindable`], probed here since compile does no I/O);
//! blocking, so the runtime runs it on a blocking thread.

use super::source::{self, Loaded};
use super::unix_now;
use crate::address_pool::{Assignment, HeldAddresses};
use crate::compile::{compile_cached, CertCache, CompileOptions, Compiled};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;

/// Which of `ips` this node cannot bind: each is bound on an ephemeral
/// port and released at once. That answers exactly what a listener needs
/// (an interface address, loopback, or an address of a `local` route all
/// bind), without reading interfaces. An address already serving one of
/// our listeners still binds on another port.
pub fn unbindable(ips: &BTreeSet<IpAddr>) -> BTreeSet<IpAddr> {
    ips.iter()
        .copied()
        .filter(|ip| TcpListener::bind(SocketAddr::new(*ip, 0)).is_err())
        .collect()
}

/// What one reload read and compiled.
#[derive(Debug)]
pub struct Reloaded {
    /// The compile output.
    pub compiled: Compiled,
    /// What could not be read.
    pub problems: Vec<source::Problem>,
    /// Documents of kinds portcullis does not read.
    pub ignored: Vec<String>,
    /// The resources as loaded, before the issuer's certificates were
    /// added (what the issuer's demand is computed from).
    pub resources: Arc<crate::model::Resources>,
    /// Kubernetes mode: the live objects, for writing their status.
    pub live: Option<
        Arc<
            std::collections::BTreeMap<
                (crate::cluster::kinds::Watched, crate::model::ObjectKey),
                crate::cluster::cache::Live,
            >,
        >,
    >,
}

/// Compiles loaded snapshots, keeping parsed certificates between
/// compiles. Blocking: run it on a blocking thread.
#[derive(Debug)]
pub struct Compiler {
    options: CompileOptions,
    /// Certificates parsed by the previous compile, reused when unchanged.
    certs: CertCache,
    /// The address pool's assignment at the previous compile: Gateways
    /// hold these addresses until their status says otherwise.
    pool_addresses: Assignment,
    /// The addresses Gateways named at the previous compile.
    named: BTreeSet<IpAddr>,
    /// Those of them this node could not bind: while there are any, the
    /// runtime probes again ([`Compiler::bindability_changed`]) so a
    /// Gateway is programmed once its address turns local.
    unbindable: Arc<BTreeSet<IpAddr>>,
}

impl Compiler {
    /// A compiler with these options.
    pub fn new(options: CompileOptions) -> Self {
        Self {
            options,
            certs: CertCache::new(),
            pool_addresses: Assignment::default(),
            named: BTreeSet::new(),
            unbindable: Arc::default(),
        }
    }

    /// The pool addresses Gateways hold: what their live status reports
    /// (Kubernetes mode), else what the previous compile gave them.
    fn held_addresses(&self, loaded: &Loaded) -> HeldAddresses {
        let pool = &self.options.address_pool;
        if pool.is_empty() {
            return HeldAddresses::default();
        }
        let reported = loaded
            .live
            .as_deref()
            .map(crate::cluster::addresses::reported)
            .unwrap_or_default();
        HeldAddresses::new(pool, &reported, &self.pool_addresses)
    }

    /// Whether `loaded` must be compiled even if its configuration is the
    /// one compiled last: Gateways report other pool addresses than the
    /// previous compile gave them (another replica, the leader, decided
    /// from objects this one had not seen yet), or name other addresses.
    /// The echoes of this replica's own addresses change nothing. Nothing
    /// is probed here (this runs for every snapshot, status echoes
    /// included): whether the named addresses turned bindable is the
    /// runtime's timer's to ask ([`Compiler::bindability_changed`]).
    pub fn addresses_moved(&self, loaded: &Loaded) -> bool {
        !self.pool_addresses.is_held_as(&self.held_addresses(loaded))
            || crate::compile::named_ips(&loaded.resources) != self.named
    }

    /// Whether the previous compile left a Gateway address this node could
    /// not bind (the runtime then checks
    /// [`Compiler::bindability_changed`] every few seconds).
    pub fn waits_for_addresses(&self) -> bool {
        !self.unbindable.is_empty()
    }

    /// Whether an address Gateways named at the previous compile turned
    /// bindable or stopped being so.
    pub fn bindability_changed(&self) -> bool {
        unbindable(&self.named) != *self.unbindable
    }

    /// Adds the issuer's certificates and references
    /// ([`crate::issuer::augment()`]) and compiles with the current time.
    pub fn compile(&mut self, loaded: Loaded) -> Reloaded {
        let mut options = self.options.clone();
        options.now = Some(i64::try_from(unix_now()).unwrap_or(i64::MAX));
        options.held_addresses = Arc::new(self.held_addresses(&loaded));
        self.named = crate::compile::named_ips(&loaded.resources);
        self.unbindable = Arc::new(unbindable(&self.named));
        options.unbindable_addresses = Arc::clone(&self.unbindable);
        let augmented = crate::issuer::augment(&loaded.resources, &loaded.stored);
        let compiled = compile_cached(&augmented, &options, &mut self.certs);
        self.pool_addresses = compiled.pool_addresses.clone();
        Reloaded {
            compiled,
            problems: loaded.problems,
            ignored: loaded.ignored,
            resources: Arc::new(loaded.resources),
            live: loaded.live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address_pool::{AddressPool, PoolAddress};
    use crate::cluster::cache::{Live, LiveObject};
    use crate::cluster::kinds::Watched;
    use crate::model::load::parse_documents;
    use crate::model::{ObjectKey, Resources};
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    /// The GatewayClass every fixture's Gateways name.
    const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc}
spec: {controllerName: portcullis.dev/gateway-controller}
";

    fn resources(gateways: &[&str]) -> Resources {
        let mut yaml = CLASS.to_string();
        for name in gateways {
            yaml.push_str(&format!(
                "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: apps}}
spec:
  gatewayClassName: pc
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
"
            ));
        }
        Resources::from_objects(
            parse_documents(&yaml, "t.yaml")
                .expect("fixture parses")
                .objects,
        )
    }

    /// A snapshot of `gateways`, each reporting the given status address.
    fn loaded(gateways: &[&str], reported: &[(&str, &str)]) -> Loaded {
        let live = reported
            .iter()
            .map(|(name, ip)| {
                let object = serde_json::json!({
                    "status": {"addresses": [{"type": "IPAddress", "value": ip}]}
                });
                let live = Live {
                    resource_version: "1".into(),
                    generation: Some(1),
                    object: LiveObject::new(&object),
                };
                ((Watched::Gateway, ObjectKey::new("apps", name)), live)
            })
            .collect::<BTreeMap<_, _>>();
        Loaded {
            resources: resources(gateways),
            live: Some(Arc::new(live)),
            ..Default::default()
        }
    }

    fn compiler() -> Compiler {
        Compiler::new(CompileOptions {
            address_pool: AddressPool::new(vec!["198.18.4.0/24".parse().expect("prefix")]),
            ..Default::default()
        })
    }

    fn bound(r: &Reloaded) -> Vec<SocketAddr> {
        r.compiled.dataplane.binds.iter().map(|b| b.addr).collect()
    }

    fn at(text: &str) -> SocketAddr {
        text.parse().expect("socket address")
    }

    #[test]
    fn loopback_binds_and_a_documentation_address_does_not() {
        let ips: BTreeSet<IpAddr> = ["127.0.0.1", "192.0.2.1"]
            .iter()
            .map(|ip| ip.parse().expect("ip"))
            .collect();
        let want: BTreeSet<IpAddr> = ["192.0.2.1".parse().expect("ip")].into();
        assert_eq!(unbindable(&ips), want);
    }

    #[test]
    fn an_unbindable_spec_address_is_watched_and_unchanged_needs_no_compile() {
        let yaml = format!(
            "{CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: fixed, namespace: apps}}
spec:
  gatewayClassName: pc
  addresses: [{{value: 192.0.2.202}}]
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
"
        );
        let loaded = || Loaded {
            resources: Resources::from_objects(
                parse_documents(&yaml, "t.yaml")
                    .expect("fixture parses")
                    .objects,
            ),
            ..Default::default()
        };
        let mut c = compiler();
        assert!(!c.waits_for_addresses());
        let r = c.compile(loaded());
        assert!(bound(&r).is_empty());
        assert!(c.waits_for_addresses());
        assert!(!c.bindability_changed());
        assert!(!c.addresses_moved(&loaded()));
    }

    #[test]
    fn the_echo_of_its_own_addresses_needs_no_compile_another_replicas_does() {
        let mut c = compiler();
        let first = c.compile(loaded(&["web"], &[]));
        assert_eq!(bound(&first), vec![at("198.18.4.1:80")]);
        assert!(!c.addresses_moved(&loaded(&["web"], &[])));
        assert!(!c.addresses_moved(&loaded(&["web"], &[("web", "198.18.4.1")])));
        // The leader gave it another address before this replica compiled.
        let moved = loaded(&["web"], &[("web", "198.18.4.5")]);
        assert!(c.addresses_moved(&moved));
        assert_eq!(bound(&c.compile(moved)), vec![at("198.18.4.5:80")]);
    }

    #[test]
    fn an_address_given_stays_before_its_status_is_written() {
        // "b" was compiled alone; "a" sorts before it, and "b"'s status
        // is not back yet: "b" keeps the address it was given.
        let mut c = compiler();
        c.compile(loaded(&["b"], &[]));
        let both = c.compile(loaded(&["a", "b"], &[]));
        let address = |name| {
            both.compiled
                .status
                .find("Gateway", "apps", name)
                .and_then(|s| s.pool_address)
        };
        let assigned = |ip: &str| Some(PoolAddress::Assigned(ip.parse().expect("ip")));
        assert_eq!(address("b"), assigned("198.18.4.1"));
        assert_eq!(address("a"), assigned("198.18.4.2"));
    }
}
