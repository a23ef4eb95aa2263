//! Observability, proved with the real tools (Debian `prometheus` and
//! `prometheus-alertmanager`, installed by scripts/test.sh):
//!
//! - the rules pass `promtool check rules` and their unit tests
//!   (`promtool test rules alerts/tests/*.yaml`), the Alertmanager example
//!   passes `amtool check-config`, and `alerts/render.sh` is the documented
//!   way to change thresholds;
//! - dashboards are well-formed Grafana JSON on the `${datasource}` variable,
//!   and dashboards and rules only name metrics portcullis exports;
//! - end to end: the portcullis binary serves a certificate of three minutes'
//!   lifetime from a Secret, a real Prometheus scrapes it with the rules
//!   rendered for minutes (`PAGE_FLOOR_SECONDS=30`, `EXPIRY_FOR=0s`), a real
//!   Alertmanager configured from the example notifies a webhook this test
//!   listens on; the warning and the page reach it before the certificate's
//!   notAfter, and every dashboard and rule expression is accepted by that
//!   Prometheus and returns data.

#[path = "support/ports.rs"]
mod ports;
#[path = "observability/stack.rs"]
mod stack;

use anyhow::{bail, ensure, Context, Result};
use portcullis::metrics::{ManagedCertificate, Metrics};
use stack::{curl_get, Notification, Process};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .with_context(|| format!("cannot run {program} (scripts/test.sh installs it)"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{program} {args:?} failed:\n{text}");
    Ok(text)
}

fn render(params: &[&str]) -> Result<String> {
    let mut args = vec!["alerts/render.sh"];
    args.extend_from_slice(params);
    run("bash", &args)
}

fn files(dir: &str, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    Ok(out)
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() -> Result<()> {
    let checked = run(
        "promtool",
        &["check", "rules", "alerts/portcullis.rules.yaml"],
    )?;
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tests = files("alerts/tests", "yaml")?;
    assert!(
        tests.len() >= 2,
        "unit tests for certificate and gateway alerts"
    );
    let mut args = vec!["test".to_string(), "rules".to_string()];
    args.extend(tests.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("promtool", &args)?;
    assert!(!out.contains("FAILED"), "{out}");
    // Every alert has at least one unit test.
    let rules: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo().join("alerts/portcullis.rules.yaml"),
    )?)?;
    let tested: String = tests
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    for alert in alert_rules(&rules) {
        let name = alert["alert"].as_str().unwrap_or_default();
        assert!(
            tested.contains(&format!("alertname: {name}")),
            "{name} has no promtool unit test"
        );
        let annotations = &alert["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(annotations[key].is_string(), "{name} lacks {key}");
        }
        let anchor = annotations["runbook_url"].as_str().unwrap_or_default();
        let anchor = anchor.rsplit('#').next().unwrap_or_default();
        let runbooks = std::fs::read_to_string(repo().join("docs/runbooks.md"))?;
        assert!(
            runbooks.contains(&format!("## {name}")) && anchor == name.to_lowercase(),
            "{name}: runbook section and anchor"
        );
    }
    Ok(())
}

fn alert_rules(rules: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn all_rules(rules: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn alertmanager_example_passes_amtool_and_routes_pages_to_the_pager() -> Result<()> {
    let out = run(
        "amtool",
        &["check-config", "alerts/alertmanager.example.yaml"],
    )?;
    assert!(out.contains("SUCCESS"), "{out}");
    let cfg: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo().join("alerts/alertmanager.example.yaml"),
    )?)?;
    let group_by: Vec<&str> = cfg["route"]["group_by"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(group_by, ["namespace", "gateway"]);
    let routes = cfg["route"]["routes"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    assert!(routes
        .iter()
        .any(|r| r["receiver"] == "pager"
            && r["matchers"][0].as_str() == Some("severity = \"page\"")));
    Ok(())
}

#[test]
fn render_changes_only_the_named_parameters() -> Result<()> {
    let shipped = std::fs::read_to_string(repo().join("alerts/portcullis.rules.yaml"))?;
    assert_eq!(render(&[])?, shipped, "no parameters: the shipped file");
    let scaled = render(&["PAGE_FLOOR_SECONDS=30", "EXPIRY_FOR=0s", "JOB=edge"])?;
    assert!(scaled.contains("clamp_min(portcullis:certificate_lifetime_seconds / 10, 30)"));
    assert!(scaled.contains("up{job=\"edge\"}"));
    assert!(scaled.contains("no target with job=\\\"edge\\\""));
    assert_eq!(scaled.matches("for: 0s").count(), 2, "both expiry alerts");
    let changed = shipped
        .lines()
        .zip(scaled.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        changed,
        1 + 2 + 6,
        "floor, two `for`, five job selectors and the description naming the job"
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("scaled.yaml");
    std::fs::write(&path, &scaled)?;
    run("promtool", &["check", "rules", &path.display().to_string()])?;
    assert!(Command::new("bash")
        .args(["alerts/render.sh", "NO_SUCH=1"])
        .current_dir(repo())
        .output()?
        .status
        .code()
        .is_some_and(|c| c == 2));
    Ok(())
}

fn dashboards() -> Result<Vec<(String, serde_json::Value)>> {
    let mut out = Vec::new();
    for path in files("dashboards", "json")? {
        let text = std::fs::read_to_string(&path)?;
        let json = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        out.push((path.display().to_string(), json));
    }
    Ok(out)
}

/// Every `(dashboard, panel title, expr)`.
fn panel_exprs(dashboards: &[(String, serde_json::Value)]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards {
        for panel in d["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    file.clone(),
                    panel["title"].as_str().unwrap_or_default().to_string(),
                    target["expr"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn dashboards_are_well_formed_on_the_datasource_variable() -> Result<()> {
    let boards = dashboards()?;
    assert_eq!(boards.len(), 2, "certificates and gateway dashboards");
    for (file, d) in &boards {
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(vars, ["datasource", "namespace", "gateway"], "{file}");
        let mut ids = BTreeSet::new();
        let panels = d["panels"].as_array().cloned().unwrap_or_default();
        assert!(panels.len() >= 8, "{file}");
        for p in &panels {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(
                ids.insert(p["id"].as_u64().unwrap_or(0)),
                "{file}: duplicate id at {title}"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{file}: {title}"
                );
            }
        }
        for v in d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .skip(1)
        {
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}: variable");
        }
    }
    let text: String = panel_exprs(&boards)
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    for needle in [
        "< 7 * 86400",
        "< 21 * 86400",
        "histogram_quantile(0.99",
        "process_max_fds",
    ] {
        assert!(text.contains(needle), "dashboards lack {needle}");
    }
    Ok(())
}

/// Metric names (not recorded series) an expression selects.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re =
        regex::Regex::new(r"\b(portcullis_[a-z0-9_]+|process_[a-z0-9_]+|certmanager_[a-z0-9_]+)\b")
            .expect("valid regex");
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn dashboards_and_rules_use_only_exported_names() -> Result<()> {
    let known = portcullis::metrics::names::all();
    let rules: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo().join("alerts/portcullis.rules.yaml"),
    )?)?;
    let mut exprs: Vec<String> = all_rules(&rules)
        .iter()
        .filter_map(|r| r["expr"].as_str().map(str::to_string))
        .collect();
    exprs.extend(panel_exprs(&dashboards()?).into_iter().map(|(_, _, e)| e));
    let mut used = BTreeSet::new();
    for e in &exprs {
        used.extend(metric_names(e));
    }
    assert!(used.len() > 20, "{used:?}");
    for name in used {
        assert!(known.contains(&name), "{name} is used but not exported");
    }
    Ok(())
}

/// A self-signed certificate for `host`, valid from `not_before` to
/// `not_after` (Unix seconds): (cert PEM, key PEM).
fn short_certificate(host: &str, not_before: u64, not_after: u64) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, host);
    params.distinguished_name = dn;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn manifests(port: u16, dead_port: u16, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: pc}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: shop}}
spec:
  gatewayClassName: pc
  listeners:
  - name: web
    port: {port}
    protocol: HTTPS
    hostname: short.example.test
    tls: {{certificateRefs: [{{name: short-tls}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: short-tls, namespace: shop}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: site, namespace: shop}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /dead}}}}]
    backendRefs: [{{name: dead, port: 8080}}]
  - backendRefs: [{{group: portcullis.dev, kind: StaticResponse, name: hello}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: StaticResponse
metadata: {{name: hello, namespace: shop}}
spec: {{status: 200, body: hello}}
---
apiVersion: v1
kind: Service
metadata: {{name: dead, namespace: shop}}
spec:
  ports: [{{name: http, port: 8080, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dead-1
  namespace: shop
  labels: {{kubernetes.io/service-name: dead}}
addressType: IPv4
endpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]
ports: [{{name: http, port: {dead_port}, protocol: TCP}}]
",
        indent(cert),
        indent(key)
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The Alertmanager example with its receivers pointed at `webhook` and
/// timings shortened; routes, matchers, grouping and inhibitions unchanged.
fn alertmanager_config(webhook: std::net::SocketAddr) -> Result<String> {
    let mut cfg: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        repo().join("alerts/alertmanager.example.yaml"),
    )?)?;
    for receiver in cfg["receivers"].as_sequence_mut().into_iter().flatten() {
        let name = receiver["name"].as_str().unwrap_or_default().to_string();
        for hook in receiver["webhook_configs"]
            .as_sequence_mut()
            .into_iter()
            .flatten()
        {
            hook["url"] = format!("http://{webhook}/{name}").into();
        }
    }
    let route = &mut cfg["route"];
    route["group_wait"] = "1s".into();
    route["group_interval"] = "1s".into();
    route["repeat_interval"] = "1m".into();
    Ok(serde_yaml::to_string(&cfg)?)
}

/// Managed-certificate state and ACME activity, as the issuer will report
/// them, served by the library's own encoder next to the binary.
fn issuer_metrics() -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new());
    metrics.set_cert_manager_compat(true);
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    metrics.set_managed(vec![ManagedCertificate {
        namespace: "shop".into(),
        secret: "managed-tls".into(),
        issuer_kind: "Issuer".into(),
        issuer_name: "letsencrypt".into(),
        not_before: Some(now - 3600),
        not_after: Some(now + 89 * 86400),
        renewal_time: Some(now + 59 * 86400),
        ready: Some(false),
        ari_window: Some((now + 58 * 86400, now + 60 * 86400)),
        profile: Some("tlsserver".into()),
        failed_attempts: 2,
        next_retry: Some(now + 600),
    }]);
    let acme = metrics.acme();
    acme.request("newOrder", Some(201), Duration::from_millis(120));
    acme.request("newOrder", Some(429), Duration::from_millis(80));
    acme.request("finalize", None, Duration::from_millis(900));
    acme.order("valid");
    acme.challenge("http-01", "valid");
    acme.issuance_failed("rate_limited");
    metrics
}

fn query(prometheus: &str, expr: &str) -> Result<serde_json::Value> {
    let (code, body) = curl_get(&format!("{prometheus}/api/v1/query"), &[("query", expr)])?;
    let v: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("{code} {body}"))?;
    ensure!(
        code == 200 && v["status"] == "success",
        "Prometheus rejected {expr}: {body}"
    );
    Ok(v["data"]["result"].clone())
}

fn has_data(result: &serde_json::Value) -> bool {
    result.as_array().is_some_and(|a| !a.is_empty()) || result.get(1).is_some()
}

/// Dashboard variables as Grafana would fill them for "All".
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "20s")
        .replace("$namespace", ".*")
        .replace("$gateway", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_alert_pages_before_not_after_with_real_prometheus_and_alertmanager() -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let root = dir.path();

    // A certificate with three minutes of lifetime, one already spent:
    // the warning (a quarter left) comes 75 s in, the page (30 s floor) 90 s.
    let now = unix_now();
    let not_after = now + 120;
    let (cert, key) = short_certificate("short.example.test", now - 60, not_after)?;
    let port = ports::for_child()?;
    let (dead_port, _dead_guard) = stack::refused_port()?;
    let config = root.join("config");
    std::fs::create_dir_all(&config)?;
    std::fs::write(
        config.join("site.yaml"),
        manifests(port, dead_port, &cert, &key),
    )?;

    let admin = format!("127.0.0.1:{}", ports::for_child()?);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let mut gateway = Process::spawn(
        "portcullis",
        &bin,
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--state".into(),
            root.join("state").display().to_string(),
            "--admin-addr".into(),
            admin.clone(),
            "--listen-address".into(),
            "127.0.0.1".into(),
            "--metrics-cert-manager-compat".into(),
        ],
        root,
    )?;
    stack::wait_http_ok(
        &format!("http://{admin}/readyz"),
        Duration::from_secs(20),
        &mut gateway,
    )?;

    let exporter = stack::exporter(issuer_metrics()).await?;
    let (webhook, received) = stack::webhook().await?;

    let am_port = ports::for_child()?;
    std::fs::write(
        root.join("alertmanager.yaml"),
        alertmanager_config(webhook)?,
    )?;
    let mut alertmanager = Process::spawn(
        "alertmanager",
        Path::new("prometheus-alertmanager"),
        &[
            format!("--config.file={}", root.join("alertmanager.yaml").display()),
            format!("--storage.path={}", root.join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        root,
    )?;

    std::fs::write(
        root.join("rules.yaml"),
        render(&["PAGE_FLOOR_SECONDS=30", "EXPIRY_FOR=0s"])?,
    )?;
    std::fs::write(
        root.join("prometheus.yaml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{rules}]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]}}]
scrape_configs:
  - job_name: portcullis
    static_configs: [{{targets: ['{admin}', '{exporter}']}}]
",
            rules = root.join("rules.yaml").display()
        ),
    )?;
    let prom_port = ports::for_child()?;
    let mut prometheus = Process::spawn(
        "prometheus",
        Path::new("prometheus"),
        &[
            format!("--config.file={}", root.join("prometheus.yaml").display()),
            format!("--storage.tsdb.path={}", root.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        root,
    )?;
    let prom = format!("http://127.0.0.1:{prom_port}");
    stack::wait_http_ok(
        &format!("http://127.0.0.1:{am_port}/-/ready"),
        Duration::from_secs(30),
        &mut alertmanager,
    )?;
    stack::wait_http_ok(
        &format!("{prom}/-/ready"),
        Duration::from_secs(30),
        &mut prometheus,
    )?;

    // Traffic through the gateway with curl: a 200, a 503 from a dead
    // backend (upstream connect error), a handshake for an unknown SNI.
    let https = |host: &str, path: &str| {
        Command::new("curl")
            .args(["-sk", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("https://{host}:{port}{path}"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    assert_eq!(https("short.example.test", "/")?, "200");
    assert_eq!(https("short.example.test", "/dead")?, "503");
    assert_eq!(
        https("unknown.example.test", "/")?,
        "000",
        "no listener: handshake refused"
    );

    // The binary's own /metrics: the served certificate and the traffic.
    let (_, text) = curl_get(&format!("http://{admin}/metrics"), &[])?;
    assert!(
        text.contains(&format!("subject_cn=\"short.example.test\"}} {not_after}")),
        "{text}"
    );
    assert!(text.contains("certmanager_certificate_expiration_timestamp_seconds{name=\"short-tls\",namespace=\"shop\""), "{text}");
    assert!(text.contains("reason=\"no_listener\"} 1"), "{text}");
    assert!(
        text.contains("backend=\"shop/dead:8080\",reason=\"connect\"} 1"),
        "{text}"
    );

    // Let every series be scraped and every rule evaluated a few times.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("rules.yaml"))?)?;
    let mut missing = Vec::new();
    for rule in all_rules(&rules) {
        let expr = rule["expr"].as_str().unwrap_or_default();
        let name = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .unwrap_or_default();
        let result = query(&prom, expr)?;
        if rule.get("record").is_some() && !has_data(&result) {
            missing.push(format!("recording rule {name}"));
        }
        // An alert's expression is empty while all is well; what must not
        // be empty is every series it reads. Series of Kubernetes mode are
        // not exported by this standalone gateway: tests/kubernetes/
        // routing.rs reads them from a replica in a cluster.
        for metric in metric_names(expr)
            .into_iter()
            .filter(|m| !m.starts_with("portcullis_kubernetes_"))
        {
            if !has_data(&query(&prom, &format!("count({metric})"))?) {
                missing.push(format!("{name}: {metric}"));
            }
        }
        if expr.contains("up{job=\"portcullis\"}")
            && !has_data(&query(&prom, "up{job=\"portcullis\"} == 1")?)
        {
            missing.push(format!("{name}: up"));
        }
    }
    for (file, title, expr) in panel_exprs(&dashboards()?) {
        if !has_data(&query(&prom, &substitute(&expr))?) {
            missing.push(format!("{file} / {title}: {expr}"));
        }
    }
    assert!(
        missing.is_empty(),
        "expressions without data:\n{}",
        missing.join("\n")
    );

    // The warning and the page arrive before notAfter.
    let find = |list: &[Notification], path: &str, alert: &str| {
        list.iter()
            .find(|n| {
                n.path == format!("/{path}")
                    && n.alerts().iter().any(|(name, status, labels)| {
                        name == alert && status == "firing" && labels["secret"] == "short-tls"
                    })
            })
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(not_after.saturating_sub(unix_now()) + 15);
    let (warning, page) = loop {
        gateway.check_running()?;
        prometheus.check_running()?;
        alertmanager.check_running()?;
        let list = received.lock().map(|l| l.clone()).unwrap_or_default();
        let warning = find(&list, "ticket", "CertificateExpiringSoon");
        let page = find(&list, "pager", "CertificateExpiryCritical");
        if let (Some(w), Some(p)) = (&warning, &page) {
            break (w.clone(), p.clone());
        }
        if Instant::now() > deadline {
            bail!(
                "notifications so far: {:?}\n{}\n{}",
                list.iter()
                    .map(|n| (n.path.clone(), n.alerts()))
                    .collect::<Vec<_>>(),
                prometheus.tail(),
                alertmanager.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let not_after = not_after as f64;
    assert!(
        secs(warning.at) < not_after,
        "warning {} s after notAfter",
        secs(warning.at) - not_after
    );
    assert!(
        secs(page.at) < not_after,
        "page {} s after notAfter",
        secs(page.at) - not_after
    );
    assert!(secs(warning.at) <= secs(page.at), "the warning comes first");
    let page_labels = &page.alerts()[0].2;
    assert_eq!(page_labels["severity"], "page");
    assert_eq!(
        page_labels["namespace"], "shop",
        "alert namespace is the Secret's"
    );
    eprintln!(
        "observability e2e: warning {:.0} s and page {:.0} s before notAfter; wall time {:?}",
        not_after - secs(warning.at),
        not_after - secs(page.at),
        started.elapsed()
    );
    Ok(())
}
