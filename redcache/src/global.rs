//! The process-wide cache that the attributes use unless given `cache = ...`.

use std::sync::{PoisonError, RwLock};

use crate::builder::{CacheBuilder, ENV_VARS};
use crate::cache::Cache;
use crate::error::Result;

static GLOBAL: RwLock<Option<Cache>> = RwLock::new(None);

/// Makes `cache` the one that `#[cached]`, [`invalidate_tag`] and
/// [`invalidate_key`] use from now on (replacing any earlier one).
///
/// If it is never called, the global cache is built with
/// [`Cache::from_env`] on first use.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redcache::Error> {
/// let cache = redcache::Cache::builder().namespace("shop").build().await?;
/// redcache::set_global(cache);
/// # Ok(()) }
/// ```
pub fn set_global(cache: Cache) {
    *GLOBAL.write().unwrap_or_else(PoisonError::into_inner) = Some(cache);
}

/// The global cache: the one `#[cached]`, [`invalidate_tag`] and
/// [`invalidate_key`] use unless given `cache = ...`. Built from the
/// environment on first use ([`Cache::from_env`]), unless [`set_global`]
/// gave one. Call it for the zero-config cache's [`stats`](Cache::stats).
/// Must be called inside a tokio runtime (it is, from a cached async fn).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let stats = redcache::global().stats();
/// assert_eq!(stats.errors, 0);
/// # }
/// ```
///
/// # Panics
///
/// On first use, if `REDCACHE_URL` or `REDIS_URL` holds something that is
/// not a usable URL (a typo such as `memroy`, a raw `,` in a password): a
/// misconfiguration that would otherwise switch caching off in silence.
/// The message says what to write. A server that is only unreachable does
/// not panic: it is reported once, and calls run uncached until it answers.
pub fn global() -> Cache {
    if let Some(cache) = GLOBAL
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        return cache.clone();
    }
    let mut slot = GLOBAL.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(cache) = slot.as_ref() {
        return cache.clone();
    }
    let builder = CacheBuilder::from_env();
    let cache = builder.build_now().unwrap_or_else(|error| {
        let vars = ENV_VARS.join(" or ");
        panic!("redcache: cannot build the global cache from {vars}: {error}")
    });
    cache.inner.guarded.check_reachable();
    *slot = Some(cache.clone());
    cache
}

/// [`Cache::invalidate_tag`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_tag`].
pub async fn invalidate_tag(tag: &str) -> Result<()> {
    global().invalidate_tag(tag).await
}

/// [`Cache::invalidate_key`] on the global cache.
///
/// # Errors
///
/// As [`Cache::invalidate_key`].
pub async fn invalidate_key(key: &str) -> Result<()> {
    global().invalidate_key(key).await
}
