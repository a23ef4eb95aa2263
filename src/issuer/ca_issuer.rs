//! The `ca` issuer: signs with a CA certificate and key taken from a
//! `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`). Pure: the Secret's
//! bytes and the time are arguments.

use std::time::{Duration, SystemTime};

use rcgen::KeyPair;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::local_ca::{backdate, leaf_params, unix};
use super::self_signed::DEFAULT_VALIDITY;
use super::{CaProblem, CertRequest, Error, Issued};
use crate::store::StoredCert;

/// A CA ready to sign: its certificate chain (PEM, CA first) and key.
pub struct CaSigner {
    issuer: rcgen::Issuer<'static, KeyPair>,
    chain_pem: String,
    /// The CA's notAfter, seconds since the epoch; no leaf outlives it.
    not_after: u64,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CaSigner {
    /// Reads the CA from a Secret's `tls.crt` (the CA certificate first,
    /// then any chain up to a root) and `tls.key`.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain_pem = String::from_utf8(cert_pem.to_vec())
            .map_err(|_| Error::CaSecret(CaProblem::CertNotText))?;
        let key_pem =
            std::str::from_utf8(key_pem).map_err(|_| Error::CaSecret(CaProblem::KeyNotText))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::CaSecret(CaProblem::Key(e)))?;
        let chain = crate::tls::certs::parse_chain(cert_pem)
            .map_err(|e| Error::CaSecret(CaProblem::Chain(e)))?;
        let ca_der = chain
            .first()
            .ok_or(Error::CaSecret(CaProblem::NoCertificate))?;
        let (_, x509) =
            X509Certificate::from_der(ca_der).map_err(|e| Error::CaSecret(CaProblem::X509(e)))?;
        if !x509.is_ca() {
            return Err(Error::CaSecret(CaProblem::NotCa));
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::CaSecret(CaProblem::KeyMismatch));
        }
        let not_after = u64::try_from(x509.validity().not_after.timestamp()).unwrap_or(0);
        let issuer = rcgen::Issuer::from_ca_cert_der(ca_der, key)
            .map_err(|e| Error::CaSecret(CaProblem::Signer(e)))?;
        Ok(Self {
            issuer,
            chain_pem,
            not_after,
        })
    }

    /// Issues a certificate for `req` with `key`, valid for the requested
    /// duration (90 days by default) but never past the CA's own expiry.
    /// The chain is the leaf followed by the Secret's `tls.crt`.
    pub fn issue(&self, req: &CertRequest, key: KeyPair, now: SystemTime) -> Result<Issued, Error> {
        let validity = req.duration.unwrap_or(DEFAULT_VALIDITY);
        let start = unix(now)?.saturating_sub(backdate(validity));
        let end = unix(now)?
            .saturating_add(validity)
            .min(Duration::from_secs(self.not_after));
        if end <= start {
            return Err(Error::CaExpired);
        }
        let params = leaf_params(&req.dns_names, start, end)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Generate {
                what: "certificate signed by the CA",
                source,
            })?;
        let mut chain = cert.pem();
        if !chain.ends_with('\n') {
            chain.push('\n');
        }
        chain.push_str(&self.chain_pem);
        Ok(Issued {
            cert: StoredCert {
                cert_chain_pem: chain,
                key_pem: key.serialize_pem(),
                ca_pem: Some(top_of_chain(&self.chain_pem).to_owned()),
            },
            renewal_window: None,
        })
    }
}

/// The last PEM certificate of `chain_pem` (the CA's root, or the CA itself
/// when its Secret holds no chain): what `ca.crt` names.
fn top_of_chain(chain_pem: &str) -> &str {
    chain_pem
        .rfind("-----BEGIN CERTIFICATE-----")
        .map_or(chain_pem, |at| &chain_pem[at..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::inventory::Held;
    use crate::issuer::KeyAlgorithm;
    use crate::store::StoreKey;
    use std::time::UNIX_EPOCH;

    fn ca_pem(is_ca: bool) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![]).expect("params");
        if is_ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let cert = params.self_signed(&key).expect("self-signed");
        (cert.pem(), key.serialize_pem())
    }

    fn request(duration: u64) -> CertRequest {
        CertRequest {
            secret: StoreKey::new("default", "x").expect("valid"),
            dns_names: vec!["app.test".into()],
            key: KeyAlgorithm::EcdsaP256,
            duration: Some(Duration::from_secs(duration)),
            profile: None,
            replaces: None,
        }
    }

    #[test]
    fn ca_secret_signs_leaves_chained_to_it() {
        let (cert, key) = ca_pem(true);
        let ca = CaSigner::from_pem(cert.as_bytes(), key.as_bytes()).expect("usable CA");
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let req = request(3600);
        let issued = ca
            .issue(&req, req.key.generate().expect("key"), now)
            .expect("issues");
        assert!(issued.cert.cert_chain_pem.ends_with(&cert));
        assert_eq!(issued.cert.ca_pem.as_deref(), Some(cert.as_str()));
        let held = Held::parse(&req.secret, &issued.cert).expect("usable");
        assert_eq!(held.dns_names, ["app.test"]);
        assert!(held.ari_id.is_some(), "leaf carries the CA's key id");
    }

    #[test]
    fn leaf_never_outlives_the_ca() {
        let (cert, key) = ca_pem(true);
        let ca = CaSigner::from_pem(cert.as_bytes(), key.as_bytes()).expect("usable CA");
        // The CA ends on 2030-01-01; ask for ten years from 2026.
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let req = request(10 * 365 * 86_400);
        let issued = ca
            .issue(&req, req.key.generate().expect("key"), now)
            .expect("issues");
        let held = Held::parse(&req.secret, &issued.cert).expect("usable");
        assert_eq!(
            held.not_after,
            UNIX_EPOCH + Duration::from_secs(1_893_456_000)
        );
        assert_eq!(ca.not_after, 1_893_456_000);
    }

    #[test]
    fn ca_crt_is_the_top_of_the_ca_chain() {
        let (intermediate, _) = ca_pem(true);
        let (root, _) = ca_pem(true);
        let chain = format!("{intermediate}{root}");
        assert_eq!(top_of_chain(&chain), root);
        assert_eq!(top_of_chain(&root), root);
    }

    #[test]
    fn non_ca_or_mismatched_secret_is_refused() {
        let (cert, key) = ca_pem(false);
        assert!(matches!(
            CaSigner::from_pem(cert.as_bytes(), key.as_bytes()),
            Err(Error::CaSecret(CaProblem::NotCa))
        ));
        let (cert, _) = ca_pem(true);
        let (_, other_key) = ca_pem(true);
        assert!(matches!(
            CaSigner::from_pem(cert.as_bytes(), other_key.as_bytes()),
            Err(Error::CaSecret(CaProblem::KeyMismatch))
        ));
    }
}
