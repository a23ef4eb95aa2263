//! The ACME issuer against real servers: Pebble (Debian `pebble`) validates
//! HTTP-01 and TLS-ALPN-01 against the portcullis data plane (its sockets,
//! proxy and TLS front on loopback with a port offset) and DNS-01 through a
//! real BIND 9 updated with TSIG; every issued chain is served by the
//! gateway and verified by curl against Pebble's root. Faults: half the
//! nonces rejected, Pebble restarted (forgetting the account). ACME Renewal
//! Information, which Debian's Pebble predates, is exercised against a
//! double (`acme::ari_double`) with the real instant-acme client.

mod acme;

use acme::bind::{Bind, TSIG_KEY_NAME, ZONE};
use acme::pebble::{Pebble, PebbleOptions};
use acme::DataPlane;
use anyhow::{ensure, Context, Result};
use base64::Engine;
use portcullis::issuer::acme::{AcmeContext, AcmeIssuer};
use portcullis::issuer::{CertRequest, KeyAlgorithm};
use portcullis::store::StoreKey;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The gateway every Pebble test serves: HTTP on 80, HTTPS on 443 with the
/// Secret `site-tls`, and a user route answering `user route` on both.
fn gateway_yaml(chain_pem: &str, key_pem: &str) -> String {
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
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: user, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - backendRefs: [{{group: portcullis.dev, kind: StaticResponse, name: user}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: StaticResponse
metadata: {{name: user, namespace: default}}
spec: {{status: 200, contentType: text/plain, body: "user route\n"}}
---
{}"#,
        acme::tls_secret("site-tls", chain_pem, key_pem)
    )
}

/// BIND, Pebble validating against the data plane's ports (80 and 443 plus
/// `offset`), and the in-process data plane serving a placeholder
/// certificate there (`None` when the binary serves those ports instead).
struct Rig {
    bind: Bind,
    pebble: Pebble,
    plane: Option<DataPlane>,
    offset: u16,
    state: tempfile::TempDir,
}

impl Rig {
    async fn start(nonce_reject_percent: u8) -> Result<Rig> {
        Self::start_with(nonce_reject_percent, true).await
    }

    async fn start_with(nonce_reject_percent: u8, in_process_plane: bool) -> Result<Rig> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bind = Bind::start().await?;
        let offset = acme::free_offset()?;
        let plane = if in_process_plane {
            let (chain, key) = acme::self_signed(&["placeholder.acme.test"])?;
            Some(DataPlane::start(&gateway_yaml(&chain, &key), offset).await?)
        } else {
            None
        };
        let pebble = Pebble::start(PebbleOptions {
            http_port: 80 + offset,
            tls_port: 443 + offset,
            dns_server: bind.addr,
            nonce_reject_percent,
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
    fn plane(&mut self) -> Result<&mut DataPlane> {
        self.plane
            .as_mut()
            .context("this rig has no in-process data plane")
    }

    /// The issuer manifest (Secrets included) with `solver`, resolved.
    fn issuer(&self, solver: &str) -> Result<AcmeIssuer> {
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
        let resources = acme::resources(&yaml)?;
        let spec = resources.issuers[0]
            .spec
            .acme
            .clone()
            .context("acme spec")?;
        Ok(AcmeIssuer::resolve(&spec, "default", &resources)?)
    }

    fn dns01_solver(&self) -> String {
        format!(
            "dns01: {{rfc2136: {{nameserver: \"{}\", tsigKeyName: {TSIG_KEY_NAME}, \
             tsigAlgorithm: HMACSHA256, tsigSecretSecretRef: {{name: tsig, key: secret}}}}}}",
            self.bind.addr
        )
    }

    fn context(&self) -> AcmeContext {
        let board = self
            .plane
            .as_ref()
            .map(|p| p.board.clone())
            .unwrap_or_default();
        let mut ctx = AcmeContext::new(self.state.path(), board);
        ctx.timeouts.validation = Duration::from_secs(60);
        ctx
    }

    /// Serves `issued` as `site-tls` and checks curl verifies it for `host`
    /// against Pebble's root.
    async fn serve_and_verify(
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
        let body = acme::curl_verified(&root_path, host, 443 + self.offset)?;
        ensure!(body == "user route\n", "unexpected body {body:?}");
        Ok(())
    }
}

fn request(names: &[&str]) -> Result<CertRequest> {
    Ok(CertRequest {
        secret: StoreKey::new("default", "site-tls")?,
        dns_names: names.iter().map(|s| s.to_string()).collect(),
        key: KeyAlgorithm::EcdsaP256,
        duration: None,
        profile: None,
        replaces: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_is_answered_by_the_gateway_and_other_tokens_reach_user_routes() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let issuer = rig.issuer("http01: {}")?;
    let ctx = rig.context();
    let host = format!("web.{ZONE}");
    let issued = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?)
        .await
        .with_context(|| format!("pebble log:\n{}", rig.pebble.log()))?;
    ensure!(rig.plane()?.board.is_empty(), "challenge left on the board");
    ensure!(acme::openssl_sans(&issued.cert.cert_chain_pem)?.contains(&host));
    rig.serve_and_verify(&issued.cert, &host).await?;
    // A token nobody is waiting for is the user's business.
    let body = acme::curl_http(&host, 80 + rig.offset, "/.well-known/acme-challenge/nope")?;
    ensure!(body == "user route\n", "unknown token answered {body:?}");

    // The account key was kept (0600) and is reused by a fresh context.
    let key_files: Vec<_> = walk(&rig.state.path().join("acme"))?;
    ensure!(key_files.len() == 1, "account keys: {key_files:?}");
    let mode = std::fs::metadata(&key_files[0])?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "account key mode {mode:o}");
    let before = std::fs::read(&key_files[0])?;
    let again =
        portcullis::issuer::acme::issue(&issuer, &rig.context(), &request(&[&host])?).await?;
    ensure!(
        std::fs::read(&key_files[0])? == before,
        "account key replaced"
    );
    ensure!(
        again.cert.key_pem != issued.cert.key_pem,
        "certificate key reused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_is_answered_by_the_tls_front() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let issuer = rig.issuer("tlsAlpn01: {}")?;
    let host = format!("alpn.{ZONE}");
    let issued = portcullis::issuer::acme::issue(&issuer, &rig.context(), &request(&[&host])?)
        .await
        .with_context(|| format!("pebble log:\n{}", rig.pebble.log()))?;
    ensure!(rig.plane()?.board.is_empty(), "challenge left on the board");
    rig.serve_and_verify(&issued.cert, &host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_bind_gets_a_wildcard_certificate_and_cleans_up() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let solver = rig.dns01_solver();
    let issuer = rig.issuer(&solver)?;
    let wildcard = format!("*.wild.{ZONE}");
    let base = format!("wild.{ZONE}");
    let issued =
        portcullis::issuer::acme::issue(&issuer, &rig.context(), &request(&[&wildcard, &base])?)
            .await
            .with_context(|| {
                format!(
                    "pebble log:\n{}\nnamed log:\n{}",
                    rig.pebble.log(),
                    rig.bind.log()
                )
            })?;
    let sans = acme::openssl_sans(&issued.cert.cert_chain_pem)?;
    ensure!(
        sans.contains(&wildcard) && sans.contains(&base),
        "SANs: {sans}"
    );
    rig.serve_and_verify(&issued.cert, &format!("anything.wild.{ZONE}"))
        .await?;
    // Both TXT values (wildcard and base share the name) were deleted.
    let server = portcullis::issuer::dns::Rfc2136 {
        nameserver: rig.bind.addr,
        tsig: None,
    };
    let left = server
        .txt_values(&format!("_acme-challenge.wild.{ZONE}"))
        .await?;
    ensure!(left.is_empty(), "TXT records left: {left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_update_with_a_wrong_tsig_secret_is_refused_by_bind() -> Result<()> {
    let bind = Bind::start().await?;
    let mut key = bind.tsig_key();
    key.secret = b"not the secret at all, not at all".to_vec();
    let server = portcullis::issuer::dns::Rfc2136 {
        nameserver: bind.addr,
        tsig: Some(key),
    };
    let name = format!("_acme-challenge.x.{ZONE}");
    let err = server
        .add_txt(ZONE, &name, "value")
        .await
        .expect_err("BIND must refuse a bad signature");
    ensure!(err.to_string().contains("NOTAUTH"), "{err}");
    let good = portcullis::issuer::dns::Rfc2136 {
        nameserver: bind.addr,
        tsig: Some(bind.tsig_key()),
    };
    good.add_txt(ZONE, &name, "value").await?;
    ensure!(good.txt_values(&name).await? == vec!["value".to_string()]);
    good.remove_txt(ZONE, &name, "value").await?;
    ensure!(good.txt_values(&name).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_nonces_rejected_still_issues() -> Result<()> {
    let mut rig = Rig::start(50).await?;
    let issuer = rig.issuer("http01: {}")?;
    let host = format!("nonce.{ZONE}");
    let mut last = None;
    // instant-acme retries a bad nonce three times per request; with half
    // rejected an order can still lose one request, so the caller's retry
    // (the manager's backoff) is part of the contract.
    for _ in 0..5 {
        match portcullis::issuer::acme::issue(&issuer, &rig.context(), &request(&[&host])?).await {
            Ok(issued) => return rig.serve_and_verify(&issued.cert, &host).await,
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!("no issuance in 5 attempts: {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_down_fails_the_order_and_its_return_registers_the_account_again() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let issuer = rig.issuer("http01: {}")?;
    let ctx = rig.context();
    let host = format!("restart.{ZONE}");
    portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?).await?;
    rig.pebble.stop().await?;
    let err = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?)
        .await
        .expect_err("Pebble is down");
    ensure!(err.reason() == "AcmeError", "{err:?}");
    // Pebble comes back without any memory of the account: the next order
    // registers the stored key again and succeeds at once.
    rig.pebble.restart().await?;
    let issued = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?)
        .await
        .context("first order after Pebble returned")?;
    rig.serve_and_verify(&issued.cert, &host).await
}

/// Regular files under `dir`.
fn walk(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
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
/// issuer whose HTTPS listener for `host` has no certificateRefs (the
/// issuer fills them), an HTTP listener answering HTTP-01, a user route.
fn binary_manifests(rig: &Rig, host: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
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
  annotations: {{portcullis.dev/issuer: pebble}}
spec:
  gatewayClassName: portcullis
  listeners:
    - {{name: http, protocol: HTTP, port: 80}}
    - {{name: https, protocol: HTTPS, port: 443, hostname: "{host}"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: user, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - backendRefs: [{{group: portcullis.dev, kind: StaticResponse, name: user}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: StaticResponse
metadata: {{name: user, namespace: default}}
spec: {{status: 200, contentType: text/plain, body: "user route\n"}}
---
apiVersion: portcullis.dev/v1alpha1
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

/// Polls curl against Pebble's root until the gateway serves a chain for
/// `host` that verifies, for at most `wait`.
async fn wait_verified(
    rig: &Rig,
    gw: &acme::binary::Gateway,
    host: &str,
    wait: Duration,
) -> Result<()> {
    let root_path = rig.state.path().join("pebble-root.pem");
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        std::fs::write(&root_path, rig.pebble.issuing_root().await?)?;
        match acme::curl_verified(&root_path, host, 443 + gw.offset) {
            Ok(body) if body == "user route\n" => return Ok(()),
            Ok(body) => anyhow::bail!("unexpected body {body:?}"),
            Err(e) if tokio::time::Instant::now() > deadline => {
                anyhow::bail!(
                    "not verified after {wait:?}: {e}\nportcullis log:\n{}\npebble log:\n{}",
                    gw.log(),
                    rig.pebble.log()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A rig whose data plane is the binary's, serving `binary_manifests`.
async fn binary_rig(host: &str) -> Result<(Rig, acme::binary::Gateway, tempfile::TempDir)> {
    let rig = Rig::start_with(0, false).await?;
    let config = tempfile::tempdir()?;
    std::fs::write(config.path().join("all.yaml"), binary_manifests(&rig, host))?;
    let state = rig.state.path().join("state");
    let gw = acme::binary::Gateway::start(config.path(), &state, rig.offset).await?;
    Ok((rig, gw, config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binary_obtains_and_serves_a_pebble_certificate() -> Result<()> {
    let host = format!("bin.{ZONE}");
    let (rig, gw, _config) = binary_rig(&host).await?;
    wait_verified(&rig, &gw, &host, Duration::from_secs(60)).await?;
    let cert = gw
        .certificate("default/gw-https-tls")
        .await?
        .context("certificate in /status")?;
    ensure!(cert["ready"] == true, "{cert}");
    // The ACME client's own series: requests by endpoint and status, and
    // the order counted valid.
    let metrics = gw.metrics().await?;
    let sample = |prefix: &str, labels: &[&str]| {
        metrics.lines().any(|l| {
            l.starts_with(prefix)
                && labels.iter().all(|x| l.contains(x))
                && !l.ends_with(" 0")
                && !l.ends_with(" 0.0")
        })
    };
    ensure!(
        sample(
            "portcullis_acme_requests_total{",
            &["endpoint=\"newOrder\"", "status=\"201\""]
        ),
        "no newOrder request counted:\n{metrics}"
    );
    ensure!(
        sample("portcullis_acme_orders_total{", &["outcome=\"valid\""]),
        "no valid order counted:\n{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binary_killed_mid_order_completes_after_restart() -> Result<()> {
    let host = format!("crash.{ZONE}");
    let (rig, mut gw, _config) = binary_rig(&host).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !gw.log().contains("ACME order created") {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no order: {}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.kill9().await?;
    gw.restart().await?;
    wait_verified(&rig, &gw, &host, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binary_keeps_serving_while_pebble_is_down_and_renews_after() -> Result<()> {
    let host = format!("down.{ZONE}");
    let (mut rig, gw, config) = binary_rig(&host).await?;
    wait_verified(&rig, &gw, &host, Duration::from_secs(60)).await?;
    let old_root = rig.pebble.issuing_root().await?;
    let old_root_path = rig.state.path().join("old-root.pem");
    std::fs::write(&old_root_path, &old_root)?;

    // A renewal becomes due (the key algorithm changes) while Pebble is down.
    rig.pebble.stop().await?;
    let manifests = binary_manifests(&rig, &host).replace(
        "annotations: {portcullis.dev/issuer: pebble}",
        "annotations: {portcullis.dev/issuer: pebble, portcullis.dev/private-key-algorithm: ecdsa-p384}",
    );
    std::fs::write(config.path().join("all.yaml"), &manifests)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let cert = gw.certificate("default/gw-https-tls").await?;
        if cert
            .as_ref()
            .is_some_and(|c| c["lastError"].is_string() || c["last_error"].is_string())
        {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "failure never reported: {cert:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The old certificate is still served and still verifies.
    let body = acme::curl_verified(&old_root_path, &host, 443 + gw.offset)?;
    ensure!(body == "user route\n");

    // Pebble returns (with a new root); the renewal then succeeds.
    rig.pebble.restart().await?;
    let manifests = manifests.replace("ecdsa-p384", "rsa-2048");
    std::fs::write(config.path().join("all.yaml"), manifests)?;
    wait_verified(&rig, &gw, &host, Duration::from_secs(60)).await
}

// ---- ACME Renewal Information, against the double ----

fn double_issuer(double: &acme::ari_double::AriDouble) -> Result<AcmeIssuer> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let spec: portcullis::model::issuer::AcmeIssuerSpec = serde_yaml::from_str(&format!(
        "server: {}\nprivateKeySecretRef: {{name: ari-account}}\ncaBundle: {}\n\
         profile: shortlived\nsolvers: [{{http01: {{}}}}]\n",
        double.directory_url(),
        b64.encode(&double.ca_pem)
    ))?;
    Ok(AcmeIssuer::resolve(
        &spec,
        "default",
        &portcullis::model::Resources::default(),
    )?)
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

#[tokio::test]
async fn ari_window_comes_back_with_the_certificate_and_profile_is_ordered() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = SystemTime::now();
    let window = (now + hours(24 * 30), now + hours(24 * 31));
    let double = acme::ari_double::AriDouble::start(acme::ari_double::Behaviour {
        window,
        conflict_on_replaces: false,
    })
    .await?;
    let state = tempfile::tempdir()?;
    let ctx = AcmeContext::new(state.path(), Arc::default());
    let issued =
        portcullis::issuer::acme::issue(&double_issuer(&double)?, &ctx, &request(&["a.test"])?)
            .await?;
    let got = issued.renewal_window.context("window returned")?;
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    ensure!(
        secs(got.start) == secs(window.0) && secs(got.end) == secs(window.1),
        "{got:?}"
    );
    let seen = double.seen();
    let id = portcullis::issuer::acme::cert_id(&issued.cert.cert_chain_pem).context("cert id")?;
    ensure!(seen.renewal_info_ids == vec![id], "{seen:?}");
    ensure!(
        seen.order_profiles == vec![Some("shortlived".to_string())],
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn ari_window_in_the_past_is_reported_for_an_existing_certificate() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = SystemTime::now();
    let double = acme::ari_double::AriDouble::start(acme::ari_double::Behaviour {
        window: (now + hours(24 * 30), now + hours(24 * 31)),
        conflict_on_replaces: false,
    })
    .await?;
    let state = tempfile::tempdir()?;
    let ctx = AcmeContext::new(state.path(), Arc::default());
    let issuer = double_issuer(&double)?;
    let issued = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&["a.test"])?).await?;
    // The CA moves the window into the past: a revocation signal.
    double.set_window((now - hours(2), now - hours(1)));
    let window =
        portcullis::issuer::acme::renewal_window(&issuer, &ctx, &issued.cert.cert_chain_pem)
            .await?
            .context("window")?;
    ensure!(window.end < SystemTime::now(), "{window:?}");
    Ok(())
}

#[tokio::test]
async fn replaces_is_sent_and_dropped_when_the_ca_answers_409() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = SystemTime::now();
    let double = acme::ari_double::AriDouble::start(acme::ari_double::Behaviour {
        window: (now + hours(1), now + hours(2)),
        conflict_on_replaces: true,
    })
    .await?;
    let state = tempfile::tempdir()?;
    let ctx = AcmeContext::new(state.path(), Arc::default());
    let issuer = double_issuer(&double)?;
    let first = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&["a.test"])?).await?;
    let id = portcullis::issuer::acme::cert_id(&first.cert.cert_chain_pem).context("id")?;
    let mut req = request(&["a.test"])?;
    req.replaces = Some(id.clone());
    portcullis::issuer::acme::issue(&issuer, &ctx, &req).await?;
    let seen = double.seen();
    ensure!(
        seen.order_replaces == vec![None, Some(id), None],
        "newOrder replaces: {:?}",
        seen.order_replaces
    );
    Ok(())
}

#[tokio::test]
async fn replaces_accepted_by_the_ca_is_ordered_once() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = SystemTime::now();
    let double = acme::ari_double::AriDouble::start(acme::ari_double::Behaviour {
        window: (now + hours(1), now + hours(2)),
        conflict_on_replaces: false,
    })
    .await?;
    let state = tempfile::tempdir()?;
    let ctx = AcmeContext::new(state.path(), Arc::default());
    let issuer = double_issuer(&double)?;
    let first = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&["a.test"])?).await?;
    let id = portcullis::issuer::acme::cert_id(&first.cert.cert_chain_pem).context("id")?;
    let mut req = request(&["a.test"])?;
    req.replaces = Some(id.clone());
    portcullis::issuer::acme::issue(&issuer, &ctx, &req).await?;
    ensure!(double.seen().order_replaces == vec![None, Some(id)]);
    Ok(())
}
