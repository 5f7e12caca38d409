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
}

/// Expired states are dropped every this many checks.
const PURGE_EVERY: u64 = 4096;

impl RateStore {
    pub(crate) fn check(
        &self,
        keys: &[String],
        policies: &[Policy],
        cost: u64,
        mode: Mode,
        now: u64,
    ) -> Vec<Verdict> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if self.checks.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            states.retain(|_, (_, expires)| *expires > now);
        }
        let mut verdicts = Vec::with_capacity(keys.len());
        let mut updates = Vec::with_capacity(keys.len());
        for (key, policy) in keys.iter().zip(policies) {
            let mut state = match states.remove(key) {
                Some((state, expires)) if expires > now => Some((state, expires)),
                _ => None,
            };
            let mut current = state
                .as_mut()
                .map(|(s, _)| std::mem::replace(s, State::Gcra { tat: 0 }));
            let evaluation = evaluate(policy, &mut current, now, cost);
            // Put back what was there (trimmed, as the script trims).
            if let (Some(trimmed), Some((_, expires))) = (current, state) {
                states.insert(key.clone(), (trimmed, expires));
            }
            verdicts.push(evaluation.verdict);
            updates.push(evaluation.next);
        }
        if mode == Mode::Consume && verdicts.iter().all(|v| v.allowed) {
            for (key, next) in keys.iter().zip(updates) {
                if let Some(next) = next {
                    states.insert(key.clone(), next);
                }
            }
        }
        verdicts
    }
}
