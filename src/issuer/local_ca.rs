//! The built-in local CA: a self-signed ECDSA P-256 root kept in
//! `<state>/local-ca/{ca.crt,ca.key}` that signs short-lived leaf
//! certificates for listeners nobody gave a certificate to.
//!
//! Creating and loading the root is the only I/O here; issuing is pure apart
//! from key generation. Time is always an argument, never read from the clock.
//!
//! Crash safety: each file is written with [`write_atomic`]; the key is
//! written before the certificate, and the certificate's presence marks the
//! CA complete. A crash between the two leaves a key without a certificate,
//! which the next start reuses (no key is ever lost or replaced); a
//! certificate without its key is never produced, and if found it is reported
//! as an error rather than silently replaced by a new CA.
//!
//! Two processes creating the same CA at the same instant are not guarded
//! against; one state directory belongs to one portcullis.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::prelude::FromDer;

use super::Error;
use crate::store::{self, write_atomic, StoredCert};

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
/// The CA's directory under the state directory.
const CA_DIR: &str = "local-ca";
/// The root certificate file.
const CERT_FILE: &str = "ca.crt";
/// The root private key file.
const KEY_FILE: &str = "ca.key";

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
    /// Loads the CA from `<state_dir>/local-ca/`, creating it on first start
    /// (a new root valid from `now` for about ten years).
    pub fn load_or_create(state_dir: &Path, now: SystemTime) -> Result<Self, Error> {
        let dir = ca_dir(state_dir);
        create_private_dir(&dir)?;
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);

        let key = match read_optional(&key_path)? {
            Some(pem) => KeyPair::from_pem(&pem).map_err(|e| load_err(&dir, e.to_string()))?,
            None => {
                if cert_path.exists() {
                    return Err(load_err(
                        &dir,
                        format!("{CERT_FILE} exists without {KEY_FILE}"),
                    ));
                }
                let key = generate_key("local CA key")?;
                write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)
                    .map_err(Error::Store)?;
                key
            }
        };
        let root_pem = match read_optional(&cert_path)? {
            Some(pem) => pem,
            None => {
                let pem = self_sign_root(&key, now)?;
                write_atomic(&cert_path, pem.as_bytes(), 0o644).map_err(Error::Store)?;
                pem
            }
        };
        Self::from_parts(&dir, root_pem, key)
    }

    /// The root certificate PEM of an existing CA in `state_dir`, or `None` if
    /// none was created yet. Never creates one (for `portcullis ca export`).
    pub fn read_root_pem(state_dir: &Path) -> Result<Option<String>, Error> {
        read_optional(&ca_dir(state_dir).join(CERT_FILE))
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
            return Err(Error::InvalidRequest(
                "validity ends before it starts (is the local CA expired?)".into(),
            ));
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
        })
    }

    /// Checks that `root_pem` is a certificate for `key` and builds the
    /// signer.
    fn from_parts(dir: &Path, root_pem: String, key: KeyPair) -> Result<Self, Error> {
        let der = crate::tls::certs::parse_chain(root_pem.as_bytes())
            .map_err(|e| load_err(dir, e.to_string()))?;
        let Some(root_der) = der.first() else {
            return Err(load_err(dir, "no certificate".into()));
        };
        let (_, x509) = x509_parser::certificate::X509Certificate::from_der(root_der)
            .map_err(|e| load_err(dir, e.to_string()))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(load_err(
                dir,
                format!("{KEY_FILE} does not match {CERT_FILE}"),
            ));
        }
        let root_not_after = x509.validity().not_after.timestamp();
        let issuer =
            Issuer::from_ca_cert_der(root_der, key).map_err(|e| load_err(dir, e.to_string()))?;
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
        return Err(Error::InvalidRequest("no names to certify".into()));
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
    t.duration_since(UNIX_EPOCH)
        .map_err(|_| Error::InvalidRequest("time before 1970".into()))
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

fn ca_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(CA_DIR)
}

/// Creates `dir` (mode 0700) if missing and fsyncs its parent so the new
/// entry survives a crash.
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let write_err = |path: &Path, source| {
        Error::Store(store::Error::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
        .map_err(|e| write_err(dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| write_err(parent, e))?;
    }
    Ok(())
}

/// The text of `path`, or `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Store(store::Error::Read {
            path: path.to_path_buf(),
            source,
        })),
    }
}

fn load_err(dir: &Path, reason: String) -> Error {
    Error::LoadCa {
        path: dir.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests;
