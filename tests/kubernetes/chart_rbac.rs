//! The Helm chart against the real API server: everything `helm template`
//! renders (its CRDs too) is admitted and stored, and a real `portcullis
//! serve --kubernetes` running as the chart's ServiceAccount with only the
//! chart's RBAC does its whole job — watches, status, the Lease, a Secret
//! issued by the local CA, a per-Gateway Service owned by its Gateway (with
//! OwnerReferencesPermissionEnforcement on) — while what the chart leaves out is refused, by
//! RBAC or by the chart's ValidatingAdmissionPolicy, with the API's exact
//! answer.

use crate::fixtures::{accepted_by_us, backend, is_true, wait_route, wait_routed, WAIT};
use crate::support::control_plane::{ControlPlane, ControlPlaneOptions};
use crate::support::kube_mode::{condition, eventually, get_object, KubeGateway, KubeOptions};
use crate::support::ports;
use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::discovery::{pinned_kind, Scope};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The release the chart is rendered as.
const RELEASE: &str = "edge";
const NAMESPACE: &str = "gateways";
/// `<release>-<chart>`: the ServiceAccount, roles and bindings.
const FULLNAME: &str = "edge-portcullis";
const LEASE: &str = "edge-portcullis-leader";

/// `helm`, from where scripts/test.sh unpacks it, else PATH.
fn helm() -> PathBuf {
    let unpacked = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/helm/helm");
    if unpacked.exists() {
        unpacked
    } else {
        PathBuf::from("helm")
    }
}

/// `helm template` of the chart, CRDs included, as JSON documents.
fn render() -> Result<Vec<Value>> {
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/portcullis");
    let out = Command::new(helm())
        .args(["template", RELEASE])
        .arg(&chart)
        .args(["--namespace", NAMESPACE, "--include-crds"])
        .output()
        .with_context(|| format!("run {} (scripts/test.sh installs it)", helm().display()))?;
    ensure!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).context("helm output is not UTF-8")?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value =
            serde_yaml::Value::deserialize(doc).context("a rendered document does not parse")?;
        let value: Value = serde_json::to_value(value)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Result<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{pointer} missing in {v}"))
}

/// Applies the rendered chart as `helm install` would: the namespace, the
/// CRDs, then every other object (namespaced ones into the release
/// namespace). Returns (apiVersion, kind, namespace, name) of each object.
async fn install(cp: &ControlPlane) -> Result<Vec<(String, String, Option<String>, String)>> {
    let docs = render()?;
    cp.apply_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"
    ))
    .await?;
    let (crds, rest): (Vec<Value>, Vec<Value>) = docs
        .into_iter()
        .partition(|d| d["kind"] == "CustomResourceDefinition");
    ensure!(!crds.is_empty(), "the chart renders its CRDs");
    let to_yaml = |docs: &[Value]| -> Result<String> {
        let mut out = String::new();
        for d in docs {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(d)?);
        }
        Ok(out)
    };
    cp.apply_yaml(&to_yaml(&crds)?)
        .await
        .context("the chart's CRDs")?;
    let client = cp.client();
    let mut objects = Vec::new();
    let mut placed = Vec::new();
    for mut doc in crds.into_iter().chain(rest) {
        let api_version = str_at(&doc, "/apiVersion")?.to_string();
        let kind = str_at(&doc, "/kind")?.to_string();
        let name = str_at(&doc, "/metadata/name")?.to_string();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &kind);
        let (_, caps) = pinned_kind(&client, &gvk)
            .await
            .with_context(|| format!("the API serves {api_version} {kind}"))?;
        let namespace = if caps.scope == Scope::Namespaced {
            doc["metadata"]["namespace"] = json!(NAMESPACE);
            Some(NAMESPACE.to_string())
        } else {
            None
        };
        if kind != "CustomResourceDefinition" {
            placed.push(doc);
        }
        objects.push((api_version, kind, namespace, name));
    }
    cp.apply_yaml(&to_yaml(&placed)?)
        .await
        .context("the chart's objects")?;
    Ok(objects)
}

/// The HTTP status of a refused API call.
fn refusal(result: Result<impl std::fmt::Debug, kube::Error>) -> Result<kube::core::Status> {
    match result {
        Err(kube::Error::Api(e)) => Ok(*e),
        Err(e) => Err(e.into()),
        Ok(v) => bail!("allowed, expected a refusal: {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_the_chart_renders_is_admitted_by_the_api_server() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let objects = install(&cp).await?;
    let client = cp.client();
    let kinds: Vec<&str> = objects.iter().map(|o| o.1.as_str()).collect();
    for expected in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "GatewayClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        ensure!(
            kinds.contains(&expected),
            "the chart renders a {expected}: {kinds:?}"
        );
    }
    for (api_version, kind, namespace, name) in &objects {
        let stored = get_object(&client, api_version, kind, namespace.as_deref(), name).await?;
        ensure!(
            stored.is_some(),
            "{kind} {api_version} {namespace:?}/{name} is not stored"
        );
    }
    eprintln!("{} rendered objects admitted and stored", objects.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portcullis_does_its_job_with_the_charts_rbac_and_nothing_more() -> Result<()> {
    // The admission plugin that lets only who may update a Gateway's
    // finalizers set blockOwnerDeletion on the per-Gateway Service.
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        apiserver_args: vec![
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
        ],
    })
    .await?;
    install(&cp).await?;
    let admin = cp.client();
    let (http_port, https_port) = (ports::for_child()?, ports::for_child()?);
    cp.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: apps}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: apps}}
spec:
  gatewayClassName: portcullis
  listeners:
  - {{name: http, protocol: HTTP, port: {http_port}}}
  - {{name: https, protocol: HTTPS, port: {https_port}, hostname: secure.example}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: apps}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [shop.example]
  rules: [{{backendRefs: [{{name: shop, port: 80}}]}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: unmanaged, namespace: apps}}
stringData: {{note: written by someone else}}
"#
    ))
    .await?;
    let _shop = backend(&cp, "apps", "shop").await?;
    let sa = cp.service_account_client(NAMESPACE, FULLNAME).await?;
    // Bindings reach the authorizer a moment after they are written.
    eventually(
        "the ServiceAccount's bindings are in force",
        WAIT,
        || async {
            let gateways = get_object(
                &sa.client,
                "gateway.networking.k8s.io/v1",
                "Gateway",
                Some("apps"),
                "web",
            )
            .await;
            Ok(gateways.is_ok().then_some(()))
        },
    )
    .await?;

    let mut opts = KubeOptions::admin(&cp, NAMESPACE, "edge-portcullis-pod-a");
    opts.kubeconfig = sa.kubeconfig_path.clone();
    opts.log_file = cp.dir().join("portcullis-chart-rbac.log");
    // The chart's Deployment arguments (templates/kubernetes/deployment.yaml).
    opts.extra_args = [
        "--lease-name",
        LEASE,
        "--lease-duration",
        "15",
        "--gateway-service",
        FULLNAME,
        "--controller-name",
        "portcullis.dev/gateway-controller",
        "--per-gateway-service",
        "ClusterIP",
        "--per-gateway-service-selector",
        "app.kubernetes.io/name=portcullis,app.kubernetes.io/instance=edge",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut gw = KubeGateway::spawn(&opts)?;
    gw.wait_ready(WAIT).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    wait_routed(addr, "shop.example", 200, "shop").await?;
    // Status written.
    wait_route(&admin, "apps", "shop", "route status written", |r| {
        accepted_by_us(r, "web")
    })
    .await?;
    let class = eventually("GatewayClass status written", WAIT, || async {
        let c = get_object(
            &admin,
            "gateway.networking.k8s.io/v1",
            "GatewayClass",
            None,
            "portcullis",
        )
        .await?;
        Ok(c.filter(|c| is_true(&c["status"]["conditions"], "Accepted")))
    })
    .await?;
    ensure!(class["spec"]["controllerName"] == "portcullis.dev/gateway-controller");
    // The local CA issued the HTTPS listener's certificate into a managed
    // Secret, wrote the reference back into the Gateway, and the listener
    // resolved it.
    let gateway = eventually(
        "the HTTPS listener resolved",
        Duration::from_secs(60),
        || async {
            let g = get_object(
                &admin,
                "gateway.networking.k8s.io/v1",
                "Gateway",
                Some("apps"),
                "web",
            )
            .await?;
            Ok(g.filter(|g| {
                g["status"]["listeners"].as_array().is_some_and(|ls| {
                    ls.iter()
                        .any(|l| l["name"] == "https" && is_true(&l["conditions"], "ResolvedRefs"))
                })
            }))
        },
    )
    .await?;
    ensure!(
        is_true(&gateway["status"]["conditions"], "Accepted"),
        "{}",
        gateway["status"]
    );
    let refs = &gateway["spec"]["listeners"][1]["tls"]["certificateRefs"];
    let secret_name = refs[0]["name"]
        .as_str()
        .with_context(|| format!("certificateRefs written back: {}", gateway["spec"]))?;
    let issued = Api::<Secret>::namespaced(admin.clone(), "apps")
        .get(secret_name)
        .await?;
    ensure!(
        issued
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("portcullis.dev/managed"))
            .map(String::as_str)
            == Some("true"),
        "the issued Secret is labelled managed: {:?}",
        issued.metadata.labels
    );
    // The Gateway's Service, owned by it.
    let service = eventually("the Gateway's Service", WAIT, || async {
        get_object(&admin, "v1", "Service", Some("apps"), "portcullis-web").await
    })
    .await?;
    ensure!(
        service["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] == true
            && service["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] == "web",
        "{service}"
    );
    // The Lease is held by this replica.
    let lease = Api::<Lease>::namespaced(admin.clone(), NAMESPACE)
        .get(LEASE)
        .await?;
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref());
    ensure!(
        holder == Some("edge-portcullis-pod-a"),
        "Lease holder: {holder:?}"
    );
    let log = gw.log();
    // The API's refusals as kube-rs logs them ("... is forbidden: User
    // ...", "watcher error 403", "code=403"); a bare "403" could be a
    // timestamp's digits.
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("forbidden")
                || l.contains("error 403")
                || l.contains("with 403")
                || l.contains("code=403")
                || l.contains("code: 403")
        })
        .collect();
    ensure!(
        refused.is_empty(),
        "portcullis was refused something: {refused:#?}"
    );

    // What the chart does not grant.
    let secrets = Api::<Secret>::namespaced(sa.client.clone(), "apps");
    let plain = |name: &str| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    // The policy reaches the API server's admission through an informer:
    // wait with dry runs, which are admitted or refused the same way.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually("the managed-Secrets policy is in force", WAIT, || async {
        Ok(secrets
            .create(&dry, &plain("probe"))
            .await
            .is_err()
            .then_some(()))
    })
    .await?;
    let e = refusal(secrets.create(&PostParams::default(), &plain("mine")).await)?;
    ensure!(
        e.code == 403
            && e.message.contains("ValidatingAdmissionPolicy")
            && e.message.contains(
                "portcullis may only write Secrets labelled portcullis.dev/managed=true; \
                 CREATE of Secret apps/mine without that label is refused"
            ),
        "an unlabelled Secret refused by the policy: {e:?}"
    );
    let mut unmanaged = secrets.get("unmanaged").await?;
    unmanaged
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("portcullis.dev/managed".into(), "true".into());
    let e = refusal(
        secrets
            .replace("unmanaged", &PostParams::default(), &unmanaged)
            .await,
    )?;
    ensure!(
        e.code == 403
            && e.message.contains(
                "portcullis may only change or delete Secrets it manages; \
                 Secret apps/unmanaged is not labelled portcullis.dev/managed=true"
            ),
        "taking over someone else's Secret refused by the policy: {e:?}"
    );
    // RBAC: no delete of Secrets, even managed ones.
    let e = refusal(secrets.delete(secret_name, &DeleteParams::default()).await)?;
    ensure!(
        e.code == 403
            && e.message.contains(&format!(
                "User \"system:serviceaccount:{NAMESPACE}:{FULLNAME}\" cannot delete resource \"secrets\""
            )),
        "{e:?}"
    );
    // The Lease: only this release's.
    let leases = Api::<Lease>::namespaced(sa.client.clone(), NAMESPACE);
    let e = refusal(leases.get("someone-elses-lease").await)?;
    ensure!(
        e.code == 403 && e.message.contains("cannot get resource \"leases\""),
        "{e:?}"
    );
    // ConfigMaps are written in the release namespace only.
    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("elsewhere".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = refusal(
        Api::<ConfigMap>::namespaced(sa.client.clone(), "apps")
            .create(&PostParams::default(), &config_map)
            .await,
    )?;
    ensure!(
        e.code == 403 && e.message.contains("cannot create resource \"configmaps\""),
        "{e:?}"
    );
    // Reading Secrets is granted cluster-wide (certificateRefs may name any
    // namespace's, ReferenceGrants decide); listing them works.
    Api::<Secret>::all(sa.client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .context("the chart grants list of Secrets")?;
    // Nothing else of the API: e.g. Pods.
    let e = refusal(
        Api::<k8s_openapi::api::core::v1::Pod>::all(sa.client.clone())
            .list(&ListParams::default())
            .await,
    )?;
    ensure!(e.code == 403, "{e:?}");
    let still = condition(&gateway["status"]["conditions"], "Accepted");
    ensure!(still.is_some(), "{}", gateway["status"]);
    drop(gw);
    Ok(())
}
