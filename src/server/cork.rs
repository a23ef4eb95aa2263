//! Sending a connection's last response in one TCP segment.
//!
//! When an HTTP/1.x client asks for the connection to close after its
//! request, three writes end it: the response, TLS `close_notify`, and the
//! FIN of `shutdown`. The socket has `TCP_NODELAY`, so each would leave as
//! its own segment, and on loopback every segment also costs the sender the
//! receiver's processing. With `TCP_CORK` set before the response is
//! written, the kernel holds the partial frames, and `shutdown` appends the
//! FIN to them and pushes everything at once: one segment instead of three
//! (two on cleartext HTTP). The serving loop corks only a response whose
//! size is known and small ([`CORK_LIMIT`]), and uncorks as soon as the
//! connection reads again, so a wrong guess delays nothing for long; the
//! kernel never holds corked bytes longer than 200 ms either.

use crate::server::hello::Prefixed;
use tokio::net::TcpStream;

/// The largest response body the serving loop corks (one TLS record): a
/// larger one is mostly full segments, which corking does not change.
pub const CORK_LIMIT: u64 = 16 * 1024;

/// A client stream carried by one TCP socket, directly or under TLS or a
/// replayed prefix.
pub trait OnTcp {
    /// The socket (`None` for in-memory test streams).
    fn tcp(&self) -> Option<&TcpStream>;
}

impl OnTcp for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl<S: OnTcp> OnTcp for Prefixed<S> {
    fn tcp(&self) -> Option<&TcpStream> {
        self.get_ref().tcp()
    }
}

impl<S: OnTcp> OnTcp for tokio_rustls::server::TlsStream<S> {
    fn tcp(&self) -> Option<&TcpStream> {
        self.get_ref().0.tcp()
    }
}

impl<S: OnTcp + ?Sized> OnTcp for Box<S> {
    fn tcp(&self) -> Option<&TcpStream> {
        (**self).tcp()
    }
}

/// Sets (`on`) or clears `TCP_CORK` on `tcp`; whether the socket took it
/// (never, off Linux).
pub fn set(tcp: &TcpStream, on: bool) -> bool {
    #[cfg(target_os = "linux")]
    {
        socket2::SockRef::from(tcp).set_tcp_cork(on).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (tcp, on);
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::server::testing::socket_pair;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// In-memory test streams have no socket.
    impl OnTcp for tokio::io::DuplexStream {
        fn tcp(&self) -> Option<&TcpStream> {
            None
        }
    }

    #[tokio::test]
    async fn corked_bytes_wait_for_shutdown_and_leave_with_the_fin() {
        let (mut server, mut client) = socket_pair().await;
        server.set_nodelay(true).expect("nodelay");
        assert!(set(&server, true), "the socket takes TCP_CORK");
        server.write_all(b"response").await.expect("write");
        server.write_all(b"close_notify").await.expect("write");
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await;
        assert!(early.is_err(), "corked bytes are held back");
        server.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read to EOF");
        assert_eq!(got, b"responseclose_notify");
    }

    #[tokio::test]
    async fn uncorking_sends_what_was_held() {
        let (mut server, mut client) = socket_pair().await;
        assert!(set(&server, true));
        server.write_all(b"held").await.expect("write");
        assert!(set(&server, false));
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut buf))
            .await
            .expect("arrives once uncorked")
            .expect("read");
        assert_eq!(&buf, b"held");
    }

    /// The stream an HTTPS connection is served on, as `accept` makes it:
    /// a boxed server TLS session over a replayed ClientHello prefix.
    #[tokio::test]
    async fn the_socket_is_found_under_a_tls_session() {
        use rustls::pki_types::ServerName;
        let (server, client) = crate::tls::provider::test_configs("cork.test");
        let (client_tcp, server_tcp) = socket_pair().await;
        let local = server_tcp.local_addr().expect("addr");
        let name = ServerName::try_from("cork.test").expect("name");
        let (served, _client) = tokio::join!(
            tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server))
                .accept(Prefixed::new(bytes::Bytes::new(), server_tcp)),
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(client)).connect(name, client_tcp),
        );
        let served = Box::new(served.expect("handshake"));
        assert_eq!(
            served.tcp().map(|t| t.local_addr().expect("addr")),
            Some(local)
        );
    }

    #[tokio::test]
    async fn the_socket_is_found_under_a_prefix_and_a_box() {
        let (server, _client) = socket_pair().await;
        let local = server.local_addr().expect("addr");
        let wrapped = Box::new(Prefixed::new(bytes::Bytes::new(), server));
        assert_eq!(
            wrapped.tcp().map(|t| t.local_addr().expect("addr")),
            Some(local)
        );
    }
}
