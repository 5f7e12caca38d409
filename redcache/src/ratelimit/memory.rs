//! Rate-limit state of the embedded backend: one map under one lock, so a
//! check of several policies is atomic, as the script is on Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::algorithm::{evaluate, State};
use super::{Mode, Policy, Verdict};

/// States with their expiry (absolute µs of the limiter's clock).
#[derive(Default)]
pub(crate) struct RateStore {
    states: Mutex<HashMap<String, (State, u64)>>,
    checks: AtomicU64,
    /// Never drop a state for its expiry (see [`RateStore::keeping_expired`]).
    keep_expired: bool,
}

/// Expired states are dropped every this many checks.
const PURGE_EVERY: u64 = 4096;

impl RateStore {
    /// A store that never drops a state for its expiry: for comparing the
    /// algorithms with the script on traces whose clock steps back, with
    /// the Redis keys kept as well. An expired state decides as no state
    /// while the clock only moves forward, but once dropped it is not there
    /// if the clock steps back before its expiry, and when a backend drops
    /// it is its own affair (Redis also expires keys in the background).
    pub(crate) fn keeping_expired() -> Self {
        RateStore {
            keep_expired: true,
            ..RateStore::default()
        }
    }

    pub(crate) fn check(
        &self,
        keys: &[String],
        policies: &[Policy],
        cost: u64,
        mode: Mode,
        now: u64,
    ) -> Vec<Verdict> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let purge = self.checks.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1;
        if purge && !self.keep_expired {
            states.retain(|_, (_, expires)| *expires > now);
        }
        let mut verdicts = Vec::with_capacity(keys.len());
        let mut updates = Vec::with_capacity(keys.len());
        for (key, policy) in keys.iter().zip(policies) {
            let expired = states.get(key).is_some_and(|(_, expires)| *expires <= now);
            if expired && !self.keep_expired {
                states.remove(key);
            }
            // Evaluated in place: the log is trimmed, as the script trims.
            let state = states.get_mut(key).map(|(state, _)| state);
            let evaluation = evaluate(policy, state, now, cost);
            verdicts.push(evaluation.verdict);
            updates.push(evaluation.update);
        }
        if mode == Mode::Consume && verdicts.iter().all(|v| v.allowed) {
            for (key, update) in keys.iter().zip(updates) {
                let Some((update, expires)) = update else {
                    continue;
                };
                let mut state = states.remove(key).map(|(state, _)| state);
                update.apply(&mut state);
                if let Some(state) = state {
                    states.insert(key.clone(), (state, expires));
                }
            }
        }
        verdicts
    }
}
