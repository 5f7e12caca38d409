//! A circuit breaker in front of Redis: after consecutive failures, calls
//! skip Redis entirely for a cool-down (cached functions run their body with
//! no added wait, rate limits follow `on_error`), then one call probes and
//! the circuit closes when it succeeds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// The state of a cache's circuit breaker, in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CircuitState {
    /// Redis is used (the normal state).
    #[default]
    Closed,
    /// Redis failed repeatedly: calls skip it until the cool-down ends.
    Open,
    /// The cool-down ended: one call probes Redis, the others still skip it.
    HalfOpen,
}

pub(crate) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    /// The cache's clock: a test with a `ManualClock` ends the cool-down
    /// by moving it, without sleeping.
    clock: Arc<dyn Clock>,
    failures: AtomicU32,
    /// When the circuit opened, in the clock's µs plus one; 0 when closed.
    opened_at: AtomicU64,
    probing: AtomicBool,
}

/// Whether an operation may go to Redis.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Permit {
    Go,
    /// The one call that tests Redis after the cool-down.
    Probe,
    Skip,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration, clock: Arc<dyn Clock>) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            clock,
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// The consecutive failures that open the circuit.
    pub(crate) fn threshold(&self) -> u32 {
        self.threshold
    }

    pub(crate) fn state(&self) -> CircuitState {
        match self.opened_at.load(SeqCst) {
            0 => CircuitState::Closed,
            opened if self.now() >= opened - 1 + self.cool_down.as_micros() as u64 => {
                CircuitState::HalfOpen
            }
            _ => CircuitState::Open,
        }
    }

    pub(crate) fn permit(&self) -> Permit {
        match self.state() {
            CircuitState::Closed => Permit::Go,
            CircuitState::Open => Permit::Skip,
            CircuitState::HalfOpen => {
                if self
                    .probing
                    .compare_exchange(false, true, SeqCst, SeqCst)
                    .is_ok()
                {
                    Permit::Probe
                } else {
                    Permit::Skip
                }
            }
        }
    }

    /// Lets another call probe: the probe's operation was dropped before it
    /// ended, so it will never be recorded.
    pub(crate) fn abandon_probe(&self) {
        self.probing.store(false, SeqCst);
    }

    /// Records the outcome of an operation that was let through.
    pub(crate) fn record(&self, permit: &Permit, reached_redis: bool) {
        if reached_redis {
            // Read before writing: on the hit path nothing changes, and
            // tasks on other cores keep sharing the cache line.
            if self.failures.load(SeqCst) != 0 {
                self.failures.store(0, SeqCst);
            }
            if self.opened_at.load(SeqCst) != 0 && self.opened_at.swap(0, SeqCst) != 0 {
                tracing::info!(target: "redcache", state = "closed", "redis answers again; circuit closed");
            }
            if self.probing.load(SeqCst) {
                self.probing.store(false, SeqCst);
            }
            return;
        }
        let failures = self.failures.fetch_add(1, SeqCst) + 1;
        if *permit == Permit::Probe {
            self.opened_at.store(self.now() + 1, SeqCst);
            self.probing.store(false, SeqCst);
            tracing::warn!(target: "redcache", state = "open", "probe failed; circuit stays open");
        } else if failures >= self.threshold
            && self
                .opened_at
                .compare_exchange(0, self.now() + 1, SeqCst, SeqCst)
                .is_ok()
        {
            tracing::warn!(target: "redcache", state = "open", failures, cool_down = ?self.cool_down,
                "redis failed repeatedly; circuit open, calls skip redis");
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_micros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(threshold: u32, cool_down: Duration) -> (Breaker, ManualClock) {
        let clock = ManualClock::new(Duration::from_secs(1_000));
        (
            Breaker::new(threshold, cool_down, Arc::new(clock.clone())),
            clock,
        )
    }

    #[test]
    fn opens_after_the_threshold_then_probes_once_and_closes() {
        let (breaker, clock) = breaker(3, Duration::from_millis(30));
        for _ in 0..2 {
            let permit = breaker.permit();
            assert_eq!(permit, Permit::Go);
            breaker.record(&permit, false);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.record(&Permit::Go, false);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.permit(), Permit::Skip);
        clock.advance(Duration::from_millis(40));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let probe = breaker.permit();
        assert_eq!(probe, Permit::Probe);
        assert_eq!(breaker.permit(), Permit::Skip, "one probe at a time");
        breaker.record(&probe, true);
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.permit(), Permit::Go);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_cool_down() {
        let (breaker, clock) = breaker(1, Duration::from_millis(30));
        breaker.record(&Permit::Go, false);
        clock.advance(Duration::from_millis(40));
        let probe = breaker.permit();
        assert_eq!(probe, Permit::Probe);
        breaker.record(&probe, false);
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let (breaker, clock) = breaker(1, Duration::from_millis(30));
        breaker.record(&Permit::Go, false);
        clock.advance(Duration::from_millis(40));
        assert_eq!(breaker.permit(), Permit::Probe);
        assert_eq!(breaker.permit(), Permit::Skip);
        breaker.abandon_probe(); // the probing call was cancelled
        assert_eq!(breaker.permit(), Permit::Probe);
    }

    #[test]
    fn a_success_resets_the_count() {
        let (breaker, _clock) = breaker(2, Duration::from_secs(60));
        breaker.record(&Permit::Go, false);
        breaker.record(&Permit::Go, true);
        breaker.record(&Permit::Go, false);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
