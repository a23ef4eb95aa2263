//! `UDP` listeners (UDPRoute): one task per socket receives every client's
//! datagrams; the first datagram from a client address opens a session (a
//! backend chosen by weight, a connected socket of its own toward it, and a
//! task relaying the backend's replies to the client from the listening
//! socket); later datagrams from that address go to the same backend.
//!
//! Memory stays bounded when sources are spoofed: sessions expire after
//! [`IDLE_TIMEOUT`] without a datagram in either direction, a socket holds
//! at most [`MAX_SESSIONS`], and each session also takes a permit of the
//! gateway-wide connection limit; a datagram that would exceed either is
//! dropped. Sessions keep their backend across reloads until they expire.
//!
//! The session bookkeeping ([`SessionTable`]) is pure: time is an argument.

use super::accept::ConnContext;
use super::stream::Activity;
use crate::dataplane::{Dataplane, StreamTable};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;

/// A session with no datagram in either direction for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The most sessions one UDP socket keeps.
pub const MAX_SESSIONS: usize = 4096;

/// How often idle sessions are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Room for the largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Binds a UDP socket.
pub fn open(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// What a session table needs to know of a session.
pub trait LastActive {
    /// When a datagram last went through the session, either way.
    fn last_active(&self) -> Instant;
}

/// Sessions by client address, capped in number, expiring when idle.
#[derive(Debug)]
pub struct SessionTable<S> {
    sessions: HashMap<SocketAddr, S>,
    capacity: usize,
    idle: Duration,
}

impl<S: LastActive> SessionTable<S> {
    /// An empty table holding at most `capacity` sessions that expire after
    /// `idle`.
    pub fn new(capacity: usize, idle: Duration) -> Self {
        Self {
            sessions: HashMap::new(),
            capacity,
            idle,
        }
    }

    /// The session of `client`, if one is open.
    pub fn get(&self, client: &SocketAddr) -> Option<&S> {
        self.sessions.get(client)
    }

    /// Whether a new session may open at `now`; when the table is full,
    /// idle sessions are expired first to make room.
    pub fn has_room(&mut self, now: Instant) -> bool {
        if self.sessions.len() >= self.capacity {
            self.expire(now);
        }
        self.sessions.len() < self.capacity
    }

    /// Adds the session of `client` (the caller checked [`Self::has_room`]).
    pub fn insert(&mut self, client: SocketAddr, session: S) {
        self.sessions.insert(client, session);
    }

    /// Drops every session idle at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.sessions.len();
        let idle = self.idle;
        self.sessions
            .retain(|_, s| now.saturating_duration_since(s.last_active()) < idle);
        before - self.sessions.len()
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// One client's session: the connected socket toward its backend and the
/// task relaying replies, aborted when the session is dropped.
#[derive(Debug)]
struct Session {
    backend: Arc<UdpSocket>,
    activity: Activity,
    relay: tokio::task::AbortHandle,
    _permit: OwnedSemaphorePermit,
}

impl LastActive for Session {
    fn last_active(&self) -> Instant {
        self.activity.last()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Receives on `socket` (bound to `bind`) until `stop` changes or its sender
/// is dropped; the sessions end with the loop.
pub async fn run(
    ctx: Arc<ConnContext>,
    bind: SocketAddr,
    socket: UdpSocket,
    mut stop: watch::Receiver<()>,
) {
    let socket = Arc::new(socket);
    let mut table: SessionTable<Session> = SessionTable::new(MAX_SESSIONS, IDLE_TIMEOUT);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = sweep.tick() => {
                let expired = table.expire(Instant::now());
                if expired > 0 {
                    tracing::debug!(%bind, expired, open = table.len(), "UDP sessions expired");
                }
                if dropped > 0 {
                    tracing::warn!(%bind, dropped, open = table.len(), "UDP datagrams dropped: session limit reached");
                    dropped = 0;
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (n, client) = match received {
                    Ok(r) => r,
                    Err(error) => {
                        tracing::debug!(%bind, %error, "UDP receive failed");
                        continue;
                    }
                };
                let datagram = &buf[..n];
                if let Some(session) = table.get(&client) {
                    session.activity.touch();
                    send(&session.backend, datagram);
                    continue;
                }
                if !table.has_room(Instant::now()) {
                    dropped += 1;
                    continue;
                }
                let Ok(permit) = ctx.limit.clone().try_acquire_owned() else {
                    dropped += 1;
                    continue;
                };
                let dataplane = ctx.dataplane.load_full();
                let Some(table_of_bind) = streams(&dataplane, bind) else {
                    tracing::debug!(%bind, %client, "UDP socket no longer configured; datagram dropped");
                    continue;
                };
                if let Some(session) = open_session(&socket, table_of_bind, client, permit).await {
                    // A new socket has no write readiness yet: `try_send`
                    // would fail, so the first datagram waits for it.
                    if let Err(error) = session.backend.send(datagram).await {
                        tracing::debug!(%client, %error, "first UDP datagram to the backend dropped");
                    }
                    table.insert(client, session);
                }
            }
        }
    }
    tracing::info!(%bind, sessions = table.len(), "stopped receiving");
}

/// The UDPRoute table of the listener on the UDP socket `bind`.
fn streams(dataplane: &Dataplane, bind: SocketAddr) -> Option<&StreamTable> {
    let bind = dataplane.datagram_bind(bind)?;
    let listener = bind.listeners.first()?;
    listener.streams.as_ref().map(|s| &s.table)
}

/// Sends without waiting: a datagram that does not fit the socket buffer is
/// dropped, as the network could have done.
fn send(backend: &UdpSocket, datagram: &[u8]) {
    if let Err(error) = backend.try_send(datagram) {
        tracing::debug!(%error, "UDP datagram to the backend dropped");
    }
}

/// Chooses a backend for `client` and opens the session toward it; none
/// when no route or endpoint fits or the backend socket cannot be made.
async fn open_session(
    socket: &Arc<UdpSocket>,
    table: &StreamTable,
    client: SocketAddr,
    permit: OwnedSemaphorePermit,
) -> Option<Session> {
    let choice = match super::stream::choose(
        table,
        None,
        rand::random::<u32>(),
        rand::random::<u32>() as usize,
    ) {
        Ok(c) => c,
        Err(refusal) => {
            tracing::debug!(%client, %refusal, "UDP datagram refused");
            return None;
        }
    };
    let local: SocketAddr = if choice.addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let backend = match UdpSocket::bind(local).await {
        Ok(b) => b,
        Err(error) => {
            tracing::warn!(%client, %error, "cannot open a UDP socket toward the backend");
            return None;
        }
    };
    if let Err(error) = backend.connect(choice.addr).await {
        tracing::warn!(route = %choice.route, upstream = %choice.upstream.name, addr = %choice.addr, %error, "UDP backend unreachable");
        return None;
    }
    tracing::debug!(%client, route = %choice.route, upstream = %choice.upstream.name, addr = %choice.addr, "UDP session opened");
    let backend = Arc::new(backend);
    let activity = Activity::new();
    let relay = tokio::spawn(relay(
        backend.clone(),
        socket.clone(),
        client,
        activity.clone(),
    ));
    Some(Session {
        backend,
        activity,
        relay: relay.abort_handle(),
        _permit: permit,
    })
}

/// Relays the backend's datagrams to `client` until aborted. The buffer is
/// taken per datagram, so idle sessions hold none.
async fn relay(
    backend: Arc<UdpSocket>,
    listening: Arc<UdpSocket>,
    client: SocketAddr,
    activity: Activity,
) {
    loop {
        if let Err(error) = backend.readable().await {
            tracing::debug!(%client, %error, "UDP backend socket failed");
            return;
        }
        let mut buf = vec![0u8; MAX_DATAGRAM];
        match backend.try_recv(&mut buf) {
            Ok(n) => {
                activity.touch();
                if let Err(error) = listening.send_to(&buf[..n], client).await {
                    tracing::debug!(%client, %error, "UDP reply to the client failed");
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            // An ICMP error (port unreachable) from the backend: the
            // session stays until it idles out, as the client may retry.
            Err(error) => tracing::debug!(%client, %error, "UDP backend receive failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Instant);

    impl LastActive for Fake {
        fn last_active(&self) -> Instant {
            self.0
        }
    }

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn sessions_expire_after_the_idle_timeout_not_before() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(10, Duration::from_secs(60));
        t.insert(client(1), Fake(t0));
        t.insert(client(2), Fake(t0 + Duration::from_secs(30)));
        assert_eq!(t.expire(t0 + Duration::from_secs(59)), 0);
        assert_eq!(t.expire(t0 + Duration::from_secs(60)), 1);
        assert!(t.get(&client(1)).is_none());
        assert!(t.get(&client(2)).is_some());
        assert_eq!(t.expire(t0 + Duration::from_secs(90)), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_admits_only_after_idle_sessions_expire() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(2, Duration::from_secs(60));
        t.insert(client(1), Fake(t0));
        t.insert(client(2), Fake(t0 + Duration::from_secs(10)));
        assert!(!t.has_room(t0 + Duration::from_secs(20)));
        assert_eq!(t.len(), 2);
        assert!(t.has_room(t0 + Duration::from_secs(65)));
        assert_eq!(t.len(), 1, "only the idle session made room");
    }

    #[test]
    fn spoofed_sources_never_grow_the_table_past_its_capacity() {
        let now = Instant::now();
        let mut t = SessionTable::new(100, Duration::from_secs(60));
        for port in 0..10_000u16 {
            if t.has_room(now) {
                t.insert(client(port), Fake(now));
            }
        }
        assert_eq!(t.len(), 100);
    }
}
