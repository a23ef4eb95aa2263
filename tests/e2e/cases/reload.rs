//! Hot reload: certificate swaps, route rewrites under load, established
//! connections across a reload.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swap_is_served_without_restart() {
    let ca = Ca::new("swap-ca");
    let v1 = ca.issue(&LeafSpec {
        serial: 1,
        ..LeafSpec::new("swap", &["swap.example.test"])
    });
    let v2 = ca.issue(&LeafSpec {
        serial: 2,
        ..LeafSpec::new("swap", &["swap.example.test"])
    });
    let mut gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway(
                    "swap",
                    &[https_listener(
                        "swap",
                        443,
                        Some("swap.example.test"),
                        &["cert"],
                    )],
                ),
                http_route("hello", "swap", &[], &[("/", static_ref("hello"))]),
                static_response("hello", "hi"),
            ]),
        ),
        ("secret.yaml", tls_secret("cert", &v1)),
    ])
    .await;
    let config = tls_config(&ca.cert_pem, &["http/1.1"]);
    let addr = gw.addr(443);
    let serial = |config: Arc<rustls::ClientConfig>| async move {
        let r = tls_get(addr, config, "swap.example.test", "swap.example.test", "/").await;
        r.ok().map(|r| cn_and_serial(&r.leaf).1)
    };
    assert_eq!(serial(config.clone()).await, Some(1));

    let swapped = std::time::Instant::now();
    gw.write("secret.yaml", &tls_secret("cert", &v2));
    eventually("the new certificate to be served", || {
        let config = config.clone();
        async move { (serial(config).await == Some(2)).then_some(()) }
    })
    .await;
    let took = swapped.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "certificate swap took {took:?}"
    );
    assert!(gw.is_running(), "the gateway restarted or died");
}

/// A gateway with an HTTP listener on 80 and route file `route.yaml` sending
/// `/` to Service `a` or `b`.
async fn reload_gateway(a: &Backend, b: &Backend) -> Gateway {
    Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway("reload", &[http_listener("http", 80, None)]),
            ]),
        ),
        (
            "backends.yaml",
            docs(&[service("a", a.port(), None), service("b", b.port(), None)]),
        ),
        ("route.yaml", route_to("a", 0)),
    ])
    .await
}

/// The reload route: `/` to `target`, plus `generation` extra rules so each
/// rewrite changes the route table's shape too.
fn route_to(target: &str, generation: usize) -> String {
    let mut rules = vec![("/", backend_ref(target, 1))];
    let extra: Vec<String> = (0..generation % 4).map(|i| format!("/extra{i}")).collect();
    for p in &extra {
        rules.push((p.as_str(), backend_ref(target, 1)));
    }
    http_route("main", "reload", &[], &rules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rewrites_under_load_fail_no_request() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = reload_gateway(&a, &b).await;
    let addr = gw.addr(80);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (stop, ok) = (stop.clone(), ok.clone());
        loops.push(tokio::spawn(async move {
            let client = pooled_client();
            let mut failures = Vec::new();
            // Bounded: at most 20 000 requests per loop.
            for i in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match pooled_get(&client, addr, "load.example.test", &format!("/r{i}")).await {
                    Ok((200, _)) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => failures.push(format!("{other:?}")),
                }
            }
            failures
        }));
    }
    for generation in 1..=20 {
        let target = if generation % 2 == 1 { "b" } else { "a" };
        gw.write("route.yaml", &route_to(target, generation));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The last rewrite sent everything to a; wait until it took effect.
    let before_b = b.hits();
    eventually("the last route rewrite to apply", || async {
        let (_, _, body) = http_get(addr, "load.example.test", "/check").await.ok()?;
        (echo(&body)["backend"] == "a").then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for l in loops {
        failures.extend(l.await.expect("load loop panicked"));
    }
    let total = ok.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        total + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        total > 200,
        "only {total} requests were sent during the rewrites"
    );
    assert!(before_b > 0, "route rewrites to b never took effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_connection_survives_reload() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = reload_gateway(&a, &b).await;
    let addr = gw.addr(80);
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    let conn = tokio::spawn(conn);
    let mut get = |path: &str| {
        let req = hyper::Request::get(path)
            .header("host", "keep.example.test")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("valid request");
        send.send_request(req)
    };
    let resp = tokio::time::timeout(e2e::WAIT, get("/before"))
        .await
        .expect("in time")
        .expect("first request");
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(echo(&body)["backend"], "a");

    gw.write("route.yaml", &route_to("b", 1));
    eventually("the reload to apply on new connections", || async {
        let (_, _, body) = http_get(addr, "keep.example.test", "/probe").await.ok()?;
        (echo(&body)["backend"] == "b").then_some(())
    })
    .await;

    let resp = tokio::time::timeout(e2e::WAIT, get("/after"))
        .await
        .expect("in time")
        .expect("the connection opened before the reload still works");
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(
        echo(&body)["backend"],
        "b",
        "requests read the current routes"
    );
    assert!(
        !conn.is_finished(),
        "the connection was closed by the reload"
    );
}

/// A Kubernetes ConfigMap volume (what the Helm chart mounts): every file is
/// a symlink into `..data`, itself a symlink to a hidden timestamped
/// directory, and kubelet updates by swapping `..data` in one rename. The
/// manifests are read once (not again through the hidden directories) and
/// the swap is applied like any edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_volume_is_read_once_and_its_swap_reloads() {
    let dir = tempfile::tempdir().expect("config dir");
    let version = |n: u32| {
        let hidden = dir.path().join(format!("..2026_11_27_v{n}"));
        std::fs::create_dir(&hidden).expect("version dir");
        let manifests = docs(&[
            CLASS.to_string(),
            gateway("cm", &[http_listener("web", 80, None)]),
            http_route("hello", "cm", &[], &[("/", static_ref("hello"))]),
            static_response("hello", &format!("version {n}")),
        ]);
        std::fs::write(hidden.join("gateway.yaml"), manifests).expect("write");
        hidden
    };
    let v1 = version(1);
    std::os::unix::fs::symlink(v1.file_name().expect("name"), dir.path().join("..data"))
        .expect("..data");
    std::os::unix::fs::symlink("..data/gateway.yaml", dir.path().join("gateway.yaml"))
        .expect("file link");
    let gw = Gateway::start_dir(dir.path()).await;
    let addr = gw.addr(80);
    let body = || async move {
        http_get(addr, "cm.example.test", "/")
            .await
            .ok()
            .map(|(_, _, body)| String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(body().await.as_deref(), Some("version 1"));
    // Read once: the objects are not loaded a second time through the
    // hidden directories (each would be listed twice).
    let status = gw.status().await;
    assert_eq!(count_objects(&status, "Gateway", "cm"), 1, "{status}");
    assert_eq!(
        count_objects(&status, "GatewayClass", "portcullis"),
        1,
        "{status}"
    );

    // kubelet's update: a new hidden directory, `..data_tmp` renamed over
    // `..data`, the old directory removed.
    let v2 = version(2);
    let tmp = dir.path().join("..data_tmp");
    std::os::unix::fs::symlink(v2.file_name().expect("name"), &tmp).expect("..data_tmp");
    std::fs::rename(&tmp, dir.path().join("..data")).expect("swap");
    std::fs::remove_dir_all(&v1).expect("remove old version");
    eventually("the swapped ConfigMap to be served", || async {
        (body().await.as_deref() == Some("version 2")).then_some(())
    })
    .await;
}

/// How many entries of the status's `objects` are `kind` named `name`.
fn count_objects(status: &serde_json::Value, kind: &str, name: &str) -> usize {
    status["objects"].as_array().map_or(0, |objects| {
        objects
            .iter()
            .filter(|o| o["kind"] == kind && o["name"] == name)
            .count()
    })
}
