//! Reading a connection's TLS ClientHello before any TLS library sees it, so
//! the front decides on the SNI itself: which listener serves it, or a
//! `handshake_failure` alert when none does (RFC 8446 §6.2). The bytes read
//! are replayed to the TLS acceptor through [`Prefixed`].

use crate::tls::client_hello::{self, ClientHello, Parse};
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A fatal `handshake_failure` alert record (TLS 1.2 record version, as
/// rustls and OpenSSL send before a version is agreed).
const HANDSHAKE_FAILURE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// Why no ClientHello could be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed.
    #[error("reading the ClientHello failed: {0}")]
    Io(#[from] io::Error),
    /// The client closed before sending a whole ClientHello.
    #[error("client closed before completing its ClientHello")]
    Closed,
    /// The bytes are not an acceptable ClientHello.
    #[error("invalid ClientHello: {0}")]
    Parse(#[from] client_hello::Error),
}

/// Reads from `stream` until a whole ClientHello has arrived; returns the
/// bytes read (to replay) and what the hello says. The caller bounds the time.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Vec<u8>, ClientHello), Error> {
    let mut buf = Vec::with_capacity(2048);
    loop {
        match client_hello::parse(&buf)? {
            Parse::Done(hello) => return Ok((buf, hello)),
            Parse::Incomplete { needed_hint } => {
                let want = needed_hint.unwrap_or(1).clamp(1, 16 * 1024);
                let start = buf.len();
                buf.resize(start + want.max(1024), 0);
                let n = stream.read(&mut buf[start..]).await?;
                buf.truncate(start + n);
                if n == 0 {
                    return Err(Error::Closed);
                }
            }
        }
    }
}

/// Sends a fatal `handshake_failure` alert and closes the write side.
pub async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S) {
    // Best effort: the client may already be gone.
    let _ = stream.write_all(&HANDSHAKE_FAILURE_ALERT).await;
    let _ = stream.shutdown().await;
}

/// A stream that first yields `prefix`, then reads from `inner`; writes go
/// straight to `inner`.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Wraps `inner`, replaying `prefix` first. An empty prefix is never
    /// kept: an empty view still owns the buffer it was cut from (hyper's
    /// 8 KiB read buffer, a replayed ClientHello's).
    pub fn new(prefix: impl Into<Bytes>, inner: S) -> Self {
        let prefix = prefix.into();
        Self {
            prefix: if prefix.is_empty() {
                Bytes::new()
            } else {
                prefix
            },
            inner,
        }
    }

    /// The bytes not yet replayed.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The stream the bytes after the prefix come from.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The bytes not yet replayed, and the stream.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            if this.prefix.is_empty() {
                // Used up: release the buffer it was cut from (see `new`).
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prefix_is_replayed_before_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"world").await.expect("write");
        drop(a);
        let mut p = Prefixed::new(b"hello ".to_vec(), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "hello world");
        assert_eq!(
            p.prefix().as_ptr(),
            Bytes::new().as_ptr(),
            "a replayed prefix releases its buffer"
        );
    }

    #[tokio::test]
    async fn plain_http_is_not_a_client_hello() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
        assert!(matches!(
            read(&mut b).await,
            Err(Error::Parse(client_hello::Error::NotTls))
        ));
    }

    #[tokio::test]
    async fn client_closing_mid_hello_is_closed() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01])
            .await
            .expect("write");
        drop(a);
        assert!(matches!(read(&mut b).await, Err(Error::Closed)));
    }
}
