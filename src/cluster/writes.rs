//! Every write one compiled snapshot needs ([`plan`], pure): the status of
//! each object portcullis owns (through [`super::status_patch`]), the
//! readiness of each Issuer and ClusterIssuer, and the filled
//! `certificateRefs` ([`super::certificate_refs`]); the per-Gateway
//! Services are planned beside it ([`super::gateway_services`], joined by
//! the controller, which also deletes). An object whose live
//! state already says what portcullis would write gets no write, so a
//! snapshot that changes nothing costs no API call.

use super::addresses::{addresses, service_ingress, AddressSources};
use super::cache::Live;
use super::kinds::Watched;
use super::status_patch::{
    self, issuer_status, policy_ancestors, status_patch, OwnedParents, PatchContext, Target,
};
use crate::dataplane::RouteKind;
use crate::issuer::acme::AcmeIssuer;
use crate::issuer::demand::OwnerKind;
use crate::issuer::status::ListenerConditions;
use crate::model::issuer::IssuerSpec;
use crate::model::{ObjectKey, Resources};
use crate::status::{ObjectStatus, Status};
use kube::api::ApiResource;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// One server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    /// The resource written.
    pub resource: ApiResource,
    /// Its namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Whether the body goes to the status subresource.
    pub status: bool,
    /// The field manager.
    pub manager: &'static str,
    /// The body.
    pub body: Body,
    /// The live object's resourceVersion the body was planned from (empty
    /// when not planned from a live object's status).
    pub read_version: String,
}

/// A write's body as compact JSON text. The first plan after a start
/// holds one body per object (5,500 in the scale benchmark); as
/// `serde_json::Value` trees they were the largest share of the heap's
/// peak. Parsed again only when its request is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Body(Box<str>);

impl Body {
    /// Keeps `value`.
    pub fn new(value: &serde_json::Value) -> Self {
        Self(value.to_string().into_boxed_str())
    }

    /// The body as a value.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

/// The live version each status write was planned from, for the objects
/// whose write has not come back through the watch yet. A plan made from
/// a snapshot older than that echo reads the same version again; a write
/// planned from it would carry the old resourceVersion and be refused
/// (409), or repeat what was just written. Such writes wait for the echo,
/// which brings a new snapshot and a new plan. Only the objects of the
/// latest plan are kept: once the echo arrives the planner reads the new
/// version (and usually plans nothing more for it).
#[derive(Debug, Default)]
pub struct Applied(HashMap<(String, ObjectKey), String>);

impl Applied {
    /// `applies` without those planned from a version a write was already
    /// applied on.
    pub fn not_yet_applied(&mut self, applies: Vec<Apply>) -> Vec<Apply> {
        let previous = std::mem::take(&mut self.0);
        applies
            .into_iter()
            .filter(|a| {
                let Some(key) = Self::key(a) else {
                    return true;
                };
                match previous.get(&key) {
                    Some(version) if *version == a.read_version => {
                        self.0.insert(key, version.clone());
                        false
                    }
                    _ => true,
                }
            })
            .collect()
    }

    /// `a` was applied.
    pub fn record(&mut self, a: &Apply) {
        if let Some(key) = Self::key(a) {
            self.0.insert(key, a.read_version.clone());
        }
    }

    fn key(a: &Apply) -> Option<(String, ObjectKey)> {
        (!a.read_version.is_empty()).then(|| {
            (
                a.resource.kind.clone(),
                ObjectKey::new(&a.namespace, &a.name),
            )
        })
    }
}

/// What the planner needs besides the snapshot.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// `--controller-name`.
    pub controller_name: &'a str,
    /// Whether filled references are written back.
    pub write_certificate_refs: bool,
    /// The `--gateway-service` Service, when one is named.
    pub gateway_service: Option<&'a ObjectKey>,
    /// Whether each Gateway has a Service of its own
    /// (`--per-gateway-service`): its LoadBalancer ingress, once it has
    /// any, is that Gateway's instead of `gateway_service`'s.
    pub per_gateway_service: bool,
    /// Addresses for Gateways that name none.
    pub addresses: &'a AddressSources,
    /// The `CertificateReady` conditions of the listeners the issuer
    /// serves, set on each Gateway's and ListenerSet's status as it is
    /// written (the compiled status is shared, not copied to annotate).
    pub certificates: &'a ListenerConditions,
}

/// The writes `resources` (as the API holds them), compiled into `status`,
/// needs, given the `live` objects.
pub fn plan(
    resources: &Resources,
    status: &Status,
    live: &BTreeMap<(Watched, ObjectKey), Live>,
    settings: &Settings<'_>,
    now: SystemTime,
) -> Vec<Apply> {
    let owned = OwnedParents::from_status(status);
    let ctx = PatchContext {
        controller_name: settings.controller_name,
        field_manager: status_patch::FIELD_MANAGER,
        owned: &owned,
    };
    let ingress = settings
        .gateway_service
        .and_then(|k| live.get(&(Watched::Service, k.clone())))
        .map(|l| service_ingress(l.object.value().get("status")))
        .unwrap_or_default();
    let ancestors = policy_ancestors(resources, status);
    let mut out = Vec::new();
    let mut push = |target: &Target<'_>, watched: Watched, ours: &ObjectStatus| {
        let key = ObjectKey::new(&ours.namespace, &ours.name);
        let Some(l) = live.get(&(watched, key)) else {
            // Deleted since the snapshot: nothing to write to.
            return;
        };
        let ours = settings.certificates.annotated(ours);
        let ours = &*ours;
        match status_patch(target, ours, &l.object.value(), &ctx, now) {
            Ok(Some(body)) => out.push(status_apply(target, ours, body, &l.resource_version)),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(kind = target.kind(), namespace = %ours.namespace, name = %ours.name, %error, "status not written");
            }
        }
    };
    let gateways: std::collections::HashMap<(&str, &str), &crate::model::Gateway> = resources
        .gateways
        .iter()
        .map(|g| {
            (
                (g.metadata.namespace.as_str(), g.metadata.name.as_str()),
                &**g,
            )
        })
        .collect();
    let mut reported: std::collections::BTreeSet<(Watched, ObjectKey)> = Default::default();
    for ours in &status.objects {
        let key = ObjectKey::new(&ours.namespace, &ours.name);
        let (watched, target) = match ours.kind.as_str() {
            "GatewayClass" => (Watched::GatewayClass, Target::GatewayClass),
            "Gateway" => {
                let Some(gw) = gateways.get(&(ours.namespace.as_str(), ours.name.as_str())) else {
                    continue;
                };
                let own = settings
                    .per_gateway_service
                    .then(|| own_ingress(&key, live))
                    .filter(|i| !i.is_empty());
                let ingress = own.as_deref().unwrap_or(&ingress);
                let list = addresses(gw, ours, ingress, settings.addresses);
                push(
                    &Target::Gateway { addresses: &list },
                    Watched::Gateway,
                    ours,
                );
                continue;
            }
            "ListenerSet" => (Watched::ListenerSet, Target::ListenerSet),
            "BackendTLSPolicy" => {
                let list = ancestors.get(&key).cloned().unwrap_or_default();
                reported.insert((Watched::BackendTlsPolicy, key));
                push(
                    &Target::BackendTlsPolicy { ancestors: &list },
                    Watched::BackendTlsPolicy,
                    ours,
                );
                continue;
            }
            kind => match route_kind(kind) {
                Some((watched, rk)) => (watched, Target::Route(rk)),
                None => continue,
            },
        };
        reported.insert((watched, key));
        push(&target, watched, ours);
    }
    // Routes and policies compile no longer reports on may still carry
    // entries of ours: an empty status removes them.
    for ((watched, key), l) in live {
        let list = match watched {
            Watched::BackendTlsPolicy => "ancestors",
            w if route_kind(w.kind()).is_some() => "parents",
            _ => continue,
        };
        if reported.contains(&(*watched, key.clone()))
            || !has_entry_of(&l.object.value(), list, settings.controller_name)
        {
            continue;
        }
        let empty = ObjectStatus::new(watched.kind(), &key.namespace, &key.name);
        let target = match watched {
            Watched::BackendTlsPolicy => Target::BackendTlsPolicy { ancestors: &[] },
            w => match route_kind(w.kind()) {
                Some((_, rk)) => Target::Route(rk),
                None => continue,
            },
        };
        push(&target, *watched, &empty);
    }
    for issuer in &resources.issuers {
        let key = issuer.metadata.key();
        let (ready, message) = readiness(&issuer.spec, &key.namespace, resources);
        let ours = issuer_status(
            &Target::Issuer,
            &key,
            ready,
            &message,
            issuer.metadata.generation(),
        );
        push(&Target::Issuer, Watched::Issuer, &ours);
    }
    for issuer in &resources.cluster_issuers {
        let key = ObjectKey::new("", &issuer.metadata.name);
        let ns = resources.cluster_resource_namespace();
        let (ready, message) = readiness(&issuer.spec, ns, resources);
        let ours = issuer_status(
            &Target::ClusterIssuer,
            &key,
            ready,
            &message,
            issuer.metadata.generation(),
        );
        push(&Target::ClusterIssuer, Watched::ClusterIssuer, &ours);
    }
    if settings.write_certificate_refs {
        for w in super::certificate_refs::plan(resources, settings.controller_name) {
            let watched = match w.kind {
                OwnerKind::Gateway => Watched::Gateway,
                OwnerKind::ListenerSet => Watched::ListenerSet,
            };
            out.push(Apply {
                resource: watched.api_resource("v1"),
                namespace: w.key.namespace,
                name: w.key.name,
                status: false,
                manager: super::certificate_refs::FIELD_MANAGER,
                body: Body::new(&w.body),
                read_version: String::new(),
            });
        }
    }
    out
}

/// The LoadBalancer ingress of Gateway `gateway`'s own Service
/// ([`super::gateway_services`]), if that Service is one portcullis made.
fn own_ingress(
    gateway: &ObjectKey,
    live: &BTreeMap<(Watched, ObjectKey), Live>,
) -> Vec<super::status_patch::GatewayAddress> {
    let key = ObjectKey::new(
        &gateway.namespace,
        &super::gateway_services::service_name(&gateway.name),
    );
    live.get(&(Watched::Service, key))
        .map(|l| l.object.value())
        .filter(super::gateway_services::is_managed)
        .map(|v| service_ingress(v.get("status")))
        .unwrap_or_default()
}

/// The watched kind and route kind of a route kind name.
fn route_kind(kind: &str) -> Option<(Watched, RouteKind)> {
    Some(match kind {
        "HTTPRoute" => (Watched::HttpRoute, RouteKind::Http),
        "GRPCRoute" => (Watched::GrpcRoute, RouteKind::Grpc),
        "TLSRoute" => (Watched::TlsRoute, RouteKind::Tls),
        "TCPRoute" => (Watched::TcpRoute, RouteKind::Tcp),
        "UDPRoute" => (Watched::UdpRoute, RouteKind::Udp),
        _ => return None,
    })
}

/// Whether the live object's `status.<list>` has an entry written by
/// `controller_name`.
fn has_entry_of(object: &serde_json::Value, list: &str, controller_name: &str) -> bool {
    object
        .pointer(&format!("/status/{list}"))
        .and_then(|l| l.as_array())
        .is_some_and(|l| l.iter().any(|e| e["controllerName"] == controller_name))
}

/// The apply of a status body, to the version the body names.
fn status_apply(
    target: &Target<'_>,
    ours: &ObjectStatus,
    body: serde_json::Value,
    read_version: &str,
) -> Apply {
    let api_version = body["apiVersion"]
        .as_str()
        .unwrap_or(target.api_version())
        .to_string();
    let version = api_version.rsplit('/').next().unwrap_or("v1").to_string();
    Apply {
        resource: ApiResource {
            group: target.api_group().to_string(),
            version,
            api_version,
            kind: target.kind().to_string(),
            plural: target.plural().to_string(),
        },
        namespace: if target.is_namespaced() {
            ours.namespace.clone()
        } else {
            String::new()
        },
        name: ours.name.clone(),
        status: true,
        manager: status_patch::FIELD_MANAGER,
        body: Body::new(&body),
        read_version: read_version.to_string(),
    }
}

/// Whether an issuer can issue as configured, and why not.
pub fn readiness(spec: &IssuerSpec, namespace: &str, resources: &Resources) -> (bool, String) {
    match spec.kind() {
        None => (
            false,
            "exactly one of spec.acme, spec.ca and spec.selfSigned must be set".into(),
        ),
        Some("acme") => match spec
            .acme
            .as_ref()
            .map(|a| AcmeIssuer::resolve(a, namespace, resources))
        {
            Some(Ok(a)) => (true, format!("ACME server {}", a.server)),
            Some(Err(e)) => (false, e.to_string()),
            None => (false, "spec.acme is missing".into()),
        },
        Some("ca") => {
            let Some(ca) = &spec.ca else {
                return (false, "spec.ca is missing".into());
            };
            let Some(secret) = resources.secret(namespace, &ca.secret_name) else {
                return (
                    false,
                    format!("CA Secret {namespace}/{} not found", ca.secret_name),
                );
            };
            match (secret.data.get("tls.crt"), secret.data.get("tls.key")) {
                (Some(crt), Some(key)) => {
                    match crate::issuer::ca_issuer::CaSigner::from_pem(crt, key) {
                        Ok(_) => (
                            true,
                            format!(
                                "signing with the CA in Secret {namespace}/{}",
                                ca.secret_name
                            ),
                        ),
                        Err(e) => (false, crate::issuer::ErrorChain(&e).to_string()),
                    }
                }
                _ => (
                    false,
                    format!(
                        "CA Secret {namespace}/{} lacks tls.crt or tls.key",
                        ca.secret_name
                    ),
                ),
            }
        }
        Some(_) => (true, "self-signed".into()),
    }
}

#[cfg(test)]
mod tests;
