//! The cross-process load lock (Redis): `SET NX PX` with a random token,
//! released by its holder only, waited for with bounded backoff.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{prefixed, Cache, Call};
use crate::backend::Read;
use crate::entry::{self, Decoded, Epoch};
use crate::stats::Event;

/// What waiting on another process's load lock ended with.
pub(super) enum Locking<T> {
    /// A tag was invalidated since the call read its epochs.
    Superseded,
    /// This caller holds the lock and loads.
    Held(LoadLock),
    /// The other process stored the value meanwhile (decoded, and encoded
    /// for this process's followers).
    Found(T),
    /// Load without the lock (waited too long, or Redis failed).
    Unlocked,
}

impl Cache {
    /// Takes the cross-process load lock of `call`, or waits (bounded) for
    /// the process holding it to store the value. `epochs` are the tag
    /// epochs this call read: once they moved on, its load could not be
    /// stored, and it reads again instead of loading.
    pub(super) async fn lock_or_wait<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        epochs: &[Epoch],
    ) -> Locking<T> {
        let backend = &self.inner.guarded.backend;
        if !backend.is_remote() {
            return Locking::Unlocked;
        }
        let lock_key = prefixed(&self.inner.lock_prefix, call.key);
        let token = format!("{:032x}", rand::random::<u128>());
        // The deadline is on the cache's clock (a test moves it past the
        // wait); the polls in between sleep on tokio's timer.
        let clock = &self.inner.clock;
        let deadline = clock.now_micros() + self.inner.lock_wait.as_micros() as u64;
        let mut backoff = Duration::from_millis(5);
        let mut waited = false;
        loop {
            match self
                .inner
                .guarded
                .op(backend.try_lock(&lock_key, &token, self.inner.lock_ttl))
                .await
            {
                Ok(true) => {
                    let lock = LoadLock {
                        cache: self.clone(),
                        key: lock_key,
                        token,
                        released: false,
                    };
                    if !waited {
                        return Locking::Held(lock);
                    }
                    // The holder this call waited for has just let go, most
                    // likely after storing: look before loading again.
                    return match self.look_again(call, key, tag_keys, epochs).await {
                        Some(found) => {
                            lock.release().await;
                            found
                        }
                        None => Locking::Held(lock),
                    };
                }
                Ok(false) => {}
                Err(error) => {
                    self.inner.guarded.backend_failed("lock", &error);
                    return Locking::Unlocked;
                }
            }
            if !waited {
                waited = true;
                self.inner
                    .guarded
                    .counters
                    .count(Event::LockWait(call.name));
                tracing::debug!(target: "redcache", key = call.key, "lock wait");
            }
            let now = clock.now_micros();
            if now >= deadline {
                tracing::warn!(target: "redcache", key = call.key, waited = ?self.inner.lock_wait,
                    "another process holds the load lock too long; loading without it");
                return Locking::Unlocked;
            }
            tokio::time::sleep(backoff.min(Duration::from_micros(deadline - now))).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
            if let Some(found) = self.look_again(call, key, tag_keys, epochs).await {
                return found;
            }
        }
    }

    /// A read while waiting on the load lock: `Found` for a fresh entry,
    /// `Superseded` once a tag's epoch differs from what the call read,
    /// `Unlocked` if Redis failed; `None` to keep waiting.
    async fn look_again<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        epochs: &[Epoch],
    ) -> Option<Locking<T>> {
        match self
            .inner
            .guarded
            .op(self.inner.guarded.backend.read(key, tag_keys))
            .await
        {
            Ok(Read { value, epochs: now }) => {
                if now != epochs {
                    tracing::debug!(target: "redcache", key = call.key,
                        "a tag was invalidated while waiting for the load lock; reading again");
                    return Some(Locking::Superseded);
                }
                let bytes = value?;
                // An expired value is no answer: the holder is refreshing it.
                match entry::decode::<T>(&bytes, call.name, call.tags, &now, self.now_ms()) {
                    Decoded::Fresh(found) => Some(Locking::Found(found.value)),
                    _ => None,
                }
            }
            Err(error) => {
                self.inner.guarded.backend_failed("read", &error);
                Some(Locking::Unlocked)
            }
        }
    }
}

/// The cross-process load lock, held while this process loads. It is
/// released once the value is stored; if the load is cancelled or panics,
/// dropping the guard releases it in the background, so other processes do
/// not wait for its TTL.
pub(super) struct LoadLock {
    cache: Cache,
    pub(super) key: String,
    pub(super) token: String,
    /// Set when the lock went with the entry's write (one script).
    pub(super) released: bool,
}

impl LoadLock {
    /// Releases the lock, unless the write already did.
    pub(super) async fn release(mut self) {
        if !self.released {
            self.released = true;
            self.cache.unlock(&self.key, &self.token).await;
        }
    }
}

impl Drop for LoadLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (cache, key, token) = (
                self.cache.clone(),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            runtime.spawn(async move { cache.unlock(&key, &token).await });
        }
    }
}

impl Cache {
    /// Releases a load lock if `token` still holds it (compare-and-delete).
    async fn unlock(&self, lock_key: &str, token: &str) {
        if let Err(error) = self
            .inner
            .guarded
            .op(self.inner.guarded.backend.unlock(lock_key, token))
            .await
        {
            self.inner.guarded.backend_failed("unlock", &error);
        }
    }
}
