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
//! - `faults`: the API server restarted under traffic, a watch compacted
//!   away (410 Gone) and relisted, another controller's entry in a route's
//!   status kept, an object admitted but refused, a certificate turned to
//!   garbage.
//! - `chart_rbac`: the Helm chart's objects admitted by the API server, and
//!   portcullis doing its job as the chart's ServiceAccount with only the
//!   chart's RBAC, refused what the chart does not grant.
//! - `address_pool`: Gateways given addresses of their own from
//!   `--gateway-address-pool`, served and reported there; the pool
//!   exhausted, an address freed and given again, a restart keeping them.
//! - `static_addresses`: a Gateway's own `spec.addresses`, unsupported,
//!   not bindable on this node, then bound and served (the upstream
//!   `GatewayStaticAddresses` steps), and one that turns local later,
//!   bound by the periodic re-check.
//! - `gateway_services`: a Service per Gateway (`--per-gateway-service`)
//!   carrying the Gateway's infrastructure labels and annotations, brought
//!   up to date, not written when converged, deleted with the flag off and
//!   with its Gateway (kube-controller-manager's garbage collector).
//! - `fixtures`: what `faults`, `chart_rbac` and `routing` share (backends, requests,
//!   route status polling, base manifests).
//! - `conformance_status`: the conformance cases' status checks run on the
//!   status portcullis wrote through the API server.
//! - `workloads`: kube-controller-manager, kube-scheduler and the tests'
//!   stand-in kubelet (the node agent) running a Deployment of the
//!   conformance echo image as processes in their own network namespaces,
//!   published in EndpointSlices, stopped on deletion.
//! - `upstream_conformance` (ignored: the rig's pod address reuse fails
//!   some full runs): the
//!   upstream Gateway API conformance suite run unmodified against
//!   portcullis in that control plane, with a ConformanceReport.

#[path = "acme/mod.rs"]
mod acme;
mod support;

// acme/ picks ports through `crate::ports`.
use support::ports;

#[path = "kubernetes/address_pool.rs"]
mod address_pool;
#[path = "kubernetes/chart_rbac.rs"]
mod chart_rbac;
#[path = "kubernetes/conformance_status.rs"]
mod conformance_status;
#[path = "kubernetes/faults.rs"]
mod faults;
#[path = "kubernetes/fixtures.rs"]
mod fixtures;
#[path = "kubernetes/gateway_services.rs"]
mod gateway_services;
#[path = "kubernetes/issuance.rs"]
mod issuance;
#[path = "kubernetes/rig.rs"]
mod rig;
#[path = "kubernetes/routing.rs"]
mod routing;
#[path = "kubernetes/static_addresses.rs"]
mod static_addresses;
#[path = "kubernetes/upstream_conformance.rs"]
mod upstream_conformance;
#[path = "kubernetes/workloads.rs"]
mod workloads;
