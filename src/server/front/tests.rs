use super::*;
use crate::dataplane::challenges::ACME_TLS_ALPN;
use crate::dataplane::{Bind, BindProtocol, ListenerKey, RouteTable, StreamTable, Streams};
use crate::model::ObjectKey;

const HTTPS: &str = "0.0.0.0:443";

/// A listener `name` for `hostname`: with stream routes in `streams` mode
/// when given, and a TLS configuration when `tls`.
fn listener(
    name: &str,
    hostname: Option<&str>,
    streams: Option<StreamMode>,
    tls: bool,
) -> Arc<Listener> {
    Arc::new(Listener {
        key: ListenerKey {
            gateway: ObjectKey::new("default", "gw"),
            listener_set: None,
            name: name.to_string(),
        },
        hostname: hostname.map(str::to_string),
        port: 443,
        protocol: BindProtocol::Https,
        certificates: Vec::new(),
        tls: tls.then(server_config),
        client_auth: None,
        routes: RouteTable::default(),
        streams: streams.map(|mode| Streams {
            mode,
            table: StreamTable::new(Vec::new()),
        }),
    })
}

/// A configuration with no certificate: the decision never handshakes.
fn server_config() -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider::provider())
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(crate::tls::resolver::ListenerCertificates::new(
            Vec::new(),
        )));
    Arc::new(config)
}

fn dataplane(listeners: Vec<Arc<Listener>>) -> (Dataplane, SocketAddr) {
    let addr: SocketAddr = HTTPS.parse().expect("literal address");
    let dp = Dataplane {
        binds: vec![Bind::new(addr, BindProtocol::Https, listeners)],
        challenges: Arc::default(),
    };
    (dp, addr)
}

fn hello(sni: Option<&str>, alpn: &[&[u8]]) -> ClientHello {
    ClientHello {
        server_name: sni.map(str::to_string),
        alpn: alpn.iter().map(|p| p.to_vec()).collect(),
        legacy_version: 0x0303,
        supported_versions: vec![0x0304],
        has_ech: false,
        consumed: 0,
    }
}

/// The name of the listener the decision serves with, or what else it is.
fn outcome(front: &Front) -> String {
    match front {
        Front::Challenge(_) => "challenge".into(),
        Front::NoListener { alert } => format!("no listener, alert {alert}"),
        Front::Passthrough(l) => format!("passthrough {}", l.key.name),
        Front::Terminate(l, _) => format!("terminate {}", l.key.name),
        Front::Unconfigured(l) => format!("unconfigured {}", l.key.name),
    }
}

#[test]
fn sni_is_normalised_before_selection() {
    let (dp, addr) = dataplane(vec![
        listener("a", Some("a.example.com"), None, true),
        listener("b", Some("b.example.com"), None, true),
    ]);
    let front = decide(&dp, addr, &hello(Some("B.Example.COM."), &[]));
    assert_eq!(outcome(&front), "terminate b");
}

#[test]
fn missing_sni_needs_an_unambiguous_listener() {
    let (dp, addr) = dataplane(vec![
        listener("a", Some("a.example.com"), None, true),
        listener("b", Some("b.example.com"), None, true),
    ]);
    assert_eq!(
        outcome(&decide(&dp, addr, &hello(None, &[]))),
        "no listener, alert true"
    );
    let (dp, addr) = dataplane(vec![listener("a", Some("a.example.com"), None, true)]);
    assert_eq!(
        outcome(&decide(&dp, addr, &hello(None, &[]))),
        "terminate a"
    );
}

#[test]
fn unknown_bind_selects_nothing() {
    let (dp, _) = dataplane(vec![listener("a", None, None, true)]);
    let other: SocketAddr = "0.0.0.0:8443".parse().expect("literal address");
    assert!(dp.select_listener(other, Some("a.example.com")).is_none());
    assert_eq!(
        outcome(&decide(&dp, other, &hello(Some("a.example.com"), &[]))),
        "no listener, alert true"
    );
}

#[test]
fn a_passthrough_only_socket_closes_without_an_alert() {
    let (dp, addr) = dataplane(vec![listener(
        "p",
        Some("p.example.com"),
        Some(StreamMode::Passthrough),
        false,
    )]);
    assert_eq!(
        outcome(&decide(&dp, addr, &hello(Some("p.example.com"), &[]))),
        "passthrough p"
    );
    assert_eq!(
        outcome(&decide(&dp, addr, &hello(Some("other.example.com"), &[]))),
        "no listener, alert false"
    );
    // One terminating listener on the socket: it speaks TLS, so it alerts.
    let (dp, addr) = dataplane(vec![
        listener(
            "p",
            Some("p.example.com"),
            Some(StreamMode::Passthrough),
            false,
        ),
        listener("t", Some("t.example.com"), None, true),
    ]);
    assert_eq!(
        outcome(&decide(&dp, addr, &hello(Some("other.example.com"), &[]))),
        "no listener, alert true"
    );
}

#[test]
fn terminate_mode_stream_listeners_and_unconfigured_listeners() {
    let (dp, addr) = dataplane(vec![
        listener("s", Some("s.example.com"), Some(StreamMode::Plain), true),
        listener("u", Some("u.example.com"), None, false),
    ]);
    assert_eq!(
        outcome(&decide(&dp, addr, &hello(Some("s.example.com"), &[]))),
        "terminate s"
    );
    assert_eq!(
        outcome(&decide(&dp, addr, &hello(Some("u.example.com"), &[]))),
        "unconfigured u"
    );
}

#[test]
fn a_pending_challenge_answers_only_acme_tls_validations() {
    let (dp, addr) = dataplane(vec![listener("a", Some("a.example.com"), None, true)]);
    let challenge =
        crate::issuer::challenges::tls_alpn01_challenge("a.example.com", "token.thumbprint")
            .expect("builds");
    let guard = dp.challenges.publish_tls_alpn01("a.example.com", challenge);
    let acme = hello(Some("a.example.com"), &[ACME_TLS_ALPN]);
    assert_eq!(outcome(&decide(&dp, addr, &acme)), "challenge");
    // A browser offering h2 as well is an ordinary client.
    let browser = hello(Some("a.example.com"), &[b"h2", ACME_TLS_ALPN]);
    assert_eq!(outcome(&decide(&dp, addr, &browser)), "terminate a");
    // A validation for a name with nothing pending goes to the listeners.
    let other = hello(Some("b.example.com"), &[ACME_TLS_ALPN]);
    assert_eq!(
        outcome(&decide(&dp, addr, &other)),
        "no listener, alert true"
    );
    drop(guard);
    assert_eq!(outcome(&decide(&dp, addr, &acme)), "terminate a");
}
