//! Writing the `certificateRefs` portcullis fills back into Gateways and
//! ListenerSets, so users see in the API which Secret a listener is served
//! from (`kubectl get gateway -o yaml`), as cert-manager's users see the
//! Secret their Certificate names.
//!
//! [`plan`] is pure: for every Gateway and ListenerSet it decides the
//! server-side apply body that makes the object carry exactly the
//! references portcullis filled, and the [`FILLED_ANNOTATION`] listing
//! those listeners (which keeps them managed: see `issuer::demand`), or
//! nothing when the object already does. Bodies are applied under a field
//! manager of their own ([`FIELD_MANAGER`]), so they own only those fields:
//! a later `kubectl apply` or GitOps sync of the user's manifest, which does
//! not mention them, leaves them alone, and a user who writes their own
//! `certificateRefs` takes the field over (the listener is then theirs).
//! When a listener stops being filled, the next body leaves it out and the
//! API server removes what this manager owned.

use crate::issuer::demand::{
    auto_filled_secret, filled_listeners, managed_listeners, OwnerKind, FILLED_ANNOTATION,
};
use crate::model::gateway::Listener;
use crate::model::{ObjectKey, ObjectMeta, Resources};
use serde_json::json;
use std::collections::BTreeMap;

/// The field manager of the written-back references.
pub const FIELD_MANAGER: &str = "portcullis.dev/certificate-refs";

/// One server-side apply to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Writeback {
    /// Gateway or ListenerSet.
    pub kind: OwnerKind,
    /// Which one.
    pub key: ObjectKey,
    /// The apply body.
    pub body: serde_json::Value,
}

/// The writes that make every Gateway (of a class whose controller is
/// `controller_name`) and ListenerSet (of such a Gateway) carry the
/// references portcullis fills; empty when they all do. Objects of other
/// controllers are never written.
pub fn plan(resources: &Resources, controller_name: &str) -> Vec<Writeback> {
    let classes: Vec<&str> = resources
        .gateway_classes
        .iter()
        .filter(|c| c.spec.controller_name == controller_name)
        .map(|c| c.metadata.name.as_str())
        .collect();
    let ours: std::collections::BTreeSet<ObjectKey> = resources
        .gateways
        .iter()
        .filter(|g| classes.contains(&g.spec.gateway_class_name.as_str()))
        .map(|g| g.metadata.key())
        .collect();
    let mut filled: BTreeMap<(OwnerKind, ObjectKey), Vec<String>> = BTreeMap::new();
    for m in managed_listeners(resources)
        .into_iter()
        .filter(|m| m.auto_filled && ours.contains(&m.gateway.metadata.key()))
    {
        filled
            .entry((m.owner_kind(), m.owner().key()))
            .or_default()
            .push(m.listener.name.clone());
    }
    let owners = resources
        .gateways
        .iter()
        .filter(|g| ours.contains(&g.metadata.key()))
        .map(|g| (OwnerKind::Gateway, &g.metadata, g.spec.listeners.as_slice()))
        .chain(
            resources
                .listener_sets
                .iter()
                .filter(|s| {
                    let p = &s.spec.parent_ref;
                    let ns = p.namespace.as_deref().unwrap_or(&s.metadata.namespace);
                    ours.contains(&ObjectKey::new(ns, &p.name))
                })
                .map(|s| {
                    (
                        OwnerKind::ListenerSet,
                        &s.metadata,
                        s.spec.listeners.as_slice(),
                    )
                }),
        );
    let mut out = Vec::new();
    for (kind, meta, listeners) in owners {
        let mut want = filled.remove(&(kind, meta.key())).unwrap_or_default();
        want.sort();
        want.dedup();
        if carries(meta, listeners, &want) {
            continue;
        }
        out.push(Writeback {
            kind,
            key: meta.key(),
            body: body(kind, meta, &want),
        });
    }
    out
}

/// Whether the object already lists exactly `want` in its annotation and
/// each of those listeners names the Secret portcullis fills it with.
fn carries(meta: &ObjectMeta, listeners: &[Listener], want: &[String]) -> bool {
    let mut listed: Vec<&str> = filled_listeners(&meta.annotations);
    listed.sort_unstable();
    if want.is_empty() {
        return !meta.annotations.contains_key(FILLED_ANNOTATION);
    }
    listed == want.iter().map(String::as_str).collect::<Vec<_>>()
        && want.iter().all(|name| {
            listeners.iter().any(|l| {
                &l.name == name
                    && l.tls.as_ref().is_some_and(|t| {
                        matches!(t.certificate_refs.as_slice(),
                            [r] if r.name == auto_filled_secret(&meta.name, name) && r.namespace.is_none())
                    })
            })
        })
}

/// The apply body: the annotation and each listener's reference, nothing
/// else (what this manager does not mention it gives up).
fn body(kind: OwnerKind, meta: &ObjectMeta, want: &[String]) -> serde_json::Value {
    let kind_name = match kind {
        OwnerKind::Gateway => "Gateway",
        OwnerKind::ListenerSet => "ListenerSet",
    };
    let mut metadata = json!({"name": meta.name, "namespace": meta.namespace});
    if !want.is_empty() {
        metadata["annotations"] = json!({ FILLED_ANNOTATION: want.join(",") });
    }
    let listeners: Vec<serde_json::Value> = want
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "tls": {"certificateRefs": [{
                    "group": "",
                    "kind": "Secret",
                    "name": auto_filled_secret(&meta.name, name),
                }]}
            })
        })
        .collect();
    let mut body = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": kind_name,
        "metadata": metadata,
    });
    if !listeners.is_empty() {
        body["spec"] = json!({ "listeners": listeners });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load::parse_documents;

    fn resources(yaml: &str) -> Resources {
        Resources::from_objects(parse_documents(yaml, "t.yaml").expect("parses").objects)
    }

    const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: c}\nspec: {controllerName: portcullis.dev/gateway-controller}\n---\n";
    const OURS: &str = "portcullis.dev/gateway-controller";

    const GW: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: edge, ANNOTATIONS}\nspec:\n  gatewayClassName: c\n  listeners:\n  - {name: web, protocol: HTTPS, port: 443, hostname: a.test TLS}\n  - {name: mine, protocol: HTTPS, port: 443, hostname: b.test, tls: {certificateRefs: [{name: own}]}}\n  - {name: plain, protocol: HTTP, port: 80}\n";

    fn gateway(annotations: &str, tls: &str) -> Resources {
        resources(&format!(
            "{CLASS}{}",
            GW.replace("ANNOTATIONS", annotations).replace(" TLS", tls)
        ))
    }

    #[test]
    fn a_listener_without_a_secret_gets_its_reference_and_the_annotation() {
        let plan = plan(&gateway("annotations: {}", ""), OURS);
        assert_eq!(plan.len(), 1);
        let body = &plan[0].body;
        assert_eq!(body["kind"], "Gateway");
        assert_eq!(body["metadata"]["annotations"][FILLED_ANNOTATION], "web");
        assert_eq!(
            body["spec"]["listeners"],
            json!([{"name": "web", "tls": {"certificateRefs": [{"group": "", "kind": "Secret", "name": "gw-web-tls"}]}}])
        );
    }

    #[test]
    fn nothing_is_written_once_the_object_carries_the_reference() {
        let written = gateway(
            "annotations: {portcullis.dev/filled-certificate-refs: web}",
            ", tls: {certificateRefs: [{group: '', kind: Secret, name: gw-web-tls}]}",
        );
        assert_eq!(plan(&written, OURS), vec![]);
    }

    #[test]
    fn a_reference_the_user_replaced_is_given_up() {
        let taken = gateway(
            "annotations: {portcullis.dev/filled-certificate-refs: web}",
            ", tls: {certificateRefs: [{name: theirs}]}",
        );
        let plan = plan(&taken, OURS);
        assert_eq!(plan.len(), 1);
        assert!(plan[0].body.get("spec").is_none(), "{:?}", plan[0].body);
        assert!(plan[0].body["metadata"].get("annotations").is_none());
    }

    #[test]
    fn gateways_of_other_controllers_are_never_written() {
        let foreign = gateway("annotations: {}", "");
        assert!(plan(&foreign, "example.com/other-controller").is_empty());
    }

    #[test]
    fn objects_with_nothing_filled_and_no_annotation_are_left_alone() {
        let r = resources("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: edge}\nspec:\n  gatewayClassName: c\n  listeners:\n  - {name: plain, protocol: HTTP, port: 80}\n");
        assert!(plan(&r, OURS).is_empty());
    }
}
