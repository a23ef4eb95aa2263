//! The issuer's one source of wall-clock time ([`Clock`]). The runtime
//! passes [`SystemClock`] in; everything in the issuer that decides on time
//! (planning, certificate validity, records, `Retry-After` dates) reads it
//! from the clock it was given, so tests can run renewal on tokio's paused
//! time with [`TokioClock`]. Waiting itself uses tokio's timers, which that
//! clock follows.

use std::time::SystemTime;

/// Tells the current wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Wall-clock time that moves with tokio's clock: the time it was made plus
/// the tokio time elapsed since. Under `tokio::time::pause()` it stands
/// still and jumps with `advance` (and auto-advance), together with the
/// timers the issuer sleeps on, so hours of certificate lifetime pass in
/// milliseconds. Must be made inside a tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `origin` now.
    pub fn starting_at(origin: SystemTime) -> Self {
        Self {
            origin,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.origin + self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_only_with_tokio_time() {
        let origin = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = TokioClock::starting_at(origin);
        assert_eq!(clock.now(), origin);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), origin + Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(clock.now(), origin + Duration::from_secs(3660));
    }
}
