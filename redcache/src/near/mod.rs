//! The near cache (L1): decoded values in this process, in front of the
//! backend (L2), kept coherent by the backend itself.
//!
//! - `watch.rs`: how an L1 entry learns that its key or a tag changed;
//! - `tracking.rs`: the Redis side: `CLIENT TRACKING` in BCAST mode on a
//!   connection of its own per node (or a pub/sub channel where the server
//!   refuses tracking), which fires the watches.
//!
//! An L1 entry is served only while the near cache is *live*: its
//! invalidations are flowing. Whenever they may have stopped (the tracking
//! connection dropped or stopped answering, a failover, a topology change,
//! a FLUSHDB) every entry is dropped and L1 is bypassed until they flow
//! again. On the embedded backend every change happens in this process, so
//! L1 is always live there.

mod tracking;
mod watch;

use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache as Moka;

pub(crate) use self::tracking::{spawn as spawn_tracking, Nodes};
use self::watch::{Watch, Watches};
use crate::backend::memory::{AtDeadline, Expiring};
use crate::clock::Clock;
use crate::entry::{Epoch, Times};
use crate::stats::{Counters, Event};

/// The near cache's settings, for [`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache).
///
/// ```
/// use std::time::Duration;
/// use redcache::NearCache;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redcache::Error> {
/// let near = NearCache::new()
///     .max_entries(100_000)
///     .max_bytes(64 * 1024 * 1024)
///     .max_lifetime(Duration::from_secs(60));
/// let cache = redcache::Cache::builder()
///     .redis("redis://127.0.0.1:6379")
///     .near_cache(near)
///     .build()
///     .await?;
/// # drop(cache); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NearCache {
    pub(crate) max_entries: u64,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) max_lifetime: Duration,
    pub(crate) fallback_lifetime: Duration,
    pub(crate) check_interval: Duration,
}

impl Default for NearCache {
    fn default() -> Self {
        NearCache {
            max_entries: 10_000,
            max_bytes: None,
            max_lifetime: Duration::from_secs(60),
            fallback_lifetime: Duration::from_secs(5),
            check_interval: Duration::from_secs(1),
        }
    }
}

/// The environment variables [`NearCache::from_env`] reads.
pub const NEAR_CACHE_ENV_VARS: [&str; 3] = [
    "REDCACHE_NEAR_CACHE",
    "REDCACHE_NEAR_CACHE_MAX_BYTES",
    "REDCACHE_NEAR_CACHE_MAX_LIFETIME",
];

impl NearCache {
    /// A near cache of at most 10 000 entries, each kept at most 60 s
    /// (and never past its own expiry).
    pub fn new() -> Self {
        Self::default()
    }

    /// The most entries L1 keeps (default 10 000); the least recently and
    /// frequently used go first.
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// The most bytes L1 keeps, counted as the size of the entries as
    /// stored in Redis, before compression (a decoded value is about as
    /// large); unbounded by default. Both bounds hold when both are set.
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }

    /// The longest an entry stays in L1 (default 60 s), a safety net under
    /// the invalidations: whatever they missed is gone after this.
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Where the server refuses `CLIENT TRACKING` (managed offerings that
    /// rename or block `CLIENT`), L1 falls back to a pub/sub channel that
    /// only redcache's own writes publish to, and keeps entries this long
    /// at most (default 5 s), since changes made by anything else are not
    /// announced. `Duration::ZERO` turns the fallback off: L1 is then
    /// bypassed on such servers.
    pub fn fallback_lifetime(mut self, max: Duration) -> Self {
        self.fallback_lifetime = max;
        self
    }

    /// How often the connection that carries the invalidations is checked
    /// (default 1 s). A server that stops answering it (a network
    /// partition) is found within about two intervals; L1 is then dropped.
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// The near cache the environment asks for, if any:
    /// `REDCACHE_NEAR_CACHE` is `on` or a number of entries (`off`, `0` or
    /// unset: none), `REDCACHE_NEAR_CACHE_MAX_BYTES` a number of bytes, and
    /// `REDCACHE_NEAR_CACHE_MAX_LIFETIME` whole seconds.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) for a value that is not one
    /// of these.
    pub fn from_env() -> crate::Result<Option<NearCache>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::from_vars(
            var(NEAR_CACHE_ENV_VARS[0]),
            var(NEAR_CACHE_ENV_VARS[1]),
            var(NEAR_CACHE_ENV_VARS[2]),
        )
    }

    fn from_vars(
        on: Option<String>,
        bytes: Option<String>,
        lifetime: Option<String>,
    ) -> crate::Result<Option<NearCache>> {
        let number = |value: &str, what: &'static str| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| crate::Error::Config(what))
        };
        let mut near = match on.as_deref().map(str::trim) {
            None | Some("off" | "0" | "false") => return Ok(None),
            Some("on" | "true") => NearCache::new(),
            Some(entries) => NearCache::new().max_entries(number(
                entries,
                "REDCACHE_NEAR_CACHE is `on`, `off` or a number of entries",
            )?),
        };
        if let Some(bytes) = bytes {
            near = near.max_bytes(number(
                &bytes,
                "REDCACHE_NEAR_CACHE_MAX_BYTES is a number of bytes",
            )?);
        }
        if let Some(secs) = lifetime {
            near = near.max_lifetime(Duration::from_secs(number(
                &secs,
                "REDCACHE_NEAR_CACHE_MAX_LIFETIME is a number of seconds",
            )?));
        }
        Ok(Some(near))
    }
}

/// Where the near cache stands, in [`Stats::near`](crate::Stats::near).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NearStatus {
    /// No near cache configured.
    #[default]
    Off,
    /// On the embedded backend: every change is made in this process.
    InProcess,
    /// Kept coherent by Redis's `CLIENT TRACKING` (BCAST): any change of a
    /// key, by anyone, drops it.
    Tracking,
    /// The server refused `CLIENT TRACKING`: kept coherent by a pub/sub
    /// channel that redcache's own writes publish to, with a short lifetime.
    PubSub,
    /// The invalidations are not flowing (connecting, or reconnecting after
    /// a disconnect): L1 is empty and bypassed.
    Bypassed,
    /// The server supports neither tracking nor (with the fallback off)
    /// the pub/sub channel, or speaks no RESP3: L1 is bypassed.
    Unsupported,
}

impl NearStatus {
    fn from_u8(value: u8) -> Self {
        [
            NearStatus::Off,
            NearStatus::InProcess,
            NearStatus::Tracking,
            NearStatus::PubSub,
            NearStatus::Bypassed,
            NearStatus::Unsupported,
        ]
        .get(usize::from(value))
        .copied()
        .unwrap_or(NearStatus::Bypassed)
    }

    /// Whether L1 may be read and filled.
    fn is_live(self) -> bool {
        matches!(
            self,
            NearStatus::InProcess | NearStatus::Tracking | NearStatus::PubSub
        )
    }
}

/// A value in L1, with what decides whether it may still be served.
struct Held {
    value: Box<dyn Any + Send + Sync>,
    /// The template that stored it, and its tags: a call of another
    /// template or tag set goes to L2, as its entry decoding would decide.
    name: &'static str,
    tags: Box<[String]>,
    /// The key's watch, then each tag's.
    watches: Box<[Arc<Watch>]>,
    /// The flush generation it was read in.
    generation: u64,
    times: Times,
    /// What its read saw, for a refresh started from an L1 hit.
    epochs: Box<[Epoch]>,
    head: Box<[u8]>,
    weight: u32,
}

/// An L1 hit: the value, and the entry it came from.
pub(crate) struct NearHit<T> {
    pub(crate) value: T,
    held: Arc<Held>,
}

impl<T> NearHit<T> {
    pub(crate) fn times(&self) -> Times {
        self.held.times
    }

    /// The tag epochs and the head its read saw, for a refresh (copied
    /// only then: a plain hit allocates nothing but its value).
    pub(crate) fn seen(&self) -> (Vec<Epoch>, Vec<u8>) {
        (self.held.epochs.to_vec(), self.held.head.to_vec())
    }
}

/// Taken before a read of L2, given back to fill L1 with what it read.
pub(crate) struct Ticket {
    generation: u64,
    watches: Vec<Arc<Watch>>,
}

/// What a read of L2 found, to fill L1 with.
pub(crate) struct Fill<'a, T> {
    pub(crate) key: &'a str,
    pub(crate) name: &'static str,
    pub(crate) tags: &'a [String],
    pub(crate) value: &'a T,
    pub(crate) times: Times,
    pub(crate) epochs: &'a [Epoch],
    pub(crate) head: &'a [u8],
    /// The entry's size as stored.
    pub(crate) size: usize,
}

/// The near cache of one [`Cache`](crate::Cache).
pub(crate) struct Near {
    /// Keyed by the key as the call renders it (no namespace prefix, so a
    /// hit allocates nothing).
    l1: Moka<String, Expiring<Arc<Held>>>,
    watches: Watches,
    /// Bumped by every flush: an entry read before it is dead.
    generation: AtomicU64,
    status: AtomicU8,
    /// The longest an entry stays, in ms (shortened on the fallback).
    lifetime_ms: AtomicU64,
    value_prefix: String,
    tag_prefix: String,
    /// Bytes per unit of weight, when `max_bytes` is set.
    bytes_per_unit: Option<u64>,
    settings: NearCache,
    counters: Arc<Counters>,
    /// The cache's clock when it is not the system's (a test's
    /// `ManualClock`): expiry is then checked on it at each hit. On the
    /// system clock the L1 deadline already holds the entry's expiry.
    clock: Option<Arc<dyn Clock>>,
    /// Wakes the tracking task (a disconnect was pushed).
    pub(crate) wake: tokio::sync::Notify,
    /// Where the pub/sub fallback publishes this process's changes.
    publisher: std::sync::Mutex<Option<tracking::Publisher>>,
}

impl Near {
    pub(crate) fn new(
        settings: NearCache,
        namespace: &str,
        counters: Arc<Counters>,
        status: NearStatus,
        clock: Option<Arc<dyn Clock>>,
    ) -> Self {
        let max_entries = settings.max_entries.max(1);
        // One unit per entry, and one per `bytes_per_unit` bytes: a sum of
        // weights within `max_entries` keeps both bounds.
        let bytes_per_unit = settings.max_bytes.map(|bytes| (bytes / max_entries).max(1));
        let l1 = Moka::builder()
            .max_capacity(max_entries)
            .weigher(|_, held: &Expiring<Arc<Held>>| held.value.weight)
            .expire_after(AtDeadline)
            .build();
        Near {
            l1,
            watches: Watches::default(),
            generation: AtomicU64::new(0),
            status: AtomicU8::new(status as u8),
            lifetime_ms: AtomicU64::new(millis(settings.max_lifetime)),
            value_prefix: format!("{namespace}:v:"),
            tag_prefix: format!("{namespace}:tag:"),
            bytes_per_unit,
            settings,
            counters,
            clock,
            wake: tokio::sync::Notify::new(),
            publisher: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn status(&self) -> NearStatus {
        NearStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    fn is_live(&self) -> bool {
        self.status().is_live()
    }

    /// The value of `key` in L1, if it is there, still valid, fresh,
    /// stored by the template `name` with `tags`, and a `T`.
    pub(crate) fn get<T: Clone + 'static>(
        &self,
        key: &str,
        name: &'static str,
        tags: &[String],
    ) -> Option<NearHit<T>> {
        if !self.is_live() {
            return None;
        }
        let held = self.l1.get(key)?.value;
        let generation = self.generation.load(Ordering::Acquire);
        if held.generation != generation || held.watches.iter().any(|w| w.fired()) {
            self.l1.invalidate(key);
            return None;
        }
        // Past its expiry L2 decides (stale serving, fail-safe).
        let expired = self
            .clock
            .as_ref()
            .is_some_and(|clock| held.times.expires_ms <= clock.now_micros() / 1_000);
        if expired || held.name != name || *held.tags != *tags {
            return None;
        }
        let value = held.value.downcast_ref::<T>()?.clone();
        Some(NearHit { value, held })
    }

    /// Taken before a read of L2 whose value may fill L1; `None` while L1
    /// is bypassed. `key` and `tag_keys` are the backend's keys.
    pub(crate) fn ticket(&self, key: &str, tag_keys: &[String]) -> Option<Ticket> {
        if !self.is_live() {
            return None;
        }
        let generation = self.generation.load(Ordering::Acquire);
        let watches = std::iter::once(key)
            .chain(tag_keys.iter().map(String::as_str))
            .map(|k| self.watches.watch(k))
            .collect();
        Some(Ticket {
            generation,
            watches,
        })
    }

    /// Fills L1 with what a read of L2 found, unless anything it depends
    /// on changed since `ticket` was taken (the entry would be born dead).
    pub(crate) fn fill<T: Clone + Send + Sync + 'static>(
        &self,
        ticket: Ticket,
        fill: Fill<'_, T>,
        now_ms: u64,
    ) {
        let generation = self.generation.load(Ordering::Acquire);
        let changed = ticket.generation != generation || ticket.watches.iter().any(|w| w.fired());
        if changed || !self.is_live() {
            return;
        }
        let lifetime = Duration::from_millis(
            fill.times
                .expires_ms
                .saturating_sub(now_ms)
                .min(self.lifetime_ms.load(Ordering::Relaxed)),
        );
        let weight = match self.bytes_per_unit {
            Some(unit) => {
                u32::try_from((fill.size as u64).div_ceil(unit).max(1)).unwrap_or(u32::MAX)
            }
            None => 1,
        };
        let held = Held {
            value: Box::new(fill.value.clone()),
            name: fill.name,
            tags: fill.tags.into(),
            watches: ticket.watches.into_boxed_slice(),
            generation,
            times: fill.times,
            epochs: fill.epochs.into(),
            head: fill.head.into(),
            weight,
        };
        self.l1.insert(
            fill.key.to_string(),
            Expiring {
                value: Arc::new(held),
                deadline: Instant::now() + lifetime,
            },
        );
    }

    /// This process changed `key` (a backend key: an entry's or a tag's
    /// epoch): what depends on it is dropped now, before the change is
    /// reported done, and on the pub/sub fallback other processes are told.
    pub(crate) fn changed(&self, key: &str) {
        self.drop_key(key);
        if self.status() == NearStatus::PubSub {
            let publisher = self
                .publisher
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(publisher) = publisher {
                publisher.publish(key);
            }
        }
    }

    /// Another process (or anyone) changed `key`: an invalidation arrived.
    pub(crate) fn invalidated(&self, key: &str) {
        self.counters.count(Event::NearInvalidation);
        self.drop_key(key);
    }

    fn drop_key(&self, key: &str) {
        self.watches.fire(key);
        if let Some(l1_key) = key.strip_prefix(&self.value_prefix) {
            self.l1.invalidate(l1_key);
        }
    }

    /// Drops every entry: any of them may be stale now.
    pub(crate) fn flush(&self, why: &str) {
        self.clear();
        self.counters.count(Event::NearFlush);
        tracing::debug!(target: "redcache", why, "near cache flushed");
    }

    /// Drops every entry, and every fill under way.
    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.watches.fire_all();
        self.l1.invalidate_all();
    }

    /// The invalidations stopped (or may have): flush, and bypass L1 until
    /// they flow again.
    pub(crate) fn go_down(&self, why: &str) {
        let was = NearStatus::from_u8(
            self.status
                .swap(NearStatus::Bypassed as u8, Ordering::AcqRel),
        );
        if was.is_live() {
            tracing::warn!(target: "redcache", why, "near cache bypassed until its invalidations flow again");
            self.flush(why);
        } else {
            // Bypassed already (a reconnect that failed again).
            self.clear();
        }
    }

    /// The invalidations flow (again), by `status`: L1 may be filled.
    pub(crate) fn go_live(&self, status: NearStatus) {
        let lifetime = match status {
            NearStatus::PubSub => self
                .settings
                .max_lifetime
                .min(self.settings.fallback_lifetime),
            _ => self.settings.max_lifetime,
        };
        self.lifetime_ms.store(millis(lifetime), Ordering::Relaxed);
        // Whatever was read before is from before the invalidations flowed
        // (and was never served: L1 was bypassed).
        self.clear();
        self.status.store(status as u8, Ordering::Release);
    }

    /// L1 cannot be kept coherent on this server.
    pub(crate) fn unsupported(&self, why: &str) {
        self.flush(why);
        self.status
            .store(NearStatus::Unsupported as u8, Ordering::Release);
    }

    pub(crate) fn set_publisher(&self, publisher: Option<tracking::Publisher>) {
        *self
            .publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = publisher;
    }

    pub(crate) fn settings(&self) -> &NearCache {
        &self.settings
    }

    pub(crate) fn prefixes(&self) -> [&str; 2] {
        [&self.value_prefix, &self.tag_prefix]
    }

    #[cfg(test)]
    fn entry_count(&self) -> u64 {
        self.l1.run_pending_tasks();
        self.l1.entry_count()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    const NOW: u64 = 1_000_000;

    fn near() -> Near {
        let counters = Arc::new(Counters::new("t"));
        Near::new(
            NearCache::new(),
            "t",
            counters,
            NearStatus::InProcess,
            Some(Arc::new(clock())),
        )
    }

    /// A clock at `NOW` (ms): L1 checks expiry on it.
    fn clock() -> ManualClock {
        ManualClock::new(Duration::from_millis(NOW))
    }

    fn times() -> Times {
        Times {
            at_ms: NOW,
            expires_ms: NOW + 60_000,
            load_ms: 1,
        }
    }

    fn fill(near: &Near, key: &str, tags: &[String], value: u32) {
        let tag_keys: Vec<String> = tags.iter().map(|t| format!("t:tag:{t}")).collect();
        let ticket = near.ticket(&format!("t:v:{key}"), &tag_keys).unwrap();
        near.fill(ticket, filling(key, tags, &value), NOW);
    }

    fn filling<'a>(key: &'a str, tags: &'a [String], value: &'a u32) -> Fill<'a, u32> {
        Fill {
            key,
            name: "k:<id>",
            tags,
            value,
            times: times(),
            epochs: &[],
            head: b"head",
            size: 10,
        }
    }

    fn get(near: &Near, key: &str, tags: &[String]) -> Option<u32> {
        near.get::<u32>(key, "k:<id>", tags).map(|hit| hit.value)
    }

    #[test]
    fn a_fill_is_served_to_the_same_call_only() {
        let clock = clock();
        let counters = Arc::new(Counters::new("t"));
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let near = Near::new(
            NearCache::new(),
            "t",
            counters,
            NearStatus::InProcess,
            Some(shared),
        );
        let tags = vec!["a".to_string()];
        fill(&near, "k:1", &tags, 7);
        assert_eq!(get(&near, "k:1", &tags), Some(7));
        assert_eq!(get(&near, "k:1", &[]), None, "other tags");
        assert!(
            near.get::<u32>("k:1", "k2:<id>", &tags).is_none(),
            "other template"
        );
        assert!(
            near.get::<String>("k:1", "k:<id>", &tags).is_none(),
            "other type"
        );
        assert_eq!(get(&near, "k:2", &tags), None);
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            get(&near, "k:1", &tags),
            None,
            "expired on the cache's clock"
        );
    }

    #[test]
    fn a_change_of_the_key_or_a_tag_drops_the_entry() {
        let near = near();
        let tags = vec!["a".to_string(), "b".to_string()];
        fill(&near, "k:1", &tags, 1);
        near.invalidated("t:tag:b");
        assert_eq!(get(&near, "k:1", &tags), None);
        fill(&near, "k:1", &tags, 2);
        assert_eq!(get(&near, "k:1", &tags), Some(2));
        near.changed("t:v:k:1");
        assert_eq!(get(&near, "k:1", &tags), None);
        assert_eq!(near.entry_count(), 0);
    }

    #[test]
    fn a_change_during_the_read_keeps_its_value_out() {
        let near = near();
        let ticket = near.ticket("t:v:k:1", &["t:tag:a".to_string()]).unwrap();
        near.invalidated("t:tag:a");
        let tags = vec!["a".to_string()];
        near.fill(ticket, filling("k:1", &tags, &1), NOW);
        assert_eq!(get(&near, "k:1", &tags), None);

        let ticket = near.ticket("t:v:k:1", &[]).unwrap();
        near.flush("test");
        near.fill(ticket, filling("k:1", &[], &1), NOW);
        assert_eq!(get(&near, "k:1", &[]), None);
    }

    #[test]
    fn nothing_is_served_or_filled_while_bypassed() {
        let near = near();
        fill(&near, "k:1", &[], 1);
        near.go_down("test");
        assert_eq!(get(&near, "k:1", &[]), None);
        assert!(near.ticket("t:v:k:1", &[]).is_none());
        // A ticket taken before the outage fills nothing after it.
        near.go_live(NearStatus::Tracking);
        let ticket = near.ticket("t:v:k:1", &[]).unwrap();
        near.go_down("test");
        near.go_live(NearStatus::Tracking);
        near.fill(ticket, filling("k:1", &[], &1), NOW);
        assert_eq!(get(&near, "k:1", &[]), None);
    }

    #[test]
    fn max_bytes_bounds_the_total_size() {
        let counters = Arc::new(Counters::new("t"));
        let settings = NearCache::new().max_entries(1_000).max_bytes(10_000);
        let near = Near::new(settings, "t", counters, NearStatus::InProcess, None);
        for i in 0..100 {
            let key = format!("k:{i}");
            let ticket = near.ticket(&format!("t:v:{key}"), &[]).unwrap();
            near.fill(
                ticket,
                Fill {
                    size: 1_000,
                    ..filling(&key, &[], &1)
                },
                NOW,
            );
        }
        near.l1.run_pending_tasks();
        let total: u64 = near.l1.iter().map(|(_, e)| u64::from(e.value.weight)).sum();
        assert!(total <= 1_000, "weight {total}");
        assert!(
            near.entry_count() <= 10,
            "{} entries of 1000 bytes in 10 000",
            near.entry_count()
        );
    }

    #[test]
    fn the_environment_turns_it_on_and_sizes_it() {
        let s = |v: &str| Some(v.to_string());
        assert!(NearCache::from_vars(None, None, None).unwrap().is_none());
        assert!(NearCache::from_vars(s("off"), None, None)
            .unwrap()
            .is_none());
        let near = NearCache::from_vars(s("5000"), s("1048576"), s("30"))
            .unwrap()
            .unwrap();
        assert_eq!(near.max_entries, 5_000);
        assert_eq!(near.max_bytes, Some(1_048_576));
        assert_eq!(near.max_lifetime, Duration::from_secs(30));
        assert!(NearCache::from_vars(s("lots"), None, None).is_err());
    }
}
