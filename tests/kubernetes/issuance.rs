//! Certificates issued by a real Pebble into the API server's Secrets, in
//! Kubernetes mode: every listener form the CRDs admit gets its
//! certificate, renewals replace a Secret's data in place, a dead CA never
//! takes a valid certificate away, and two replicas hand an order over when
//! the leader is killed in the middle of it.
//!
//! Pebble resolves every name through the test's BIND to 127.0.0.1 and
//! validates HTTP-01 on 127.0.0.1:80+offset, where either a replica listens
//! or (the failover test) a gate the test holds and then opens towards
//! another replica.

use super::acme::pebble::Pebble;
use super::acme::rig::Rig;
use super::acme::{leaf_of, served_leaf, served_leaf_at};
use super::support::control_plane::ControlPlane;
use super::support::kube_mode::{
    condition, eventually, get_object, install_crds, KubeGateway, KubeOptions,
};
use anyhow::{ensure, Context, Result};
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

const WAIT: Duration = Duration::from_secs(60);
const CONTROLLER_NS: &str = "portcullis-system";

/// The Issuer `pebble` in `namespace` and the ClusterIssuer `pebble-cluster`
/// (its account Secret in the controller namespace), both on `pebble`.
fn issuers(pebble: &Pebble, namespace: &str) -> String {
    let bundle = base64::engine::general_purpose::STANDARD.encode(&pebble.https_ca_pem);
    let server = pebble.directory_url();
    format!(
        r#"
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {{name: pebble, namespace: {namespace}}}
spec:
  acme:
    server: {server}
    privateKeySecretRef: {{name: pebble-account}}
    caBundle: {bundle}
    solvers: [{{http01: {{}}}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterIssuer
metadata: {{name: pebble-cluster}}
spec:
  acme:
    server: {server}
    privateKeySecretRef: {{name: pebble-cluster-account}}
    caBundle: {bundle}
    solvers: [{{http01: {{}}}}]
"#
    )
}

/// Namespaces, and the GatewayClass (its default ClusterIssuer given by
/// `class_issuer` when set).
fn class(class_issuer: Option<&str>) -> String {
    let annotations = class_issuer
        .map(|i| format!(", annotations: {{portcullis.dev/cluster-issuer: {i}}}"))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {CONTROLLER_NS}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: apps}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis{annotations}}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
"#
    )
}

/// Secret `namespace/name`, if it exists.
async fn secret(client: &kube::Client, namespace: &str, name: &str) -> Result<Option<Secret>> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .with_context(|| format!("get Secret {namespace}/{name}"))
}

/// The value of `key` in a Secret's data, as text.
fn data(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

/// An annotation of a Secret.
fn annotation<'a>(secret: &'a Secret, key: &str) -> &'a str {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Waits for Secret `namespace/name` holding a certificate.
async fn issued(client: &kube::Client, namespace: &str, name: &str) -> Result<Secret> {
    eventually(
        &format!("Secret {namespace}/{name} issued"),
        WAIT,
        || async {
            Ok(secret(client, namespace, name)
                .await?
                .filter(|s| data(s, "tls.crt").contains("BEGIN CERTIFICATE")))
        },
    )
    .await
}

/// Names of the Secrets of `role` (`portcullis.dev/role`) in `namespace`.
async fn secrets_of_role(
    client: &kube::Client,
    namespace: &str,
    role: &str,
) -> Result<Vec<String>> {
    let list = Api::<Secret>::namespaced(client.clone(), namespace)
        .list_metadata(&ListParams::default().labels(&format!("portcullis.dev/role={role}")))
        .await
        .with_context(|| format!("list {role} Secrets"))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect())
}

/// `curl --cacert root https://host:port/` with `host` resolved to `ip`:
/// fails unless the served chain verifies for the name.
fn curl_verifies(root: &Path, host: &str, ip: Ipv4Addr, port: u16) -> Result<()> {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", "--cacert"])
        .arg(root)
        .arg("--resolve")
        .arg(format!("{host}:{port}:{ip}"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .context("run curl")?;
    ensure!(
        out.status.success(),
        "curl https://{host}:{port}/ via {ip}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The Pebble root, written to a file curl can read.
async fn pebble_root(rig: &Rig) -> Result<std::path::PathBuf> {
    let path = rig.state.path().join("pebble-root.pem");
    std::fs::write(&path, rig.pebble.issuing_root().await?)?;
    Ok(path)
}

/// How many certificates a PEM bundle holds.
fn certificates_in(pem: &str) -> usize {
    pem.matches("BEGIN CERTIFICATE").count()
}

/// The issuer's decisions in a replica's log, for failure messages.
fn issuing_lines(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("issuing certificate") || l.contains("certificate stored"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The listener `name` of a Gateway's spec.
fn spec_listener<'a>(gateway: &'a Value, name: &str) -> Option<&'a Value> {
    gateway["spec"]["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_form_the_crds_admit_gets_a_pebble_certificate_in_a_secret() -> Result<()> {
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let rig = Rig::start_with(0, false, None).await?;
    let offset = rig.offset;
    cp.apply_yaml(&class(Some("pebble-cluster"))).await?;
    cp.apply_yaml(&issuers(&rig.pebble, "apps")).await?;
    // The forms, each on its own listener:
    // - a: no tls block, the Gateway's issuer annotation;
    // - b: certificateRefs naming a Secret that does not exist yet;
    // - c: tls.options naming a ClusterIssuer (over the annotation);
    // - d: no tls block, no annotation: the GatewayClass's default;
    // - e: cert-manager's annotation and a Secret to create;
    // every Gateway on port 443, told apart by hostname (the offset was
    // chosen for 80 and 443 to be free);
    // - f: a ListenerSet's listener, no tls block, its parent's annotation.
    cp.apply_yaml(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: annotated, namespace: apps, annotations: {portcullis.dev/issuer: pebble}}
spec:
  gatewayClassName: portcullis
  allowedListeners: {namespaces: {from: Same}}
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - {name: a, protocol: HTTPS, port: 443, hostname: a.acme.test}
  - {name: b, protocol: HTTPS, port: 443, hostname: b.acme.test, tls: {certificateRefs: [{name: b-cert}]}}
  - {name: c, protocol: HTTPS, port: 443, hostname: c.acme.test, tls: {options: {portcullis.dev/cluster-issuer: pebble-cluster}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: plain, namespace: apps}
spec:
  gatewayClassName: portcullis
  listeners: [{name: d, protocol: HTTPS, port: 443, hostname: d.acme.test}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: cm, namespace: apps, annotations: {cert-manager.io/issuer: pebble}}
spec:
  gatewayClassName: portcullis
  listeners: [{name: e, protocol: HTTPS, port: 443, hostname: e.acme.test, tls: {certificateRefs: [{name: e-cert}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: apps}
spec:
  parentRef: {name: annotated}
  listeners: [{name: f, protocol: HTTPS, port: 443, hostname: f.acme.test}]
"#,
    )
    .await?;
    let mut opts = KubeOptions::admin(&cp, CONTROLLER_NS, "replica-a");
    opts.port_offset = offset;
    let mut gw = KubeGateway::spawn(&opts)?;
    gw.wait_ready(WAIT).await?;

    // (Secret, host, port, issuer kind, issuer name)
    let expected = [
        ("annotated-a-tls", "a.acme.test", 443, "Issuer", "pebble"),
        ("b-cert", "b.acme.test", 443, "Issuer", "pebble"),
        (
            "annotated-c-tls",
            "c.acme.test",
            443,
            "ClusterIssuer",
            "pebble-cluster",
        ),
        (
            "plain-d-tls",
            "d.acme.test",
            443,
            "ClusterIssuer",
            "pebble-cluster",
        ),
        ("e-cert", "e.acme.test", 443, "Issuer", "pebble"),
        ("extra-f-tls", "f.acme.test", 443, "Issuer", "pebble"),
    ];
    let root = pebble_root(&rig).await?;
    for (name, host, port, kind, issuer) in expected {
        let s = issued(&client, "apps", name)
            .await
            .with_context(|| format!("{}\n{}", gw.log_tail(40), rig.pebble.log()))?;
        ensure!(
            s.type_.as_deref() == Some("kubernetes.io/tls"),
            "{name}: {:?}",
            s.type_
        );
        let chain = data(&s, "tls.crt");
        ensure!(
            certificates_in(&chain) >= 2,
            "{name}: the chain holds the leaf and Pebble's intermediate"
        );
        ensure!(data(&s, "tls.key").contains("PRIVATE KEY"), "{name}: key");
        ensure!(
            annotation(&s, "portcullis.dev/issuer-kind") == kind
                && annotation(&s, "portcullis.dev/issuer-name") == issuer,
            "{name}: {:?}",
            s.metadata.annotations
        );
        ensure!(
            annotation(&s, "portcullis.dev/dns-names").contains(host),
            "{name}: {:?}",
            s.metadata.annotations
        );
        ensure!(
            !annotation(&s, "portcullis.dev/renewal-time").is_empty()
                && !annotation(&s, "portcullis.dev/not-after").is_empty(),
            "{name}: {:?}",
            s.metadata.annotations
        );
        ensure!(
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("portcullis.dev/managed"))
                .map(String::as_str)
                == Some("true"),
            "{name}: labels {:?}",
            s.metadata.labels
        );
        // The Secret came back through the watch and is what the listener
        // serves; curl verifies it against Pebble's root.
        let want = leaf_of(&chain)?;
        let served = eventually(&format!("{host} serves {name}"), WAIT, || async {
            let leaf = served_leaf(host, port + offset).await?;
            ensure!(
                leaf.serial == want.serial,
                "served {}, want {}",
                leaf.serial,
                want.serial
            );
            Ok(Some(leaf))
        })
        .await
        .with_context(|| issuing_lines(&gw.log()))?;
        ensure!(served == want);
        curl_verifies(&root, host, Ipv4Addr::LOCALHOST, port + offset)?;
    }

    // Where the spec named no Secret, the filled certificateRefs are written
    // back into the Gateway under portcullis's own field manager; a named
    // one is left as the user wrote it.
    let annotated = eventually("the filled refs written back", WAIT, || async {
        let g = get_object(
            &client,
            "gateway.networking.k8s.io/v1",
            "Gateway",
            Some("apps"),
            "annotated",
        )
        .await?;
        Ok(g.filter(|g| {
            spec_listener(g, "a").is_some_and(|l| l["tls"]["certificateRefs"].is_array())
                && spec_listener(g, "c").is_some_and(|l| l["tls"]["certificateRefs"].is_array())
        }))
    })
    .await?;
    for (listener, secret) in [
        ("a", "annotated-a-tls"),
        ("b", "b-cert"),
        ("c", "annotated-c-tls"),
    ] {
        let l = spec_listener(&annotated, listener).context("listener")?;
        ensure!(
            l["tls"]["certificateRefs"][0]["name"] == secret,
            "listener {listener}: {l}"
        );
    }
    ensure!(
        spec_listener(&annotated, "c").is_some_and(|l| l["tls"]["options"]
            ["portcullis.dev/cluster-issuer"]
            == "pebble-cluster"),
        "the options stay"
    );
    let managers: Vec<&str> = annotated["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().filter_map(|f| f["manager"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        managers.contains(&"portcullis.dev/certificate-refs"),
        "{managers:?}"
    );
    eventually(
        "the ListenerSet's filled ref written back",
        WAIT,
        || async {
            let set = get_object(
                &client,
                "gateway.networking.k8s.io/v1",
                "ListenerSet",
                Some("apps"),
                "extra",
            )
            .await?;
            Ok(set.filter(|s| {
                spec_listener(s, "f")
                    .is_some_and(|l| l["tls"]["certificateRefs"][0]["name"] == "extra-f-tls")
            }))
        },
    )
    .await?;
    // The listeners say their certificates are ready.
    let status = &annotated["status"];
    for l in status["listeners"].as_array().context("listeners")? {
        if l["name"] == "http" {
            continue;
        }
        ensure!(
            condition(&l["conditions"], "ResolvedRefs").is_some_and(|c| c["status"] == "True"),
            "{l}"
        );
    }

    // One account per issuer, in the Secrets the issuers name; no order
    // and no challenge left behind.
    for (ns, name) in [
        ("apps", "pebble-account"),
        (CONTROLLER_NS, "pebble-cluster-account"),
    ] {
        let s = secret(&client, ns, name)
            .await?
            .with_context(|| format!("account Secret {ns}/{name}"))?;
        ensure!(data(&s, "tls.key").contains("PRIVATE KEY"), "{ns}/{name}");
    }
    eventually("orders and challenges cleaned up", WAIT, || async {
        let orders = secrets_of_role(&client, CONTROLLER_NS, "acme-order").await?;
        let challenges = secrets_of_role(&client, CONTROLLER_NS, "acme-challenge").await?;
        Ok((orders.is_empty() && challenges.is_empty()).then_some(()))
    })
    .await?;
    let issuer = get_object(
        &client,
        "portcullis.dev/v1alpha1",
        "Issuer",
        Some("apps"),
        "pebble",
    )
    .await?
    .context("issuer")?;
    ensure!(
        condition(&issuer["status"]["conditions"], "Ready").is_some_and(|c| c["status"] == "True"),
        "{issuer}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_replaces_the_secret_data_in_place_and_a_dead_ca_takes_nothing_away() -> Result<()>
{
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    // Certificates of 150 s renewed when 80% of it remains: 30 s after
    // issuance (never sooner than a fifth of the lifetime).
    let mut rig = Rig::start_with(0, false, Some(Duration::from_secs(150))).await?;
    let offset = rig.offset;
    cp.apply_yaml(&class(None)).await?;
    cp.apply_yaml(&issuers(&rig.pebble, "apps")).await?;
    cp.apply_yaml(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: web
  namespace: apps
  annotations: {portcullis.dev/issuer: pebble, portcullis.dev/renew-before-percentage: "80"}
spec:
  gatewayClassName: portcullis
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - {name: https, protocol: HTTPS, port: 443, hostname: web.acme.test, tls: {certificateRefs: [{name: web-cert}]}}
"#,
    )
    .await?;
    let mut opts = KubeOptions::admin(&cp, CONTROLLER_NS, "replica-a");
    opts.port_offset = offset;
    let mut gw = KubeGateway::spawn(&opts)?;
    gw.wait_ready(WAIT).await?;
    let port = 443 + offset;

    let first = issued(&client, "apps", "web-cert").await?;
    let first_leaf = leaf_of(&data(&first, "tls.crt"))?;
    let uid = first.metadata.uid.clone().context("uid")?;

    // The renewal rewrites the same Secret: same uid, a new certificate,
    // served without a restart, verified by curl. (Renewals come every 30 s;
    // whichever is current must be the one served.)
    let renewed = eventually("a renewal served", Duration::from_secs(120), || async {
        let Some(s) = secret(&client, "apps", "web-cert").await? else {
            return Ok(None);
        };
        let current = leaf_of(&data(&s, "tls.crt"))?;
        let served = served_leaf("web.acme.test", port).await.ok();
        Ok((current.serial != first_leaf.serial && served.as_ref() == Some(&current)).then_some(s))
    })
    .await
    .with_context(|| gw.log_tail(40))?;
    ensure!(
        renewed.metadata.uid.as_deref() == Some(uid.as_str()),
        "the Secret was replaced, not updated"
    );
    let root = pebble_root(&rig).await?;
    curl_verifies(&root, "web.acme.test", Ipv4Addr::LOCALHOST, port)?;

    // The CA dies. The next renewal fails and says so; the Secret keeps the
    // valid certificate and the listener keeps serving it.
    rig.pebble.stop().await?;
    let held = secret(&client, "apps", "web-cert")
        .await?
        .context("the Secret is gone")?;
    let held_leaf = leaf_of(&data(&held, "tls.crt"))?;
    eventually(
        "the failed renewal reported",
        Duration::from_secs(90),
        || async {
            let st = gw.status().await?;
            let failed = st["certificates"].as_array().and_then(|certs| {
                certs
                    .iter()
                    .find(|c| c["secret"] == "apps/web-cert" && c["lastError"].is_string())
                    .cloned()
            });
            Ok(failed)
        },
    )
    .await
    .with_context(|| gw.log_tail(40))?;
    let kept = secret(&client, "apps", "web-cert")
        .await?
        .context("the Secret is gone")?;
    ensure!(
        kept.metadata.uid.as_deref() == Some(uid.as_str()),
        "the Secret was recreated"
    );
    ensure!(
        leaf_of(&data(&kept, "tls.crt"))? == held_leaf
            && data(&kept, "tls.key").contains("PRIVATE KEY"),
        "the valid certificate was replaced"
    );
    ensure!(served_leaf("web.acme.test", port).await? == held_leaf);
    curl_verifies(&root, "web.acme.test", Ipv4Addr::LOCALHOST, port)?;
    Ok(())
}

/// A TCP gate on `listen`: the first connection waits at the gate (the test
/// is told through `arrived`) until the gate opens, then every connection
/// is forwarded to `target`.
struct Gate {
    arrived: Arc<Notify>,
    open: watch::Sender<bool>,
}

impl Gate {
    async fn start(listen: SocketAddr, target: SocketAddr) -> Result<Gate> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind the gate on {listen}"))?;
        let arrived = Arc::new(Notify::new());
        let (open, opened) = watch::channel(false);
        let told = arrived.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                told.notify_one();
                let mut opened = opened.clone();
                tokio::spawn(async move {
                    if opened.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Gate { arrived, open })
    }
}

/// The value of the sample `series` (exact labels) in metrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_order_is_replaced_and_the_other_replica_finishes_the_same_order(
) -> Result<()> {
    const LEADER: &str = "portcullis_kubernetes_leader{lease=\"portcullis-leader\"}";
    let cp = ControlPlane::start().await?;
    install_crds(&cp).await?;
    let client = cp.client();
    let rig = Rig::start_with(0, false, None).await?;
    let offset = rig.offset;
    cp.apply_yaml(&class(None)).await?;
    cp.apply_yaml(&issuers(&rig.pebble, "apps")).await?;

    // Two replicas on their own addresses; the CA reaches neither directly,
    // only the gate on 127.0.0.1, which leads to replica b.
    let replica = |identity: &str, ip: Ipv4Addr| {
        let mut o = KubeOptions::admin(&cp, CONTROLLER_NS, identity);
        o.listen_address = ip;
        o.port_offset = offset;
        o.extra_args = vec!["--lease-duration".into(), "4".into()];
        o
    };
    let (ip_a, ip_b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let mut a = KubeGateway::spawn(&replica("replica-a", ip_a))?;
    a.wait_ready(WAIT).await?;
    eventually("replica-a leads", WAIT, || async {
        Ok((sample(&a.metrics().await?, LEADER) == Some(1.0)).then_some(()))
    })
    .await?;
    let mut b = KubeGateway::spawn(&replica("replica-b", ip_b))?;
    b.wait_ready(WAIT).await?;
    let gate = Gate::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 80 + offset)),
        SocketAddr::from((IpAddr::V4(ip_b), 80 + offset)),
    )
    .await?;

    cp.apply_yaml(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: apps, annotations: {portcullis.dev/issuer: pebble}}
spec:
  gatewayClassName: portcullis
  listeners:
  - {name: http, protocol: HTTP, port: 80}
  - {name: https, protocol: HTTPS, port: 443, hostname: failover.acme.test}
"#,
    )
    .await?;

    // The CA is validating: the leader registered the account, recorded the
    // order and published the challenge. Kill it there.
    tokio::time::timeout(WAIT, gate.arrived.notified())
        .await
        .with_context(|| format!("the CA never validated\n{}", a.log_tail(40)))?;
    let orders = secrets_of_role(&client, CONTROLLER_NS, "acme-order").await?;
    ensure!(orders.len() == 1, "recorded orders: {orders:?}");
    let challenges = secrets_of_role(&client, CONTROLLER_NS, "acme-challenge").await?;
    ensure!(
        challenges.len() == 1,
        "published challenges: {challenges:?}"
    );
    ensure!(
        secret(&client, "apps", "pebble-account").await?.is_some(),
        "the account key was not stored before the order"
    );
    a.kill();
    // The replica the CA reaches is not the leader, and answers anyway.
    ensure!(sample(&b.metrics().await?, LEADER) == Some(0.0));
    let _ = gate.open.send(true);

    // Within the Lease's duration replica b leads and finishes that order.
    let issued_secret = issued(&client, "apps", "web-https-tls")
        .await
        .with_context(|| format!("{}\n{}", b.log_tail(60), rig.pebble.log()))?;
    ensure!(sample(&b.metrics().await?, LEADER) == Some(1.0));
    let pebble = rig.pebble.log();
    ensure!(
        pebble.matches("Added order").count() == 1,
        "a second order:\n{pebble}"
    );
    ensure!(
        pebble.matches("There are now 1 accounts").count() == 1
            && !pebble.contains("There are now 2 accounts"),
        "a second account:\n{pebble}"
    );
    eventually("no order or challenge left behind", WAIT, || async {
        let orders = secrets_of_role(&client, CONTROLLER_NS, "acme-order").await?;
        let challenges = secrets_of_role(&client, CONTROLLER_NS, "acme-challenge").await?;
        Ok((orders.is_empty() && challenges.is_empty()).then_some(()))
    })
    .await
    .with_context(|| b.log_tail(40))?;
    let want = leaf_of(&data(&issued_secret, "tls.crt"))?;
    let root = pebble_root(&rig).await?;
    eventually("replica b serves it", WAIT, || async {
        let leaf = served_leaf_at(IpAddr::V4(ip_b), "failover.acme.test", 443 + offset).await;
        Ok(leaf.ok().filter(|l| l.serial == want.serial).map(drop))
    })
    .await?;
    curl_verifies(&root, "failover.acme.test", ip_b, 443 + offset)?;
    Ok(())
}
