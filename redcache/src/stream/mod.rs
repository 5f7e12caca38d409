//! Typed streams: an append-only log of `T` in a Redis Stream (or the
//! embedded backend's), bounded by `MAXLEN ~`, read by consumer groups at
//! least once.
//!
//! ```no_run
//! # async fn demo() -> redcache::Result<()> {
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { id: u64, cents: u64 }
//!
//! let cache = redcache::Cache::builder().url("redis://127.0.0.1:6379").build().await?;
//! let orders = cache.stream::<Order>("orders").max_len(1_000_000);
//! orders.emit(&Order { id: 1, cents: 4_200 }).await?;
//!
//! let billing = orders
//!     .consumer("billing")
//!     .concurrency(16)
//!     .start(|order: redcache::Delivery<Order>| async move {
//!         // charge order.value.cents, idempotently: delivery is at least once
//!         Ok::<_, std::io::Error>(())
//!     })
//!     .await?;
//! // ... on shutdown: finish what is in hand, hand back the rest.
//! let stats = billing.shutdown().await;
//! # Ok(()) }
//! ```

mod consumer;
pub(crate) mod memory;
pub(crate) mod ops;

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::consumer::{Consumer, ConsumerBuilder, ConsumerStats, Delivery, StartFrom};
pub(crate) use self::memory::MemoryStreams;
use self::ops::{Id, RawEntry, StreamOps};
use crate::cache::Cache;
use crate::error::{Error, Result};

/// The entries a stream keeps unless [`EventStream::max_len`] says
/// otherwise: `MAXLEN ~ 100000` (at least this many; Redis trims whole
/// radix-tree nodes, so up to about 100 more).
pub const DEFAULT_MAX_LEN: u64 = 100_000;

/// How long a stream lives after its last emit unless
/// [`EventStream::retention`] says otherwise: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A typed stream: `emit` appends a `T`, consumer groups read each entry
/// at least once. Made by [`Cache::stream`]; cheap to clone.
///
/// Every stream is bounded twice: by length (`MAXLEN ~`, default
/// [`DEFAULT_MAX_LEN`]) and by time (the key expires [`retention`] after
/// the last emit, default [`DEFAULT_RETENTION`]). Entries trimmed before a
/// group handled them are lost to it (and counted in
/// [`ConsumerStats::trimmed`]): size `max_len` for the backlog you must
/// survive.
///
/// [`retention`]: EventStream::retention
pub struct EventStream<T> {
    pub(crate) cache: Cache,
    pub(crate) name: Arc<str>,
    pub(crate) key: Arc<str>,
    pub(crate) dead_key: Arc<str>,
    pub(crate) max_len: u64,
    pub(crate) retention: Duration,
    /// When this handle (and its clones) last slid the stream's expiry, in
    /// ms since the Unix epoch.
    slid_ms: Arc<AtomicU64>,
    _values: PhantomData<fn() -> T>,
}

impl<T> Clone for EventStream<T> {
    fn clone(&self) -> Self {
        EventStream {
            cache: self.cache.clone(),
            name: Arc::clone(&self.name),
            key: Arc::clone(&self.key),
            dead_key: Arc::clone(&self.dead_key),
            max_len: self.max_len,
            retention: self.retention,
            slid_ms: Arc::clone(&self.slid_ms),
            _values: PhantomData,
        }
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("key", &self.key)
            .field("max_len", &self.max_len)
            .field("retention", &self.retention)
            .finish()
    }
}

/// A stream entry's id (`<ms>-<seq>`), as Redis gives it: ids grow with
/// every entry of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub(crate) Id);

impl EntryId {
    /// The milliseconds part: when the entry was added, on the server's
    /// clock.
    pub fn millis(&self) -> u64 {
        self.0 .0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EntryId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        s.parse()
            .map(EntryId)
            .map_err(|()| Error::Config("a stream entry id is `<ms>-<seq>`"))
    }
}

/// An entry read back from a stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry<T> {
    /// Its id in the stream.
    pub id: EntryId,
    /// The value emitted.
    pub value: T,
}

/// An entry a consumer group gave up on: it failed `max_deliveries`
/// times, or did not decode. Read with [`EventStream::dead_letters`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter<T> {
    /// Its id in the dead-letter stream.
    pub id: EntryId,
    /// Its id in the stream it came from.
    pub original_id: EntryId,
    /// The group that gave up.
    pub group: String,
    /// The last error (the handler's, or why it did not decode).
    pub error: String,
    /// How often it was delivered.
    pub deliveries: u64,
    /// The value, if it decodes as `T`.
    pub value: Option<T>,
    /// The payload as stored (JSON).
    pub payload: Vec<u8>,
}

impl Cache {
    /// The stream `name` of `T`s, under this cache's namespace
    /// (`<namespace>:stream:{#<name>}`; its dead letters beside it, in the
    /// same cluster slot). On the embedded backend streams live in this
    /// process, with the same semantics.
    pub fn stream<T>(&self, name: &str) -> EventStream<T> {
        let key: Arc<str> = format!("{}:stream:{{#{name}}}", self.inner.namespace).into();
        EventStream {
            cache: self.clone(),
            name: name.into(),
            dead_key: format!("{key}:dead").into(),
            key,
            max_len: DEFAULT_MAX_LEN,
            retention: DEFAULT_RETENTION,
            slid_ms: Arc::default(),
            _values: PhantomData,
        }
    }
}

impl<T> EventStream<T> {
    /// Keeps at least `n` entries, trimming older ones as entries are
    /// added (`XADD ... MAXLEN ~ n`; default [`DEFAULT_MAX_LEN`]). The
    /// dead-letter stream has the same bound.
    #[must_use]
    pub fn max_len(mut self, n: u64) -> Self {
        self.max_len = n;
        self
    }

    /// The stream expires about this long after its last emit (between
    /// 0.9 × and 1 ×; default [`DEFAULT_RETENTION`]), with its groups and
    /// what they have pending.
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The stream's Redis key.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn ops(&self) -> StreamOps<'_> {
        StreamOps::of(&self.cache.inner.guarded.backend)
    }

    fn check(&self) -> Result<()> {
        if self.max_len == 0 {
            return Err(Error::Config("a stream's max_len must be at least 1"));
        }
        if self.retention < Duration::from_millis(1) {
            return Err(Error::Config("a stream's retention must be at least 1 ms"));
        }
        Ok(())
    }

    /// The number of entries in the stream (`XLEN`).
    pub async fn len(&self) -> Result<u64> {
        let guarded = &self.cache.inner.guarded;
        guarded.op(self.ops().len(&self.key)).await
    }

    /// Whether the stream holds no entry.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// How many entries `group` has delivered and not yet acked.
    pub async fn pending(&self, group: &str) -> Result<u64> {
        let guarded = &self.cache.inner.guarded;
        guarded.op(self.ops().pending(&self.key, group)).await
    }

    /// The consumer group `group` of this stream: configure, then
    /// [`start`](ConsumerBuilder::start) it.
    pub fn consumer(&self, group: &str) -> ConsumerBuilder<T> {
        ConsumerBuilder::new(self.clone(), group)
    }
}

impl<T: Serialize + DeserializeOwned> EventStream<T> {
    /// Appends `value` (as JSON) and returns its id. The stream is trimmed
    /// to about `max_len` entries in the same step. Its expiry is slid to
    /// `retention` with the first emit of this handle and then once per
    /// tenth of `retention` (one plain `XADD` in between), so a stream
    /// expires between 0.9 × and 1 × `retention` after its last emit.
    pub async fn emit(&self, value: &T) -> Result<EntryId> {
        self.check()?;
        let payload = crate::codec::to_json(value)?;
        let now_ms = self.cache.inner.clock.now_micros() / 1_000;
        let every_ms = u64::try_from(self.retention.as_millis() / 10).unwrap_or(u64::MAX);
        let slid = self.slid_ms.load(Ordering::Relaxed);
        let slide = now_ms.saturating_sub(slid) >= every_ms || slid == 0;
        let guarded = &self.cache.inner.guarded;
        let ops = self.ops();
        let emit = ops.emit(&self.key, &payload, self.max_len, self.retention, slide);
        let id = guarded.op(emit).await?;
        if slide {
            self.slid_ms.store(now_ms, Ordering::Relaxed);
        }
        Ok(EntryId(id))
    }

    /// Up to `count` entries from `start` to `end`, oldest first. Bounds
    /// are as `XRANGE` takes them: `-` and `+` for the ends, an id, or `(`
    /// and an id to leave it out. Entries that do not decode as `T` are
    /// skipped, with a warning.
    pub async fn range(&self, start: &str, end: &str, count: usize) -> Result<Vec<Entry<T>>> {
        let guarded = &self.cache.inner.guarded;
        let raw = guarded
            .op(self.ops().range(&self.key, start, end, count, false))
            .await?;
        Ok(self.decode_all(raw))
    }

    /// The newest `count` entries, oldest first.
    pub async fn latest(&self, count: usize) -> Result<Vec<Entry<T>>> {
        let guarded = &self.cache.inner.guarded;
        let mut raw = guarded
            .op(self.ops().range(&self.key, "+", "-", count, true))
            .await?;
        raw.reverse();
        Ok(self.decode_all(raw))
    }

    fn decode_all(&self, raw: Vec<RawEntry>) -> Vec<Entry<T>> {
        raw.into_iter()
            .filter_map(|entry| match decode::<T>(&entry) {
                Ok(value) => Some(Entry {
                    id: EntryId(entry.id),
                    value,
                }),
                Err(error) => {
                    tracing::warn!(target: "redcache", stream = &*self.name, id = %entry.id, %error, "stream entry skipped: it does not decode");
                    None
                }
            })
            .collect()
    }

    /// Up to `count` of the oldest dead letters of every group of this
    /// stream.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<DeadLetter<T>>> {
        let guarded = &self.cache.inner.guarded;
        let raw = guarded
            .op(self.ops().range(&self.dead_key, "-", "+", count, false))
            .await?;
        Ok(raw
            .into_iter()
            .map(|entry| {
                let text = |name: &str| {
                    String::from_utf8_lossy(entry.field(name).unwrap_or_default()).into_owned()
                };
                DeadLetter {
                    id: EntryId(entry.id),
                    original_id: EntryId(text("id").parse().unwrap_or_default()),
                    group: text("group"),
                    error: text("error"),
                    deliveries: text("deliveries").parse().unwrap_or(0),
                    value: decode::<T>(&entry).ok(),
                    payload: entry.field("d").unwrap_or_default().to_vec(),
                }
            })
            .collect())
    }
}

/// Why an entry does not decode.
pub(crate) fn decode<T: DeserializeOwned>(entry: &RawEntry) -> std::result::Result<T, String> {
    let Some(payload) = entry.field("d") else {
        return Err("the entry has no `d` field (not written by redcache)".into());
    };
    serde_json::from_slice(payload).map_err(|e| e.to_string())
}
