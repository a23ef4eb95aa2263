//! The issuer's state in the API server ([`KubeStore`]): the Kubernetes
//! implementation of [`crate::store::Store`], so a new leader replica finds
//! the account, the pending orders, the local CA and the records where the
//! last one left them.
//!
//! | state | object |
//! |---|---|
//! | issued pair | `kubernetes.io/tls` Secret the listener names (`tls.crt`, `tls.key`, `ca.crt`), annotated with issuer, names, expiry and renewal time |
//! | ACME account key | the issuer's `privateKeySecretRef` Secret (`tls.key`) |
//! | pending order | Secret `portcullis-order-<hash>` in the controller namespace (it may hold the key its CSR was made with) |
//! | local CA | Secret `portcullis-local-ca` in the controller namespace |
//! | records | ConfigMap `portcullis-issuer-records` in the controller namespace |
//!
//! Every object portcullis writes carries `portcullis.dev/managed: "true"`
//! and a `portcullis.dev/role`; one without the label is never overwritten
//! ([`Error::Unmanaged`]), and the chart's admission policy refuses it at
//! the API server too. Each write is one request (server-side apply, or a
//! create for the CA), so it is atomic. Issued pairs are read from the
//! source's cache when it holds the current version.

use super::source::SecretCache;
use crate::model::ObjectKey;
use crate::store::{AccountId, CertMeta, Error, PendingOrder, Record, Store, StoreKey, StoredCert};
use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// The label every object portcullis writes carries.
pub const MANAGED_LABEL: &str = "portcullis.dev/managed";
/// What an object portcullis wrote is for.
pub const ROLE_LABEL: &str = "portcullis.dev/role";
/// The field manager of the issuer's writes.
pub const FIELD_MANAGER: &str = "portcullis.dev/issuer";
/// The local CA's Secret, in the controller namespace.
pub const LOCAL_CA_SECRET: &str = "portcullis-local-ca";
/// The records' ConfigMap, in the controller namespace.
pub const RECORDS_CONFIG_MAP: &str = "portcullis-issuer-records";
/// Annotation: `Issuer`, `ClusterIssuer` or `local-ca`.
pub const ISSUER_KIND_ANNOTATION: &str = "portcullis.dev/issuer-kind";
/// Annotation: the issuer's name.
pub const ISSUER_NAME_ANNOTATION: &str = "portcullis.dev/issuer-name";
/// Annotation: the names the certificate was requested for, comma-separated.
pub const DNS_NAMES_ANNOTATION: &str = "portcullis.dev/dns-names";
/// Annotation: the leaf's notAfter (RFC 3339).
pub const NOT_AFTER_ANNOTATION: &str = "portcullis.dev/not-after";
/// Annotation: when portcullis will renew it (RFC 3339).
pub const RENEWAL_TIME_ANNOTATION: &str = "portcullis.dev/renewal-time";
/// Annotation on an account key Secret: the ACME server it was registered with.
pub const SERVER_ANNOTATION: &str = "portcullis.dev/acme-server";

/// The Kubernetes store.
pub struct KubeStore {
    client: kube::Client,
    namespace: String,
    cache: Option<SecretCache>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl KubeStore {
    /// A store keeping controller-wide state in `namespace`; issued pairs are
    /// read from `cache` when it holds them.
    pub fn new(client: kube::Client, namespace: &str, cache: Option<SecretCache>) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            cache,
        }
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Reads a Secret; `None` when it does not exist.
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        self.secrets(namespace)
            .get_opt(name)
            .await
            .map_err(|e| api("reading", &format!("Secret {namespace}/{name}"), e))
    }

    /// Applies `body` to Secret `namespace/name`, refusing when it exists
    /// without the managed label.
    async fn apply_secret(
        &self,
        namespace: &str,
        name: &str,
        body: serde_json::Value,
    ) -> Result<(), Error> {
        let what = format!("Secret {namespace}/{name}");
        if let Some(existing) = self.get_secret(namespace, name).await? {
            if !is_managed(&existing.metadata) {
                return Err(Error::Unmanaged { what });
            }
        }
        self.secrets(namespace)
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ())
            .map_err(|e| api("writing", &what, e))
    }

    async fn apply_config_map(&self, name: &str, body: serde_json::Value) -> Result<(), Error> {
        let what = format!("ConfigMap {}/{name}", self.namespace);
        self.config_maps()
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ())
            .map_err(|e| api("writing", &what, e))
    }

    async fn get_config_map(&self, name: &str) -> Result<Option<ConfigMap>, Error> {
        self.config_maps().get_opt(name).await.map_err(|e| {
            api(
                "reading",
                &format!("ConfigMap {}/{name}", self.namespace),
                e,
            )
        })
    }
}

/// Wraps a client error.
fn api(operation: &'static str, what: &str, e: kube::Error) -> Error {
    Error::Api {
        operation,
        what: what.to_string(),
        source: Box::new(e),
    }
}

fn is_managed(meta: &kube::api::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL))
        .is_some_and(|v| v == "true")
}

/// `data[key]` of a Secret, as text.
fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The pair in a Secret, when it has both halves.
fn pair_of(secret: &Secret) -> Option<StoredCert> {
    Some(StoredCert {
        cert_chain_pem: secret_text(secret, "tls.crt").filter(|c| !c.is_empty())?,
        key_pem: secret_text(secret, "tls.key").filter(|k| !k.is_empty())?,
        ca_pem: secret_text(secret, "ca.crt").filter(|c| !c.is_empty()),
    })
}

/// The pair in a model Secret (the source's cache).
fn pair_of_model(secret: &crate::model::Secret) -> Option<StoredCert> {
    let text = |k: &str| {
        secret
            .data
            .get(k)
            .and_then(|b| String::from_utf8(b.clone()).ok())
            .filter(|t| !t.is_empty())
    };
    Some(StoredCert {
        cert_chain_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
        ca_pem: text("ca.crt"),
    })
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

/// RFC 3339 UTC seconds.
fn rfc3339(t: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(t)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The name of the Secret holding `cert`'s pending order: a hash, since
/// `<namespace>-<name>` could exceed the name limit or be ambiguous.
fn order_secret(cert: &StoreKey) -> String {
    let hex =
        crate::hashing::short_digest(format!("{}/{}", cert.namespace(), cert.name()).as_bytes());
    format!("portcullis-order-{hex}")
}

/// The body of an issued pair's Secret.
pub fn cert_body(key: &StoreKey, cert: &StoredCert, meta: &CertMeta) -> serde_json::Value {
    let mut data = json!({
        "tls.crt": b64(&cert.cert_chain_pem),
        "tls.key": b64(&cert.key_pem),
    });
    if let Some(ca) = &cert.ca_pem {
        data["ca.crt"] = json!(b64(ca));
    }
    let mut annotations = json!({
        ISSUER_KIND_ANNOTATION: meta.issuer_kind,
        ISSUER_NAME_ANNOTATION: meta.issuer_name,
        DNS_NAMES_ANNOTATION: meta.dns_names.join(","),
    });
    if let Some(t) = meta.not_after {
        annotations[NOT_AFTER_ANNOTATION] = json!(rfc3339(t));
    }
    if let Some(t) = meta.renewal_time {
        annotations[RENEWAL_TIME_ANNOTATION] = json!(rfc3339(t));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": key.name(),
            "namespace": key.namespace(),
            "labels": {MANAGED_LABEL: "true", ROLE_LABEL: "certificate"},
            "annotations": annotations,
        },
        "type": "kubernetes.io/tls",
        "data": data,
    })
}

#[async_trait::async_trait]
impl Store for KubeStore {
    async fn get_cert(&self, key: &StoreKey) -> Result<Option<StoredCert>, Error> {
        let object = ObjectKey::new(key.namespace(), key.name());
        if let Some(secret) = self.cache.as_ref().and_then(|c| c.get(&object)) {
            return Ok(pair_of_model(&secret));
        }
        Ok(self
            .get_secret(key.namespace(), key.name())
            .await?
            .as_ref()
            .and_then(pair_of))
    }

    async fn put_cert(
        &self,
        key: &StoreKey,
        cert: &StoredCert,
        meta: &CertMeta,
    ) -> Result<(), Error> {
        self.apply_secret(key.namespace(), key.name(), cert_body(key, cert, meta))
            .await
    }

    async fn list_certs(&self) -> Result<Vec<StoreKey>, Error> {
        let all: Api<Secret> = Api::all(self.client.clone());
        let selector = format!("{MANAGED_LABEL}=true,{ROLE_LABEL}=certificate");
        let list = all
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| api("listing", "managed certificate Secrets", e))?;
        let mut keys: Vec<StoreKey> = list
            .items
            .iter()
            .filter_map(|s| {
                StoreKey::new(
                    s.metadata.namespace.clone().unwrap_or_default(),
                    s.metadata.name.clone().unwrap_or_default(),
                )
                .ok()
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn account_key(&self, account: &AccountId) -> Result<Option<String>, Error> {
        let s = account.secret();
        Ok(self
            .get_secret(s.namespace(), s.name())
            .await?
            .and_then(|secret| secret_text(&secret, "tls.key"))
            .filter(|k| !k.is_empty()))
    }

    async fn put_account_key(&self, account: &AccountId, key_pem: &str) -> Result<(), Error> {
        let s = account.secret();
        let body = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": s.name(),
                "namespace": s.namespace(),
                "labels": {MANAGED_LABEL: "true", ROLE_LABEL: "acme-account"},
                "annotations": {SERVER_ANNOTATION: account.server()},
            },
            "type": "Opaque",
            "data": {"tls.key": b64(key_pem)},
        });
        self.apply_secret(s.namespace(), s.name(), body).await
    }

    async fn pending_order(&self, cert: &StoreKey) -> Result<Option<PendingOrder>, Error> {
        let name = order_secret(cert);
        let Some(secret) = self.get_secret(&self.namespace, &name).await? else {
            return Ok(None);
        };
        let Some(text) = secret_text(&secret, "order.json") else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Decode {
                what: format!("Secret {}/{name}", self.namespace),
                reason: e.to_string(),
            })
    }

    async fn put_pending_order(&self, cert: &StoreKey, order: &PendingOrder) -> Result<(), Error> {
        let name = order_secret(cert);
        let text = serde_json::to_string(order).map_err(|source| Error::Encode {
            what: format!("Secret {}/{name}", self.namespace),
            source,
        })?;
        let body = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {MANAGED_LABEL: "true", ROLE_LABEL: "acme-order"},
                "annotations": {"portcullis.dev/certificate": format!("{}/{}", cert.namespace(), cert.name())},
            },
            "type": "Opaque",
            "data": {"order.json": b64(&text)},
        });
        self.apply_secret(&self.namespace, &name, body).await
    }

    async fn remove_pending_order(&self, cert: &StoreKey) -> Result<(), Error> {
        let name = order_secret(cert);
        match self
            .secrets(&self.namespace)
            .delete(&name, &Default::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(api(
                "deleting",
                &format!("Secret {}/{name}", self.namespace),
                e,
            )),
        }
    }

    async fn local_ca(&self) -> Result<Option<StoredCert>, Error> {
        let Some(secret) = self.get_secret(&self.namespace, LOCAL_CA_SECRET).await? else {
            return Ok(None);
        };
        match pair_of(&secret) {
            Some(pair) => Ok(Some(pair)),
            None => Err(Error::Incomplete {
                what: format!("Secret {}/{LOCAL_CA_SECRET}", self.namespace),
                reason: "tls.crt or tls.key is missing".into(),
            }),
        }
    }

    async fn create_local_ca(&self, ca: &StoredCert) -> Result<StoredCert, Error> {
        let mut secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": LOCAL_CA_SECRET,
                "namespace": self.namespace,
                "labels": {MANAGED_LABEL: "true", ROLE_LABEL: "local-ca"},
            },
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(&ca.cert_chain_pem), "tls.key": b64(&ca.key_pem)},
        }))
        .map_err(|source| Error::Encode {
            what: format!("Secret {}/{LOCAL_CA_SECRET}", self.namespace),
            source,
        })?;
        secret.metadata.namespace = Some(self.namespace.clone());
        // Create, not apply: of two replicas creating at once, the second
        // is refused (409) and takes the first one's CA.
        match self
            .secrets(&self.namespace)
            .create(&PostParams::default(), &secret)
            .await
        {
            Ok(_) => Ok(ca.clone()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.local_ca().await?.ok_or_else(|| Error::Incomplete {
                    what: format!("Secret {}/{LOCAL_CA_SECRET}", self.namespace),
                    reason: "it existed a moment ago and is gone".into(),
                })
            }
            Err(e) => Err(api(
                "creating",
                &format!("Secret {}/{LOCAL_CA_SECRET}", self.namespace),
                e,
            )),
        }
    }

    async fn records(&self) -> Result<BTreeMap<StoreKey, Record>, Error> {
        let Some(cm) = self.get_config_map(RECORDS_CONFIG_MAP).await? else {
            return Ok(BTreeMap::new());
        };
        let mut out = BTreeMap::new();
        for (k, v) in cm.data.unwrap_or_default() {
            // Keys are `<namespace>_<name>`: ConfigMap keys cannot hold
            // `/`, and object names cannot hold `_`.
            let Some((ns, name)) = k.split_once('_') else {
                continue;
            };
            let (Ok(key), Ok(record)) =
                (StoreKey::new(ns, name), serde_json::from_str::<Record>(&v))
            else {
                tracing::warn!(entry = %k, "issuer record unreadable; starting it afresh");
                continue;
            };
            out.insert(key, record);
        }
        Ok(out)
    }

    async fn put_records(&self, changed: &BTreeMap<StoreKey, Record>) -> Result<(), Error> {
        if changed.is_empty() {
            return Ok(());
        }
        // One key per certificate: applying only the changed keys leaves the
        // others as they are (server-side apply merges the data map).
        let mut data = serde_json::Map::new();
        for (k, r) in changed {
            let text = serde_json::to_string(r).map_err(|source| Error::Encode {
                what: format!("record {k}"),
                source,
            })?;
            data.insert(format!("{}_{}", k.namespace(), k.name()), json!(text));
        }
        // Keys written before and not in `changed` stay owned by this
        // manager only if they are in the body, so the current ones are
        // read and sent along.
        if let Some(cm) = self.get_config_map(RECORDS_CONFIG_MAP).await? {
            for (k, v) in cm.data.unwrap_or_default() {
                data.entry(k).or_insert(json!(v));
            }
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": RECORDS_CONFIG_MAP,
                "namespace": self.namespace,
                "labels": {MANAGED_LABEL: "true", ROLE_LABEL: "issuer-records"},
            },
            "data": data,
        });
        self.apply_config_map(RECORDS_CONFIG_MAP, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_pair_is_a_labelled_tls_secret_with_its_ca_and_annotations() {
        let key = StoreKey::new("edge", "gw-web-tls").expect("valid");
        let cert = StoredCert {
            cert_chain_pem: "CERT".into(),
            key_pem: "KEY".into(),
            ca_pem: Some("CA".into()),
        };
        let meta = CertMeta {
            issuer_kind: "ClusterIssuer".into(),
            issuer_name: "le".into(),
            dns_names: vec!["a.test".into(), "b.test".into()],
            not_after: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)),
            renewal_time: None,
        };
        let body = cert_body(&key, &cert, &meta);
        assert_eq!(body["type"], "kubernetes.io/tls");
        assert_eq!(body["metadata"]["labels"][MANAGED_LABEL], "true");
        assert_eq!(body["data"]["tls.crt"], b64("CERT"));
        assert_eq!(body["data"]["ca.crt"], b64("CA"));
        let a = &body["metadata"]["annotations"];
        assert_eq!(a[DNS_NAMES_ANNOTATION], "a.test,b.test");
        assert_eq!(a[ISSUER_KIND_ANNOTATION], "ClusterIssuer");
        assert_eq!(a[NOT_AFTER_ANNOTATION], "2027-01-15T08:00:00Z");
        assert!(a.get(RENEWAL_TIME_ANNOTATION).is_none());
    }

    #[test]
    fn order_secrets_are_named_by_a_hash_of_the_certificate() {
        let a = order_secret(&StoreKey::new("edge", "gw-web-tls").expect("valid"));
        let b = order_secret(&StoreKey::new("edge-gw", "web-tls").expect("valid"));
        assert_ne!(a, b);
        assert!(a.starts_with("portcullis-order-") && a.len() <= 63, "{a}");
    }
}
