//! End-to-end tests of client certificates at the edge (Gateway
//! `spec.tls.frontend`): curl and openssl s_client against the real
//! portcullis binary. A client with a certificate from the configured CA is
//! served and its identity reaches the backend in `X-Forwarded-Client-Cert`;
//! a client without one, or with a foreign one, fails the handshake.

mod e2e;

use e2e::backend::Backend;
use e2e::certs::{Ca, Leaf, LeafSpec};
use e2e::clients::{curl, echo, s_client};
use e2e::gateway::Gateway;
use e2e::manifests::{
    backend_ref, ca_config_map, docs, gateway, http_route, https_listener, service, tls_secret,
    CLASS,
};

struct Setup {
    gw: Gateway,
    backend: Backend,
    gateway_ca: Ca,
    client_ca: Ca,
}

/// An HTTPS Gateway on 443 validating clients against `client-ca` (`mode`
/// when given), routing to an echo backend.
async fn setup(mode: Option<&str>) -> Setup {
    let backend = Backend::start("app").await;
    let gateway_ca = Ca::new("gateway-ca");
    let leaf = gateway_ca.issue(&LeafSpec::new("gateway", &["app.example.test"]));
    let client_ca = Ca::new("client-ca");
    let mode = mode
        .map(|m| format!("          mode: {m}\n"))
        .unwrap_or_default();
    let frontend = format!(
        "  tls:\n    frontend:\n      default:\n        validation:\n{mode}          caCertificateRefs:\n            - group: \"\"\n              kind: ConfigMap\n              name: client-ca\n"
    );
    let gw = gateway("gw", &[https_listener("https", 443, None, &["gw-cert"])]) + &frontend;
    let gw = Gateway::start(&[(
        "all.yaml",
        docs(&[
            CLASS.to_string(),
            gw,
            http_route("r", "gw", &[], &[("/", backend_ref("app", 1))]),
            service("app", backend.port(), None),
            tls_secret("gw-cert", &leaf),
            ca_config_map("client-ca", &client_ca.cert_pem),
        ]),
    )])
    .await;
    Setup {
        gw,
        backend,
        gateway_ca,
        client_ca,
    }
}

/// curl GET over HTTPS, presenting `client` when given, with extra args.
async fn get(s: &Setup, client: Option<&Leaf>, extra: &[&str]) -> e2e::clients::CmdOut {
    let port = s.gw.port(443);
    let ca =
        s.gw.scratch("gateway-ca.pem", s.gateway_ca.cert_pem.as_bytes());
    let mut args: Vec<String> = vec![
        "--cacert".into(),
        ca.to_string_lossy().into(),
        "--resolve".into(),
        format!("app.example.test:{port}:127.0.0.1"),
    ];
    if let Some(c) = client {
        let cert = s.gw.scratch("client.pem", c.cert_pem.as_bytes());
        let key = s.gw.scratch("client.key", c.key_pem.as_bytes());
        args.extend([
            "--cert".into(),
            cert.to_string_lossy().into(),
            "--key".into(),
            key.to_string_lossy().into(),
        ]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(format!("https://app.example.test:{port}/who"));
    curl(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_ca_is_served_and_its_identity_forwarded() {
    let s = setup(None).await;
    let alice = s
        .client_ca
        .issue(&LeafSpec::new("alice", &["alice.example.test"]));
    let out = get(
        &s,
        Some(&alice),
        &[
            "-H",
            "X-Forwarded-Client-Cert: Hash=forged;Subject=\"CN=mallory\"",
        ],
    )
    .await;
    assert!(out.ok(), "{out:?}\n{}", s.gw.log_text());
    let seen = echo(out.stdout.as_bytes());
    let xfcc = seen["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_else(|| panic!("identity header forwarded: {seen}"));
    assert!(xfcc.starts_with("Hash="), "{xfcc}");
    assert!(xfcc.contains("CN=alice"), "{xfcc}");
    assert!(xfcc.contains("DNS=alice.example.test"), "{xfcc}");
    assert!(
        !xfcc.contains("mallory"),
        "the client's own header must be dropped: {xfcc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_or_with_a_foreign_one_the_handshake_fails() {
    let s = setup(None).await;
    let out = get(&s, None, &[]).await;
    assert!(
        !out.ok(),
        "a client without certificate must be refused: {out:?}"
    );
    let foreign = Ca::new("foreign-ca").issue(&LeafSpec::new("eve", &["eve.example.test"]));
    let out = get(&s, Some(&foreign), &[]).await;
    assert!(!out.ok(), "a foreign certificate must be refused: {out:?}");
    assert_eq!(s.backend.hits(), 0, "no request may reach the backend");
    // The server asks for a certificate and names the acceptable CA.
    let port = s.gw.port(443);
    let out = s_client(port, &["-servername", "app.example.test"]).await;
    assert!(
        out.stdout
            .contains("Acceptable client certificate CA names")
            && out.stdout.contains("client-ca"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_fallback_serves_everyone_but_forwards_only_verified_identities() {
    let s = setup(Some("AllowInsecureFallback")).await;
    let out = get(&s, None, &[]).await;
    assert!(out.ok(), "{out:?}");
    let seen = echo(out.stdout.as_bytes());
    assert!(
        seen["headers"]["x-forwarded-client-cert"].is_null(),
        "{seen}"
    );
    let foreign = Ca::new("foreign-ca").issue(&LeafSpec::new("eve", &["eve.example.test"]));
    let out = get(&s, Some(&foreign), &[]).await;
    assert!(out.ok(), "{out:?}");
    let seen = echo(out.stdout.as_bytes());
    assert!(
        seen["headers"]["x-forwarded-client-cert"].is_null(),
        "an unverified certificate is no identity: {seen}"
    );
    let alice = s
        .client_ca
        .issue(&LeafSpec::new("alice", &["alice.example.test"]));
    let out = get(&s, Some(&alice), &[]).await;
    let seen = echo(out.stdout.as_bytes());
    assert!(
        seen["headers"]["x-forwarded-client-cert"]
            .as_str()
            .is_some_and(|x| x.contains("CN=alice")),
        "{seen}"
    );
}
