//! The Helm chart (charts/portcullis), rendered by the real `helm` (installed
//! by scripts/test.sh from the npm registry) and checked three ways: the
//! rendered objects against the Kubernetes API schemas (`kubernetes-validate
//! --strict`, PyPI), the manifests it ships and the CRDs in its crds/ against
//! the portcullis binary itself (`portcullis check`, `portcullis crds`), and
//! the wiring between the objects (ports, probes, volumes, the job label the
//! alert rules select) by reading them. This file holds the helpers, the
//! standalone mode and what both modes share; chart/kubernetes.rs holds
//! Kubernetes mode (the default): Deployment, RBAC, the admission policy.

#[path = "chart/kubernetes.rs"]
mod kubernetes;

use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The `--set` that selects standalone mode (Kubernetes mode is the default).
const STANDALONE: &str = "mode=standalone";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("charts").join("portcullis")
}

/// `helm`, from PATH or where scripts/test.sh unpacks it.
fn helm() -> Command {
    let unpacked = root().join("target/tools/helm/helm");
    let program = if unpacked.exists() {
        unpacked
    } else {
        PathBuf::from("helm")
    };
    Command::new(program)
}

/// Runs `cmd`: its stdout, or everything it printed when it fails. A
/// program that cannot be started is a panic naming it.
fn run(mut cmd: Command) -> Result<String, String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} ({e}); scripts/test.sh installs it"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{stderr}"))
    }
}

/// `helm template` with `--set` pairs: the rendered YAML text.
fn render(sets: &[&str]) -> Result<String, String> {
    render_with(None, sets)
}

/// `helm template` with a values file (YAML text) and `--set` pairs.
fn render_with(values: Option<&str>, sets: &[&str]) -> Result<String, String> {
    render_args(values, sets, &[])
}

/// `helm template` of release `edge` in namespace `gateways`, with a values
/// file, `--set` pairs and other flags.
fn render_args(values: Option<&str>, sets: &[&str], flags: &[&str]) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = helm();
    cmd.arg("template").arg("edge").arg(chart());
    cmd.args(["--namespace", "gateways"]).args(flags);
    if let Some(values) = values {
        let file = dir.path().join("values.yaml");
        std::fs::write(&file, values).expect("write values");
        cmd.arg("--values").arg(file);
    }
    for set in sets {
        cmd.arg("--set").arg(set);
    }
    run(cmd)
}

/// Values that serve `files` (name, YAML text) instead of the quickstart.
fn own_manifests(files: &[(&str, &str)]) -> String {
    let mut manifests = serde_yaml::Mapping::new();
    for (name, text) in files {
        manifests.insert((*name).into(), (*text).into());
    }
    let mut values = serde_yaml::Mapping::new();
    values.insert("mode".into(), "standalone".into());
    values.insert("quickstart".into(), false.into());
    values.insert("manifests".into(), Value::Mapping(manifests));
    serde_yaml::to_string(&values).expect("values")
}

/// The rendered objects by "Kind/name".
fn parse(yaml: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc).expect("helm renders YAML");
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().expect("kind").to_string();
        let name = value["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        out.insert(format!("{kind}/{name}"), value);
    }
    out
}

/// The object `key` ("Kind/name"), or a panic listing what was rendered.
fn get<'a>(objects: &'a BTreeMap<String, Value>, key: &str) -> &'a Value {
    objects
        .get(key)
        .unwrap_or_else(|| panic!("{key} not rendered; have {:?}", objects.keys()))
}

/// The container's args as strings.
fn args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// `portcullis check` on the files of a ConfigMap's data, as the pod
/// mounts them: its report, or what it printed when it fails.
fn check_config_map(config_map: &Value) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = config_map["data"].as_mapping().expect("data");
    assert!(!data.is_empty(), "empty ConfigMap");
    for (name, text) in data {
        let name = name.as_str().expect("file name");
        std::fs::write(dir.path().join(name), text.as_str().expect("text"))
            .expect("write manifest");
    }
    let mut check = Command::new(BIN);
    check.arg("check").arg("--config").arg(dir.path());
    run(check)
}

/// `kubernetes-validate --strict` on YAML text.
fn kubernetes_validate(yaml: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).expect("write");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .arg(&file);
    run(cmd)
}

#[test]
fn lint_is_clean() {
    let mut cmd = helm();
    cmd.arg("lint").arg("--strict").arg(chart());
    run(cmd).expect("helm lint --strict");
}

#[test]
fn every_object_validates_against_the_kubernetes_schemas() {
    for mode in ["mode=kubernetes", STANDALONE] {
        let yaml = render_args(
            None,
            &[
                mode,
                "metrics.serviceMonitor.enabled=true",
                "metrics.prometheusRule.enabled=true",
                "dashboards.enabled=true",
            ],
            // The CRDs of crds/ too, as `helm install` applies them.
            &["--include-crds"],
        )
        .expect("renders");
        kubernetes_validate(&yaml)
            .unwrap_or_else(|e| panic!("{mode}: kubernetes-validate --strict refuses: {e}"));
        // The check itself refuses what the API would (so the pass above
        // means something): an unknown field in the Deployment's spec.
        let bad = yaml.replacen("  strategy:\n", "  strategie: {}\n  strategy:\n", 1);
        assert_ne!(bad, yaml);
        assert!(
            kubernetes_validate(&bad).is_err(),
            "{mode}: an unknown field must fail validation"
        );
    }
}

#[test]
fn the_shipped_manifests_pass_portcullis_check_and_the_ports_line_up() {
    let objects = parse(&render(&[STANDALONE]).expect("renders"));
    let config_map = get(&objects, "ConfigMap/edge-portcullis-manifests");
    let report =
        check_config_map(config_map).expect("portcullis check accepts the chart's manifests");
    assert!(report.contains("quickstart"), "{report}");

    let deployment = get(&objects, "Deployment/edge-portcullis");
    let args = args(deployment);
    for expected in [
        "serve",
        "--config=/etc/portcullis/manifests",
        "--state=/var/lib/portcullis",
        "--admin-addr=0.0.0.0:9901",
        "--port-offset=8000",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // The listener ports of the quickstart Gateway (443, 80) reach the
    // process on port + offset, by name through the Service.
    let container_ports: BTreeMap<String, u64> = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_string();
            (name, p["containerPort"].as_u64().expect("port"))
        })
        .collect();
    let service = get(&objects, "Service/edge-portcullis");
    let mut served = Vec::new();
    for port in service["spec"]["ports"].as_sequence().expect("ports") {
        let name = port["targetPort"].as_str().expect("named target port");
        let port = port["port"].as_u64().expect("port");
        assert_eq!(container_ports.get(name), Some(&(port + 8000)), "{name}");
        served.push(port);
    }
    served.sort_unstable();
    assert_eq!(served, vec![80, 443]);
    assert_eq!(container_ports.get("admin"), Some(&9901));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // Not root, nothing writable but the state volume, no API token.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .map(|m| m["mountPath"].as_str().expect("path"))
        .collect();
    assert_eq!(mounts, ["/etc/portcullis/manifests", "/var/lib/portcullis"]);
    let claim = pod["volumes"][1]["persistentVolumeClaim"]["claimName"]
        .as_str()
        .expect("state on a claim");
    let pvc = get(&objects, &format!("PersistentVolumeClaim/{claim}"));
    assert_eq!(
        pvc["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
}

#[test]
fn own_manifests_replace_the_quickstart_and_are_checked_like_any_directory() {
    let gateway = std::fs::read_to_string(root().join("examples/quickstart/gateway.yaml"))
        .expect("example")
        .replace("name: quickstart", "name: mine");
    let values = own_manifests(&[("gateway.yaml", &gateway)]);
    let objects = parse(&render_with(Some(&values), &[]).expect("renders"));
    let config_map = get(&objects, "ConfigMap/edge-portcullis-manifests");
    let files: Vec<&str> = config_map["data"]
        .as_mapping()
        .expect("data")
        .keys()
        .map(|k| k.as_str().expect("name"))
        .collect();
    assert_eq!(files, ["gateway.yaml"]);
    let report = check_config_map(config_map).expect("portcullis check");
    assert!(report.contains("mine"), "{report}");

    // Broken YAML in a manifest renders (Helm does not read it) and then
    // fails `portcullis check` with the file named, as it would in the pod.
    let values = own_manifests(&[("broken.yaml", "kind: Gateway\n  bad: [indent")]);
    let objects = parse(&render_with(Some(&values), &[]).expect("renders"));
    let error = check_config_map(get(&objects, "ConfigMap/edge-portcullis-manifests"))
        .expect_err("malformed YAML fails the check");
    assert!(error.contains("broken.yaml"), "{error}");
}

#[test]
fn values_that_cannot_work_are_refused_at_render_time() {
    let two = render(&[STANDALONE, "replicaCount=2"]).expect_err("two replicas refused");
    assert!(two.contains("one replica"), "{two}");
    let nothing = render(&[STANDALONE, "quickstart=false"]).expect_err("nothing to serve refused");
    assert!(nothing.contains("nothing to serve"), "{nothing}");
    let bad_name = render(&[STANDALONE, "manifests.x/y=kind: Gateway"]).expect_err("path refused");
    assert!(bad_name.contains("not a file name"), "{bad_name}");
    let mode = render(&["mode=cluster"]).expect_err("unknown mode refused");
    assert!(
        mode.contains("\"cluster\" is neither kubernetes nor standalone"),
        "{mode}"
    );
    // An existing ConfigMap and no state volume: no ConfigMap, no claim.
    let objects = parse(
        &render(&[
            STANDALONE,
            "existingConfigMap=mine",
            "persistence.enabled=false",
        ])
        .expect("renders"),
    );
    assert!(objects
        .keys()
        .all(|k| !k.starts_with("ConfigMap/") && !k.starts_with("PersistentVolumeClaim/")));
    let pod = &get(&objects, "Deployment/edge-portcullis")["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "mine");
    assert!(pod["volumes"][1]["emptyDir"].is_mapping());
}

#[test]
fn alert_rules_and_dashboards_are_the_repositorys_own() {
    let objects = parse(
        &render(&[
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.runbookBase=https://runbooks.example/portcullis",
            "metrics.prometheusRule.params.EXPIRY_FOR=30m",
            "dashboards.enabled=true",
        ])
        .expect("renders"),
    );
    // The ServiceMonitor scrapes the metrics Service, whose name becomes the
    // job label; the rules select that job and nothing else.
    let monitor = get(&objects, "ServiceMonitor/edge-portcullis");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let metrics = get(&objects, "Service/edge-portcullis-metrics");
    for (label, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("labels")
    {
        assert_eq!(&metrics["metadata"]["labels"][label], value);
    }
    let ours: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("alerts/portcullis.rules.yaml")).expect("rules"),
    )
    .expect("rules parse");
    let rule = get(&objects, "PrometheusRule/edge-portcullis");
    let groups = rule["spec"]["groups"].as_sequence().expect("groups");
    let our_groups = ours["groups"].as_sequence().expect("groups");
    assert_eq!(groups.len(), our_groups.len());
    let mut alerts = 0;
    for (group, our_group) in groups.iter().zip(our_groups) {
        let rules = group["rules"].as_sequence().expect("rules");
        let our_rules = our_group["rules"].as_sequence().expect("rules");
        assert_eq!(rules.len(), our_rules.len());
        for (rule, our_rule) in rules.iter().zip(our_rules) {
            assert_eq!(rule["alert"], our_rule["alert"]);
            assert_eq!(rule["record"], our_rule["record"]);
            // Parameters set in the values change their lines, as
            // alerts/render.sh would; the others keep the file's value.
            let expiry = rule["alert"]
                .as_str()
                .is_some_and(|a| a.starts_with("CertificateExpir") && a != "CertificateExpired");
            if expiry {
                assert_eq!(rule["for"], "30m", "{:?}", rule["alert"]);
            } else {
                assert_eq!(rule["for"], our_rule["for"], "{:?}", rule["alert"]);
            }
            let expr = rule["expr"].as_str().expect("expr");
            let our_expr = our_rule["expr"].as_str().expect("expr");
            // (A marker inside a multi-line expression is part of it, and
            // is rewritten too, as render.sh does.)
            assert_eq!(
                expr,
                our_expr
                    .replace("job=\"portcullis\"", "job=\"edge-portcullis-metrics\"")
                    .replace(
                        "# param JOB=portcullis",
                        "# param JOB=edge-portcullis-metrics"
                    )
            );
            if let Some(url) = rule["annotations"]["runbook_url"].as_str() {
                assert!(
                    url.starts_with("https://runbooks.example/portcullis#"),
                    "{url}"
                );
                alerts += 1;
            }
        }
    }
    assert!(alerts >= 5, "{alerts} alerts with runbooks");
    let text = serde_yaml::to_string(rule).expect("yaml");
    assert!(!text.contains("job=\"portcullis\""), "{text}");
    let absent = groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .find(|r| r["alert"] == "GatewayMetricsAbsent")
        .expect("GatewayMetricsAbsent");
    let description = absent["annotations"]["description"].as_str().unwrap_or("");
    assert!(
        description.contains("no target with job=\"edge-portcullis-metrics\""),
        "the description names the job the rules select: {description}"
    );
    for (set, why) in [
        (
            "metrics.prometheusRule.params.NO_SUCH=1",
            "no parameter NO_SUCH",
        ),
        (
            "metrics.prometheusRule.params.JOB=a b",
            "unsupported characters",
        ),
    ] {
        let error = render(&["metrics.prometheusRule.enabled=true", set])
            .expect_err("a parameter that would break the rules fails the release");
        assert!(error.contains(why), "{error}");
    }
    // A number in a values file goes in as written, not as a float.
    let thirty_days = "metrics:\n  prometheusRule:\n    enabled: true\n    params:\n      PAGE_FLOOR_SECONDS: 2592000\n";
    let rendered = render_with(Some(thirty_days), &[]).expect("renders");
    assert!(
        rendered.contains("certificate_lifetime_seconds / 10, 2592000)"),
        "{rendered}"
    );
    // A wiki's runbook address goes in as it is.
    let wiki = "https://wiki.example/display/OPS/Portcullis+Runbooks?src=chart";
    let with_wiki = parse(
        &render(&[
            "metrics.prometheusRule.enabled=true",
            &format!("metrics.prometheusRule.runbookBase={wiki}"),
        ])
        .expect("renders"),
    );
    let text =
        serde_yaml::to_string(get(&with_wiki, "PrometheusRule/edge-portcullis")).expect("yaml");
    assert!(
        text.contains(&format!("{wiki}#certificateexpired")),
        "{text}"
    );

    let dashboards = get(&objects, "ConfigMap/edge-portcullis-dashboards");
    assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
    for file in ["certificates.json", "gateway.json"] {
        let ours = std::fs::read_to_string(root().join("dashboards").join(file)).expect("json");
        let shipped = dashboards["data"][format!("portcullis-{file}").as_str()]
            .as_str()
            .expect("dashboard in the ConfigMap");
        assert_eq!(shipped.trim_end(), ours.trim_end(), "{file}");
    }
}

#[test]
fn the_metrics_service_reaches_every_pod_in_both_modes() {
    for mode in ["mode=kubernetes", STANDALONE] {
        let objects =
            parse(&render(&[mode, "metrics.serviceMonitor.enabled=true"]).expect("renders"));
        let monitor = get(&objects, "ServiceMonitor/edge-portcullis");
        let metrics = get(&objects, "Service/edge-portcullis-metrics");
        for (label, value) in monitor["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .expect("labels")
        {
            assert_eq!(&metrics["metadata"]["labels"][label], value, "{mode}");
        }
        let deployment = get(&objects, "Deployment/edge-portcullis");
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (label, value) in metrics["spec"]["selector"].as_mapping().expect("selector") {
            assert_eq!(&pod_labels[label], value, "{mode}: {label:?}");
        }
        let port = &metrics["spec"]["ports"][0];
        assert_eq!(port["targetPort"], "admin", "{mode}");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let admin = container["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == "admin")
            .expect("admin port");
        assert_eq!(admin["containerPort"], port["port"], "{mode}");
        assert!(
            args(deployment).contains(&"--admin-addr=0.0.0.0:9901".to_string()),
            "{mode}"
        );
    }
}

#[test]
fn the_address_pool_reaches_serve_in_both_modes() {
    for mode in ["mode=kubernetes", STANDALONE] {
        let objects = parse(
            &render(&[mode, "gatewayAddressPool={198.18.4.0/24,198.18.5.0/28}"]).expect("renders"),
        );
        let given = args(get(&objects, "Deployment/edge-portcullis"));
        for prefix in ["198.18.4.0/24", "198.18.5.0/28"] {
            let flag = format!("--gateway-address-pool={prefix}");
            assert!(given.contains(&flag), "{mode}: {given:?}");
        }
        let none = parse(&render(&[mode]).expect("renders"));
        let default = args(get(&none, "Deployment/edge-portcullis"));
        assert!(
            !default
                .iter()
                .any(|a| a.starts_with("--gateway-address-pool")),
            "{mode}"
        );
    }
}

#[test]
fn the_chart_crds_are_what_portcullis_crds_prints() {
    let mut cmd = Command::new(BIN);
    cmd.arg("crds");
    let printed = run(cmd).expect("portcullis crds");
    let file = chart().join("crds/portcullis.dev.yaml");
    let shipped = std::fs::read_to_string(&file).expect("the chart's crds/");
    assert!(
        printed == shipped,
        "{} differs from `portcullis crds`; regenerate it with\n  \
         cargo run -- crds > charts/portcullis/crds/portcullis.dev.yaml",
        file.display()
    );
    // Helm applies crds/ before the templates; the three kinds are there.
    for name in [
        "issuers.portcullis.dev",
        "clusterissuers.portcullis.dev",
        "staticresponses.portcullis.dev",
    ] {
        assert!(shipped.contains(&format!("name: {name}\n")), "{name}");
    }
    let rendered = render_args(None, &[], &["--include-crds"]).expect("renders");
    let objects = parse(&rendered);
    assert!(objects.contains_key("CustomResourceDefinition/issuers.portcullis.dev"));
}
