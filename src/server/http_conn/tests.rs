use super::*;

#[test]
fn a_connection_waits_only_with_nothing_under_way() {
    let activity = Arc::new(Activity::default());
    assert!(!activity.waiting(), "no read has found nothing yet");
    activity.waiting.store(true, Ordering::Relaxed);
    assert!(activity.waiting());
    let request = InFlight::start(&activity);
    assert!(!activity.waiting(), "a request in flight");
    drop(request);
    assert!(activity.waiting());
    activity.unflushed.store(true, Ordering::Relaxed);
    assert!(!activity.waiting(), "bytes not yet flushed");
}

#[tokio::test]
async fn reads_are_recorded_by_the_stream_wrapper() {
    use tokio::io::AsyncReadExt;
    let (mut client, server) = tokio::io::duplex(64);
    let activity = Arc::new(Activity::default());
    let mut watched = Watched::new(server, activity.clone());
    let mut buf = [0u8; 8];
    let pending = tokio::time::timeout(Duration::from_millis(20), watched.read(&mut buf));
    assert!(pending.await.is_err(), "nothing to read yet");
    assert!(activity.waiting.load(Ordering::Relaxed));
    client.write_all(b"GET").await.expect("write");
    assert_eq!(watched.read(&mut buf).await.expect("read"), 3);
    assert!(!activity.waiting.load(Ordering::Relaxed));
    assert!(activity.read_since_last_check());
    assert!(!activity.read_since_last_check(), "the mark is cleared");
    watched.write_all(b"x").await.expect("write");
    assert!(activity.unflushed.load(Ordering::Relaxed));
    watched.flush().await.expect("flush");
    assert!(!activity.unflushed.load(Ordering::Relaxed));
}

#[test]
fn a_refused_upgrade_is_not_handed_off() {
    let activity = Activity::default();
    let (handoff, tx) = Handoff::new();
    *activity.upgrade.lock().expect("lock") = Some(tx);
    drop(handoff);
    assert!(activity.take_upgrade().is_none());
}

/// A connection service over an empty dataplane: every request gets
/// the proxy's "no listener" answer, a whole exchange all the same.
fn service() -> ConnService {
    let dataplane = Arc::new(arc_swap::ArcSwap::from_pointee(
        crate::dataplane::Dataplane::default(),
    ));
    ConnService {
        proxy: Proxy::new(dataplane),
        info: Arc::new(ConnInfo::new(
            ([127, 0, 0, 1], 80).into(),
            ([127, 0, 0, 1], 40000).into(),
            None,
        )),
        activity: Arc::default(),
        handoff: true,
    }
}

/// A client end and the server's stream as a connection starts
/// (nothing read ahead to replay).
fn connection() -> (tokio::io::DuplexStream, Prefixed<tokio::io::DuplexStream>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    (client, Prefixed::new(Bytes::new(), server))
}

/// Reads one response (head and `Content-Length` body); returns its
/// status line.
async fn read_response<S: AsyncRead + Unpin>(client: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).await.expect("response head");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).expect("ASCII head");
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .map_or(0, |v| v.parse::<usize>().expect("length"));
    let mut body = vec![0u8; length];
    client.read_exact(&mut body).await.expect("response body");
    head.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_parks_and_its_next_request_is_served() {
    let (mut client, server) = connection();
    let (_tx, drain) = watch::channel(());
    let service = service();
    let activity = service.activity.clone();
    let phase = tokio::spawn(async move {
        let mut drain = drain;
        let ended = serve_h1(&SETTINGS, server, service, &mut drain).await;
        (ended, drain)
    });
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("write");
    assert!(read_response(&mut client).await.starts_with("HTTP/1.1 "));
    // Paused time jumps to the idle checks: the first sees the request's
    // bytes, the second an idle connection.
    let (ended, mut drain) = phase.await.expect("join");
    let Ended::Parked(io) = ended else {
        panic!("an idle connection is parked")
    };
    assert!(io.prefix().is_empty(), "nothing of a next request was read");
    assert_eq!(
        io.prefix().as_ptr(),
        Bytes::new().as_ptr(),
        "a parked connection keeps no view of hyper's read buffer"
    );
    assert_eq!(activity.in_flight.load(Ordering::Relaxed), 0);

    client
        .write_all(b"GET /again HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("write");
    let status = serve_one_more(io, service_sharing(&activity), &mut drain, &mut client).await;
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    assert_eq!(activity.requests.load(Ordering::Relaxed), 2);
}

/// Serves `io` in a new phase while `client` reads one response;
/// returns its status line. The phase never parks before a request and
/// ends only when the client closes, so it is cut off after 5 s.
async fn serve_one_more(
    io: Prefixed<tokio::io::DuplexStream>,
    service: ConnService,
    drain: &mut watch::Receiver<()>,
    client: &mut tokio::io::DuplexStream,
) -> String {
    let phase = serve_h1(&SETTINGS, io, service, drain);
    let (status, _) = tokio::join!(read_response(client), async {
        tokio::select! {
            _ = phase => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    });
    status
}

/// A service counting into `activity`.
fn service_sharing(activity: &Arc<Activity>) -> ConnService {
    ConnService {
        activity: activity.clone(),
        ..service()
    }
}

/// Serves one phase on a loopback TCP connection that sends `request`;
/// returns how the phase ended and the client's end.
#[cfg(target_os = "linux")]
async fn serve_tcp_phase(request: &[u8]) -> (Ended<tokio::net::TcpStream>, tokio::net::TcpStream) {
    let (mut client, server) = crate::server::testing::socket_pair().await;
    server.set_nodelay(true).expect("nodelay");
    client.write_all(request).await.expect("write");
    let (_tx, mut drain) = watch::channel(());
    let io = Prefixed::new(Bytes::new(), server);
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        serve_h1(&SETTINGS, io, service(), &mut drain),
    )
    .await
    .expect("the phase ends");
    (ended, client)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_last_response_is_corked_until_the_close() {
    use tokio::io::AsyncReadExt;
    let request = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    let (ended, mut client) = serve_tcp_phase(request).await;
    let Ended::Close(io) = ended else {
        panic!("a connection whose client asked to close is closed")
    };
    let corked = socket2::SockRef::from(io.get_ref()).tcp_cork().ok();
    assert_eq!(corked, Some(true), "the last response was corked");
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(50), client.read(&mut byte)).await;
    assert!(early.is_err(), "the response waits for the FIN");
    close(io).await;
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("read to EOF");
    let mut reread = &got[..];
    let status = read_response(&mut reread).await;
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    assert!(reread.is_empty(), "the whole response, then EOF");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_response_on_a_connection_that_goes_on_is_not_corked() {
    let request = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let (ended, mut client) = serve_tcp_phase(request).await;
    let status = tokio::time::timeout(Duration::from_secs(5), read_response(&mut client))
        .await
        .expect("the response arrives while the connection stays open");
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    let Ended::Parked(io) = ended else {
        panic!("a keep-alive connection is parked when idle")
    };
    let corked = socket2::SockRef::from(io.get_ref()).tcp_cork().ok();
    assert_eq!(corked, Some(false));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_corked_stream_that_reads_again_lets_its_bytes_go() {
    use tokio::io::AsyncReadExt;
    let (server, mut client) = crate::server::testing::socket_pair().await;
    let activity = Arc::new(Activity::default());
    activity.cork.store(true, Ordering::Relaxed);
    let mut watched = Watched::new(server, activity.clone());
    watched.write_all(b"answer").await.expect("write");
    assert!(watched.corked && !activity.cork.load(Ordering::Relaxed));
    let mut buf = [0u8; 6];
    let early = tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await;
    assert!(early.is_err(), "held while corked");
    // The connection goes on: hyper reads for the next request.
    let mut next = [0u8; 1];
    let reading = tokio::time::timeout(Duration::from_millis(10), watched.read(&mut next));
    assert!(reading.await.is_err(), "no next request yet");
    assert!(!watched.corked);
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut buf))
        .await
        .expect("sent once the stream reads again")
        .expect("read");
    assert_eq!(&buf, b"answer");
}

#[tokio::test(start_paused = true)]
async fn a_partial_request_head_is_kept_across_parking() {
    let (mut client, server) = connection();
    let (_tx, mut drain) = watch::channel(());
    let phase = serve_h1(&SETTINGS, server, service(), &mut drain);
    let exchange = async {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .expect("write");
        read_response(&mut client).await;
        client
            .write_all(b"GET /next HTTP/1.1\r\nHo")
            .await
            .expect("write");
    };
    let (ended, ()) = tokio::join!(phase, exchange);
    let Ended::Parked(io) = ended else {
        panic!("a connection between exchanges is parked")
    };
    assert_eq!(io.prefix(), b"GET /next HTTP/1.1\r\nHo");
    client
        .write_all(b"st: a.test\r\n\r\n")
        .await
        .expect("write");
    let status = serve_one_more(io, service(), &mut drain, &mut client).await;
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
}

#[tokio::test(start_paused = true)]
async fn a_request_head_still_arriving_is_not_parked() {
    let (mut client, server) = connection();
    let (_tx, mut drain) = watch::channel(());
    client
        .write_all(b"GET / HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let phase = serve_h1(&SETTINGS, server, service(), &mut drain);
    let exchange = async {
        tokio::time::sleep(5 * PARK_AFTER).await;
        client
            .write_all(b"st: a.test\r\n\r\n")
            .await
            .expect("write");
        let status = read_response(&mut client).await;
        drop(client);
        status
    };
    let (ended, status) = tokio::join!(phase, exchange);
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    assert!(
        matches!(ended, Ended::Close(_)),
        "served to the end, not parked"
    );
}

/// Writes `byte` every `every` until the write fails (the server is
/// gone) or the writer is dropped.
async fn trickle(client: &mut tokio::io::DuplexStream, byte: &[u8], every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if client.write_all(byte).await.is_err() {
            return;
        }
    }
}

/// Serves `phase` while `client` trickles a byte every `every`;
/// asserts the phase closed the connection within a trickle period
/// (and a second) after [`HEAD_TIMEOUT`].
async fn cut_off_at_head_deadline(
    phase: impl Future<Output = Ended<tokio::io::DuplexStream>>,
    client: &mut tokio::io::DuplexStream,
    every: Duration,
) {
    let started = tokio::time::Instant::now();
    let ended = tokio::select! {
        ended = phase => ended,
        () = trickle(client, b"a", every) => panic!("the server stopped reading"),
        () = tokio::time::sleep(3 * HEAD_TIMEOUT) => panic!("the head was never cut off"),
    };
    assert!(matches!(ended, Ended::Close(_)), "closed, not parked");
    let took = started.elapsed();
    assert!(
        took >= HEAD_TIMEOUT && took <= HEAD_TIMEOUT + every + Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_request_head_trickled_in_is_cut_off() {
    let (mut client, server) = connection();
    let (_tx, mut drain) = watch::channel(());
    client
        .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("write");
    let phase = serve_h1(&SETTINGS, server, service(), &mut drain);
    cut_off_at_head_deadline(phase, &mut client, Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_next_request_head_trickled_in_is_cut_off() {
    let (mut client, server) = connection();
    let (_tx, mut drain) = watch::channel(());
    let service = service();
    let activity = service.activity.clone();
    let phase = serve_h1(&SETTINGS, server, service, &mut drain);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\nGET /next HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("write");
    // Faster than the park period, so the connection never parks.
    cut_off_at_head_deadline(phase, &mut client, PARK_AFTER / 2).await;
    assert_eq!(activity.requests.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_head_that_ends_in_time_is_served() {
    let (mut client, server) = connection();
    let (_tx, mut drain) = watch::channel(());
    client
        .write_all(b"GET / HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let phase = serve_h1(&SETTINGS, server, service(), &mut drain);
    let exchange = async {
        tokio::time::sleep(HEAD_TIMEOUT - Duration::from_secs(2)).await;
        client
            .write_all(b"st: a.test\r\n\r\n")
            .await
            .expect("write");
        let status = read_response(&mut client).await;
        drop(client);
        status
    };
    let (ended, status) = tokio::join!(phase, exchange);
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    assert!(matches!(ended, Ended::Close(_)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_a_connection_between_exchanges_before_it_parks() {
    let (mut client, server) = connection();
    let (tx, mut drain) = watch::channel(());
    let phase = serve_h1(&SETTINGS, server, service(), &mut drain);
    let exchange = async {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .expect("write");
        read_response(&mut client).await;
        // Well inside the park period: the phase has been woken and
        // polled since it first looked at the drain watch.
        tx.send_replace(());
    };
    let (ended, ()) = tokio::join!(phase, exchange);
    assert!(
        matches!(ended, Ended::Close(_)),
        "closed for shutdown, not parked"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_closes_when_shutdown_begins() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let (tx, drain) = watch::channel(());
    let ConnService { proxy, info, .. } = service();
    let served = tokio::spawn(serve(&SETTINGS, proxy, server, info, false, drain));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("write");
    read_response(&mut client).await;
    tokio::time::sleep(3 * PARK_AFTER).await;
    tx.send_replace(());
    served.await.expect("serve ends once shutdown begins");
    let mut rest = Vec::new();
    use tokio::io::AsyncReadExt;
    client.read_to_end(&mut rest).await.expect("EOF");
    assert!(rest.is_empty());
}

static SETTINGS: std::sync::LazyLock<HttpSettings> =
    std::sync::LazyLock::new(HttpSettings::default);

#[tokio::test]
async fn first_bytes_wait_for_enough_to_tell_http2() {
    let (mut client, mut server) = tokio::io::duplex(256);
    let (_tx, mut drain) = watch::channel(());
    client.write_all(&H2_PREFACE[..10]).await.expect("write");
    let reader = tokio::spawn(async move { first_bytes(&mut server, &mut drain).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.write_all(&H2_PREFACE[10..]).await.expect("write");
    let got = reader.await.expect("join").expect("bytes");
    assert!(got.starts_with(H2_PREFACE));
}

#[tokio::test]
async fn first_bytes_of_http1_are_returned_at_once() {
    let (mut client, mut server) = tokio::io::duplex(256);
    let (_tx, mut drain) = watch::channel(());
    client
        .write_all(b"GET / HTTP/1.1\r\n")
        .await
        .expect("write");
    let got = first_bytes(&mut server, &mut drain).await.expect("bytes");
    assert_eq!(&got[..], b"GET / HTTP/1.1\r\n");
}

#[tokio::test]
async fn a_closed_client_gives_no_bytes() {
    let (client, mut server) = tokio::io::duplex(256);
    let (_tx, mut drain) = watch::channel(());
    drop(client);
    assert!(next_bytes(&mut server, &mut drain).await.is_none());
}
