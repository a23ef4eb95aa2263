//! BackendTLSPolicy: which Service ports the gateway reaches over TLS, with
//! what trust and names, and the policies' status; plus the client
//! certificate a Gateway presents to backends (`spec.tls.backend`).
//!
//! Policies are resolved once per compile into [`BackendTls`]; backend
//! resolution (`backends`) asks it for the TLS settings of each Service port
//! it builds an upstream for.

use super::refs::{self, Referrer, Target, GATEWAY_GROUP};
use super::{Ctx, Problem};
use crate::dataplane::{UpstreamProtocol, UpstreamTls};
use crate::model::backend_tls_policy::BackendTlsPolicy;
use crate::model::{Gateway, ObjectKey, Resources};
use crate::status::{Condition, ConditionType, ObjectStatus, Reason};
use crate::tls::backend::{self, ClientSettings, ExpectedName};
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a valid policy asks of the connections to its targets.
#[derive(Debug)]
pub(crate) struct PolicySettings {
    /// The policy.
    pub key: ObjectKey,
    /// SNI sent.
    pub server_name: rustls::pki_types::ServerName<'static>,
    /// Trust anchors.
    pub roots: Arc<rustls::RootCertStore>,
    /// Names accepted instead of the hostname (subjectAltNames).
    pub names: Vec<ExpectedName>,
}

/// The effect of a policy on one target.
#[derive(Debug, Clone)]
pub(crate) enum PolicyEffect {
    /// Speak TLS with these settings.
    Tls(Arc<PolicySettings>),
    /// The winning policy is invalid: requests to the target fail (5xx)
    /// rather than go out in cleartext.
    Broken(ObjectKey),
}

/// Target of a policy: Service namespace and name, and the port name (none:
/// every port).
type TargetKey = (String, String, Option<String>);

/// Every policy of one compile, resolved.
#[derive(Debug, Default)]
pub(crate) struct BackendTls {
    targets: HashMap<TargetKey, PolicyEffect>,
    /// Client certificates of Gateways that name one.
    pub gateway_certs: BTreeMap<ObjectKey, Arc<CertifiedKey>>,
    /// Why a Gateway's backend client certificate could not be used.
    pub gateway_cert_problems: BTreeMap<ObjectKey, Problem>,
    /// Status of every policy.
    pub statuses: Vec<ObjectStatus>,
}

impl BackendTls {
    /// The policy effect on port `port_name` of Service `ns/service`: a
    /// policy naming the port wins over one naming the whole Service.
    pub(crate) fn for_port(
        &self,
        ns: &str,
        service: &str,
        port_name: Option<&str>,
    ) -> Option<&PolicyEffect> {
        let key = |section: Option<&str>| {
            (
                ns.to_string(),
                service.to_string(),
                section.map(str::to_string),
            )
        };
        port_name
            .and_then(|p| self.targets.get(&key(Some(p))))
            .or_else(|| self.targets.get(&key(None)))
    }

    /// The dataplane TLS settings for an upstream speaking `protocol` under
    /// `settings`, with one configuration per Gateway client certificate.
    pub(crate) fn upstream_tls(
        &self,
        settings: &PolicySettings,
        protocol: UpstreamProtocol,
    ) -> Result<Arc<UpstreamTls>, backend::Error> {
        let alpn = match protocol {
            UpstreamProtocol::H2c => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 | UpstreamProtocol::WebSocket => vec![b"http/1.1".to_vec()],
        };
        let client = ClientSettings {
            roots: settings.roots.clone(),
            names: settings.names.clone(),
            alpn,
        };
        let mut gateway_configs = BTreeMap::new();
        for (gateway, cert) in &self.gateway_certs {
            gateway_configs.insert(
                gateway.clone(),
                backend::client_config(&client, Some(cert.clone()))?,
            );
        }
        Ok(Arc::new(UpstreamTls {
            policy: settings.key.clone(),
            server_name: settings.server_name.clone(),
            config: backend::client_config(&client, None)?,
            gateway_configs,
        }))
    }
}

/// Resolves every BackendTLSPolicy, and the backend client certificates of
/// `gateways` (ours).
pub(crate) fn resolve(ctx: &Ctx<'_>, gateways: &[&Gateway]) -> BackendTls {
    let mut out = BackendTls::default();
    for gw in gateways {
        let Some(r) = gw
            .spec
            .tls
            .as_ref()
            .and_then(|t| t.backend.as_ref())
            .and_then(|b| b.client_certificate_ref.as_ref())
        else {
            continue;
        };
        match gateway_client_cert(ctx, gw, r) {
            Ok(cert) => {
                out.gateway_certs.insert(gw.metadata.key(), Arc::new(cert));
            }
            Err(p) => {
                out.gateway_cert_problems.insert(gw.metadata.key(), p);
            }
        }
    }
    let mut policies: Vec<&BackendTlsPolicy> = ctx
        .resources
        .backend_tls_policies
        .iter()
        .map(Arc::as_ref)
        .collect();
    // Oldest first, then by namespace/name: the first policy to claim a
    // target keeps it, later ones are Conflicted.
    policies.sort_by(|a, b| {
        let age = |p: &BackendTlsPolicy| p.metadata.creation_timestamp.clone().unwrap_or_default();
        age(a)
            .cmp(&age(b))
            .then_with(|| a.metadata.key().cmp(&b.metadata.key()))
    });
    for policy in policies {
        let status = resolve_policy(ctx.resources, policy, &mut out.targets);
        out.statuses.push(status);
    }
    out
}

fn gateway_client_cert(
    ctx: &Ctx<'_>,
    gw: &Gateway,
    r: &crate::model::gateway::SecretObjectReference,
) -> Result<CertifiedKey, Problem> {
    let invalid = |m: String| Problem::new(Reason::InvalidClientCertificateRef, m);
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err(invalid(format!(
            "unsupported clientCertificateRef {group}/{kind}"
        )));
    }
    let own_ns = gw.metadata.namespace.as_str();
    let ns = r.namespace.as_deref().unwrap_or(own_ns);
    let from = Referrer {
        group: GATEWAY_GROUP,
        kind: "Gateway",
        namespace: own_ns,
    };
    let to = Target {
        group: "",
        kind: "Secret",
        namespace: ns,
        name: &r.name,
    };
    if !refs::is_permitted(ctx.resources, from, to) {
        return Err(Problem::new(
            Reason::RefNotPermitted,
            format!(
                "no ReferenceGrant allows a reference to Secret {ns}/{}",
                r.name
            ),
        ));
    }
    let secret = ctx
        .secret(ns, &r.name)
        .ok_or_else(|| invalid(format!("Secret {ns}/{} not found", r.name)))?;
    let (Some(cert), Some(key)) = (secret.data.get("tls.crt"), secret.data.get("tls.key")) else {
        return Err(invalid(format!(
            "Secret {ns}/{} lacks tls.crt or tls.key",
            r.name
        )));
    };
    crate::tls::certs::load_certified_key(cert, key)
        .map_err(|e| invalid(format!("Secret {ns}/{}: {e}", r.name)))
}

/// Validates one policy, claims its targets in `targets` (first claim wins)
/// and returns its status.
fn resolve_policy(
    resources: &Resources,
    policy: &BackendTlsPolicy,
    targets: &mut HashMap<TargetKey, PolicyEffect>,
) -> ObjectStatus {
    let meta = &policy.metadata;
    let generation = meta.generation();
    let mut status = ObjectStatus::new("BackendTLSPolicy", &meta.namespace, &meta.name);
    let keys: Vec<TargetKey> = policy
        .spec
        .target_refs
        .iter()
        .filter(|t| t.group.is_empty() && t.kind == "Service")
        .map(|t| {
            (
                meta.namespace.clone(),
                t.name.clone(),
                t.section_name.clone().filter(|s| !s.is_empty()),
            )
        })
        .collect();
    let (settings, unresolved) = settings(resources, policy);
    let accepted: Result<(), Problem> = if keys.is_empty() {
        Err(Problem::new(
            Reason::Invalid,
            "targetRefs must name Services (group \"\", kind Service)",
        ))
    } else if keys.iter().all(|k| targets.contains_key(k)) {
        Err(Problem::new(
            Reason::Conflicted,
            "an older policy already targets the same Service port",
        ))
    } else {
        settings.as_ref().map(|_| ()).map_err(Clone::clone)
    };
    if accepted
        .as_ref()
        .err()
        .is_none_or(|p| p.reason != Reason::Conflicted)
        && !keys.is_empty()
    {
        let effect = match &settings {
            Ok(s) => PolicyEffect::Tls(s.clone()),
            Err(_) => PolicyEffect::Broken(meta.key()),
        };
        for k in keys {
            targets.entry(k).or_insert_with(|| effect.clone());
        }
    }
    let cond = |ty, ok: Result<(), &Problem>, good| match ok {
        Ok(()) => Condition::new(ty, true, good, "", generation),
        Err(p) => Condition::new(ty, false, p.reason, &p.message, generation),
    };
    status.conditions.push(cond(
        ConditionType::Accepted,
        accepted.as_ref().map(|_| ()),
        Reason::Accepted,
    ));
    status.conditions.push(cond(
        ConditionType::ResolvedRefs,
        unresolved.as_ref().map_or(Ok(()), Err),
        Reason::ResolvedRefs,
    ));
    status
}

/// The policy's TLS settings, or why it is not usable; and, separately, the
/// reference problem for ResolvedRefs.
fn settings(
    resources: &Resources,
    policy: &BackendTlsPolicy,
) -> (Result<Arc<PolicySettings>, Problem>, Option<Problem>) {
    let v = &policy.spec.validation;
    let ns = &policy.metadata.namespace;
    let no_ca = |m: String| Problem::new(Reason::NoValidCACertificate, m);
    let mut unresolved = None;
    let roots = if !v.ca_certificate_refs.is_empty() {
        let mut pem = String::new();
        for r in &v.ca_certificate_refs {
            if !r.group.is_empty() || r.kind != "ConfigMap" {
                unresolved.get_or_insert(Problem::new(
                    Reason::InvalidKind,
                    format!(
                        "caCertificateRef kind {}/{} is not supported",
                        r.group, r.kind
                    ),
                ));
                continue;
            }
            match resources
                .config_map(ns, &r.name)
                .and_then(|c| c.data.get("ca.crt"))
            {
                Some(data) if backend::roots_from_pem(data.as_bytes()).is_ok() => {
                    pem.push_str(data);
                    pem.push('\n');
                }
                Some(_) => {
                    unresolved.get_or_insert(Problem::new(
                        Reason::InvalidCACertificateRef,
                        format!(
                            "ConfigMap {ns}/{} holds no valid CA certificate in ca.crt",
                            r.name
                        ),
                    ));
                }
                None => {
                    unresolved.get_or_insert(Problem::new(
                        Reason::InvalidCACertificateRef,
                        format!("ConfigMap {ns}/{} with key ca.crt not found", r.name),
                    ));
                }
            }
        }
        match &unresolved {
            // Any bad reference makes the policy unusable: sending traffic
            // with part of the trust the user asked for would be a guess.
            Some(p) => Err(no_ca(p.message.clone())),
            None => backend::roots_from_pem(pem.as_bytes())
                .map(Arc::new)
                .map_err(|e| no_ca(e.to_string())),
        }
    } else {
        match v.well_known_ca_certificates.as_deref() {
            Some("System") => backend::system_roots()
                .ok_or_else(|| no_ca("the system CA store holds no certificate".into())),
            Some(other) => Err(Problem::new(
                Reason::Invalid,
                format!("wellKnownCACertificates {other} is not supported"),
            )),
            None => Err(no_ca(
                "neither caCertificateRefs nor wellKnownCACertificates is set".into(),
            )),
        }
    };
    let server_name =
        backend::server_name(&v.hostname).map_err(|e| Problem::new(Reason::Invalid, e.to_string()));
    let names = v
        .subject_alt_names
        .iter()
        .map(|s| match (s.kind.as_str(), &s.hostname, &s.uri) {
            ("Hostname", Some(h), _) => Ok(ExpectedName::Dns(h.clone())),
            ("URI", _, Some(u)) => Ok(ExpectedName::Uri(u.clone())),
            (kind, _, _) => Err(Problem::new(
                Reason::Invalid,
                format!("subjectAltName of type {kind:?} lacks its value"),
            )),
        })
        .collect::<Result<Vec<_>, _>>();
    let result = (|| {
        Ok(Arc::new(PolicySettings {
            key: policy.metadata.key(),
            roots: roots?,
            server_name: server_name?,
            names: names?,
        }))
    })();
    (result, unresolved)
}
