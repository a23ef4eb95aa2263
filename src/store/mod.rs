//! Certificate storage: where issued certificates and their private keys live
//! between runs.
//!
//! A [`Store`] maps a Secret identity ([`StoreKey`]: namespace and name) to a
//! certificate chain and its key ([`StoredCert`]), like a
//! `kubernetes.io/tls` Secret. The backend is swappable: [`DirStore`] keeps
//! them in the state directory for standalone mode; a Kubernetes Secret
//! backend will implement the same trait. Issuing, renewing and deciding what
//! to store belong to [`crate::issuer`]; this module only keeps bytes safe.

mod dir;

pub use dir::{write_atomic, DirStore};

use std::fmt;
use std::path::PathBuf;

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
}

/// The identity of one stored certificate: the namespace and name of the
/// Secret it is (or will be) kept in.
///
/// Both parts are validated on construction as Kubernetes object names
/// (lowercase RFC 1123 subdomains), which also guarantees they are safe single
/// path components: no `/`, no leading `.`, never `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreKey {
    namespace: String,
    name: String,
}

impl StoreKey {
    /// Builds a key, rejecting names that are not valid Kubernetes object
    /// names.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self, Error> {
        let namespace = namespace.into();
        let name = name.into();
        validate_object_name("namespace", &namespace)?;
        validate_object_name("name", &name)?;
        Ok(Self { namespace, name })
    }

    /// The Secret's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Checks `value` against the Kubernetes object-name rule (RFC 1123
/// subdomain: at most 253 characters of `[a-z0-9.-]`, starting and ending
/// with an alphanumeric).
fn validate_object_name(field: &'static str, value: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidKey {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > 253 {
        return Err(invalid("must be at most 253 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(invalid(
            "may only contain lowercase letters, digits, '-' and '.'",
        ));
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(value.bytes().next()) || !alnum(value.bytes().last()) {
        return Err(invalid("must start and end with a letter or digit"));
    }
    Ok(())
}

/// A certificate chain and its private key, as kept in a `kubernetes.io/tls`
/// Secret (`tls.crt`, `tls.key`).
///
/// `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCert {
    /// PEM certificates, leaf first, then intermediates (and, for the local
    /// CA, its root).
    pub cert_chain_pem: String,
    /// The leaf's private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for StoredCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCert")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A place certificates are kept between runs.
///
/// Implementations make each [`put`](Store::put) atomic: a reader sees either
/// the previous pair or the new pair, never a certificate with another
/// certificate's key, even after a crash.
pub trait Store: Send + Sync {
    /// The certificate stored under `name`, or `None` if there is none.
    fn get(&self, name: &StoreKey) -> Result<Option<StoredCert>, Error>;
    /// Stores `value` under `name`, replacing any previous value atomically.
    fn put(&self, name: &StoreKey, value: &StoredCert) -> Result<(), Error>;
    /// Every key with a stored certificate, sorted.
    fn list(&self) -> Result<Vec<StoreKey>, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_with_slash_or_dots_are_rejected() {
        for bad in [
            "", "a/b", "..", ".", "../etc", ".hidden", "..data", "Upper", "a_b", "-a", "a-",
        ] {
            assert!(StoreKey::new("default", bad).is_err(), "name {bad:?}");
            assert!(StoreKey::new(bad, "ok").is_err(), "namespace {bad:?}");
        }
        assert!(StoreKey::new("default", "x".repeat(254)).is_err());
    }

    #[test]
    fn kubernetes_object_names_are_accepted() {
        for good in ["a", "gw-https-tls", "my.secret-1", "0"] {
            let key = StoreKey::new("ns-1", good).expect("valid name");
            assert_eq!(key.name(), good);
            assert_eq!(key.namespace(), "ns-1");
        }
    }

    #[test]
    fn stored_cert_debug_redacts_key() {
        let cert = StoredCert {
            cert_chain_pem: "CERT".into(),
            key_pem: "SECRET-KEY-MATERIAL".into(),
        };
        let shown = format!("{cert:?}");
        assert!(shown.contains("CERT"));
        assert!(!shown.contains("SECRET-KEY-MATERIAL"));
    }
}
