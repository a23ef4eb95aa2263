//! Faults between portcullis and the API server, on the real control plane:
//! the API server restarted (and away for seconds) under traffic, a watch
//! whose position etcd compacted away (410 Gone, then a relist), another
//! controller's entry in a route's shared status list, an object the CRD
//! admits but portcullis refuses, and a Secret whose certificate turns to
//! garbage.
//!
//! To cut portcullis off the API server while the test keeps talking to it,
//! portcullis reaches the API server through a TCP relay ([`Relay`]) that
//! forwards bytes to the real kube-apiserver and can drop every connection
//! on demand: a network fault, not an API server double.

use crate::fixtures::{
    accepted_by_us, backend, base, get, http_routes, is_true, parent, route, wait_route,
    wait_routed, CONTROLLER, GATEWAY_API, WAIT,
};
use crate::support::control_plane::{ControlPlane, ControlPlaneOptions};
use crate::support::kube_mode::{
    condition, eventually, get_object, install_crds, KubeGateway, KubeOptions,
};
use crate::support::ports;
use anyhow::{anyhow, ensure, Context, Result};
use futures_util::StreamExt;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP relay to the API server that portcullis's kubeconfig points at.
/// [`Relay::cut`] drops every connection and refuses new ones until
/// [`Relay::restore`]; the bytes relayed are never looked at.
struct Relay {
    port: u16,
    open: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (open, rx) = watch::channel(true);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*rx.borrow() {
                    continue; // dropped: the connection closes at once
                }
                let mut closed = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = closed.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Ok(Self { port, open, accept })
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }

    /// The control plane's admin kubeconfig, pointed at the relay.
    fn kubeconfig(&self, cp: &ControlPlane) -> Result<std::path::PathBuf> {
        let text = std::fs::read_to_string(cp.kubeconfig_path())?;
        ensure!(
            text.contains(cp.server_url()),
            "kubeconfig without its server"
        );
        let path = cp.dir().join("relay.kubeconfig");
        std::fs::write(
            &path,
            text.replace(cp.server_url(), &format!("https://127.0.0.1:{}", self.port)),
        )?;
        Ok(path)
    }
}

/// The API server's address from its URL.
fn apiserver_addr(cp: &ControlPlane) -> Result<SocketAddr> {
    cp.server_url()
        .strip_prefix("https://")
        .context("server URL scheme")?
        .parse()
        .context("server URL address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_flows_while_the_api_server_restarts_and_status_resumes_after() -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let port = ports::for_child()?;
    cp.apply_yaml(&format!(
        "{}---{}",
        base(port),
        route("shop", "shop.example", "shop")
    ))
    .await?;
    let _shop = backend(&cp, "apps", "shop").await?;
    let mut gw = KubeGateway::spawn(&KubeOptions::admin(&cp, "portcullis-system", "replica-a"))?;
    gw.wait_ready(WAIT).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_routed(addr, "shop.example", 200, "shop").await?;
    wait_route(&client, "apps", "shop", "shop accepted", |r| {
        accepted_by_us(r, "web")
    })
    .await?;

    // Four clients, each sending one request after the other until told
    // to stop; every answer must be a 200 from the backend.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let stop = stop.clone();
        clients.spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match get(addr, "shop.example", "/load").await {
                    Ok((200, pod)) if pod.starts_with("shop-") => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let began = Instant::now();
    cp.restart_apiserver().await?;
    eprintln!("API server restarted in {:?}", began.elapsed());
    // A longer outage: away for 5 s.
    cp.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cp.start_apiserver().await?;
    eprintln!("both outages over after {:?}", began.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    while let Some(done) = clients.join_next().await {
        let (o, f) = done?;
        ok += o;
        failed.extend(f);
    }
    eprintln!("{ok} requests answered through the outages");
    ensure!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    ensure!(ok >= 100, "only {ok} requests in the whole period");
    ensure!(gw.is_running(), "portcullis exited: {}", gw.log_tail(30));

    // The watches came back, and so does status writing: a new route is
    // routed and accepted, and the Gateway counts it.
    cp.apply_yaml(&route("blog", "blog.example", "shop"))
        .await?;
    wait_routed(addr, "blog.example", 200, "shop").await?;
    let blog = wait_route(&client, "apps", "blog", "blog accepted", |r| {
        accepted_by_us(r, "web")
    })
    .await?;
    let p = parent(&blog, "web").context("parent web")?;
    ensure!(is_true(&p["conditions"], "ResolvedRefs"), "{p}");
    let gateway = eventually("the Gateway counts both routes", WAIT, || async {
        let g = get_object(&client, GATEWAY_API, "Gateway", Some("apps"), "web").await?;
        Ok(g.filter(|g| g["status"]["listeners"][0]["attachedRoutes"] == 2))
    })
    .await?;
    let st = &gateway["status"];
    ensure!(
        is_true(&st["conditions"], "Accepted") && is_true(&st["conditions"], "Programmed"),
        "{st}"
    );
    let log = gw.log();
    ensure!(
        log.contains("watch failed"),
        "the outage was not seen: {}",
        gw.log_tail(40)
    );
    ensure!(log.contains("watch resumed"), "{}", gw.log_tail(40));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_compacted_away_relists_and_picks_up_what_changed_meanwhile() -> Result<()> {
    // No watch cache: watches are served from etcd, whose history the API
    // server compacts every second, so a watch resumed from before a cut
    // is answered 410 Gone.
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        apiserver_args: vec![
            "--watch-cache=false".into(),
            "--etcd-compaction-interval=1s".into(),
        ],
    })
    .await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let port = ports::for_child()?;
    cp.apply_yaml(&format!(
        "{}---{}",
        base(port),
        route("old", "old.example", "shop")
    ))
    .await?;
    let _shop = backend(&cp, "apps", "shop").await?;
    let relay = Relay::start(apiserver_addr(&cp)?).await?;
    let mut opts = KubeOptions::admin(&cp, "portcullis-system", "replica-a");
    opts.kubeconfig = relay.kubeconfig(&cp)?;
    let mut gw = KubeGateway::spawn(&opts)?;
    gw.wait_ready(WAIT).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_routed(addr, "old.example", 200, "shop").await?;
    wait_route(&client, "apps", "old", "old accepted", |r| {
        accepted_by_us(r, "web")
    })
    .await?;

    relay.cut();
    eventually("portcullis sees the cut", WAIT, || async {
        Ok(gw.log().contains("watch failed").then_some(()))
    })
    .await?;
    let routes = http_routes(&client)?;
    let cut_at = routes
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .context("list resourceVersion")?;
    // While portcullis cannot see it: a route added, a route deleted.
    cp.apply_yaml(&route("new", "new.example", "shop")).await?;
    routes.delete("old", &Default::default()).await?;
    // Until etcd's history before the cut is gone, as a watch from there
    // answers.
    eventually(
        "a watch from before the cut is answered 410 Gone",
        WAIT,
        || async {
            let stream = routes.watch(&WatchParams::default(), &cut_at).await;
            let first = match stream {
                Err(kube::Error::Api(e)) => return Ok((e.code == 410).then_some(())),
                Err(e) => return Err(e.into()),
                Ok(s) => tokio::time::timeout(Duration::from_secs(5), s.boxed().next()).await,
            };
            Ok(matches!(first, Ok(Some(Ok(WatchEvent::Error(e)))) if e.code == 410).then_some(()))
        },
    )
    .await?;
    // Cut off, it serves what it last knew.
    let (status, _) = get(addr, "old.example", "/").await?;
    ensure!(
        status == 200,
        "the last configuration is served while cut off: {status}"
    );
    let (status, _) = get(addr, "new.example", "/").await?;
    ensure!(status == 404, "new.example is not known yet: {status}");

    relay.restore();
    wait_routed(addr, "new.example", 200, "shop").await?;
    wait_routed(addr, "old.example", 404, "").await?;
    wait_route(&client, "apps", "new", "new accepted", |r| {
        accepted_by_us(r, "web")
    })
    .await?;
    let log = gw.log();
    let relisted = log
        .lines()
        .any(|l| l.contains("relisted") && l.contains("HTTPRoute"));
    ensure!(
        relisted,
        "no relist of HTTPRoutes in the log: {}",
        gw.log_tail(60)
    );
    ensure!(log.contains("relisting"), "{}", gw.log_tail(60));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_controllers_entry_in_route_status_is_kept_as_it_is() -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let port = ports::for_child()?;
    cp.apply_yaml(&format!(
        r#"{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: other}}
spec: {{controllerName: example.com/other-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: theirs, namespace: apps}}
spec:
  gatewayClassName: other
  listeners: [{{name: http, protocol: HTTP, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shared, namespace: apps}}
spec:
  parentRefs: [{{name: theirs}}, {{name: web}}]
  hostnames: [shared.example]
  rules: [{{backendRefs: [{{name: shop, port: 80}}]}}]
"#,
        base(port)
    ))
    .await?;
    let _shop = backend(&cp, "apps", "shop").await?;
    // The other controller writes its entry first, with server-side apply
    // under its own field manager.
    let theirs = |message: &str| {
        serde_json::json!({
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs"},
            "controllerName": "example.com/other-controller",
            "conditions": [{
                "type": "Accepted", "status": "True", "reason": "Accepted",
                "message": message, "observedGeneration": 1,
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            }],
        })
    };
    let routes = http_routes(&client)?;
    routes
        .patch_status(
            "shared",
            &kube::api::PatchParams::apply("example.com/other-controller"),
            &kube::api::Patch::Apply(serde_json::json!({
                "apiVersion": GATEWAY_API, "kind": "HTTPRoute",
                "metadata": {"name": "shared", "namespace": "apps"},
                "status": {"parents": [theirs("written by the other controller")]},
            })),
        )
        .await?;

    let mut gw = KubeGateway::spawn(&KubeOptions::admin(&cp, "portcullis-system", "replica-a"))?;
    gw.wait_ready(WAIT).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_routed(addr, "shared.example", 200, "shop").await?;
    let route = wait_route(&client, "apps", "shared", "our entry written", |r| {
        accepted_by_us(r, "web")
    })
    .await?;
    let parents = route["status"]["parents"].as_array().context("parents")?;
    ensure!(parents.len() == 2, "{parents:?}");
    ensure!(
        parents[0] == theirs("written by the other controller"),
        "their entry kept as it is and where it is: {parents:?}"
    );

    // The other controller changes its entry the way a controller shares
    // an atomic list: read, change its own entry, replace with the
    // resourceVersion read.
    let mut live = routes.get_status("shared").await?;
    let list = live
        .data
        .pointer_mut("/status/parents")
        .and_then(Value::as_array_mut)
        .context("live parents")?;
    for p in list.iter_mut() {
        if p["controllerName"] == "example.com/other-controller" {
            *p = theirs("changed by the other controller");
        }
    }
    routes
        .replace_status("shared", &PostParams::default(), &live)
        .await?;
    // A spec change makes portcullis write its entry again (a new
    // observedGeneration); theirs stays as they last wrote it.
    cp.apply_yaml(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shared, namespace: apps}
spec:
  parentRefs: [{name: theirs}, {name: web}]
  hostnames: [shared.example, shared2.example]
  rules: [{backendRefs: [{name: shop, port: 80}]}]
"#,
    )
    .await?;
    wait_routed(addr, "shared2.example", 200, "shop").await?;
    let route = wait_route(
        &client,
        "apps",
        "shared",
        "our entry at generation 2",
        |r| {
            parent(r, "web").is_some_and(|p| {
                condition(&p["conditions"], "Accepted")
                    .is_some_and(|c| c["observedGeneration"] == 2 && c["status"] == "True")
            })
        },
    )
    .await?;
    let parents = route["status"]["parents"].as_array().context("parents")?;
    ensure!(parents.len() == 2, "{parents:?}");
    ensure!(
        parents[0] == theirs("changed by the other controller"),
        "their entry as they last wrote it: {parents:?}"
    );
    ensure!(parents[1]["controllerName"] == CONTROLLER, "{parents:?}");
    ensure!(!gw.log().contains("cannot write"), "{}", gw.log_tail(30));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_the_api_admits_but_portcullis_refuses_says_so_while_the_rest_serves() -> Result<()>
{
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let port = ports::for_child()?;
    cp.apply_yaml(&format!(
        r#"{}---{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bad-regex, namespace: apps}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [bad.example]
  rules:
  - matches: [{{path: {{type: RegularExpression, value: "/(["}}}}]
    backendRefs: [{{name: shop, port: 80}}]
"#,
        base(port),
        route("good", "good.example", "shop")
    ))
    .await?;
    let _shop = backend(&cp, "apps", "shop").await?;
    let mut gw = KubeGateway::spawn(&KubeOptions::admin(&cp, "portcullis-system", "replica-a"))?;
    gw.wait_ready(WAIT).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_routed(addr, "good.example", 200, "shop").await?;
    let bad = wait_route(
        &client,
        "apps",
        "bad-regex",
        "the bad route refused in status",
        |r| {
            parent(r, "web").is_some_and(|p| {
                condition(&p["conditions"], "Accepted").is_some_and(|c| c["status"] == "False")
            })
        },
    )
    .await?;
    let p = parent(&bad, "web").context("parent")?;
    let accepted = condition(&p["conditions"], "Accepted").context("Accepted")?;
    ensure!(p["controllerName"] == CONTROLLER, "{p}");
    ensure!(
        accepted["reason"] == "UnsupportedValue"
            && accepted["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid regular expression \"/([\"")),
        "the reason and message say what is wrong: {accepted}"
    );
    let (status, _) = get(addr, "bad.example", "/").await?;
    ensure!(status == 404, "the refused route serves nothing: {status}");
    // The log names it too, once.
    let logged = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("refused by compile")
                    && l.contains("HTTPRoute apps/bad-regex")
                    && l.contains("UnsupportedValue")
            })
            .count()
    };
    eventually("the log names the refused route", WAIT, || async {
        Ok((logged(&gw.log()) > 0).then_some(()))
    })
    .await?;
    // Changes to other objects reload without logging it again.
    cp.apply_yaml(&route("other", "other.example", "shop"))
        .await?;
    wait_routed(addr, "other.example", 200, "shop").await?;
    ensure!(logged(&gw.log()) == 1, "{}", gw.log_tail(30));
    wait_route(&client, "apps", "good", "good accepted", |r| {
        accepted_by_us(r, "web")
    })
    .await?;
    Ok(())
}

/// GET `/` over TLS for `sni`, trusting only `trusted_pem`: the status.
async fn get_tls(addr: SocketAddr, sni: &str, trusted_pem: &str) -> Result<u16> {
    use crate::support::client::{send, HttpRequest, Protocol, TlsOptions};
    let resp = send(&HttpRequest {
        addr,
        tls: Some(TlsOptions {
            sni: sni.into(),
            trusted_pem: vec![trusted_pem.to_string()],
            ..Default::default()
        }),
        protocol: Protocol::Http1,
        method: "GET".into(),
        path: "/".into(),
        host: sni.into(),
        headers: Vec::new(),
        timeout: Duration::from_secs(5),
    })
    .await
    .map_err(|e| anyhow!("{e}"))?;
    Ok(resp.status)
}

/// Secret `apps/secure-cert` holding `cert` and `key` as they are.
fn tls_secret(cert: &str, key: &str) -> Result<String> {
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "secure-cert", "namespace": "apps"},
        "stringData": {"tls.crt": cert, "tls.key": key},
    });
    Ok(serde_json::to_string(&secret)?)
}

/// The `https` listener's ResolvedRefs condition of Gateway `apps/web`.
async fn https_resolved_refs(client: &kube::Client) -> Result<Option<Value>> {
    let gateway = get_object(client, GATEWAY_API, "Gateway", Some("apps"), "web").await?;
    Ok(gateway.and_then(|g| {
        let listener = g["status"]["listeners"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == "https")?
            .clone();
        condition(&listener["conditions"], "ResolvedRefs").cloned()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_turned_to_garbage_keeps_the_last_good_one_served() -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let (http_port, https_port) = (ports::for_child()?, ports::for_child()?);
    let (cert, key) = crate::acme::self_signed(&["secure.example"])?;
    cp.apply_yaml(&base(http_port)).await?;
    cp.apply_yaml(&format!(
        r#"{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: apps}}
spec:
  gatewayClassName: portcullis
  listeners:
  - {{name: http, protocol: HTTP, port: {http_port}}}
  - name: https
    protocol: HTTPS
    port: {https_port}
    hostname: secure.example
    tls: {{certificateRefs: [{{name: secure-cert}}]}}
---
{}
"#,
        tls_secret(&cert, &key)?,
        route("secure", "secure.example", "shop")
    ))
    .await?;
    let _shop = backend(&cp, "apps", "shop").await?;
    let mut gw = KubeGateway::spawn(&KubeOptions::admin(&cp, "portcullis-system", "replica-a"))?;
    gw.wait_ready(WAIT).await?;
    let tls = SocketAddr::from(([127, 0, 0, 1], https_port));
    eventually("the certificate is served", WAIT, || async {
        Ok((get_tls(tls, "secure.example", &cert).await? == 200).then_some(()))
    })
    .await?;
    eventually("the listener resolves its certificate", WAIT, || async {
        Ok(https_resolved_refs(&client)
            .await?
            .filter(|c| c["status"] == "True"))
    })
    .await?;

    // The Secret's certificate becomes garbage: said in status, and the
    // certificate that was valid keeps being served.
    cp.apply_yaml(&tls_secret("this is not a certificate", &key)?)
        .await?;
    let refused = eventually(
        "the listener says the reference is invalid",
        WAIT,
        || async {
            Ok(https_resolved_refs(&client)
                .await?
                .filter(|c| c["status"] == "False" && c["reason"] == "InvalidCertificateRef"))
        },
    )
    .await?;
    eprintln!("ResolvedRefs after the garbage: {refused}");
    ensure!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("apps/secure-cert")),
        "the message names the Secret: {refused}"
    );
    for _ in 0..20 {
        let status = get_tls(tls, "secure.example", &cert)
            .await
            .context("the last good certificate is still served")?;
        ensure!(status == 200, "{status}");
    }

    // A valid certificate again: served, and the listener resolves it.
    let (cert2, key2) = crate::acme::self_signed(&["secure.example"])?;
    cp.apply_yaml(&tls_secret(&cert2, &key2)?).await?;
    eventually("the new certificate is served", WAIT, || async {
        Ok(get_tls(tls, "secure.example", &cert2)
            .await
            .ok()
            .filter(|s| *s == 200))
    })
    .await?;
    eventually(
        "the listener resolves the new certificate",
        WAIT,
        || async {
            Ok(https_resolved_refs(&client)
                .await?
                .filter(|c| c["status"] == "True"))
        },
    )
    .await?;
    ensure!(
        get_tls(tls, "secure.example", &cert).await.is_err(),
        "the old certificate is no longer served"
    );
    Ok(())
}
