//! Tag invalidations that could not reach Redis: kept, retried before
//! later cached calls, and until delivered the tag bypasses the cache.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::Cache;
use crate::stats::Event;

impl Cache {
    /// Retries the invalidations that could not reach Redis; returns the
    /// tag keys still pending. A tag leaves the set only once its bump is
    /// delivered, so a concurrent call never sees it gone before then.
    pub(super) async fn retry_pending_invalidations(&self) -> HashSet<String> {
        let pending = self.pending().clone();
        for tag_key in pending {
            if self
                .inner
                .guarded
                .op(self.inner.guarded.backend.bump_epoch(&tag_key))
                .await
                .is_ok()
            {
                self.inner.guarded.counters.count(Event::Invalidation);
                tracing::info!(target: "redcache", tag_key, "pending invalidation delivered");
                self.pending().remove(&tag_key);
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
