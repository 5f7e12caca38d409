//! The process-wide cache that the attributes use unless given `cache = ...`.

use std::sync::{PoisonError, RwLock};

use crate::builder::CacheBuilder;
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

/// The global cache, built from the environment on first use. Must be called
/// inside a tokio runtime (it is, from a cached async fn).
#[doc(hidden)]
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
        tracing::error!(target: "redcache", %error,
            "cannot build the global cache from the environment; cached functions will run uncached");
        builder.unavailable(error.to_string())
    });
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
