//! Tests of the per-request flow against a real backend on 127.0.0.1:0,
//! driving [`Proxy::handle_request`] with in-memory bodies and dataplanes
//! built by hand.

use super::*;
use crate::dataplane::router::{EntryOrder, RouteEntry, RouteRank};
use crate::dataplane::{
    BindProtocol, Listener, ListenerKey, Redirect, RequestMatch, RetryPolicy, RouteKind,
    RouteTable, RuleKey, Timeouts, WeightedBackend,
};
use crate::model::ObjectKey;
use arc_swap::ArcSwap;
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A backend that echoes what it received as `key: value` lines and counts
/// requests. `/status/NNN` answers NNN; paths ending in `/slow` answer after one second.
async fn echo_backend() -> (SocketAddr, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound socket has an address");
    let count = Arc::new(AtomicU32::new(0));
    let served = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let served = served.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    served.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, std::convert::Infallible>(echo(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (addr, count)
}

async fn echo(req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut text = format!(
        "method: {}\nuri: {}\nversion: {:?}\n",
        req.method(),
        req.uri(),
        req.version()
    );
    for (name, value) in req.headers() {
        text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-backend", HeaderValue::from_static("echo"));
    resp.headers_mut()
        .insert("keep-alive", HeaderValue::from_static("timeout=5"));
    resp
}

fn local() -> SocketAddr {
    "127.0.0.1:18080".parse().expect("literal")
}

fn service(addrs: &[SocketAddr], protocol: UpstreamProtocol) -> BackendTarget {
    BackendTarget::Service(Arc::new(Upstream {
        name: "test/echo:80".into(),
        endpoints: addrs.to_vec(),
        protocol,
        tls: None,
    }))
}

fn rule(target: BackendTarget, filters: Vec<Filter>) -> Rule {
    Rule {
        key: RuleKey {
            kind: RouteKind::Http,
            route: ObjectKey::new("test", "route"),
            index: 0,
            name: None,
        },
        filters,
        backends: vec![WeightedBackend {
            weight: 1,
            target,
            filters: Vec::new(),
        }],
        total_weight: 1,
        timeouts: Timeouts::default(),
        retry: None,
    }
}

fn listener(name: &str, hostname: Option<&str>, rules: Vec<(PathMatch, Rule)>) -> Arc<Listener> {
    let entries = rules
        .into_iter()
        .enumerate()
        .map(|(i, (path, rule))| RouteEntry {
            hostname: None,
            matcher: RequestMatch {
                path,
                headers: Vec::new(),
                query: Vec::new(),
                method: None,
            },
            rule: Arc::new(rule),
            order: EntryOrder::new(&RouteRank::new("", "test", "route"), i, 0),
        })
        .collect();
    Arc::new(Listener {
        key: ListenerKey {
            gateway: ObjectKey::new("test", "gw"),
            listener_set: None,
            name: name.into(),
        },
        hostname: hostname.map(str::to_owned),
        port: 80,
        protocol: BindProtocol::Http,
        certificates: Vec::new(),
        tls: None,
        client_auth: None,
        routes: RouteTable::new(entries),
        streams: None,
    })
}

fn proxy_for(rules: Vec<(PathMatch, Rule)>) -> Arc<Proxy> {
    let dp = Dataplane {
        binds: vec![Bind::new(
            local(),
            BindProtocol::Http,
            vec![listener("http", None, rules)],
        )],
        ..Dataplane::default()
    };
    Proxy::new(Arc::new(ArcSwap::from_pointee(dp)))
}

fn conn() -> Arc<ConnInfo> {
    Arc::new(ConnInfo::new(
        local(),
        "192.0.2.10:40000".parse().expect("literal"),
        None,
    ))
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", "example.org")
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

async fn send(proxy: &Arc<Proxy>, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
    let resp = proxy.clone().handle_request(req, conn()).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

#[tokio::test]
async fn request_reaches_backend_with_forwarded_headers() {
    let (addr, _) = echo_backend().await;
    let proxy = proxy_for(vec![(
        prefix("/"),
        rule(service(&[addr], UpstreamProtocol::Http1), vec![]),
    )]);
    let (status, headers, body) = send(&proxy, get("/hello?x=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-backend"], "echo");
    assert!(
        headers.get("keep-alive").is_none(),
        "hop-by-hop header leaked"
    );
    assert!(body.contains("uri: /hello?x=1\n"), "{body}");
    assert!(body.contains("host: example.org\n"), "{body}");
    assert!(body.contains("x-forwarded-for: 192.0.2.10\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
}

#[tokio::test]
async fn request_body_is_streamed_to_backend() {
    let (addr, _) = echo_backend().await;
    let proxy = proxy_for(vec![(
        prefix("/"),
        rule(service(&[addr], UpstreamProtocol::Http1), vec![]),
    )]);
    let req = Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "example.org")
        .body(Full::new(Bytes::from_static(b"payload")))
        .expect("valid request");
    let (status, _, body) = send(&proxy, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("method: POST\n"), "{body}");
    assert!(body.contains("body: payload\n"), "{body}");
}

#[tokio::test]
async fn h2c_upstream_gets_host_as_authority() {
    let (addr, _) = echo_backend().await;
    let proxy = proxy_for(vec![(
        prefix("/"),
        rule(service(&[addr], UpstreamProtocol::H2c), vec![]),
    )]);
    let (status, _, body) = send(&proxy, get("/h2")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("version: HTTP/2.0\n"), "{body}");
    assert!(body.contains("uri: http://example.org/h2\n"), "{body}");
}

#[tokio::test]
async fn filters_modify_request_and_response_headers() {
    let (addr, _) = echo_backend().await;
    let edit = |name: &'static str, value: &'static str| HeaderEdit {
        set: vec![(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )],
        add: Vec::new(),
        remove: Vec::new(),
    };
    let filters = vec![
        Filter::RequestHeaders(edit("x-req", "1")),
        Filter::ResponseHeaders(edit("x-resp", "2")),
        Filter::Rewrite(crate::dataplane::Rewrite {
            hostname: Some("rewritten.example".into()),
            path: Some(crate::dataplane::PathRewrite::Prefix("/new".into())),
        }),
    ];
    let proxy = proxy_for(vec![(
        prefix("/old"),
        rule(service(&[addr], UpstreamProtocol::Http1), filters),
    )]);
    let (status, headers, body) = send(&proxy, get("/old/x?q=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-resp"], "2");
    assert!(body.contains("x-req: 1\n"), "{body}");
    assert!(body.contains("host: rewritten.example\n"), "{body}");
    assert!(body.contains("uri: /new/x?q=1\n"), "{body}");
}

#[tokio::test]
async fn redirect_is_answered_by_gateway() {
    let redirect = Filter::Redirect(Redirect {
        scheme: Some("https".into()),
        hostname: None,
        port: None,
        path: None,
        status: 301,
    });
    let proxy = proxy_for(vec![(
        prefix("/"),
        rule(BackendTarget::Invalid, vec![redirect]),
    )]);
    let (status, headers, _) = send(&proxy, get("/r?a=b")).await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "https://example.org/r?a=b");
}

#[tokio::test]
async fn unroutable_requests_get_gateway_errors() {
    let (addr, _) = echo_backend().await;
    let mut empty = rule(service(&[], UpstreamProtocol::Http1), vec![]);
    empty.key.index = 1;
    let mut zero = rule(service(&[addr], UpstreamProtocol::Http1), vec![]);
    zero.total_weight = 0;
    let fixed = BackendTarget::Static(Arc::new(StaticResponse {
        status: 418,
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"teapot"),
    }));
    let proxy = proxy_for(vec![
        (
            PathMatch::Exact("/invalid".into()),
            rule(BackendTarget::Invalid, vec![]),
        ),
        (PathMatch::Exact("/empty".into()), empty),
        (PathMatch::Exact("/zero".into()), zero),
        (PathMatch::Exact("/static".into()), rule(fixed, vec![])),
    ]);
    assert_eq!(send(&proxy, get("/nothing")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        send(&proxy, get("/invalid")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        send(&proxy, get("/zero")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        send(&proxy, get("/empty")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, _, body) = send(&proxy, get("/static")).await;
    assert_eq!((status.as_u16(), body.as_str()), (418, "teapot"));
}

#[tokio::test]
async fn unknown_local_address_is_404() {
    let proxy = proxy_for(vec![]);
    let other = Arc::new(ConnInfo::new(
        "127.0.0.1:1".parse().expect("literal"),
        "192.0.2.10:40000".parse().expect("literal"),
        None,
    ));
    let resp = proxy.handle_request(get("/"), other).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listed_status_is_retried_up_to_attempts() {
    let (addr, count) = echo_backend().await;
    let mut r = rule(service(&[addr], UpstreamProtocol::Http1), vec![]);
    r.retry = Some(RetryPolicy {
        codes: vec![500],
        attempts: 2,
        backoff: Duration::from_millis(1),
    });
    let proxy = proxy_for(vec![(prefix("/"), r)]);
    assert_eq!(send(&proxy, get("/status/500")).await.0, 500);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(send(&proxy, get("/status/503")).await.0, 503);
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn refused_connection_is_503_and_retried() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        l.local_addr().expect("bound socket has an address")
    };
    let (addr, count) = echo_backend().await;
    let mut r = rule(service(&[closed], UpstreamProtocol::Http1), vec![]);
    r.retry = Some(RetryPolicy {
        codes: Vec::new(),
        attempts: 3,
        backoff: Duration::ZERO,
    });
    let proxy = proxy_for(vec![
        (PathMatch::Exact("/closed".into()), r),
        (
            prefix("/"),
            rule(service(&[addr], UpstreamProtocol::Http1), vec![]),
        ),
    ]);
    assert_eq!(send(&proxy, get("/closed")).await.0, 503);
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn timeouts_answer_504() {
    let (addr, _) = echo_backend().await;
    let mut backend = rule(service(&[addr], UpstreamProtocol::Http1), vec![]);
    backend.timeouts.backend_request = Some(Duration::from_millis(100));
    let mut request = rule(service(&[addr], UpstreamProtocol::Http1), vec![]);
    request.timeouts.request = Some(Duration::from_millis(100));
    request.key.index = 1;
    let proxy = proxy_for(vec![
        (prefix("/backend"), backend),
        (prefix("/request"), request),
    ]);
    assert_eq!(
        send(&proxy, get("/backend/slow")).await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        send(&proxy, get("/request/slow")).await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(send(&proxy, get("/backend/fast")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn mirror_receives_a_copy() {
    let (primary, primary_count) = echo_backend().await;
    let (mirror, mirror_count) = echo_backend().await;
    let filters = vec![Filter::Mirror(Mirror {
        target: service(&[mirror], UpstreamProtocol::Http1),
        numerator: 1,
        denominator: 1,
    })];
    let proxy = proxy_for(vec![(
        prefix("/"),
        rule(service(&[primary], UpstreamProtocol::Http1), filters),
    )]);
    assert_eq!(send(&proxy, get("/m")).await.0, StatusCode::OK);
    for _ in 0..100 {
        if mirror_count.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(primary_count.load(Ordering::SeqCst), 1);
    assert_eq!(mirror_count.load(Ordering::SeqCst), 1);
}

fn tls_bind() -> Bind {
    Bind::new(
        local(),
        BindProtocol::Https,
        vec![
            listener("exact", Some("second.example"), vec![]),
            listener("wild", Some("*.wildcard.example"), vec![]),
            listener("any", None, vec![]),
        ],
    )
}

fn tls(sni: Option<&str>, listener: &str) -> TlsInfo {
    TlsInfo {
        sni: sni.map(str::to_owned),
        listener: ListenerKey {
            gateway: ObjectKey::new("test", "gw"),
            listener_set: None,
            name: listener.into(),
        },
        client_cert: None,
    }
}

fn selected(bind: &Bind, host: Option<&str>, tls: Option<&TlsInfo>) -> Result<String, u16> {
    select_listener(bind, host, tls)
        .map(|l| l.key.name.clone())
        .map_err(|e| e.status().as_u16())
}

#[test]
fn host_of_another_listener_than_sni_is_misdirected() {
    let bind = tls_bind();
    let sni_any = tls(Some("example.org"), "any");
    assert_eq!(
        selected(&bind, Some("example.org"), Some(&sni_any)),
        Ok("any".into())
    );
    assert_eq!(
        selected(&bind, Some("second.example"), Some(&sni_any)),
        Err(421)
    );
    let sni_exact = tls(Some("second.example"), "exact");
    assert_eq!(
        selected(&bind, Some("unknown.example"), Some(&sni_exact)),
        Err(421)
    );
    let sni_wild = tls(Some("a.wildcard.example"), "wild");
    assert_eq!(
        selected(&bind, Some("b.wildcard.example"), Some(&sni_wild)),
        Ok("wild".into())
    );
}

#[test]
fn without_sni_the_host_decides() {
    let bind = tls_bind();
    let no_sni = tls(None, "any");
    assert_eq!(
        selected(&bind, Some("second.example"), Some(&no_sni)),
        Ok("exact".into())
    );
}

#[test]
fn without_host_the_handshake_listener_serves() {
    let bind = tls_bind();
    let sni = tls(Some("second.example"), "exact");
    assert_eq!(selected(&bind, None, Some(&sni)), Ok("exact".into()));
}

#[test]
fn plain_http_host_without_listener_is_404() {
    let bind = Bind::new(
        local(),
        BindProtocol::Http,
        vec![listener("exact", Some("only.example"), vec![])],
    );
    assert_eq!(selected(&bind, Some("other.example"), None), Err(404));
}

#[test]
fn wildcard_bind_serves_concrete_local_address() {
    let dp = Dataplane {
        binds: vec![Bind::new(
            "0.0.0.0:18080".parse().expect("literal"),
            BindProtocol::Http,
            Vec::new(),
        )],
        ..Dataplane::default()
    };
    assert!(find_bind(&dp, "10.0.0.5:18080".parse().expect("literal")).is_some());
    assert!(find_bind(&dp, "10.0.0.5:18081".parse().expect("literal")).is_none());
}

#[tokio::test]
async fn websocket_is_spliced_to_backend() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    // Backend: echo every frame.
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let backend_addr = backend.local_addr().expect("bound socket has an address");
    tokio::spawn(async move {
        let Ok((stream, _)) = backend.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() || ws.send(msg).await.is_err() {
                break;
            }
        }
    });

    // Gateway: a minimal server in front of the proxy.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let front_addr = front.local_addr().expect("bound socket has an address");
    let dp = Dataplane {
        binds: vec![Bind::new(
            front_addr,
            BindProtocol::Http,
            vec![listener(
                "http",
                None,
                vec![(
                    prefix("/"),
                    rule(
                        service(&[backend_addr], UpstreamProtocol::WebSocket),
                        vec![],
                    ),
                )],
            )],
        )],
        ..Dataplane::default()
    };
    let proxy = Proxy::new(Arc::new(ArcSwap::from_pointee(dp)));
    tokio::spawn(async move {
        let Ok((stream, remote)) = front.accept().await else {
            return;
        };
        let conn = Arc::new(ConnInfo::new(front_addr, remote, None));
        let svc = hyper::service::service_fn(move |req| {
            let (proxy, conn) = (proxy.clone(), conn.clone());
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, conn).await) }
        });
        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc)
            .await;
    });

    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{front_addr}/ws"))
        .await
        .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("Websocket Support!"))
        .await
        .expect("send text");
    let reply = ws.next().await.expect("a reply").expect("a frame");
    assert_eq!(reply, Message::text("Websocket Support!"));
    ws.send(Message::binary(vec![1u8, 2, 3, 4]))
        .await
        .expect("send binary");
    let reply = ws.next().await.expect("a reply").expect("a frame");
    assert_eq!(reply, Message::binary(vec![1u8, 2, 3, 4]));
}

/// A backend that resets the first `failures` connections after reading the
/// request head, then answers 200 with an empty body.
async fn resetting_backend(failures: u32) -> (SocketAddr, Arc<AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound socket has an address");
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            if seen.fetch_add(1, Ordering::SeqCst) < failures {
                let _ = stream.set_zero_linger();
                drop(stream);
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (addr, count)
}

#[tokio::test]
async fn reset_connections_are_retried() {
    let (addr, count) = resetting_backend(2).await;
    let mut r = rule(service(&[addr], UpstreamProtocol::Http1), vec![]);
    r.retry = Some(RetryPolicy {
        codes: Vec::new(),
        attempts: 3,
        backoff: Duration::ZERO,
    });
    let proxy = proxy_for(vec![(prefix("/"), r)]);
    assert_eq!(send(&proxy, get("/retry")).await.0, StatusCode::OK);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn reset_without_retry_policy_is_503() {
    let (addr, _) = resetting_backend(1).await;
    let proxy = proxy_for(vec![(
        prefix("/"),
        rule(service(&[addr], UpstreamProtocol::Http1), vec![]),
    )]);
    assert_eq!(
        send(&proxy, get("/reset")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_by_gateway() {
    let (addr, count) = echo_backend().await;
    let policy = Arc::new(CorsPolicy {
        allow_origins: vec!["https://www.foo.com".into()],
        allow_methods: vec!["GET".into()],
        ..CorsPolicy::default()
    });
    let proxy = proxy_for(vec![(
        prefix("/"),
        rule(
            service(&[addr], UpstreamProtocol::Http1),
            vec![Filter::Cors(policy)],
        ),
    )]);
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("/cors")
        .header("host", "example.org")
        .header("origin", "https://www.foo.com")
        .header("access-control-request-method", "GET")
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let (status, headers, _) = send(&proxy, preflight).await;
    assert_eq!(status, CorsPolicy::PREFLIGHT_STATUS);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://www.foo.com"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);
    let actual = Request::builder()
        .uri("/cors")
        .header("host", "example.org")
        .header("origin", "https://www.foo.com")
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let (status, headers, _) = send(&proxy, actual).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://www.foo.com"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// Every request's future is boxed (and its whole size copied) by
/// `Proxy::handle`, so rare paths (new connections, TLS and h2c upstreams,
/// WebSocket) are boxed where they start, routing runs in a plain function,
/// and each attempt awaits the HTTP/1.1 pool's future directly. Unboxed, the
/// new-connection and h2c paths made it 5.8 KiB in a debug build; with a
/// routing layer and an attempt layer of their own it was 4.5 KiB; it is
/// 2.7 KiB now. The bound catches growth of either order, the tests next to
/// each boxed leg catch one leg coming back inline.
#[tokio::test]
async fn a_request_future_stays_small() {
    let proxy = proxy_for(vec![]);
    let f = proxy.clone().handle_request(get("/"), conn());
    let size = std::mem::size_of_val(&f);
    assert!(size <= 3200, "request future is {size} bytes");
}

/// A `Host` set by a header filter replaces the client's on the way
/// upstream; one that cannot go on the wire as a host (not visible ASCII)
/// is ignored, and the client's host goes on. An unchanged path goes on as
/// the client's own target.
#[test]
fn a_host_set_by_a_header_filter_goes_upstream_when_it_can() {
    let uri: http::Uri = "/a/b?x=1".parse().expect("literal");
    let matched = prefix("/");
    let ctx = RedirectContext {
        scheme: "http",
        host: "client.example",
        port: 80,
        matched: &matched,
        method: &Method::GET,
    };
    let set_host = |value: HeaderValue| {
        Filter::RequestHeaders(HeaderEdit {
            set: vec![(header::HOST, value)],
            add: vec![],
            remove: vec![],
        })
    };
    let unusable = set_host(HeaderValue::from_bytes(b"caf\xc3\xa9.example").expect("obs-text"));
    let usable = set_host(HeaderValue::from_static("set.example"));
    let client = HeaderValue::from_static("client.example");

    let path = || Cow::Borrowed(uri.path());
    let mut ex = Exchange::new(HeaderMap::new(), Some(client.clone()), path(), &uri);
    assert!(ex.apply(std::slice::from_ref(&unusable), &ctx).is_none());
    let head = ex.outbound_head(Method::GET).expect("valid head");
    assert_eq!(head.host, Some(client.clone()));
    assert_eq!(head.path_and_query.as_str(), "/a/b?x=1");
    assert!(head.headers.get(header::HOST).is_none());

    let mut ex = Exchange::new(HeaderMap::new(), Some(client), path(), &uri);
    assert!(ex.apply(std::slice::from_ref(&usable), &ctx).is_none());
    let head = ex.outbound_head(Method::GET).expect("valid head");
    assert_eq!(head.host, Some(HeaderValue::from_static("set.example")));
}

/// A path the filters changed goes upstream rebuilt, with the query.
#[test]
fn a_normalised_path_goes_upstream_with_its_query() {
    let uri: http::Uri = "/a/./b/../c?x=1".parse().expect("literal");
    let mut ex = Exchange::new(HeaderMap::new(), None, normalize_path(uri.path()), &uri);
    let head = ex.outbound_head(Method::GET).expect("valid head");
    assert_eq!(head.path_and_query.as_str(), "/a/c?x=1");
    assert_eq!(head.host, None);
}

/// The path routes match is the path the backend gets: dot segments are
/// resolved once, before routing, and that result goes upstream with the
/// query; a path that needs no change goes as the client sent it.
#[tokio::test]
async fn the_normalised_path_is_routed_and_forwarded() {
    let (addr, count) = echo_backend().await;
    let proxy = proxy_for(vec![(
        PathMatch::Exact("/admin".into()),
        rule(service(&[addr], UpstreamProtocol::Http1), vec![]),
    )]);
    let (status, _, body) = send(&proxy, get("/public/../admin?q=1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("uri: /admin?q=1\n"), "{body}");
    let (status, _, body) = send(&proxy, get("/admin?q=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("uri: /admin?q=2\n"), "{body}");
    assert_eq!(
        send(&proxy, get("/admin/./x")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
}
