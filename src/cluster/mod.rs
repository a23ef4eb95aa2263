//! Kubernetes mode: the API server as the source of objects and the place
//! status, certificates and leadership are written.
//!
//! | module | holds | pure? |
//! |---|---|---|
//! | [`addresses`] | the addresses a Gateway reports | yes |
//! | [`issuing`] | the certificate manager, run while leading | I/O |
//! | [`kinds`] | the watched kinds, their versions, decoding served objects | yes |
//! | [`cache`] | one kind's objects as watch events leave them | yes |
//! | [`referenced`] | which Secrets and ConfigMaps the configuration needs | yes |
//! | [`source`] | watches → [`crate::model::Resources`] snapshots | I/O |
//! | [`certificate_refs`] | writing filled `certificateRefs` back (the plan is pure) | yes |
//! | [`challenges`] | ACME challenges published as Secrets, answered by every replica | I/O |
//! | [`controller`] | the leader's writes: status, filled references and per-Gateway Services, by server-side apply | I/O |
//! | [`gateway_services`] | a Service per Gateway (`--per-gateway-service`): the plan of applies and deletions | yes |
//! | [`status_patch`] | the status bodies written for each object | yes |
//! | [`store`] | the issuer's state in Secrets and ConfigMaps | I/O |
//! | [`writes`] | every write a snapshot needs (status, readiness, references) | yes |
//! | [`lease`] | leader election over a Lease (the rule is pure) | I/O |

pub mod addresses;
pub mod cache;
pub mod certificate_refs;
pub mod challenges;
pub mod controller;
pub mod gateway_services;
pub mod issuing;
pub mod kinds;
pub mod lease;
pub mod referenced;
pub mod source;
pub mod status_patch;
pub mod store;
pub mod writes;

/// Why Kubernetes mode could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No usable client configuration (in-cluster, KUBECONFIG or
    /// ~/.kube/config).
    #[error("cannot configure the Kubernetes client")]
    Config(#[source] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("cannot build the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// What `portcullis serve --kubernetes` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The controller's own namespace: the Lease, the local CA, challenge
    /// Secrets and issuer records live here, and ClusterIssuers' Secrets
    /// are read from here.
    pub namespace: String,
    /// This replica's identity as a Lease holder.
    pub identity: String,
    /// The leader Lease's name (in `namespace`).
    pub lease_name: String,
    /// The election's timing.
    pub lease: lease::LeaseConfig,
    /// Whether filled `certificateRefs` are written back into Gateways.
    pub write_certificate_refs: bool,
    /// A LoadBalancer Service (in `namespace`) whose ingress Gateways
    /// report as their addresses.
    pub gateway_service: Option<String>,
    /// Addresses Gateways report when neither they nor the Service give
    /// any.
    pub gateway_addresses: Vec<String>,
    /// A Service per Gateway, made as this says (`None`: none, and those
    /// made earlier are deleted).
    pub per_gateway_service: Option<gateway_services::ServiceOptions>,
}

impl ClusterOptions {
    /// A client from in-cluster configuration, else KUBECONFIG or
    /// ~/.kube/config.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        // The kube client's TLS needs a process-wide provider when more
        // than one is compiled in; ours is the one every config uses.
        let _ = rustls::crypto::CryptoProvider::clone(&crate::tls::provider::provider())
            .install_default();
        let config = kube::Config::infer().await.map_err(Error::Config)?;
        kube::Client::try_from(config).map_err(Error::Client)
    }
}
