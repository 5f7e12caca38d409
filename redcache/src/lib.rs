//! Caching for async Rust, on Redis or in memory.
//!
//! Annotate an async fn and its results are cached, with stampede
//! protection and tag invalidation:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Product { id: u64, name: String }
//!
//! #[redcache::cached(ttl = 300, key = "product:<id>", tags = ["category:<category_id>"])]
//! async fn get_product(id: u64, category_id: u64) -> Result<Product, std::io::Error> {
//!     Ok(Product { id, name: format!("product {id} in {category_id}") })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let first = get_product(42, 7).await?;   // miss: runs the body
//! let again = get_product(42, 7).await?;   // hit
//! redcache::invalidate_tag("category:7").await?;
//! # assert_eq!(first.name, again.name);
//! # Ok(()) }
//! ```
//!
//! Without configuration the global cache ([`global`]) is built from the
//! environment: `REDCACHE_URL`, else `REDIS_URL`, else the embedded
//! in-memory backend. Set another with [`set_global`], or give a fn its own
//! with `cache = <expr>`.
//!
//! # Guarantees
//!
//! - **Every key expires.** Entries, tag epochs and locks are all written
//!   with a TTL; the cache never uses `KEYS` or `FLUSHALL`.
//! - **One load per key.** Concurrent misses of a key in one process share
//!   one load (a cancelled or panicking leader hands over to a waiter); on
//!   Redis a lock makes other processes wait (bounded) for that value.
//! - **Race-free tag invalidation in O(1).** Once [`invalidate_tag`] returns,
//!   no call returns a value whose load began before it, in any process.
//! - **Fail-open.** Every Redis operation is bounded by a timeout (50 ms by
//!   default); when Redis fails, the function runs and its value is
//!   returned. Only [`Cache::invalidate_tag`] and friends report errors.
//! - **Bad data is a miss.** An entry that does not decode is reloaded and
//!   overwritten, never a panic.
//! - **Two different calls never meet.** Default keys name the real fn
//!   (impl, trait and generic arguments); arguments are escaped (see
//!   [`Key`]) and placeholders are apart by `:`, so a template renders
//!   different arguments to different keys; an entry written by another
//!   template that renders the same key is a miss.

#![warn(missing_docs)]

mod admin;
mod backend;
mod breaker;
mod builder;
mod cache;
mod clock;
mod codec;
mod entry;
mod error;
mod flight;
mod glob;
mod global;
mod guarded;
mod identity;
mod key;
#[cfg(feature = "axum")]
mod layer;
mod limiter;
mod lock;
mod near;
mod pubsub;
mod rate_checks;
mod ratelimit;
mod redlock;
mod report;
mod serde_probe;
mod session;
mod stats;
mod stream;

#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

pub use admin::{ClearProgress, Clearing, Health, NodeHealth};
pub use breaker::CircuitState;
pub use builder::{CacheBuilder, DEFAULT_MAX_VALUE_SIZE, ENV_VARS};
pub use cache::{Cache, Cacheable, EntryOptions, Stampede};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{Codec, Compression};
pub use error::{Error, LoadTimeout, Result};
pub use global::{global, invalidate_key, invalidate_tag, set_global};
pub use key::{Key, KeyArg, KeyList};
#[cfg(feature = "axum")]
pub use layer::{RateLimit, RateLimitLayer};
pub use limiter::{rate_status, RateLimiter};
pub use lock::{LockGuard, LockOptions, Locked};
pub use near::{NearCache, NearStatus, NEAR_CACHE_ENV_VARS};
pub use pubsub::{Channel, Event, Events, Subscription};
pub use ratelimit::{Algorithm, OnError, Policy, RateLimited, RateStatus};
pub use redlock::{Redlock, RedlockGuard, RedlockOptions};
#[cfg(feature = "tower-sessions")]
pub use session::TowerSessionStore;
pub use session::{Session, SessionId, SessionStore};
pub use stats::Stats;
pub use stream::{
    Consumer, ConsumerBuilder, ConsumerStats, DeadLetter, Delivery, Entry, EntryId, EventStream,
    StartFrom, DEFAULT_MAX_LEN, DEFAULT_RETENTION,
};

#[doc(inline)]
pub use redcache_macros::{cache_put, cached, get_or_load, invalidates, key, locked, rate_limited};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
