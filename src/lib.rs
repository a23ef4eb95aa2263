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
//! | [`dataplane`] | the compiled, immutable data plane: binds, listeners, route tables, filters |
//! | [`hashing`] | the hash map of the request path ([`hashing::FastMap`]), short digests for object names |
//! | [`hostname`] | hostname matching and intersection rules |
//! | [`status`] | status conditions as data |
//! | [`tls`] | certificate parsing, SNI certificate resolution |
//! | [`store`] | the issuer's durable state behind one async trait (certificates, ACME accounts and orders, local CA, records): state dir now, Secrets later; atomic writes |
//! | [`issuer`] | certificate issuance: the built-in local CA for standalone mode |
//! | [`metrics`] | Prometheus metrics: certificates served and managed, traffic, configuration, process |
//! | [`proxy`] | the HTTP reverse proxy: server, filters at run time, upstream connections (one connector, an HTTP/1.1 pool and an HTTP/2 cache) |
//! | [`runtime`] | serve loop, reload pipeline, shared state, `check` and logging |
//! | [`server`] | sockets: binding listeners per dataplane, accept loops, graceful shutdown |
//! | [`admin`] | admin HTTP: health, readiness, status, metrics |
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
pub mod admin;
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
