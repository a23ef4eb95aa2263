//! Support for the ACME tests: a real BIND ([`bind`]) and a real Pebble
//! ([`pebble`]) on loopback, the portcullis data plane serving manifests
//! ([`DataPlane`], the library's own sockets, proxy and TLS front in this
//! process), the shared Pebble rig ([`rig`]), and checks with curl and
//! openssl.
#![allow(dead_code)]

pub mod ari_double;
pub mod binary;
pub mod bind;
pub mod double_client;
pub mod leader;
pub mod pebble;
pub mod rig;

use anyhow::{ensure, Context, Result};
use arc_swap::ArcSwap;
use portcullis::compile::{compile, CompileOptions};
use portcullis::issuer::challenges::ChallengeBoard;
use portcullis::model::Resources;
use portcullis::server::{ConnContext, Sockets};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// A port offset under which 80 and 443 both land on free loopback ports.
pub fn free_offset() -> Result<u16> {
    for _ in 0..100 {
        let offset: u16 = rand::random_range(20_000..40_000);
        let free = [80u16, 443]
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p + offset)).is_ok());
        if free {
            return Ok(offset);
        }
    }
    anyhow::bail!("no free port offset")
}

/// Parses manifests into a snapshot.
pub fn resources(yaml: &str) -> Result<Resources> {
    let parsed = portcullis::model::load::parse_documents(yaml, "test.yaml")?;
    Ok(Resources::from_objects(parsed.objects))
}

/// The portcullis data plane (sockets, proxy, TLS front) serving a set of
/// manifests on loopback with a port offset, and answering the challenges
/// on its board, as `portcullis serve` does.
pub struct DataPlane {
    dataplane: Arc<ArcSwap<portcullis::dataplane::Dataplane>>,
    sockets: Option<Sockets>,
    /// The challenge board the proxy and the TLS front read.
    pub board: Arc<ChallengeBoard>,
    /// Added to every listener port.
    pub offset: u16,
}

impl DataPlane {
    /// Compiles `yaml` and binds its listeners.
    pub async fn start(yaml: &str, offset: u16) -> Result<DataPlane> {
        let dataplane = Arc::new(ArcSwap::from_pointee(
            portcullis::dataplane::Dataplane::default(),
        ));
        let board = Arc::new(ChallengeBoard::new());
        let proxy = portcullis::proxy::Proxy::with_metrics(
            dataplane.clone(),
            Arc::new(portcullis::metrics::Metrics::new()),
        );
        let ctx = ConnContext::new(dataplane.clone(), proxy, 1024);
        let mut plane = DataPlane {
            dataplane,
            sockets: Some(Sockets::new(Arc::new(ctx))),
            board,
            offset,
        };
        plane.serve(yaml).await?;
        Ok(plane)
    }

    /// Compiles `yaml` and swaps it in (new certificates apply to the next
    /// handshake).
    pub async fn serve(&mut self, yaml: &str) -> Result<()> {
        let options = CompileOptions {
            listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_offset: self.offset,
            challenges: self.board.clone(),
            ..CompileOptions::default()
        };
        let compiled = compile(&resources(yaml)?, &options);
        let dataplane = Arc::new(compiled.dataplane);
        self.dataplane.store(dataplane.clone());
        let sockets = self.sockets.as_mut().context("data plane stopped")?;
        let errors = sockets.reconcile(&dataplane).await;
        ensure!(errors.is_empty(), "bind errors: {errors:?}");
        Ok(())
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if let Some(sockets) = self.sockets.take() {
            // Stop accepting in the background; the runtime may be ending.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(sockets.shutdown(std::time::Duration::from_millis(100)));
            }
        }
    }
}

/// A kubernetes.io/tls Secret manifest.
pub fn tls_secret(name: &str, chain_pem: &str, key_pem: &str) -> String {
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(chain_pem),
        indent(key_pem)
    )
}

/// A self-signed certificate and key for `names` (a placeholder until the
/// issued one arrives).
pub fn self_signed(names: &[&str]) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// `curl --cacert root` to `https://host:port/` resolved to 127.0.0.1:
/// whether the chain verifies, and the body.
pub fn curl_verified(root_pem_path: &Path, host: &str, port: u16) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(root_pem_path)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .context("run curl")?;
    ensure!(
        out.status.success(),
        "curl https://{host}:{port}/ failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `curl` a cleartext URL path on 127.0.0.1:port with a Host header: the
/// body.
pub fn curl_http(host: &str, port: u16, path: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .context("run curl")?;
    ensure!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The SANs of the leaf of `chain_pem`, as openssl prints them.
pub fn openssl_sans(chain_pem: &str) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("leaf.pem");
    std::fs::write(&path, chain_pem)?;
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&path)
        .output()
        .context("run openssl")?;
    ensure!(out.status.success(), "openssl x509 failed");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The leaf certificate a TLS server presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Its serial, hex.
    pub serial: String,
    /// Its DER SubjectPublicKeyInfo (the public key).
    pub spki: Vec<u8>,
}

/// The leaf `openssl s_client` is served by 127.0.0.1:`port` for SNI
/// `host` (no verification: the caller checks trust with curl).
pub async fn served_leaf(host: &str, port: u16) -> Result<Leaf> {
    served_leaf_at(IpAddr::V4(Ipv4Addr::LOCALHOST), host, port).await
}

/// [`served_leaf`] from `ip`:`port`.
pub async fn served_leaf_at(ip: IpAddr, host: &str, port: u16) -> Result<Leaf> {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(std::net::SocketAddr::new(ip, port).to_string())
        .args(["-servername", host])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("run openssl s_client")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let begin = text.find("-----BEGIN CERTIFICATE-----").with_context(|| {
        format!(
            "no certificate served: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = text[begin..]
        .find(end_marker)
        .context("truncated certificate")?
        + begin
        + end_marker.len();
    leaf_of(&text[begin..end])
}

/// Serial and public key of the first certificate of `pem`.
pub fn leaf_of(pem: &str) -> Result<Leaf> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .context("no certificate in PEM")??;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| anyhow::anyhow!("parse certificate: {e}"))?;
    Ok(Leaf {
        serial: cert.tbs_certificate.raw_serial_as_string(),
        spki: cert.tbs_certificate.subject_pki.raw.to_vec(),
    })
}
