//! End-to-end tests of TCP and UDP listeners through the real `portcullis`
//! binary on loopback: TCPRoute echo and byte-exact forwarding, weights
//! honoured within statistical bounds for TCP connections and UDP sessions,
//! UDP session affinity, a refused backend closing the client, and the
//! PROXY protocol v2 header (`portcullis.dev/proxy-protocol: v2`) parsed by a
//! backend that checks its byte layout, and two TCP Gateways on one port each
//! served on an address of its own from `--gateway-address-pool`.

mod e2e;

use e2e::gateway::Gateway;
use e2e::manifests::{docs, gateway, service, CLASS};
use e2e::WAIT;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Connections (or UDP sessions) opened to measure weights.
const SAMPLES: usize = 200;

/// A TCP backend that first writes its one-byte `tag`, then echoes every
/// byte until the client closes.
async fn tagged_echo(tag: u8) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                if w.write_all(&[tag]).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A UDP backend answering every datagram with its `tag` followed by the
/// datagram.
async fn tagged_udp_echo(tag: u8) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind UDP backend");
    let addr = socket.local_addr().expect("UDP backend address");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let mut reply = vec![tag];
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

/// A PROXY protocol v2 header as a backend reads it.
#[derive(Debug, PartialEq, Eq)]
struct ProxyHeader {
    source: SocketAddr,
    destination: SocketAddr,
}

/// Reads and checks a version 2 header (haproxy `proxy-protocol.txt` 2.2):
/// the 12-byte signature, version 2 with command PROXY, TCP over IPv4 or
/// IPv6, the length, then addresses and ports.
async fn read_proxy_v2(r: &mut (impl AsyncReadExt + Unpin)) -> Result<ProxyHeader, String> {
    const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed).await.map_err(|e| e.to_string())?;
    if fixed[..12] != SIGNATURE {
        return Err(format!("bad signature {:?}", &fixed[..12]));
    }
    if fixed[12] != 0x21 {
        return Err(format!("version/command {:#04x}, want 0x21", fixed[12]));
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let mut block = vec![0u8; len];
    r.read_exact(&mut block).await.map_err(|e| e.to_string())?;
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    match (fixed[13], len) {
        (0x11, 12) => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    block[at],
                    block[at + 1],
                    block[at + 2],
                    block[at + 3],
                ))
            };
            Ok(ProxyHeader {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            })
        }
        (0x21, 36) => {
            let ip = |at: usize| {
                let octets: [u8; 16] = block[at..at + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Ok(ProxyHeader {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            })
        }
        (fam, len) => Err(format!("family {fam:#04x} with length {len}")),
    }
}

/// A TCP backend that parses a PROXY v2 header, reports it on the channel,
/// then echoes the rest of the stream.
async fn proxy_v2_echo() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Result<ProxyHeader, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let header = read_proxy_v2(&mut r).await;
                let ok = header.is_ok();
                let _ = tx.send(header);
                if ok {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    (addr, rx)
}

/// A route of `kind` attached to listener `section` of Gateway `gw`, to
/// Services `(name, weight)` on port 8080, with `annotations` (YAML lines).
fn l4_route(
    kind: &str,
    name: &str,
    section: &str,
    backends: &[(&str, u32)],
    annotations: &str,
) -> String {
    let refs: String = backends
        .iter()
        .map(|(s, w)| format!("        - name: {s}\n          port: 8080\n          weight: {w}\n"))
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata:
  name: {name}
  namespace: default
{annotations}spec:
  parentRefs:
    - name: gw
      sectionName: {section}
  rules:
    - backendRefs:
{refs}"
    )
}

/// A UDP Service: port 8080 and an EndpointSlice to 127.0.0.1:`port`/UDP.
fn udp_service(name: &str, port: u16) -> String {
    service(name, port, None).replace("protocol: TCP", "protocol: UDP")
}

fn listener(name: &str, protocol: &str, port: u16) -> String {
    format!("    - name: {name}\n      protocol: {protocol}\n      port: {port}\n")
}

/// Reads the backend's tag byte from a fresh connection through `addr`.
async fn tag_of_connection(addr: SocketAddr) -> u8 {
    let mut c = TcpStream::connect(addr).await.expect("connect gateway");
    let mut tag = [0u8; 1];
    tokio::time::timeout(WAIT, c.read_exact(&mut tag))
        .await
        .expect("tag in time")
        .expect("read tag");
    tag[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_route_echoes_and_honours_weights() {
    let a = tagged_echo(b'a').await;
    let b = tagged_echo(b'b').await;
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway("gw", &[listener("tcp", "TCP", 8080)]),
            ]),
        ),
        (
            "routes.yaml",
            docs(&[
                l4_route("TCPRoute", "db", "tcp", &[("a", 1), ("b", 3)], ""),
                service("a", a.port(), None),
                service("b", b.port(), None),
            ]),
        ),
    ])
    .await;
    let status = gw
        .wait_status("TCPRoute accepted", |s| {
            e2e::gateway::find_object(s, "TCPRoute", "db")
                .is_some_and(|r| e2e::gateway::has_condition(r, "Accepted", "True", None))
        })
        .await;
    let l = e2e::gateway::listener(&status, "gw", "tcp").expect("listener status");
    assert_eq!(l["supportedKinds"][0].as_str(), Some("TCPRoute"), "{l}");

    // Byte-exact echo of a large payload, both ways, with half-close.
    let mut c = TcpStream::connect(gw.addr(8080))
        .await
        .expect("connect gateway");
    let mut tag = [0u8; 1];
    c.read_exact(&mut tag).await.expect("tag");
    let payload: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
    let (mut r, mut w) = c.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.expect("write payload");
        w.shutdown().await.expect("half-close");
    });
    let mut echoed = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read echo");
    writer.await.expect("writer task");
    assert!(
        echoed == payload,
        "echoed {} bytes, sent {}",
        echoed.len(),
        payload.len()
    );

    // Weights 1:3 over independent connections.
    let mut b_count = 0;
    for _ in 0..SAMPLES {
        if tag_of_connection(gw.addr(8080)).await == b'b' {
            b_count += 1;
        }
    }
    let share = b_count as f64 / SAMPLES as f64;
    // Expected 0.75; the standard deviation of the share is about 0.031.
    assert!(
        (0.6..=0.9).contains(&share),
        "backend b got {b_count}/{SAMPLES}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_route_keeps_sessions_and_honours_weights() {
    let a = tagged_udp_echo(b'a').await;
    let b = tagged_udp_echo(b'b').await;
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway(
                    "gw",
                    &[listener("udp", "UDP", 8080), listener("tcp", "TCP", 8080)],
                ),
            ]),
        ),
        (
            "routes.yaml",
            docs(&[
                l4_route("UDPRoute", "dns", "udp", &[("a", 1), ("b", 3)], ""),
                udp_service("a", a.port()),
                udp_service("b", b.port()),
            ]),
        ),
    ])
    .await;
    gw.wait_status("UDPRoute accepted", |s| {
        e2e::gateway::find_object(s, "UDPRoute", "dns")
            .is_some_and(|r| e2e::gateway::has_condition(r, "Accepted", "True", None))
    })
    .await;
    let target = gw.addr(8080);

    // One client: every datagram of its session reaches the same backend.
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    let mut first = None;
    for i in 0..10u8 {
        let reply = exchange(&client, target, &[b'p', i]).await;
        assert_eq!(&reply[1..], &[b'p', i], "payload echoed");
        let tag = *first.get_or_insert(reply[0]);
        assert_eq!(
            reply[0], tag,
            "datagram {i} changed backend within a session"
        );
    }

    // Weights 1:3 over independent sessions (one client socket each).
    let mut b_count = 0;
    for _ in 0..SAMPLES {
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
        if exchange(&client, target, b"x").await[0] == b'b' {
            b_count += 1;
        }
    }
    let share = b_count as f64 / SAMPLES as f64;
    assert!(
        (0.6..=0.9).contains(&share),
        "backend b got {b_count}/{SAMPLES}"
    );
}

/// Sends `payload` to `target` and waits for the reply, resending every
/// 500 ms (UDP may drop the first datagram while a session opens).
async fn exchange(client: &UdpSocket, target: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 65_535];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        client
            .send_to(payload, target)
            .await
            .expect("send datagram");
        match tokio::time::timeout(
            std::time::Duration::from_millis(500),
            client.recv_from(&mut buf),
        )
        .await
        {
            Ok(Ok((n, from))) => {
                assert_eq!(from, target, "the reply comes from the gateway's socket");
                return buf[..n].to_vec();
            }
            Ok(Err(e)) => panic!("receive failed: {e}"),
            Err(_) if tokio::time::Instant::now() < deadline => continue,
            Err(_) => panic!("no UDP reply within {WAIT:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_route_with_proxy_protocol_v2_tells_the_backend_the_client_address() {
    let (backend, mut headers) = proxy_v2_echo().await;
    let plain = tagged_echo(b'p').await;
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway(
                    "gw",
                    &[listener("pp", "TCP", 8080), listener("plain", "TCP", 8443)],
                ),
            ]),
        ),
        (
            "routes.yaml",
            docs(&[
                l4_route(
                    "TCPRoute",
                    "pp",
                    "pp",
                    &[("pp", 1)],
                    "  annotations:\n    portcullis.dev/proxy-protocol: v2\n",
                ),
                l4_route("TCPRoute", "plain", "plain", &[("plain", 1)], ""),
                service("pp", backend.port(), None),
                service("plain", plain.port(), None),
            ]),
        ),
    ])
    .await;
    gw.wait_status("both TCPRoutes accepted", |s| {
        ["pp", "plain"].iter().all(|n| {
            e2e::gateway::find_object(s, "TCPRoute", n)
                .is_some_and(|r| e2e::gateway::has_condition(r, "Accepted", "True", None))
        })
    })
    .await;

    let mut c = TcpStream::connect(gw.addr(8080))
        .await
        .expect("connect gateway");
    let client_addr = c.local_addr().expect("client address");
    c.write_all(b"hello").await.expect("write");
    let header = tokio::time::timeout(WAIT, headers.recv())
        .await
        .expect("header in time")
        .expect("backend running")
        .expect("a valid PROXY v2 header");
    assert_eq!(
        header,
        ProxyHeader {
            source: client_addr,
            destination: gw.addr(8080),
        }
    );
    let mut echoed = [0u8; 5];
    tokio::time::timeout(WAIT, c.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("echo after the header");
    assert_eq!(
        &echoed, b"hello",
        "the header is not echoed: it was consumed first"
    );

    // Without the annotation the backend's first byte is the client's.
    assert_eq!(tag_of_connection(gw.addr(8443)).await, b'p');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backend_closes_the_client_with_a_log_line() {
    // A port nothing listens on and nothing else can take meanwhile.
    let (dead, _dead_guard) = e2e::refused_addr();
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway("gw", &[listener("tcp", "TCP", 8080)]),
            ]),
        ),
        (
            "routes.yaml",
            docs(&[
                l4_route("TCPRoute", "dead", "tcp", &[("dead", 1)], ""),
                service("dead", dead.port(), None),
            ]),
        ),
    ])
    .await;
    let mut c = TcpStream::connect(gw.addr(8080))
        .await
        .expect("connect gateway");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, c.read(&mut buf))
        .await
        .expect("the gateway closes the client in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected a closed connection, got {read:?}"
    );
    e2e::eventually("connect failure logged", || async {
        gw.log_text()
            .contains("stream backend connect failed")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_gateways_on_one_port_each_serve_on_an_address_of_their_own() {
    // Without a pool both TCP listeners would share 127.0.0.1 and one
    // would be Conflicted; with one, each Gateway binds its own address.
    let a = tagged_echo(b'a').await;
    let b = tagged_echo(b'b').await;
    let other_route = l4_route("TCPRoute", "other", "tcp", &[("b", 1)], "")
        .replace("    - name: gw\n", "    - name: other\n");
    let gw = Gateway::start_with_args(
        &[
            (
                "gateways.yaml",
                docs(&[
                    CLASS.to_string(),
                    gateway("gw", &[listener("tcp", "TCP", 8080)]),
                    gateway("other", &[listener("tcp", "TCP", 8080)]),
                ]),
            ),
            (
                "routes.yaml",
                docs(&[
                    l4_route("TCPRoute", "db", "tcp", &[("a", 1)], ""),
                    other_route,
                    service("a", a.port(), None),
                    service("b", b.port(), None),
                ]),
            ),
        ],
        &["--gateway-address-pool", "127.0.84.0/24"],
    )
    .await;
    let status = gw
        .wait_status("both Gateways programmed", |s| {
            ["gw", "other"].iter().all(|name| {
                e2e::gateway::find_object(s, "Gateway", name)
                    .is_some_and(|g| e2e::gateway::has_condition(g, "Programmed", "True", None))
            })
        })
        .await;
    // No creation timestamps in manifests: namespace/name order.
    for (name, ip, tag) in [
        ("gw", [127, 0, 84, 1], b'a'),
        ("other", [127, 0, 84, 2], b'b'),
    ] {
        let g = e2e::gateway::find_object(&status, "Gateway", name).expect("Gateway status");
        let address = Ipv4Addr::from(ip).to_string();
        assert_eq!(
            g["poolAddress"]["assigned"].as_str(),
            Some(address.as_str()),
            "{g}"
        );
        let l = e2e::gateway::listener(&status, name, "tcp").expect("listener status");
        assert!(
            e2e::gateway::has_condition(l, "Conflicted", "False", None),
            "{l}"
        );
        let at = SocketAddr::from((ip, gw.port(8080)));
        assert_eq!(tag_of_connection(at).await, tag, "{name} at {at}");
    }
}
