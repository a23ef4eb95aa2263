//! portcullis: a certificate-lifecycle and TLS edge service driven by the
//! Kubernetes Gateway API.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`address_pool`] | addresses of their own for Gateways that name none (`--gateway-address-pool`): the pool and the pure assignment |
//! | [`model`] | typed snapshot of input objects ([`model::Resources`]) and loading from YAML |
//! | [`compile`] | pure `Resources -> (Dataplane, Status)`: all Gateway API semantics |
//! | [`crds`] | portcullis's own CustomResourceDefinitions, generated from the model types |
//! | [`dataplane`] | the compiled, immutable data plane: binds, listeners, route tables, filters, the pending ACME challenges it answers |
//! | [`hashing`] | the hash map of the request path ([`hashing::FastMap`]), short digests for object names |
//! | [`hostname`] | hostname matching and intersection rules |
//! | [`status`] | status conditions as data |
//! | [`tls`] | crypto provider, certificate parsing, the ClientHello reader, certificate choice, client and backend verification, session resumption |
//! | [`store`] | the issuer's durable state behind one async trait (certificates, ACME accounts and orders, local CA, records): state dir now, Secrets later; atomic writes |
//! | [`issuer`] | certificate issuance and renewal: demand, plan, manager, local CA, CA key pairs, ACME and its challenges |
//! | [`metrics`] | Prometheus metrics: certificates served and managed, traffic, configuration, process |
//! | [`proxy`] | the HTTP reverse proxy: server, filters at run time, upstream connections (one connector, an HTTP/1.1 pool and an HTTP/2 cache) |
//! | [`runtime`] | serve loop, reload pipeline, shared state, the admin endpoint (health, readiness, status, metrics), `check` and logging |
//! | [`server`] | sockets: binding listeners per dataplane, accept loops, the TLS front's decision on each ClientHello, HTTP connections, stream relays, graceful shutdown |
//! | [`cluster`] | Kubernetes mode: watches, status writing, Secrets, leadership |
//! | [`control_thread`] | the one thread compiles, replaced dataplanes' frees and status plans run on |
//! | [`watch`] | configuration directory watching and reload |
//!
//! Data flows one way: sources fill [`model::Resources`]; [`compile::compile`]
//! turns it into a [`dataplane::Dataplane`] and a [`status::Status`]; the
//! runtime swaps the new dataplane in atomically and connections read the
//! current one once per handshake or request.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address_pool;
pub mod cluster;
pub mod compile;
pub mod control_thread;
pub mod crds;
pub mod dataplane;
pub mod hashing;
pub mod hostname;
pub mod issuer;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod status;
pub mod store;
pub mod tls;
pub mod watch;
