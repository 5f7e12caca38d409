//! The embedded backend: two moka caches, one for entries and one for tag
//! epochs, each entry expiring at its own deadline, as keys do in Redis.
//! The deadline is kept twice: as an `Instant`, for moka to free the
//! memory, and on the cache's `Clock`, which decides what a read sees (so a
//! test with a `ManualClock` expires entries by moving it, not by sleeping).
//!
//! moka's `sync` caches: no operation waits on I/O, so the async methods
//! here never suspend, and a hit's future stays small (moka's `future`
//! flavour would add hundreds of bytes to every cached call's future).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache as Moka;
use moka::Expiry;

use super::{Read, Write, EPOCH_MARGIN, INVALIDATED_EPOCH_TTL};
use crate::clock::Clock;
use crate::entry::Epoch;
use crate::ratelimit::memory::RateStore;

/// A value and the instant it expires.
#[derive(Clone)]
pub(crate) struct Expiring<V> {
    pub(crate) value: V,
    pub(crate) deadline: Instant,
}

/// Expires every entry at the deadline stored with it.
pub(crate) struct AtDeadline;

impl<K, V> Expiry<K, Expiring<V>> for AtDeadline {
    fn expire_after_create(&self, _: &K, v: &Expiring<V>, now: Instant) -> Option<Duration> {
        Some(v.deadline.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &K,
        v: &Expiring<V>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.deadline.saturating_duration_since(now))
    }
}

pub(crate) struct MemoryBackend {
    values: Moka<String, Expiring<Timed<Arc<[u8]>>>>,
    epochs: Moka<String, Expiring<Timed<Epoch>>>,
    /// Distributed locks (`Cache::lock`): the holder's token, and each
    /// resource's last fencing token. Never evicted, bounded by their TTL.
    mutexes: Moka<String, Expiring<Timed<Arc<str>>>>,
    fences: Moka<String, Expiring<Timed<u64>>>,
    pub(crate) rates: RateStore,
    /// Sessions (`Cache::sessions`).
    pub(crate) sessions: super::sessions::SessionTable,
    /// Streams (`Cache::stream`).
    pub(crate) streams: crate::stream::MemoryStreams,
    clock: Arc<dyn Clock>,
}

/// A value and its deadline on the cache's clock (µs since the epoch).
#[derive(Clone)]
struct Timed<V> {
    value: V,
    until_us: u64,
}

impl MemoryBackend {
    pub(crate) fn new(max_entries: u64, clock: Arc<dyn Clock>) -> Self {
        MemoryBackend {
            clock,
            values: Moka::builder()
                .max_capacity(max_entries)
                .expire_after(AtDeadline)
                .build(),
            // Epochs must not be evicted before their entries: an evicted
            // epoch would read as 0 again. They are bounded by their TTL.
            epochs: Moka::builder().expire_after(AtDeadline).build(),
            mutexes: Moka::builder().expire_after(AtDeadline).build(),
            fences: Moka::builder().expire_after(AtDeadline).build(),
            rates: RateStore::default(),
            sessions: Default::default(),
            streams: Default::default(),
        }
    }

    /// Removes every entry whose key starts with `prefix`: (scanned,
    /// removed).
    pub(crate) fn remove_prefix(&self, prefix: &str) -> (u64, u64) {
        let keys: Vec<Arc<String>> = self
            .values
            .iter()
            .map(|(key, _)| key)
            .filter(|key| key.starts_with(prefix))
            .collect();
        let mut removed = 0;
        for key in &keys {
            if self.values.remove(key.as_str()).is_some() {
                removed += 1;
            }
        }
        (keys.len() as u64, removed)
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub(crate) fn now_micros(&self) -> u64 {
        self.clock.now_micros()
    }

    pub(crate) async fn read(&self, key: &str, tag_keys: &[String]) -> Read {
        let now = self.clock.now_micros();
        let value = self
            .values
            .get(key)
            .filter(|e| e.value.until_us > now)
            .map(|e| e.value.value.to_vec());
        let mut epochs = Vec::with_capacity(tag_keys.len());
        for tag in tag_keys {
            epochs.push(self.epoch(tag, now));
        }
        Read { value, epochs }
    }

    /// A tag's epoch at `now`: 0 once its key has expired, as in Redis.
    fn epoch(&self, tag_key: &str, now: u64) -> Epoch {
        self.epochs
            .get(tag_key)
            .filter(|e| e.value.until_us > now)
            .map_or(0, |e| e.value.value)
    }

    pub(crate) async fn write(&self, w: Write<'_>) -> bool {
        let need = w.ttl + EPOCH_MARGIN;
        let mut unchanged = true;
        for (tag, &read) in w.tag_keys.iter().zip(w.epochs) {
            let now = self.extend_epoch(tag, need, |epoch| epoch);
            unchanged &= now == read;
        }
        if !unchanged {
            return false;
        }
        let now_us = self.clock.now_micros();
        let entry = Expiring {
            value: Timed {
                value: Arc::from(w.bytes),
                until_us: now_us.saturating_add(micros(w.ttl)),
            },
            deadline: Instant::now() + w.ttl,
        };
        // Compared and replaced under the entry's lock, as the store script
        // does in Redis.
        let result = self
            .values
            .entry(w.key.to_string())
            .and_compute_with(|current| {
                let current = current.map(|e| e.into_value());
                let held = current
                    .as_ref()
                    .filter(|e| e.value.until_us > now_us)
                    .map(|e| &*e.value.value);
                if w.replace.allows(held) {
                    Op::Put(entry)
                } else {
                    Op::Nop
                }
            });
        matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        )
    }

    /// As `SET key bytes PX ttl [NX]`.
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) fn set(&self, key: &str, bytes: &[u8], ttl: Duration, only_new: bool) -> bool {
        let now_us = self.clock.now_micros();
        let result = self
            .values
            .entry(key.to_string())
            .and_compute_with(|current| {
                let held = current.is_some_and(|e| e.value().value.until_us > now_us);
                if only_new && held {
                    Op::Nop
                } else {
                    Op::Put(timed(Arc::from(bytes), now_us, ttl))
                }
            });
        matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        )
    }

    /// The current epoch of each tag.
    pub(crate) fn epochs(&self, tag_keys: &[String]) -> Vec<Epoch> {
        let now = self.clock.now_micros();
        tag_keys.iter().map(|tag| self.epoch(tag, now)).collect()
    }

    pub(crate) async fn bump_epoch(&self, tag_key: &str) -> Epoch {
        self.extend_epoch(tag_key, INVALIDATED_EPOCH_TTL, |epoch| epoch + 1)
    }

    pub(crate) async fn size(&self, key: &str) -> u64 {
        self.values
            .get(key)
            .map_or(0, |entry| entry.value.value.len() as u64)
    }

    pub(crate) async fn delete(&self, key: &str) {
        self.values.invalidate(key);
    }

    /// As `scripts/mutex_acquire.lua`: the lock for `token` and the next
    /// fencing token (the larger of the last plus one and the time in µs),
    /// or `None` while another token holds it.
    pub(crate) fn mutex_acquire(
        &self,
        key: &str,
        fence_key: &str,
        token: &str,
        ttl: Duration,
        fence_ttl: Duration,
    ) -> Option<u64> {
        let now_us = self.clock.now_micros();
        let taken = self
            .mutexes
            .entry(key.to_string())
            .and_compute_with(|current| {
                let held = current.is_some_and(|e| e.value().value.until_us > now_us);
                if held {
                    return Op::Nop;
                }
                Op::Put(timed(Arc::from(token), now_us, ttl))
            });
        if !matches!(taken, CompResult::Inserted(_) | CompResult::ReplacedWith(_)) {
            return None;
        }
        Some(self.step_fence(fence_key, fence_ttl, |last, now_us| (last + 1).max(now_us)))
    }

    /// Atomically replaces a resource's last fencing token (absent or
    /// expired: 0) by `step(last, now_us)`, kept for `ttl`; returns it.
    fn step_fence(
        &self,
        fence_key: &str,
        ttl: Duration,
        step: impl FnOnce(u64, u64) -> u64,
    ) -> u64 {
        let now_us = self.clock.now_micros();
        let fence = self
            .fences
            .entry(fence_key.to_string())
            .and_upsert_with(|last| {
                let last = last
                    .map(|e| e.into_value())
                    .filter(|e| e.value.until_us > now_us)
                    .map_or(0, |e| e.value.value);
                timed(step(last, now_us), now_us, ttl)
            });
        fence.into_value().value.value
    }

    /// Runs `step` on the lock at `key` if `token` holds it; true if it did.
    fn mutex_if_held(
        &self,
        key: &str,
        token: &str,
        step: impl FnOnce() -> Op<Expiring<Timed<Arc<str>>>>,
    ) -> bool {
        let now_us = self.clock.now_micros();
        let mut held = false;
        self.mutexes
            .entry(key.to_string())
            .and_compute_with(|current| {
                held = current.is_some_and(|e| {
                    e.value().value.until_us > now_us && &*e.value().value.value == token
                });
                if held {
                    step()
                } else {
                    Op::Nop
                }
            });
        held
    }

    /// As `scripts/raise_fence.lua`.
    pub(crate) fn raise_fence(&self, fence_key: &str, token: u64, ttl: Duration) {
        self.step_fence(fence_key, ttl, |last, _| last.max(token));
    }

    pub(crate) fn mutex_extend(&self, key: &str, token: &str, ttl: Duration) -> bool {
        let now_us = self.clock.now_micros();
        self.mutex_if_held(key, token, || Op::Put(timed(Arc::from(token), now_us, ttl)))
    }

    pub(crate) fn mutex_release(&self, key: &str, token: &str) -> bool {
        self.mutex_if_held(key, token, || Op::Remove)
    }

    /// Atomically applies `step` to a tag's epoch (absent = 0) and makes it
    /// live at least `need` from now; returns the new epoch.
    fn extend_epoch(&self, tag_key: &str, need: Duration, step: fn(Epoch) -> Epoch) -> Epoch {
        let entry = self
            .epochs
            .entry(tag_key.to_string())
            .and_upsert_with(|current| {
                let (now, now_us) = (Instant::now(), self.clock.now_micros());
                let (epoch, deadline, until_us) = match current {
                    // Expired on the clock: absent, as in Redis.
                    Some(e) if e.value().value.until_us > now_us => {
                        let e = e.into_value();
                        (e.value.value, e.deadline, e.value.until_us)
                    }
                    _ => (0, now, now_us),
                };
                Expiring {
                    value: Timed {
                        value: step(epoch),
                        until_us: until_us.max(now_us.saturating_add(micros(need))),
                    },
                    deadline: deadline.max(now + need),
                }
            });
        entry.into_value().value.value
    }
}

/// `value`, expiring `ttl` after `now_us` on the cache's clock (and on
/// moka's, for the memory).
fn timed<V>(value: V, now_us: u64, ttl: Duration) -> Expiring<Timed<V>> {
    Expiring {
        value: Timed {
            value,
            until_us: now_us.saturating_add(micros(ttl)),
        },
        deadline: Instant::now() + ttl,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
