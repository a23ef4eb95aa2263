use super::*;
use crate::cluster::cache::KindCache;
use crate::model::load::parse_documents;
use crate::status::{Condition, ObjectStatus, Reason};

const OURS: &str = "portcullis.dev/gateway-controller";

fn resources(yaml: &str) -> Resources {
    Resources::from_objects(parse_documents(yaml, "t.yaml").expect("parses").objects)
}

fn gateway(name: &str, infrastructure: &str, listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: edge}}\nspec:\n  gatewayClassName: c\n  {infrastructure}\n  listeners:\n{listeners}---\n"
    )
}

const WEB: &str = "  - {name: web, protocol: HTTP, port: 80}\n  - {name: tls, protocol: HTTPS, port: 443}\n  - {name: pass, protocol: TLS, port: 443}\n  - {name: dns, protocol: UDP, port: 53}\n  - {name: dns-tcp, protocol: TCP, port: 53}\n";

/// The status compile gives: the named Gateways are ours; ListenerSets
/// with their Accepted condition.
fn status(gateways: &[&str], sets: &[(&str, bool)]) -> Status {
    let mut objects: Vec<ObjectStatus> = gateways
        .iter()
        .map(|g| ObjectStatus::new("Gateway", "edge", g))
        .collect();
    for (name, accepted) in sets {
        let mut s = ObjectStatus::new("ListenerSet", "edge", name);
        s.conditions.push(Condition::new(
            ConditionType::Accepted,
            *accepted,
            if *accepted {
                Reason::Accepted
            } else {
                Reason::NotAllowed
            },
            "",
            1,
        ));
        objects.push(s);
    }
    Status { objects }
}

/// What the source keeps of `value` as served.
fn served(kind: Watched, value: Value) -> ((Watched, ObjectKey), Live) {
    let mut cache = KindCache::new(kind, kind.api_resource("v1"));
    let key = super::super::kinds::key_of(&value);
    cache.apply(value);
    let live = cache.objects()[&key].live.clone();
    ((kind, key), live)
}

fn gateway_live(name: &str) -> ((Watched, ObjectKey), Live) {
    served(
        Watched::Gateway,
        json!({"metadata": {"name": name, "namespace": "edge", "uid": format!("uid-{name}"),
                            "resourceVersion": "1", "generation": 1}}),
    )
}

/// The managed-fields set a server-side apply of `body` leaves.
fn fields_of(body: &Value) -> Value {
    let keys = |v: &Value| -> Value {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| (format!("f:{k}"), json!({})))
            .collect::<Map<String, Value>>()
            .into()
    };
    let items = |v: &Value, key: &[&str]| -> Value {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                let k: Map<String, Value> =
                    key.iter().map(|f| (f.to_string(), i[*f].clone())).collect();
                (key_segment(&k), json!({".": {}}))
            })
            .collect::<Map<String, Value>>()
            .into()
    };
    json!({
        "f:metadata": {
            "f:labels": keys(&body["metadata"]["labels"]),
            "f:annotations": keys(&body["metadata"]["annotations"]),
            "f:ownerReferences": items(&body["metadata"]["ownerReferences"], &["uid"]),
        },
        "f:spec": {
            "f:type": {}, "f:selector": {},
            "f:ports": items(&body["spec"]["ports"], &["port", "protocol"]),
        }
    })
}

/// The Service the API server holds after `body` was applied (with what
/// it fills in itself), as the source keeps it.
fn applied(body: &Value, uid: &str) -> ((Watched, ObjectKey), Live) {
    let mut value = body.clone();
    value["metadata"]["uid"] = json!(uid);
    value["metadata"]["resourceVersion"] = json!("5");
    value["metadata"]["managedFields"] = json!([
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
         "fieldsV1": fields_of(body)},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "fieldsV1": {"f:status": {}}}
    ]);
    value["spec"]["clusterIP"] = json!("10.0.0.7");
    value["spec"]["sessionAffinity"] = json!("None");
    served(Watched::Service, value)
}

fn options() -> ServiceOptions {
    ServiceOptions {
        service_type: ServiceType::LoadBalancer,
        selector: [(
            "app.kubernetes.io/name".to_string(),
            "portcullis".to_string(),
        )]
        .into(),
    }
}

fn settings(service: Option<&ServiceOptions>) -> Settings<'_> {
    Settings {
        controller_name: OURS,
        service,
        port_offset: 0,
    }
}

type LiveMap = BTreeMap<(Watched, ObjectKey), Live>;

/// Gateway `gw` live, and its Service as the first plan for `r` makes it
/// (uid `svc-1`); the apply body too.
fn converged(r: &Resources, o: &ServiceOptions) -> (LiveMap, Value) {
    let mut live: LiveMap = [gateway_live("gw")].into();
    let first = plan(r, &status(&["gw"], &[]), &live, &settings(Some(o)));
    let body = first.applies[0].body.clone();
    let (key, l) = applied(&body, "svc-1");
    live.insert(key, l);
    (live, body)
}

fn infra() -> &'static str {
    "infrastructure: {labels: {team: edge, tier: front}, annotations: {note: kept}}"
}

#[test]
fn a_gateway_of_ours_gets_a_service_carrying_its_infrastructure() {
    let r = resources(&gateway("gw", infra(), WEB));
    let live: LiveMap = [gateway_live("gw")].into();
    let o = options();
    let plan = plan(&r, &status(&["gw"], &[]), &live, &settings(Some(&o)));
    assert_eq!(plan.deletes, vec![]);
    assert_eq!(plan.applies.len(), 1);
    let a = &plan.applies[0];
    assert_eq!(a.key, ObjectKey::new("edge", "portcullis-gw"));
    let meta = &a.body["metadata"];
    assert_eq!(meta["labels"]["team"], "edge");
    assert_eq!(meta["labels"]["tier"], "front");
    assert_eq!(meta["labels"][GATEWAY_NAME_LABEL], "gw");
    assert_eq!(meta["labels"][MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(
        meta["labels"][CONTROLLER_LABEL],
        crate::hashing::short_digest(OURS.as_bytes())
    );
    assert_eq!(meta["annotations"], json!({"note": "kept"}));
    assert_eq!(
        meta["ownerReferences"],
        json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "gw",
                "uid": "uid-gw", "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(a.body["spec"]["type"], "LoadBalancer");
    assert_eq!(
        a.body["spec"]["selector"],
        json!({"app.kubernetes.io/name": "portcullis"})
    );
}

#[test]
fn ports_are_the_distinct_port_and_protocol_pairs_of_the_listeners() {
    let r = resources(&gateway("gw", "", WEB));
    let live: LiveMap = [gateway_live("gw")].into();
    let o = options();
    let mut s = settings(Some(&o));
    s.port_offset = 10000;
    let plan = plan(&r, &status(&["gw"], &[]), &live, &s);
    assert_eq!(
        plan.applies[0].body["spec"]["ports"],
        json!([
            {"name": "tcp-53", "port": 53, "protocol": "TCP", "targetPort": 10053},
            {"name": "udp-53", "port": 53, "protocol": "UDP", "targetPort": 10053},
            {"name": "tcp-80", "port": 80, "protocol": "TCP", "targetPort": 10080},
            {"name": "tcp-443", "port": 443, "protocol": "TCP", "targetPort": 10443},
        ])
    );
    assert!(
        plan.applies[0].body["metadata"]
            .get("annotations")
            .is_none(),
        "no infrastructure, no annotations"
    );
}

#[test]
fn attached_listener_sets_add_their_ports() {
    let set = |name: &str, port: u16| {
        format!("apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {{name: {name}, namespace: edge}}\nspec:\n  parentRef: {{name: gw}}\n  listeners:\n  - {{name: extra, protocol: HTTP, port: {port}}}\n---\n")
    };
    let r = resources(&format!(
        "{}{}{}",
        gateway("gw", "", "  - {name: web, protocol: HTTP, port: 80}\n"),
        set("admitted", 8081),
        set("refused", 8082)
    ));
    let live: LiveMap = [gateway_live("gw")].into();
    let o = options();
    let st = status(&["gw"], &[("admitted", true), ("refused", false)]);
    let plan = plan(&r, &st, &live, &settings(Some(&o)));
    let ports: Vec<&Value> = plan.applies[0].body["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| &p["port"])
        .collect();
    assert_eq!(ports, [&json!(80), &json!(8081)]);
}

#[test]
fn nothing_is_written_once_the_service_says_it() {
    let r = resources(&gateway("gw", infra(), WEB));
    let o = options();
    let st = status(&["gw"], &[]);
    let (mut live, body) = converged(&r, &o);
    let key = (Watched::Service, ObjectKey::new("edge", "portcullis-gw"));
    assert_eq!(plan(&r, &st, &live, &settings(Some(&o))), Plan::default());
    // Labels and annotations others add (a load balancer controller's)
    // are theirs: still nothing to write.
    let mut value = live[&key].object.value();
    value["metadata"]["labels"]["other"] = json!("x");
    value["metadata"]["annotations"]["lb.example/pool"] = json!("a");
    value["metadata"]["managedFields"] = json!([
        {"manager": FIELD_MANAGER, "operation": "Apply",
         "fieldsV1": fields_of(&body)}
    ]);
    let (_, l) = served(Watched::Service, value);
    live.insert(key, l);
    assert_eq!(plan(&r, &st, &live, &settings(Some(&o))), Plan::default());
}

#[test]
fn a_label_removed_from_the_gateway_is_written_away() {
    let o = options();
    let st = status(&["gw"], &[]);
    let (live, _) = converged(&resources(&gateway("gw", infra(), WEB)), &o);
    let after = resources(&gateway(
        "gw",
        "infrastructure: {labels: {team: edge}, annotations: {note: kept}}",
        WEB,
    ));
    let plan = plan(&after, &st, &live, &settings(Some(&o)));
    assert_eq!(plan.applies.len(), 1, "tier is still on the Service");
    assert!(plan.applies[0].body["metadata"]["labels"]
        .get("tier")
        .is_none());
}

#[test]
fn a_changed_port_or_type_is_written() {
    let o = options();
    let st = status(&["gw"], &[]);
    let r = resources(&gateway("gw", "", WEB));
    let (live, _) = converged(&r, &o);
    let fewer = resources(&gateway(
        "gw",
        "",
        "  - {name: web, protocol: HTTP, port: 80}\n",
    ));
    assert_eq!(
        plan(&fewer, &st, &live, &settings(Some(&o))).applies.len(),
        1
    );
    let node_port = ServiceOptions {
        service_type: ServiceType::NodePort,
        ..options()
    };
    assert_eq!(
        plan(&r, &st, &live, &settings(Some(&node_port)))
            .applies
            .len(),
        1
    );
}

#[test]
fn services_no_gateway_wants_are_deleted_and_others_left_alone() {
    let o = options();
    let r = resources(&gateway("gw", "", WEB));
    let (mut live, body) = converged(&r, &o);
    // Another installation's Service, and a user's.
    let mut theirs = body.clone();
    theirs["metadata"]["name"] = json!("portcullis-elsewhere");
    theirs["metadata"]["labels"][CONTROLLER_LABEL] = json!("0123");
    let (k, l) = applied(&theirs, "svc-2");
    live.insert(k, l);
    let (k, l) = served(
        Watched::Service,
        json!({"metadata": {"name": "backend", "namespace": "edge", "uid": "svc-3", "resourceVersion": "3"}}),
    );
    live.insert(k, l);
    let gone = vec![ServiceDelete {
        key: ObjectKey::new("edge", "portcullis-gw"),
        uid: "svc-1".into(),
    }];
    // The Gateway is no longer ours (another class).
    assert_eq!(
        plan(&r, &status(&[], &[]), &live, &settings(Some(&o))).deletes,
        gone
    );
    // The Gateway was deleted.
    let none = Resources::default();
    assert_eq!(
        plan(&none, &status(&[], &[]), &live, &settings(Some(&o))).deletes,
        gone
    );
    // The flag was turned off.
    let off = plan(&r, &status(&["gw"], &[]), &live, &settings(None));
    assert_eq!(off.deletes, gone);
    assert!(off.applies.is_empty());
}

#[test]
fn a_service_of_another_owner_with_the_name_is_not_taken_over() {
    let o = options();
    let r = resources(&gateway("gw", "", WEB));
    let (k, l) = served(
        Watched::Service,
        json!({"metadata": {"name": "portcullis-gw", "namespace": "edge", "uid": "u", "resourceVersion": "3"},
               "spec": {"selector": {"app": "mine"}}}),
    );
    let live: LiveMap = [gateway_live("gw"), (k, l)].into();
    let plan = plan(&r, &status(&["gw"], &[]), &live, &settings(Some(&o)));
    assert_eq!(plan.applies, vec![]);
    assert_eq!(plan.taken, vec![ObjectKey::new("edge", "portcullis-gw")]);
}

#[test]
fn gateways_not_ours_or_not_yet_seen_live_get_none() {
    let o = options();
    let r = resources(&format!(
        "{}{}",
        gateway("foreign", "", WEB),
        gateway("new", "", WEB)
    ));
    let live: LiveMap = [gateway_live("foreign")].into();
    let plan = plan(&r, &status(&["new"], &[]), &live, &settings(Some(&o)));
    assert_eq!(plan, Plan::default());
}

#[test]
fn names_are_valid_service_names() {
    assert_eq!(service_name("gw"), "portcullis-gw");
    let dotted = service_name("api.example");
    assert!(dotted.starts_with("portcullis-api-example-"), "{dotted}");
    assert_ne!(dotted, service_name("api-example"));
    let long_a = service_name(&"a".repeat(200));
    let long_b = service_name(&format!("{}b", "a".repeat(199)));
    assert!(long_a.len() <= 63 && long_b.len() <= 63, "{long_a}");
    assert_ne!(long_a, long_b);
    for name in [dotted, long_a] {
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }
}

#[test]
fn flag_values_parse() {
    assert_eq!("LoadBalancer".parse(), Ok(ServiceType::LoadBalancer));
    assert_eq!("clusterip".parse(), Ok(ServiceType::ClusterIp));
    assert!("ExternalName".parse::<ServiceType>().is_err());
    assert_eq!(
        "app.kubernetes.io/name=portcullis".parse(),
        Ok(Label {
            key: "app.kubernetes.io/name".into(),
            value: "portcullis".into()
        })
    );
    assert!("novalue".parse::<Label>().is_err());
}
