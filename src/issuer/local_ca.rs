//! The built-in local CA: a self-signed ECDSA P-256 root kept in the
//! [`Store`] (the directory store's `<state>/local-ca/{ca.crt,ca.key}`, a
//! Secret in Kubernetes mode) that signs short-lived leaf certificates for
//! listeners nobody gave a certificate to.
//!
//! Loading and creating the root go through the Store; issuing is pure apart
//! from key generation. Time is always an argument, never read from the
//! clock.
//!
//! Creation is compare-and-create ([`Store::create_local_ca`]): two
//! creators (two replicas, two processes) end up with the same CA, the
//! first one stored. A key a crash left without its certificate is reused
//! ([`Store::orphan_local_ca_key`]): no key is ever lost or replaced; a
//! certificate without its key is reported as an error rather than silently
//! replaced by a new CA.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::prelude::FromDer;

use super::{CaProblem, Error};
use crate::store::{self, Store, StoredCert};

/// How long a leaf from the local CA is valid when the caller has no reason
/// to choose otherwise: 7 days. Short, because renewal is automatic and
/// nothing outside this process depends on a local certificate; a leaked
/// key stops working within a week.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How long the root is valid: about ten years.
const ROOT_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// How far before `now` certificates start, to tolerate clock skew between
/// this host and its clients.
const BACKDATE: Duration = Duration::from_secs(60);

/// The local CA: its root certificate and a signer for leaves.
pub struct LocalCa {
    root_pem: String,
    /// The root's notAfter, Unix seconds; no leaf outlives it.
    root_not_after: i64,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Issuer`'s own Debug elides the key.
        f.debug_struct("LocalCa")
            .field("issuer", &self.issuer)
            .field("root_not_after", &self.root_not_after)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA from `store`, creating it on first start (a new root
    /// valid from `now` for about ten years). When another creator stored a
    /// CA first, that one is returned.
    pub async fn load_or_create(store: &dyn Store, now: SystemTime) -> Result<Self, Error> {
        if let Some(stored) = store.local_ca().await.map_err(ca_store_err)? {
            return Self::from_stored(&stored);
        }
        let key = match store.orphan_local_ca_key().await.map_err(ca_store_err)? {
            Some(pem) => KeyPair::from_pem(&pem).map_err(|e| Error::LoadCa(CaProblem::Key(e)))?,
            None => generate_key("local CA key")?,
        };
        let candidate = StoredCert {
            cert_chain_pem: self_sign_root(&key, now)?,
            key_pem: key.serialize_pem(),
            ca_pem: None,
        };
        let stored = store
            .create_local_ca(&candidate)
            .await
            .map_err(ca_store_err)?;
        Self::from_stored(&stored)
    }

    /// A new CA kept nowhere (for tests and previews): a fresh key and a
    /// root valid from `now`.
    pub fn generate(now: SystemTime) -> Result<Self, Error> {
        let key = generate_key("local CA key")?;
        let root_pem = self_sign_root(&key, now)?;
        Self::from_parts(root_pem, key)
    }

    /// The root certificate PEM of the CA in `store`, or `None` if none was
    /// created yet. Never creates one (for `portcullis ca export`).
    pub async fn read_root_pem(store: &dyn Store) -> Result<Option<String>, Error> {
        Ok(store
            .local_ca()
            .await
            .map_err(ca_store_err)?
            .map(|ca| ca.cert_chain_pem))
    }

    /// The root certificate, PEM: what clients add to their trust store.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Issues a server certificate for `dns_names` (DNS names or IP
    /// addresses) with a fresh ECDSA P-256 key: valid from one minute before
    /// `now` for `validity` (cut short at the root's expiry), extended key
    /// usage serverAuth, random serial. The chain is leaf then root.
    pub fn issue(
        &self,
        dns_names: &[String],
        validity: Duration,
        now: SystemTime,
    ) -> Result<StoredCert, Error> {
        self.issue_with_key(dns_names, validity, now, generate_key("leaf key")?)
    }

    /// Like [`issue`](Self::issue), for a key the caller chose (another
    /// algorithm, or the previous key when keys are not rotated).
    pub fn issue_with_key(
        &self,
        dns_names: &[String],
        validity: Duration,
        now: SystemTime,
        key: KeyPair,
    ) -> Result<StoredCert, Error> {
        let start = unix(now)?.saturating_sub(backdate(validity));
        let end = unix(now)?.saturating_add(validity).min(Duration::from_secs(
            u64::try_from(self.root_not_after).unwrap_or(0),
        ));
        if end <= start {
            return Err(Error::EmptyValidity);
        }
        let params = leaf_params(dns_names, start, end)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Generate {
                what: "leaf certificate",
                source,
            })?;
        Ok(StoredCert {
            cert_chain_pem: format!("{}{}", cert.pem(), self.root_pem),
            key_pem: key.serialize_pem(),
            ca_pem: Some(self.root_pem.clone()),
        })
    }

    /// The CA a Store holds: its root and key, checked to belong together.
    fn from_stored(stored: &StoredCert) -> Result<Self, Error> {
        let key =
            KeyPair::from_pem(&stored.key_pem).map_err(|e| Error::LoadCa(CaProblem::Key(e)))?;
        Self::from_parts(stored.cert_chain_pem.clone(), key)
    }

    /// Checks that `root_pem` is a certificate for `key` and builds the
    /// signer.
    fn from_parts(root_pem: String, key: KeyPair) -> Result<Self, Error> {
        let der = crate::tls::certs::parse_chain(root_pem.as_bytes())
            .map_err(|e| Error::LoadCa(CaProblem::Chain(e)))?;
        let Some(root_der) = der.first() else {
            return Err(Error::LoadCa(CaProblem::NoCertificate));
        };
        let (_, x509) = x509_parser::certificate::X509Certificate::from_der(root_der)
            .map_err(|e| Error::LoadCa(CaProblem::X509(e)))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::LoadCa(CaProblem::KeyMismatch));
        }
        let root_not_after = x509.validity().not_after.timestamp();
        let issuer = Issuer::from_ca_cert_der(root_der, key)
            .map_err(|e| Error::LoadCa(CaProblem::Signer(e)))?;
        Ok(Self {
            root_pem,
            root_not_after,
            issuer,
        })
    }
}

/// The parameters of a server (leaf) certificate for `dns_names`, valid
/// between two offsets since the Unix epoch: CN the first name when it fits,
/// SANs all names, not a CA, digitalSignature, serverAuth, random serial.
pub(super) fn leaf_params(
    dns_names: &[String],
    not_before: Duration,
    not_after: Duration,
) -> Result<CertificateParams, Error> {
    let Some(first) = dns_names.first() else {
        return Err(Error::NoNames);
    };
    let mut params =
        CertificateParams::new(dns_names.to_vec()).map_err(|source| Error::Generate {
            what: "leaf certificate parameters",
            source,
        })?;
    let mut dn = DistinguishedName::new();
    // RFC 5280 upper bound for a CN; longer names are in the SAN only.
    if first.len() <= 64 {
        dn.push(DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, not_before, not_after);
    Ok(params)
}

/// A new self-signed root for `key`, PEM.
fn self_sign_root(key: &KeyPair, now: SystemTime) -> Result<String, Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let tag: [u8; 3] = rand::random();
    dn.push(
        DnType::CommonName,
        format!(
            "portcullis local CA {:02x}{:02x}{:02x}",
            tag[0], tag[1], tag[2]
        ),
    );
    dn.push(DnType::OrganizationName, "portcullis");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    let start = unix(now)?.saturating_sub(BACKDATE);
    set_validity(&mut params, start, start.saturating_add(ROOT_VALIDITY));
    let cert = params.self_signed(key).map_err(|source| Error::Generate {
        what: "local CA certificate",
        source,
    })?;
    Ok(cert.pem())
}

/// Sets notBefore and notAfter from offsets since the Unix epoch.
fn set_validity(params: &mut CertificateParams, not_before: Duration, not_after: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + not_before;
    params.not_after = epoch + not_after;
}

/// How far before `now` a certificate valid for `validity` starts:
/// [`BACKDATE`], but at most a tenth of the validity, so very short
/// certificates are not mostly in the past.
pub(super) fn backdate(validity: Duration) -> Duration {
    BACKDATE.min(validity / 10)
}

/// `t` as an offset since the Unix epoch.
pub(super) fn unix(t: SystemTime) -> Result<Duration, Error> {
    t.duration_since(UNIX_EPOCH).map_err(|_| Error::BeforeEpoch)
}

/// A random positive 128-bit serial (RFC 5280 §4.1.2.2 allows up to 20
/// octets; CAs should use at least 64 random bits).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, and no leading zero octet that DER would strip.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn generate_key(what: &'static str) -> Result<KeyPair, Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| Error::Generate { what, source })
}

/// A Store error about the CA: an incomplete CA is unusable (never
/// replaced); anything else is storage.
fn ca_store_err(error: store::Error) -> Error {
    match error {
        store::Error::Incomplete { .. } => Error::LoadCa(CaProblem::Incomplete(error)),
        other => Error::Store(other),
    }
}

#[cfg(test)]
mod tests;
