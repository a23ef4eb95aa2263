//! Bad input and shutdown: broken and half-written files, editor files, bad
//! certificates, invalid regex, listener conflicts, hostile bytes, SIGTERM.

use super::*;

/// An HTTP gateway `bad` on port 80 with `/` answering `body` from route.yaml.
fn static_route_files(body: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway("bad", &[http_listener("http", 80, None)]),
            ]),
        ),
        ("route.yaml", static_route(body)),
    ]
}

fn static_route(body: &str) -> String {
    docs(&[
        http_route("main", "bad", &[], &[("/", static_ref("main"))]),
        static_response("main", body),
    ])
}

async fn body_of(gw: &Gateway, path: &str) -> String {
    let (status, _, body) = http_get(gw.addr(80), "bad.example.test", path)
        .await
        .expect("GET");
    assert_eq!(status, 200, "GET {path}");
    String::from_utf8_lossy(&body).to_string()
}

/// The same object in two files: the first by path keeps serving, the
/// second is named in /status and the log, and the rest of its file applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_defined_twice_keeps_the_first_definition() {
    let gw = Gateway::start(&static_route_files("v1")).await;
    assert_eq!(body_of(&gw, "/").await, "v1");
    // `z-copy.yaml` sorts after `route.yaml`: its StaticResponse `main` is a
    // second definition; its route for /other is new.
    let copy = docs(&[
        static_response("main", "from the copy"),
        http_route("other", "bad", &[], &[("/other", static_ref("main"))]),
    ]);
    gw.write("z-copy.yaml", &copy);
    gw.wait_status("the duplicate listed in problems", |s| {
        let problems = s["problems"].to_string();
        problems.contains("z-copy.yaml") && problems.contains("already defined in route.yaml")
    })
    .await;
    eventually("the copy's new route to be served", || async {
        let r = http_get(gw.addr(80), "bad.example.test", "/other").await;
        r.ok().filter(|(status, _, _)| *status == 200).map(|_| ())
    })
    .await;
    assert_eq!(body_of(&gw, "/").await, "v1");
    assert_eq!(body_of(&gw, "/other").await, "v1");
    assert!(
        gw.log_text().contains("object defined twice"),
        "{}",
        gw.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_and_half_written_files_keep_the_last_good_config() {
    let gw = Gateway::start(&static_route_files("v1")).await;
    assert_eq!(body_of(&gw, "/").await, "v1");

    gw.write_raw(
        "broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n",
    );
    gw.wait_status("broken.yaml listed in problems", |s| {
        s["problems"].to_string().contains("broken.yaml")
    })
    .await;
    assert_eq!(body_of(&gw, "/").await, "v1");

    // route.yaml as a half-written rewrite leaves it: cut inside the body
    // string (renamed into place so the cut is exactly what is read).
    let full = static_route("v2 is here");
    let cut = full.find("v2 is").expect("body in text") + 2;
    gw.write("route.yaml", &full[..cut]);
    gw.wait_status("route.yaml listed in problems", |s| {
        s["problems"].to_string().contains("route.yaml")
    })
    .await;
    assert_eq!(
        body_of(&gw, "/").await,
        "v1",
        "a half-written file changed what is served"
    );
    assert!(gw.admin_get("/healthz").await.map(|r| r.0) == Ok(200));

    // Finishing the write applies it.
    gw.write_raw("route.yaml", &full);
    eventually("the completed file to apply", || async {
        (body_of(&gw, "/").await == "v2 is here").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_temp_files_are_ignored() {
    let gw = Gateway::start(&static_route_files("real")).await;
    let other = static_route("from an editor file");
    gw.write_raw(".route.yaml.swp", &other);
    gw.write_raw("route.yaml~", &other);
    gw.write_raw("#route.yaml#", &other);
    // A real change after them proves the watcher has looked at the directory.
    gw.write(
        "sentinel.yaml",
        &docs(&[
            http_route(
                "sentinel",
                "bad",
                &[],
                &[("/sentinel", static_ref("sentinel"))],
            ),
            static_response("sentinel", "seen"),
        ]),
    );
    eventually("the sentinel route to apply", || async {
        let (status, _, body) = http_get(gw.addr(80), "bad.example.test", "/sentinel")
            .await
            .ok()?;
        (status == 200 && &body[..] == b"seen").then_some(())
    })
    .await;
    assert_eq!(body_of(&gw, "/").await, "real");
    let problems = gw.status().await["problems"].to_string();
    assert!(
        !problems.contains("swp") && !problems.contains('~'),
        "problems: {problems}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_reported_and_other_listeners_keep_serving() {
    let ca = Ca::new("badcert-ca");
    let good = ca.issue(&LeafSpec::new("good", &["good.example.test"]));
    let other = ca.issue(&LeafSpec::new("other", &["mismatch.example.test"]));
    let mismatch = ca.issue(&LeafSpec::new("mismatch", &["mismatch.example.test"]));
    let expired = ca.issue(&LeafSpec {
        expired: true,
        ..LeafSpec::new("expired", &["expired.example.test"])
    });
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway(
                    "certs",
                    &[
                        https_listener("good", 443, Some("good.example.test"), &["good"]),
                        https_listener(
                            "mismatch",
                            443,
                            Some("mismatch.example.test"),
                            &["mismatch"],
                        ),
                        https_listener("notpem", 443, Some("notpem.example.test"), &["notpem"]),
                        https_listener("expired", 443, Some("expired.example.test"), &["expired"]),
                    ],
                ),
                http_route("hello", "certs", &[], &[("/", static_ref("hello"))]),
                static_response("hello", "ok"),
            ]),
        ),
        (
            "secrets.yaml",
            docs(&[
                tls_secret("good", &good),
                tls_secret_raw("mismatch", &mismatch.cert_pem, &other.key_pem),
                tls_secret_raw("notpem", "this is not a certificate", "nor is this a key"),
                tls_secret("expired", &expired),
            ]),
        ),
    ])
    .await;

    let st = gw.status().await;
    for name in ["mismatch", "notpem", "expired"] {
        let l = listener(&st, "certs", name).unwrap_or_else(|| panic!("listener {name} in {st}"));
        assert!(
            has_condition(l, "ResolvedRefs", "False", Some("InvalidCertificateRef")),
            "listener {name}: {l}"
        );
    }
    let l = listener(&st, "certs", "good").expect("listener good");
    assert!(
        has_condition(l, "ResolvedRefs", "True", None),
        "listener good: {l}"
    );

    let (code, text) = check(gw.config()).await;
    assert_eq!(code, 1, "check must fail: {text}");
    assert!(
        text.contains("InvalidCertificateRef"),
        "check output: {text}"
    );

    let resp = tls_get(
        gw.addr(443),
        tls_config(&ca.cert_pem, &["h2"]),
        "good.example.test",
        "good.example.test",
        "/",
    )
    .await
    .expect("the good listener serves");
    assert_eq!(&resp.body[..], b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_regex_route_is_not_accepted_and_others_serve() {
    let bad = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: badregex
  namespace: default
spec:
  parentRefs:
    - name: bad
  rules:
    - matches:
        - path:
            type: RegularExpression
            value: \"/([a-z\"
      backendRefs:
        - group: portcullis.dev
          kind: StaticResponse
          name: main
"
    .to_string();
    let mut files = static_route_files("fine");
    files.push(("regex.yaml", bad));
    let gw = Gateway::start(&files).await;
    let st = gw.status().await;
    let route = find_object(&st, "HTTPRoute", "badregex").expect("route in /status");
    assert!(
        has_condition(route, "Accepted", "False", None),
        "invalid regex route: {route}"
    );
    let main = find_object(&st, "HTTPRoute", "main").expect("route main");
    assert!(
        has_condition(main, "Accepted", "True", None),
        "main: {main}"
    );
    assert_eq!(body_of(&gw, "/x").await, "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_listeners_on_one_port_are_conflicted() {
    let ca = Ca::new("conflict-ca");
    let leaf = ca.issue(&LeafSpec::new("c", &["tls.example.test"]));
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway(
                    "bad",
                    &[
                        http_listener("plain", 443, Some("plain.example.test")),
                        https_listener("tls", 443, Some("tls.example.test"), &["cert"]),
                        http_listener("dup1", 8080, Some("dup.example.test")),
                        http_listener("dup2", 8080, Some("dup.example.test")),
                        http_listener("http", 80, None),
                    ],
                ),
                tls_secret("cert", &leaf),
            ]),
        ),
        ("route.yaml", static_route("still here")),
    ])
    .await;
    let st = gw.status().await;
    let conflicted = |name: &str| {
        listener(&st, "bad", name).is_some_and(|l| has_condition(l, "Conflicted", "True", None))
    };
    assert!(
        conflicted("plain") || conflicted("tls"),
        "HTTP and HTTPS on one port: {st}"
    );
    assert!(
        conflicted("dup1") || conflicted("dup2"),
        "two listeners with one hostname and port: {st}"
    );
    assert!(!conflicted("http"), "an unrelated listener: {st}");
    assert_eq!(body_of(&gw, "/").await, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_get_an_error_or_close_and_the_gateway_stays_up() {
    let ca = Ca::new("hostile-ca");
    let leaf = ca.issue(&LeafSpec::new("h", &["h.example.test"]));
    let mut files = static_route_files("alive");
    files[0].1 = docs(&[
        CLASS.to_string(),
        gateway(
            "bad",
            &[
                http_listener("http", 80, None),
                https_listener("https", 443, Some("h.example.test"), &["cert"]),
            ],
        ),
        tls_secret("cert", &leaf),
    ]);
    let mut gw = Gateway::start(&files).await;

    async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may close before reading everything: ignore write errors.
        let _ = s.write_all(bytes).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "the gateway held a hostile connection open for 10 s"
        );
        out
    }

    let reply = exchange(gw.addr(80), b"\x00\xffGARBAGE nonsense\r\n\r\n").await;
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 4"),
        "garbage got {:?}",
        String::from_utf8_lossy(&reply)
    );

    let mut big = b"GET / HTTP/1.1\r\nHost: bad.example.test\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let reply = exchange(gw.addr(80), &big).await;
    assert!(
        reply.is_empty()
            || reply.starts_with(b"HTTP/1.1 431")
            || reply.starts_with(b"HTTP/1.1 400"),
        "oversized header got {:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(200)])
    );

    let reply = exchange(gw.addr(443), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert!(
        !reply.starts_with(b"HTTP/1.1 200"),
        "plain HTTP on the TLS port was served"
    );

    assert!(gw.is_running(), "the gateway died");
    assert_eq!(body_of(&gw, "/").await, "alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_then_exits_zero() {
    let slow = Backend::start("slow").await;
    let mut gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway("drain", &[http_listener("http", 80, None)]),
            ]),
        ),
        ("backend.yaml", service("slow", slow.port(), None)),
        (
            "route.yaml",
            http_route("slow", "drain", &[], &[("/", backend_ref("slow", 1))]),
        ),
    ])
    .await;
    let addr = gw.addr(80);
    let inflight =
        tokio::spawn(async move { http_get(addr, "drain.example.test", "/slow/1500").await });
    let slow_ref = &slow;
    eventually("the slow request to reach the backend", || async move {
        (slow_ref.hits() >= 1).then_some(())
    })
    .await;
    let code = gw.terminate().await;
    let (status, _, body) = inflight
        .await
        .expect("request task")
        .expect("the in-flight request completed");
    assert_eq!(status, 200, "in-flight request during shutdown");
    assert_eq!(echo(&body)["path"], "/slow/1500");
    assert_eq!(code, Some(0), "exit status after SIGTERM");
}
