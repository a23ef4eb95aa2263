//! The `selfSigned` issuer: each certificate is signed by its own key. Pure
//! apart from the key the caller generated; time is an argument.

use std::time::{Duration, SystemTime};

use rcgen::KeyPair;

use super::local_ca::{backdate, leaf_params, unix};
use super::{CertRequest, Error, Issued};
use crate::store::StoredCert;

/// Lifetime of `selfSigned` and `ca` certificates when the Gateway sets no
/// duration: 90 days, cert-manager's default.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(90 * 86_400);

/// Issues a self-signed server certificate for `req` with `key`.
pub fn issue(req: &CertRequest, key: KeyPair, now: SystemTime) -> Result<Issued, Error> {
    let validity = req.duration.unwrap_or(DEFAULT_VALIDITY);
    let start = unix(now)?.saturating_sub(backdate(validity));
    let end = unix(now)?.saturating_add(validity);
    let params = leaf_params(&req.dns_names, start, end)?;
    let cert = params.self_signed(&key).map_err(|source| Error::Generate {
        what: "self-signed certificate",
        source,
    })?;
    Ok(Issued {
        cert: StoredCert {
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            // A self-signed certificate is its own CA (as cert-manager's
            // `selfSigned` issuer writes `ca.crt`).
            ca_pem: Some(cert.pem()),
        },
        renewal_window: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::inventory::Held;
    use crate::issuer::KeyAlgorithm;
    use crate::store::StoreKey;
    use std::time::UNIX_EPOCH;

    #[test]
    fn self_signed_certificate_has_requested_names_lifetime_and_key() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let secret = StoreKey::new("default", "s").expect("valid");
        let req = CertRequest {
            secret: secret.clone(),
            dns_names: vec!["a.test".into(), "b.test".into()],
            key: KeyAlgorithm::EcdsaP384,
            duration: Some(Duration::from_secs(600)),
            profile: None,
            replaces: None,
        };
        let key = req.key.generate().expect("key");
        let issued = issue(&req, key, now).expect("issues");
        let held = Held::parse(&secret, &issued.cert).expect("usable");
        assert_eq!(held.dns_names, ["a.test", "b.test"]);
        assert_eq!(held.key, Some(KeyAlgorithm::EcdsaP384));
        assert_eq!(held.not_after, now + Duration::from_secs(600));
        assert!(issued.renewal_window.is_none());
        assert_eq!(
            issued.cert.ca_pem.as_deref(),
            Some(issued.cert.cert_chain_pem.as_str()),
            "a self-signed certificate is its own CA"
        );
    }
}
