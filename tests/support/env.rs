//! The simulated cluster a conformance case runs in: manifests with the class
//! name substituted and a loopback address injected into every Gateway, a
//! GatewayClass, the suite's generated Secrets/ConfigMaps, echo pods planned
//! from the Deployments, and EndpointSlices pointing Services at those pods.
//!
//! [`Cluster::build`] is pure (text in, documents out); [`Cluster::write_all`]
//! and [`Cluster::delete`] touch the config directory.

use super::echo::{EchoKind, PodSpec, ServerTls};
use super::pki::SuitePki;
use anyhow::{Context, Result};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// Controller name portcullis answers for.
pub const CONTROLLER_NAME: &str = "portcullis.dev/gateway-controller";

/// Where a case's addresses and ports go.
#[derive(Debug, Clone)]
pub struct Layout {
    /// First three octets of the /24 the Gateways get addresses from.
    pub gateway_block: [u8; 3],
    /// First three octets of the /24 the echo pods get addresses from.
    pub pod_block: [u8; 3],
    /// Added to every listener port.
    pub port_offset: u16,
    /// GatewayClass name substituted for `{GATEWAY_CLASS_NAME}`.
    pub class_name: String,
}

impl Layout {
    /// `--listen-address` (Gateways without an injected address bind here).
    pub fn listen_address(&self) -> Ipv4Addr {
        let [a, b, c] = self.gateway_block;
        Ipv4Addr::new(a, b, c, 254)
    }
}

/// One echo pod to start.
#[derive(Debug, Clone)]
pub struct PodPlan {
    /// Echo mode (`TCP_ECHO_SERVER` in the container env: the TCP echo).
    pub kind: EchoKind,
    /// Pod name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Deployment.
    pub deployment: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Pod template labels.
    pub labels: BTreeMap<String, String>,
    /// `ns/name` of the Secret holding the serving certificate.
    pub tls_secret: Option<String>,
    /// `ns/name` of the ConfigMap holding the client CA (`ca.crt`).
    pub client_ca_config_map: Option<String>,
}

/// The documents of a case, grouped by the file they are written to.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// File name → documents.
    pub files: BTreeMap<String, Vec<Value>>,
    /// `ns/name` of each Gateway → the address it was given.
    pub gateways: BTreeMap<String, Ipv4Addr>,
    /// Echo pods.
    pub pods: Vec<PodPlan>,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// `kind`, `namespace`, `name` of a document (namespace "default" when absent
/// for namespaced kinds, "" for cluster-scoped ones).
pub fn identity(doc: &Value) -> (String, String, String) {
    let kind = s(doc, &["kind"]).unwrap_or_default().to_string();
    let name = s(doc, &["metadata", "name"])
        .unwrap_or_default()
        .to_string();
    let cluster_scoped = matches!(kind.as_str(), "Namespace" | "GatewayClass");
    let ns = if cluster_scoped {
        String::new()
    } else {
        s(doc, &["metadata", "namespace"])
            .unwrap_or("default")
            .to_string()
    };
    (kind, ns, name)
}

/// Parses multi-document YAML, skipping empty documents.
pub fn parse_docs(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for d in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(d)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn labels_of(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn yaml(v: serde_json::Value) -> Value {
    serde_yaml::to_value(v).expect("invariant: JSON values always convert to YAML")
}

fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| (b'a' + rng.random_range(0..26u8)) as char)
        .collect()
}

impl Cluster {
    /// Builds the documents of a case. `manifests` are (file name, YAML text)
    /// pairs in application order (base first).
    pub fn build(manifests: &[(String, String)], layout: &Layout, pki: &SuitePki) -> Result<Self> {
        let mut files = BTreeMap::new();
        let mut gateways = BTreeMap::new();
        let mut pods = Vec::new();
        let mut next_gateway = 10u8;
        let mut next_pod = 1u8;
        let [ga, gb, gc] = layout.gateway_block;
        let [pa, pb, pc] = layout.pod_block;
        for (file, text) in manifests {
            let text = text
                .replace("{GATEWAY_CLASS_NAME}", &layout.class_name)
                .replace("{GATEWAY_CONTROLLER_NAME}", CONTROLLER_NAME);
            let mut docs = parse_docs(&text).with_context(|| format!("parsing {file}"))?;
            for doc in &mut docs {
                let (kind, ns, name) = identity(doc);
                match kind.as_str() {
                    "Gateway" => {
                        let has_addresses = doc
                            .get("spec")
                            .and_then(|sp| sp.get("addresses"))
                            .and_then(Value::as_sequence)
                            .is_some_and(|a| !a.is_empty());
                        if !has_addresses {
                            let ip = Ipv4Addr::new(ga, gb, gc, next_gateway);
                            next_gateway = next_gateway.saturating_add(1);
                            if let Some(spec) = doc.get_mut("spec").and_then(Value::as_mapping_mut)
                            {
                                spec.insert(
                                    "addresses".into(),
                                    yaml(serde_json::json!([{"type": "IPAddress", "value": ip.to_string()}])),
                                );
                            }
                            gateways.insert(format!("{ns}/{name}"), ip);
                        }
                    }
                    "Deployment" => {
                        let tmpl = doc.get("spec").and_then(|sp| sp.get("template"));
                        let containers = tmpl
                            .and_then(|t| t.get("spec"))
                            .and_then(|sp| sp.get("containers"))
                            .and_then(Value::as_sequence)
                            .cloned()
                            .unwrap_or_default();
                        let Some(container) = containers.first() else {
                            continue;
                        };
                        if !s(container, &["image"])
                            .unwrap_or_default()
                            .contains("echo-basic")
                        {
                            continue;
                        }
                        let env: BTreeMap<String, String> = container
                            .get("env")
                            .and_then(Value::as_sequence)
                            .into_iter()
                            .flatten()
                            .filter_map(|e| {
                                Some((
                                    s(e, &["name"])?.to_string(),
                                    s(e, &["value"]).unwrap_or_default().to_string(),
                                ))
                            })
                            .collect();
                        let volumes = tmpl
                            .and_then(|t| t.get("spec"))
                            .and_then(|sp| sp.get("volumes"))
                            .and_then(Value::as_sequence)
                            .cloned()
                            .unwrap_or_default();
                        let tls_secret = env
                            .contains_key("TLS_SERVER_CERT")
                            .then(|| {
                                volumes
                                    .iter()
                                    .find_map(|v| s(v, &["secret", "secretName"]))
                                    .map(|n| format!("{ns}/{n}"))
                            })
                            .flatten();
                        let client_ca = env
                            .contains_key("TLS_CLIENT_CACERTS")
                            .then(|| {
                                volumes
                                    .iter()
                                    .find_map(|v| s(v, &["configMap", "name"]))
                                    .map(|n| format!("{ns}/{n}"))
                            })
                            .flatten();
                        let replicas = doc
                            .get("spec")
                            .and_then(|sp| sp.get("replicas"))
                            .and_then(Value::as_u64)
                            .unwrap_or(1);
                        let labels = labels_of(
                            tmpl.and_then(|t| t.get("metadata"))
                                .and_then(|m| m.get("labels")),
                        );
                        let kind = if env.contains_key("TCP_ECHO_SERVER") {
                            EchoKind::Tcp
                        } else {
                            EchoKind::Http
                        };
                        let suffix = random_suffix();
                        for i in 0..replicas {
                            pods.push(PodPlan {
                                kind,
                                name: format!("{name}-{suffix}-{i}"),
                                namespace: ns.clone(),
                                deployment: name.clone(),
                                ip: Ipv4Addr::new(pa, pb, pc, next_pod),
                                labels: labels.clone(),
                                tls_secret: tls_secret.clone(),
                                client_ca_config_map: client_ca.clone(),
                            });
                            next_pod = next_pod.saturating_add(1);
                        }
                    }
                    _ => {}
                }
            }
            files.insert(file.clone(), docs);
        }
        let mut cluster = Cluster {
            files,
            gateways,
            pods,
        };
        cluster.fill_manual_endpoint_slices();
        let endpoint_slices = cluster.endpoint_slices();
        cluster
            .files
            .insert("00-endpointslices.yaml".into(), endpoint_slices);
        cluster
            .files
            .insert("00-generated-pki.yaml".into(), pki.documents());
        cluster.files.insert(
            "00-gatewayclass.yaml".into(),
            vec![yaml(serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": layout.class_name},
                "spec": {"controllerName": CONTROLLER_NAME},
            }))],
        );
        Ok(cluster)
    }

    /// All documents, in file order.
    pub fn documents(&self) -> impl Iterator<Item = &Value> {
        self.files.values().flatten()
    }

    /// Pod addresses of the Deployment `ns/name`.
    pub fn deployment_ips(&self, ns: &str, name: &str) -> Vec<Ipv4Addr> {
        self.pods
            .iter()
            .filter(|p| p.namespace == ns && p.deployment == name)
            .map(|p| p.ip)
            .collect()
    }

    /// Upstream fills the empty IPv4 EndpointSlices of HTTPRouteServiceTypes with
    /// the infra-backend-v1 pod IPs; do the same for every empty IPv4 slice.
    fn fill_manual_endpoint_slices(&mut self) {
        let ips = self.deployment_ips("gateway-conformance-infra", "infra-backend-v1");
        for docs in self.files.values_mut() {
            for doc in docs.iter_mut() {
                if identity(doc).0 != "EndpointSlice" || s(doc, &["addressType"]) != Some("IPv4") {
                    continue;
                }
                let empty = doc
                    .get("endpoints")
                    .and_then(Value::as_sequence)
                    .is_none_or(|e| e.is_empty());
                if let (true, Some(m)) = (empty, doc.as_mapping_mut()) {
                    let eps: Vec<serde_json::Value> = ips
                        .iter()
                        .map(|ip| serde_json::json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
                        .collect();
                    m.insert("endpoints".into(), yaml(serde_json::Value::Array(eps)));
                }
            }
        }
    }

    /// One EndpointSlice per Service with a selector, listing the matching pods.
    fn endpoint_slices(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for doc in self.documents() {
            let (kind, ns, name) = identity(doc);
            if kind != "Service" {
                continue;
            }
            let selector = labels_of(doc.get("spec").and_then(|sp| sp.get("selector")));
            if selector.is_empty() {
                continue;
            }
            let endpoints: Vec<serde_json::Value> = self
                .pods
                .iter()
                .filter(|p| {
                    p.namespace == ns && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                })
                .map(|p| {
                    serde_json::json!({
                        "addresses": [p.ip.to_string()],
                        "conditions": {"ready": true},
                        "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": p.name},
                    })
                })
                .collect();
            let ports: Vec<serde_json::Value> = doc
                .get("spec")
                .and_then(|sp| sp.get("ports"))
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_u64).unwrap_or(0);
                    let target = p.get("targetPort").and_then(Value::as_u64).unwrap_or(port);
                    let mut e = serde_json::json!({"port": target, "protocol": s(p, &["protocol"]).unwrap_or("TCP")});
                    if let Some(n) = s(p, &["name"]) {
                        e["name"] = n.into();
                    }
                    if let Some(a) = s(p, &["appProtocol"]) {
                        e["appProtocol"] = a.into();
                    }
                    e
                })
                .collect();
            out.push(yaml(serde_json::json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{name}-harness"),
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            })));
        }
        out
    }

    /// Echo pod specs with their TLS material resolved.
    pub fn pod_specs(&self, pki: &SuitePki) -> Result<Vec<PodSpec>> {
        self.pods
            .iter()
            .map(|p| {
                let tls = match &p.tls_secret {
                    Some(secret) => {
                        let pair = pki.secret(secret)?;
                        let client_ca_pem = match &p.client_ca_config_map {
                            Some(cm) => Some(pki.config_map(cm)?.to_string()),
                            None => None,
                        };
                        Some(ServerTls {
                            cert_pem: pair.cert_pem.clone(),
                            key_pem: pair.key_pem.clone(),
                            client_ca_pem,
                        })
                    }
                    None => None,
                };
                Ok(PodSpec {
                    kind: p.kind,
                    name: p.name.clone(),
                    namespace: p.namespace.clone(),
                    deployment: p.deployment.clone(),
                    ip: p.ip,
                    tls,
                })
            })
            .collect()
    }

    /// Writes every file into `dir` (atomically: temp file + rename).
    pub fn write_all(&self, dir: &Path) -> Result<()> {
        for name in self.files.keys() {
            self.write_file(dir, name)?;
        }
        Ok(())
    }

    fn write_file(&self, dir: &Path, name: &str) -> Result<()> {
        let docs = self.files.get(name).map(Vec::as_slice).unwrap_or_default();
        let mut text = String::new();
        for d in docs {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(d)?);
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(name))?;
        Ok(())
    }

    /// Deletes the object `kind ns/name` and rewrites its file. Returns whether
    /// it existed.
    pub fn delete(&mut self, dir: &Path, kind: &str, ns: &str, name: &str) -> Result<bool> {
        let mut touched = None;
        for (file, docs) in self.files.iter_mut() {
            let before = docs.len();
            docs.retain(|d| {
                let (k, n, nm) = identity(d);
                !(k == kind && n == ns && nm == name)
            });
            if docs.len() != before {
                touched = Some(file.clone());
            }
        }
        match touched {
            Some(file) => {
                self.write_file(dir, &file)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Cluster {
    /// Edits the object `kind ns/name` with `edit`, bumps its
    /// `metadata.generation` (as the API server does on a spec change) and
    /// rewrites its file. Returns the new generation, or None when not found.
    pub fn modify(
        &mut self,
        dir: &Path,
        kind: &str,
        ns: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<Option<i64>> {
        let mut found = None;
        for (file, docs) in self.files.iter_mut() {
            if let Some(doc) = docs.iter_mut().find(|d| {
                let (k, n, nm) = identity(d);
                k == kind && n == ns && nm == name
            }) {
                edit(doc);
                let generation = doc
                    .get("metadata")
                    .and_then(|m| m.get("generation"))
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
                    + 1;
                if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_mapping_mut) {
                    meta.insert("generation".into(), generation.into());
                }
                found = Some((file.clone(), generation));
                break;
            }
        }
        match found {
            Some((file, generation)) => {
                self.write_file(dir, &file)?;
                Ok(Some(generation))
            }
            None => Ok(None),
        }
    }
}

impl Cluster {
    /// Creates or replaces (same kind, namespace, name) `doc` in file `file`
    /// and rewrites that file.
    pub fn upsert(&mut self, dir: &Path, file: &str, doc: Value) -> Result<()> {
        let id = identity(&doc);
        let docs = self.files.entry(file.to_string()).or_default();
        match docs.iter_mut().find(|d| identity(d) == id) {
            Some(existing) => *existing = doc,
            None => docs.push(doc),
        }
        self.write_file(dir, file)
    }
}

/// Builds a mapping-valued YAML document from JSON (for tests writing extra objects).
pub fn doc(v: serde_json::Value) -> Value {
    yaml(v)
}
