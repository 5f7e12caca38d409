//! [`CacheBuilder`]: how a [`Cache`] is configured.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::connection::{redact, Connection};
use crate::backend::memory::MemoryBackend;
use crate::backend::redis::RedisBackend;
use crate::backend::Backend;
use crate::cache::{Cache, Settings};
use crate::clock::{Clock, SystemClock};
use crate::codec::{Codec, Compression, Encoding};
use crate::error::{Error, Result};
use crate::near::{self, NearCache, Nodes};

/// The environment variables [`Cache::from_env`] reads, first match wins.
pub const ENV_VARS: [&str; 2] = ["REDCACHE_URL", "REDIS_URL"];

#[derive(Debug, Clone)]
enum Target {
    /// A URL that [`CacheBuilder::url`] could not read: `build` says why.
    Invalid {
        url: String,
        hint: String,
    },
    Memory,
    Redis(String),
    Cluster(Vec<String>),
    Sentinel {
        sentinels: Vec<String>,
        service: String,
    },
}

/// How a cache is made; `builder.rs` depends on the engine, never the
/// other way round.
impl Cache {
    /// A builder, set to the embedded backend until told otherwise.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// Builds a cache from the environment: `REDCACHE_URL`, else `REDIS_URL`
    /// (a Redis URL, or `memory`), else the embedded backend.
    ///
    /// # Errors
    ///
    /// As [`CacheBuilder::build`], for a URL that cannot be used.
    pub async fn from_env() -> Result<Cache> {
        CacheBuilder::from_env().build().await
    }
}

/// Configures and builds a [`Cache`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redcache::Error> {
/// let cache = redcache::Cache::builder()
///     .memory()                              // or .redis("redis://127.0.0.1:6379")
///     .namespace("shop")
///     .op_timeout(Duration::from_millis(50))
///     .build()
///     .await?;
/// # drop(cache); Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build().await"]
pub struct CacheBuilder {
    target: Target,
    namespace: String,
    connect_timeout: Duration,
    /// What the engine is built with: one struct from here to `Inner`.
    settings: Settings,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            target: Target::Memory,
            namespace: "redcache".to_string(),
            connect_timeout: Duration::from_secs(1),
            settings: Settings {
                op_timeout: Duration::from_millis(50),
                lock_ttl: Duration::from_secs(10),
                lock_wait: Duration::from_secs(2),
                max_entries: 100_000,
                max_value_size: DEFAULT_MAX_VALUE_SIZE,
                encoding: Encoding::default(),
                clock: Arc::new(SystemClock),
                breaker_threshold: 5,
                breaker_cool_down: Duration::from_millis(250),
                near: None,
                custom_clock: false,
            },
        }
    }
}

impl CacheBuilder {
    /// The embedded in-memory backend (the default): nothing to run, one
    /// process. Same semantics as Redis, minus the sharing between processes.
    pub fn memory(mut self) -> Self {
        self.target = Target::Memory;
        self
    }

    /// A Redis server, e.g. `redis://127.0.0.1:6379`, `redis://:password@host/2`
    /// or `redis://user:password@host:6379/0`.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.target = Target::Redis(url.into());
        self
    }

    /// A Redis Cluster, from the URLs of one or more of its nodes (the
    /// others are discovered), e.g. `["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]`.
    /// Every feature works on it: the scripts keep their keys in one slot,
    /// and multi-key work is sent per key, never across slots.
    pub fn redis_cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.target = Target::Cluster(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// A master monitored by Redis Sentinel: the sentinels' URLs and the
    /// name of the master group. After a failover the cache asks the
    /// sentinels for the new master by itself.
    pub fn redis_sentinel<I, S>(mut self, sentinels: I, master_name: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.target = Target::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            service: master_name.into(),
        };
        self
    }

    /// Picks the backend from a URL:
    /// - `memory` (or `memory://`): the embedded backend;
    /// - `redis+sentinel://host1:26379,host2:26379/mymaster`: the master
    ///   `mymaster` behind those sentinels;
    /// - a comma-separated list of Redis URLs: a Redis Cluster;
    /// - one Redis URL: `redis://`, `rediss://` or `redis+unix://`.
    ///
    /// Anything else (a typo such as `memroy`, a missing scheme) makes
    /// [`build`](Self::build) fail with [`Error::BadUrl`], which says what
    /// to write. A `,` in a password must be percent-encoded (`%2C`): a
    /// raw one separates cluster nodes.
    pub fn url(self, url: &str) -> Self {
        let url = url.trim();
        let invalid = |hint: String| Target::Invalid {
            url: redact(url),
            hint,
        };
        let target = match url {
            "memory" | "memory://" => Target::Memory,
            sentinel if sentinel.starts_with("redis+sentinel://") => {
                let rest = &sentinel["redis+sentinel://".len()..];
                let (hosts, service) = rest.rsplit_once('/').unwrap_or((rest, "mymaster"));
                let sentinels: Vec<String> = hosts
                    .split(',')
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("redis://{h}"))
                    .collect();
                if sentinels.is_empty() || service.is_empty() {
                    invalid("write `redis+sentinel://host1:26379,host2:26379/master-name`".into())
                } else {
                    Target::Sentinel {
                        sentinels,
                        service: service.to_string(),
                    }
                }
            }
            list if list.contains(',') => {
                let nodes: Vec<&str> = list.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
                match nodes.iter().find(|node| !has_redis_scheme(node)) {
                    Some(_) => invalid(
                        "a `,` separates the nodes of a Redis Cluster, and a part of this list is not a `redis://` URL; if a password holds a `,`, percent-encode it as `%2C`".into(),
                    ),
                    None => Target::Cluster(nodes.into_iter().map(String::from).collect()),
                }
            }
            url if has_redis_scheme(url) => Target::Redis(url.to_string()),
            "" => invalid("it is empty; write `redis://host:6379`, or `memory` for the embedded backend".into()),
            _ => invalid(
                "write `redis://host:6379` (or `rediss://` for TLS, `redis+sentinel://...`, a comma-separated list of cluster nodes), or `memory` for the embedded backend".into(),
            ),
        };
        CacheBuilder { target, ..self }
    }

    /// Picks the backend from the environment, as [`Cache::from_env`] does:
    /// `REDCACHE_URL`, else `REDIS_URL`, else the embedded backend.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redcache::Error> {
    /// let cache = redcache::Cache::builder().url_from_env().namespace("shop").build().await?;
    /// # drop(cache); Ok(()) }
    /// ```
    pub fn url_from_env(self) -> Self {
        let url = ENV_VARS
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()));
        let builder = match url {
            Some(url) => self.url(&url),
            None => self.memory(),
        };
        // And the near cache (see `NearCache::from_env`).
        match NearCache::from_env() {
            Ok(Some(near)) => builder.near_cache(near),
            Ok(None) => builder,
            Err(error) => CacheBuilder {
                target: Target::Invalid {
                    url: "(near cache settings)".into(),
                    hint: error.to_string(),
                },
                ..builder
            },
        }
    }

    /// The prefix of every key the cache writes (default `redcache`), so
    /// that several applications can share one Redis. It cannot hold `:`
    /// (the separator after it: namespaces `a` and `a:v` would read each
    /// other's keys), `{`, `}`, whitespace or control characters; `build`
    /// refuses them.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The longest a cached call waits for one Redis operation before it
    /// gives up on the cache and runs the function (default 50 ms).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.settings.op_timeout = timeout;
        self
    }

    /// The longest one attempt to (re)connect to Redis may take (default 1 s).
    /// Calls never wait for it longer than the operation timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the cross-process load lock is held at most (default 10 s):
    /// if its holder dies, others take over after this.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lock_ttl = ttl;
        self
    }

    /// How long a caller waits for another process's load before it loads
    /// itself (default 2 s).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.settings.lock_wait = wait;
        self
    }

    /// The most entries the embedded backend keeps (default 100 000); the
    /// least recently and frequently used go first.
    pub fn max_entries(mut self, max: u64) -> Self {
        self.settings.max_entries = max;
        self
    }

    /// The largest entry the cache stores, in bytes as stored (encoded,
    /// and compressed when [`compression`](Self::compression) applies; default
    /// [`DEFAULT_MAX_VALUE_SIZE`], 1 MiB). A larger value is returned to
    /// its caller but not stored, with a warning (once per function) and
    /// `stats().too_large`: every read of it would hold Redis' one thread
    /// for the copy, and could outlast the operation timeout. An entry
    /// found too slow to read (another writer's) is removed.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.settings.max_value_size = bytes;
        self
    }

    /// The codec entries are written in: [`Codec::Json`] (the default,
    /// readable in `redis-cli`) or [`Codec::MessagePack`] (smaller and
    /// faster to decode). A function can choose its own with
    /// `#[cached(codec = "msgpack")]`. Entries say their codec, so
    /// processes with different codecs read each other's entries.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.settings.encoding.codec = codec;
        self
    }

    /// Compress values whose encoding is at least
    /// [`Compression::above`] bytes (16 KiB by default), with lz4
    /// (feature `lz4`) or zstd (feature `zstd`). `max_value_size` applies
    /// to the compressed bytes.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.settings.encoding.compression = Some(compression);
        self
    }

    /// The circuit breaker: after `failures` consecutive operations that
    /// could not reach Redis, skip it for `cool_down`, then let one call
    /// probe (default 5 failures, 250 ms). While it is open, cached calls
    /// run their function with no added wait.
    pub fn circuit_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.settings.breaker_threshold = failures;
        self.settings.breaker_cool_down = cool_down;
        self
    }

    /// A near cache (L1): decoded values in this process in front of
    /// Redis, so a hit of a hot key costs no round trip. Redis keeps it
    /// coherent: any change of a key or of a tag's epoch, by any process
    /// or by `redis-cli`, drops the copies (`CLIENT TRACKING`, see
    /// [`NearCache`] and README's "Near cache"). Off by default on Redis;
    /// the embedded backend always keeps its values decoded (sized by
    /// [`max_entries`](Self::max_entries), or by this).
    pub fn near_cache(mut self, near: NearCache) -> Self {
        self.settings.near = Some(near);
        self
    }

    /// The clock of the rules the cache keeps itself (default: the system
    /// clock): entry and tag-epoch expiry and rate limits on the embedded
    /// backend, the circuit breaker's cool-down, the in-process memory of
    /// denials. On Redis, entries and limits expire on the server's clock.
    /// For tests: a [`ManualClock`](crate::ManualClock) moves time without
    /// sleeping.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.settings.clock = Arc::new(clock);
        self.settings.custom_clock = true;
        self
    }

    /// Builds the cache.
    ///
    /// A Redis backend connects in the background: if Redis is down, the
    /// cache is built anyway (the cause is reported once: a `tracing`
    /// error, and on standard error while no subscriber is installed),
    /// cached functions run their body, and caching resumes once Redis
    /// answers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a URL the Redis client cannot parse,
    /// [`Error::Config`] for an empty namespace or a zero timeout.
    pub async fn build(self) -> Result<Cache> {
        let cache = self.build_now()?;
        if cache.inner.guarded.backend.is_remote() {
            let ping =
                tokio::time::timeout(self.connect_timeout, cache.inner.guarded.backend.ping());
            if !matches!(ping.await, Ok(Ok(()))) {
                // Told once, with the cause, where a new user looks.
                cache.inner.guarded.report_unreachable();
            }
        }
        Ok(cache)
    }

    /// Builds without waiting for the backend (used for the global cache,
    /// which is built on first use). Must run inside a tokio runtime.
    pub(crate) fn build_now(&self) -> Result<Cache> {
        validate_namespace(&self.namespace)?;
        if self.settings.op_timeout.is_zero() || self.settings.lock_ttl.is_zero() {
            return Err(Error::Config(
                "op_timeout and lock_ttl must be greater than zero",
            ));
        }
        let backend = match &self.target {
            Target::Invalid { url, hint } => {
                return Err(Error::BadUrl {
                    url: url.clone(),
                    hint: hint.clone(),
                })
            }
            Target::Memory => Backend::Memory(MemoryBackend::new(
                self.settings.max_entries,
                Arc::clone(&self.settings.clock),
            )),
            Target::Redis(url) => Backend::Redis(RedisBackend::new(
                Connection::single(url, self.connect_timeout)?,
                Connection::single(url, self.connect_timeout)?,
                Nodes::Single(url.clone()),
                self.connect_timeout,
            )),
            Target::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(Error::Config(
                        "a Redis Cluster needs the URL of at least one node",
                    ));
                }
                // The cluster client answers with a timeout of its own a little
                // before the operation timeout, so it sees (and recovers from)
                // a node that stopped answering.
                let response_timeout = self.settings.op_timeout.mul_f32(0.8);
                let conn = Connection::cluster(nodes, self.connect_timeout, response_timeout)?;
                let side = Connection::cluster(nodes, self.connect_timeout, response_timeout)?;
                Backend::Redis(RedisBackend::new(
                    conn,
                    side,
                    Nodes::Cluster(nodes.clone()),
                    self.connect_timeout,
                ))
            }
            Target::Sentinel { sentinels, service } => {
                if sentinels.is_empty() {
                    return Err(Error::Config(
                        "Sentinel needs the URL of at least one sentinel",
                    ));
                }
                let conn = Connection::sentinel(sentinels, service, self.connect_timeout)?;
                // The master's connection serves the checks too: a second
                // one would watch the sentinels twice.
                Backend::Redis(RedisBackend::new(
                    conn.clone(),
                    conn,
                    Nodes::Sentinel {
                        sentinels: sentinels.clone(),
                        service: service.clone(),
                    },
                    self.connect_timeout,
                ))
            }
        };
        let nodes = match &backend {
            Backend::Redis(redis) => Some(redis.nodes.clone()),
            Backend::Memory(_) => None,
        };
        let cache = Cache::new(backend, &self.namespace, &self.settings);
        if let Some(nodes) = nodes {
            cache.check_health_in_background();
            if let Some(near) = &cache.inner.near {
                near::spawn_tracking(near, nodes, &self.namespace, self.connect_timeout);
            }
        }
        Ok(cache)
    }

    /// The builder [`Cache::from_env`] uses.
    pub(crate) fn from_env() -> Self {
        CacheBuilder::default().url_from_env()
    }
}

/// The largest entry a cache stores unless told otherwise: 1 MiB.
///
/// Redis' own advice is to keep values small (its documentation warns at
/// 100 KB): a value is copied through the server's one thread on every
/// read, so one hot 1 MB value costs every other client latency. 1 MiB
/// keeps rendered pages and long lists cacheable and refuses the
/// multi-megabyte blobs that belong in object storage.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1024 * 1024;

/// A namespace is the first segment of every key: without `:` no namespace
/// is a prefix of another's keys (`X` and `X:v` would meet at `X:v:v:...`),
/// and without braces it never makes a cluster hash tag.
fn validate_namespace(namespace: &str) -> Result<()> {
    if namespace.is_empty() {
        return Err(Error::Config("the namespace must not be empty"));
    }
    if namespace
        .chars()
        .any(|c| matches!(c, ':' | '{' | '}') || c.is_whitespace() || c.is_control())
    {
        return Err(Error::Config(
            "the namespace cannot hold `:`, `{`, `}`, whitespace or control characters (use `-` or `_` instead of `:`)",
        ));
    }
    Ok(())
}

fn has_redis_scheme(url: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        CacheBuilder::default().url(url).target
    }

    #[test]
    fn urls_pick_their_backend() {
        assert!(matches!(target("memory"), Target::Memory));
        assert!(matches!(target(" redis://h:1 "), Target::Redis(u) if u == "redis://h:1"));
        assert!(matches!(target("redis://a:1,redis://b:2"), Target::Cluster(n) if n.len() == 2));
        assert!(matches!(
            target("redis+sentinel://s1:26379,s2:26379/shop"),
            Target::Sentinel { sentinels, service } if sentinels.len() == 2 && service == "shop"
        ));
    }

    #[test]
    fn a_typo_or_a_raw_comma_is_an_error_that_says_what_to_write() {
        for url in ["memroy", "localhost:6379", "", "http://h:1"] {
            assert!(matches!(target(url), Target::Invalid { .. }), "{url:?}");
        }
        let Target::Invalid { url, hint } = target("redis://:pa,ss@host:6379") else {
            panic!("a raw comma in a password is not a cluster");
        };
        assert!(hint.contains("%2C"), "{hint}");
        assert!(!url.contains("pa,ss"), "the password is not shown: {url}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn namespaces_cannot_reach_into_each_other() {
        for bad in ["", "X:v", "a{b}", "a b", "a\n"] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
        for good in ["shop", "shop-v2", "my_app.cache"] {
            assert!(validate_namespace(good).is_ok(), "{good:?}");
        }
    }
}
