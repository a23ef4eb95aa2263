//! The certificate manager with its local issuers, driven through the real
//! binary on loopback and checked by real clients (curl, openssl): a
//! listener without certificateRefs is served a local-CA certificate; a
//! short-lived certificate is renewed while a client polls without a failed
//! handshake; `kill -9` loses nothing; `ca` and `selfSigned` issuers issue;
//! `portcullis certs` prints the table; a ListenerSet's listener without
//! certificateRefs gets its own local-CA certificate, served by SNI.

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use support::portcullis::{binary, Portcullis, ServeOptions};
use support::ports;

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: portcullis.dev/v1alpha1
kind: StaticResponse
metadata: {name: hello, namespace: default}
spec: {body: hello}
";

/// A Gateway `gw` with one HTTPS listener `web` on 443 for `app.test`,
/// with the given annotations and `tls` block, and a route to `hello`.
fn gateway(annotations: &str, tls: &str) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
  annotations: {{{annotations}}}
spec:
  gatewayClassName: pc
  listeners:
    - {{name: web, protocol: HTTPS, port: 443, hostname: app.test, tls: {tls}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{group: portcullis.dev, kind: StaticResponse, name: hello}}]}}]
"
    )
}

/// A running gateway with its directories.
struct Served {
    process: Portcullis,
    dir: tempfile::TempDir,
    offset: u16,
}

impl Served {
    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn https_port(&self) -> u16 {
        443 + self.offset
    }
}

/// Writes `manifests` and serves them with a fresh state directory.
async fn serve(manifests: &str) -> Result<Served> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("config"))?;
    std::fs::write(dir.path().join("config/all.yaml"), manifests)?;
    let offset = ports::for_child()?
        .checked_sub(443)
        .context("ephemeral port above 443")?;
    let process = start(dir.path(), offset).await?;
    Ok(Served {
        process,
        dir,
        offset,
    })
}

async fn start(dir: &Path, offset: u16) -> Result<Portcullis> {
    let mut process = Portcullis::spawn(&ServeOptions {
        config_dir: dir.join("config"),
        state_dir: dir.join("state"),
        listen_address: Ipv4Addr::LOCALHOST,
        port_offset: offset,
        log_file: dir.join(format!("portcullis-{}.log", rand_suffix())),
    })?;
    process.wait_ready(Duration::from_secs(30)).await?;
    Ok(process)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `portcullis ca export --state DIR`, written to a file.
fn export_root(served: &Served) -> Result<PathBuf> {
    let pem = run(
        path(&binary()),
        &["ca", "export", "--state", path(&served.state())],
    )?;
    let file = served.dir.path().join("root.pem");
    std::fs::write(&file, pem)?;
    Ok(file)
}

/// The certificate chain served for `app.test`, PEM, verified against
/// `ca_file` by openssl (fails on any handshake or verification error).
fn served_chain(port: u16, ca_file: &Path) -> Result<String> {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "app.test",
            "-verify_hostname",
            "app.test",
            "-verify_return_error",
            "-showcerts",
            "-CAfile",
            path(ca_file),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running openssl s_client")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !text.contains("Verify return code: 0 (ok)") {
        bail!(
            "handshake failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pems: Vec<String> = text
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|s| s.split("-----END CERTIFICATE-----").next())
        .map(|b| format!("-----BEGIN CERTIFICATE-----{b}-----END CERTIFICATE-----\n"))
        .collect();
    ensure!(!pems.is_empty(), "no certificate in {text}");
    Ok(pems.concat())
}

/// The leaf's serial, via `openssl x509`.
fn serial(chain_pem: &str, scratch: &Path) -> Result<String> {
    let file = scratch.join(format!("leaf-{}.pem", rand_suffix()));
    std::fs::write(&file, chain_pem)?;
    Ok(run(
        "openssl",
        &["x509", "-noout", "-serial", "-in", path(&file)],
    )?
    .trim()
    .to_string())
}

/// curl to `https://app.test/` trusting `ca_file`; the body.
fn curl(port: u16, ca_file: &Path) -> Result<String> {
    run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--cacert",
            path(ca_file),
            "--resolve",
            &format!("app.test:{port}:127.0.0.1"),
            &format!("https://app.test:{port}/"),
        ],
    )
}

#[tokio::test]
async fn listener_without_refs_is_served_a_local_ca_certificate_clients_verify() -> Result<()> {
    let served = serve(&format!("{CLASS}{}", gateway("", "{}"))).await?;
    let root = export_root(&served)?;
    assert_eq!(curl(served.https_port(), &root)?, "hello");
    // openssl verifies the stored chain against the exported root too.
    let stored = served.state().join("secrets/default/gw-web-tls/tls.crt");
    run(
        "openssl",
        &["verify", "-CAfile", path(&root), path(&stored)],
    )?;
    // /status: effective certificateRefs and the certificate's state.
    let status = served.process.status().await?;
    let cert = &status["certificates"][0];
    assert_eq!(cert["secret"], "default/gw-web-tls");
    assert_eq!(cert["dnsNames"], serde_json::json!(["app.test"]));
    assert_eq!(cert["ready"], true);
    let text = status.to_string();
    assert!(text.contains("default/gw-web-tls"), "{text}");
    // The managed certificate's series: renewal time and readiness from the
    // issuer, and the served certificate marked as managed.
    let metrics = served.process.metrics().await?;
    let renewal = metrics
        .lines()
        .find(|l| {
            l.starts_with("portcullis_certificate_renewal_timestamp_seconds{")
                && l.contains("secret=\"gw-web-tls\"")
        })
        .unwrap_or_else(|| panic!("no renewal series in:\n{metrics}"));
    let at: f64 = renewal
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unparsable sample {renewal}"));
    assert_eq!(Some(at as u64), cert["renewalTime"].as_u64(), "{renewal}");
    // The curl above is counted on the listener its SNI selected.
    assert!(
        metrics.lines().any(|l| {
            l.starts_with("portcullis_listener_connections_accepted_total{")
                && l.contains("listener=\"web\"")
                && !l.ends_with(" 0")
        }),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portcullis_certificate_ready_status{")
                && l.contains("secret=\"gw-web-tls\"")
                && l.contains("condition=\"True\"")
                && (l.ends_with(" 1") || l.ends_with(" 1.0"))),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l
            .starts_with("portcullis_certificate_expiration_timestamp_seconds{")
            && l.contains("secret=\"gw-web-tls\"")
            && l.contains("managed=\"true\"")),
        "{metrics}"
    );

    // `portcullis certs` prints the same, as a table.
    let table = run(
        path(&binary()),
        &[
            "certs",
            "--config",
            path(&served.config()),
            "--state",
            path(&served.state()),
        ],
    )?;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SECRET"), "{table}");
    for cell in ["default/gw-web-tls", "app.test", "local-ca", "Ready"] {
        assert!(lines[1].contains(cell), "{cell} missing from {table}");
    }
    Ok(())
}

#[tokio::test]
async fn short_lived_certificate_is_renewed_without_a_failed_handshake() -> Result<()> {
    // 20 s (plus 2 s of backdating), renewed when half of the lifetime is
    // left: about 9 s after issuance, 11 s before expiry. When renewal
    // happens is the manager's tests' concern (on paused time); this one
    // checks that the binary swaps the served certificate while clients
    // keep verifying every handshake.
    let served = serve(&format!(
        "{CLASS}{}",
        gateway(
            "portcullis.dev/duration: 20s, portcullis.dev/renew-before-percentage: '50'",
            "{}"
        )
    ))
    .await?;
    let root = export_root(&served)?;
    let scratch = served.dir.path();
    let first = serial(&served_chain(served.https_port(), &root)?, scratch)?;
    let start = Instant::now();
    let mut handshakes = 0;
    let mut seen = vec![first.clone()];
    while start.elapsed() < Duration::from_secs(20) {
        // Any failed handshake or verification fails the test.
        let chain = served_chain(served.https_port(), &root)?;
        handshakes += 1;
        let now = serial(&chain, scratch)?;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if seen.len() >= 2 && start.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        seen.len() >= 2,
        "no renewal seen in {:?} over {handshakes} handshakes; log:\n{}",
        start.elapsed(),
        served.process.log_tail(30)
    );
    // Renewed before the first certificate expired (it lives 22 s and was
    // issued before `start`).
    assert!(start.elapsed() < Duration::from_secs(20));
    Ok(())
}

#[tokio::test]
async fn kill_9_loses_no_key_and_restart_serves_the_same_certificate() -> Result<()> {
    let served = serve(&format!("{CLASS}{}", gateway("", "{}"))).await?;
    let root = export_root(&served)?;
    let before = serial(
        &served_chain(served.https_port(), &root)?,
        served.dir.path(),
    )?;
    let Served {
        process,
        dir,
        offset,
    } = served;
    // Dropping the guard sends SIGKILL.
    drop(process);
    let entry = dir.path().join("state/secrets/default/gw-web-tls");
    for file in ["tls.crt", "tls.key"] {
        ensure!(entry.join(file).is_file(), "{file} lost");
    }
    ensure!(dir.path().join("state/local-ca/ca.key").is_file());
    let process = start(dir.path(), offset).await?;
    let after = serial(&served_chain(443 + offset, &root)?, dir.path())?;
    assert_eq!(
        before, after,
        "a valid certificate was re-issued after restart"
    );
    drop(process);
    Ok(())
}

#[tokio::test]
async fn ca_issuer_signs_with_the_ca_from_its_secret() -> Result<()> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![])?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = params.self_signed(&key)?;
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let manifests = format!(
        "{CLASS}---
apiVersion: v1
kind: Secret
metadata: {{name: my-ca, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {{name: corp, namespace: default}}
spec: {{ca: {{secretName: my-ca}}}}
{}",
        indent(&ca.pem()),
        indent(&key.serialize_pem()),
        gateway(
            "portcullis.dev/issuer: corp",
            "{certificateRefs: [{name: web-cert}]}"
        )
    );
    let served = serve(&manifests).await?;
    let ca_file = served.dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem())?;
    assert_eq!(curl(served.https_port(), &ca_file)?, "hello");
    let stored = served.state().join("secrets/default/web-cert/tls.crt");
    run(
        "openssl",
        &["verify", "-CAfile", path(&ca_file), path(&stored)],
    )?;
    Ok(())
}

#[tokio::test]
async fn self_signed_issuer_serves_a_certificate_signed_by_itself() -> Result<()> {
    let manifests = format!(
        "{CLASS}---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: selfie}}
spec: {{selfSigned: {{}}}}
{}",
        gateway(
            "cert-manager.io/cluster-issuer: selfie, portcullis.dev/private-key-algorithm: ecdsa-p384",
            "{}"
        )
    );
    let served = serve(&manifests).await?;
    let stored = served.state().join("secrets/default/gw-web-tls/tls.crt");
    // Trusting the certificate itself is enough: it is its own issuer.
    assert_eq!(curl(served.https_port(), &stored)?, "hello");
    let text = run(
        "openssl",
        &["x509", "-noout", "-text", "-in", path(&stored)],
    )?;
    assert!(text.contains("DNS:app.test"), "{text}");
    assert!(
        text.contains("secp384r1") || text.contains("P-384"),
        "{text}"
    );
    Ok(())
}

/// The `portcullis.dev/CertificateReady` condition of listener `listener`
/// of `kind` `namespace/name` in `/status`, and its certificateRefs.
fn listener_report(
    status: &serde_json::Value,
    kind: &str,
    namespace: &str,
    name: &str,
    listener: &str,
) -> Option<(serde_json::Value, serde_json::Value)> {
    let object = status["objects"]
        .as_array()?
        .iter()
        .find(|o| o["kind"] == kind && o["namespace"] == namespace && o["name"] == name)?;
    let l = object["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == listener)?;
    let ready = l["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "portcullis.dev/CertificateReady")?;
    Some((ready.clone(), l["certificateRefs"].clone()))
}

#[tokio::test]
async fn listener_set_listener_without_refs_is_served_its_own_local_ca_certificate() -> Result<()> {
    // The Gateway's own `web` listener serves app.test; ListenerSet `extra`
    // in namespace `apps` adds a listener named `web` too, on the same
    // port, for extra.test, with no certificateRefs and no annotation.
    let manifests = format!(
        "{CLASS}{}---
apiVersion: portcullis.dev/v1alpha1
kind: StaticResponse
metadata: {{name: extra, namespace: apps}}
spec: {{body: extra}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: extra, namespace: apps}}
spec:
  parentRef: {{name: gw, namespace: default}}
  listeners:
    - {{name: web, protocol: HTTPS, port: 443, hostname: extra.test}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: apps}}
spec:
  parentRefs: [{{kind: ListenerSet, name: extra, sectionName: web}}]
  rules: [{{backendRefs: [{{group: portcullis.dev, kind: StaticResponse, name: extra}}]}}]
",
        gateway("", "{}").replace(
            "  gatewayClassName: pc\n",
            "  gatewayClassName: pc\n  allowedListeners: {namespaces: {from: All}}\n",
        )
    );
    let served = serve(&manifests).await?;
    let root = export_root(&served)?;
    let port = served.https_port();
    // curl checks the chain against the exported root and the name against
    // extra.test: only the ListenerSet's certificate passes both, so SNI
    // picked it.
    let extra = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--cacert",
            path(&root),
            "--resolve",
            &format!("extra.test:{port}:127.0.0.1"),
            &format!("https://extra.test:{port}/"),
        ],
    )?;
    assert_eq!(extra, "extra");
    assert_eq!(curl(port, &root)?, "hello");
    // Issued into `<listenerset>-<listener>-tls` in the ListenerSet's
    // namespace, for its hostname only.
    let stored = served.state().join("secrets/apps/extra-web-tls/tls.crt");
    run(
        "openssl",
        &["verify", "-CAfile", path(&root), path(&stored)],
    )?;
    let text = run(
        "openssl",
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            path(&stored),
        ],
    )?;
    assert!(text.contains("DNS:extra.test"), "{text}");
    assert!(!text.contains("app.test"), "{text}");
    // /status: the auto-filled ref and the CertificateReady condition on the
    // ListenerSet's listener (the status is re-annotated as certificates
    // change, so give it a moment).
    let deadline = Instant::now() + Duration::from_secs(15);
    let (ready, refs) = loop {
        let status = served.process.status().await?;
        let report = listener_report(&status, "ListenerSet", "apps", "extra", "web");
        match report {
            Some((ready, refs)) if ready["status"] == "True" => break (ready, refs),
            _ if Instant::now() > deadline => {
                bail!("no CertificateReady=True on the ListenerSet listener: {status:#}")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(refs, serde_json::json!(["apps/extra-web-tls"]));
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("apps/extra-web-tls")),
        "{ready}"
    );
    let status = served.process.status().await?;
    let cert = status["certificates"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["secret"] == "apps/extra-web-tls"))
        .with_context(|| format!("no certificate for apps/extra-web-tls in {status:#}"))?;
    assert_eq!(
        cert["listeners"],
        serde_json::json!(["ListenerSet apps/extra/web"])
    );
    assert_eq!(cert["issuerKind"], "local-ca");
    // The Gateway's own `web` listener keeps its own certificate and
    // condition.
    let (gw_ready, gw_refs) = listener_report(&status, "Gateway", "default", "gw", "web")
        .context("Gateway listener report")?;
    assert_eq!(gw_refs, serde_json::json!(["default/gw-web-tls"]));
    assert_eq!(gw_ready["status"], "True");
    Ok(())
}
