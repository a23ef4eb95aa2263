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
//! - `conformance_status`: the conformance cases' status checks run on the
//!   status portcullis wrote through the API server.

mod support;

#[path = "kubernetes/conformance_status.rs"]
mod conformance_status;
#[path = "kubernetes/rig.rs"]
mod rig;
#[path = "kubernetes/routing.rs"]
mod routing;
