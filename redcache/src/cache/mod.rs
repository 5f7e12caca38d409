//! [`Cache`], the handle users hold, and the cache-aside engine behind
//! every cached call, in parts:
//!
//! - `load.rs`: a cached call: read, single flight, load, store;
//! - `lock.rs`: the cross-process load lock;
//! - `pending.rs`: invalidations that could not reach Redis, retried.
//!
//! Every backend operation goes through the core in `guarded.rs`; rate
//! limits (`ratelimit/`) share that core, not this engine.

mod lifecycle;
mod load;
mod lock;
mod pending;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) use self::lifecycle::Lifecycle;
use self::lifecycle::RefreshSet;
use self::load::ZERO_TTL_PUT;
use crate::backend::{Backend, Replace, Write, Written};
use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::codec::{Codec, EncodeError, Encoding};
use crate::entry::{self, Epoch, Times};
use crate::error::{Error, Result};
use crate::flight::Flights;
use crate::guarded::Guarded;
use crate::near::{Near, NearCache, NearStatus};
use crate::rate_checks::RateChecks;
use crate::stats::{Counters, Event, Stats};

/// What a cached value must be: stored encoded in the backend
/// (`Serialize`, `DeserializeOwned`) and held decoded in the near cache,
/// which hands each hit a clone (`Clone + Send + Sync + 'static`).
/// Implemented for every such type.
///
/// A value that is costly to clone, or not `Clone`, can be cached as an
/// `Arc<T>`: a hit is then a reference count, and the backend stores the
/// `T` (serde's `rc` impls, which redcache turns on).
#[diagnostic::on_unimplemented(
    message = "the cached value type `{Self}` must implement `Serialize`, `DeserializeOwned` and `Clone`, and be `Send + Sync + 'static`",
    label = "this value is stored in the cache",
    note = "add `#[derive(Clone, serde::Serialize, serde::Deserialize)]` to the type; for a value that is costly to clone or cannot be `Clone`, cache an `Arc<T>`"
)]
pub trait Cacheable: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Cacheable for T {}

/// How concurrent misses of one key are coordinated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Stampede {
    /// Every caller that misses runs the function.
    Off,
    /// Callers in one process share one load.
    Local,
    /// As `Local`, and across processes a Redis lock lets one process load
    /// while the others wait for its value (the default; on the embedded
    /// backend this is `Local`).
    #[default]
    Distributed,
}

/// One cached call: its key, TTL, tags and stampede policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    /// The key template (or the fn's path): a name with few values.
    pub(crate) name: &'static str,
    pub(crate) key: &'a str,
    pub(crate) ttl: Duration,
    pub(crate) tags: &'a [String],
    pub(crate) stampede: Stampede,
    /// Why this call cannot be cached at all (it then runs its function,
    /// and the reason is reported once).
    pub(crate) uncacheable: Option<&'static str>,
    /// Early refresh, stale serving, fail-safe, jitter, hard timeout.
    pub(crate) lifecycle: Lifecycle,
    /// The codec this call writes its entry in (`codec = "..."`), else
    /// the cache's.
    pub(crate) codec: Option<Codec>,
}

impl<'a> Call<'a> {
    /// A call of the programmatic API: named `get_or_load` in spans,
    /// metrics and entries, with the default stampede policy.
    fn programmatic(key: &'a str, ttl: Duration, tags: &'a [String]) -> Self {
        Call {
            name: "get_or_load",
            key,
            ttl,
            tags,
            stampede: Stampede::default(),
            uncacheable: None,
            lifecycle: Lifecycle::default(),
            codec: None,
        }
    }
}

/// A cache: a cheap, cloneable handle on a backend (Redis or embedded).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = redcache::Cache::builder().memory().namespace("shop").build().await?;
///
/// let price: Result<u32, std::io::Error> = cache
///     .get_or_load("price:42", Duration::from_secs(60), &["category:7"], || async { Ok(1999) })
///     .await;
/// assert_eq!(price?, 1999);
///
/// cache.invalidate_tag("category:7").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
    /// The rate limits checked through this cache (`#[rate_limited]`,
    /// `RateLimiter`): beside the cache-aside engine, on the same guarded
    /// backend.
    pub(crate) rates: Arc<RateChecks>,
}

pub(crate) struct Inner {
    /// The backend behind its breaker and timeout, with the counters.
    pub(crate) guarded: Arc<Guarded>,
    /// The first segment of every key (distributed locks build theirs).
    pub(crate) namespace: String,
    value_prefix: String,
    tag_prefix: String,
    lock_prefix: String,
    lock_ttl: Duration,
    lock_wait: Duration,
    /// Measures the wait for another process's load lock.
    pub(crate) clock: Arc<dyn Clock>,
    max_value_size: usize,
    /// The codec and compression entries are written in.
    encoding: Encoding,
    flights: Flights,
    /// Keys this process refreshes in the background.
    refreshing: RefreshSet,
    /// Tag invalidations that could not reach Redis, retried before cached
    /// calls; a tag in here bypasses the cache.
    /// Each with the generation it was recorded as (see `keep_pending`).
    pending: Mutex<HashMap<String, u64>>,
    pending_generations: AtomicU64,
    has_pending: AtomicBool,
    /// A retry of the pending invalidations is under way.
    retrying: AtomicBool,
    /// The near cache (L1), if any: always on the embedded backend.
    pub(crate) near: Option<Arc<Near>>,
    /// Pub/sub subscriptions (`Cache::channel`).
    pub(crate) pubsub: crate::pubsub::PubSub,
}

/// The settings of a cache, as the builder collected them.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) op_timeout: Duration,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) max_entries: u64,
    pub(crate) max_value_size: usize,
    pub(crate) encoding: Encoding,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cool_down: Duration,
    pub(crate) near: Option<NearCache>,
    /// `clock` is not the system clock (see `CacheBuilder::clock`).
    pub(crate) custom_clock: bool,
}

impl Cache {
    /// The cache-aside engine and the rate checks, on one guarded backend.
    pub(crate) fn new(backend: Backend, namespace: &str, settings: &Settings) -> Self {
        let breaker = Breaker::new(
            settings.breaker_threshold,
            settings.breaker_cool_down,
            Arc::clone(&settings.clock),
        );
        let counters = Arc::new(Counters::new(namespace));
        // On the embedded backend every change is made in this process, so
        // an L1 of decoded values is always coherent: a hit decodes nothing.
        let near = match (&backend, &settings.near) {
            (Backend::Memory(_), near) => {
                let near = near
                    .clone()
                    .unwrap_or_else(|| NearCache::new().max_entries(settings.max_entries));
                Some((near, NearStatus::InProcess))
            }
            (Backend::Redis(_), Some(near)) => Some((near.clone(), NearStatus::Bypassed)),
            (Backend::Redis(_), None) => None,
        };
        let near = near.map(|(near, status)| {
            let clock = settings.custom_clock.then(|| Arc::clone(&settings.clock));
            Arc::new(Near::new(
                near,
                namespace,
                Arc::clone(&counters),
                status,
                clock,
            ))
        });
        let guarded = Arc::new(Guarded::new(
            backend,
            settings.op_timeout,
            breaker,
            counters,
        ));
        // Entries, tag epochs, locks and rate limits live under distinct
        // prefixes, so no rendered key can ever name a key of another kind.
        let rates = Arc::new(RateChecks::new(
            Arc::clone(&guarded),
            format!("{namespace}:rl:"),
            settings.max_entries,
            Arc::clone(&settings.clock),
        ));
        let inner = Inner {
            namespace: namespace.to_string(),
            value_prefix: format!("{namespace}:v:"),
            tag_prefix: format!("{namespace}:tag:"),
            lock_prefix: format!("{namespace}:lock:"),
            guarded,
            lock_ttl: settings.lock_ttl,
            lock_wait: settings.lock_wait,
            clock: Arc::clone(&settings.clock),
            max_value_size: settings.max_value_size,
            encoding: settings.encoding,
            flights: Flights::default(),
            refreshing: RefreshSet::default(),
            pending: Mutex::new(HashMap::new()),
            pending_generations: AtomicU64::new(0),
            has_pending: AtomicBool::new(false),
            retrying: AtomicBool::new(false),
            near,
            pubsub: Default::default(),
        };
        Cache {
            inner: Arc::new(inner),
            rates,
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.guarded.backend.name())
            .field("prefix", &self.inner.value_prefix)
            .finish_non_exhaustive()
    }
}

impl AsRef<Cache> for Cache {
    fn as_ref(&self) -> &Cache {
        self
    }
}

impl Cache {
    /// Returns the cached value of `key`, or runs `load`, caches an `Ok`
    /// value for `ttl` under `tags` and returns it. An `Err` is returned and
    /// not cached. This is what `#[cached]` calls.
    ///
    /// The key is taken as it is (use [`key!`](crate::key) to render one
    /// with escaped arguments). Backend failures never reach the caller:
    /// `load` runs instead.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = redcache::Cache::builder().build().await?;
    /// let id = 42;
    /// let name = cache
    ///     .get_or_load(&redcache::key!("user:<id>"), Duration::from_secs(300), &[], || async {
    ///         Ok::<_, std::io::Error>(format!("user {id}"))
    ///     })
    ///     .await?;
    /// assert_eq!(name, "user 42");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only the errors of `load`.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        tags: &[&str],
        load: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let call = Call::programmatic(key, ttl, &tags);
        self.load_through(call, |_| true, load()).await
    }

    /// [`get_or_load`](Self::get_or_load) for a load that cannot fail:
    /// every value is cached (moka's `get_with`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redcache::Error> {
    /// let cache = redcache::Cache::builder().build().await?;
    /// let n: u64 = cache.get_with("answer", Duration::from_secs(60), &[], || async { 42 }).await;
    /// assert_eq!(n, 42);
    /// # Ok(()) }
    /// ```
    pub async fn get_with<T, F, Fut>(&self, key: &str, ttl: Duration, tags: &[&str], load: F) -> T
    where
        T: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let call = Call::programmatic(key, ttl, &tags);
        self.load_infallible(call, |_| true, load()).await
    }

    /// [`get_or_load`](Self::get_or_load) for an optional value: `Some` is
    /// cached, `None` is returned and not cached (moka's
    /// `optionally_get_with`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redcache::Error> {
    /// let cache = redcache::Cache::builder().build().await?;
    /// let user: Option<String> = cache
    ///     .optionally_get_with("user:9", Duration::from_secs(60), &[], || async { None })
    ///     .await;
    /// assert_eq!(user, None);
    /// # Ok(()) }
    /// ```
    pub async fn optionally_get_with<T, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        tags: &[&str],
        load: F,
    ) -> Option<T>
    where
        Option<T>: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let call = Call::programmatic(key, ttl, &tags);
        // As `#[cached]` on a fn returning an `Option`: a `None` is shared
        // with the callers waiting on this load, not stored.
        self.load_infallible(call, Option::is_some, load()).await
    }

    /// Invalidates every entry cached under `tag`, in one atomic increment
    /// whatever the number of entries.
    ///
    /// Once this returns, no call returns a value whose load began before
    /// it, from any process sharing the backend, even if that load finishes
    /// afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) or [`Error::Timeout`](crate::Error::Timeout) if the invalidation could not
    /// be recorded: the caller must know, since a lost invalidation would
    /// leave stale values.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        let tag_key = prefixed(&self.inner.tag_prefix, tag);
        self.deliver_or_keep(tag_key).await
    }

    /// Invalidates the entry of one key, as a template renders it (see
    /// [`key!`](crate::key)).
    ///
    /// Once this returns, no call returns a value whose load began before
    /// it, from any process sharing the backend, even if that load finishes
    /// afterwards: the key holds a tombstone (a small entry that reads as a
    /// miss, for a day), and a load stores its value only if the key still
    /// holds what the load began from.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis) or [`Error::Timeout`](crate::Error::Timeout) if Redis could not be reached.
    /// The invalidation is then retried before later cached calls of this
    /// cache, and until it is delivered this process does not read the key
    /// from the cache.
    pub async fn invalidate_key(&self, key: &str) -> Result<()> {
        let key = prefixed(&self.inner.value_prefix, key);
        self.deliver_or_keep(key).await
    }

    /// Stores `value` under `key` for `ttl`, with `tags`, replacing what
    /// the key holds: write-through, after your database took the new
    /// value. The next [`get_or_load`](Self::get_or_load) of the key (with
    /// the same tags) is a hit with it, in every process, and a load of the
    /// key that began before the put never overwrites it.
    ///
    /// An entry belongs to the template that wrote it: `put` pairs with
    /// `get_or_load`, `get_with` and `optionally_get_with`; for a
    /// `#[cached]` fn use `#[cache_put]` with its key template.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redcache::Error> {
    /// let cache = redcache::Cache::builder().build().await?;
    /// let ttl = Duration::from_secs(300);
    /// cache.put("user:7", &"Ada".to_string(), ttl, &["team:1"]).await?;
    /// let name = cache.get_with("user:7", ttl, &["team:1"], || async { "from the db".to_string() }).await;
    /// assert_eq!(name, "Ada");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Redis`](crate::Error::Redis), [`Error::Timeout`](crate::Error::Timeout) or [`Error::CircuitOpen`](crate::Error::CircuitOpen) if Redis could
    /// not be reached: the key is then invalidated as soon as it can be (as
    /// [`invalidate_key`](Self::invalidate_key) after a failure), so the old
    /// value is not served for its remaining TTL. [`Error::Unstorable`](crate::Error::Unstorable)
    /// for a value that does not encode or exceeds `max_value_size`: the
    /// key is invalidated instead.
    pub async fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
        tags: &[&str],
    ) -> Result<()> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.put_call(Call::programmatic(key, ttl, &tags), value)
            .await
    }

    /// [`put`](Self::put) with [`EntryOptions`]: its ttl and tags, and its
    /// `stale` and `fail_safe` windows (the reader's), for which the entry
    /// is kept past its expiry.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub async fn put_with<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        options: &EntryOptions,
    ) -> Result<()> {
        let call = Call {
            lifecycle: options.lifecycle,
            codec: options.codec,
            ..Call::programmatic(key, options.ttl, &options.tags)
        };
        self.put_call(call, value).await
    }

    /// [`put`](Self::put) for a call of `#[cache_put]`: the entry is
    /// written under the call's template.
    pub(crate) async fn put_call<T: Serialize>(&self, call: Call<'_>, value: &T) -> Result<()> {
        let key = prefixed(&self.inner.value_prefix, call.key);
        if call.ttl.is_zero() {
            self.deliver_or_keep(key).await?;
            return Err(Error::Unstorable(ZERO_TTL_PUT.into()));
        }
        let tag_keys: Vec<String> = call
            .tags
            .iter()
            .map(|tag| prefixed(&self.inner.tag_prefix, tag))
            .collect();
        let guarded = &self.inner.guarded;
        let epochs = match guarded.op(guarded.backend.epochs(&tag_keys)).await {
            Ok(epochs) => epochs,
            Err(error) => {
                guarded.backend_failed("put", &error);
                self.keep_pending(key);
                return Err(error);
            }
        };
        let at_ms = self.now_ms();
        let times = Times {
            at_ms,
            expires_ms: at_ms.saturating_add(lifecycle::millis(call.ttl)),
            load_ms: 0,
        };
        let bytes = match self.encode(call, value, &epochs, times) {
            Ok(bytes) if bytes.len() <= self.inner.max_value_size => bytes,
            Ok(bytes) => {
                let reason = format!(
                    "{} bytes encoded, above max_value_size ({})",
                    bytes.len(),
                    self.inner.max_value_size
                );
                self.too_large(call.name, call.key, bytes.len());
                self.deliver_or_keep(key).await?;
                return Err(Error::Unstorable(reason));
            }
            Err(error) => {
                guarded.counters.count(Event::Error("encode"));
                self.deliver_or_keep(key).await?;
                return Err(Error::Unstorable(error.to_string()));
            }
        };
        let write = Write {
            key: &key,
            bytes: &bytes,
            // Kept past its expiry for the reader's `stale` and `fail_safe`.
            ttl: call.ttl.saturating_add(call.lifecycle.keep_after_expiry()),
            tag_keys: &tag_keys,
            epochs: &epochs,
            replace: Replace::Always,
            unlock: None,
        };
        let before = self.pending_generation(&key);
        let written = self.write_entry(write).await;
        match written {
            // Not stored only when a tag moved on between the two round
            // trips: every entry under it, the old one too, is then stale.
            Ok(_) => {
                tracing::debug!(target: "redcache", key = call.key, "put");
                self.settle(&key, before);
                Ok(())
            }
            Err(error) => {
                guarded.backend_failed("put", &error);
                self.keep_pending(key);
                Err(error)
            }
        }
    }

    /// The counters of this cache (shared by its clones), and the state of
    /// its circuit breaker.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.guarded.stats();
        if let Some(near) = &self.inner.near {
            stats.near = near.status();
        }
        stats
    }

    /// Writes an entry (a value or a tombstone). Every write of the cache
    /// passes here: this process's near-cache copies of the key are
    /// dropped, whatever the outcome, before the caller hears of it.
    pub(super) async fn write_entry(&self, write: Write<'_>) -> Result<Written> {
        let key = write.key;
        let guarded = &self.inner.guarded;
        let written = guarded.op(guarded.backend.write(write)).await;
        self.changed(key);
        written
    }

    /// Moves a tag's epoch on (`tag_key` is prefixed), and, as
    /// [`write_entry`](Self::write_entry), drops this process's copies
    /// under it.
    pub(super) async fn bump_epoch(&self, tag_key: &str) -> Result<Epoch> {
        let guarded = &self.inner.guarded;
        let epoch = guarded.op(guarded.backend.bump_epoch(tag_key)).await;
        self.changed(tag_key);
        epoch
    }

    /// `value` as the entry of `call`, in the call's codec (else the
    /// cache's) and the cache's compression.
    pub(super) fn encode<T: Serialize>(
        &self,
        call: Call<'_>,
        value: &T,
        epochs: &[Epoch],
        times: Times,
    ) -> std::result::Result<Vec<u8>, EncodeError> {
        let encoding = Encoding {
            codec: call.codec.unwrap_or(self.inner.encoding.codec),
            ..self.inner.encoding
        };
        entry::encode(value, call.name, call.tags, epochs, times, encoding)
    }

    /// A value of `name` was not cached for its size: counted, and said
    /// once per function (every call of a function whose values are too
    /// large would say it again).
    pub(super) fn too_large(&self, name: &'static str, key: &str, size: usize) {
        self.inner.guarded.counters.count(Event::TooLarge(name));
        let max = self.inner.max_value_size;
        let subject = format!("too_large:{}:{name}", self.inner.namespace);
        let message = format!(
            "{name}: a value of {size} bytes (key {key}) is larger than max_value_size ({max}): returned, not cached (said once per function; stats().too_large counts them)"
        );
        if !crate::report::once(&subject, &message) {
            tracing::debug!(target: "redcache", name, key, size, max, "value larger than max_value_size: not cached");
        }
    }

    /// This process changed `key` (an entry's or a tag's epoch, prefixed).
    fn changed(&self, key: &str) {
        if let Some(near) = &self.inner.near {
            near.changed(key);
        }
    }
}

/// `prefix` + `name`, without the formatting machinery of `format!` (this
/// runs on every cached call).
fn prefixed(prefix: &str, name: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + name.len());
    key.push_str(prefix);
    key.push_str(name);
    key
}

/// How [`Cache::fetch`] caches a value: its `ttl` and tags, and the
/// lifecycle options of `#[cached]` (`stale`, `fail_safe`,
/// `early_refresh`, `jitter`).
///
/// ```
/// use std::time::Duration;
/// use redcache::EntryOptions;
///
/// let options = EntryOptions::new(Duration::from_secs(60))
///     .tags(["category:7"])
///     .stale(Duration::from_secs(600))
///     .fail_safe(Duration::from_secs(3600))
///     .early_refresh(1.0)
///     .jitter(0.1);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct EntryOptions {
    ttl: Duration,
    tags: Vec<String>,
    lifecycle: Lifecycle,
    codec: Option<Codec>,
}

impl EntryOptions {
    /// Entries that expire after `ttl`, with no tags.
    pub fn new(ttl: Duration) -> Self {
        EntryOptions {
            ttl,
            tags: Vec::new(),
            lifecycle: Lifecycle::default(),
            codec: None,
        }
    }

    /// The codec of these entries, instead of the cache's.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = Some(codec);
        self
    }

    /// The tags of the entries (for [`Cache::invalidate_tag`]).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// After the expiry, answer with the expired value for up to `stale`
    /// while one refresh runs in the background.
    pub fn stale(mut self, stale: Duration) -> Self {
        self.lifecycle.stale = stale;
        self
    }

    /// When the load fails, answer with a value expired no longer than
    /// `fail_safe` ago.
    pub fn fail_safe(mut self, fail_safe: Duration) -> Self {
        self.lifecycle.fail_safe = fail_safe;
        self
    }

    /// Refresh in the background before the expiry (XFetch, with `beta`;
    /// 1.0 is the paper's choice, larger refreshes earlier).
    ///
    /// # Panics
    ///
    /// If `beta` is not a finite number above zero.
    pub fn early_refresh(mut self, beta: f64) -> Self {
        assert!(
            beta.is_finite() && beta > 0.0,
            "early_refresh: beta must be a finite number above zero, not {beta}"
        );
        self.lifecycle.early_refresh = Some(beta);
        self
    }

    /// With an expired value at hand, answer with it when the load takes
    /// longer than `after`, and let the load finish in the background
    /// (its value is stored when it ends). The expired values are those
    /// [`fail_safe`](Self::fail_safe) keeps: without it there are none,
    /// and the call waits for its load.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.lifecycle.soft_timeout = Some(after);
        self
    }

    /// Spread each entry's ttl by up to `fraction` (0.1 for 10 %).
    ///
    /// # Panics
    ///
    /// If `fraction` is not above 0 and below 1.
    pub fn jitter(mut self, fraction: f64) -> Self {
        assert!(
            fraction > 0.0 && fraction < 1.0,
            "jitter: the fraction must be above 0 and below 1, not {fraction}"
        );
        self.lifecycle.jitter = fraction;
        self
    }
}

impl Cache {
    /// [`get_or_load`](Self::get_or_load) with the lifecycle options of
    /// `#[cached]`: stale serving, fail-safe, early refresh and jitter.
    /// The loader may finish in the background after this call returned
    /// (a refresh), so it must own what it uses (`Send + 'static`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), std::io::Error> {
    /// # let cache = redcache::Cache::builder().build().await.unwrap();
    /// use redcache::EntryOptions;
    /// let options = EntryOptions::new(Duration::from_secs(60)).stale(Duration::from_secs(600));
    /// let id = 7;
    /// let name: String = cache
    ///     .fetch(&redcache::key!("user:<id>"), &options, move || async move {
    ///         Ok::<_, std::io::Error>(format!("user {id}"))
    ///     })
    ///     .await?;
    /// assert_eq!(name, "user 7");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Only the errors of `load` (when no fail-safe value stands in).
    pub async fn fetch<T, E, F, Fut>(
        &self,
        key: &str,
        options: &EntryOptions,
        load: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let call = Call {
            lifecycle: options.lifecycle,
            codec: options.codec,
            ..Call::programmatic(key, options.ttl, &options.tags)
        };
        self.load_through_refreshing(call, |_| true, load()).await
    }
}
