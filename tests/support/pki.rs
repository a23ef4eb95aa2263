//! Certificates the conformance suite creates at start-up (environment.json →
//! `generated_at_suite_setup`): self-signed CAs published as ConfigMaps (`ca.crt`)
//! and TLS Secrets (`tls.crt`/`tls.key`), self-signed or signed by one of those CAs.
//!
//! Keys are RSA-2048 like upstream. rcgen's ring backend can sign with RSA keys
//! but cannot generate them, so keys come from `openssl genpkey` (PKCS#8 for
//! rcgen, converted to PKCS#1 for the Secret as upstream writes it). When the
//! `openssl` command is unavailable the keys fall back to ECDSA P-256 (PKCS#8).

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct TlsPair {
    /// `tls.crt`.
    pub cert_pem: String,
    /// `tls.key`.
    pub key_pem: String,
}

/// Everything generated at suite setup, keyed by `namespace/name`.
#[derive(Debug, Default)]
pub struct SuitePki {
    /// TLS Secrets.
    pub secrets: BTreeMap<String, TlsPair>,
    /// CA ConfigMaps (`ca.crt` PEM).
    pub config_maps: BTreeMap<String, String>,
    /// Whether keys are RSA (false: ECDSA P-256 fallback).
    pub rsa: bool,
}

impl SuitePki {
    /// The Secret `ns/name`.
    pub fn secret(&self, key: &str) -> Result<&TlsPair> {
        self.secrets
            .get(key)
            .ok_or_else(|| anyhow!("no generated Secret {key}"))
    }

    /// The CA ConfigMap `ns/name`.
    pub fn config_map(&self, key: &str) -> Result<&str> {
        self.config_maps
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no generated ConfigMap {key}"))
    }

    /// Kubernetes documents (Secrets and ConfigMaps) for the config directory.
    pub fn documents(&self) -> Vec<serde_yaml::Value> {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let mut docs = Vec::new();
        for (key, ca) in &self.config_maps {
            let (ns, name) = split_key(key);
            let doc = serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns},
                "data": {"ca.crt": ca},
            });
            docs.push(to_yaml(doc));
        }
        for (key, pair) in &self.secrets {
            let (ns, name) = split_key(key);
            let doc = serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": ns},
                "data": {"tls.crt": b64(&pair.cert_pem), "tls.key": b64(&pair.key_pem)},
            });
            docs.push(to_yaml(doc));
        }
        docs
    }
}

fn to_yaml(v: Value) -> serde_yaml::Value {
    serde_yaml::to_value(v).expect("invariant: JSON values always convert to YAML")
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

/// The suite's PKI, generated once per test process from environment.json.
pub fn suite() -> &'static SuitePki {
    static PKI: OnceLock<SuitePki> = OnceLock::new();
    PKI.get_or_init(|| {
        let path = super::conformance_dir().join("environment.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let env: Value = serde_json::from_str(&text).expect("environment.json is valid JSON");
        let entries = env["generated_at_suite_setup"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        generate(&entries).unwrap_or_else(|e| panic!("generating suite certificates: {e:#}"))
    })
}

/// Generates the Secrets/ConfigMaps described by `entries` (CAs first).
pub fn generate(entries: &[Value]) -> Result<SuitePki> {
    let rsa = openssl_available();
    // Generate all keys up front, in parallel (RSA keygen is the slow part).
    let keys: Vec<Result<(String, KeyPair)>> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .iter()
            .map(|_| s.spawn(move || new_key(rsa)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("keygen thread panicked")))
            })
            .collect()
    });
    let mut keys: Vec<Option<(String, KeyPair)>> =
        keys.into_iter().map(|k| k.ok()).collect::<Vec<_>>();
    if keys.iter().any(Option::is_none) {
        bail!("key generation failed");
    }
    let mut pki = SuitePki {
        rsa,
        ..SuitePki::default()
    };
    let mut issuers: BTreeMap<String, Issuer<'static, KeyPair>> = BTreeMap::new();
    // CAs first.
    for (i, e) in entries.iter().enumerate() {
        if e["kind"] != "ConfigMap" {
            continue;
        }
        let key_name = format!("{}/{}", str_of(e, "namespace"), str_of(e, "name"));
        let (_, kp) = keys[i].take().context("key already used")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "gatewayapi");
        dn.push(DnType::OrganizationName, "Kubernetes Gateway API");
        dn.push(DnType::CountryName, "US");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&kp)?;
        pki.config_maps.insert(key_name.clone(), cert.pem());
        issuers.insert(key_name, Issuer::new(params, kp));
    }
    for (i, e) in entries.iter().enumerate() {
        if e["kind"] != "Secret" {
            continue;
        }
        let key_name = format!("{}/{}", str_of(e, "namespace"), str_of(e, "name"));
        let (key_pem, kp) = keys[i].take().context("key already used")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "default");
        dn.push(DnType::OrganizationName, "Acme Co");
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        for eku in e["ext_key_usage"].as_array().into_iter().flatten() {
            match eku.as_str() {
                Some("serverAuth") => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth),
                Some("clientAuth") => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                _ => {}
            }
        }
        for dns in e["sans"]["dns"].as_array().into_iter().flatten() {
            let s = dns.as_str().unwrap_or_default().to_string();
            params
                .subject_alt_names
                .push(SanType::DnsName(s.try_into()?));
        }
        for uri in e["sans"]["uri"].as_array().into_iter().flatten() {
            let s = uri.as_str().unwrap_or_default().to_string();
            params.subject_alt_names.push(SanType::URI(s.try_into()?));
        }
        let signed_by = str_of(e, "signed_by");
        let cert = if let Some(ca) = signed_by.strip_prefix("configmap ") {
            let issuer = issuers
                .get(ca)
                .ok_or_else(|| anyhow!("{key_name}: unknown issuer {ca}"))?;
            params.signed_by(&kp, issuer)?
        } else {
            params.self_signed(&kp)?
        };
        pki.secrets.insert(
            key_name,
            TlsPair {
                cert_pem: cert.pem(),
                key_pem,
            },
        );
    }
    Ok(pki)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A new key: (PEM for the Secret, rcgen key pair).
fn new_key(rsa: bool) -> Result<(String, KeyPair)> {
    if !rsa {
        let kp = KeyPair::generate()?;
        return Ok((kp.serialize_pem(), kp));
    }
    let pkcs8 = run_openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        None,
    )?;
    let pkcs1 = run_openssl(&["rsa", "-traditional"], Some(&pkcs8))?;
    let kp = KeyPair::from_pem(&pkcs8)?;
    Ok((pkcs1, kp))
}

fn run_openssl(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            input.write_all(text.as_bytes())?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("openssl {args:?} failed");
    }
    Ok(String::from_utf8(out.stdout)?)
}
