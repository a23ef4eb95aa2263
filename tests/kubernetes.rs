//! Kubernetes mode against a real control plane: etcd and kube-apiserver built
//! from Go modules by scripts/k8s-rig.sh and started per test by
//! `support::control_plane::ControlPlane` (no API server double, anywhere).
//!
//! - `rig`: the ground the product stands on — the Gateway API CRDs are served,
//!   RBAC is enforced for client-certificate users and ServiceAccounts, the API
//!   server restarts under a client, the listener TLS forms the CRDs admit and
//!   refuse, and the control plane's processes die with the test process.
//! - `routing`: the seed's traffic exercises applied through the API (weights,
//!   header routing, mirroring, cross-namespace attachment and grants) to
//!   real echo backends, and the status written back.
//! - `issuance`: a real Pebble (and BIND) issuing into Secrets for every
//!   listener form the CRDs admit, renewals in place, a dead CA, and two
//!   replicas handing an order over when the leader is killed mid-order.

#[path = "acme/mod.rs"]
mod acme;
mod support;

#[path = "kubernetes/issuance.rs"]
mod issuance;
#[path = "kubernetes/rig.rs"]
mod rig;
#[path = "kubernetes/routing.rs"]
mod routing;
