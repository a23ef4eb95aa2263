//! ACME Renewal Information (RFC 9773) identifiers: the certificate id
//! `base64url(AKI keyIdentifier) "." base64url(DER serial)` (§4.1), from a
//! certificate or back into instant-acme's type. Pure.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use instant_acme::CertificateIdentifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::ParsedExtension;

/// The RFC 9773 id of the first (leaf) certificate of `chain_pem`; `None`
/// when it cannot be parsed or has no Authority Key Identifier.
pub fn cert_id(chain_pem: &str) -> Option<String> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })?;
    Some(id_from_parts(aki.0, cert.tbs_certificate.raw_serial()))
}

/// `base64url(key_identifier) "." base64url(serial)`, the serial as its
/// DER content octets (with any leading zero byte).
fn id_from_parts(key_identifier: &[u8], serial: &[u8]) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(key_identifier),
        URL_SAFE_NO_PAD.encode(serial)
    )
}

/// Parses a certificate id into instant-acme's type; `None` unless it is two
/// non-empty base64url parts.
pub fn parse_cert_id(id: &str) -> Option<CertificateIdentifier<'static>> {
    let (aki, serial) = id.split_once('.')?;
    let valid = |s: &str| !s.is_empty() && URL_SAFE_NO_PAD.decode(s).is_ok();
    if !valid(aki) || !valid(serial) {
        return None;
    }
    Some(CertificateIdentifier {
        authority_key_identifier: Cow::Owned(aki.to_owned()),
        serial: Cow::Owned(serial.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_id_matches_rfc_9773_example() {
        // RFC 9773 §4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:
        // 7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21.
        let aki = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ];
        let serial = [0x00, 0x87, 0x65, 0x43, 0x21];
        assert_eq!(
            id_from_parts(&aki, &serial),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
    }

    #[test]
    fn cert_id_reads_aki_and_serial_of_the_leaf() {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(vec![]).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).expect("params");
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[
            0x00, 0x87, 0x65, 0x43, 0x21,
        ]));
        let leaf = params.signed_by(&leaf_key, &issuer).expect("leaf");
        let chain = format!("{}{}", leaf.pem(), ca.pem());
        let id = cert_id(&chain).expect("has AKI");
        let (aki, serial) = id.split_once('.').expect("two parts");
        assert_eq!(serial, "AIdlQyE");
        assert!(!aki.is_empty());
        assert!(parse_cert_id(&id).is_some());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "abc", ".abc", "abc.", "a+b.c", "a.b.c"] {
            assert!(parse_cert_id(bad).is_none(), "{bad}");
        }
    }
}
