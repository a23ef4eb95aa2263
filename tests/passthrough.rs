//! End-to-end tests of TLS passthrough: a `TLS` listener in `Passthrough`
//! mode shares port 443 with an HTTPS listener; connections whose SNI selects
//! it reach a real TLS backend (a tokio-rustls echo server with its own CA)
//! unterminated, so the client sees the backend's certificate and ALPN.

mod e2e;

use e2e::certs::{Ca, LeafSpec};
use e2e::clients::{s_client, served_subject, tls_config};
use e2e::gateway::Gateway;
use e2e::manifests::{docs, gateway, https_listener, service, tls_secret, CLASS};
use e2e::WAIT;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TLS echo server on loopback serving `leaf` (ALPN `h2`, `http/1.1`):
/// echoes every byte and closes its side when the client closes its own.
async fn echo_backend(cert_pem: &str, key_pem: &str) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("leaf PEM parses");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM parses");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("leaf and key match");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut r, mut w) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A TLSRoute `pt` sending `hostnames` to Service `backend` port 8080.
fn tls_route(hostnames: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata:
  name: pt
  namespace: default
spec:
  parentRefs:
    - name: gw
      sectionName: pt
  hostnames: {hostnames}
  rules:
    - backendRefs:
        - name: backend
          port: 8080
"
    )
}

struct Setup {
    gw: Gateway,
    backend_ca: Ca,
}

async fn setup() -> Setup {
    let backend_ca = Ca::new("backend-ca");
    let backend_leaf = backend_ca.issue(&LeafSpec::new("backend", &["a.pt.example.test"]));
    let backend = echo_backend(&backend_leaf.cert_pem, &backend_leaf.key_pem).await;
    let gateway_ca = Ca::new("gateway-ca");
    let gateway_leaf = gateway_ca.issue(&LeafSpec::new("gateway", &["*.example.test"]));
    let passthrough = "    - name: pt\n      protocol: TLS\n      port: 443\n      hostname: \"*.pt.example.test\"\n      tls:\n        mode: Passthrough\n".to_string();
    let gw = gateway(
        "gw",
        &[
            passthrough,
            https_listener("https", 443, Some("*.example.test"), &["gw-cert"]),
        ],
    );
    let gw = Gateway::start(&[
        ("gateway.yaml", docs(&[CLASS.to_string(), gw])),
        (
            "routes.yaml",
            docs(&[
                tls_route("[a.pt.example.test]"),
                service("backend", backend.port(), None),
            ]),
        ),
        ("secrets.yaml", tls_secret("gw-cert", &gateway_leaf)),
    ])
    .await;
    Setup { gw, backend_ca }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_and_terminate_share_a_port_by_sni() {
    let Setup { gw, backend_ca } = setup().await;
    let port = gw.port(443);

    // curl verifies the backend's certificate (signed by the backend's own
    // CA, which the gateway never sees) through the gateway. The backend
    // echoes bytes rather than answering HTTP, so only the handshake counts.
    let ca = gw.scratch("backend-ca.pem", backend_ca.cert_pem.as_bytes());
    let out = e2e::clients::curl(&[
        "-v",
        "--http1.1",
        "--cacert",
        ca.to_str().expect("utf-8 path"),
        "--resolve",
        &format!("a.pt.example.test:{port}:127.0.0.1"),
        &format!("https://a.pt.example.test:{port}/"),
    ])
    .await;
    assert!(
        out.stderr.contains("CN=backend") && out.stderr.contains("SSL certificate verify ok"),
        "curl must verify the backend's certificate through the gateway: {}",
        out.stderr
    );

    let out = s_client(
        port,
        &["-servername", "a.pt.example.test", "-alpn", "h2,http/1.1"],
    )
    .await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("backend"),
        "passthrough SNI must see the backend's certificate, got {subject:?}: {out:?}\n{}",
        gw.log_text()
    );
    assert!(
        out.stdout.contains("ALPN protocol: h2"),
        "the backend's ALPN choice must reach the client: {}",
        out.stdout
    );

    let out = s_client(port, &["-servername", "b.example.test"]).await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("gateway"),
        "terminate SNI must see the gateway's certificate, got {subject:?}"
    );

    // A passthrough hostname no TLSRoute serves is refused.
    let out = s_client(port, &["-servername", "z.pt.example.test"]).await;
    assert!(
        served_subject(&out).is_none(),
        "an SNI without TLSRoute must fail: {}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_echoes_a_large_payload_byte_exact() {
    let Setup { gw, backend_ca } = setup().await;
    let config = tls_config(&backend_ca.cert_pem, &["h2"]);
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(gw.addr(443))
        .await
        .expect("connect gateway");
    let name = ServerName::try_from("a.pt.example.test").expect("valid name");
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake with the backend through the gateway");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let payload: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
    let (mut r, mut w) = tokio::io::split(tls);
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.expect("write payload");
        w.shutdown().await.expect("close write side");
        w
    });
    let mut echoed = Vec::with_capacity(payload.len());
    tokio::time::timeout(WAIT, r.read_to_end(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read echo");
    let _w = writer.await.expect("writer task");
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "echoed bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_client_hello_is_cut_off() {
    let gateway_ca = Ca::new("gateway-ca");
    let leaf = gateway_ca.issue(&LeafSpec::new("gateway", &["*.example.test"]));
    let gw = Gateway::start_with_args(
        &[
            (
                "gateway.yaml",
                docs(&[
                    CLASS.to_string(),
                    gateway("gw", &[https_listener("https", 443, None, &["gw-cert"])]),
                ]),
            ),
            ("secrets.yaml", tls_secret("gw-cert", &leaf)),
        ],
        &["--handshake-timeout", "1"],
    )
    .await;
    let mut tcp = TcpStream::connect(gw.addr(443))
        .await
        .expect("connect gateway");
    // A TLS record header announcing 512 bytes of handshake, then 10 of them.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .await
        .expect("write partial hello");
    let mut buf = [0u8; 64];
    // Bounded by WAIT (20 s); the gateway is told to give up after 1 s.
    let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("the gateway must close a stalled handshake");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected EOF or reset, got {read:?}"
    );
    assert!(
        gw.log_text().contains("ClientHello timed out"),
        "{}",
        gw.log_text()
    );
}
