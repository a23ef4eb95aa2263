//! HTTP proxying: forwarded headers, h2 to HTTP/1.1, large bodies, 421, weights
//! and backend errors.

use super::*;

/// A gateway in front of `backend`: HTTPS listeners `app.example.test` and
/// `other.example.test` on 443 (one certificate for both names) and an HTTP
/// listener on 80, every path routed to Service `echo`.
async fn proxy_gateway(ca: &Ca, backend: &Backend) -> Gateway {
    let leaf = ca.issue(&LeafSpec::new(
        "app",
        &["app.example.test", "other.example.test"],
    ));
    Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway(
                    "proxy",
                    &[
                        https_listener("app", 443, Some("app.example.test"), &["cert"]),
                        https_listener("other", 443, Some("other.example.test"), &["cert"]),
                        http_listener("http", 80, None),
                    ],
                ),
                tls_secret("cert", &leaf),
            ]),
        ),
        ("backend.yaml", service("echo", backend.port(), None)),
        (
            "route.yaml",
            http_route("echo", "proxy", &[], &[("/", backend_ref("echo", 1))]),
        ),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sees_forwarded_headers_and_original_host() {
    let ca = Ca::new("fwd-ca");
    let backend = Backend::start("echo").await;
    let gw = proxy_gateway(&ca, &backend).await;
    let port = gw.port(443);
    let cafile = gw.scratch("ca.pem", ca.cert_pem.as_bytes());
    let out = curl(&[
        "--cacert",
        cafile.to_str().expect("utf-8 path"),
        "--resolve",
        &resolve("app.example.test", port),
        &format!("https://app.example.test:{port}/some/path?q=1"),
    ])
    .await;
    assert!(out.ok(), "curl: {out:?}");
    let seen = echo(out.stdout.as_bytes());
    assert_eq!(seen["backend"], "echo");
    assert_eq!(seen["path"], "/some/path?q=1");
    assert!(
        seen["host"]
            .as_str()
            .unwrap_or("")
            .starts_with("app.example.test"),
        "Host not preserved: {seen}"
    );
    let h = &seen["headers"];
    assert!(
        h["x-forwarded-for"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "X-Forwarded-For: {h}"
    );
    assert_eq!(h["x-forwarded-proto"], "https", "X-Forwarded-Proto: {h}");
    assert!(
        h["x-forwarded-host"]
            .as_str()
            .unwrap_or("")
            .starts_with("app.example.test"),
        "X-Forwarded-Host: {h}"
    );

    let (status, _, body) = http_get(gw.addr(80), "plain.example.test", "/p")
        .await
        .expect("plain GET");
    assert_eq!(status, 200);
    let seen = echo(&body);
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["host"], "plain.example.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_reaches_http11_backend() {
    let ca = Ca::new("h2-ca");
    let backend = Backend::start("echo").await;
    let gw = proxy_gateway(&ca, &backend).await;
    let port = gw.port(443);
    let cafile = gw.scratch("ca.pem", ca.cert_pem.as_bytes());
    let out = curl(&[
        "--http2",
        "-w",
        "\n%{http_version}",
        "--cacert",
        cafile.to_str().expect("utf-8 path"),
        "--resolve",
        &resolve("app.example.test", port),
        &format!("https://app.example.test:{port}/h2"),
    ])
    .await;
    assert!(out.ok(), "curl --http2: {out:?}");
    let (body, version) = out
        .stdout
        .rsplit_once('\n')
        .expect("curl printed the version");
    assert_eq!(version, "2", "client side was not h2");
    let seen = echo(body.as_bytes());
    assert_eq!(seen["version"], "HTTP/1.1", "backend side: {seen}");
    assert_eq!(seen["path"], "/h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_and_download_arrive_intact() {
    const SIZE: usize = 20 * 1024 * 1024;
    let ca = Ca::new("big-ca");
    let backend = Backend::start("echo").await;
    let gw = proxy_gateway(&ca, &backend).await;
    let port = gw.port(443);
    let cafile = gw.scratch("ca.pem", ca.cert_pem.as_bytes());
    let cafile = cafile.to_str().expect("utf-8 path").to_string();
    let payload: Vec<u8> = (0..SIZE)
        .map(|i| ((i * 7 + i / 4096) % 256) as u8)
        .collect();
    let upload = gw.scratch("upload.bin", &payload);
    let download = gw.work.path().join("download.bin");

    for proto in ["--http1.1", "--http2"] {
        let out = curl(&[
            proto,
            "--cacert",
            &cafile,
            "--resolve",
            &resolve("app.example.test", port),
            "--data-binary",
            &format!("@{}", upload.display()),
            "-H",
            "content-type: application/octet-stream",
            &format!("https://app.example.test:{port}/upload"),
        ])
        .await;
        assert!(out.ok(), "upload {proto}: {out:?}");
        let seen = echo(out.stdout.as_bytes());
        assert_eq!(seen["body_len"], SIZE, "upload {proto} length");
        assert_eq!(
            seen["body_fnv"],
            fnv1a(&payload).to_string(),
            "upload {proto} checksum"
        );

        let out = curl(&[
            proto,
            "--cacert",
            &cafile,
            "--resolve",
            &resolve("app.example.test", port),
            "-o",
            download.to_str().expect("utf-8 path"),
            &format!("https://app.example.test:{port}/download/{SIZE}"),
        ])
        .await;
        assert!(out.ok(), "download {proto}: {out:?}");
        let got = std::fs::read(&download).expect("read download");
        assert_eq!(got.len(), SIZE, "download {proto} length");
        assert!(got == pattern(SIZE), "download {proto} content differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_of_another_listener_than_the_sni_gets_421() {
    let ca = Ca::new("421-ca");
    let backend = Backend::start("echo").await;
    let gw = proxy_gateway(&ca, &backend).await;
    let port = gw.port(443);
    let cafile = gw.scratch("ca.pem", ca.cert_pem.as_bytes());
    for proto in ["--http2", "--http1.1"] {
        let out = curl(&[
            proto,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            cafile.to_str().expect("utf-8 path"),
            "--resolve",
            &resolve("app.example.test", port),
            "-H",
            "Host: other.example.test",
            &format!("https://app.example.test:{port}/"),
        ])
        .await;
        assert!(out.ok(), "curl {proto}: {out:?}");
        assert_eq!(out.stdout, "421", "{proto}: Host of another listener");
    }
    // The same Host with a matching SNI is served.
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        cafile.to_str().expect("utf-8 path"),
        "--resolve",
        &resolve("other.example.test", port),
        &format!("https://other.example.test:{port}/"),
    ])
    .await;
    assert_eq!(out.stdout, "200", "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_three_to_one_and_weight_zero_gets_nothing() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let refs = [
        backend_ref("a", 3),
        backend_ref("b", 1),
        backend_ref("c", 0),
    ]
    .concat();
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway("w", &[http_listener("http", 80, None)]),
            ]),
        ),
        (
            "backends.yaml",
            docs(&[
                service("a", a.port(), None),
                service("b", b.port(), None),
                service("c", c.port(), None),
            ]),
        ),
        ("route.yaml", http_route("split", "w", &[], &[("/", refs)])),
    ])
    .await;
    let client = pooled_client();
    let (mut na, mut nb) = (0u32, 0u32);
    const N: u32 = 400;
    for i in 0..N {
        let (status, body) = pooled_get(&client, gw.addr(80), "w.example.test", &format!("/{i}"))
            .await
            .expect("GET");
        assert_eq!(status, 200, "request {i}");
        match echo(&body)["backend"].as_str() {
            Some("a") => na += 1,
            Some("b") => nb += 1,
            other => panic!("request {i} reached {other:?}"),
        }
    }
    // Binomial(400, 0.75): mean 300, sd 8.7; 5 sd either side.
    assert!((257..=343).contains(&na), "a got {na}, b got {nb} of {N}");
    assert_eq!(na + nb, N);
    assert_eq!(c.hits(), 0, "weight 0 backend was sent traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_endpoints_give_503_and_unknown_backend_500() {
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway("e", &[http_listener("http", 80, None)]),
            ]),
        ),
        ("backends.yaml", service_only("empty", None)),
        (
            "route.yaml",
            http_route(
                "errs",
                "e",
                &[],
                &[
                    ("/empty", backend_ref("empty", 1)),
                    ("/unknown", backend_ref("does-not-exist", 1)),
                ],
            ),
        ),
    ])
    .await;
    let (status, _, _) = http_get(gw.addr(80), "e.example.test", "/empty")
        .await
        .expect("GET");
    assert_eq!(status, 503, "Service without endpoints");
    let (status, _, _) = http_get(gw.addr(80), "e.example.test", "/unknown")
        .await
        .expect("GET");
    assert_eq!(status, 500, "backendRef to a missing Service");
    let st = gw.status().await;
    let route = find_object(&st, "HTTPRoute", "errs").expect("route in /status");
    assert!(
        has_condition(route, "ResolvedRefs", "False", Some("BackendNotFound")),
        "route status: {route}"
    );
}
