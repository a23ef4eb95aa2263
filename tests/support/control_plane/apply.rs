//! Server-side apply of multi-document YAML, as `kubectl apply --server-side`
//! does it: each document's kind is resolved through the API's discovery
//! (cluster-scoped or namespaced, built-in or custom), namespaced objects
//! without a namespace go to `default`, and the object is applied under a field
//! manager. A CustomResourceDefinition is waited for until it is Established
//! and every served version answers, before a later document needs its kind
//! and before the call returns, so a CRD and its objects can be applied in one
//! go.

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{pinned_kind, ApiCapabilities, Scope};
use kube::Client;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// How long a CustomResourceDefinition may take to be Established and served.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// How objects are applied.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The field manager (`kubectl apply --field-manager`).
    pub field_manager: String,
    /// Take over fields other managers own (`--force-conflicts`).
    pub force: bool,
}

/// The API server refused one object: what it was and what the API said.
#[derive(Debug, Clone)]
pub struct ApplyError {
    /// `Kind apiVersion namespace/name` (no namespace for cluster-scoped kinds).
    pub object: String,
    /// HTTP status code (422 for a validation failure, 403 when forbidden).
    pub code: u16,
    /// The Status reason (`Invalid`, `Forbidden`, `Conflict`, ...).
    pub reason: String,
    /// The API's message.
    pub message: String,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the API server refused {}: {} {}: {}",
            self.object, self.code, self.reason, self.message
        )
    }
}

impl std::error::Error for ApplyError {}

/// Applies every document of `yaml` in order (a `kind: List` applies its
/// items); returns the objects as the API server stored them. Stops at the
/// first refusal, which comes back as an [`ApplyError`] (downcast the
/// `anyhow::Error` to inspect it).
pub async fn apply_yaml_with(
    client: &Client,
    yaml: &str,
    options: &ApplyOptions,
) -> Result<Vec<DynamicObject>> {
    let (applied, crds) = apply_documents(client, yaml, options).await?;
    wait_for_crds(client, &crds).await?;
    Ok(applied)
}

/// Applies independent YAML streams (no document in one needs an object of
/// another) concurrently, each as [`apply_yaml_with`] does, then waits for
/// all their CRDs: the API server compiles each CRD's schema and validation
/// rules on its own, so one at a time leaves cores idle.
pub async fn apply_independent_with(
    client: &Client,
    streams: &[String],
    options: &ApplyOptions,
) -> Result<()> {
    let results = futures_util::future::join_all(
        streams
            .iter()
            .map(|yaml| apply_documents(client, yaml, options)),
    )
    .await;
    let mut crds = Vec::new();
    for result in results {
        crds.extend(result?.1);
    }
    wait_for_crds(client, &crds).await
}

/// Applies the documents in order; returns them as stored and the CRDs
/// applied but not yet waited for.
async fn apply_documents(
    client: &Client,
    yaml: &str,
    options: &ApplyOptions,
) -> Result<(Vec<DynamicObject>, Vec<String>)> {
    let mut params = PatchParams::apply(&options.field_manager);
    params.force = options.force;
    let mut kinds: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)> = HashMap::new();
    let mut pending_crds: Vec<String> = Vec::new();
    let mut applied = Vec::new();
    for document in documents(yaml)? {
        let gvk = gvk_of(&document)?;
        let name = document
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("a {} document has no metadata.name", gvk.kind))?
            .to_string();
        let (resource, capabilities) = match kinds.get(&gvk) {
            Some(found) => found.clone(),
            None => {
                let found = match pinned_kind(client, &gvk).await {
                    Ok(found) => found,
                    // Its CRD may be one this call applied and that is not served yet.
                    Err(_) if !pending_crds.is_empty() => {
                        wait_for_crds(client, &std::mem::take(&mut pending_crds)).await?;
                        pinned_kind(client, &gvk).await.with_context(|| {
                            format!(
                                "the API server serves no {} in {}",
                                gvk.kind,
                                api_version(&gvk)
                            )
                        })?
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!(
                                "the API server serves no {} in {}",
                                gvk.kind,
                                api_version(&gvk)
                            )
                        })
                    }
                };
                kinds.insert(gvk.clone(), found.clone());
                found
            }
        };
        let mut body = document;
        let (api, object) = if capabilities.scope == Scope::Namespaced {
            let namespace = body
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string();
            body["metadata"]["namespace"] = Value::String(namespace.clone());
            (
                Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &resource),
                format!("{} {} {namespace}/{name}", gvk.kind, api_version(&gvk)),
            )
        } else {
            (
                Api::<DynamicObject>::all_with(client.clone(), &resource),
                format!("{} {} {name}", gvk.kind, api_version(&gvk)),
            )
        };
        match api.patch(&name, &params, &Patch::Apply(&body)).await {
            Ok(stored) => applied.push(stored),
            Err(kube::Error::Api(status)) => {
                return Err(ApplyError {
                    object,
                    code: status.code,
                    reason: status.reason.clone(),
                    message: status.message.clone(),
                }
                .into())
            }
            Err(e) => return Err(e).with_context(|| format!("apply {object}")),
        }
        if gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition" {
            pending_crds.push(name);
        }
    }
    Ok((applied, pending_crds))
}

/// The non-empty documents of a YAML stream as JSON values, `List`s expanded.
fn documents(yaml: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .with_context(|| format!("YAML document {} does not parse", index + 1))?;
        if value.is_null() {
            continue;
        }
        let value: Value = serde_json::to_value(value)
            .with_context(|| format!("YAML document {} is not JSON-shaped", index + 1))?;
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            match value.get("items") {
                Some(Value::Array(items)) => out.extend(items.iter().cloned()),
                _ => bail!("YAML document {} is a List without items", index + 1),
            }
        } else {
            out.push(value);
        }
    }
    Ok(out)
}

fn gvk_of(document: &Value) -> Result<GroupVersionKind> {
    let api_version = document
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("a document has no apiVersion: {document}"))?;
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("a document has no kind: {document}"))?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Ok(GroupVersionKind::gvk(group, version, kind))
}

fn api_version(gvk: &GroupVersionKind) -> String {
    if gvk.group.is_empty() {
        gvk.version.clone()
    } else {
        format!("{}/{}", gvk.group, gvk.version)
    }
}

/// Waits until each named CustomResourceDefinition is Established and a list
/// of every version it serves answers.
async fn wait_for_crds(client: &Client, names: &[String]) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + CRD_TIMEOUT;
    for name in names {
        loop {
            let last = match crd_served(client, &crds, name).await {
                Ok(true) => break,
                Ok(false) => "not Established".to_string(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("CustomResourceDefinition {name} not served after {CRD_TIMEOUT:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn crd_served(
    client: &Client,
    crds: &Api<CustomResourceDefinition>,
    name: &str,
) -> Result<bool> {
    let crd = crds.get(name).await?;
    let established = crd
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
    if !established {
        return Ok(false);
    }
    let spec = &crd.spec;
    for version in spec.versions.iter().filter(|v| v.served) {
        let resource = ApiResource {
            group: spec.group.clone(),
            version: version.name.clone(),
            api_version: format!("{}/{}", spec.group, version.name),
            kind: spec.names.kind.clone(),
            plural: spec.names.plural.clone(),
        };
        Api::<DynamicObject>::all_with(client.clone(), &resource)
            .list(&ListParams::default().limit(1))
            .await
            .with_context(|| format!("list {} {}", resource.plural, resource.api_version))?;
    }
    Ok(true)
}
