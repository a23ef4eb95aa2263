//! The process's stop signals: SIGTERM and SIGINT (Ctrl-C) start a graceful
//! shutdown; SIGHUP asks for a configuration reload.

use tokio::signal::unix::{signal, SignalKind};

/// Why the process is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM.
    Terminate,
    /// SIGINT.
    Interrupt,
}

/// The stop and reload signal streams, registered once at start-up so no
/// signal sent after that is lost.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers.
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.term.recv() => Event::Stop(Stop::Terminate),
            _ = self.int.recv() => Event::Stop(Stop::Interrupt),
            _ = self.hup.recv() => Event::Reload,
        }
    }
}

/// A signal received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Shut down gracefully.
    Stop(Stop),
    /// Reload the configuration now (SIGHUP).
    Reload,
}
