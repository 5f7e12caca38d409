//! The clock of a cache, behind a trait so tests can drive time.
//!
//! It decides what the cache decides by itself: expiry of entries and tag
//! epochs and rate limits on the embedded backend, the breaker's cool-down,
//! the in-process memory of denials, how long a call waits for another
//! process's load lock (the polls in between sleep on tokio's timer). On Redis, entries expire and limits
//! count on the *server's* clock (TTLs, `TIME` inside the scripts).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time, in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> u64;
}

/// The system's wall clock (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }
}

/// A clock that moves only when told to, for deterministic tests.
///
/// ```
/// use std::time::Duration;
/// use redcache::{Clock, ManualClock};
///
/// let clock = ManualClock::new(Duration::from_secs(1_000));
/// clock.advance(Duration::from_millis(1_500));
/// assert_eq!(clock.now_micros(), 1_001_500_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `since_epoch`.
    pub fn new(since_epoch: Duration) -> Self {
        ManualClock {
            micros: Arc::new(AtomicU64::new(since_epoch.as_micros() as u64)),
        }
    }

    /// Moves the clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        self.micros
            .fetch_add(by.as_micros() as u64, Ordering::SeqCst);
    }

    /// Sets the clock (and its clones) to `since_epoch`.
    pub fn set(&self, since_epoch: Duration) {
        self.micros
            .store(since_epoch.as_micros() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> u64 {
        self.micros.load(Ordering::SeqCst)
    }
}
