//! Certificate issuance: which certificates Gateways need, when to issue
//! and renew them, and the issuers that sign them. Keeping the results and
//! every other piece of issuer state belongs to [`crate::store`].
//!
//! | module | owns | pure? |
//! |---|---|---|
//! | [`clock`] | the one source of wall-clock time the runtime passes in ([`Clock`]) | yes |
//! | [`request`] | the shared vocabulary: [`CertRequest`], [`KeyAlgorithm`], [`Issued`], [`RenewalWindow`] | yes |
//! | [`demand`] | Gateways and ListenerSets + annotations + attached routes → one `Demand` per Secret | yes |
//! | [`augment`](mod@augment) | stored certificates as Secrets, auto-filled certificateRefs, before compile | yes |
//! | [`inventory`] | facts about a stored certificate (`Held`) | yes |
//! | [`plan`] | issue / renew / retry / wait decisions with a fake-able clock | yes |
//! | [`status`] | the per-certificate report and the `portcullis certs` table | yes |
//! | [`manager`] | the loop: demand → inventory → plan → issue → store → recompile; run until stopped | I/O |
//! | `local_ca`, [`self_signed`], [`ca_issuer`] | the local issuers | issue is pure given keys |
//! | [`acme`], [`challenges`], [`dns`] | the ACME issuer, challenge publishing and the board, DNS-01 | I/O |

pub mod acme;
pub mod augment;
pub mod ca_issuer;
pub mod challenges;
pub mod clock;
pub mod demand;
pub mod dns;
pub mod inventory;
mod local_ca;
pub mod manager;
pub mod plan;
pub mod request;
pub mod self_signed;
pub mod status;

pub use augment::augment;
pub use clock::{Clock, SystemClock};
pub use local_ca::{LocalCa, DEFAULT_LEAF_VALIDITY};
pub use request::{CertRequest, Issued, KeyAlgorithm, RenewalWindow};

/// Why issuing a certificate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the issuer's state in the Store failed.
    #[error("issuer storage")]
    Store(#[source] crate::store::Error),
    /// The stored CA certificate or key could not be parsed, do not belong
    /// together, or one is missing.
    #[error("stored local CA is unusable: {reason}")]
    LoadCa {
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
    /// An issuer's configuration or Secret cannot be used.
    #[error("{0}")]
    IssuerConfig(String),
    /// Generating a key outside rcgen (RSA) failed.
    #[error("generating a key: {0}")]
    KeyGeneration(String),
    /// The request cannot be issued as asked (no names, a time before 1970,
    /// a validity that ends before it starts).
    #[error("invalid certificate request: {0}")]
    InvalidRequest(String),
}

/// Displays an error with its sources, `a: b: c`, for log lines and
/// per-certificate status.
pub(crate) struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
