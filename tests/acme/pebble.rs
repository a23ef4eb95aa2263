//! A real Pebble (Debian `pebble`), Let's Encrypt's test ACME server, on
//! loopback: its HTTPS certificate made here (rcgen CA + leaf for
//! 127.0.0.1), validation pointed at portcullis's listener ports, names
//! resolved through the test's BIND, and its issuing root fetched from the
//! management port.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How Pebble is started.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Port Pebble's VA connects to for HTTP-01 (portcullis's 80 + offset).
    pub http_port: u16,
    /// Port Pebble's VA connects to for TLS-ALPN-01 (443 + offset).
    pub tls_port: u16,
    /// The DNS server Pebble resolves names through.
    pub dns_server: SocketAddr,
    /// `PEBBLE_WFE_NONCEREJECT`: percentage of nonces rejected.
    pub nonce_reject_percent: u8,
    /// Lifetime of the certificates it issues (Pebble's default: five
    /// years).
    pub cert_validity: Option<Duration>,
}

/// The files and ports of one Pebble, kept across restarts.
pub struct Pebble {
    child: Option<Child>,
    options: PebbleOptions,
    /// The ACME API address.
    pub api: SocketAddr,
    /// The management address (`/roots/0`).
    pub management: SocketAddr,
    /// The PEM CA that signed Pebble's own HTTPS certificate (the issuer's
    /// `caBundle`).
    pub https_ca_pem: String,
    dir: tempfile::TempDir,
    http: reqwest_like::Client,
}

/// A minimal HTTPS GET client trusting the Pebble HTTPS CA.
mod reqwest_like {
    use anyhow::{Context, Result};
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::net::SocketAddr;
    use std::sync::Arc;

    /// GETs over HTTPS with one trusted root.
    #[derive(Clone)]
    pub struct Client {
        connector: tokio_rustls::TlsConnector,
    }

    impl Client {
        pub fn new(ca_pem: &str) -> Result<Self> {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                roots.add(cert?)?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Self {
                connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            })
        }

        /// GET `path` on `addr` (TLS name 127.0.0.1): status and body.
        pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>)> {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = ServerName::from(addr.ip());
            let tls = self.connector.connect(name, tcp).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            let req = http::Request::get(path)
                .header(http::header::HOST, addr.to_string())
                .body(Empty::<bytes::Bytes>::new())?;
            let resp = sender.send_request(req).await.context("GET")?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes().to_vec();
            Ok((status, body))
        }
    }
}

impl Pebble {
    /// Writes Pebble's certificate and configuration and starts it.
    pub async fn start(options: PebbleOptions) -> Result<Pebble> {
        let dir = tempfile::tempdir()?;
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(vec![])?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble test HTTPS CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
        std::fs::write(dir.path().join("cert.pem"), leaf.pem())?;
        std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem())?;
        let api = SocketAddr::from(([127, 0, 0, 1], crate::ports::for_child()?));
        let management = SocketAddr::from(([127, 0, 0, 1], crate::ports::for_child()?));
        let https_ca_pem = ca.pem();
        let mut pebble = Pebble {
            child: None,
            options,
            api,
            management,
            http: reqwest_like::Client::new(&https_ca_pem)?,
            https_ca_pem,
            dir,
        };
        pebble.write_config()?;
        pebble.spawn().await?;
        Ok(pebble)
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir.path();
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": self.api.to_string(),
                "managementListenAddress": self.management.to_string(),
                "certificate": d.join("cert.pem"),
                "privateKey": d.join("key.pem"),
                "httpPort": self.options.http_port,
                "tlsPort": self.options.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        if let Some(validity) = self.options.cert_validity {
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        std::fs::write(d.join("pebble.json"), serde_json::to_vec_pretty(&config)?)?;
        Ok(())
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pebble.log"))?;
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(self.options.dns_server.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                self.options.nonce_reject_percent.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawn pebble (is it installed? scripts/test.sh installs it)")?;
        self.child = Some(child);
        for _ in 0..100 {
            if let Ok((200, _)) = self.http.get(self.api, "/dir").await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("pebble did not start; log:\n{}", self.log())
    }

    /// Stops Pebble (it forgets every account and order).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts Pebble again on the same ports (with a new issuing root).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    /// The ACME directory URL.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.api)
    }

    /// The root Pebble issues under, from the management port (PEM).
    pub async fn issuing_root(&self) -> Result<String> {
        let (status, body) = self.http.get(self.management, "/roots/0").await?;
        if status != 200 {
            bail!("/roots/0 answered {status}");
        }
        Ok(String::from_utf8(body)?)
    }

    /// Pebble's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}
