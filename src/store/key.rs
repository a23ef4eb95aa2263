//! The typed keys of the issuer's state: [`StoreKey`] (a Secret's namespace
//! and name, validated as Kubernetes object names) and [`AccountId`] (the
//! ACME account of one Secret on one server).

use std::fmt;

use super::Error;

/// The identity of one stored certificate: the namespace and name of the
/// Secret it is (or will be) kept in. Pending orders and issuer records are
/// keyed by it too.
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

/// Which ACME account a key belongs to: the issuer's `privateKeySecretRef`
/// Secret and the ACME directory URL. One Secret may hold accounts on
/// several servers (an issuer whose `server` changed), so the server is part
/// of the key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId {
    secret: StoreKey,
    server: String,
}

impl AccountId {
    /// The account kept in `secret` for the ACME directory `server`.
    pub fn new(secret: StoreKey, server: impl Into<String>) -> Self {
        Self {
            secret,
            server: server.into(),
        }
    }

    /// The `privateKeySecretRef` Secret.
    pub fn secret(&self) -> &StoreKey {
        &self.secret
    }

    /// The ACME directory URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A short, stable name for the server: the first 6 bytes of the SHA-256
    /// of its URL, as 12 lowercase hex digits. Safe as a file name or a
    /// Secret data key (`account-<hash>.pem`).
    pub fn server_hash(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.server.as_bytes());
        digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.secret, self.server)
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
    fn account_server_hash_is_short_stable_and_differs_per_server() {
        let secret = StoreKey::new("web", "le-account").expect("valid");
        let a = AccountId::new(secret.clone(), "https://a.test/dir");
        let b = AccountId::new(secret, "https://b.test/dir");
        assert_eq!(a.server_hash().len(), 12);
        assert!(a.server_hash().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.server_hash(), a.clone().server_hash());
        assert_ne!(a.server_hash(), b.server_hash());
    }
}
