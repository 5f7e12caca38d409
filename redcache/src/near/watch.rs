//! Watches: how an L1 entry learns that a key it depends on changed.
//!
//! An L1 entry holds one [`Watch`] for its key and one per tag epoch key.
//! An invalidation fires the watch of its key: every entry holding it is
//! dead from then on, whoever else holds it, without enumerating them. A
//! read takes its watches *before* it asks Redis, so an invalidation that
//! arrives while the read is under way (the race redis-rs' own client-side
//! cache has) fires a watch the read already holds, and the entry it fills
//! is born dead.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// One key (an entry's or a tag epoch's), watched by the L1 entries and
/// the reads in flight that depend on it.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    fired: AtomicBool,
}

impl Watch {
    /// Whether the key changed since this watch was taken.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
    }
}

const SHARDS: usize = 16;

/// The live watches by key. A key's watch is shared by everything that
/// depends on it until it fires; the next taker then gets a new one.
/// Watches nobody holds any more are pruned as a shard grows.
pub(crate) struct Watches {
    hasher: RandomState,
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Default)]
struct Shard {
    watches: HashMap<Box<str>, Weak<Watch>>,
    /// The size at which dead weak references are pruned next.
    prune_at: usize,
}

impl Default for Watches {
    fn default() -> Self {
        Watches {
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl Watches {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current watch of `key`.
    pub(crate) fn watch(&self, key: &str) -> Arc<Watch> {
        let mut shard = self.shard(key);
        if let Some(watch) = shard.watches.get(key).and_then(Weak::upgrade) {
            return watch;
        }
        if shard.watches.len() >= shard.prune_at {
            shard.watches.retain(|_, weak| weak.strong_count() > 0);
            shard.prune_at = (shard.watches.len() * 2).max(64);
        }
        let watch = Arc::new(Watch::default());
        shard.watches.insert(key.into(), Arc::downgrade(&watch));
        watch
    }

    /// `key` changed: everything that depends on it is dead.
    pub(crate) fn fire(&self, key: &str) {
        let removed = self.shard(key).watches.remove(key);
        if let Some(watch) = removed.and_then(|weak| weak.upgrade()) {
            watch.fire();
        }
    }

    /// Every key may have changed (a flush).
    pub(crate) fn fire_all(&self) {
        for shard in &self.shards {
            let drained: Vec<_> = {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.watches.drain().map(|(_, weak)| weak).collect()
            };
            for watch in drained.iter().filter_map(Weak::upgrade) {
                watch.fire();
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().watches.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_is_shared_until_it_fires_and_then_replaced() {
        let watches = Watches::default();
        let a = watches.watch("k");
        let b = watches.watch("k");
        assert!(Arc::ptr_eq(&a, &b));
        watches.fire("k");
        assert!(a.fired() && b.fired());
        let c = watches.watch("k");
        assert!(!c.fired(), "a watch taken after the change is alive");
        assert!(!watches.watch("other").fired());
    }

    #[test]
    fn firing_a_key_nobody_watches_does_nothing() {
        let watches = Watches::default();
        watches.fire("nobody");
        assert!(!watches.watch("nobody").fired());
    }

    #[test]
    fn fire_all_reaches_every_held_watch() {
        let watches = Watches::default();
        let held: Vec<_> = (0..100).map(|i| watches.watch(&format!("k{i}"))).collect();
        watches.fire_all();
        assert!(held.iter().all(|w| w.fired()));
    }

    #[test]
    fn watches_nobody_holds_are_pruned() {
        let watches = Watches::default();
        for i in 0..10_000 {
            drop(watches.watch(&format!("k{i}")));
        }
        assert!(watches.len() < 2_000, "{} watches kept", watches.len());
        let kept = watches.watch("kept");
        for i in 0..10_000 {
            drop(watches.watch(&format!("j{i}")));
        }
        assert!(
            Arc::ptr_eq(&kept, &watches.watch("kept")),
            "a held watch survives pruning"
        );
    }
}
