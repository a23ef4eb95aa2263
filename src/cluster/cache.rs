//! What the source knows of one watched kind ([`KindCache`]): every object
//! the API server holds, decoded once per change, with what portcullis
//! needs of the live object to write its status ([`Live`]). Pure: fed the
//! watcher's events one at a time, so relists, deletions and refusals are
//! tested without an API server.
//!
//! A relist (at start, and after a watch expired with 410 Gone) is
//! buffered and replaces the contents in one step when it is complete, so
//! a snapshot never sees half a list: objects missing from the new list
//! are gone, and unchanged objects (same resourceVersion) are not decoded
//! again.
//!
//! An object the API accepted but portcullis refuses (a field of a shape
//! the model cannot read) keeps its last good version, if it had one, and
//! carries the refusal, which becomes a log line, a `/status` problem and
//! the refused-objects metric (no status condition on the object: its
//! status is written from compile's output, which never saw it).

use super::gateway_services::FIELD_MANAGER as SERVICE_MANAGER;
use super::kinds::{decode, key_of, Watched};
use super::status_patch::FIELD_MANAGER as STATUS_MANAGER;
use crate::model::{Object, ObjectKey};
use kube::api::ApiResource;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What portcullis keeps of the live object for writing its status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// For kinds that keep it ([`Watched::keeps_status`]): the object
    /// trimmed to what writing its status reads — `apiVersion`, `kind`,
    /// `metadata` (name, namespace, uid, resourceVersion, generation, and
    /// the `managedFields` entries portcullis's status writer and
    /// per-Gateway Service writer own), `spec.parentRefs` (echoed in route
    /// status) and `status`; for per-Gateway Services
    /// ([`super::gateway_services`]) also their labels, annotations,
    /// ownerReferences and `spec` type, selector and ports.
    pub object: LiveObject,
}

/// A live object as compact JSON text, shared by every snapshot that
/// holds it. As a `serde_json::Value` tree the same object took about
/// 11 KiB (a B-tree node per map, however small): 60 MiB at 5,000 routes,
/// for a value read only when the leader plans its writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveObject(Option<Arc<str>>);

impl LiveObject {
    /// Keeps `value`.
    pub fn new(value: &serde_json::Value) -> Self {
        Self(Some(Arc::from(value.to_string())))
    }

    /// The object; `Null` when none is kept.
    pub fn value(&self) -> serde_json::Value {
        self.0
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }

    /// Whether an object is kept (kinds that keep no status keep none).
    pub fn is_kept(&self) -> bool {
        self.0.is_some()
    }
}

/// One object of the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// The last version that decoded, if any did.
    pub object: Option<Object>,
    /// The live object's version and status.
    pub live: Live,
    /// Why the current version is refused, when it is.
    pub problem: Option<String>,
}

/// The objects of one kind.
#[derive(Debug)]
pub struct KindCache {
    kind: Watched,
    resource: ApiResource,
    objects: BTreeMap<ObjectKey, Cached>,
    relist: Option<BTreeMap<ObjectKey, Cached>>,
    synced: bool,
    /// Bumped when what compile reads changes: an object's decoded
    /// content or refusal, an addition, a deletion, a relist. Not bumped
    /// by a change to status or metadata alone (the echo of portcullis's
    /// own status writes), so those need no recompile.
    revision: u64,
}

impl KindCache {
    /// An empty cache of `kind`, served as `resource`.
    pub fn new(kind: Watched, resource: ApiResource) -> Self {
        Self {
            kind,
            resource,
            objects: BTreeMap::new(),
            relist: None,
            synced: false,
            revision: 0,
        }
    }

    /// The configuration revision: equal revisions mean compile would read
    /// the same objects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The kind.
    pub fn kind(&self) -> Watched {
        self.kind
    }

    /// Whether a complete list has been received.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The objects, by key.
    pub fn objects(&self) -> &BTreeMap<ObjectKey, Cached> {
        &self.objects
    }

    /// An object was added or changed.
    pub fn apply(&mut self, value: serde_json::Value) {
        let key = key_of(&value);
        let previous = self.objects.get(&key);
        let cached = self.entry(value, previous);
        if previous.is_none_or(|p| p.object != cached.object || p.problem != cached.problem) {
            self.revision += 1;
        }
        self.objects.insert(key, cached);
    }

    /// An object was deleted.
    pub fn delete(&mut self, value: &serde_json::Value) {
        if self.objects.remove(&key_of(value)).is_some() {
            self.revision += 1;
        }
    }

    /// A relist starts.
    pub fn init(&mut self) {
        self.relist = Some(BTreeMap::new());
    }

    /// One object of the relist.
    pub fn init_apply(&mut self, value: serde_json::Value) {
        let key = key_of(&value);
        let cached = self.entry(value, self.objects.get(&key));
        self.relist
            .get_or_insert_with(BTreeMap::new)
            .insert(key, cached);
    }

    /// The relist is complete: it replaces the contents.
    pub fn init_done(&mut self) {
        if let Some(list) = self.relist.take() {
            self.objects = list;
        }
        self.synced = true;
        self.revision += 1;
    }

    /// The cache entry for `value`, reusing `previous`'s decode when the
    /// version did not change, or its object when the new one is refused.
    fn entry(&self, value: serde_json::Value, previous: Option<&Cached>) -> Cached {
        let live = live_of(&self.resource, &value, self.kind.keeps_status());
        if let Some(p) = previous {
            if !live.resource_version.is_empty() && p.live.resource_version == live.resource_version
            {
                return p.clone();
            }
        }
        match decode(&self.resource, value) {
            Ok(object) => Cached {
                object,
                live,
                problem: None,
            },
            Err(error) => Cached {
                object: previous.and_then(|p| p.object.clone()),
                live,
                problem: Some(error.to_string()),
            },
        }
    }
}

/// The live metadata (and trimmed object, when kept) of a served object.
fn live_of(resource: &ApiResource, value: &serde_json::Value, keep: bool) -> Live {
    let meta = value.get("metadata");
    let field = |f: &str| meta.and_then(|m| m.get(f));
    let resource_version = field("resourceVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let generation = field("generation").and_then(|v| v.as_i64());
    let object = if keep {
        let managed: Vec<serde_json::Value> = field("managedFields")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
            .filter(|e| {
                let manager = e.get("manager").and_then(|m| m.as_str());
                let subresource = e.get("subresource").and_then(|s| s.as_str());
                (manager == Some(STATUS_MANAGER) && subresource == Some("status"))
                    || (manager == Some(SERVICE_MANAGER) && subresource.is_none())
            })
            .cloned()
            .collect();
        let mut metadata = serde_json::json!({
            "name": field("name").cloned().unwrap_or_default(),
            "resourceVersion": resource_version,
        });
        if let Some(ns) = field("namespace") {
            metadata["namespace"] = ns.clone();
        }
        if let Some(g) = generation {
            metadata["generation"] = g.into();
        }
        if let Some(uid) = field("uid") {
            metadata["uid"] = uid.clone();
        }
        let per_gateway_service = resource.group.is_empty()
            && resource.kind == "Service"
            && super::gateway_services::is_managed(value);
        if per_gateway_service {
            for f in ["labels", "annotations", "ownerReferences"] {
                if let Some(v) = field(f) {
                    metadata[f] = v.clone();
                }
            }
        }
        if !managed.is_empty() {
            metadata["managedFields"] = managed.into();
        }
        let mut object = serde_json::json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": metadata,
        });
        if let Some(refs) = value.pointer("/spec/parentRefs") {
            object["spec"] = serde_json::json!({ "parentRefs": refs });
        }
        if per_gateway_service {
            let spec = value.get("spec");
            let mut kept = serde_json::Map::new();
            for f in ["type", "selector", "ports"] {
                if let Some(v) = spec.and_then(|s| s.get(f)) {
                    kept.insert(f.into(), v.clone());
                }
            }
            object["spec"] = kept.into();
        }
        if let Some(status) = value.get("status") {
            object["status"] = status.clone();
        }
        LiveObject::new(&object)
    } else {
        LiveObject::default()
    };
    Live {
        resource_version,
        generation,
        object,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(name: &str, rv: &str, hostnames: serde_json::Value) -> serde_json::Value {
        json!({
            "metadata": {"name": name, "namespace": "apps", "resourceVersion": rv, "generation": 2},
            "spec": {"hostnames": hostnames},
            "status": {"parents": []}
        })
    }

    fn cache() -> KindCache {
        KindCache::new(Watched::HttpRoute, Watched::HttpRoute.api_resource("v1"))
    }

    fn hostnames(c: &KindCache, name: &str) -> Vec<String> {
        match c.objects()[&ObjectKey::new("apps", name)].object.as_ref() {
            Some(Object::HttpRoute(r)) => r.spec.hostnames.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_relist_replaces_the_contents_only_when_complete() {
        let mut c = cache();
        c.init();
        c.init_apply(route("a", "1", json!(["a.test"])));
        assert!(!c.is_synced());
        assert!(c.objects().is_empty(), "nothing visible mid-list");
        c.init_done();
        assert!(c.is_synced());
        c.apply(route("b", "2", json!(["b.test"])));
        // The watch expired (410): the new list no longer holds b.
        c.init();
        c.init_apply(route("a", "3", json!(["a2.test"])));
        assert_eq!(c.objects().len(), 2, "old contents served mid-relist");
        c.init_done();
        assert_eq!(c.objects().len(), 1);
        assert_eq!(hostnames(&c, "a"), ["a2.test"]);
    }

    #[test]
    fn a_refused_change_keeps_the_last_good_version_and_says_why() {
        let mut c = cache();
        c.apply(route("a", "1", json!(["a.test"])));
        c.apply(route("a", "2", json!("not-a-list")));
        let entry = &c.objects()[&ObjectKey::new("apps", "a")];
        assert_eq!(hostnames(&c, "a"), ["a.test"]);
        assert!(entry
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("HTTPRoute a")));
        assert_eq!(entry.live.resource_version, "2");
        c.apply(route("a", "3", json!(["a3.test"])));
        assert_eq!(c.objects()[&ObjectKey::new("apps", "a")].problem, None);
        assert_eq!(hostnames(&c, "a"), ["a3.test"]);
    }

    #[test]
    fn a_refused_new_object_has_no_version_to_serve() {
        let mut c = cache();
        c.apply(route("a", "1", json!(5)));
        let entry = &c.objects()[&ObjectKey::new("apps", "a")];
        assert!(entry.object.is_none());
        assert!(entry.problem.is_some());
    }

    #[test]
    fn what_status_writing_reads_is_kept_for_status_kinds() {
        let mut c = cache();
        let mut r = route("a", "1", json!([]));
        r["spec"]["parentRefs"] = json!([{"name": "gw"}]);
        r["metadata"]["managedFields"] = json!([
            {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
            {"manager": STATUS_MANAGER, "subresource": "status", "fieldsV1": {"f:status": {}}}
        ]);
        c.apply(r);
        let live = &c.objects()[&ObjectKey::new("apps", "a")].live;
        assert_eq!(live.generation, Some(2));
        let object = live.object.value();
        assert_eq!(object["status"], json!({"parents": []}));
        assert_eq!(object["kind"], "HTTPRoute");
        assert_eq!(object["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(object["spec"], json!({"parentRefs": [{"name": "gw"}]}));
        assert_eq!(object["metadata"]["resourceVersion"], "1");
        let managed = object["metadata"]["managedFields"]
            .as_array()
            .expect("kept");
        assert_eq!(managed.len(), 1, "only the status writer's entry");
        let mut slices = KindCache::new(
            Watched::EndpointSlice,
            Watched::EndpointSlice.api_resource("v1"),
        );
        slices.apply(
            json!({"metadata": {"name": "s", "namespace": "apps", "resourceVersion": "4"},
                            "status": {"x": 1}}),
        );
        let slice = &slices.objects()[&ObjectKey::new("apps", "s")].live.object;
        assert!(!slice.is_kept());
        assert_eq!(slice.value(), serde_json::Value::Null);
    }

    #[test]
    fn deletion_removes_the_object() {
        let mut c = cache();
        c.apply(route("a", "1", json!([])));
        c.delete(&route("a", "1", json!([])));
        assert!(c.objects().is_empty());
    }

    #[test]
    fn only_what_compile_reads_moves_the_revision() {
        let mut c = cache();
        c.apply(route("a", "1", json!(["a.test"])));
        let added = c.revision();
        // The echo of a status write: new resourceVersion and status, the
        // same spec.
        let mut echo = route("a", "2", json!(["a.test"]));
        echo["status"] = json!({"parents": [{"controllerName": "x"}]});
        c.apply(echo);
        assert_eq!(c.revision(), added, "status alone is not configuration");
        assert_eq!(
            c.objects()[&ObjectKey::new("apps", "a")]
                .live
                .resource_version,
            "2",
            "but the live object is the new one"
        );
        c.apply(route("a", "3", json!(["b.test"])));
        assert!(c.revision() > added, "a spec change is");
        let changed = c.revision();
        c.delete(&route("gone", "1", json!([])));
        assert_eq!(c.revision(), changed, "deleting an unknown object");
        c.delete(&route("a", "3", json!([])));
        assert!(c.revision() > changed, "a deletion is");
    }
}
