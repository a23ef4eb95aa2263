//! TLS: the quickstart, SNI certificate selection, ALPN, protocol versions and
//! key types.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_serves_static_body_over_https_and_redirects_http() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let gw = Gateway::start_dir(&dir).await;
    let https = gw.port(443);

    // The quickstart ships no certificate: the local CA issues one. Trust
    // what `portcullis ca export --state` prints, as the README says.
    let root = ca_export(&state_dir_of(&gw)).await;
    let ca = gw.scratch("local-ca.pem", root.as_bytes());
    for (host, addr) in [("localhost", "localhost"), ("127.0.0.1", "127.0.0.1")] {
        let out = curl(&[
            "--cacert",
            ca.to_str().expect("utf-8 path"),
            "--resolve",
            &resolve(host, https),
            &format!("https://{addr}:{https}/any/path"),
        ])
        .await;
        assert!(out.ok(), "curl --cacert to {host} failed: {out:?}");
        assert_eq!(out.stdout, "hello from portcullis\n");
    }

    // /status shows the effective certificateRefs and the certificate.
    let status = gw.status().await;
    let refs = listener(&status, "quickstart", "https").expect("https listener")["certificateRefs"]
        .clone();
    assert_eq!(refs, serde_json::json!(["default/quickstart-https-tls"]));
    let cert = &status["certificates"][0];
    assert_eq!(cert["secret"], "default/quickstart-https-tls");
    assert_eq!(cert["issuerKind"], "local-ca");
    assert_eq!(cert["status"], "Ready");

    let http = gw.port(80);
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "--resolve",
        &resolve("localhost", http),
        &format!("http://localhost:{http}/x"),
    ])
    .await;
    assert!(out.ok(), "curl http failed: {out:?}");
    assert!(
        out.stdout.starts_with("301 https://localhost"),
        "expected a 301 to https, got {:?}",
        out.stdout
    );

    let (code, text) = check(&dir).await;
    assert_eq!(code, 0, "portcullis check on the quickstart: {text}");
}

/// A gateway with two HTTPS listeners on port 443: `a.example.test` and
/// `*.wild.example.test`, each with its own certificate, both answering from a
/// StaticResponse.
async fn sni_gateway(ca: &Ca) -> Gateway {
    sni_gateway_with_args(ca, &[]).await
}

/// [`sni_gateway`] with extra `serve` arguments.
async fn sni_gateway_with_args(ca: &Ca, args: &[&str]) -> Gateway {
    let a = ca.issue(&LeafSpec::new("a", &["a.example.test"]));
    let wild = ca.issue(&LeafSpec::new("wild", &["*.wild.example.test"]));
    let gw = gateway(
        "sni",
        &[
            https_listener("a", 443, Some("a.example.test"), &["cert-a"]),
            https_listener("wild", 443, Some("*.wild.example.test"), &["cert-wild"]),
        ],
    );
    let route = http_route("hello", "sni", &[], &[("/", static_ref("hello"))]);
    Gateway::start_with_args(
        &[
            ("gateway.yaml", docs(&[CLASS.to_string(), gw])),
            ("route.yaml", docs(&[route, static_response("hello", "hi")])),
            (
                "secrets.yaml",
                docs(&[tls_secret("cert-a", &a), tls_secret("cert-wild", &wild)]),
            ),
        ],
        args,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_certificate_for_exact_and_wildcard_listeners() {
    let ca = Ca::new("sni-ca");
    let gw = sni_gateway(&ca).await;
    let port = gw.port(443);

    let out = s_client(port, &["-servername", "a.example.test"]).await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("CN = a"),
        "exact SNI got {subject:?}: {out:?}"
    );

    let out = s_client(port, &["-servername", "x.wild.example.test"]).await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("CN = wild"),
        "wildcard SNI got {subject:?}"
    );

    let out = s_client(port, &["-servername", "unknown.other.test"]).await;
    assert!(
        served_subject(&out).is_none(),
        "an SNI no listener matches must fail the handshake, got: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("handshake failure"),
        "the refusal must be a handshake_failure alert, got: {}",
        out.stderr
    );

    let cafile = gw.scratch("ca.pem", ca.cert_pem.as_bytes());
    for host in ["a.example.test", "x.wild.example.test"] {
        let out = curl(&[
            "--cacert",
            cafile.to_str().expect("utf-8 path"),
            "--resolve",
            &resolve(host, port),
            &format!("https://{host}:{port}/"),
        ])
        .await;
        assert!(out.ok(), "curl to {host}: {out:?}");
        assert_eq!(out.stdout, "hi");
    }
}

/// A Gateway with one HTTPS listener `name` on port 443 for `hostname`
/// (none: any), serving a certificate for `{name}.example.test`.
async fn one_listener_gateway(ca: &Ca, name: &str, hostname: Option<&str>) -> Gateway {
    let leaf = ca.issue(&LeafSpec::new(name, &[&format!("{name}.example.test")]));
    let secret = format!("cert-{name}");
    Gateway::start(&[(
        "all.yaml",
        docs(&[
            CLASS.to_string(),
            gateway(
                "one",
                &[https_listener(name, 443, hostname, &[secret.as_str()])],
            ),
            tls_secret(&secret, &leaf),
        ]),
    )])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sni_with_a_single_listener_gets_its_certificate() {
    let ca = Ca::new("nosni-ca");
    let gw = one_listener_gateway(&ca, "only", Some("only.example.test")).await;
    let out = s_client(gw.port(443), &["-noservername"]).await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("CN = only"),
        "no-SNI got {subject:?}: {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_negotiates_h2_and_http11() {
    let ca = Ca::new("alpn-ca");
    let gw = sni_gateway(&ca).await;
    let port = gw.port(443);
    for proto in ["h2", "http/1.1"] {
        let out = s_client(port, &["-servername", "a.example.test", "-alpn", proto]).await;
        assert!(
            out.stdout.contains(&format!("ALPN protocol: {proto}")),
            "ALPN {proto} not negotiated: {}",
            out.stdout
        );
    }
    for (offer, want) in [
        (vec!["h2", "http/1.1"], "h2"),
        (vec!["http/1.1"], "http/1.1"),
    ] {
        let resp = tls_get(
            gw.addr(443),
            tls_config(&ca.cert_pem, &offer),
            "a.example.test",
            "a.example.test",
            "/",
        )
        .await
        .expect("TLS GET");
        assert_eq!(resp.alpn.as_deref(), Some(want));
        assert_eq!(resp.status, 200);
        assert_eq!(&resp.body[..], b"hi");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_tls13_both_work() {
    let ca = Ca::new("versions-ca");
    let gw = sni_gateway(&ca).await;
    let port = gw.port(443);
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(port, &["-servername", "a.example.test", flag]).await;
        assert!(
            out.stdout.contains(&format!("New, {version}")),
            "{version} handshake failed: {}{}",
            out.stdout,
            out.stderr
        );
    }
    let cafile = gw.scratch("ca.pem", ca.cert_pem.as_bytes());
    let out = curl(&[
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--cacert",
        cafile.to_str().expect("utf-8 path"),
        "--resolve",
        &resolve("a.example.test", port),
        &format!("https://a.example.test:{port}/"),
    ])
    .await;
    assert!(out.ok(), "curl over TLS 1.2: {out:?}");
    assert_eq!(out.stdout, "hi");
}

/// One `openssl s_client` connection to `gw`'s port 443 making a
/// `Connection: close` request and reading until the server closes (so TLS
/// 1.3 tickets, which follow the handshake, arrive), with `session_flag`
/// (`-sess_out` or `-sess_in`) on `session`; `version` is `-tls1_2` or
/// `-tls1_3`. Returns whether the session was resumed.
async fn s_client_session(gw: &Gateway, version: &str, session_flag: &str, session: &Path) -> bool {
    let connect = format!("127.0.0.1:{}", gw.port(443));
    let args = [
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "a.example.test",
        version,
        "-ign_eof",
        session_flag,
        session.to_str().expect("utf-8 path"),
    ];
    let request = b"GET / HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n";
    let out = run_with_input("openssl", &args, Some(request)).await;
    let reused = out.stdout.contains("Reused, ");
    assert!(
        (reused || out.stdout.contains("New, ")) && out.stdout.contains("\r\n\r\nhi"),
        "connection with {session_flag}: {out:?}"
    );
    reused
}

/// A session from a first connection, or `None` when the server gave none
/// to resume with (no ticket, no session ID).
async fn new_session(gw: &Gateway, version: &str, name: &str) -> Option<std::path::PathBuf> {
    let session = gw.scratch(&format!("{name}{version}.pem"), b"");
    let resumed = s_client_session(gw, version, "-sess_out", &session).await;
    assert!(!resumed, "a first connection cannot resume");
    (std::fs::metadata(&session).map_or(0, |m| m.len()) > 0).then_some(session)
}

/// Whether a second connection resumes the session of a first one.
async fn resumes(gw: &Gateway, version: &str) -> bool {
    match new_session(gw, version, "session").await {
        Some(session) => s_client_session(gw, version, "-sess_in", &session).await,
        None => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_unless_the_session_cache_is_off() {
    let ca = Ca::new("resume-ca");
    let gw = sni_gateway(&ca).await;
    for version in ["-tls1_3", "-tls1_2"] {
        assert!(resumes(&gw, version).await, "{version} session not resumed");
    }
    let off = sni_gateway_with_args(&ca, &["--tls-session-cache", "0"]).await;
    for version in ["-tls1_3", "-tls1_2"] {
        assert!(
            !resumes(&off, version).await,
            "{version} session resumed with --tls-session-cache 0"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_reload() {
    let ca = Ca::new("resume-reload-ca");
    let gw = sni_gateway(&ca).await;
    let generation = |s: &serde_json::Value| s["generation"].as_u64().unwrap_or(0);
    let before = generation(&gw.status().await);
    let session = new_session(&gw, "-tls1_3", "reload")
        .await
        .expect("a TLS 1.3 ticket");
    // A reload rebuilds every listener's rustls configuration.
    gw.write(
        "more.yaml",
        &docs(&[
            http_route("more", "sni", &[], &[("/more", static_ref("more"))]),
            static_response("more", "more"),
        ]),
    );
    gw.wait_status("a reload", |s| generation(s) > before).await;
    assert!(
        s_client_session(&gw, "-tls1_3", "-sess_in", &session).await,
        "a session from before the reload was not resumed after it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_address_as_sni_does_not_write_a_warning_per_handshake() {
    let ca = Ca::new("ip-sni-ca");
    let gw = one_listener_gateway(&ca, "any", None).await;
    for _ in 0..3 {
        // RFC 6066 forbids IP addresses in SNI; wrk and others send them.
        let out = s_client(gw.port(443), &["-servername", "127.0.0.1"]).await;
        assert!(served_subject(&out).is_some(), "handshake: {out:?}");
    }
    let log = gw.log_text();
    assert!(
        log.matches("TLS established").count() >= 3,
        "the handshakes are not in the log (debug level): {log}"
    );
    assert!(
        !log.contains("Illegal SNI"),
        "rustls warned about each client's SNI: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_prefers_aes_128_gcm_over_the_clients_order() {
    let ca = Ca::new("suites-ca");
    let gw = sni_gateway(&ca).await;
    // (version, how the client lists its suites, what it offers, what the
    // server must choose)
    let cases = [
        (
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
            "TLS_AES_128_GCM_SHA256",
        ),
        // A client without AES-128 still gets a suite it offers.
        (
            "-tls1_3",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
    ];
    for (version, flag, offered, chosen) in cases {
        let args = ["-servername", "a.example.test", version, flag, offered];
        let out = s_client(gw.port(443), &args).await;
        assert!(
            out.stdout.contains(&format!("Cipher is {chosen}")),
            "offered {offered}, want {chosen}: {}",
            out.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_certificate_served_to_rsa_only_clients_ecdsa_otherwise() {
    let ca = Ca::new("dual-ca");
    let ec = ca.issue(&LeafSpec::new("dual-ec", &["dual.example.test"]));
    let rsa = ca.issue(&LeafSpec {
        key: KeyKind::Rsa2048,
        ..LeafSpec::new("dual-rsa", &["dual.example.test"])
    });
    let gw = Gateway::start(&[(
        "all.yaml",
        docs(&[
            CLASS.to_string(),
            gateway(
                "dual",
                &[https_listener(
                    "dual",
                    443,
                    Some("dual.example.test"),
                    &["cert-ec", "cert-rsa"],
                )],
            ),
            tls_secret("cert-ec", &ec),
            tls_secret("cert-rsa", &rsa),
        ]),
    )])
    .await;
    let port = gw.port(443);
    let sni = ["-servername", "dual.example.test"];

    let out = s_client(port, &sni).await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("CN = dual-ec"),
        "default client got {subject:?}"
    );

    let out = s_client(
        port,
        &[&sni[..], &["-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"]].concat(),
    )
    .await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("CN = dual-rsa"),
        "TLS 1.3 RSA-only client got {subject:?}"
    );

    let out = s_client(
        port,
        &[
            &sni[..],
            &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
        ]
        .concat(),
    )
    .await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("CN = dual-rsa"),
        "TLS 1.2 RSA-cipher client got {subject:?}"
    );

    let out = s_client(
        port,
        &[
            &sni[..],
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        ]
        .concat(),
    )
    .await;
    let subject = served_subject(&out).unwrap_or_default();
    assert!(
        subject.contains("CN = dual-ec"),
        "TLS 1.2 ECDSA-cipher client got {subject:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p384_and_ed25519_certificates_are_served() {
    let ca = Ca::new("keys-ca");
    let p384 = ca.issue(&LeafSpec {
        key: KeyKind::EcP384,
        ..LeafSpec::new("p384", &["p384.example.test"])
    });
    let ed = ca.issue(&LeafSpec {
        key: KeyKind::Ed25519,
        ..LeafSpec::new("ed", &["ed.example.test"])
    });
    let gw = Gateway::start(&[(
        "all.yaml",
        docs(&[
            CLASS.to_string(),
            gateway(
                "keys",
                &[
                    https_listener("p384", 443, Some("p384.example.test"), &["cert-p384"]),
                    https_listener("ed", 443, Some("ed.example.test"), &["cert-ed"]),
                ],
            ),
            tls_secret("cert-p384", &p384),
            tls_secret("cert-ed", &ed),
            http_route("hello", "keys", &[], &[("/", static_ref("hello"))]),
            static_response("hello", "keys"),
        ]),
    )])
    .await;
    for (host, cn) in [("p384.example.test", "p384"), ("ed.example.test", "ed")] {
        let resp = tls_get(
            gw.addr(443),
            tls_config(&ca.cert_pem, &["h2"]),
            host,
            host,
            "/",
        )
        .await
        .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(cn_and_serial(&resp.leaf).0, cn);
        assert_eq!(&resp.body[..], b"keys");
    }
}

/// The `--state` directory of a running gateway, read from its command line.
fn state_dir_of(gw: &Gateway) -> std::path::PathBuf {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", gw.pid())).expect("read cmdline");
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let at = args
        .iter()
        .position(|a| *a == b"--state")
        .expect("--state on the command line");
    std::path::PathBuf::from(String::from_utf8_lossy(args[at + 1]).into_owned())
}

/// `portcullis ca export --state DIR`, which must succeed.
async fn ca_export(state: &Path) -> String {
    let out = tokio::process::Command::new(crate::e2e::gateway::BIN)
        .args(["ca", "export", "--state"])
        .arg(state)
        .output()
        .await
        .expect("run portcullis ca export");
    assert!(out.status.success(), "ca export: {out:?}");
    String::from_utf8(out.stdout).expect("PEM is UTF-8")
}

/// An HTTP/1.1 keep-alive connection idle past the parking period gives its
/// HTTP state back; its next request, over the same TLS session, must be
/// served as if nothing happened, and so must a request whose head arrives
/// in two parts across another idle period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_parked_and_serves_its_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new("park-ca");
    let gw = sni_gateway(&ca).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr(443))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("a.example.test").expect("DNS name");
    let mut tls = tokio_rustls::TlsConnector::from(tls_config(&ca.cert_pem, &["http/1.1"]))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let request = b"GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n";
    // Each response is `hi` with a Content-Length; read exactly one.
    async fn one_response<S: tokio::io::AsyncRead + Unpin>(tls: &mut S) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"hi")) {
            let n = tokio::time::timeout(e2e::WAIT, tls.read(&mut buf))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "the gateway closed the idle connection");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }
    tls.write_all(request).await.expect("first request");
    let first = one_response(&mut tls).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // Parking happens one to two seconds after the last exchange.
    let idle = portcullis::server::http_conn::PARK_AFTER * 3;
    tokio::time::sleep(idle).await;
    tls.write_all(request).await.expect("request after idling");
    let second = one_response(&mut tls).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        !second.to_ascii_lowercase().contains("connection: close"),
        "keep-alive survives parking: {second}"
    );

    let (start, rest) = request.split_at(20);
    tls.write_all(start).await.expect("half a request head");
    tokio::time::sleep(idle).await;
    tls.write_all(rest).await.expect("the rest of the head");
    let third = one_response(&mut tls).await;
    assert!(third.starts_with("HTTP/1.1 200"), "{third}");
    // Parked after the first exchange, and again with half a head read.
    let log = gw.log_text();
    assert!(
        log.contains("idle HTTP/1.1 connection parked buffered=0"),
        "{log}"
    );
    assert!(
        log.contains("idle HTTP/1.1 connection parked buffered=20"),
        "{log}"
    );
}
