//! Loading manifests: parsing multi-document YAML into [`Object`]s (pure), and
//! reading a directory of files with a per-file last-good cache, so that a file
//! that is half-written or broken keeps contributing what it held before.

use super::core::SecretManifest;
use super::{Object, ObjectKey, Resources, Secret};
use base64::Engine;
use serde::de::DeserializeOwned;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a manifest (or one object of it) could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// An object that an earlier file (in path order), or an earlier
    /// document of the same file, already defines. The first definition is
    /// used; this one is left out, and the rest of its file is applied.
    #[error("{kind} {key} is already defined in {first}; this definition is ignored")]
    Duplicate {
        /// Kind.
        kind: String,
        /// `namespace/name` (just the name for cluster-scoped kinds).
        key: String,
        /// The file whose definition is used.
        first: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// File.
        path: String,
        /// OS error text.
        message: String,
    },
    /// The YAML itself is malformed.
    #[error("{source_name}: document {document}: malformed YAML: {message}")]
    Yaml {
        /// File name.
        source_name: String,
        /// Document index (1-based).
        document: usize,
        /// Parser message.
        message: String,
    },
    /// A known kind whose fields have the wrong shape.
    #[error("{source_name}: document {document}: {kind} {name}: {message}")]
    Invalid {
        /// File name.
        source_name: String,
        /// Document index (1-based).
        document: usize,
        /// Kind.
        kind: String,
        /// Object name (may be empty).
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// What one file yielded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Objects of kinds portcullis reads.
    pub objects: Vec<Object>,
    /// `apiVersion kind name` of documents of kinds portcullis ignores.
    pub ignored: Vec<String>,
}

/// Parses every YAML document in `text`. Any malformed or invalid document fails
/// the whole text: a file is applied entirely or not at all.
pub fn parse_documents(text: &str, source_name: &str) -> Result<Parsed, Error> {
    let mut parsed = Parsed::default();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value: serde_yaml::Value =
            serde::Deserialize::deserialize(doc).map_err(|e| Error::Yaml {
                source_name: source_name.to_string(),
                document,
                message: e.to_string(),
            })?;
        if value.is_null() {
            continue;
        }
        parse_object(value, source_name, document, &mut parsed)?;
    }
    Ok(parsed)
}

/// Parses one object as the Kubernetes API serves it (JSON, with
/// `apiVersion` and `kind` set), the same way a manifest document is read:
/// Kubernetes mode and standalone mode share every field rule. `None` for
/// kinds portcullis does not read.
pub fn parse_api_object(
    value: &serde_json::Value,
    source_name: &str,
) -> Result<Option<Object>, Error> {
    let yaml = serde_yaml::to_value(value).map_err(|e| Error::Yaml {
        source_name: source_name.to_string(),
        document: 1,
        message: e.to_string(),
    })?;
    let mut parsed = Parsed::default();
    parse_object(yaml, source_name, 1, &mut parsed)?;
    Ok(parsed.objects.pop())
}

fn str_field<'a>(v: &'a serde_yaml::Value, key: &str) -> &'a str {
    v.get(key).and_then(|s| s.as_str()).unwrap_or("")
}

fn parse_object(
    value: serde_yaml::Value,
    source_name: &str,
    document: usize,
    parsed: &mut Parsed,
) -> Result<(), Error> {
    if !value.is_mapping() {
        return Err(Error::Yaml {
            source_name: source_name.to_string(),
            document,
            message: "a manifest must be a mapping with apiVersion and kind".into(),
        });
    }
    // A `kind: List` wraps items; kubectl writes these.
    let api_version = str_field(&value, "apiVersion").to_string();
    let kind = str_field(&value, "kind").to_string();
    let name = value
        .get("metadata")
        .map(|m| str_field(m, "name").to_string())
        .unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    let invalid = |message: String| Error::Invalid {
        source_name: source_name.to_string(),
        document,
        kind: kind.clone(),
        name: name.clone(),
        message,
    };
    if kind.is_empty() || api_version.is_empty() {
        return Err(invalid("missing apiVersion or kind".into()));
    }
    fn de<T: DeserializeOwned>(
        v: serde_yaml::Value,
        invalid: &dyn Fn(String) -> Error,
    ) -> Result<T, Error> {
        serde_yaml::from_value(v).map_err(|e| invalid(e.to_string()))
    }
    let obj = match (group, kind.as_str()) {
        ("gateway.networking.k8s.io", "GatewayClass") => {
            Object::GatewayClass(Arc::new(de(value, &invalid)?))
        }
        ("gateway.networking.k8s.io", "Gateway") => Object::Gateway(Arc::new(de(value, &invalid)?)),
        (
            "gateway.networking.k8s.io" | "gateway.networking.x-k8s.io",
            "ListenerSet" | "XListenerSet",
        ) => Object::ListenerSet(Arc::new(de(value, &invalid)?)),
        ("gateway.networking.k8s.io", "HTTPRoute") => {
            Object::HttpRoute(Arc::new(de(value, &invalid)?))
        }
        ("gateway.networking.k8s.io", "GRPCRoute") => {
            Object::GrpcRoute(Arc::new(de(value, &invalid)?))
        }
        ("gateway.networking.k8s.io", "TLSRoute") => {
            Object::TlsRoute(Arc::new(de(value, &invalid)?))
        }
        ("gateway.networking.k8s.io", "TCPRoute") => {
            Object::TcpRoute(Arc::new(de(value, &invalid)?))
        }
        ("gateway.networking.k8s.io", "UDPRoute") => {
            Object::UdpRoute(Arc::new(de(value, &invalid)?))
        }
        ("gateway.networking.k8s.io", "BackendTLSPolicy") => {
            Object::BackendTlsPolicy(Arc::new(de(value, &invalid)?))
        }
        ("gateway.networking.k8s.io", "ReferenceGrant") => {
            Object::ReferenceGrant(Arc::new(de(value, &invalid)?))
        }
        ("", "Secret") => {
            let m: SecretManifest = de(value, &invalid)?;
            let mut data = BTreeMap::new();
            for (k, v) in m.data {
                let clean: String = v.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(clean.as_bytes())
                    .map_err(|e| invalid(format!("data.{k} is not base64: {e}")))?;
                data.insert(k, bytes);
            }
            for (k, v) in m.string_data {
                data.insert(k, v.into_bytes());
            }
            Object::Secret(Arc::new(Secret {
                metadata: m.metadata,
                kind: m.kind,
                data,
            }))
        }
        ("", "ConfigMap") => Object::ConfigMap(Arc::new(de(value, &invalid)?)),
        ("", "Service") => Object::Service(Arc::new(de(value, &invalid)?)),
        ("", "Namespace") => Object::Namespace(Arc::new(de(value, &invalid)?)),
        ("discovery.k8s.io", "EndpointSlice") => {
            Object::EndpointSlice(Arc::new(de(value, &invalid)?))
        }
        ("portcullis.dev", "StaticResponse") => {
            Object::StaticResponse(Arc::new(de(value, &invalid)?))
        }
        ("portcullis.dev", "Issuer") => Object::Issuer(Arc::new(de(value, &invalid)?)),
        ("portcullis.dev", "ClusterIssuer") => {
            Object::ClusterIssuer(Arc::new(de(value, &invalid)?))
        }
        ("", "List") => {
            // kubectl's `kind: List`: each item is read as an object of its own.
            let items = value
                .get("items")
                .and_then(|i| i.as_sequence())
                .cloned()
                .unwrap_or_default();
            for item in items {
                parse_object(item, source_name, document, parsed)?;
            }
            return Ok(());
        }
        _ => {
            parsed.ignored.push(format!("{api_version} {kind} {name}"));
            return Ok(());
        }
    };
    parsed.objects.push(normalize(obj));
    Ok(())
}

fn normalize(mut obj: Object) -> Object {
    let meta = match &mut obj {
        Object::GatewayClass(_) | Object::Namespace(_) | Object::ClusterIssuer(_) => return obj,
        Object::Gateway(o) => &mut Arc::make_mut(o).metadata,
        Object::ListenerSet(o) => &mut Arc::make_mut(o).metadata,
        Object::HttpRoute(o) => &mut Arc::make_mut(o).metadata,
        Object::GrpcRoute(o) => &mut Arc::make_mut(o).metadata,
        Object::TlsRoute(o) => &mut Arc::make_mut(o).metadata,
        Object::TcpRoute(o) => &mut Arc::make_mut(o).metadata,
        Object::UdpRoute(o) => &mut Arc::make_mut(o).metadata,
        Object::BackendTlsPolicy(o) => &mut Arc::make_mut(o).metadata,
        Object::ReferenceGrant(o) => &mut Arc::make_mut(o).metadata,
        Object::Secret(o) => &mut Arc::make_mut(o).metadata,
        Object::ConfigMap(o) => &mut Arc::make_mut(o).metadata,
        Object::Service(o) => &mut Arc::make_mut(o).metadata,
        Object::EndpointSlice(o) => &mut Arc::make_mut(o).metadata,
        Object::StaticResponse(o) => &mut Arc::make_mut(o).metadata,
        Object::Issuer(o) => &mut Arc::make_mut(o).metadata,
    };
    meta.normalize();
    obj
}

/// Whether a directory entry is a manifest portcullis reads: `*.yaml` / `*.yml`,
/// not hidden, not an editor's backup or swap file.
pub fn is_manifest_path(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
        return false;
    }
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Lists manifest files under `dir`, recursively, sorted for a stable order.
pub fn list_manifests(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::Read {
            path: d.display().to_string(),
            message: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            match entry.file_type() {
                Ok(t) if t.is_dir() && !hidden => stack.push(path),
                Ok(_) if is_manifest_path(&path) => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `path` as named in messages: relative to the configuration directory.
fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// A problem met while loading, reported in status and the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadProblem {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub error: Error,
    /// Whether the file's previous good content is still applied.
    pub kept_previous: bool,
}

impl LoadProblem {
    /// What became of the file, for the log line.
    pub fn outcome(&self) -> &'static str {
        match (&self.error, self.kept_previous) {
            (Error::Duplicate { .. }, _) => "object defined twice; the first definition is used",
            (_, true) => "manifest not loaded; keeping its previous content",
            (_, false) => "manifest not loaded",
        }
    }

    /// Whether the file's content is missing from the snapshot (nothing of
    /// it applies), rather than kept from before or applied but one object.
    pub fn lost_content(&self) -> bool {
        !self.kept_previous && !matches!(self.error, Error::Duplicate { .. })
    }
}

/// Reads a configuration directory, keeping each file's last good parse so a
/// broken edit does not remove what the file held before.
#[derive(Debug, Default)]
pub struct DirLoader {
    cache: BTreeMap<PathBuf, (String, Parsed)>,
}

/// The result of one load of the directory.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The snapshot.
    pub resources: Resources,
    /// Files that failed to parse this time.
    pub problems: Vec<LoadProblem>,
    /// Documents of kinds not read, as `file: apiVersion kind name`.
    pub ignored: Vec<String>,
}

impl DirLoader {
    /// A loader with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every manifest under `dir`. A file that fails to parse contributes
    /// its previous good content if it had one, and is listed in `problems`.
    pub fn load(&mut self, dir: &Path) -> Result<Loaded, Error> {
        let paths = list_manifests(dir)?;
        let mut loaded = Loaded::default();
        let mut next = BTreeMap::new();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Deleted between listing and reading: treat as gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let err = Error::Read {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    };
                    self.keep_previous(&path, err, &mut next, &mut loaded);
                    continue;
                }
            };
            if let Some((old_text, parsed)) = self.cache.get(&path) {
                if *old_text == text {
                    next.insert(path.clone(), (text, parsed.clone()));
                    continue;
                }
            }
            match parse_documents(&text, &relative(dir, &path)) {
                Ok(parsed) => {
                    next.insert(path, (text, parsed));
                }
                Err(err) => self.keep_previous(&path, err, &mut next, &mut loaded),
            }
        }
        let mut defined: BTreeMap<(&'static str, ObjectKey), &Path> = BTreeMap::new();
        for (path, (_, parsed)) in &next {
            for o in &parsed.objects {
                let (kind, key) = o.identity();
                match defined.entry((kind, key)) {
                    Entry::Vacant(slot) => {
                        slot.insert(path);
                        loaded.resources.push(o.clone());
                    }
                    Entry::Occupied(first) => {
                        let (_, key) = first.key();
                        let key = if key.namespace.is_empty() {
                            key.name.clone()
                        } else {
                            key.to_string()
                        };
                        loaded.problems.push(LoadProblem {
                            path: path.clone(),
                            error: Error::Duplicate {
                                kind: kind.to_string(),
                                key,
                                first: relative(dir, first.get()),
                            },
                            kept_previous: false,
                        });
                    }
                }
            }
            for i in &parsed.ignored {
                loaded.ignored.push(format!("{}: {i}", path.display()));
            }
        }
        self.cache = next;
        Ok(loaded)
    }

    fn keep_previous(
        &self,
        path: &Path,
        error: Error,
        next: &mut BTreeMap<PathBuf, (String, Parsed)>,
        loaded: &mut Loaded,
    ) {
        let previous = self.cache.get(path).cloned();
        loaded.problems.push(LoadProblem {
            path: path.to_path_buf(),
            error,
            kept_previous: previous.is_some(),
        });
        if let Some(p) = previous {
            next.insert(path.to_path_buf(), p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_document_files_and_defaults_namespace() {
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: g\nspec:\n  gatewayClassName: c\n---\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: n\ntype: kubernetes.io/tls\ndata:\n  tls.crt: aGVsbG8=\nstringData:\n  tls.key: k\n";
        let p = parse_documents(text, "f.yaml").expect("parses");
        assert_eq!(p.objects.len(), 2);
        match &p.objects[0] {
            Object::Gateway(g) => assert_eq!(g.metadata.namespace, "default"),
            o => panic!("unexpected {o:?}"),
        }
        match &p.objects[1] {
            Object::Secret(s) => {
                assert_eq!(s.data["tls.crt"], b"hello");
                assert_eq!(s.data["tls.key"], b"k");
            }
            o => panic!("unexpected {o:?}"),
        }
    }

    #[test]
    fn older_api_versions_are_read() {
        let text = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata:\n  name: r\n";
        let p = parse_documents(text, "f.yaml").expect("parses");
        assert!(matches!(p.objects[0], Object::HttpRoute(_)));
    }

    #[test]
    fn tls_routes_of_every_version_are_read() {
        for v in ["v1", "v1alpha2", "v1alpha3"] {
            let text = format!("apiVersion: gateway.networking.k8s.io/{v}\nkind: TLSRoute\nmetadata:\n  name: t\nspec:\n  hostnames: [a.example]\n  rules:\n  - backendRefs: [{{name: s, port: 443, weight: 2}}]\n");
            let p = parse_documents(&text, "f.yaml").expect("parses");
            match &p.objects[0] {
                Object::TlsRoute(t) => {
                    assert_eq!(t.metadata.namespace, "default");
                    assert_eq!(t.spec.rules[0].backend_refs[0].weight, Some(2));
                }
                o => panic!("unexpected {o:?}"),
            }
        }
    }

    #[test]
    fn backend_tls_policies_of_every_version_are_read() {
        for v in ["v1", "v1alpha3"] {
            let text = format!("apiVersion: gateway.networking.k8s.io/{v}\nkind: BackendTLSPolicy\nmetadata:\n  name: p\nspec:\n  targetRefs: [{{group: '', kind: Service, name: s, sectionName: https}}]\n  validation:\n    hostname: b.example\n    caCertificateRefs: [{{group: '', kind: ConfigMap, name: ca}}]\n    subjectAltNames: [{{type: URI, uri: 'spiffe://x/y'}}]\n");
            let p = parse_documents(&text, "f.yaml").expect("parses");
            match &p.objects[0] {
                Object::BackendTlsPolicy(b) => {
                    assert_eq!(b.spec.target_refs[0].section_name.as_deref(), Some("https"));
                    assert_eq!(b.spec.validation.hostname, "b.example");
                    assert_eq!(b.spec.validation.ca_certificate_refs[0].name, "ca");
                    assert_eq!(
                        b.spec.validation.subject_alt_names[0].uri.as_deref(),
                        Some("spiffe://x/y")
                    );
                }
                o => panic!("unexpected {o:?}"),
            }
        }
    }

    #[test]
    fn unknown_kinds_are_listed_not_fatal() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n";
        let p = parse_documents(text, "f.yaml").expect("parses");
        assert!(p.objects.is_empty());
        assert_eq!(p.ignored, vec!["apps/v1 Deployment d".to_string()]);
    }

    #[test]
    fn malformed_yaml_fails_the_file() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n";
        assert!(matches!(
            parse_documents(text, "f.yaml"),
            Err(Error::Yaml { .. })
        ));
    }

    #[test]
    fn wrong_field_shape_is_invalid() {
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: g\nspec:\n  listeners: 5\n";
        assert!(matches!(
            parse_documents(text, "f.yaml"),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn bad_base64_in_secret_is_invalid() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  tls.crt: '!!!'\n";
        assert!(matches!(
            parse_documents(text, "f.yaml"),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn editor_files_are_not_manifests() {
        for bad in [
            ".g.yaml.swp",
            "g.yaml~",
            ".#g.yaml",
            "#g.yaml#",
            "g.yaml.tmp",
            "g.json",
        ] {
            assert!(!is_manifest_path(Path::new(bad)), "{bad}");
        }
        assert!(is_manifest_path(Path::new("dir/g.yml")));
    }

    #[test]
    fn a_second_definition_of_an_object_is_reported_and_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gateway = |class: &str| {
            format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: g\nspec:\n  gatewayClassName: {class}\n"
            )
        };
        let class = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: c\nspec:\n  controllerName: x\n";
        // a.yaml comes first in path order; b.yaml repeats its Gateway (in
        // `default`, where a namespace-less Gateway goes) and its class, and
        // also holds a Gateway of its own, which still loads.
        std::fs::write(
            dir.path().join("a.yaml"),
            format!("{}---\n{class}", gateway("first")),
        )
        .expect("write");
        let other = gateway("other").replace("name: g", "name: h");
        std::fs::write(
            dir.path().join("b.yaml"),
            format!(
                "{}---\n{class}---\n{other}",
                gateway("second").replace("name: g", "name: g\n  namespace: default")
            ),
        )
        .expect("write");
        let loaded = DirLoader::new().load(dir.path()).expect("loads");
        let gateways: Vec<(&str, &str)> = loaded
            .resources
            .gateways
            .iter()
            .map(|g| (g.metadata.name.as_str(), g.spec.gateway_class_name.as_str()))
            .collect();
        assert_eq!(gateways, [("g", "first"), ("h", "other")]);
        assert_eq!(loaded.resources.gateway_classes.len(), 1);
        let messages: Vec<String> = loaded
            .problems
            .iter()
            .map(|p| p.error.to_string())
            .collect();
        assert_eq!(
            messages,
            [
                "Gateway default/g is already defined in a.yaml; this definition is ignored",
                "GatewayClass c is already defined in a.yaml; this definition is ignored",
            ]
        );
        assert!(loaded.problems.iter().all(|p| p.path.ends_with("b.yaml")));
        // b.yaml's other Gateway applies: its content is not lost.
        assert!(loaded.problems.iter().all(|p| !p.lost_content()));
    }

    #[test]
    fn broken_file_keeps_previous_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("cm.yaml");
        std::fs::write(
            &f,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        )
        .expect("write");
        let mut loader = DirLoader::new();
        let first = loader.load(dir.path()).expect("load");
        assert_eq!(first.resources.config_maps.len(), 1);
        std::fs::write(&f, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a\n").expect("write");
        let second = loader.load(dir.path()).expect("load");
        assert_eq!(second.resources.config_maps.len(), 1);
        assert_eq!(second.problems.len(), 1);
        assert!(second.problems[0].kept_previous);
        assert!(!second.problems[0].lost_content());
        // Broken from the start: nothing of it applies.
        let g = dir.path().join("new.yaml");
        std::fs::write(&g, "kind: [").expect("write");
        let broken = DirLoader::new().load(dir.path()).expect("load");
        let fresh = broken
            .problems
            .iter()
            .find(|p| p.path == g)
            .expect("new.yaml listed");
        assert!(fresh.lost_content());
        assert_eq!(fresh.outcome(), "manifest not loaded");
        std::fs::remove_file(&g).expect("rm");
        std::fs::remove_file(&f).expect("rm");
        let third = loader.load(dir.path()).expect("load");
        assert!(third.resources.config_maps.is_empty());
    }
}
