//! The issuer's durable state behind one async boundary, [`Store`]: issued
//! certificates and their keys, ACME account keys, pending ACME orders, the
//! local CA's key pair and the per-certificate issuer records.
//!
//! Two backends implement it: [`DirStore`] keeps everything in the state
//! directory (standalone mode); the Kubernetes backend keeps it in Secrets
//! and ConfigMaps, so a new leader replica resumes where the last one
//! stopped. Keys are typed ([`StoreKey`], [`AccountId`]); values are the
//! issuer's own nouns ([`StoredCert`], [`PendingOrder`], the planner's
//! [`Record`]). Issuing, renewing and deciding what to store belong to
//! [`crate::issuer`]; this module only keeps bytes safe.

mod dir;
mod key;

pub use dir::{write_atomic, DirStore};
pub use key::{AccountId, StoreKey};

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

/// What the planner remembers per certificate between attempts and
/// restarts (attempts, backoff, the ARI window).
pub use crate::issuer::plan::Record;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A namespace or name is not a valid Kubernetes object name, so it cannot
    /// name a Secret (and could escape the state directory as a path).
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidKey {
        /// `namespace` or `name`.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// Reading a stored file or directory failed.
    #[error("reading {path}")]
    Read {
        /// The file or directory being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming a stored file or directory failed.
    #[error("writing {path}")]
    Write {
        /// The file or directory being written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored entry exists but is not valid UTF-8 PEM text.
    #[error("stored file {path} is not UTF-8")]
    NotUtf8 {
        /// The offending file.
        path: PathBuf,
    },
    /// A stored entry exists but cannot be parsed (damaged JSON).
    #[error("decoding {what}: {reason}")]
    Decode {
        /// The entry (a path, or an object name).
        what: String,
        /// What the parser said.
        reason: String,
    },
    /// A value could not be serialised for storing.
    #[error("encoding {what}")]
    Encode {
        /// The entry being written.
        what: String,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
    /// Half of a pair is stored without the other (a local CA certificate
    /// without its key): refused rather than replaced, so no key is lost.
    #[error("{what} is incomplete: {reason}")]
    Incomplete {
        /// The entry.
        what: String,
        /// Which part is missing.
        reason: String,
    },
    /// The Kubernetes API failed or refused an operation (Kubernetes mode).
    #[error("{operation} {what}")]
    Api {
        /// What was attempted (`reading`, `writing`, `deleting`).
        operation: &'static str,
        /// The object (`Secret ns/name`).
        what: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// An object of the name portcullis would write exists and is not one
    /// it manages (no `portcullis.dev/managed: "true"` label): it is left as
    /// it is.
    #[error("{what} exists and is not managed by portcullis (no label portcullis.dev/managed=\"true\"); it is not overwritten")]
    Unmanaged {
        /// The object (`Secret ns/name`).
        what: String,
    },
    /// The blocking task running a store operation panicked or was
    /// cancelled.
    #[error("store operation {op} did not finish")]
    Blocking {
        /// The operation (`put_cert`, `records`, …).
        op: &'static str,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// A certificate chain and its private key, as kept in a `kubernetes.io/tls`
/// Secret (`tls.crt`, `tls.key`, and `ca.crt` when the issuing CA is known).
///
/// `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCert {
    /// PEM certificates, leaf first, then intermediates (and, for the local
    /// CA, its root).
    pub cert_chain_pem: String,
    /// The leaf's private key, PEM.
    pub key_pem: String,
    /// The certificate of the CA that issued it, PEM, when known (local CA,
    /// `ca` and `selfSigned` issuers; not ACME).
    pub ca_pem: Option<String>,
}

impl fmt::Debug for StoredCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCert")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .field("ca_pem", &self.ca_pem)
            .finish()
    }
}

/// What is known about an issued certificate besides its bytes, passed
/// with every [`Store::put_cert`]: the Kubernetes store writes it as the
/// Secret's annotations and labels (which issuer, which names, when renewal
/// is due); the directory store has no place for it and reads it back from
/// the certificate when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertMeta {
    /// `Issuer`, `ClusterIssuer` or `local-ca`.
    pub issuer_kind: String,
    /// The issuer's name (`local-ca` for the local CA); an `Issuer` is in the
    /// certificate's namespace.
    pub issuer_name: String,
    /// The names the certificate was requested for.
    pub dns_names: Vec<String>,
    /// The leaf's notAfter.
    pub not_after: Option<SystemTime>,
    /// When the planner will renew it.
    pub renewal_time: Option<SystemTime>,
}

/// An ACME order the CA created for a certificate that has not been stored
/// yet: kept so that a restart, or a new leader, resumes it instead of
/// ordering again.
///
/// `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingOrder {
    /// The order URL (RFC 8555 §7.1.3), for POST-as-GET.
    pub url: String,
    /// The ACME directory URL it was placed with.
    pub server: String,
    /// The names ordered, as requested.
    pub names: Vec<String>,
    /// The profile ordered, if any.
    pub profile: Option<String>,
    /// The private key (PEM) of the CSR the order was finalized with,
    /// recorded just before finalizing: a process that stops after that
    /// lets the next one download the certificate and pair it with this
    /// key, instead of abandoning the order and placing another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
}

impl fmt::Debug for PendingOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingOrder")
            .field("url", &self.url)
            .field("server", &self.server)
            .field("names", &self.names)
            .field("profile", &self.profile)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl PendingOrder {
    /// Whether this order is for the same certificate on the same server:
    /// only then may it be resumed (the key is chosen at finalize, so a new
    /// key algorithm does not matter).
    pub fn serves(&self, server: &str, names: &[String], profile: Option<&str>) -> bool {
        self.server == server && self.names == names && self.profile.as_deref() == profile
    }
}

/// Where the issuer keeps everything it must not lose.
///
/// Every write is atomic: a reader (or the next process, after a crash)
/// sees the previous value or the new one, never a mix, and never a
/// certificate with another certificate's key. Only the leader writes; any
/// number of readers may read. Implementations keep blocking I/O off the
/// async workers.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The certificate stored under `key`, or `None` if there is none.
    async fn get_cert(&self, key: &StoreKey) -> Result<Option<StoredCert>, Error>;

    /// Stores `cert` under `key`, replacing any previous pair atomically;
    /// `meta` describes it (see [`CertMeta`]).
    async fn put_cert(
        &self,
        key: &StoreKey,
        cert: &StoredCert,
        meta: &CertMeta,
    ) -> Result<(), Error>;

    /// Every key with a stored certificate, sorted.
    async fn list_certs(&self) -> Result<Vec<StoreKey>, Error>;

    /// The private key (PKCS#8 PEM) of `account`, or `None` if none was
    /// stored.
    async fn account_key(&self, account: &AccountId) -> Result<Option<String>, Error>;

    /// Stores the private key of `account`, replacing any previous one.
    async fn put_account_key(&self, account: &AccountId, key_pem: &str) -> Result<(), Error>;

    /// The order in progress for the certificate `cert`, if one is recorded.
    async fn pending_order(&self, cert: &StoreKey) -> Result<Option<PendingOrder>, Error>;

    /// Records `order` as the one in progress for `cert`.
    async fn put_pending_order(&self, cert: &StoreKey, order: &PendingOrder) -> Result<(), Error>;

    /// Forgets the order in progress for `cert`; nothing recorded is fine.
    async fn remove_pending_order(&self, cert: &StoreKey) -> Result<(), Error>;

    /// The local CA's root certificate (`cert_chain_pem`) and key, if one was
    /// created.
    async fn local_ca(&self) -> Result<Option<StoredCert>, Error>;

    /// Compare-and-create: stores `ca` as the local CA unless one exists, and
    /// returns the CA stored afterwards — `ca` itself, or the one another
    /// creator stored first. Two creators never end up with two CAs.
    async fn create_local_ca(&self, ca: &StoredCert) -> Result<StoredCert, Error>;

    /// A local CA key a crash left without its certificate, which the next
    /// creator must sign a root for (and pass to
    /// [`create_local_ca`](Store::create_local_ca)) instead of replacing it.
    /// Only a store that writes the key and the certificate separately can
    /// have one; by default there is none.
    async fn orphan_local_ca_key(&self) -> Result<Option<String>, Error> {
        Ok(None)
    }

    /// Every issuer record.
    async fn records(&self) -> Result<BTreeMap<StoreKey, Record>, Error>;

    /// Creates or replaces the records in `changed`; others are untouched.
    async fn put_records(&self, changed: &BTreeMap<StoreKey, Record>) -> Result<(), Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_cert_debug_redacts_key() {
        let cert = StoredCert {
            cert_chain_pem: "CERT".into(),
            key_pem: "SECRET-KEY-MATERIAL".into(),
            ca_pem: Some("ROOT".into()),
        };
        let shown = format!("{cert:?}");
        assert!(shown.contains("CERT") && shown.contains("ROOT"));
        assert!(!shown.contains("SECRET-KEY-MATERIAL"));
    }

    #[test]
    fn pending_order_resumes_only_for_the_same_server_names_and_profile() {
        let o = PendingOrder {
            key_pem: None,
            url: "https://ca.test/order/1".into(),
            server: "https://ca.test/dir".into(),
            names: vec!["a.test".into(), "b.test".into()],
            profile: None,
        };
        let names = o.names.clone();
        assert!(o.serves("https://ca.test/dir", &names, None));
        assert!(!o.serves("https://other.test/dir", &names, None));
        assert!(!o.serves("https://ca.test/dir", &names[..1], None));
        assert!(!o.serves("https://ca.test/dir", &names, Some("shortlived")));
    }
}
