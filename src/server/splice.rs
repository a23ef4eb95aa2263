//! Zero-copy relaying between two TCP sockets (Linux): each direction moves
//! its bytes socket → pipe → socket with `splice(2)`, so they are never
//! copied into user space and back. Used for the streams whose both ends
//! are plain sockets (TLS passthrough, TCPRoute without re-encryption);
//! `super::stream` copies the others through a buffer.
//!
//! A direction's pipe is always drained before it is filled again, so a
//! `splice` into the empty pipe that would block means the source socket has
//! nothing to read, and one out of a non-empty pipe that would block means
//! the destination socket is full: each `EAGAIN` is a socket's readiness,
//! which tokio tracks (`TcpStream::async_io`). On end of stream the
//! direction shuts the other socket's write side (as
//! `tokio::io::copy_bidirectional` does) and the relay ends when both
//! directions have.

use super::stream::Activity;
use rustix::pipe::{fcntl_getpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// The most one `splice` moves into a pipe: a default pipe's capacity.
const CHUNK: usize = 64 * 1024;

/// The pipes of the two directions of one relayed connection.
#[derive(Debug)]
pub(super) struct Pipes {
    up: (OwnedFd, OwnedFd),
    down: (OwnedFd, OwnedFd),
}

impl Pipes {
    /// Two non-blocking pipes of a full [`CHUNK`] each. Fails (and the
    /// caller copies instead) when the process or the system is out of file
    /// descriptors, or when the kernel hands out shrunken pipes because this
    /// user's pipes hold more than `fs.pipe-user-pages-soft` (16,384 pages by
    /// default, ~500 relayed connections of a non-root user): a two-page pipe
    /// would cost a pair of system calls per 8 KiB, more than copying.
    pub(super) fn new() -> io::Result<Self> {
        let pipe = || {
            let (out, into) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
            let capacity = fcntl_getpipe_size(&out)?;
            if capacity < CHUNK {
                return Err(io::Error::other(format!(
                    "pipe capacity {capacity} bytes (fs.pipe-user-pages-soft reached)"
                )));
            }
            Ok((out, into))
        };
        Ok(Self {
            up: pipe()?,
            down: pipe()?,
        })
    }
}

/// Relays `client` ⇄ `backend` until both directions have ended, noting
/// each move in `activity`. Returns the bytes moved up (client to backend)
/// and down, like `copy_bidirectional`; the first error ends both.
pub(super) async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    pipes: Pipes,
    activity: &Activity,
) -> io::Result<(u64, u64)> {
    let up = one_way(client, backend, &pipes.up, activity);
    let down = one_way(backend, client, &pipes.down, activity);
    tokio::try_join!(up, down)
}

/// Moves `from`'s bytes to `to` through `pipe` until `from` ends, then
/// shuts `to`'s write side.
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    (pipe_out, pipe_in): &(OwnedFd, OwnedFd),
    activity: &Activity,
) -> io::Result<u64> {
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    let mut total = 0u64;
    loop {
        let filled = from
            .async_io(Interest::READABLE, || {
                Ok(splice(from, None, pipe_in, None, CHUNK, flags)?)
            })
            .await?;
        if filled == 0 {
            socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write)?;
            return Ok(total);
        }
        activity.touch();
        let mut left = filled;
        while left > 0 {
            let moved = to
                .async_io(Interest::WRITABLE, || {
                    Ok(splice(pipe_out, None, to, None, left, flags)?)
                })
                .await?;
            if moved == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= moved;
        }
        activity.touch();
        total += filled as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::testing::{pass, socket_pair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `bytes` to `stream` and ends its write side, while reading
    /// what the other end sends until it ends; returns what was read.
    async fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let (mut r, mut w) = stream.split();
        let send = async {
            w.write_all(bytes).await?;
            w.shutdown().await
        };
        let mut got = Vec::new();
        let (sent, read) = tokio::join!(send, r.read_to_end(&mut got));
        sent.and(read).map(|_| got)
    }

    /// Client ⇄ [relay] ⇄ backend: the relay's two inner sockets and the
    /// outer ends the test drives.
    struct Rig {
        client: TcpStream,
        backend: TcpStream,
        relay: tokio::task::JoinHandle<io::Result<(u64, u64)>>,
        activity: Activity,
    }

    async fn rig() -> Rig {
        let (client, relay_client) = socket_pair().await;
        let (relay_backend, backend) = socket_pair().await;
        let activity = Activity::new();
        let a = activity.clone();
        let relay = tokio::spawn(async move {
            let pipes = Pipes::new()?;
            relay(&relay_client, &relay_backend, pipes, &a).await
        });
        Rig {
            client,
            backend,
            relay,
            activity,
        }
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_unchanged_and_counted() {
        let Rig {
            mut client,
            mut backend,
            relay,
            ..
        } = rig().await;
        // More than several pipes' worth, in a pattern a dropped or
        // reordered chunk would break.
        let up: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
        let up2 = up.clone();
        let client_side = tokio::spawn(async move { exchange(&mut client, &up2).await });
        let got_up = exchange(&mut backend, &down).await.expect("backend side");
        let got_down = client_side.await.expect("join").expect("client side");
        assert!(
            got_up == up,
            "the backend got other bytes than the client sent"
        );
        assert!(
            got_down == down,
            "the client got other bytes than the backend sent"
        );
        let (n_up, n_down) = relay.await.expect("join").expect("relay");
        assert_eq!((n_up, n_down), (up.len() as u64, down.len() as u64));
    }

    #[tokio::test]
    async fn a_half_close_passes_through_and_the_other_way_stays_open() {
        let Rig {
            mut client,
            mut backend,
            relay,
            activity,
        } = rig().await;
        let start = activity.last();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert_eq!(
            pass(&mut client, &mut backend, b"request").await,
            b"request"
        );
        assert!(
            !relay.is_finished(),
            "the relay ended with one way still open"
        );
        assert_eq!(pass(&mut backend, &mut client, b"answer").await, b"answer");
        assert_eq!(relay.await.expect("join").expect("relay"), (7, 6));
        assert!(
            activity.last() >= start + std::time::Duration::from_millis(30),
            "moving bytes did not count as activity"
        );
    }

    #[tokio::test]
    async fn a_reset_ends_the_relay_with_an_error() {
        let Rig {
            client,
            mut backend,
            relay,
            ..
        } = rig().await;
        // SO_LINGER 0: close sends a reset instead of a FIN.
        socket2::SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("linger");
        drop(client);
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), relay)
            .await
            .expect("the relay ended")
            .expect("join");
        // The reset reaches the relay as an error on the client socket or
        // as its end; either way the backend must see its client go.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), backend.read(&mut buf))
            .await
            .expect("backend learns the end")
            .unwrap_or(0);
        assert_eq!(n, 0, "the backend got bytes from nowhere");
        assert!(
            result.is_err(),
            "a reset was taken for a clean end: {result:?}"
        );
    }
}
