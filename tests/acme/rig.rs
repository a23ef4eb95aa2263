//! The Pebble rig shared by the ACME tests: BIND, Pebble validating
//! against a data plane (in process, or the real binary's), the issuer
//! manifests pointing at them, and waiting for a served chain that curl
//! verifies against Pebble's root.

use super::bind::{Bind, TSIG_KEY_NAME};
use super::pebble::{Pebble, PebbleOptions};
use super::DataPlane;
use anyhow::{ensure, Context, Result};
use base64::Engine;
use portcullis::issuer::acme::{AcmeContext, AcmeIssuer};
use portcullis::issuer::challenges::LocalPublisher;
use portcullis::issuer::{CertRequest, KeyAlgorithm};
use portcullis::store::{DirStore, StoreKey};
use std::sync::Arc;
use std::time::Duration;

/// The user route both rigs serve on Gateway `gw`: a static `user route`
/// answer (what HTTP-01 tokens must not shadow).
const USER_ROUTE: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: user, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - backendRefs: [{group: portcullis.dev, kind: StaticResponse, name: user}]
---
apiVersion: portcullis.dev/v1alpha1
kind: StaticResponse
metadata: {name: user, namespace: default}
spec: {status: 200, contentType: text/plain, body: "user route\n"}
---
"#;

/// The gateway every Pebble test serves: HTTP on 80, HTTPS on 443 with the
/// Secret `site-tls`, and a user route answering `user route` on both.
pub fn gateway_yaml(chain_pem: &str, key_pem: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: portcullis
  listeners:
    - {{name: http, protocol: HTTP, port: 80}}
    - name: https
      protocol: HTTPS
      port: 443
      tls: {{mode: Terminate, certificateRefs: [{{kind: Secret, name: site-tls}}]}}
{USER_ROUTE}{}"#,
        super::tls_secret("site-tls", chain_pem, key_pem)
    )
}

/// BIND, Pebble validating against the data plane's ports (80 and 443 plus
/// `offset`), and the in-process data plane serving a placeholder
/// certificate there (`None` when the binary serves those ports instead).
pub struct Rig {
    /// The nameserver Pebble resolves through (DNS-01 updates go here).
    pub bind: Bind,
    /// The ACME server.
    pub pebble: Pebble,
    /// The in-process data plane, if this rig has one.
    pub plane: Option<DataPlane>,
    /// Added to the listener ports 80 and 443.
    pub offset: u16,
    /// State directory (account keys, pending orders, roots fetched).
    pub state: tempfile::TempDir,
}

impl Rig {
    /// BIND, Pebble and the in-process data plane.
    pub async fn start(nonce_reject_percent: u8) -> Result<Rig> {
        Self::start_with(nonce_reject_percent, true, None).await
    }

    /// BIND and Pebble (rejecting `nonce_reject_percent` of the nonces,
    /// issuing for `cert_validity`), and the in-process data plane if asked.
    pub async fn start_with(
        nonce_reject_percent: u8,
        in_process_plane: bool,
        cert_validity: Option<Duration>,
    ) -> Result<Rig> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bind = Bind::start().await?;
        let offset = super::free_offset()?;
        let plane = if in_process_plane {
            let (chain, key) = super::self_signed(&["placeholder.acme.test"])?;
            Some(DataPlane::start(&gateway_yaml(&chain, &key), offset).await?)
        } else {
            None
        };
        let pebble = Pebble::start(PebbleOptions {
            http_port: 80 + offset,
            tls_port: 443 + offset,
            dns_server: bind.addr,
            nonce_reject_percent,
            cert_validity,
        })
        .await?;
        Ok(Rig {
            bind,
            pebble,
            plane,
            offset,
            state: tempfile::tempdir()?,
        })
    }

    /// The in-process data plane.
    pub fn plane(&mut self) -> Result<&mut DataPlane> {
        self.plane
            .as_mut()
            .context("this rig has no in-process data plane")
    }

    /// The issuer manifest (Secrets included) with `solver`, resolved.
    pub fn issuer(&self, solver: &str) -> Result<AcmeIssuer> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let yaml = format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: tsig, namespace: default}}
stringData: {{secret: "{tsig}"}}
---
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {{name: pebble, namespace: default}}
spec:
  acme:
    server: {server}
    email: ops@acme.test
    privateKeySecretRef: {{name: pebble-account}}
    caBundle: {bundle}
    solvers:
      - {solver}
"#,
            tsig = self.bind.tsig_secret_b64,
            server = self.pebble.directory_url(),
            bundle = b64.encode(&self.pebble.https_ca_pem),
        );
        let resources = super::resources(&yaml)?;
        let spec = resources.issuers[0]
            .spec
            .acme
            .clone()
            .context("acme spec")?;
        Ok(AcmeIssuer::resolve(&spec, "default", &resources)?)
    }

    /// A DNS-01 solver updating the rig's BIND with its TSIG key.
    pub fn dns01_solver(&self) -> String {
        format!(
            "dns01: {{rfc2136: {{nameserver: \"{}\", tsigKeyName: {TSIG_KEY_NAME}, \
             tsigAlgorithm: HMACSHA256, tsigSecretSecretRef: {{name: tsig, key: secret}}}}}}",
            self.bind.addr
        )
    }

    /// A fresh ACME context over the rig's state directory and board.
    pub fn context(&self) -> AcmeContext {
        let board = self
            .plane
            .as_ref()
            .map(|p| p.board.clone())
            .unwrap_or_default();
        let mut ctx = AcmeContext::new(
            Arc::new(DirStore::new(self.state.path())),
            Arc::new(LocalPublisher::new(board)),
        );
        ctx.timeouts.validation = Duration::from_secs(60);
        ctx
    }

    /// Serves `issued` as `site-tls` and checks curl verifies it for `host`
    /// against Pebble's root.
    pub async fn serve_and_verify(
        &mut self,
        issued: &portcullis::store::StoredCert,
        host: &str,
    ) -> Result<()> {
        self.plane()?
            .serve(&gateway_yaml(&issued.cert_chain_pem, &issued.key_pem))
            .await?;
        let root = self.pebble.issuing_root().await?;
        let root_path = self.state.path().join("pebble-root.pem");
        std::fs::write(&root_path, root)?;
        let body = super::curl_verified(&root_path, host, 443 + self.offset)?;
        ensure!(body == "user route\n", "unexpected body {body:?}");
        Ok(())
    }
}

/// A P-256 request for `names` kept in `default/site-tls`.
pub fn request(names: &[&str]) -> Result<CertRequest> {
    Ok(CertRequest {
        secret: StoreKey::new("default", "site-tls")?,
        dns_names: names.iter().map(|s| s.to_string()).collect(),
        key: KeyAlgorithm::EcdsaP256,
        duration: None,
        profile: None,
        replaces: None,
    })
}

/// Regular files under `dir`.
pub fn walk(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

// ---- The real binary: the issuer's manager drives the orders ----

/// Manifests for `portcullis serve`: a Gateway annotated with the Pebble
/// issuer (plus `annotations`, YAML flow-map entries such as
/// `portcullis.dev/private-key-rotation: Never`) whose HTTPS listener for
/// `host` has no certificateRefs (the issuer fills them), an HTTP listener
/// answering HTTP-01, a user route.
pub fn binary_manifests(rig: &Rig, host: &str, annotations: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let extra = if annotations.is_empty() {
        String::new()
    } else {
        format!(", {annotations}")
    };
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
  annotations: {{portcullis.dev/issuer: pebble{extra}}}
spec:
  gatewayClassName: portcullis
  listeners:
    - {{name: http, protocol: HTTP, port: 80}}
    - {{name: https, protocol: HTTPS, port: 443, hostname: "{host}"}}
{USER_ROUTE}apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {{name: pebble, namespace: default}}
spec:
  acme:
    server: {server}
    privateKeySecretRef: {{name: pebble-account}}
    caBundle: {bundle}
    solvers: [{{http01: {{}}}}]
"#,
        server = rig.pebble.directory_url(),
        bundle = b64.encode(&rig.pebble.https_ca_pem),
    )
}

/// The real binary serving one Gateway for `host` with the Pebble issuer,
/// its data plane on the ports Pebble validates against.
pub struct BinaryRig {
    /// BIND and Pebble (no in-process data plane).
    pub rig: Rig,
    /// The running `portcullis serve`.
    pub gw: super::binary::Gateway,
    /// The config directory it watches (`all.yaml`).
    pub config: tempfile::TempDir,
    /// The listener hostname.
    pub host: String,
}

impl BinaryRig {
    /// Starts BIND, Pebble and the binary serving [`binary_manifests`]
    /// with `annotations`.
    pub async fn start(host: &str, annotations: &str) -> Result<BinaryRig> {
        Self::start_with(host, annotations, None).await
    }

    /// [`BinaryRig::start`] with Pebble issuing certificates valid for
    /// `cert_validity`.
    pub async fn start_with(
        host: &str,
        annotations: &str,
        cert_validity: Option<Duration>,
    ) -> Result<BinaryRig> {
        let rig = Rig::start_with(0, false, cert_validity).await?;
        let config = tempfile::tempdir()?;
        std::fs::write(
            config.path().join("all.yaml"),
            binary_manifests(&rig, host, annotations),
        )?;
        let state = rig.state.path().join("state");
        let gw = super::binary::Gateway::start(config.path(), &state, rig.offset).await?;
        Ok(BinaryRig {
            rig,
            gw,
            config,
            host: host.to_string(),
        })
    }

    /// Rewrites the manifests with `annotations` (the binary reloads).
    pub fn configure(&self, annotations: &str) -> Result<()> {
        std::fs::write(
            self.config.path().join("all.yaml"),
            binary_manifests(&self.rig, &self.host, annotations),
        )?;
        Ok(())
    }

    /// Polls curl against Pebble's current root until the gateway serves a
    /// chain for the host that verifies, for at most `wait`.
    pub async fn wait_verified(&self, wait: Duration) -> Result<()> {
        let root_path = self.rig.state.path().join("pebble-root.pem");
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            std::fs::write(&root_path, self.rig.pebble.issuing_root().await?)?;
            match super::curl_verified(&root_path, &self.host, 443 + self.gw.offset) {
                Ok(body) if body == "user route\n" => return Ok(()),
                Ok(body) => anyhow::bail!("unexpected body {body:?}"),
                Err(e) if tokio::time::Instant::now() > deadline => {
                    anyhow::bail!("not verified after {wait:?}: {e}\n{}", self.logs())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// The leaf the gateway serves for the host now.
    pub async fn served(&self) -> Result<super::Leaf> {
        super::served_leaf(&self.host, 443 + self.gw.offset).await
    }

    /// Waits until the served leaf differs from `old` (a new certificate
    /// is served) and curl verifies it; returns it.
    pub async fn wait_replaced(&self, old: &super::Leaf, wait: Duration) -> Result<super::Leaf> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Ok(leaf) = self.served().await {
                if leaf.serial != old.serial {
                    self.wait_verified(Duration::from_secs(10)).await?;
                    return Ok(leaf);
                }
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "certificate {} still served after {wait:?}\n{}",
                old.serial,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The `/status` entry of the auto-filled Secret `default/gw-https-tls`.
    pub async fn certificate(&self) -> Result<serde_json::Value> {
        self.gw
            .certificate("default/gw-https-tls")
            .await?
            .context("certificate in /status")
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "portcullis log:\n{}\npebble log:\n{}",
            self.gw.log(),
            self.rig.pebble.log()
        )
    }
}
