//! Checks the harness itself without the gateway: certificates, every echo
//! port and feature, and that every case's config directory builds.

use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cases::{layout_for, load_cases};
use crate::support;
use crate::support::client::{self, ClientError, HttpRequest, Protocol, TlsOptions, WsFrame};
use crate::support::echo::{EchoPod, RetryCounters};
use crate::support::env::Cluster;

/// Panics on the first harness check that fails; runs on `rt`, the
/// harness's runtime.
pub(crate) fn harness_self_check(rt: &tokio::runtime::Handle) {
    rt.block_on(async {
        let pki = support::pki::suite();
        let (base, _) = {
            use rand::Rng;
            (rand::rng().random_range(0..40_000u32), 0)
        };
        let layout = layout_for(base, 0, 20_000);
        let ip = Ipv4Addr::new(
            layout.pod_block[0],
            layout.pod_block[1],
            layout.pod_block[2],
            7,
        );
        let cert = pki
            .secret("gateway-conformance-infra/tls-checks-certificate")
            .expect("generated");
        let ca = pki
            .config_map("gateway-conformance-infra/tls-checks-ca-certificate")
            .expect("generated");
        let pod = EchoPod::start(
            support::echo::PodSpec {
                kind: support::echo::EchoKind::Http,
                name: "echo-abcde-0".into(),
                namespace: "ns".into(),
                deployment: "echo".into(),
                ip,
                tls: Some(support::echo::ServerTls {
                    cert_pem: cert.cert_pem.clone(),
                    key_pem: cert.key_pem.clone(),
                    client_ca_pem: None,
                }),
            },
            Arc::new(RetryCounters::default()),
        )
        .await
        .expect("echo starts");
        let base_req =
            |port: u16, protocol: Protocol, tls: Option<TlsOptions>, path: &str| HttpRequest {
                addr: SocketAddr::from((ip, port)),
                tls,
                protocol,
                method: "GET".into(),
                path: path.into(),
                host: "abc.example.com".into(),
                headers: vec![("X-Echo-Set-Header".into(), "X-Foo:bar".into())],
                timeout: Duration::from_secs(5),
            };
        // HTTP/1.1 on 3000.
        let r = client::send(&base_req(3000, Protocol::Http1, None, "/a?b=c"))
            .await
            .expect("h1 echo");
        let echo: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(echo["path"], "/a?b=c");
        assert_eq!(echo["host"], "abc.example.com");
        assert_eq!(echo["pod"], "echo-abcde-0");
        assert_eq!(r.header("x-foo").as_deref(), Some("bar"));
        // h2c on 3001.
        let r = client::send(&base_req(3001, Protocol::H2cPriorKnowledge, None, "/h2c"))
            .await
            .expect("h2c echo");
        let echo: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(echo["proto"], "HTTP/2.0");
        // HTTPS on 8443 trusting the CA, h2 and http/1.1.
        let tls = TlsOptions {
            sni: "abc.example.com".into(),
            trusted_pem: vec![ca.to_string()],
            ..TlsOptions::default()
        };
        for proto in [Protocol::H2, Protocol::Http1] {
            let r = client::send(&base_req(8443, proto, Some(tls.clone()), "/tls"))
                .await
                .expect("tls echo");
            let echo: Value = serde_json::from_slice(&r.body).expect("json");
            assert_eq!(echo["tls"]["serverName"], "abc.example.com");
        }
        // Self-signed server certificate trusted directly.
        let ss = pki
            .secret("gateway-conformance-infra/tls-validity-checks-certificate")
            .expect("generated");
        assert!(ss.cert_pem.contains("BEGIN CERTIFICATE"));
        if pki.rsa {
            assert!(cert.key_pem.contains("BEGIN RSA PRIVATE KEY"), "PKCS#1 key");
        }
        // /status/NNN, delay, retry with code and with reset.
        let r = client::send(&base_req(3000, Protocol::Http1, None, "/status/418"))
            .await
            .expect("status");
        assert_eq!(r.status, 418);
        let t = Instant::now();
        client::send(&base_req(3000, Protocol::Http1, None, "/d?delay=300ms"))
            .await
            .expect("delay");
        assert!(t.elapsed() >= Duration::from_millis(300));
        let r = client::send(&base_req(
            3000,
            Protocol::Http1,
            None,
            "/retry/x?uuid=u1&succeedAfter=1&responseCode=503",
        ))
        .await
        .expect("retry");
        assert_eq!(r.status, 503);
        let r = client::send(&base_req(
            3000,
            Protocol::Http1,
            None,
            "/retry/x?uuid=u1&succeedAfter=1&responseCode=503",
        ))
        .await
        .expect("retry");
        assert_eq!(r.status, 200);
        let e = client::send(&base_req(
            3000,
            Protocol::Http1,
            None,
            "/retry/x?uuid=u2&succeedAfter=1",
        ))
        .await;
        assert!(e.is_err(), "connection reset expected, got {e:?}");
        // WebSocket echo.
        let frames = vec![WsFrame::Text("hi".into()), WsFrame::Binary(vec![1, 2, 3])];
        let (status, replies) = client::websocket(
            SocketAddr::from((ip, 3000)),
            None,
            "abc.example.com",
            "/ws",
            &[],
            &frames,
            Duration::from_secs(5),
        )
        .await
        .expect("websocket");
        assert_eq!(status, 101);
        assert_eq!(replies, frames);
        assert!(pod.request_count() >= 8);

        // TCP echo: TLS port with the passthrough certificate, SNI recorded.
        let tcp_ip = Ipv4Addr::new(
            layout.pod_block[0],
            layout.pod_block[1],
            layout.pod_block[2],
            8,
        );
        let pt = pki
            .secret("gateway-conformance-infra/tls-passthrough-checks-certificate")
            .expect("generated");
        let tcp_pod = EchoPod::start(
            support::echo::PodSpec {
                kind: support::echo::EchoKind::Tcp,
                name: "tcp-backend-abcde-0".into(),
                namespace: "ns".into(),
                deployment: "tcp-backend".into(),
                ip: tcp_ip,
                tls: Some(support::echo::ServerTls {
                    cert_pem: pt.cert_pem.clone(),
                    key_pem: pt.key_pem.clone(),
                    client_ca_pem: None,
                }),
            },
            Arc::new(RetryCounters::default()),
        )
        .await
        .expect("tcp echo starts");
        let tls = TlsOptions {
            sni: "abc.example.com".into(),
            trusted_pem: vec![ca.to_string()],
            ..TlsOptions::default()
        };
        let report = client::tls_stream(
            SocketAddr::from((tcp_ip, support::tcp_echo::TCP_TLS_PORT)),
            &tls,
            Duration::from_secs(5),
        )
        .await
        .expect("tls stream");
        assert_eq!(report.greeting, support::tcp_echo::GREETING);
        assert_eq!(report.test["pod"], "tcp-backend-abcde-0");
        assert_eq!(report.test["isTLS"], true);
        assert_eq!(report.test["tls"]["serverName"], "abc.example.com");
        assert_eq!(tcp_pod.tcp_sessions().len(), 1);
        // Nothing trusted: a certificate error, not a rejection.
        let untrusted = TlsOptions {
            trusted_pem: vec![],
            ..tls.clone()
        };
        let e = client::tls_stream(
            SocketAddr::from((tcp_ip, support::tcp_echo::TCP_TLS_PORT)),
            &untrusted,
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(e, Err(ClientError::Tls(_))), "got {e:?}");
        // The leaf itself trusted (Go root-pool semantics).
        let pinned = TlsOptions {
            trusted_pem: vec![pt.cert_pem.clone()],
            ..tls
        };
        client::tls_stream(
            SocketAddr::from((tcp_ip, support::tcp_echo::TCP_TLS_PORT)),
            &pinned,
            Duration::from_secs(5),
        )
        .await
        .expect("pinned leaf trusted");

        // Every case's environment builds and is accepted by `portcullis check`
        // (when the binary implements it).
        let check_binary = std::env::var_os("PORTCULLIS_CONFORMANCE_CHECK").is_some();
        for (i, case) in load_cases().iter().enumerate() {
            let dir = support::conformance_dir().join("manifests");
            let manifests: Vec<(String, String)> = case
                .manifests
                .iter()
                .map(|m| {
                    (
                        m.rsplit('/').next().unwrap_or(m).to_string(),
                        std::fs::read_to_string(dir.join(m)).expect("manifest readable"),
                    )
                })
                .collect();
            let layout = layout_for(base, 1 + i as u32, 20_000);
            let cluster = Cluster::build(&manifests, &layout, pki).expect("environment builds");
            cluster.pod_specs(pki).expect("pod TLS material resolves");
            if let Some((ns, name)) = &case.gateway {
                assert!(
                    cluster.gateways.contains_key(&format!("{ns}/{name}")),
                    "{}: gateway {ns}/{name} gets an address",
                    case.name
                );
            }
            if check_binary {
                let tmp = tempfile::tempdir().expect("tempdir");
                cluster.write_all(tmp.path()).expect("written");
                let (ok, out) = support::portcullis::check(tmp.path()).expect("check runs");
                println!("{}: portcullis check ok={ok}\n{out}", case.name);
            }
        }
    });
}
