//! The real control plane itself, tested: what every Kubernetes-mode test
//! relies on. The Gateway API CRDs (experimental channel) are installed and
//! served, with their validation; RBAC is enforced for users authenticated by
//! client certificate, with the groups their certificates carry; the API
//! server can be stopped and restarted under a client; the listener TLS forms
//! portcullis must handle are admitted or refused by the real CRDs as the
//! project found; and no control plane process outlives a killed test process.

use crate::support::control_plane::{
    apply_yaml_with, ApplyError, ApplyOptions, ControlPlane, UserClient,
};
use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::Client;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Reads `kind` `namespace/name` (cluster-scoped when `namespace` is None).
async fn get(
    client: &Client,
    gvk: (&str, &str, &str),
    namespace: Option<&str>,
    name: &str,
) -> Result<DynamicObject> {
    let (resource, _) = pinned_kind(client, &GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2)).await?;
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    Ok(api.get(name).await?)
}

/// The HTTP status of a failed API call, if the API server answered.
fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Repeats `call` while the API server refuses it with 403, for up to 10 s:
/// RBAC bindings reach the authorizer through an informer, a moment after the
/// write.
async fn wait_allowed<F, Fut>(what: &str, mut call: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call().await {
            Ok(()) => return Ok(()),
            Err(e) if api_code(&e) == Some(403) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(e).context(format!("{what} is still refused")),
        }
    }
}

#[tokio::test]
async fn gateway_api_crds_of_the_experimental_channel_are_served() -> Result<()> {
    let cp = ControlPlane::start().await?;
    eprintln!("control plane started in {:?}", cp.started_in());
    let client = cp.client();

    let applied = cp
        .apply_yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portcullis}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: portcullis
  listeners:
  - {name: http, protocol: HTTP, port: 80, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app}
spec:
  parentRefs: [{name: web}]
  hostnames: [app.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: api, port: 8080, weight: 80}]
"#,
        )
        .await?;
    ensure!(applied.len() == 3, "three objects applied: {applied:?}");

    let class = get(
        &client,
        ("gateway.networking.k8s.io", "v1", "GatewayClass"),
        None,
        "portcullis",
    )
    .await?;
    ensure!(
        class.data["spec"]["controllerName"] == "portcullis.dev/gateway-controller",
        "GatewayClass read back: {:?}",
        class.data
    );
    let gateway = get(
        &client,
        ("gateway.networking.k8s.io", "v1", "Gateway"),
        Some("default"),
        "web",
    )
    .await?;
    let listener = &gateway.data["spec"]["listeners"][0];
    ensure!(
        listener["port"] == 80 && listener["hostname"] == "*.example.com",
        "Gateway read back: {:?}",
        gateway.data
    );
    // The HTTPRoute had no namespace: it went to `default`, and the CRD's
    // defaults were applied by the API server.
    let route = get(
        &client,
        ("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        Some("default"),
        "app",
    )
    .await?;
    let backend = &route.data["spec"]["rules"][0]["backendRefs"][0];
    ensure!(
        backend["name"] == "api" && backend["weight"] == 80,
        "HTTPRoute read back: {:?}",
        route.data
    );
    ensure!(
        route.data["spec"]["parentRefs"][0]["group"] == "gateway.networking.k8s.io"
            && route.data["spec"]["parentRefs"][0]["kind"] == "Gateway",
        "parentRefs defaulted by the CRD schema: {:?}",
        route.data["spec"]["parentRefs"]
    );

    // The experimental channel: its channel annotation, and kinds and
    // versions only it serves.
    let crd = get(
        &client,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        None,
        "gateways.gateway.networking.k8s.io",
    )
    .await?;
    ensure!(
        crd.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("gateway.networking.k8s.io/channel"))
            .map(String::as_str)
            == Some("experimental"),
        "the Gateway CRD is the experimental channel's: {:?}",
        crd.metadata.annotations
    );
    for (group, version, kind) in [
        ("gateway.networking.k8s.io", "v1alpha2", "TCPRoute"),
        ("gateway.networking.k8s.io", "v1alpha2", "UDPRoute"),
        ("gateway.networking.k8s.io", "v1", "ListenerSet"),
        ("gateway.networking.k8s.io", "v1", "BackendTLSPolicy"),
        ("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant"),
        (
            "gateway.networking.x-k8s.io",
            "v1alpha1",
            "XBackendTrafficPolicy",
        ),
    ] {
        pinned_kind(&client, &GroupVersionKind::gvk(group, version, kind))
            .await
            .with_context(|| format!("{kind} {group}/{version} is served"))?;
    }

    // A CRD and an object of its kind in one apply: the object waits for its
    // kind to be served.
    cp.apply_yaml(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.portcullis.dev}
spec:
  group: test.portcullis.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
---
apiVersion: test.portcullis.dev/v1
kind: Widget
metadata: {name: w}
spec: {size: 3}
"#,
    )
    .await?;
    let widget = get(
        &client,
        ("test.portcullis.dev", "v1", "Widget"),
        Some("default"),
        "w",
    )
    .await?;
    ensure!(
        widget.data["spec"]["size"] == 3,
        "Widget: {:?}",
        widget.data
    );
    Ok(())
}

#[tokio::test]
async fn rbac_refuses_a_user_without_bindings_until_a_role_binding_allows_it() -> Result<()> {
    let cp = ControlPlane::start().await?;
    cp.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n")
        .await?;
    let jane = cp.client_as("jane", &["developers"]).await?;
    let secrets =
        |user: &UserClient, ns: &str| -> Api<Secret> { Api::namespaced(user.client.clone(), ns) };

    let refused = secrets(&jane, "team")
        .list(&ListParams::default())
        .await
        .err()
        .ok_or_else(|| anyhow!("jane listed Secrets without any binding"))?;
    ensure!(
        api_code(&refused) == Some(403),
        "expected 403, got {refused}"
    );

    cp.apply_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-reader, namespace: team}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: jane-reads-secrets, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}]
"#,
    )
    .await?;
    wait_allowed("jane listing Secrets in team", || async {
        secrets(&jane, "team")
            .list(&ListParams::default())
            .await
            .map(drop)
    })
    .await?;

    // Only what was granted, only where.
    let elsewhere = secrets(&jane, "default").list(&ListParams::default()).await;
    ensure!(
        elsewhere.as_ref().err().and_then(api_code) == Some(403),
        "jane must not list Secrets in default: {elsewhere:?}"
    );
    let write = Api::<Secret>::namespaced(jane.client.clone(), "team")
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "s"}, "stringData": {"k": "v"}
            }))?,
        )
        .await;
    ensure!(
        write.as_ref().err().and_then(api_code) == Some(403),
        "jane must not create Secrets: {write:?}"
    );

    // The kubeconfig file a process would be given authenticates the same user.
    let from_file = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&jane.kubeconfig_path)?,
        &Default::default(),
    )
    .await?;
    Api::<Secret>::namespaced(Client::try_from(from_file)?, "team")
        .list(&ListParams::default())
        .await
        .context("jane's kubeconfig file")?;
    Ok(())
}

#[tokio::test]
async fn a_service_account_identity_carries_its_groups_into_rbac() -> Result<()> {
    let cp = ControlPlane::start().await?;
    cp.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: gateway-system}\n")
        .await?;
    let sa = cp
        .service_account_client("gateway-system", "portcullis")
        .await?;

    // Who the API server says we are.
    let review = Api::<SelfSubjectReview>::all(sa.client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let info = review
        .status
        .and_then(|s| s.user_info)
        .ok_or_else(|| anyhow!("SelfSubjectReview without userInfo"))?;
    ensure!(
        info.username.as_deref() == Some("system:serviceaccount:gateway-system:portcullis"),
        "username: {:?}",
        info.username
    );
    let groups = info.groups.unwrap_or_default();
    for group in [
        "system:serviceaccounts",
        "system:serviceaccounts:gateway-system",
        "system:authenticated",
    ] {
        ensure!(
            groups.iter().any(|g| g == group),
            "{group} missing from {groups:?}"
        );
    }

    // A binding to one of its groups (not its name) grants it.
    let config_maps = || Api::<ConfigMap>::namespaced(sa.client.clone(), "gateway-system");
    let refused = config_maps().list(&ListParams::default()).await;
    ensure!(
        refused.as_ref().err().and_then(api_code) == Some(403),
        "listing ConfigMaps without a binding: {refused:?}"
    );
    // (A Role of our own: the aggregated ClusterRoles such as `view` get
    // their rules from kube-controller-manager, which this rig does not run.)
    cp.apply_yaml(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: config-map-reader, namespace: gateway-system}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: namespace-accounts-read-config-maps, namespace: gateway-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: config-map-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:serviceaccounts:gateway-system"}
"#,
    )
    .await?;
    wait_allowed("the ServiceAccount listing ConfigMaps", || async {
        config_maps().list(&ListParams::default()).await.map(drop)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_api_server_restarts_under_its_clients_and_keeps_the_data() -> Result<()> {
    let cp = ControlPlane::start().await?;
    let admin = cp.client();
    let jane = cp.client_as("jane", &[]).await?;
    cp.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\ndata: {k: v}\n")
        .await?;
    let config_maps: Api<ConfigMap> = Api::default_namespaced(admin.clone());
    let url_before = cp.server_url().to_string();

    cp.restart_apiserver().await?;
    ensure!(cp.server_url() == url_before, "same URL after a restart");
    let kept = config_maps
        .get("kept")
        .await
        .context("the admin client after a restart")?;
    ensure!(
        kept.data.unwrap_or_default().get("k").map(String::as_str) == Some("v"),
        "the ConfigMap survived in etcd"
    );

    cp.stop_apiserver();
    let down = config_maps.get("kept").await;
    ensure!(
        matches!(&down, Err(e) if api_code(e).is_none()),
        "with the API server stopped a request fails without an answer: {down:?}"
    );
    cp.start_apiserver().await?;
    config_maps
        .get("kept")
        .await
        .context("the admin client after stop and start")?;
    // A user client made before the restarts reconnects too (and is still
    // refused: RBAC comes back with the server).
    let refused = Api::<ConfigMap>::default_namespaced(jane.client.clone())
        .get("kept")
        .await;
    ensure!(
        refused.as_ref().err().and_then(api_code) == Some(403),
        "jane after the restarts: {refused:?}"
    );
    Ok(())
}

/// Applies one Gateway with `tls` (YAML flow text, or None for no block) on
/// an HTTPS listener.
async fn apply_https_gateway(cp: &ControlPlane, name: &str, tls: Option<&str>) -> Result<()> {
    let tls = tls.map(|t| format!(", tls: {t}")).unwrap_or_default();
    cp.apply_yaml(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\n\
         spec:\n  gatewayClassName: portcullis\n  listeners:\n  \
         - {{name: https, protocol: HTTPS, port: 443, hostname: {name}.example.com{tls}}}\n"
    ))
    .await
    .map(drop)
}

/// The refusal `result` carries.
fn refusal(result: Result<()>) -> Result<ApplyError> {
    match result {
        Ok(()) => bail!("admitted"),
        Err(e) => e
            .downcast::<ApplyError>()
            .map_err(|e| anyhow!("failed, but not as a refusal: {e:#}")),
    }
}

#[tokio::test]
async fn the_crds_admit_and_refuse_the_listener_tls_forms_as_found() -> Result<()> {
    const TERMINATE_NEEDS: &str =
        "certificateRefs or options must be specified when mode is Terminate";
    let cp = ControlPlane::start().await?;
    cp.apply_yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: portcullis}\n\
         spec: {controllerName: portcullis.dev/gateway-controller}\n",
    )
    .await?;

    // Admitted: no tls block at all; options only; a Secret that does not exist.
    apply_https_gateway(&cp, "no-tls", None)
        .await
        .context("HTTPS without tls")?;
    apply_https_gateway(
        &cp,
        "options",
        Some("{options: {portcullis.dev/cluster-issuer: letsencrypt}}"),
    )
    .await
    .context("tls.options only")?;
    apply_https_gateway(
        &cp,
        "missing-secret",
        Some("{certificateRefs: [{name: not-there}]}"),
    )
    .await
    .context("certificateRefs naming a missing Secret")?;

    // Refused: an empty tls block (mode defaults to Terminate) and an explicit
    // Terminate, both without certificateRefs or options.
    for (name, tls) in [("empty-tls", "{}"), ("terminate", "{mode: Terminate}")] {
        let refused = refusal(apply_https_gateway(&cp, name, Some(tls)).await)
            .with_context(|| format!("tls: {tls}"))?;
        ensure!(
            refused.code == 422 && refused.message.contains(TERMINATE_NEEDS),
            "tls: {tls}: {refused}"
        );
        ensure!(
            refused.object == format!("Gateway gateway.networking.k8s.io/v1 default/{name}"),
            "the error names the object: {}",
            refused.object
        );
    }

    // A partial apply of certificateRefs under its own field manager merges
    // into the listener another manager wrote (what portcullis's write-back
    // of auto-filled refs does).
    apply_yaml_with(
        &cp.client(),
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: no-tls, namespace: default}
spec:
  listeners:
  - name: https
    tls: {certificateRefs: [{name: no-tls-example-com}]}
"#,
        &ApplyOptions {
            field_manager: "portcullis.dev/certificate-refs".into(),
            force: false,
        },
    )
    .await
    .context("the partial apply of certificateRefs")?;
    let gateway = get(
        &cp.client(),
        ("gateway.networking.k8s.io", "v1", "Gateway"),
        Some("default"),
        "no-tls",
    )
    .await?;
    let listener = &gateway.data["spec"]["listeners"][0];
    ensure!(
        listener["port"] == 443
            && listener["protocol"] == "HTTPS"
            && listener["tls"]["certificateRefs"][0]["name"] == "no-tls-example-com"
            && listener["tls"]["mode"] == "Terminate",
        "merged listener: {listener}"
    );
    let managers: Vec<&str> = gateway
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    ensure!(
        managers.contains(&"portcullis-test")
            && managers.contains(&"portcullis.dev/certificate-refs"),
        "both managers own fields: {managers:?}"
    );
    Ok(())
}

/// SIGKILLs the test's `helper` process and waits up to 10 s for the
/// processes it started (`pids`) to be gone.
pub(crate) async fn kill_and_wait_gone(
    helper: &mut std::process::Child,
    pids: &[u32],
) -> Result<()> {
    helper.kill()?;
    helper.wait()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| is_running(p)) {
        ensure!(
            Instant::now() < deadline,
            "still running 10 s after the test process was killed: {:?}",
            pids.iter().filter(|&&p| is_running(p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether process `pid` still runs (a zombie waiting for its reaper does not).
pub(crate) fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Set in the helper process [`control_plane_processes_die_with_a_killed_test_process`] starts.
const TETHER_HELPER: &str = "PORTCULLIS_TETHER_HELPER";

#[tokio::test]
async fn control_plane_processes_die_with_a_killed_test_process() -> Result<()> {
    // This test binary, running only `tether_helper`: it starts a control
    // plane, prints the pids, and waits to be killed. SIGKILL runs no
    // destructor, so only the parent-death signal can take the children down.
    let mut helper = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "rig::tether_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TETHER_HELPER, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = helper.stdout.take().expect("stdout was piped");
    let read_pids = tokio::task::spawn_blocking(move || -> Result<(PathBuf, Vec<u32>)> {
        for line in BufReader::new(stdout).lines() {
            // The harness's "test rig::tether_helper ... " precedes it on its line.
            let line = line?;
            if let Some((_, rest)) = line.split_once("control-plane:") {
                let mut words = rest.split_whitespace();
                let dir = PathBuf::from(words.next().context("the helper's directory")?);
                let pids = words
                    .map(|p| p.parse().context("a pid"))
                    .collect::<Result<_>>()?;
                return Ok((dir, pids));
            }
        }
        bail!("the helper ended without printing its control plane")
    });
    // A cold rig build in the helper can take minutes.
    let (dir, pids) = match tokio::time::timeout(Duration::from_secs(900), read_pids).await {
        Ok(Ok(Ok(started))) => started,
        outcome => {
            let _ = helper.kill();
            let _ = helper.wait();
            bail!("the helper printed no pids: {outcome:?}");
        }
    };
    ensure!(pids.len() == 2, "etcd and kube-apiserver: {pids:?}");
    ensure!(
        pids.iter().all(|&p| is_running(p)),
        "both run before the kill"
    );

    kill_and_wait_gone(&mut helper, &pids).await?;
    // The killed helper could not remove its directory.
    std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    Ok(())
}

/// Not a test on its own: the body of the process that
/// [`control_plane_processes_die_with_a_killed_test_process`] starts and kills
/// (selected by `TETHER_HELPER`; otherwise it returns at once).
#[tokio::test]
async fn tether_helper() -> Result<()> {
    if std::env::var_os(TETHER_HELPER).is_none() {
        return Ok(());
    }
    let cp = ControlPlane::start().await?;
    let pids: Vec<String> = cp.pids().iter().map(u32::to_string).collect();
    println!("control-plane: {} {}", cp.dir().display(), pids.join(" "));
    tokio::time::sleep(Duration::from_secs(600)).await;
    bail!("the helper was not killed within 10 minutes")
}
