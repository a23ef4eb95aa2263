//! [`augment`]: the resources compile sees once the issuer is taken into
//! account. Pure. Stored certificates become `kubernetes.io/tls` Secrets,
//! and listeners the issuer fills get `certificateRefs` naming
//! `<gateway>-<listener>-tls` (a ListenerSet's listeners:
//! `<listenerset>-<listener>-tls`), so the compiled model and `/status` show
//! the effective references.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::demand::{managed_listeners, OwnerKind};
use crate::model::gateway::{Listener, ListenerTls, SecretObjectReference};
use crate::model::{ObjectKey, ObjectMeta, Resources, Secret};
use crate::store::{StoreKey, StoredCert};

/// Returns `resources` with `stored` certificates as Secrets and the
/// certificateRefs of auto-filled listeners set.
///
/// A stored certificate replaces a manifest Secret of the same name only if
/// a managed listener uses that Secret (the issuer owns it then); otherwise
/// the manifest wins and the stored copy is only added where no Secret of
/// that name exists.
pub fn augment(resources: &Resources, stored: &BTreeMap<StoreKey, StoredCert>) -> Resources {
    let managed = managed_listeners(resources);
    let owned: Vec<StoreKey> = managed.iter().map(|m| m.secret.clone()).collect();
    // (declared by, listener, Secret name) of each auto-filled listener.
    let auto: Vec<(OwnerKind, ObjectKey, String, String)> = managed
        .iter()
        .filter(|m| m.auto_filled)
        .map(|m| {
            (
                m.owner_kind(),
                m.owner().key(),
                m.listener.name.clone(),
                m.secret.name().to_string(),
            )
        })
        .collect();
    let mut out = resources.clone();
    for (key, cert) in stored {
        let existing = out
            .secrets
            .iter()
            .position(|s| s.metadata.namespace == key.namespace() && s.metadata.name == key.name());
        let secret = Secret {
            metadata: ObjectMeta {
                name: key.name().to_string(),
                namespace: key.namespace().to_string(),
                ..ObjectMeta::default()
            },
            kind: "kubernetes.io/tls".into(),
            data: BTreeMap::from([
                (
                    "tls.crt".to_string(),
                    cert.cert_chain_pem.clone().into_bytes(),
                ),
                ("tls.key".to_string(), cert.key_pem.clone().into_bytes()),
            ]),
        };
        match existing {
            Some(i) if owned.contains(key) => out.secrets[i] = Arc::new(secret),
            Some(_) => {}
            None => out.secrets.push(Arc::new(secret)),
        }
    }
    // Objects are shared with the snapshot: only the owners of filled
    // listeners are copied.
    let owners: BTreeSet<(OwnerKind, &ObjectKey)> = auto.iter().map(|(k, o, ..)| (*k, o)).collect();
    for gw in &mut out.gateways {
        let key = gw.metadata.key();
        if owners.contains(&(OwnerKind::Gateway, &key)) {
            let gw = Arc::make_mut(gw);
            fill(&auto, OwnerKind::Gateway, &key, &mut gw.spec.listeners);
        }
    }
    for set in &mut out.listener_sets {
        let key = set.metadata.key();
        if owners.contains(&(OwnerKind::ListenerSet, &key)) {
            let set = Arc::make_mut(set);
            fill(&auto, OwnerKind::ListenerSet, &key, &mut set.spec.listeners);
        }
    }
    out
}

/// Points each of `listeners` (declared by `kind` `owner`) that `auto`
/// lists at its auto-filled Secret, in the owner's namespace.
fn fill(
    auto: &[(OwnerKind, ObjectKey, String, String)],
    kind: OwnerKind,
    owner: &ObjectKey,
    listeners: &mut [Listener],
) {
    for l in listeners {
        let Some((.., secret)) = auto
            .iter()
            .find(|(k, o, n, _)| *k == kind && o == owner && *n == l.name)
        else {
            continue;
        };
        let tls = l.tls.get_or_insert_with(ListenerTls::default);
        tls.certificate_refs = vec![SecretObjectReference {
            group: None,
            kind: Some("Secret".into()),
            name: secret.clone(),
            namespace: None,
        }];
    }
}

/// Throwaway self-signed certificates for every managed Secret that
/// `resources` does not already hold, for `portcullis check`: compiling
/// with them reports what `serve` shows once the issuer has issued
/// (issuance itself is reported by `portcullis certs`).
pub fn placeholders(resources: &Resources) -> BTreeMap<StoreKey, StoredCert> {
    let mut out = BTreeMap::new();
    for m in managed_listeners(resources) {
        if out.contains_key(&m.secret)
            || resources
                .secret(m.secret.namespace(), m.secret.name())
                .is_some()
        {
            continue;
        }
        let made = rcgen::generate_simple_self_signed(vec!["placeholder.invalid".to_string()]);
        match made {
            Ok(c) => {
                out.insert(
                    m.secret,
                    StoredCert {
                        cert_chain_pem: c.cert.pem(),
                        key_pem: c.signing_key.serialize_pem(),
                        ca_pem: None,
                    },
                );
            }
            Err(error) => tracing::warn!(%error, "cannot make a placeholder certificate"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, CompileOptions};
    use crate::issuer::LocalCa;
    use crate::model::load::parse_documents;
    use std::time::{Duration, SystemTime};

    const YAML: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: pc
  listeners:
    - {name: web, protocol: HTTPS, port: 443, hostname: app.test}
    - {name: own, protocol: HTTPS, port: 443, hostname: own.test, tls: {certificateRefs: [{name: mine}]}}
---
apiVersion: v1
kind: Secret
metadata: {name: mine, namespace: default}
type: kubernetes.io/tls
stringData: {tls.crt: user-cert, tls.key: user-key}
"#;

    fn resources() -> Resources {
        Resources::from_objects(parse_documents(YAML, "t.yaml").expect("parses").objects)
    }

    #[test]
    fn auto_filled_listener_points_at_its_secret_and_compiles_with_the_stored_certificate() {
        let ca = LocalCa::generate(SystemTime::now()).expect("CA");
        let cert = ca
            .issue(
                &["app.test".into()],
                Duration::from_secs(3600),
                SystemTime::now(),
            )
            .expect("issue");
        let key = StoreKey::new("default", "gw-web-tls").expect("valid");
        let out = augment(&resources(), &BTreeMap::from([(key, cert)]));
        let refs = &out.gateways[0].spec.listeners[0]
            .tls
            .as_ref()
            .expect("tls filled")
            .certificate_refs;
        assert_eq!(refs[0].name, "gw-web-tls");
        let status = compile(&out, &CompileOptions::default()).status;
        let gw = status
            .find("Gateway", "default", "gw")
            .expect("gateway status");
        assert_eq!(gw.listeners[0].certificate_refs, ["default/gw-web-tls"]);
    }

    #[test]
    fn placeholders_let_managed_listeners_resolve_in_check() {
        let r = resources();
        let filled = placeholders(&r);
        let keys: Vec<String> = filled.keys().map(ToString::to_string).collect();
        assert_eq!(keys, ["default/gw-web-tls"]);
        let status = compile(&augment(&r, &filled), &CompileOptions::default()).status;
        let gw = status
            .find("Gateway", "default", "gw")
            .expect("gateway status");
        let web = &gw.listeners[0];
        assert!(
            web.conditions
                .iter()
                .all(|c| c.status == crate::status::ConditionStatus::True
                    || c.kind == crate::status::ConditionType::Conflicted),
            "{web:?}"
        );
    }

    #[test]
    fn stored_copy_never_shadows_a_user_secret_the_issuer_does_not_own() {
        let key = StoreKey::new("default", "mine").expect("valid");
        let stored = StoredCert {
            cert_chain_pem: "stored".into(),
            key_pem: "stored".into(),
            ca_pem: None,
        };
        let out = augment(&resources(), &BTreeMap::from([(key, stored)]));
        let mine = out.secret("default", "mine").expect("kept");
        assert_eq!(mine.data["tls.crt"], b"user-cert");
        // The user's listener keeps its own reference.
        let own = &out.gateways[0].spec.listeners[1];
        assert_eq!(
            own.tls.as_ref().expect("tls").certificate_refs[0].name,
            "mine"
        );
    }

    #[test]
    fn auto_filled_listener_set_listener_points_at_its_secret_in_its_namespace() {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: pc
  allowedListeners: {namespaces: {from: All}}
  listeners:
    - {name: web, protocol: HTTPS, port: 443, hostname: app.test}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: apps}
spec:
  parentRef: {name: gw, namespace: default}
  listeners:
    - {name: web, protocol: HTTPS, port: 443, hostname: extra.test}
"#;
        let r = Resources::from_objects(parse_documents(yaml, "t.yaml").expect("parses").objects);
        let ca = LocalCa::generate(SystemTime::now()).expect("CA");
        let cert = ca
            .issue(
                &["extra.test".into()],
                Duration::from_secs(3600),
                SystemTime::now(),
            )
            .expect("issue");
        let key = StoreKey::new("apps", "extra-web-tls").expect("valid");
        let out = augment(&r, &BTreeMap::from([(key, cert)]));
        // The Gateway's listener of the same name keeps its own Secret.
        let gw_ref = &out.gateways[0].spec.listeners[0]
            .tls
            .as_ref()
            .expect("tls filled")
            .certificate_refs[0];
        assert_eq!(gw_ref.name, "gw-web-tls");
        let status = compile(&out, &CompileOptions::default()).status;
        let set = status
            .find("ListenerSet", "apps", "extra")
            .expect("listener set status");
        assert_eq!(set.listeners[0].certificate_refs, ["apps/extra-web-tls"]);
        assert!(
            set.listeners[0]
                .conditions
                .iter()
                .all(|c| c.status == crate::status::ConditionStatus::True
                    || c.kind == crate::status::ConditionType::Conflicted),
            "{set:?}"
        );
    }
}
