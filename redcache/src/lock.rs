//! Distributed locks: [`Cache::lock`], a mutex on Redis (`SET NX PX` with a
//! random token, freed only by its holder) that also issues a fencing
//! token, strictly increasing per resource, in the same script.
//!
//! Locks fail closed: when Redis cannot be reached the lock is not taken
//! and the caller is told ([`Locked::is_unreachable`]). (The cache itself
//! fails open: a cached fn runs its body when Redis is down.)

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cache::Cache;
use crate::error::{Error, Result};

/// How long a resource's last fencing token is kept after its last
/// acquisition. Tokens also grow with the server's clock, so they keep
/// growing when this key has expired; it only has to outlive clock skew.
pub(crate) const FENCE_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Why a lock was not acquired: another holder has it (for longer than the
/// `wait`), or Redis could not be reached (locks fail closed).
///
/// `#[locked]` fns return it as their error (`E: From<Locked>`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", match &self.unreachable {
    None => format!("the lock `{}` is held by another holder", self.resource),
    Some(error) => format!("the lock `{}` could not be taken: {error}", self.resource),
})]
pub struct Locked {
    resource: String,
    /// Why Redis could not be asked, when it could not.
    unreachable: Option<Arc<Error>>,
}

impl Locked {
    pub(crate) fn new(resource: &str, unreachable: Option<Arc<Error>>) -> Self {
        Locked {
            resource: resource.to_string(),
            unreachable,
        }
    }

    /// The resource, as given to [`Cache::lock`].
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Whether the lock was not taken because Redis could not be reached
    /// (not because another holder has it).
    pub fn is_unreachable(&self) -> bool {
        self.unreachable.is_some()
    }
}

/// A lock to take: [`Cache::lock`], then its options, then
/// [`acquire`](Self::acquire) or [`try_acquire`](Self::try_acquire).
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = redcache::Cache::builder().build().await?;
/// let order = 123;
/// let guard = cache
///     .lock(&redcache::key!("order:payment:<order>"))
///     .ttl(Duration::from_secs(30))
///     .wait(Duration::from_secs(5))
///     .acquire()
///     .await?;
/// // ... charge the card, passing guard.fencing_token() to the payment store ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a lock is taken by .acquire().await or .try_acquire().await"]
pub struct LockOptions {
    cache: Cache,
    resource: String,
    ttl: Duration,
    wait: Duration,
    auto_extend: bool,
}

impl Cache {
    /// A distributed lock on `resource` (render it with
    /// [`key!`](crate::key), as keys are, so that arguments cannot collide).
    /// Defaults: a 30 s `ttl`, no `wait`, no automatic extension.
    pub fn lock(&self, resource: &str) -> LockOptions {
        LockOptions {
            cache: self.clone(),
            resource: resource.to_string(),
            ttl: Duration::from_secs(30),
            wait: Duration::ZERO,
            auto_extend: false,
        }
    }
}

impl LockOptions {
    /// How long the lock is held at most unless extended (default 30 s): a
    /// holder that dies frees it after this.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long [`acquire`](Self::acquire) waits for another holder to
    /// release (default none: one attempt). It retries with growing,
    /// jittered pauses.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Extends the lock in the background every third of its `ttl` while
    /// the guard lives (a watchdog for long jobs). If an extension finds
    /// the lock gone, or Redis stays unreachable until the lock would have
    /// expired, the guard is [lost](LockGuard::lost).
    pub fn auto_extend(mut self) -> Self {
        self.auto_extend = true;
        self
    }

    /// One attempt: the guard, or [`Locked`] when another holder has the
    /// lock or Redis cannot be reached.
    ///
    /// # Errors
    ///
    /// [`Locked`], as said.
    pub async fn try_acquire(&self) -> std::result::Result<LockGuard, Locked> {
        self.acquire_within(Duration::ZERO).await
    }

    /// Takes the lock, waiting up to [`wait`](Self::wait) for another
    /// holder to release it.
    ///
    /// # Errors
    ///
    /// [`Locked`] when it is still held after the wait, or at once when
    /// Redis cannot be reached.
    pub async fn acquire(&self) -> std::result::Result<LockGuard, Locked> {
        self.acquire_within(self.wait).await
    }

    async fn acquire_within(&self, wait: Duration) -> std::result::Result<LockGuard, Locked> {
        let keys = self.cache.lock_keys(&self.resource);
        let token = format!("{:032x}", rand::random::<u128>());
        let guarded = &self.cache.inner.guarded;
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            let attempt =
                guarded
                    .backend
                    .mutex_acquire(&keys.lock, &keys.fence, &token, self.ttl, FENCE_TTL);
            match guarded.op(attempt).await {
                Ok(Some(fencing_token)) => {
                    return Ok(LockGuard::new(self, keys, token, fencing_token));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(target: "redcache", resource = self.resource, %error, "lock not taken: Redis could not be reached");
                    return Err(Locked {
                        resource: self.resource.clone(),
                        unreachable: Some(Arc::new(error)),
                    });
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Locked {
                    resource: self.resource.clone(),
                    unreachable: None,
                });
            }
            // Jittered, so that waiters do not retry in step.
            let jittered = pause.mul_f64(0.5 + rand::random::<f64>());
            tokio::time::sleep(jittered.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// The keys of one resource's lock: the lock and its last fencing token,
/// in one cluster slot (the resource is their hash tag).
#[derive(Debug, Clone)]
pub(crate) struct LockKeys {
    pub(crate) lock: String,
    pub(crate) fence: String,
}

impl Cache {
    pub(crate) fn lock_keys(&self, resource: &str) -> LockKeys {
        let ns = &self.inner.namespace;
        // The resource is the keys' hash tag, after a `#` so that the tag
        // is never empty (`{}` is none, and `{}x}` neither): the namespace
        // holds no brace, so both keys' tags are the same whatever the
        // resource holds, and the script's two keys share a slot.
        LockKeys {
            lock: format!("{ns}:mutex:{{#{resource}}}"),
            fence: format!("{ns}:fence:{{#{resource}}}"),
        }
    }
}

/// A held lock. Released by [`release`](Self::release), or in the
/// background when dropped (also on a panic or a cancelled task); if its
/// holder dies, it expires after its `ttl`.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    cache: Cache,
    resource: String,
    keys: LockKeys,
    token: String,
    fencing_token: u64,
    lost: watch::Receiver<bool>,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

impl LockGuard {
    fn new(options: &LockOptions, keys: LockKeys, token: String, fencing_token: u64) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let watchdog = options.auto_extend.then(|| {
            let watchdog = Watchdog {
                cache: options.cache.clone(),
                key: keys.lock.clone(),
                token: token.clone(),
                ttl: options.ttl,
                lost: lost_tx,
            };
            tokio::spawn(watchdog.run())
        });
        LockGuard {
            cache: options.cache.clone(),
            resource: options.resource.clone(),
            keys,
            token,
            fencing_token,
            lost,
            watchdog,
            released: false,
        }
    }

    /// The fencing token issued with this lock: larger than that of every
    /// earlier holder of the resource. Pass it to the resource the lock
    /// protects, and have it refuse a write with a token smaller than one
    /// it already saw: that, not the lock alone, keeps a holder that
    /// stalled past its `ttl` from overwriting the next holder's work.
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// The resource, as given to [`Cache::lock`].
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Gives the lock `ttl` from now, if this guard still holds it.
    ///
    /// # Errors
    ///
    /// [`Error::LockLost`] when it no longer does (it expired, and maybe
    /// another holder took it); a Redis error when Redis cannot be reached
    /// (the lock then expires at its old time).
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let guarded = &self.cache.inner.guarded;
        match guarded
            .op(guarded
                .backend
                .mutex_extend(&self.keys.lock, &self.token, ttl))
            .await?
        {
            true => Ok(()),
            false => Err(Error::LockLost(self.resource.clone())),
        }
    }

    /// Whether the watchdog found the lock gone (always false without
    /// [`auto_extend`](LockOptions::auto_extend)).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the watchdog finds the lock gone; never without
    /// [`auto_extend`](LockOptions::auto_extend). Race it against the work
    /// with `tokio::select!` to stop work whose lock is gone.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // The watchdog ended without finding the lock gone.
            std::future::pending::<()>().await;
        }
    }

    /// Frees the lock now (a compare-and-delete: never another holder's).
    ///
    /// # Errors
    ///
    /// [`Error::LockLost`] when this guard no longer held it (it expired
    /// meanwhile); a Redis error when Redis cannot be reached (the lock
    /// then expires after its `ttl`).
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        let guarded = &self.cache.inner.guarded;
        match guarded
            .op(guarded.backend.mutex_release(&self.keys.lock, &self.token))
            .await?
        {
            true => Ok(()),
            false => Err(Error::LockLost(self.resource.clone())),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        if self.released {
            return;
        }
        // Released in the background: a drop cannot wait. Without a
        // runtime (one shutting down) the lock expires after its ttl.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cache, key, token) = (
            self.cache.clone(),
            self.keys.lock.clone(),
            std::mem::take(&mut self.token),
        );
        runtime.spawn(async move {
            let guarded = &cache.inner.guarded;
            if let Err(error) = guarded.op(guarded.backend.mutex_release(&key, &token)).await {
                tracing::debug!(target: "redcache", key, %error, "lock not released on drop; it expires after its ttl");
            }
        });
    }
}

/// Extends a lock every third of its ttl until aborted, or until the lock
/// is found gone (or could not be extended before it would expire).
struct Watchdog {
    cache: Cache,
    key: String,
    token: String,
    ttl: Duration,
    lost: watch::Sender<bool>,
}

impl Watchdog {
    async fn run(self) {
        let every = (self.ttl / 3).max(Duration::from_millis(1));
        let mut held_until = tokio::time::Instant::now() + self.ttl;
        loop {
            tokio::time::sleep(every).await;
            let guarded = &self.cache.inner.guarded;
            let attempt = guarded
                .backend
                .mutex_extend(&self.key, &self.token, self.ttl);
            let started = tokio::time::Instant::now();
            match guarded.op(attempt).await {
                Ok(true) => held_until = started + self.ttl,
                Ok(false) => break,
                Err(error) if tokio::time::Instant::now() + every >= held_until => {
                    tracing::warn!(target: "redcache", key = self.key, %error, "lock could not be extended before it expires");
                    break;
                }
                Err(_) => {}
            }
        }
        tracing::warn!(target: "redcache", key = self.key, "lock lost: its holder should stop");
        let _ = self.lost.send(true);
    }
}
