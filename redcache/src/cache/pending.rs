//! Invalidations that could not reach Redis (of a tag, or of one key by
//! `invalidate_key` or a failed `put`): kept, retried before later cached
//! calls, and until delivered the tag or key bypasses the cache in this
//! process.

use std::collections::{HashMap, HashSet};
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
        let before = self.pending_generation(&key);
        // Also when it fails, this process's copies are dropped: the key
        // bypasses the cache until delivered.
        let delivered = self.deliver(&key).await;
        match delivered {
            Ok(()) => {
                // Newer than what was pending for this key: that retry would
                // only repeat it (or wipe a put made since).
                self.settle(&key, before);
                Ok(())
            }
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
            let epoch = self.bump_epoch(key).await?;
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
            self.write_entry(write).await?;
            tracing::debug!(target: "redcache", key, "key invalidated");
        }
        guarded.counters.count(Event::Invalidation);
        Ok(())
    }

    /// Keeps an invalidation that could not be delivered, as a new
    /// generation of the key's pending entry: a retry already under way
    /// for an older one will not remove it.
    pub(super) fn keep_pending(&self, key: String) {
        let generation = self
            .inner
            .pending_generations
            .fetch_add(1, Ordering::SeqCst);
        self.pending().insert(key, generation);
        self.inner.has_pending.store(true, Ordering::SeqCst);
    }

    /// The generation of `key`'s pending invalidation, if any.
    pub(super) fn pending_generation(&self, key: &str) -> Option<u64> {
        self.pending().get(key).copied()
    }

    /// A write or invalidation of `key` reached Redis: the pending one of
    /// generation `before` (seen when it began) is done with. One recorded
    /// since stays.
    pub(super) fn settle(&self, key: &str, before: Option<u64>) {
        if let Some(generation) = before {
            let mut pending = self.pending();
            if pending.get(key) == Some(&generation) {
                pending.remove(key);
            }
        }
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
            let pending: Vec<(String, u64)> = self
                .pending()
                .iter()
                .map(|(k, g)| (k.clone(), *g))
                .collect();
            for (key, generation) in pending {
                if self.deliver(&key).await.is_ok() {
                    tracing::info!(target: "redcache", key, "pending invalidation delivered");
                    self.settle(&key, Some(generation));
                }
            }
        }
        let pending = self.pending();
        self.inner
            .has_pending
            .store(!pending.is_empty(), Ordering::SeqCst);
        pending.keys().cloned().collect()
    }

    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
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
