//! The control plane's certificates and keys, all ECDSA P-256 made with rcgen:
//! a serving CA and the kube-apiserver's serving certificate (127.0.0.1,
//! localhost), a client CA whose certificates authenticate users (x509: CN is
//! the user name, each O a group), and the service-account signing key. Also
//! the kubeconfig text that carries one user's certificate.
//!
//! Client certificates are assembled here in DER and signed with the client
//! CA's rcgen key: rcgen's distinguished names hold one value per attribute
//! type, and a user with several groups needs one O attribute per group.

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SigningKey, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Everything the API server is started with, PEM.
pub(super) struct Pki {
    /// The CA that signed the serving certificate (what kubeconfigs trust).
    pub serving_ca_pem: String,
    /// kube-apiserver's `--tls-cert-file`.
    pub serving_cert_pem: String,
    /// kube-apiserver's `--tls-private-key-file`.
    pub serving_key_pem: String,
    /// kube-apiserver's `--client-ca-file`.
    pub client_ca_pem: String,
    /// `--service-account-signing-key-file` (PKCS#8).
    pub service_account_key_pem: String,
    /// `--service-account-key-file`: its public half (kube-apiserver takes
    /// public keys, certificates or PKCS#1/SEC1 private keys there, not PKCS#8).
    pub service_account_public_pem: String,
    client_ca_key: KeyPair,
    client_ca_subject: Vec<u8>,
}

/// A client certificate and its key, PEM.
pub(super) struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    /// Generates a fresh set.
    pub(super) fn generate() -> Result<Pki> {
        let serving_ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let serving_ca_params = ca_params("portcullis test serving CA")?;
        let serving_ca_pem = serving_ca_params.self_signed(&serving_ca_key)?.pem();
        let serving_ca = Issuer::new(serving_ca_params, serving_ca_key);

        let serving_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut serving = CertificateParams::new(vec!["localhost".to_string()])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert_pem = serving.signed_by(&serving_key, &serving_ca)?.pem();

        let client_ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let client_ca = ca_params("portcullis test client CA")?.self_signed(&client_ca_key)?;
        let (_, parsed) = X509Certificate::from_der(client_ca.der())
            .map_err(|e| anyhow::anyhow!("parse the client CA rcgen made: {e}"))?;
        let client_ca_subject = parsed.subject().as_raw().to_vec();

        let service_account_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        Ok(Pki {
            serving_ca_pem,
            serving_cert_pem,
            serving_key_pem: serving_key.serialize_pem(),
            client_ca_pem: client_ca.pem(),
            service_account_key_pem: service_account_key.serialize_pem(),
            service_account_public_pem: service_account_key.public_key_pem(),
            client_ca_key,
            client_ca_subject,
        })
    }

    /// A client certificate for `user` in `groups`, signed by the client CA.
    pub(super) fn client_cert(&self, user: &str, groups: &[&str]) -> Result<ClientCert> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let ecdsa_with_sha256 = der::oid(&[1, 2, 840, 10045, 4, 3, 2]);
        let mut serial: [u8; 16] = rand::random();
        // Positive and minimally encoded: the first byte in 0x01..=0x7f.
        serial[0] = (serial[0] & 0x7f) | 0x01;

        let mut subject = Vec::new();
        for group in groups {
            subject.push(der::attribute(&[2, 5, 4, 10], group));
        }
        subject.push(der::attribute(&[2, 5, 4, 3], user));

        let client_auth = der::seq(&[&der::oid(&[1, 3, 6, 1, 5, 5, 7, 3, 2])]);
        let extensions = der::seq(&[
            // keyUsage (critical): digitalSignature.
            &der::seq(&[
                &der::oid(&[2, 5, 29, 15]),
                &[0x01, 0x01, 0xff],
                &der::tlv(0x04, &[0x03, 0x02, 0x07, 0x80]),
            ]),
            // extKeyUsage: clientAuth (kube-apiserver requires it).
            &der::seq(&[&der::oid(&[2, 5, 29, 37]), &der::tlv(0x04, &client_auth)]),
        ]);
        let tbs = der::seq(&[
            &der::tlv(0xa0, &der::tlv(0x02, &[2])),
            &der::tlv(0x02, &serial),
            &der::seq(&[&ecdsa_with_sha256]),
            &self.client_ca_subject,
            &der::seq(&[
                &der::tlv(0x17, b"000101000000Z"),
                &der::tlv(0x18, b"20991231235959Z"),
            ]),
            &der::seq(&subject.iter().map(Vec::as_slice).collect::<Vec<_>>()),
            &key.subject_public_key_info(),
            &der::tlv(0xa3, &extensions),
        ]);
        let signature = self
            .client_ca_key
            .sign(&tbs)
            .context("sign a client certificate")?;
        let mut bits = vec![0];
        bits.extend_from_slice(&signature);
        let cert = der::seq(&[
            &tbs,
            &der::seq(&[&ecdsa_with_sha256]),
            &der::tlv(0x03, &bits),
        ]);
        Ok(ClientCert {
            cert_pem: pem("CERTIFICATE", &cert),
            key_pem: key.serialize_pem(),
        })
    }
}

fn ca_params(name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A kubeconfig with one cluster, one user and one context, all named
/// `portcullis-test`, credentials inline.
pub(super) fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &str, cert: &ClientCert) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "portcullis-test", "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(&cert.cert_pem),
            "client-key-data": b64(&cert.key_pem),
        }}],
        "contexts": [{"name": "portcullis-test", "context": {
            "cluster": "portcullis-test",
            "user": user,
            "namespace": "default",
        }}],
        "current-context": "portcullis-test",
    });
    serde_yaml::to_string(&doc).expect("a JSON value serializes to YAML")
}

/// The few DER encodings a client certificate needs (X.690).
mod der {
    /// Tag, definite length, content.
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(content);
        out
    }

    /// SEQUENCE of already encoded parts.
    pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// OBJECT IDENTIFIER.
    pub fn oid(arcs: &[u64]) -> Vec<u8> {
        let mut content = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &arc in &arcs[2..] {
            let mut groups = vec![(arc & 0x7f) as u8];
            let mut rest = arc >> 7;
            while rest > 0 {
                groups.push(0x80 | (rest & 0x7f) as u8);
                rest >>= 7;
            }
            content.extend(groups.iter().rev());
        }
        tlv(0x06, &content)
    }

    /// One relative distinguished name: SET { SEQUENCE { type, UTF8String } }.
    pub fn attribute(oid_arcs: &[u64], value: &str) -> Vec<u8> {
        tlv(0x31, &seq(&[&oid(oid_arcs), &tlv(0x0c, value.as_bytes())]))
    }

    #[test]
    fn encodes_long_lengths_and_multi_byte_arcs() {
        assert_eq!(tlv(0x04, &[7; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[7; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        // ecdsa-with-SHA256, as every certificate on the Internet spells it.
        assert_eq!(
            oid(&[1, 2, 840, 10045, 4, 3, 2]),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        );
    }
}
