//! Invalidations that could not reach Redis (of a tag, or of one key by
//! `invalidate_key` or a failed `put`): kept, retried before later cached
//! calls, and until delivered the tag or key bypasses the cache in this
//! process.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::Cache;
use crate::backend::{Replace, Write, INVALIDATED_EPOCH_TTL};
use crate::entry;
use crate::error::Result;
use crate::stats::Event;

impl Cache {
    /// Delivers the invalidation of `key` (a tag's epoch key or an entry
    /// key, prefixed); if Redis cannot be reached, keeps it for a retry and
    /// returns the error.
    pub(super) async fn deliver_or_keep(&self, key: String) -> Result<()> {
        match self.deliver(&key).await {
            Ok(()) => Ok(()),
            Err(error) => {
                // Not lost: retried before the next cached call, and until
                // it succeeds this process serves nothing cached under it.
                tracing::warn!(target: "redcache", key, %error,
                    "invalidation could not reach redis; it will be retried, and the key bypasses the cache until then");
                self.keep_pending(key);
                Err(error)
            }
        }
    }

    /// One invalidation: a tag's epoch bumped, or an entry replaced by a
    /// tombstone (which loads that began before it cannot overwrite).
    async fn deliver(&self, key: &str) -> Result<()> {
        let guarded = &self.inner.guarded;
        if key.starts_with(&self.inner.tag_prefix) {
            let epoch = guarded.op(guarded.backend.bump_epoch(key)).await?;
            tracing::debug!(target: "redcache", tag_key = key, epoch, "tag invalidated");
        } else {
            let tombstone = entry::tombstone();
            let write = Write {
                key,
                bytes: &tombstone,
                ttl: INVALIDATED_EPOCH_TTL,
                tag_keys: &[],
                epochs: &[],
                replace: Replace::Always,
                unlock: None,
            };
            guarded.op(guarded.backend.write(write)).await?;
            tracing::debug!(target: "redcache", key, "key invalidated");
        }
        guarded.counters.count(Event::Invalidation);
        Ok(())
    }

    /// Keeps an invalidation that could not be delivered.
    pub(super) fn keep_pending(&self, key: String) {
        self.pending().insert(key);
        self.inner.has_pending.store(true, Ordering::SeqCst);
    }

    /// Retries the invalidations that could not reach Redis; returns the
    /// keys still pending. A key leaves the set only once its invalidation
    /// is delivered, so a concurrent call never sees it gone before then.
    ///
    /// One retry at a time: calls that arrive meanwhile do not deliver the
    /// same invalidations again (a second tombstone could wipe a `put` made
    /// in between); they see what is still pending.
    pub(super) async fn retry_pending_invalidations(&self) -> HashSet<String> {
        let retrying = &self.inner.retrying;
        if retrying
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let _done = Retrying(retrying);
            let pending = self.pending().clone();
            for key in pending {
                if self.deliver(&key).await.is_ok() {
                    tracing::info!(target: "redcache", key, "pending invalidation delivered");
                    self.pending().remove(&key);
                }
            }
        }
        let pending = self.pending();
        self.inner
            .has_pending
            .store(!pending.is_empty(), Ordering::SeqCst);
        pending.clone()
    }

    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends a retry, also when its future is dropped.
struct Retrying<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Retrying<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
