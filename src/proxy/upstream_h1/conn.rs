//! The streams the HTTP/1.1 pool carries ([`Conn`]): how each is opened
//! (through [`crate::proxy::connect`]) and how an idle one is checked for a
//! backend's close or stray bytes before it is reused.

use super::super::connect;
use super::super::errors::Error;
use crate::dataplane::UpstreamTls;
use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A TLS policy and the client configuration chosen for the request's
/// Gateway.
pub type Tls<'a> = (&'a UpstreamTls, &'a Arc<rustls::ClientConfig>);

/// Opening a connection: boxed, as it is the rare path and its future
/// large.
pub type Connecting<'a, S> = Pin<Box<dyn Future<Output = Result<S, Error>> + Send + 'a>>;

/// A backend connection the HTTP/1.1 pool can hold.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    /// Connects to `addr` of upstream `name`, through `tls` when the stream
    /// is TLS.
    fn connect<'a>(name: &'a str, addr: SocketAddr, tls: Option<Tls<'a>>) -> Connecting<'a, Self>;

    /// Whether an idle connection has nothing to read, as far as can be
    /// told cheaply (`buf` is its read buffer, empty).
    fn seems_quiet(&mut self, buf: &mut BytesMut) -> bool;

    /// Whether an idle connection has nothing to read, asking the socket
    /// itself: not closed by the backend, no stray bytes.
    fn is_quiet(&mut self, buf: &mut BytesMut) -> bool;
}

impl Conn for TcpStream {
    fn connect<'a>(name: &'a str, addr: SocketAddr, _: Option<Tls<'a>>) -> Connecting<'a, Self> {
        Box::pin(connect::tcp_for(name, addr))
    }

    /// A system call only when the I/O driver has recorded readiness since
    /// the connection's last read, which is either something new (stray
    /// bytes, the backend's close) or stale (the last read filled its
    /// buffer exactly, or read with `try_read`); a stale readiness is
    /// cleared by the look.
    fn seems_quiet(&mut self, _: &mut BytesMut) -> bool {
        let stream = &*self;
        quiet(stream.try_io(Interest::READABLE, || peek(stream)))
    }

    /// Tokio's readiness may not have seen a close yet.
    fn is_quiet(&mut self, _: &mut BytesMut) -> bool {
        quiet(peek(self))
    }
}

impl Conn for TlsStream<TcpStream> {
    /// Without a policy there is nothing to connect with: never cleartext
    /// in its place.
    fn connect<'a>(name: &'a str, addr: SocketAddr, tls: Option<Tls<'a>>) -> Connecting<'a, Self> {
        Box::pin(async move {
            let (policy, config) = tls.ok_or(Error::InvalidBackend)?;
            let tcp = connect::tcp_for(name, addr).await?;
            connect::tls_for(name, addr, tcp, policy, config.clone()).await
        })
    }

    /// A read without a waker: whatever rustls holds or the socket has
    /// makes it not quiet, except records without data (a session ticket,
    /// which rustls takes in).
    fn seems_quiet(&mut self, buf: &mut BytesMut) -> bool {
        read_nothing(self, buf)
    }

    /// As [`Conn::seems_quiet`], then the socket is asked, as tokio's
    /// readiness may not have seen a close yet.
    fn is_quiet(&mut self, buf: &mut BytesMut) -> bool {
        read_nothing(self, buf) && quiet(peek(self.get_ref().0))
    }
}

/// Whether a read without a waker finds nothing (and no close).
fn read_nothing<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    // What the response head would reserve anyway: one allocation, not two.
    buf.reserve(super::HEAD_READ);
    matches!(
        tokio_util::io::poll_read_buf(Pin::new(stream), &mut cx, buf),
        Poll::Pending
    )
}

/// Whether a [`peek`] found nothing: neither bytes nor a close (nor an
/// error, which makes the connection unusable too).
fn quiet(peeked: io::Result<usize>) -> bool {
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Peeks at one byte of `stream` without blocking: `Ok(0)` when the
/// backend has closed, `Ok(1)` when it has written, `WouldBlock` when
/// neither.
fn peek(stream: &TcpStream) -> io::Result<usize> {
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    socket2::SockRef::from(stream).peek(&mut probe)
}
