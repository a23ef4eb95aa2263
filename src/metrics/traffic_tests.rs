//! Handle resolution and counting, over a real compiled dataplane.

use super::*;
use crate::metrics::tests::{dataplane, resources};
use prometheus_client::encoding::text::encode;

fn text(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).expect("encodes");
    out
}

#[test]
fn requests_count_by_status_class_on_the_prepared_handles() {
    let mut registry = Registry::default();
    let traffic = Traffic::new(&mut registry);
    let dp = dataplane(&resources());
    traffic.prepare(&dp);
    let listener = dp.binds[0].listeners[0].clone();
    let rule = listener.routes.entries[0].rule.clone();
    let target = RequestTarget {
        listener: Some(listener),
        rule: Some(rule),
        backend: Some(0),
    };
    traffic.request(&dp, &target, 503, Duration::from_millis(5), Some("connect"));
    traffic.request(&dp, &target, 200, Duration::from_millis(5), None);
    let out = text(&registry);
    let labels = "gateway_namespace=\"infra\",gateway=\"gw\",listener=\"web\",route=\"apps/shop\",backend=\"apps/svc:80\"";
    for line in [
        format!("portcullis_http_requests_total{{{labels},code_class=\"5xx\"}} 1"),
        format!("portcullis_http_requests_total{{{labels},code_class=\"2xx\"}} 1"),
        format!("portcullis_http_request_duration_seconds_count{{{labels}}} 2"),
        "portcullis_upstream_errors_total{backend=\"apps/svc:80\",reason=\"connect\"} 1"
            .to_string(),
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }
}

#[test]
fn a_request_on_another_dataplane_is_counted_under_its_own_labels() {
    let mut registry = Registry::default();
    let traffic = Traffic::new(&mut registry);
    let resources = resources();
    let old = dataplane(&resources);
    traffic.prepare(&dataplane(&resources));
    let target = RequestTarget {
        listener: Some(old.binds[0].listeners[0].clone()),
        rule: None,
        backend: None,
    };
    traffic.request(&old, &target, 404, Duration::ZERO, None);
    let out = text(&registry);
    let line = "portcullis_http_requests_total{gateway_namespace=\"infra\",gateway=\"gw\",listener=\"web\",route=\"\",backend=\"\",code_class=\"4xx\"} 1";
    assert!(out.lines().any(|l| l == line), "{out}");
}

#[test]
fn open_connections_are_active_until_dropped() {
    let mut registry = Registry::default();
    let traffic = Traffic::new(&mut registry);
    let dp = dataplane(&resources());
    traffic.prepare(&dp);
    let addr = dp.binds[0].addr;
    let socket = traffic.socket(&dp, addr);
    let conn = socket.opened();
    socket.limit_reached();
    socket.handshake_failed(HandshakeFailure::NoListener);
    let a = format!("address=\"{addr}\",protocol=\"https\"");
    let out = text(&registry);
    assert!(
        out.contains(&format!("portcullis_connections_active{{{a}}} 1")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "portcullis_connection_limit_reached_total{{{a}}} 1"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("portcullis_tls_handshake_failures_total{{address=\"{addr}\",reason=\"no_listener\"}} 1")), "{out}");
    drop(conn);
    let out = text(&registry);
    assert!(
        out.contains(&format!("portcullis_connections_active{{{a}}} 0")),
        "{out}"
    );
    assert!(
        out.contains(&format!("portcullis_connections_accepted_total{{{a}}} 1")),
        "{out}"
    );
}

#[test]
fn handshakes_count_by_version_on_the_listener() {
    let mut registry = Registry::default();
    let traffic = Traffic::new(&mut registry);
    let dp = dataplane(&resources());
    traffic.prepare(&dp);
    let listener = dp.binds[0].listeners[0].clone();
    let handles = traffic.listener(&dp, &listener);
    handles.terminated(Some(rustls::ProtocolVersion::TLSv1_3));
    handles.failed();
    let out = text(&registry);
    let l = "gateway_namespace=\"infra\",gateway=\"gw\",listener=\"web\"";
    assert!(out.contains(&format!("portcullis_tls_handshakes_total{{{l},mode=\"terminate\",version=\"TLSv1.3\",result=\"success\"}} 1")), "{out}");
    assert!(out.contains(&format!("portcullis_tls_handshakes_total{{{l},mode=\"terminate\",version=\"\",result=\"failure\"}} 1")), "{out}");
}
