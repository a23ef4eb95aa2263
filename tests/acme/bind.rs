//! A real BIND 9 (`named`, Debian `bind9`) on loopback: authoritative for
//! one zone whose every name resolves to 127.0.0.1, accepting TXT updates
//! signed with one TSIG key (hmac-sha256). Pebble resolves through it and
//! the DNS-01 solver updates it.

use anyhow::{bail, Context, Result};
use base64::Engine;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The zone the tests issue names in.
pub const ZONE: &str = "acme.test";
/// The TSIG key's name.
pub const TSIG_KEY_NAME: &str = "portcullis-key";

/// A running `named`; killed on drop.
pub struct Bind {
    _child: Child,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    /// The TSIG secret, base64.
    pub tsig_secret_b64: String,
    dir: tempfile::TempDir,
}

/// Where `named` is installed (Debian puts it in /usr/sbin, which may not be
/// on a test's PATH).
fn named_path() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin"] {
        let p = PathBuf::from(dir).join("named");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("named")
}

impl Bind {
    /// Starts `named` on a free loopback port and waits until it answers.
    pub async fn start() -> Result<Bind> {
        let dir = tempfile::tempdir()?;
        let port = crate::ports::for_child()?;
        let secret: [u8; 32] = rand::random();
        let tsig_secret_b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let d = dir.path().display().to_string();
        let conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    notify no;
}};
controls {{ }};
key "{TSIG_KEY_NAME}" {{
    algorithm hmac-sha256;
    secret "{tsig_secret_b64}";
}};
zone "{ZONE}" {{
    type primary;
    file "{d}/{ZONE}.zone";
    update-policy {{ grant {TSIG_KEY_NAME} zonesub TXT; }};
}};
"#
        );
        let zone = format!(
            "$TTL 60\n\
             @ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n\
             @ IN NS ns.{ZONE}.\n\
             @ IN A 127.0.0.1\n\
             ns IN A 127.0.0.1\n\
             * IN A 127.0.0.1\n"
        );
        std::fs::write(dir.path().join("named.conf"), conf)?;
        std::fs::write(dir.path().join(format!("{ZONE}.zone")), zone)?;
        let log = std::fs::File::create(dir.path().join("named.log"))?;
        let child = Command::new(named_path())
            .arg("-g")
            .arg("-4")
            .arg("-c")
            .arg(dir.path().join("named.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawn named (is bind9 installed? scripts/test.sh installs it)")?;
        let bind = Bind {
            _child: child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            tsig_secret_b64,
            dir,
        };
        bind.wait_ready().await?;
        Ok(bind)
    }

    async fn wait_ready(&self) -> Result<()> {
        let server = portcullis::issuer::dns::Rfc2136 {
            nameserver: self.addr,
            tsig: None,
        };
        for _ in 0..100 {
            if let Ok(zone) = server.find_zone(ZONE).await {
                if zone == ZONE {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("named did not answer; log:\n{}", self.log())
    }

    /// The TSIG key as the solver uses it.
    pub fn tsig_key(&self) -> portcullis::issuer::dns::tsig::Key {
        portcullis::issuer::dns::tsig::Key {
            name: TSIG_KEY_NAME.into(),
            algorithm: portcullis::issuer::dns::tsig::Algorithm::HmacSha256,
            secret: base64::engine::general_purpose::STANDARD
                .decode(&self.tsig_secret_b64)
                .unwrap_or_default(),
        }
    }

    /// named's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}
