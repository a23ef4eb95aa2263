//! Kubernetes mode of the chart (its default): the Deployment running
//! `portcullis serve --kubernetes`, the LoadBalancer Service it names as the
//! Gateways' address source, PodDisruptionBudget and autoscaler, the
//! GatewayClass, the RBAC rules (exactly what Kubernetes mode reads and
//! writes, nothing more) and the admission policy that keeps its hands off
//! Secrets it does not manage.

use super::{args, get, kubernetes_validate, parse, render, render_args};
use serde_yaml::Value;
use std::collections::BTreeSet;

/// The default install's objects.
fn default_objects() -> std::collections::BTreeMap<String, Value> {
    parse(&render(&[]).expect("renders"))
}

/// The strings of a YAML sequence.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|v| v.as_str().expect("string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every (group, resource, verb, names) a Role or ClusterRole grants, one
/// line each: `"<scope> <group>/<resource> <verb>[ names]"`.
fn grants(role: &Value, scope: &str, out: &mut BTreeSet<String>) {
    for rule in role["rules"].as_sequence().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    let mut line = format!("{scope} {group}/{resource} {verb}");
                    if !names.is_empty() {
                        line.push_str(&format!(" {}", names.join(",")));
                    }
                    out.insert(line);
                }
            }
        }
    }
}

#[test]
fn the_default_install_is_kubernetes_mode_with_two_replicas_and_no_volume() {
    let objects = default_objects();
    let kinds: BTreeSet<&str> = objects
        .keys()
        .map(|k| k.split('/').next().expect("kind"))
        .collect();
    let expected: BTreeSet<&str> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "GatewayClass",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    .into_iter()
    .collect();
    // No ConfigMap of manifests and no claim: the API server holds it all.
    assert_eq!(kinds, expected);

    let deployment = get(&objects, "Deployment/edge-portcullis");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = args(deployment);
    for expected in [
        "serve",
        "--kubernetes",
        "--namespace=$(POD_NAMESPACE)",
        "--identity=$(POD_NAME)",
        "--lease-name=edge-portcullis-leader",
        "--lease-duration=15",
        "--gateway-service=edge-portcullis",
        "--admin-addr=0.0.0.0:9901",
        "--port-offset=8000",
        "--controller-name=portcullis.dev/gateway-controller",
        "--shutdown-grace=10",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--config")), "{args:?}");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // $(POD_NAMESPACE) and $(POD_NAME) come from the downward API.
    let env = container["env"].as_sequence().expect("env");
    for (name, path) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let var = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], path);
    }
    assert_eq!(pod["serviceAccountName"], "edge-portcullis");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert!(pod["volumes"].is_null() && container["volumeMounts"].is_null());
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(pod["terminationGracePeriodSeconds"], 15);
    // Pod security and resources.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    // Spread over nodes and zones, each rollout on its own.
    let spread = pod["topologySpreadConstraints"]
        .as_sequence()
        .expect("spread");
    let keys: Vec<&str> = spread
        .iter()
        .map(|c| c["topologyKey"].as_str().expect("key"))
        .collect();
    assert_eq!(
        keys,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );
    for constraint in spread {
        assert_eq!(
            constraint["labelSelector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"]
        );
        assert_eq!(
            strings(&constraint["matchLabelKeys"]),
            ["pod-template-hash"]
        );
    }
    // Nothing needs a live cluster to render or apply: no Helm hooks.
    for (key, object) in &objects {
        let annotations = object["metadata"]["annotations"].as_mapping();
        assert!(
            annotations.is_none_or(|a| a.keys().all(|k| k.as_str() != Some("helm.sh/hook"))),
            "{key} is a hook"
        );
    }
}

#[test]
fn the_load_balancer_maps_80_and_443_to_unprivileged_ports_and_gives_gateway_addresses() {
    let objects = default_objects();
    let service = get(&objects, "Service/edge-portcullis");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    let deployment = get(&objects, "Deployment/edge-portcullis");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut mapped = Vec::new();
    for port in service["spec"]["ports"].as_sequence().expect("ports") {
        let target = port["targetPort"].as_str().expect("named target");
        let container_port = container["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == target)
            .expect("container port")["containerPort"]
            .as_u64()
            .expect("number");
        mapped.push((port["port"].as_u64().expect("port"), container_port));
    }
    mapped.sort_unstable();
    assert_eq!(mapped, [(80, 8080), (443, 8443)]);
    // The Service named by --gateway-service is this one.
    assert!(args(deployment).contains(&format!(
        "--gateway-service={}",
        service["metadata"]["name"].as_str().expect("name")
    )));

    // Fixed addresses instead; the write-back and default issuer switches.
    let objects = parse(
        &render(&[
            "kubernetes.gatewayAddresses={192.0.2.10,192.0.2.11}",
            "kubernetes.certificateRefsWriteback=false",
            "kubernetes.defaultClusterIssuer=letsencrypt",
            "kubernetes.leaseName=edge-lease",
        ])
        .expect("renders"),
    );
    let args = args(get(&objects, "Deployment/edge-portcullis"));
    for expected in [
        "--gateway-address=192.0.2.10",
        "--gateway-address=192.0.2.11",
        "--no-certificate-refs-writeback",
        "--lease-name=edge-lease",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    // The default issuer is the GatewayClass's, as an annotation the
    // issuer reads from the object (one rule in both modes).
    let class = get(&objects, "GatewayClass/portcullis");
    assert_eq!(
        class["metadata"]["annotations"]["portcullis.dev/cluster-issuer"],
        "letsencrypt"
    );
    assert!(!args.iter().any(|a| a.starts_with("--gateway-service")));
    // The Role follows the Lease's name.
    let role = get(&objects, "Role/edge-portcullis");
    let mut lines = BTreeSet::new();
    grants(role, "gateways", &mut lines);
    assert!(lines.contains("gateways coordination.k8s.io/leases update edge-lease"));
}

#[test]
fn rbac_grants_exactly_what_kubernetes_mode_reads_and_writes() {
    let objects = default_objects();
    let mut lines = BTreeSet::new();
    grants(
        get(&objects, "ClusterRole/edge-portcullis"),
        "cluster",
        &mut lines,
    );
    grants(
        get(&objects, "Role/edge-portcullis"),
        "gateways",
        &mut lines,
    );
    let mut expected = BTreeSet::new();
    let gateway_api = [
        "gatewayclasses",
        "gateways",
        "listenersets",
        "httproutes",
        "grpcroutes",
        "tlsroutes",
        "tcproutes",
        "udproutes",
        "referencegrants",
        "backendtlspolicies",
    ];
    for resource in gateway_api {
        for verb in ["get", "list", "watch"] {
            expected.insert(format!(
                "cluster gateway.networking.k8s.io/{resource} {verb}"
            ));
        }
        if resource != "referencegrants" {
            expected.insert(format!(
                "cluster gateway.networking.k8s.io/{resource}/status patch"
            ));
        }
    }
    expected.insert("cluster gateway.networking.k8s.io/gateways patch".into());
    // The per-Gateway Services: applied, deleted when no Gateway wants
    // them, owned by their Gateway (blockOwnerDeletion).
    for verb in ["create", "patch", "delete"] {
        expected.insert(format!("cluster /services {verb}"));
    }
    expected.insert("cluster gateway.networking.k8s.io/gateways/finalizers update".into());
    for resource in [
        "/services",
        "/namespaces",
        "discovery.k8s.io/endpointslices",
    ] {
        for verb in ["get", "list", "watch"] {
            expected.insert(format!("cluster {resource} {verb}"));
        }
    }
    for verb in ["get", "list", "watch"] {
        expected.insert(format!("cluster /secrets {verb}"));
        expected.insert(format!("cluster /configmaps {verb}"));
        for kind in ["issuers", "clusterissuers", "staticresponses"] {
            expected.insert(format!("cluster portcullis.dev/{kind} {verb}"));
        }
    }
    for verb in ["create", "update", "patch"] {
        expected.insert(format!("cluster /secrets {verb}"));
    }
    expected.insert("cluster portcullis.dev/issuers/status patch".into());
    expected.insert("cluster portcullis.dev/clusterissuers/status patch".into());
    expected.insert("gateways coordination.k8s.io/leases create".into());
    expected.insert("gateways coordination.k8s.io/leases get edge-portcullis-leader".into());
    expected.insert("gateways coordination.k8s.io/leases update edge-portcullis-leader".into());
    for verb in ["create", "update", "patch", "delete"] {
        expected.insert(format!("gateways /configmaps {verb}"));
    }
    let missing: Vec<_> = expected.difference(&lines).collect();
    let extra: Vec<_> = lines.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    // The rules that matter most, stated plainly.
    assert!(lines.iter().all(|l| !l.contains('*')), "a wildcard");
    assert!(!lines.contains("cluster /secrets delete"));
    assert!(lines.iter().all(|l| !l.contains("/secrets delete")));

    // The bindings give both roles to the pods' ServiceAccount, in the
    // release namespace.
    for binding in [
        "ClusterRoleBinding/edge-portcullis",
        "RoleBinding/edge-portcullis",
    ] {
        let binding = get(&objects, binding);
        assert_eq!(binding["roleRef"]["name"], "edge-portcullis");
        let subject = &binding["subjects"][0];
        assert_eq!(subject["kind"], "ServiceAccount");
        assert_eq!(subject["name"], "edge-portcullis");
        assert_eq!(subject["namespace"], "gateways");
    }
    get(&objects, "ServiceAccount/edge-portcullis");

    // An existing ServiceAccount, and no RBAC at all when asked.
    let objects = parse(
        &render(&[
            "serviceAccount.create=false",
            "serviceAccount.name=mine",
            "rbac.create=false",
        ])
        .expect("renders"),
    );
    assert!(objects
        .keys()
        .all(|k| !k.starts_with("ServiceAccount/") && !k.contains("Role")));
    let pod = &get(&objects, "Deployment/edge-portcullis")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "mine");
}

#[test]
fn the_admission_policy_refuses_the_service_account_any_secret_it_does_not_manage() {
    let objects = default_objects();
    let policy = get(
        &objects,
        "ValidatingAdmissionPolicy/edge-portcullis-managed-secrets",
    );
    let spec = &policy["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    let rule = &spec["matchConstraints"]["resourceRules"][0];
    assert_eq!(strings(&rule["apiGroups"]), [""]);
    assert_eq!(strings(&rule["resources"]), ["secrets"]);
    assert_eq!(strings(&rule["operations"]), ["CREATE", "UPDATE", "DELETE"]);
    // Only this release's ServiceAccount is held to it.
    assert_eq!(
        spec["matchConditions"][0]["expression"],
        "request.userInfo.username == \"system:serviceaccount:gateways:edge-portcullis\""
    );
    let variables: Vec<(String, String)> = spec["variables"]
        .as_sequence()
        .expect("variables")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name").to_string(),
                v["expression"].as_str().expect("expression").to_string(),
            )
        })
        .collect();
    let label = |object: &str| {
        format!(
            "{object} != null && has({object}.metadata.labels) && \
             'portcullis.dev/managed' in {object}.metadata.labels && \
             {object}.metadata.labels['portcullis.dev/managed'] == 'true'"
        )
    };
    assert_eq!(
        variables,
        [
            ("managedAfter".to_string(), label("object")),
            ("managedBefore".to_string(), label("oldObject")),
        ]
    );
    // CREATE and UPDATE need the label after; UPDATE and DELETE before.
    let validations: Vec<&str> = spec["validations"]
        .as_sequence()
        .expect("validations")
        .iter()
        .map(|v| {
            assert_eq!(v["reason"], "Forbidden");
            let message = v["messageExpression"].as_str().expect("message");
            assert!(message.contains("request.name"), "{message}");
            v["expression"].as_str().expect("expression")
        })
        .collect();
    assert_eq!(
        validations,
        [
            "request.operation == 'DELETE' || variables.managedAfter",
            "request.operation == 'CREATE' || variables.managedBefore",
        ]
    );
    let binding = get(
        &objects,
        "ValidatingAdmissionPolicyBinding/edge-portcullis-managed-secrets",
    );
    assert_eq!(
        binding["spec"]["policyName"],
        "edge-portcullis-managed-secrets"
    );
    assert_eq!(strings(&binding["spec"]["validationActions"]), ["Deny"]);

    let off = parse(&render(&["kubernetes.managedSecretsPolicy.enabled=false"]).expect("renders"));
    assert!(off.keys().all(|k| !k.starts_with("ValidatingAdmission")));
}

#[test]
fn disruption_budget_and_autoscaler_are_configurable() {
    let objects = default_objects();
    let pdb = get(&objects, "PodDisruptionBudget/edge-portcullis");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let deployment = get(&objects, "Deployment/edge-portcullis");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let hpa = get(&objects, "HorizontalPodAutoscaler/edge-portcullis");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "edge-portcullis");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    let metric = &hpa["spec"]["metrics"][0]["resource"];
    assert_eq!(metric["name"], "cpu");
    assert_eq!(metric["target"]["averageUtilization"], 75);

    // Under the autoscaler an upgrade leaves the replica count alone.
    let upgrade = parse(&render_args(None, &[], &["--is-upgrade"]).expect("renders"));
    assert!(get(&upgrade, "Deployment/edge-portcullis")["spec"]["replicas"].is_null());

    // Without it, replicaCount; a budget by maxUnavailable; none at all.
    let objects = parse(
        &render(&[
            "autoscaling.enabled=false",
            "replicaCount=3",
            "podDisruptionBudget.maxUnavailable=1",
        ])
        .expect("renders"),
    );
    assert!(!objects.contains_key("HorizontalPodAutoscaler/edge-portcullis"));
    assert_eq!(
        get(&objects, "Deployment/edge-portcullis")["spec"]["replicas"],
        3
    );
    let pdb = &get(&objects, "PodDisruptionBudget/edge-portcullis")["spec"];
    assert_eq!(pdb["maxUnavailable"], 1);
    assert!(pdb["minAvailable"].is_null());
    let none = parse(&render(&["podDisruptionBudget.enabled=false"]).expect("renders"));
    assert!(!none.contains_key("PodDisruptionBudget/edge-portcullis"));

    // What cannot work is refused.
    let stuck = render(&["autoscaling.enabled=false", "replicaCount=1"])
        .expect_err("a budget no drain can satisfy");
    assert!(stuck.contains("must be below the replica count"), "{stuck}");
    let no_request =
        render(&["resources.requests.cpu=null"]).expect_err("CPU target without a request");
    assert!(
        no_request.contains("resources.requests.cpu"),
        "{no_request}"
    );
}

#[test]
fn per_gateway_services_are_off_unless_a_type_is_set_and_select_the_release_pods() {
    let off = args(get(&default_objects(), "Deployment/edge-portcullis"));
    assert!(
        off.iter().all(|a| !a.starts_with("--per-gateway-service")),
        "{off:?}"
    );
    let on = parse(&render(&["kubernetes.perGatewayService.type=ClusterIP"]).expect("renders"));
    let deployment = get(&on, "Deployment/edge-portcullis");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let labels: Vec<String> = ["app.kubernetes.io/name", "app.kubernetes.io/instance"]
        .iter()
        .map(|k| format!("{k}={}", selector[*k].as_str().expect("pod selector label")))
        .collect();
    let args = args(deployment);
    for expected in [
        "--per-gateway-service=ClusterIP".to_string(),
        format!("--per-gateway-service-selector={}", labels.join(",")),
    ] {
        assert!(args.contains(&expected), "{expected} in {args:?}");
    }
    let chosen = parse(
        &render(&[
            "kubernetes.perGatewayService.type=LoadBalancer",
            "kubernetes.perGatewayService.selector.role=edge",
        ])
        .expect("renders"),
    );
    let args = super::args(get(&chosen, "Deployment/edge-portcullis"));
    assert!(args.contains(&"--per-gateway-service-selector=role=edge".to_string()));
    assert!(args.contains(&"--per-gateway-service=LoadBalancer".to_string()));
}

#[test]
fn the_gateway_class_names_the_controller() {
    let objects = parse(
        &render(&["gatewayClass.name=edge", "controllerName=example.com/edge"]).expect("renders"),
    );
    let class = get(&objects, "GatewayClass/edge");
    assert_eq!(class["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(class["spec"]["controllerName"], "example.com/edge");
    assert!(args(get(&objects, "Deployment/edge-portcullis"))
        .contains(&"--controller-name=example.com/edge".to_string()));
    let none = parse(&render(&["gatewayClass.create=false"]).expect("renders"));
    assert!(none.keys().all(|k| !k.starts_with("GatewayClass/")));
}

#[test]
fn standalone_mode_renders_nothing_of_kubernetes_mode() {
    let yaml = render(&[super::STANDALONE]).expect("renders");
    let objects = parse(&yaml);
    for key in objects.keys() {
        let kind = key.split('/').next().expect("kind");
        assert!(
            [
                "ConfigMap",
                "PersistentVolumeClaim",
                "Service",
                "Deployment"
            ]
            .contains(&kind),
            "{key} in standalone mode"
        );
    }
    let deployment = get(&objects, "Deployment/edge-portcullis");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
    kubernetes_validate(&yaml).expect("valid");
}
