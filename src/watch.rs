//! Configuration directory watching: turns file-system events (notify, with
//! a 2 s poll of file sizes and modification times as a fallback for
//! file systems that do not deliver events) into debounced reload triggers.
//!
//! Reading and compiling the directory is the runtime's job; this module only
//! says *when*. The debounce rule ([`Debounce`]) and which events matter
//! ([`is_relevant`]) are pure.

use crate::model::load::{is_manifest_path, list_manifests};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Quiet time after the last event before reloading: an editor's save comes
/// as several events (write, rename, chmod) within a few milliseconds. Short,
/// so a certificate change is served within tens of milliseconds; a file
/// caught half-written keeps its last good content until the next event.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// The longest a stream of events can postpone a reload (a tool rewriting
/// files every few milliseconds still gets reloads at this pace).
pub const MAX_DELAY: Duration = Duration::from_millis(200);

/// How often the directory is polled in case events are not delivered
/// (network file systems, some container volume mounts).
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Debouncing of change events: fire once events have been quiet for
/// `quiet`, or `max_delay` after the first event of a burst, whichever is
/// first.
#[derive(Debug, Clone)]
pub struct Debounce {
    quiet: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    /// A debouncer with the given quiet time and maximum delay.
    pub fn new(quiet: Duration, max_delay: Duration) -> Self {
        Self {
            quiet,
            max_delay,
            first: None,
            last: None,
        }
    }

    /// Records an event at `now`.
    pub fn event(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending burst should fire, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.first, self.last) {
            (Some(first), Some(last)) => Some((last + self.quiet).min(first + self.max_delay)),
            _ => None,
        }
    }

    /// Whether the pending burst is due at `now`; if so it is consumed.
    pub fn take_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(d) if d <= now => {
                self.first = None;
                self.last = None;
                true
            }
            _ => false,
        }
    }
}

/// Whether a notify event may change what the directory holds: writes,
/// creations, removals and renames of manifests or directories, not reads
/// (notify reports opens, including our own) nor editor swap files.
pub fn is_relevant(event: &notify::Event) -> bool {
    let kind_matters = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    // No paths means the watcher lost track (queue overflow): rescan.
    kind_matters
        && (event.paths.is_empty()
            || event
                .paths
                .iter()
                .any(|p| is_manifest_path(p) || p.extension().is_none()))
}

/// Sizes and modification times of every manifest: when it differs from the
/// previous poll, something changed.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Takes the fingerprint of `dir` (an unreadable directory yields an empty one).
pub fn fingerprint(dir: &Path) -> Fingerprint {
    list_manifests(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect()
}

/// Why a reload is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// File-system events arrived and settled.
    Events,
    /// The poll saw a different fingerprint.
    Poll,
}

/// Watches one directory and yields reload triggers.
#[derive(Debug)]
pub struct DirWatch {
    dir: PathBuf,
    events: mpsc::UnboundedReceiver<()>,
    /// Kept alive for as long as events are wanted; `None` when the
    /// platform watcher could not start (polling still works).
    _watcher: Option<RecommendedWatcher>,
    debounce: Debounce,
    poll: tokio::time::Interval,
    seen: Fingerprint,
}

impl DirWatch {
    /// Starts watching `dir` recursively. The current content counts as seen:
    /// the caller has just loaded it.
    pub fn new(dir: PathBuf) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(event) if is_relevant(&event) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "file watcher error; rescanning");
                    let _ = tx.send(());
                }
            })
            .and_then(|mut w| w.watch(&dir, RecursiveMode::Recursive).map(|()| w));
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot watch directory; polling only");
                None
            }
        };
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let seen = fingerprint(&dir);
        Self {
            dir,
            events,
            _watcher: watcher,
            debounce: Debounce::new(DEBOUNCE, MAX_DELAY),
            poll,
            seen,
        }
    }

    /// Waits until a reload is due. Cancel-safe: pending events stay pending.
    pub async fn next(&mut self) -> Trigger {
        loop {
            let deadline = self.debounce.deadline();
            tokio::select! {
                Some(()) = self.events.recv() => self.debounce.event(Instant::now()),
                _ = sleep_until(deadline) => {
                    if self.debounce.take_due(Instant::now()) {
                        self.seen = fingerprint(&self.dir);
                        return Trigger::Events;
                    }
                }
                _ = self.poll.tick() => {
                    let now = fingerprint(&self.dir);
                    if now != self.seen {
                        self.seen = now;
                        return Trigger::Poll;
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn burst_fires_once_after_quiet_time() {
        let t0 = Instant::now();
        let mut d = Debounce::new(100 * MS, 1000 * MS);
        assert_eq!(d.deadline(), None);
        d.event(t0);
        d.event(t0 + 30 * MS);
        d.event(t0 + 60 * MS);
        assert_eq!(d.deadline(), Some(t0 + 160 * MS));
        assert!(!d.take_due(t0 + 159 * MS));
        assert!(d.take_due(t0 + 160 * MS));
        assert!(!d.take_due(t0 + 500 * MS), "fired once");
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn steady_events_cannot_postpone_past_max_delay() {
        let t0 = Instant::now();
        let mut d = Debounce::new(100 * MS, 1000 * MS);
        for i in 0..50 {
            d.event(t0 + i * 50 * MS);
        }
        assert_eq!(d.deadline(), Some(t0 + 1000 * MS));
    }

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn reads_and_swap_files_are_not_changes() {
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!is_relevant(&event(open, "/c/gw.yaml")));
        let write = EventKind::Modify(ModifyKind::Any);
        assert!(!is_relevant(&event(write, "/c/.gw.yaml.swp")));
        assert!(!is_relevant(&event(write, "/c/gw.yaml~")));
    }

    #[test]
    fn manifest_and_directory_changes_are_changes() {
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(is_relevant(&event(closed, "/c/gw.yaml")));
        assert!(is_relevant(&event(
            EventKind::Create(CreateKind::Folder),
            "/c/team-a"
        )));
        assert!(is_relevant(&notify::Event::new(EventKind::Any)));
    }

    #[test]
    fn fingerprint_changes_when_a_manifest_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = fingerprint(dir.path());
        std::fs::write(dir.path().join("a.yaml"), "kind: x\n").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        let after = fingerprint(dir.path());
        assert_ne!(before, after);
        assert_eq!(after.len(), 1);
        assert_eq!(fingerprint(dir.path()), after);
    }
}
