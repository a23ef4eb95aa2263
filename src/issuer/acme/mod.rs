//! The `acme` issuer: obtains certificates from an ACME CA (RFC 8555) with
//! instant-acme, answering challenges through the data plane (HTTP-01,
//! TLS-ALPN-01 via [`crate::issuer::challenges`]) or DNS (DNS-01 via
//! [`crate::issuer::dns`]), and reads ACME Renewal Information (RFC 9773).
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`AcmeIssuer`]: the spec with its Secrets resolved; solver choice |
//! | `account` | account creation, key storage in the [`Store`], reuse |
//! | `http` | the HTTPS client (caBundle trust, Retry-After capture) |
//! | `order` | one order: new order, authorizations, finalize, download |
//! | `pending` | the URL of an order in progress, kept in the Store so a restart (or a new leader) resumes it |
//! | `ari` | certificate ids and renewal windows |
//!
//! When to issue, where to store the result and how to back off are the
//! manager's and planner's; [`Error`] tells them what kind of failure it was
//! ([`Error::retry_after`], [`Error::reason`]).

mod account;
mod ari;
mod config;
mod http;
mod order;
mod pending;

pub use ari::{cert_id, parse_cert_id};
pub use config::{choose_solver, AcmeIssuer, Eab, IssuerProblem, Solver, SolverKind};
pub use http::parse_retry_after;
pub use order::{issue, issue_with_key, order_stored, renewal_window};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::challenges::ChallengePublisher;
use crate::store::{AccountId, Store};

/// The step of an order that failed (RFC 8555 §7.1's lifecycle as seen
/// from the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Creating or finding the account.
    Account,
    /// Submitting the new order.
    NewOrder,
    /// Fetching authorizations and presenting challenges.
    Authorize,
    /// Waiting for the CA to validate the challenges.
    Validate,
    /// Sending the CSR.
    Finalize,
    /// Waiting for and downloading the certificate.
    Download,
    /// Fetching renewal information.
    RenewalInfo,
}

impl Phase {
    /// A stable lowercase name for logs and status.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::NewOrder => "new-order",
            Self::Authorize => "authorize",
            Self::Validate => "validate",
            Self::Finalize => "finalize",
            Self::Download => "download",
            Self::RenewalInfo => "renewal-info",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with a stored or configured ACME account key (the detail
/// of [`Error::AccountKey`], printed in its message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountKeyProblem {
    /// It is not a PKCS#8 PEM key.
    #[error("not a PKCS#8 PEM key: {0}")]
    NotPkcs8Pem(rustls_pki_types::pem::Error),
    /// instant-acme cannot sign with it.
    #[error("unusable account key (ECDSA P-256 expected): {0}")]
    Unusable(instant_acme::Error),
}

/// Why an ACME issuance failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The issuer's configuration cannot work (missing Secret, bad
    /// caBundle, no solver): retrying will not help until it changes.
    #[error("invalid ACME issuer: {0}")]
    InvalidIssuer(IssuerProblem),
    /// The account key cannot be parsed or used.
    #[error("ACME account key of {account}: {problem}")]
    AccountKey {
        /// The account (boxed: errors stay small).
        account: Box<AccountId>,
        /// What is wrong with it.
        problem: AccountKeyProblem,
    },
    /// Reading or writing the account key in the Store failed.
    #[error("storing the ACME account key of {account}")]
    StoreAccountKey {
        /// The account (boxed: errors stay small).
        account: Box<AccountId>,
        /// The Store's error.
        #[source]
        source: crate::store::Error,
    },
    /// The CA rate-limited us (`rateLimited`, HTTP 429).
    #[error("rate limited by the ACME server during {phase}: {detail}")]
    RateLimited {
        /// When the CA said to come back, if it said.
        retry_after: Option<SystemTime>,
        /// The phase.
        phase: Phase,
        /// The CA's explanation.
        detail: String,
    },
    /// The CA refused the names or the account (`rejectedIdentifier`,
    /// `unauthorized`, `caa`, `externalAccountRequired`, …).
    #[error("ACME server refused during {phase}: {detail} ({problem})")]
    Rejected {
        /// The phase.
        phase: Phase,
        /// The problem type URN.
        problem: String,
        /// The CA's explanation.
        detail: String,
    },
    /// A challenge failed validation (the CA could not reach us, or found
    /// the wrong answer).
    #[error("challenge for {name} failed: {detail}")]
    ChallengeFailed {
        /// The identifier.
        name: String,
        /// The CA's explanation.
        detail: String,
    },
    /// No solver of the issuer fits a name.
    #[error("no solver for {name} (offered: {offered})")]
    NoSolver {
        /// The identifier.
        name: String,
        /// The challenge types the CA offered.
        offered: String,
    },
    /// The CA did not finish a step in time.
    #[error("timed out during {phase} after {waited:?}")]
    Timeout {
        /// The phase.
        phase: Phase,
        /// How long we waited.
        waited: Duration,
    },
    /// A DNS-01 update or check failed.
    #[error("DNS-01 for {name}")]
    Dns {
        /// The record name.
        name: String,
        /// The failure.
        #[source]
        source: super::dns::Error,
    },
    /// Publishing a challenge failed.
    #[error("publishing a challenge")]
    Challenge(#[source] super::challenges::Error),
    /// Generating the certificate key or CSR failed.
    #[error("generating the key or CSR")]
    Key(#[source] super::Error),
    /// A step that runs in a task of its own (placing and recording an
    /// order) ended without finishing (the task panicked).
    #[error("ACME {phase} was interrupted")]
    Interrupted {
        /// The phase.
        phase: Phase,
    },
    /// Any other protocol or transport failure (server unreachable, bad
    /// answer).
    #[error("ACME {phase} failed")]
    Protocol {
        /// The phase.
        phase: Phase,
        /// The failure.
        #[source]
        source: instant_acme::Error,
    },
}

impl Error {
    /// Maps an instant-acme error in `phase` to its kind.
    pub fn from_acme(phase: Phase, source: instant_acme::Error) -> Self {
        Self::from_acme_with(phase, source, None)
    }

    fn from_acme_with(
        phase: Phase,
        source: instant_acme::Error,
        retry_after: Option<SystemTime>,
    ) -> Self {
        match source {
            instant_acme::Error::Api(problem) => {
                let kind = problem.r#type.clone().unwrap_or_default();
                let detail = problem.to_string();
                match kind.strip_prefix("urn:ietf:params:acme:error:") {
                    Some("rateLimited") => Self::RateLimited {
                        retry_after,
                        phase,
                        detail,
                    },
                    Some(
                        "rejectedIdentifier"
                        | "unauthorized"
                        | "caa"
                        | "unsupportedIdentifier"
                        | "externalAccountRequired"
                        | "accountDoesNotExist"
                        | "userActionRequired"
                        | "badCSR"
                        | "badSignatureAlgorithm",
                    ) => Self::Rejected {
                        phase,
                        problem: kind,
                        detail,
                    },
                    _ if problem.status == Some(429) => Self::RateLimited {
                        retry_after,
                        phase,
                        detail,
                    },
                    _ => Self::Protocol {
                        phase,
                        source: instant_acme::Error::Api(problem),
                    },
                }
            }
            instant_acme::Error::Timeout(_) => Self::Timeout {
                phase,
                waited: Duration::ZERO,
            },
            other => Self::Protocol {
                phase,
                source: other,
            },
        }
    }

    /// When the CA asked us to come back, if it did.
    pub fn retry_after(&self) -> Option<SystemTime> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether only a configuration change can fix this (retrying as is will
    /// fail the same way).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::InvalidIssuer { .. } | Self::NoSolver { .. })
    }

    /// A stable CamelCase reason for status conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidIssuer { .. } => "InvalidIssuer",
            Self::AccountKey { .. } => "AccountKeyUnusable",
            Self::StoreAccountKey { .. } => "StoreFailed",
            Self::RateLimited { .. } => "RateLimited",
            Self::Rejected { .. } => "Rejected",
            Self::ChallengeFailed { .. } => "ChallengeFailed",
            Self::NoSolver { .. } => "NoSolver",
            Self::Timeout { .. } => "Timeout",
            Self::Dns { .. } => "DnsUpdateFailed",
            Self::Challenge(_) | Self::Key(_) | Self::Interrupted { .. } => "InternalError",
            Self::Protocol { .. } => "AcmeError",
        }
    }
}

/// Bounds on how long one order may wait for the CA.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Waiting for the challenges to be validated (order `ready`).
    pub validation: Duration,
    /// Waiting for a DNS-01 record to show on the nameserver.
    pub dns_propagation: Duration,
    /// Waiting for the certificate after finalize.
    pub certificate: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            validation: Duration::from_secs(120),
            dns_propagation: Duration::from_secs(60),
            certificate: Duration::from_secs(60),
        }
    }
}

/// What every ACME order shares: the Store (account keys, pending orders),
/// the publisher of challenges, accounts in use, timeouts.
#[derive(Debug)]
pub struct AcmeContext {
    /// Where account keys and pending orders are kept.
    pub store: Arc<dyn Store>,
    /// Where challenges are published for the data plane to answer.
    pub challenges: Arc<dyn ChallengePublisher>,
    /// Bounds on waiting.
    pub timeouts: Timeouts,
    /// Where requests, orders and failures are counted (none in tests that
    /// do not look).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Where Retry-After delays are dated from: the system clock unless
    /// the runtime passes the manager's.
    pub clock: Arc<dyn super::Clock>,
    accounts: account::Accounts,
}

impl AcmeContext {
    /// A context keeping accounts and pending orders in `store` and
    /// publishing challenges through `challenges`.
    pub fn new(store: Arc<dyn Store>, challenges: Arc<dyn ChallengePublisher>) -> Self {
        Self {
            store,
            challenges,
            timeouts: Timeouts::default(),
            metrics: None,
            clock: Arc::new(super::SystemClock),
            accounts: account::Accounts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, status: u16) -> instant_acme::Error {
        let json = format!(
            r#"{{"type":"urn:ietf:params:acme:error:{kind}","detail":"d","status":{status}}}"#
        );
        instant_acme::Error::Api(serde_json::from_str(&json).expect("problem parses"))
    }

    #[test]
    fn rate_limited_problem_keeps_retry_after() {
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        let e = Error::from_acme_with(Phase::NewOrder, problem("rateLimited", 429), Some(when));
        assert_eq!(e.retry_after(), Some(when));
        assert_eq!(e.reason(), "RateLimited");
    }

    #[test]
    fn identifier_and_account_refusals_are_rejections() {
        for kind in [
            "rejectedIdentifier",
            "unauthorized",
            "caa",
            "externalAccountRequired",
        ] {
            let e = Error::from_acme(Phase::NewOrder, problem(kind, 403));
            assert_eq!(e.reason(), "Rejected", "{kind}");
        }
        let e = Error::from_acme(Phase::Validate, problem("serverInternal", 500));
        assert_eq!(e.reason(), "AcmeError");
    }

    #[test]
    fn config_errors_are_not_worth_retrying_unchanged() {
        assert!(Error::InvalidIssuer(IssuerProblem::NoSolvers).is_config());
        assert!(!Error::Timeout {
            phase: Phase::Validate,
            waited: Duration::ZERO
        }
        .is_config());
    }
}
