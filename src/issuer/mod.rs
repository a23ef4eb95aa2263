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
    #[error("stored local CA is unusable")]
    LoadCa(#[source] CaProblem),
    /// The `ca` issuer's Secret (`tls.crt`, `tls.key`) cannot sign.
    #[error("CA Secret")]
    CaSecret(#[source] CaProblem),
    /// The `ca` issuer's CA certificate is past its notAfter.
    #[error("the CA certificate has expired")]
    CaExpired,
    /// Generating a key or signing a certificate failed.
    #[error("generating {what}")]
    Generate {
        /// The key or certificate being generated.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// Generating an RSA key failed.
    #[error("generating a key: RSA-{bits}")]
    GenerateRsa {
        /// The key size.
        bits: usize,
        /// The underlying error.
        #[source]
        source: rsa::Error,
    },
    /// Encoding a new RSA key as PKCS#8 failed.
    #[error("generating a key: RSA-{bits} PKCS#8")]
    EncodeRsa {
        /// The key size.
        bits: usize,
        /// The underlying error.
        #[source]
        source: rsa::pkcs8::Error,
    },
    /// The request names nothing to certify.
    #[error("invalid certificate request: no names to certify")]
    NoNames,
    /// The time given is before 1970.
    #[error("invalid certificate request: time before 1970")]
    BeforeEpoch,
    /// The validity would end before it starts.
    #[error(
        "invalid certificate request: validity ends before it starts (is the local CA expired?)"
    )]
    EmptyValidity,
}

/// What is wrong with a CA's certificate or key (the local CA's in the
/// Store, or a `ca` issuer's Secret).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaProblem {
    /// `tls.crt` is not UTF-8 text.
    #[error("tls.crt is not text")]
    CertNotText,
    /// `tls.key` is not UTF-8 text.
    #[error("tls.key is not text")]
    KeyNotText,
    /// The key is not a PEM key rcgen can sign with.
    #[error("the key cannot be read")]
    Key(#[source] rcgen::Error),
    /// The certificate PEM cannot be parsed.
    #[error("the certificate cannot be read")]
    Chain(#[source] crate::tls::certs::Error),
    /// The certificate PEM holds no certificate.
    #[error("no certificate")]
    NoCertificate,
    /// The certificate is not valid X.509.
    #[error("invalid X.509 certificate")]
    X509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The certificate is not a CA certificate.
    #[error("the certificate is not a CA certificate")]
    NotCa,
    /// The key does not belong to the certificate.
    #[error("the key does not match the certificate")]
    KeyMismatch,
    /// rcgen cannot sign with the certificate and key.
    #[error("cannot sign with the certificate and key")]
    Signer(#[source] rcgen::Error),
    /// The Store holds only part of it.
    #[error("incomplete")]
    Incomplete(#[source] crate::store::Error),
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
