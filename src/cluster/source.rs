//! Kubernetes mode's source of configuration ([`ClusterSource`]): watches
//! every [`Watched`] kind cluster-wide into a [`KindCache`], watches
//! Secrets and ConfigMaps by metadata only, and builds
//! [`model::Resources`](crate::model::Resources) snapshots from them — the
//! same snapshot the configuration directory gives standalone mode, so
//! both modes run one compile.
//!
//! A snapshot is only built once every watch has listed its kind in full
//! ([`ClusterSource::wait_synced`]), and holds every Secret and ConfigMap
//! the configuration refers to ([`super::referenced`]): those are fetched
//! (by name, a few at a time) before [`ClusterSource::load`] returns, and
//! fetched again when their metadata says they changed. A kind whose CRD
//! is not installed is looked for again every [`REDISCOVER`]; until then
//! it contributes nothing.
//!
//! Watches reconnect by themselves (kube-runtime's watcher with its
//! backoff); an expired watch (410 Gone) relists, and the relist replaces
//! the kind's objects in one step. While the API server is away the last
//! snapshot keeps being served.

use super::cache::{KindCache, Live};
use super::kinds::{Watched, GATEWAY_GROUP, PORTCULLIS_GROUP};
use super::referenced::{referenced, Referenced};
use crate::model::{ConfigMap, Object, ObjectKey, Resources, Secret};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap as CoreConfigMap, Secret as CoreSecret};
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often kinds whose CRD is not installed are looked for again.
pub const REDISCOVER: Duration = Duration::from_secs(30);
/// Quiet time after the last change before a snapshot is taken (a burst of
/// `kubectl apply` lands as one reload).
pub const DEBOUNCE: Duration = Duration::from_millis(30);
/// Longest a stream of changes can postpone a snapshot.
pub const MAX_DELAY: Duration = Duration::from_millis(250);
/// Secrets and ConfigMaps fetched at once.
const FETCH_CONCURRENCY: usize = 8;

/// An object the API server accepted but portcullis refuses to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its kind.
    pub kind: Watched,
    /// Its namespace and name.
    pub key: ObjectKey,
    /// Why (the field rule that failed).
    pub message: String,
    /// Whether an earlier version of it is still served.
    pub kept_previous: bool,
}

/// One snapshot of the cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every object read, as compile takes it.
    pub resources: Resources,
    /// Objects refused.
    pub refusals: Vec<Refusal>,
    /// What status writing needs of each live object, by kind and key.
    pub live: BTreeMap<(Watched, ObjectKey), Live>,
    /// Equal for two snapshots whose `resources` and `refusals` are equal
    /// (every kind's configuration revision and the version of every
    /// Secret and ConfigMap read): a snapshot that only brings new status
    /// (portcullis's own writes coming back) need not be compiled again.
    pub config_stamp: u64,
}

/// The watched objects of one snapshot, before Secrets and ConfigMaps.
struct Objects {
    resources: Resources,
    refusals: Vec<Refusal>,
    live: BTreeMap<(Watched, ObjectKey), Live>,
    /// The kinds' configuration revisions so far.
    stamp: std::hash::DefaultHasher,
}

/// Secrets or ConfigMaps: metadata of all, content of the referenced ones.
#[derive(Debug, Default)]
struct Referenceable<T> {
    /// resourceVersion of every object, from the metadata watch.
    versions: BTreeMap<ObjectKey, String>,
    synced: bool,
    /// The decoded content of referenced objects, with the version read.
    content: BTreeMap<ObjectKey, (String, Arc<T>)>,
}

impl<T: Clone> Referenceable<T> {
    /// Referenced keys that exist but whose content is missing or stale.
    fn stale(&self, wanted: &BTreeSet<ObjectKey>) -> Vec<ObjectKey> {
        wanted
            .iter()
            .filter(|k| match (self.versions.get(*k), self.content.get(*k)) {
                (Some(v), Some((read, _))) => v != read,
                (Some(_), None) => true,
                (None, _) => false,
            })
            .cloned()
            .collect()
    }

    /// The content of the referenced objects that still exist (their keys
    /// and versions hashed into `stamp`); content no longer referenced is
    /// dropped.
    fn current(&mut self, wanted: &BTreeSet<ObjectKey>, stamp: &mut impl Hasher) -> Vec<Arc<T>> {
        self.content
            .retain(|k, _| wanted.contains(k) && self.versions.contains_key(k));
        self.content
            .iter()
            .map(|(k, (version, v))| {
                (k, version).hash(stamp);
                v.clone()
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct State {
    kinds: BTreeMap<Watched, KindCache>,
    /// Kinds whose CRD is not served (yet).
    missing: BTreeSet<Watched>,
    secrets: Referenceable<Secret>,
    config_maps: Referenceable<ConfigMap>,
    /// What the last snapshot referred to: a change to one of these is a
    /// change of configuration; a change to any other Secret is not.
    wanted: Referenced,
}

/// The cluster as a source of snapshots. Dropping it stops its watches.
pub struct ClusterSource {
    client: Client,
    state: Arc<Mutex<State>>,
    revision: Revision,
    cluster_resource_namespace: String,
    _tasks: JoinSet<()>,
}

/// The revision the watches bump, debounced for [`ClusterSource::changed`].
#[derive(Debug)]
struct Revision {
    rx: watch::Receiver<u64>,
    /// When the change being debounced was first seen, while a wait for
    /// quiet is under way or was dropped.
    pending_since: Option<tokio::time::Instant>,
}

impl Revision {
    /// Waits for a change, then for the burst to settle (at most
    /// [`MAX_DELAY`] after the first). Cancel-safe: taking the change marks
    /// it seen, so a wait dropped during its quiet time (the serve loop's
    /// `select!` drops it when another branch fires) leaves it pending for
    /// the next wait instead of losing it.
    async fn changed(&mut self) {
        let first = match self.pending_since {
            Some(first) => first,
            None => {
                if self.rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
                *self.pending_since.insert(tokio::time::Instant::now())
            }
        };
        loop {
            let quiet = tokio::time::sleep(DEBOUNCE);
            let cap = tokio::time::sleep_until(first + MAX_DELAY);
            tokio::select! {
                _ = quiet => break,
                _ = cap => break,
                r = self.rx.changed() => if r.is_err() { break },
            }
        }
        self.pending_since = None;
    }
}

impl std::fmt::Debug for ClusterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSource")
            .field(
                "cluster_resource_namespace",
                &self.cluster_resource_namespace,
            )
            .finish_non_exhaustive()
    }
}

/// A read-only view of the Secrets the source holds in full, for readers
/// that would otherwise ask the API server for them again (the issuer's
/// store).
#[derive(Clone)]
pub struct SecretCache(Arc<Mutex<State>>);

impl std::fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCache")
    }
}

impl SecretCache {
    /// The Secret `key` as last read, when that read is of the version the
    /// metadata watch says is current; `None` when it is not held, or
    /// stale.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Secret>> {
        let s = lock(&self.0);
        let current = s.secrets.versions.get(key)?;
        match s.secrets.content.get(key) {
            Some((read, secret)) if read == current => Some(secret.clone()),
            _ => None,
        }
    }
}

/// Bumps the revision the source waits on (and counts watch failures).
#[derive(Debug, Clone)]
struct Changes(Arc<watch::Sender<u64>>, Arc<crate::metrics::Metrics>);

impl Changes {
    fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn watch_failed(&self, kind: &str) {
        self.1.cluster().watch_error(kind);
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClusterSource {
    /// Starts watching through `client`. ClusterIssuers' Secrets are read
    /// from `cluster_resource_namespace`; watch failures are counted in
    /// `metrics`.
    pub fn start(
        client: Client,
        cluster_resource_namespace: &str,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let (tx, revision) = watch::channel(0u64);
        let changes = Changes(Arc::new(tx), metrics);
        let state = Arc::new(Mutex::new(State::default()));
        let mut tasks = JoinSet::new();
        tasks.spawn(discover(client.clone(), state.clone(), changes.clone()));
        tasks.spawn(watch_versions::<CoreSecret>(
            client.clone(),
            state.clone(),
            changes.clone(),
            |s| &mut s.secrets.versions,
            |s| &mut s.secrets.synced,
            |s| &s.wanted.secrets,
        ));
        tasks.spawn(watch_versions::<CoreConfigMap>(
            client.clone(),
            state.clone(),
            changes,
            |s| &mut s.config_maps.versions,
            |s| &mut s.config_maps.synced,
            |s| &s.wanted.config_maps,
        ));
        Self {
            client,
            state,
            revision: Revision {
                rx: revision,
                pending_since: None,
            },
            cluster_resource_namespace: cluster_resource_namespace.to_string(),
            _tasks: tasks,
        }
    }

    /// The client the source watches through.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A view of the Secrets the source holds.
    pub fn secret_cache(&self) -> SecretCache {
        SecretCache(self.state.clone())
    }

    /// Whether every watch has listed its kind once.
    pub fn is_synced(&self) -> bool {
        let s = lock(&self.state);
        s.secrets.synced
            && s.config_maps.synced
            && Watched::ALL
                .iter()
                .all(|k| s.missing.contains(k) || s.kinds.get(k).is_some_and(KindCache::is_synced))
    }

    /// Waits until [`is_synced`](Self::is_synced).
    pub async fn wait_synced(&mut self) {
        while !self.is_synced() {
            if self.revision.rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until the cluster changed, then for the burst of changes to
    /// settle. Cancel-safe.
    pub async fn changed(&mut self) {
        self.revision.changed().await
    }

    /// A snapshot, with every referenced Secret and ConfigMap that exists
    /// read in full.
    pub async fn load(&mut self) -> Snapshot {
        // Fetching may make more references visible (a ClusterIssuer's
        // Secrets do not depend on Secrets, but a Gateway's auto-filled
        // references depend on issuers): two rounds settle it, three is a
        // safety margin against a cluster changing underneath.
        for _ in 0..3 {
            let resources = self.objects();
            let wanted = self.wanted(&resources.resources);
            let (secrets, config_maps) = {
                let mut s = lock(&self.state);
                s.wanted = wanted.clone();
                (
                    s.secrets.stale(&wanted.secrets),
                    s.config_maps.stale(&wanted.config_maps),
                )
            };
            if secrets.is_empty() && config_maps.is_empty() {
                return self.finish(resources, &wanted);
            }
            self.fetch(secrets, config_maps).await;
        }
        let resources = self.objects();
        let wanted = lock(&self.state).wanted.clone();
        self.finish(resources, &wanted)
    }

    /// Which Secrets and ConfigMaps `resources` needs, including the ones
    /// the issuer will fill listeners with.
    fn wanted(&self, resources: &Resources) -> Referenced {
        let mut wanted = referenced(resources);
        for m in crate::issuer::demand::managed_listeners(resources) {
            wanted
                .secrets
                .insert(ObjectKey::new(m.secret.namespace(), m.secret.name()));
        }
        wanted
    }

    /// The watched objects as resources (no Secrets or ConfigMaps yet),
    /// with the refusals and live metadata.
    fn objects(&self) -> Objects {
        let s = lock(&self.state);
        let mut stamp = std::hash::DefaultHasher::new();
        let mut resources = Resources {
            cluster_resource_namespace: self.cluster_resource_namespace.clone(),
            ..Resources::default()
        };
        let mut refusals = Vec::new();
        let mut live = BTreeMap::new();
        for (kind, cache) in &s.kinds {
            (kind, cache.revision()).hash(&mut stamp);
            for (key, cached) in cache.objects() {
                if let Some(object) = &cached.object {
                    resources.push(object.clone());
                }
                if let Some(message) = &cached.problem {
                    refusals.push(Refusal {
                        kind: *kind,
                        key: key.clone(),
                        message: message.clone(),
                        kept_previous: cached.object.is_some(),
                    });
                }
                if kind.keeps_status() {
                    live.insert((*kind, key.clone()), cached.live.clone());
                }
            }
        }
        Objects {
            resources,
            refusals,
            live,
            stamp,
        }
    }

    fn finish(&self, objects: Objects, wanted: &Referenced) -> Snapshot {
        let Objects {
            mut resources,
            refusals,
            live,
            mut stamp,
        } = objects;
        let mut s = lock(&self.state);
        resources.secrets = s.secrets.current(&wanted.secrets, &mut stamp);
        resources.config_maps = s.config_maps.current(&wanted.config_maps, &mut stamp);
        Snapshot {
            resources,
            refusals,
            live,
            config_stamp: stamp.finish(),
        }
    }

    /// Reads the given Secrets and ConfigMaps in full.
    async fn fetch(&self, secrets: Vec<ObjectKey>, config_maps: Vec<ObjectKey>) {
        let secret_ar = ApiResource::erase::<CoreSecret>(&());
        let config_map_ar = ApiResource::erase::<CoreConfigMap>(&());
        let jobs = secrets
            .into_iter()
            .map(|k| (true, k))
            .chain(config_maps.into_iter().map(|k| (false, k)));
        let results: Vec<_> = futures_util::stream::iter(jobs)
            .map(|(is_secret, key)| {
                let ar = if is_secret {
                    &secret_ar
                } else {
                    &config_map_ar
                };
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &key.namespace, ar);
                async move {
                    let got = api.get_opt(&key.name).await;
                    (is_secret, key, got, ar)
                }
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        let mut s = lock(&self.state);
        for (is_secret, key, got, ar) in results {
            let object = match got {
                Ok(Some(o)) => o,
                Ok(None) => {
                    // Deleted meanwhile; the metadata watch will say so.
                    if is_secret {
                        s.secrets.content.remove(&key);
                    } else {
                        s.config_maps.content.remove(&key);
                    }
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%key, secret = is_secret, %error, "cannot read a referenced object; keeping what was read before");
                    continue;
                }
            };
            let version = object.metadata.resource_version.clone().unwrap_or_default();
            let decoded = serde_json::to_value(&object)
                .map_err(|e| e.to_string())
                .and_then(|v| super::kinds::decode(ar, v).map_err(|e| e.to_string()));
            match decoded {
                Ok(Some(Object::Secret(secret))) => {
                    s.secrets.content.insert(key, (version, secret));
                }
                Ok(Some(Object::ConfigMap(cm))) => {
                    s.config_maps.content.insert(key, (version, cm));
                }
                Ok(_) => {}
                Err(error) => {
                    // Recorded as read, so it is not fetched again until it
                    // changes; compile reports the reference as invalid.
                    tracing::warn!(%key, %error, "referenced object cannot be read");
                    if is_secret {
                        s.secrets.content.remove(&key);
                    } else {
                        s.config_maps.content.remove(&key);
                    }
                }
            }
        }
    }
}

/// Finds which version of each Gateway API and portcullis kind is served,
/// starts a watch for each found, and looks again for missing ones.
async fn discover(client: Client, state: Arc<Mutex<State>>, changes: Changes) {
    let mut started: BTreeSet<Watched> = BTreeSet::new();
    let mut watches = JoinSet::new();
    loop {
        let mut groups: BTreeMap<&str, Option<kube::discovery::ApiGroup>> = BTreeMap::new();
        for group in [GATEWAY_GROUP, PORTCULLIS_GROUP] {
            let found = match kube::discovery::group(&client, group).await {
                Ok(g) => Some(g),
                Err(error) => {
                    tracing::debug!(group, %error, "API group not served");
                    None
                }
            };
            groups.insert(group, found);
        }
        let mut missing = BTreeSet::new();
        for kind in Watched::ALL {
            if started.contains(&kind) {
                continue;
            }
            let resource = if kind.is_builtin() {
                Some(kind.api_resource(kind.versions()[0]))
            } else {
                groups
                    .get(kind.group())
                    .and_then(Option::as_ref)
                    .and_then(|g| {
                        kind.versions().iter().find_map(|v| {
                            g.versioned_resources(v)
                                .into_iter()
                                .find(|(ar, _)| ar.kind == kind.kind())
                                .map(|(ar, _)| ar)
                        })
                    })
            };
            match resource {
                Some(ar) => {
                    tracing::info!(kind = %kind, version = %ar.version, "watching");
                    lock(&state)
                        .kinds
                        .insert(kind, KindCache::new(kind, ar.clone()));
                    started.insert(kind);
                    watches.spawn(watch_kind(
                        client.clone(),
                        kind,
                        ar,
                        state.clone(),
                        changes.clone(),
                    ));
                }
                None => {
                    missing.insert(kind);
                }
            }
        }
        if !missing.is_empty() {
            tracing::warn!(kinds = ?missing.iter().map(|k| k.kind()).collect::<Vec<_>>(), "kinds not served by the API server (CRDs not installed?); looking again every {}s", REDISCOVER.as_secs());
        }
        lock(&state).missing = missing.clone();
        changes.bump();
        if missing.is_empty() {
            // Every watch runs until the source is dropped.
            while watches.join_next().await.is_some() {}
            return;
        }
        tokio::time::sleep(REDISCOVER).await;
    }
}

/// Feeds one kind's watch events into its cache.
async fn watch_kind(
    client: Client,
    kind: Watched,
    resource: ApiResource,
    state: Arc<Mutex<State>>,
    changes: Changes,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut failing = false;
    // kube-runtime's watcher lists at start and lists again only when it
    // cannot resume (410 Gone: its position was compacted away); a relist
    // is worth a line, the first list is not.
    let mut listed = false;
    let mut relisting = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => {
                if failing {
                    tracing::info!(kind = %kind, "watch resumed");
                    failing = false;
                }
                e
            }
            Err(error) => {
                changes.watch_failed(kind.kind());
                if !failing {
                    tracing::warn!(kind = %kind, %error, "watch failed; retrying with backoff, serving the last configuration");
                    failing = true;
                } else {
                    tracing::debug!(kind = %kind, %error, "watch still failing");
                }
                continue;
            }
        };
        let value = |o: DynamicObject| serde_json::to_value(o).unwrap_or_default();
        let mut s = lock(&state);
        let Some(cache) = s.kinds.get_mut(&kind) else {
            return;
        };
        let changed = match event {
            watcher::Event::Apply(o) => {
                cache.apply(value(o));
                true
            }
            watcher::Event::Delete(o) => {
                cache.delete(&value(o));
                true
            }
            watcher::Event::Init => {
                if listed {
                    tracing::info!(kind = %kind, "watch expired (410 Gone); relisting");
                    relisting = true;
                }
                cache.init();
                false
            }
            watcher::Event::InitApply(o) => {
                cache.init_apply(value(o));
                false
            }
            watcher::Event::InitDone => {
                cache.init_done();
                if relisting {
                    tracing::info!(kind = %kind, objects = cache.objects().len(), "relisted");
                }
                listed = true;
                relisting = false;
                true
            }
        };
        drop(s);
        if changed {
            changes.bump();
        }
    }
}

/// Keeps the resourceVersion of every object of kind `K` (Secrets or
/// ConfigMaps) from a metadata-only watch; a change to a wanted one bumps
/// the revision.
async fn watch_versions<K>(
    client: Client,
    state: Arc<Mutex<State>>,
    changes: Changes,
    versions: fn(&mut State) -> &mut BTreeMap<ObjectKey, String>,
    synced: fn(&mut State) -> &mut bool,
    wanted: fn(&State) -> &BTreeSet<ObjectKey>,
) where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relist: Option<BTreeMap<ObjectKey, String>> = None;
    let mut failing = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => {
                failing = false;
                e
            }
            Err(error) => {
                changes.watch_failed(&K::kind(&()));
                if !failing {
                    tracing::warn!(kind = %K::kind(&()), %error, "metadata watch failed; retrying with backoff");
                    failing = true;
                }
                continue;
            }
        };
        let entry = |m: &PartialObjectMeta<K>| {
            (
                ObjectKey::new(
                    m.metadata.namespace.as_deref().unwrap_or_default(),
                    m.metadata.name.as_deref().unwrap_or_default(),
                ),
                m.metadata.resource_version.clone().unwrap_or_default(),
            )
        };
        let mut s = lock(&state);
        let touched = match event {
            watcher::Event::Apply(m) => {
                let (key, version) = entry(&m);
                versions(&mut s).insert(key.clone(), version);
                wanted(&s).contains(&key)
            }
            watcher::Event::Delete(m) => {
                let (key, _) = entry(&m);
                versions(&mut s).remove(&key);
                wanted(&s).contains(&key)
            }
            watcher::Event::Init => {
                relist = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(m) => {
                let (key, version) = entry(&m);
                relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, version);
                false
            }
            watcher::Event::InitDone => {
                if let Some(list) = relist.take() {
                    *versions(&mut s) = list;
                }
                *synced(&mut s) = true;
                true
            }
        };
        drop(s);
        if touched {
            changes.bump();
        }
    }
}

#[cfg(test)]
mod tests;
