//! Redlock: a lock held on a majority of N independent Redis masters
//! (not replicas of each other), so that it survives the loss of fewer
//! than half of them. Each master runs the same script as [`Cache::lock`];
//! the fencing token is the largest one the quorum issued, raised on each
//! master of the quorum so that the next quorum, which shares a master
//! with this one, issues a larger one.
//!
//! What Redlock does not give (see README, "Distributed locks"): safety
//! under process pauses and clock jumps. The fencing token, checked by the
//! resource, is what protects the resource.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::lock::{LockKeys, Locked, FENCE_TTL};

/// The masters of a Redlock, each a [`Cache`] on one independent Redis
/// server (its namespace prefixes the lock's keys there).
///
/// ```no_run
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut masters = Vec::new();
/// for url in ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"] {
///     masters.push(redcache::Cache::builder().redis(url).build().await?);
/// }
/// let redlock = redcache::Redlock::new(masters)?;
/// let guard = redlock.lock("invoice:42").ttl(Duration::from_secs(10)).acquire().await?;
/// // ... write with guard.fencing_token() ...
/// guard.release().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Redlock {
    masters: Arc<[Cache]>,
}

impl Redlock {
    /// A Redlock over `masters` (at least one; an odd number, 3 or 5, is
    /// what the algorithm is meant for).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for no masters.
    pub fn new(masters: impl IntoIterator<Item = Cache>) -> Result<Self> {
        let masters: Arc<[Cache]> = masters.into_iter().collect();
        if masters.is_empty() {
            return Err(Error::Config("a Redlock needs at least one master"));
        }
        Ok(Redlock { masters })
    }

    /// How many masters must grant the lock: a majority.
    pub fn quorum(&self) -> usize {
        self.masters.len() / 2 + 1
    }

    /// A lock on `resource` (defaults: a 30 s `ttl`, no `wait`).
    pub fn lock(&self, resource: &str) -> RedlockOptions {
        RedlockOptions {
            redlock: self.clone(),
            resource: resource.to_string(),
            ttl: Duration::from_secs(30),
            wait: Duration::ZERO,
        }
    }
}

/// A Redlock lock to take (see [`Redlock::lock`]).
#[derive(Debug, Clone)]
#[must_use = "a lock is taken by .acquire().await or .try_acquire().await"]
pub struct RedlockOptions {
    redlock: Redlock,
    resource: String,
    ttl: Duration,
    wait: Duration,
}

/// How far the masters' clocks may drift apart, as a fraction of the ttl
/// (plus 2 ms): subtracted from the time the lock is known to be valid.
const CLOCK_DRIFT: f64 = 0.01;

impl RedlockOptions {
    /// How long the lock lives on each master (default 30 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long [`acquire`](Self::acquire) keeps retrying, with random
    /// pauses (default none: one round).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// One round on every master.
    ///
    /// # Errors
    ///
    /// [`Locked`] when no quorum granted it in time.
    pub async fn try_acquire(&self) -> std::result::Result<RedlockGuard, Locked> {
        self.acquire_within(Duration::ZERO).await
    }

    /// Rounds until a quorum grants the lock, for up to [`wait`](Self::wait).
    ///
    /// # Errors
    ///
    /// [`Locked`] when no round got a quorum in time; it is
    /// [unreachable](Locked::is_unreachable) when too many masters could not
    /// be reached for a quorum.
    pub async fn acquire(&self) -> std::result::Result<RedlockGuard, Locked> {
        self.acquire_within(self.wait).await
    }

    async fn acquire_within(&self, wait: Duration) -> std::result::Result<RedlockGuard, Locked> {
        let masters = &self.redlock.masters;
        let quorum = self.redlock.quorum();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let token = format!("{:032x}", rand::random::<u128>());
            let started = tokio::time::Instant::now();
            let granted = join_all(masters.iter().map(|cache| {
                let keys = cache.lock_keys(&self.resource);
                let token = &token;
                async move {
                    let guarded = &cache.inner.guarded;
                    let attempt = guarded.backend.mutex_acquire(
                        &keys.lock,
                        &keys.fence,
                        token,
                        self.ttl,
                        FENCE_TTL,
                    );
                    guarded.op(attempt).await
                }
            }))
            .await;
            let mut tokens = Vec::new();
            let mut held = Vec::with_capacity(granted.len());
            let (mut reached, mut first_error) = (0, None);
            for result in granted {
                held.push(matches!(result, Ok(Some(_))));
                match result {
                    Ok(token) => {
                        reached += 1;
                        tokens.extend(token);
                    }
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            let drift = self.ttl.mul_f64(CLOCK_DRIFT) + Duration::from_millis(2);
            let valid_for = self.ttl.checked_sub(started.elapsed() + drift);
            if tokens.len() >= quorum {
                if let Some(valid_for) = valid_for {
                    let fencing_token = tokens.iter().copied().max().unwrap_or_default();
                    let guard = RedlockGuard {
                        redlock: self.redlock.clone(),
                        resource: self.resource.clone(),
                        token,
                        fencing_token,
                        valid_until: started + valid_for,
                        released: false,
                    };
                    // Every master of the quorum keeps the token issued:
                    // the next quorum shares one with it.
                    if guard.raise_fences(&held).await >= quorum {
                        return Ok(guard);
                    }
                    guard.release().await;
                } else {
                    release_all(masters, &self.resource, &token).await;
                }
            } else {
                // Not a quorum: free the masters that granted it.
                release_all(masters, &self.resource, &token).await;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                // Too few masters answered for a quorum at all: say why.
                let unreachable = first_error.filter(|_| reached < quorum).map(Arc::new);
                return Err(Locked::new(&self.resource, unreachable));
            }
            // A random pause, so that contenders do not retry in step.
            let pause = Duration::from_millis(10).mul_f64(1.0 + 9.0 * rand::random::<f64>());
            tokio::time::sleep(pause.min(deadline - now)).await;
        }
    }
}

async fn release_all(masters: &[Cache], resource: &str, token: &str) -> usize {
    let released = join_all(masters.iter().map(|cache| {
        let LockKeys { lock, .. } = cache.lock_keys(resource);
        async move {
            let guarded = &cache.inner.guarded;
            matches!(
                guarded
                    .op(guarded.backend.mutex_release(&lock, token))
                    .await,
                Ok(true)
            )
        }
    }))
    .await;
    released.into_iter().filter(|r| *r).count()
}

/// A lock held on a quorum of masters.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RedlockGuard {
    redlock: Redlock,
    resource: String,
    token: String,
    fencing_token: u64,
    valid_until: tokio::time::Instant,
    released: bool,
}

impl RedlockGuard {
    /// The largest fencing token the quorum issued: larger than every
    /// earlier holder's (see the module's note on clocks).
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// How long the lock is still known to be held: its ttl, less the time
    /// the acquisition took and the allowance for clock drift.
    pub fn validity(&self) -> Duration {
        self.valid_until
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// Raises the fence of every master that granted the lock to the
    /// token issued; returns on how many it succeeded.
    async fn raise_fences(&self, held: &[bool]) -> usize {
        let raised = join_all(self.redlock.masters.iter().zip(held).map(|(cache, &held)| {
            let keys = cache.lock_keys(&self.resource);
            async move {
                if !held {
                    return false;
                }
                let guarded = &cache.inner.guarded;
                let raise = guarded
                    .backend
                    .raise_fence(&keys.fence, self.fencing_token, FENCE_TTL);
                guarded.op(raise).await.is_ok()
            }
        }))
        .await;
        raised.into_iter().filter(|r| *r).count()
    }

    /// Gives the lock `ttl` on every master that still holds it.
    ///
    /// # Errors
    ///
    /// [`Error::LockLost`] when fewer than a quorum still held it.
    pub async fn extend(&mut self, ttl: Duration) -> Result<()> {
        let started = tokio::time::Instant::now();
        let extended = join_all(self.redlock.masters.iter().map(|cache| {
            let keys = cache.lock_keys(&self.resource);
            let token = &self.token;
            async move {
                let guarded = &cache.inner.guarded;
                matches!(
                    guarded
                        .op(guarded.backend.mutex_extend(&keys.lock, token, ttl))
                        .await,
                    Ok(true)
                )
            }
        }))
        .await;
        if extended.into_iter().filter(|e| *e).count() < self.redlock.quorum() {
            return Err(Error::LockLost(self.resource.clone()));
        }
        let drift = ttl.mul_f64(CLOCK_DRIFT) + Duration::from_millis(2);
        self.valid_until = started + ttl.saturating_sub(drift);
        Ok(())
    }

    /// Frees the lock on every master (where this guard's token holds it).
    /// Returns on how many masters it was still held.
    pub async fn release(mut self) -> usize {
        self.released = true;
        release_all(&self.redlock.masters, &self.resource, &self.token).await
    }
}

impl Drop for RedlockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (masters, resource, token) = (
            Arc::clone(&self.redlock.masters),
            std::mem::take(&mut self.resource),
            std::mem::take(&mut self.token),
        );
        runtime.spawn(async move {
            release_all(&masters, &resource, &token).await;
        });
    }
}
