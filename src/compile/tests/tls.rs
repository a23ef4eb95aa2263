//! TLS passthrough listeners and TLSRoute attachment.

use super::*;

/// Gateway `gw` in `infra`: a TLS Passthrough listener `pt` for
/// `*.pt.example.test` and an HTTPS listener `https` for `*.example.test`,
/// both on 443.
const GATEWAY: &str = "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: pc
  listeners:
  - name: pt
    port: 443
    protocol: TLS
    hostname: '*.pt.example.test'
    tls: {mode: Passthrough}
    allowedRoutes: {namespaces: {from: All}}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: '*.example.test'
    tls: {certificateRefs: [{name: cert}]}
    allowedRoutes: {namespaces: {from: All}}
";

/// A TLSRoute `name` in `app` with `hostnames` and a backend `svc:443`.
fn tls_route(name: &str, parent: &str, hostnames: &str) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: {name}, namespace: app}}
spec:
  parentRefs: [{parent}]
  hostnames: {hostnames}
  rules:
  - backendRefs: [{{name: svc, port: 443, weight: 3}}]
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: app}}
spec:
  ports: [{{port: 443}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-1
  namespace: app
  labels: {{kubernetes.io/service-name: svc}}
addressType: IPv4
ports: [{{port: 8443}}]
endpoints: [{{addresses: [10.0.0.1]}}]
"
    )
}

fn resources(extra: &str) -> Resources {
    let (cert, key) = cert_pair("*.example.test");
    let mut r = load(&format!("{CLASS}{GATEWAY}{extra}"));
    r.push(tls_secret("infra", "cert", &cert, &key));
    r
}

/// The dataplane listener named `name` on the only bind.
fn dp_listener<'a>(c: &'a Compiled, name: &str) -> &'a std::sync::Arc<crate::dataplane::Listener> {
    c.dataplane.binds[0]
        .listeners
        .iter()
        .find(|l| l.key.name == name)
        .expect("listener in the dataplane")
}

fn tls_route_cond(c: &Compiled, name: &str, t: ConditionType) -> (bool, Reason) {
    cond(&find(c, "TLSRoute", "app", name).parents[0].conditions, t)
}

#[test]
fn passthrough_listener_is_programmed_and_shares_the_https_port() {
    let c = run(&resources(""));
    for l in ["pt", "https"] {
        for (t, ok) in [
            (ConditionType::Accepted, true),
            (ConditionType::Programmed, true),
            (ConditionType::Conflicted, false),
        ] {
            assert_eq!(
                listener_cond(&c, "Gateway", "infra", "gw", l, t).0,
                ok,
                "{l} {t:?}"
            );
        }
    }
    let gw = find(&c, "Gateway", "infra", "gw");
    assert_eq!(listener(gw, "pt").supported_kinds, vec!["TLSRoute"]);
    assert_eq!(c.dataplane.binds.len(), 1);
    let bind = &c.dataplane.binds[0];
    assert_eq!(bind.protocol, BindProtocol::Https);
    assert_eq!(bind.listeners.len(), 2);
    let pt = bind.select(Some("a.pt.example.test")).expect("pt selected");
    assert!(pt
        .streams
        .as_ref()
        .is_some_and(|s| s.mode == crate::dataplane::StreamMode::Passthrough));
    let https = bind.select(Some("b.example.test")).expect("https selected");
    assert!(https.streams.is_none());
}

#[test]
fn tls_route_attaches_to_a_passthrough_listener_with_weighted_backends() {
    let c = run(&resources(&tls_route(
        "r",
        "{name: gw, namespace: infra}",
        "[a.pt.example.test]",
    )));
    assert_eq!(
        tls_route_cond(&c, "r", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        tls_route_cond(&c, "r", ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
    assert_eq!(attached(&c, "pt"), 1);
    assert_eq!(attached(&c, "https"), 0);
    let bind = &c.dataplane.binds[0];
    let pt = bind.select(Some("a.pt.example.test")).expect("pt");
    let table = &pt.streams.as_ref().expect("passthrough table").table;
    let entry = table.select(Some("a.pt.example.test")).expect("entry");
    assert_eq!(entry.hostname.as_deref(), Some("a.pt.example.test"));
    assert_eq!(entry.backends[0].weight, 3);
    match &entry.backends[0].target {
        BackendTarget::Service(u) => {
            assert_eq!(u.endpoints, vec!["10.0.0.1:8443".parse().expect("addr")])
        }
        t => panic!("unexpected {t:?}"),
    }
    assert!(table.select(Some("b.pt.example.test")).is_none());
}

#[test]
fn tls_route_hostnames_intersect_the_listener_hostname() {
    let c = run(&resources(&tls_route(
        "r",
        "{name: gw, namespace: infra, sectionName: pt}",
        "['*.example.test']",
    )));
    assert_eq!(
        tls_route_cond(&c, "r", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    let pt = c.dataplane.binds[0]
        .select(Some("x.pt.example.test"))
        .expect("pt");
    let table = &pt.streams.as_ref().expect("table").table;
    assert_eq!(
        table.entries[0].hostname.as_deref(),
        Some("*.pt.example.test")
    );
    let c = run(&resources(&tls_route(
        "r",
        "{name: gw, namespace: infra, sectionName: pt}",
        "[other.test]",
    )));
    assert_eq!(
        tls_route_cond(&c, "r", ConditionType::Accepted),
        (false, Reason::NoMatchingListenerHostname)
    );
}

#[test]
fn tls_route_on_an_https_listener_is_not_allowed_by_listeners() {
    let c = run(&resources(&tls_route(
        "r",
        "{name: gw, namespace: infra, sectionName: https}",
        "[a.example.test]",
    )));
    assert_eq!(
        tls_route_cond(&c, "r", ConditionType::Accepted),
        (false, Reason::NotAllowedByListeners)
    );
}

#[test]
fn http_route_on_a_passthrough_listener_is_not_allowed_by_listeners() {
    let c = run(&resources(&route(
        "app",
        "r",
        "{name: gw, namespace: infra, sectionName: pt}",
        "[a.pt.example.test]",
    )));
    assert_eq!(
        route_cond(&c, "app", "r", 0, ConditionType::Accepted),
        (false, Reason::NotAllowedByListeners)
    );
}

#[test]
fn tls_terminate_listener_serves_tls_routes_with_its_certificates() {
    let yaml = GATEWAY.replace(
        "tls: {mode: Passthrough}",
        "tls: {mode: Terminate, certificateRefs: [{name: cert}]}",
    );
    let (cert, key) = cert_pair("*.example.test");
    let mut r = load(&format!(
        "{CLASS}{yaml}{}",
        tls_route("r", "{name: gw, namespace: infra}", "[a.pt.example.test]")
    ));
    r.push(tls_secret("infra", "cert", &cert, &key));
    let c = run(&r);
    assert_eq!(
        listener_cond(&c, "Gateway", "infra", "gw", "pt", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    let pt = dp_listener(&c, "pt");
    let streams = pt.streams.as_ref().expect("stream listener");
    assert_eq!(streams.mode, crate::dataplane::StreamMode::Terminate);
    assert_eq!(streams.table.entries.len(), 1);
    assert_eq!(
        pt.certificates.len(),
        1,
        "terminating needs the certificate"
    );
}

#[test]
fn tls_terminate_listener_without_certificate_is_not_programmed() {
    let yaml = GATEWAY.replace("tls: {mode: Passthrough}", "tls: {mode: Terminate}");
    let (cert, key) = cert_pair("*.example.test");
    let mut r = load(&format!("{CLASS}{yaml}"));
    r.push(tls_secret("infra", "cert", &cert, &key));
    let c = run(&r);
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            "pt",
            ConditionType::ResolvedRefs
        ),
        (false, Reason::InvalidCertificateRef)
    );
    assert_eq!(
        listener_cond(
            &c,
            "Gateway",
            "infra",
            "gw",
            "pt",
            ConditionType::Programmed
        ),
        (false, Reason::Invalid)
    );
}

#[test]
fn tls_listener_with_unknown_mode_is_rejected() {
    let yaml = GATEWAY.replace("tls: {mode: Passthrough}", "tls: {mode: Sideways}");
    let c = run(&load(&format!("{CLASS}{yaml}")));
    assert_eq!(
        listener_cond(&c, "Gateway", "infra", "gw", "pt", ConditionType::Accepted),
        (false, Reason::UnsupportedValue)
    );
}

#[test]
fn tls_route_cross_namespace_backend_needs_a_grant_from_tls_route() {
    let route = tls_route("r", "{name: gw, namespace: infra}", "[a.pt.example.test]")
        .replace("weight: 3}", "weight: 3, namespace: other}")
        .replace(
            "namespace: app}\nspec:\n  ports",
            "namespace: other}\nspec:\n  ports",
        );
    let c = run(&resources(&route));
    assert_eq!(
        tls_route_cond(&c, "r", ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
    let grant = "---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: TLSRoute, namespace: app}]
  to: [{group: '', kind: Service}]
";
    let c = run(&resources(&format!("{route}{grant}")));
    assert_eq!(
        tls_route_cond(&c, "r", ConditionType::ResolvedRefs),
        (true, Reason::ResolvedRefs)
    );
}

/// An HTTPS Gateway `fv` in `infra` on 443 and 8443 with `frontend` as its
/// `spec.tls.frontend`.
fn frontend_gateway(frontend: &str) -> String {
    format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: fv, namespace: infra}}
spec:
  gatewayClassName: pc
  tls:
    frontend:
{frontend}
  listeners:
  - {{name: a, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: b, port: 8443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: plain, port: 80, protocol: HTTP}}
"
    )
}

/// Server certificate of the frontend fixtures, shared so a test client
/// can trust it.
fn server_pair() -> &'static (String, String) {
    static PAIR: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| cert_pair("a.example.test"))
}

/// Runs a TLS handshake in memory against `server` with a client that has
/// no certificate; the server's verdict.
fn handshake_without_client_cert(
    server: std::sync::Arc<rustls::ServerConfig>,
) -> Result<(), rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(server_pair().0.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let provider = crate::tls::provider::provider();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("a.example.test").expect("name");
    let mut c = rustls::ClientConnection::new(std::sync::Arc::new(client), name).expect("client");
    let mut s = rustls::ServerConnection::new(server).expect("server");
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client writes");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server reads");
        }
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server writes");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client reads");
        }
        if c.process_new_packets().is_err() {
            break;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General("handshake did not complete".into()))
}

fn with_ca(yaml: &str, maps: &[&str]) -> Resources {
    let (cert, key) = server_pair().clone();
    let (ca, _) = cert_pair("ca.example.test");
    let mut r = load(&format!("{CLASS}{yaml}"));
    r.push(tls_secret("infra", "cert", &cert, &key));
    for m in maps {
        let mut data = std::collections::BTreeMap::new();
        data.insert("ca.crt".to_string(), ca.clone());
        r.push(Object::ConfigMap(std::sync::Arc::new(
            crate::model::ConfigMap {
                metadata: crate::model::ObjectMeta {
                    name: (*m).into(),
                    namespace: "infra".into(),
                    ..Default::default()
                },
                data,
            },
        )));
    }
    r
}

fn fv_cond(c: &Compiled, l: &str, t: ConditionType) -> (bool, Reason) {
    listener_cond(c, "Gateway", "infra", "fv", l, t)
}

#[test]
fn frontend_validation_default_and_per_port_give_each_listener_a_client_verifier() {
    let yaml = frontend_gateway(
        "      default: {validation: {caCertificateRefs: [{kind: ConfigMap, group: '', name: ca}]}}
      perPort:
      - {port: 8443, tls: {validation: {mode: AllowInsecureFallback, caCertificateRefs: [{kind: ConfigMap, group: '', name: ca2}]}}}",
    );
    let c = run(&with_ca(&yaml, &["ca", "ca2"]));
    for l in ["a", "b", "plain"] {
        assert_eq!(
            fv_cond(&c, l, ConditionType::Accepted),
            (true, Reason::Accepted),
            "{l}"
        );
    }
    let gw = crate::model::ObjectKey::new("infra", "fv");
    let config = |name: &str| {
        c.dataplane
            .binds
            .iter()
            .flat_map(|b| b.listeners.iter())
            .find(|l| l.key.gateway == gw && l.key.name == name)
            .and_then(|l| l.tls.clone())
            .expect("terminating listener has a TLS configuration")
    };
    assert!(
        handshake_without_client_cert(config("a")).is_err(),
        "AllowValidOnly refuses a client without certificate"
    );
    assert_eq!(
        handshake_without_client_cert(config("b")),
        Ok(()),
        "AllowInsecureFallback lets it through"
    );
    assert_eq!(
        object_cond(
            &c,
            "Gateway",
            "infra",
            "fv",
            ConditionType::InsecureFrontendValidationMode
        ),
        (true, Reason::ConfigurationChanged)
    );
}

#[test]
fn frontend_validation_with_a_missing_ca_rejects_only_terminating_listeners() {
    let yaml = frontend_gateway(
        "      default: {validation: {caCertificateRefs: [{kind: ConfigMap, group: '', name: absent}]}}",
    );
    let c = run(&with_ca(&yaml, &[]));
    assert_eq!(
        fv_cond(&c, "a", ConditionType::ResolvedRefs),
        (false, Reason::InvalidCACertificateRef)
    );
    assert_eq!(
        fv_cond(&c, "a", ConditionType::Accepted),
        (false, Reason::NoValidCACertificate)
    );
    assert!(!fv_cond(&c, "a", ConditionType::Programmed).0);
    assert_eq!(
        fv_cond(&c, "plain", ConditionType::Accepted),
        (true, Reason::Accepted)
    );
}

#[test]
fn frontend_validation_with_a_secret_ca_is_invalid_ca_certificate_kind() {
    let yaml = frontend_gateway(
        "      default: {validation: {caCertificateRefs: [{kind: Secret, group: '', name: ca}]}}",
    );
    let c = run(&with_ca(&yaml, &["ca"]));
    assert_eq!(
        fv_cond(&c, "a", ConditionType::ResolvedRefs),
        (false, Reason::InvalidCACertificateKind)
    );
}

#[test]
fn frontend_validation_across_namespaces_needs_a_reference_grant() {
    let yaml = frontend_gateway(
        "      default: {validation: {caCertificateRefs: [{kind: ConfigMap, group: '', name: ca, namespace: other}]}}",
    );
    let c = run(&with_ca(&yaml, &[]));
    assert_eq!(
        fv_cond(&c, "a", ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
}

#[test]
fn tls_route_with_an_unknown_proxy_protocol_version_is_not_accepted() {
    let route = tls_route("r", "{name: gw, namespace: infra}", "[a.pt.example.test]").replacen(
        "metadata: {name: r, namespace: app}",
        "metadata: {name: r, namespace: app, annotations: {portcullis.dev/proxy-protocol: v9}}",
        1,
    );
    let c = run(&resources(&route));
    assert_eq!(
        tls_route_cond(&c, "r", ConditionType::Accepted),
        (false, Reason::UnsupportedValue)
    );
}
