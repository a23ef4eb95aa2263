//! Micro-benchmarks of the pure hot paths at the scale the performance issue
//! sets: 10,000 listener hostnames with distinct certificates and 10,000
//! HTTPRoutes compiled into one dataplane; SNI listener selection and route
//! matching against it; ClientHello parsing of a real rustls ClientHello.
//!
//! `cargo bench --bench hot_paths` (criterion; reports in target/criterion).
//! Targets: compile < 500 ms, SNI selection < 1 µs, route matching < 2 µs.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::compile::{compile, CompileOptions};
use portcullis::dataplane::router::RequestView;
use portcullis::model::load::parse_documents;
use portcullis::model::Resources;
use std::fmt::Write;
use std::sync::Arc;

const N: usize = 10_000;

/// One Gateway with `N` HTTPS listeners on one port, each for its own
/// hostname and certificate, plus one HTTP listener without hostname, and
/// `N` HTTPRoutes, one per hostname, each with an exact and a prefix match:
/// each HTTPS listener gets one route, the HTTP listener all `N`.
fn resources() -> Resources {
    let mut yaml = String::from(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pc}\nspec: {controllerName: portcullis.dev/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: default}\nspec:\n  gatewayClassName: pc\n  listeners:\n  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n",
    );
    for i in 0..N {
        let _ = writeln!(
            yaml,
            "  - {{name: l{i}, port: 443, protocol: HTTPS, hostname: h{i}.bench.test, tls: {{certificateRefs: [{{name: c{i}}}]}}, allowedRoutes: {{namespaces: {{from: All}}}}}}"
        );
    }
    yaml.push_str("---\napiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: default}\nspec: {ports: [{port: 80}]}\n");
    for i in 0..N {
        let _ = write!(
            yaml,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r{i}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [h{i}.bench.test]\n  rules:\n  - matches: [{{path: {{type: Exact, value: /exact/{i}}}}}, {{path: {{type: PathPrefix, value: /api/{i}}}}}]\n    backendRefs: [{{name: svc, port: 80}}]\n"
        );
    }
    let mut resources = Resources::from_objects(
        parse_documents(&yaml, "bench.yaml")
            .expect("generated manifests parse")
            .objects,
    );
    for i in 0..N {
        let key = rcgen::KeyPair::generate().expect("key generation");
        let cert = rcgen::CertificateParams::new(vec![format!("h{i}.bench.test")])
            .expect("valid name")
            .self_signed(&key)
            .expect("self-signed");
        let mut data = std::collections::BTreeMap::new();
        data.insert("tls.crt".to_string(), cert.pem().into_bytes());
        data.insert("tls.key".to_string(), key.serialize_pem().into_bytes());
        resources.push(portcullis::model::Object::Secret(
            portcullis::model::Secret {
                metadata: portcullis::model::ObjectMeta {
                    name: format!("c{i}"),
                    namespace: "default".into(),
                    ..Default::default()
                },
                kind: "kubernetes.io/tls".into(),
                data,
            },
        ));
    }
    resources
}

/// The bytes of a ClientHello rustls sends for `sni` (ALPN h2, http/1.1).
fn client_hello(sni: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("valid name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write to a Vec");
    }
    out
}

fn benches(c: &mut Criterion) {
    let resources = resources();
    let options = CompileOptions::default();
    let mut group = c.benchmark_group("scale_10k");
    group.sample_size(10);
    group.bench_function("compile_10k_listeners_10k_routes", |b| {
        b.iter(|| black_box(compile(black_box(&resources), &options)))
    });
    group.finish();

    let compiled = compile(&resources, &options);
    let bind = compiled
        .dataplane
        .binds
        .iter()
        .find(|b| b.protocol == portcullis::dataplane::BindProtocol::Https)
        .expect("one HTTPS socket for every HTTPS listener");
    assert_eq!(bind.listeners.len(), N, "every listener programmed");
    c.bench_function("sni_select_10k_listeners", |b| {
        let mut i = 0usize;
        let hosts: Vec<String> = (0..1024)
            .map(|k| format!("h{}.bench.test", k * 9 % N))
            .collect();
        b.iter(|| {
            i = (i + 1) % hosts.len();
            black_box(bind.select(Some(black_box(&hosts[i]))))
        })
    });

    let http = compiled
        .dataplane
        .binds
        .iter()
        .find(|b| b.protocol == portcullis::dataplane::BindProtocol::Http)
        .and_then(|b| b.listeners.first())
        .expect("the HTTP listener");
    assert_eq!(
        http.routes.entries().len(),
        2 * N,
        "every route on the HTTP listener"
    );
    let listener = http;
    let headers = http::HeaderMap::new();
    let method = http::Method::GET;
    c.bench_function("route_match_prefix_among_10k_routes", |b| {
        let view = RequestView {
            method: &method,
            path: "/api/4242/users/7",
            query: Some("page=2"),
            headers: &headers,
        };
        b.iter(|| black_box(listener.routes.find(black_box("h4242.bench.test"), &view)))
    });

    let hello = client_hello("h4242.bench.test");
    c.bench_function("client_hello_parse", |b| {
        b.iter(|| black_box(portcullis::tls::client_hello::parse(black_box(&hello))))
    });
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
