//! Where entries live: Redis, or an embedded in-memory store with the same
//! semantics. The engine in `cache.rs` talks to a [`Backend`] only through
//! the operations below; each is one round trip on Redis.

use std::time::Duration;

use crate::entry::Epoch;
use crate::error::Result;
use crate::ratelimit::{Mode, Request, Verdict};

pub(crate) mod connection;
pub(crate) mod memory;
pub(crate) mod redis;
pub(crate) mod sessions;

/// What a read found: the entry's bytes (if any) and the current epoch of
/// each tag asked for, in order.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) epochs: Vec<Epoch>,
}

/// An entry to store, with the tag epochs its load was based on.
pub(crate) struct Write<'a> {
    pub(crate) key: &'a str,
    pub(crate) bytes: &'a [u8],
    pub(crate) ttl: Duration,
    pub(crate) tag_keys: &'a [String],
    pub(crate) epochs: &'a [Epoch],
    /// What the write may replace.
    pub(crate) replace: Replace<'a>,
    /// The cross-process load lock, released with the entry where one
    /// command can do both (see [`Written::unlocked`]).
    pub(crate) unlock: Option<Unlock<'a>>,
}

/// What a write may replace.
#[derive(Clone, Copy)]
pub(crate) enum Replace<'a> {
    /// Only what its load began from: the entry with this head (see
    /// `entry::head`), or nothing when the head is empty. A write that came
    /// in between (a put, a tombstone) is never replaced; nor is a key that
    /// emptied since (the write that emptied it may have been newer).
    IfHead(&'a [u8]),
    /// Whatever the key holds: a `put`, a tombstone.
    Always,
}

impl Replace<'_> {
    /// Whether a key holding `current` (its bytes, if any) may be replaced.
    pub(crate) fn allows(&self, current: Option<&[u8]>) -> bool {
        match self {
            Replace::IfHead(head) => crate::entry::head(current) == *head,
            Replace::Always => true,
        }
    }
}

/// What a write did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    /// The entry was stored: no tag was invalidated during the load, and
    /// the key still held what the load began from.
    pub(crate) stored: bool,
    /// The load lock was released with it; otherwise its holder releases it.
    pub(crate) unlocked: bool,
}

/// A load lock: its key and the token it was taken with.
#[derive(Clone, Copy)]
pub(crate) struct Unlock<'a> {
    pub(crate) key: &'a str,
    pub(crate) token: &'a str,
}

/// What to do with a live session (see `scripts/session_touch.lua`);
/// field names are the user's (the backend keeps them apart from its own).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionOp<'a> {
    All,
    Get(&'a str),
    Set(&'a str, &'a [u8]),
    Del(&'a str),
    /// Delete it.
    End,
}

/// What a session operation found.
#[derive(Debug)]
pub(crate) enum SessionReply {
    /// No live session with that id.
    Missing,
    /// Every field, and the user ("" for none).
    All(Vec<(String, Vec<u8>)>, String),
    Field(Option<Vec<u8>>),
    Done,
    /// Deleted; its user ("" for none).
    Ended(String),
}

/// How long a tag's epoch key outlives the entries recorded under it, so
/// that an entry never outlives the epoch it was checked against.
pub(crate) const EPOCH_MARGIN: Duration = Duration::from_secs(5);

/// The least time an epoch key lives after an invalidation. A load that
/// began before the invalidation must still see the bumped epoch when it
/// writes, so the engine does not write loads that took longer than half
/// of this (see `Cache::store`).
pub(crate) const INVALIDATED_EPOCH_TTL: Duration = Duration::from_secs(24 * 60 * 60);

// Built once per cache and kept behind its `Arc<Guarded>`: never moved on
// a hot path, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Memory(memory::MemoryBackend),
    Redis(redis::RedisBackend),
}

impl Backend {
    pub(crate) async fn read(&self, key: &str, tag_keys: &[String]) -> Result<Read> {
        match self {
            Backend::Memory(b) => Ok(b.read(key, tag_keys).await),
            Backend::Redis(b) => b.read(key, tag_keys).await,
        }
    }

    /// Stores the entry unless one of its tags was invalidated since the
    /// epochs were read, or the key no longer holds what `write.replace`
    /// allows.
    pub(crate) async fn write(&self, write: Write<'_>) -> Result<Written> {
        match self {
            Backend::Memory(b) => Ok(Written {
                stored: b.write(write).await,
                unlocked: false,
            }),
            Backend::Redis(b) => b.write(write).await,
        }
    }

    /// The current epoch of each tag, for a write not based on a read.
    pub(crate) async fn epochs(&self, tag_keys: &[String]) -> Result<Vec<Epoch>> {
        if tag_keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Backend::Memory(b) => Ok(b.epochs(tag_keys)),
            Backend::Redis(b) => b.epochs(tag_keys).await,
        }
    }

    pub(crate) async fn bump_epoch(&self, tag_key: &str) -> Result<Epoch> {
        match self {
            Backend::Memory(b) => Ok(b.bump_epoch(tag_key).await),
            Backend::Redis(b) => b.bump_epoch(tag_key).await,
        }
    }

    /// The size in bytes of the value at `key` (0 when absent), asked
    /// aside from the commands in flight: after a read timed out, whether
    /// the server answers at all, and whether the entry made it slow.
    pub(crate) async fn size_aside(&self, key: &str) -> Result<u64> {
        match self {
            Backend::Memory(b) => Ok(b.size(key).await),
            Backend::Redis(b) => b.size(key).await,
        }
    }

    /// Removes an entry, aside from the commands in flight.
    pub(crate) async fn unlink_aside(&self, key: &str) -> Result<()> {
        match self {
            Backend::Memory(b) => {
                b.delete(key).await;
                Ok(())
            }
            Backend::Redis(b) => b.unlink_aside(key).await,
        }
    }

    /// A round trip aside from the commands in flight.
    pub(crate) async fn ping_aside(&self) -> Result<()> {
        match self {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(b) => b.ping_aside().await,
        }
    }

    /// A round trip, to find out whether the backend answers.
    pub(crate) async fn ping(&self) -> Result<()> {
        match self {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(b) => b.ping().await,
        }
    }

    /// Where the backend is, for messages (passwords redacted).
    pub(crate) fn endpoint(&self) -> String {
        match self {
            Backend::Memory(_) => "memory".into(),
            Backend::Redis(b) => b.endpoint(),
        }
    }

    /// Why the backend cannot be reached, found by a fresh connection
    /// attempt: "Connection refused", a DNS failure, or no answer in time.
    /// `None` when it answers now.
    pub(crate) async fn diagnose(&self) -> Option<String> {
        match self {
            Backend::Redis(b) => b.diagnose().await,
            Backend::Memory(_) => None,
        }
    }

    /// Checks (and in [`Mode::Consume`], takes from) the quotas of
    /// `request`, whose policies' state lives at `keys`. The embedded
    /// backend reads the time from `now_us`; Redis uses its own clock.
    pub(crate) async fn rate_limit(
        &self,
        keys: &[String],
        request: &Request<'_>,
        mode: Mode,
        now_us: u64,
    ) -> Result<Vec<Verdict>> {
        match self {
            Backend::Memory(b) => {
                Ok(b.rates
                    .check(keys, request.policies, request.cost, mode, now_us))
            }
            Backend::Redis(b) => b.rate_limit(keys, request, mode).await,
        }
    }

    /// Whether operations leave the process (Redis): they are then bounded
    /// by the operation timeout and guarded by the circuit breaker, and
    /// loads are coordinated across processes by a lock.
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Backend::Redis(_))
    }

    /// `SET key token NX PX ttl`: true when this caller now holds the
    /// cross-process load lock. The embedded backend lives in one process,
    /// where the single flight already coordinates loads: always true.
    pub(crate) async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        match self {
            Backend::Memory(_) => Ok(true),
            Backend::Redis(b) => b.try_lock(key, token, ttl).await,
        }
    }

    /// Releases the load lock if `token` still holds it.
    pub(crate) async fn unlock(&self, key: &str, token: &str) -> Result<()> {
        match self {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(b) => b.unlock(key, token).await,
        }
    }

    /// Takes the distributed lock at `key` for `token`, with the next
    /// fencing token of the resource (kept at `fence_key` for `fence_ttl`);
    /// `None` while another token holds it.
    pub(crate) async fn mutex_acquire(
        &self,
        key: &str,
        fence_key: &str,
        token: &str,
        ttl: Duration,
        fence_ttl: Duration,
    ) -> Result<Option<u64>> {
        match self {
            Backend::Memory(b) => Ok(b.mutex_acquire(key, fence_key, token, ttl, fence_ttl)),
            Backend::Redis(b) => b.mutex_acquire(key, fence_key, token, ttl, fence_ttl).await,
        }
    }

    /// Gives the lock at `key` a new `ttl` if `token` still holds it.
    pub(crate) async fn mutex_extend(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        match self {
            Backend::Memory(b) => Ok(b.mutex_extend(key, token, ttl)),
            Backend::Redis(b) => b.mutex_extend(key, token, ttl).await,
        }
    }

    /// Raises the last fencing token at `fence_key` to at least `token`.
    pub(crate) async fn raise_fence(
        &self,
        fence_key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<()> {
        match self {
            Backend::Memory(b) => {
                b.raise_fence(fence_key, token, ttl);
                Ok(())
            }
            Backend::Redis(b) => b.raise_fence(fence_key, token, ttl).await,
        }
    }

    /// Frees the lock at `key` if `token` still holds it; true if it did.
    pub(crate) async fn mutex_release(&self, key: &str, token: &str) -> Result<bool> {
        match self {
            Backend::Memory(b) => Ok(b.mutex_release(key, token)),
            Backend::Redis(b) => b.mutex_release(key, token).await,
        }
    }

    /// Creates a session at `key` for `user` ("" for none); false if the
    /// id is taken.
    pub(crate) async fn session_create(
        &self,
        key: &str,
        idle: Duration,
        max: Duration,
        user: &str,
    ) -> Result<bool> {
        match self {
            Backend::Memory(b) => Ok(b.sessions.create(key, idle, max, user, b.now_micros())),
            Backend::Redis(b) => b.session_create(key, idle, max, user).await,
        }
    }

    /// Slides a live session's expiry, then does `op` on it.
    pub(crate) async fn session_touch(
        &self,
        key: &str,
        idle: Duration,
        max: Duration,
        op: SessionOp<'_>,
    ) -> Result<SessionReply> {
        match self {
            Backend::Memory(b) => Ok(b.sessions.touch(key, idle, max, op, b.now_micros())),
            Backend::Redis(b) => b.session_touch(key, idle, max, op).await,
        }
    }

    /// Moves a live session to `new` (same slot); its user, or `None`.
    pub(crate) async fn session_rotate(
        &self,
        old: &str,
        new: &str,
        idle: Duration,
        max: Duration,
    ) -> Result<Option<String>> {
        match self {
            Backend::Memory(b) => Ok(b.sessions.rotate(old, new, idle, max, b.now_micros())),
            Backend::Redis(b) => b.session_rotate(old, new, idle, max).await,
        }
    }

    /// Updates a user's session index, kept for `keep`.
    pub(crate) async fn session_index(
        &self,
        index: &str,
        keep: Duration,
        remove: Option<&str>,
        add: Option<&str>,
    ) -> Result<()> {
        match self {
            Backend::Memory(b) => {
                b.sessions.index(index, keep, remove, add, b.now_micros());
                Ok(())
            }
            Backend::Redis(b) => b.session_index(index, keep, remove, add).await,
        }
    }

    /// The ids in a user's session index, which is removed.
    pub(crate) async fn session_take_index(&self, index: &str) -> Result<Vec<String>> {
        match self {
            Backend::Memory(b) => Ok(b.sessions.take_index(index, b.now_micros())),
            Backend::Redis(b) => b.session_take_index(index).await,
        }
    }

    /// `GET`, for stores that keep a whole value under a key of their own
    /// (the tower-sessions store).
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.read(key, &[]).await?.value)
    }

    /// `SET key bytes PX ttl` (with `NX` when `only_new`); false when
    /// `only_new` and the key exists.
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) async fn kv_set(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: Duration,
        only_new: bool,
    ) -> Result<bool> {
        match self {
            Backend::Memory(b) => Ok(b.set(key, bytes, ttl, only_new)),
            Backend::Redis(b) => b.set(key, bytes, ttl, only_new).await,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }
}
