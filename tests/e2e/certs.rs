//! Test certificates: a per-test CA made with rcgen that issues leaves with
//! ECDSA P-256/P-384, Ed25519 or RSA-2048 keys (the RSA key comes from
//! `openssl genpkey`, since rcgen's ring backend cannot generate RSA keys).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber, SignatureAlgorithm,
};

/// Key type of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256.
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048.
    Rsa2048,
}

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Certificate chain (leaf first).
    pub cert_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

/// Options for one leaf.
#[derive(Debug, Clone)]
pub struct LeafSpec<'a> {
    /// Common name (tests identify the served certificate by it).
    pub cn: &'a str,
    /// DNS names and IP addresses.
    pub sans: &'a [&'a str],
    /// Key type.
    pub key: KeyKind,
    /// Serial number.
    pub serial: u64,
    /// Whether it expired in 2021.
    pub expired: bool,
}

impl<'a> LeafSpec<'a> {
    /// An ECDSA P-256 leaf valid now, serial 1.
    pub fn new(cn: &'a str, sans: &'a [&'a str]) -> Self {
        Self {
            cn,
            sans,
            key: KeyKind::EcP256,
            serial: 1,
            expired: false,
        }
    }
}

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, for `--cacert` and client root stores.
    pub cert_pem: String,
}

impl Ca {
    /// A fresh ECDSA P-256 CA.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-sign CA");
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a leaf.
    pub fn issue(&self, spec: &LeafSpec<'_>) -> Leaf {
        let key = match spec.key {
            KeyKind::EcP256 => generate(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyKind::EcP384 => generate(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyKind::Ed25519 => generate(&rcgen::PKCS_ED25519),
            KeyKind::Rsa2048 => {
                let pem = openssl_rsa_key();
                KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
                    .expect("openssl writes a PKCS#8 RSA key ring can load")
            }
        };
        let sans: Vec<String> = spec.sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("test SANs are valid");
        params.distinguished_name.push(DnType::CommonName, spec.cn);
        params.serial_number = Some(SerialNumber::from_slice(&spec.serial.to_be_bytes()));
        if spec.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn generate(alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(alg).expect("generate leaf key")
}

fn openssl_rsa_key() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("run openssl genpkey");
    assert!(out.status.success(), "openssl genpkey failed: {out:?}");
    String::from_utf8(out.stdout).expect("PEM is ASCII")
}

/// Common name and serial (as big-endian u64) of the first certificate in
/// `der`.
pub fn cn_and_serial(der: &[u8]) -> (String, u64) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("served certificate parses");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let serial = cert
        .raw_serial()
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    (cn, serial)
}
