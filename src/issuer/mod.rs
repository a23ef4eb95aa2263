//! Certificate issuance. This first slice holds the built-in local CA
//! ([`LocalCa`]) that standalone mode uses for HTTPS listeners with neither
//! `certificateRefs` nor an issuer annotation, so a quickstart gets a
//! certificate without any network. Deciding *when* to issue or renew and
//! ACME belong here too, later; storing the results belongs to
//! [`crate::store`].

mod local_ca;

pub use local_ca::{LocalCa, DEFAULT_LEAF_VALIDITY};

/// Why issuing a certificate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the CA's files failed.
    #[error("local CA storage")]
    Store(#[source] crate::store::Error),
    /// The stored CA certificate or key could not be parsed or do not belong
    /// together.
    #[error("stored local CA in {path} is unusable: {reason}")]
    LoadCa {
        /// The CA directory.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating a key or signing a certificate failed.
    #[error("generating {what}")]
    Generate {
        /// The key or certificate being generated.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// The request cannot be issued as asked (no names, a time before 1970,
    /// a validity that ends before it starts).
    #[error("invalid certificate request: {0}")]
    InvalidRequest(String),
}
