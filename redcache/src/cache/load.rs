//! One cached call: read the entry and its tag epochs, join this process's
//! flight of the key (or lead it), take the cross-process lock, load, and
//! store the entry unless a tag moved on meanwhile.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::lifecycle::{
    millis, spawn_load, spawn_refresh, xfetch, Seen, Spawn, FAIL_SAFE_THROTTLE,
};
use super::lock::{LoadLock, Locking};
use super::{prefixed, Cache, Cacheable, Call, Stampede};
use crate::backend::{Read, Replace, Unlock, Write, INVALIDATED_EPOCH_TTL};
use crate::entry::{self, Decoded, Epoch, Found, Times};
use crate::flight::{Joined, Leader, Outcome};
use crate::near::Fill;
use crate::stats::Event;

/// Where a call stands after its read, in this process's flight of its key.
enum Joining<'a, T> {
    Hit(T),
    /// A value to answer with now, and a refresh to start in the background
    /// (early refresh of a fresh value, or stale serving of an expired one).
    Refresh(T, Seen),
    /// Load (as the flight's leader, or alone).
    Lead(Start<T>, Option<Leader<'a>>),
    /// The leader's load failed: load once, alone.
    Retry(Start<T>),
}

/// What a load starts from: the tag epochs its read saw (`None` when the
/// read failed), the head of the entry (see `entry::head`), and an expired
/// value that may stand in if the load fails (`fail_safe`) or is slow
/// (`timeout`).
pub(super) struct Start<T> {
    epochs: Option<Vec<Epoch>>,
    head: Vec<u8>,
    fallback: Option<Found<T>>,
}

impl<T> Start<T> {
    fn blind() -> Self {
        Start {
            epochs: None,
            head: Vec::new(),
            fallback: None,
        }
    }
}

/// An expired value standing in for a failed load, with what its read saw.
struct FailSafe<'a, T> {
    found: Found<T>,
    epochs: Option<&'a [Epoch]>,
    head: &'a [u8],
}

/// What a lead ended with.
enum Led<T, E, Fut> {
    Done(Result<T, E>),
    /// The tag epochs moved on before the load began: the load, unused.
    Superseded(Fut),
}

impl<T, E, Fut> Led<T, E, Fut> {
    /// For leads that take no lock (so are never superseded).
    async fn into_result(self) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        match self {
            Led::Done(result) => result,
            Led::Superseded(load) => load.await,
        }
    }
}

impl Cache {
    /// The engine: cache-aside with single flight, the cross-process lock
    /// and tag epochs. `keep` says whether a loaded value is stored.
    ///
    /// Each call is a `redcache.cached` span (info level) with the call's
    /// `name` (key template), its rendered `key`, once known its `outcome`
    /// (`hit`, `miss` or `stale`) and, when the function ran, `load_time`.
    pub(crate) async fn load_through<T, E, Fut>(
        &self,
        call: Call<'_>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Result<T, E>
    where
        T: Cacheable,
        Fut: Future<Output = Result<T, E>>,
    {
        use tracing::Instrument;
        let l1_missed = match self.near_fast(call) {
            NearFast::Hit(value) => return Ok(value),
            NearFast::Missed => true,
            NearFast::NotAsked => false,
        };
        // Boxed: the rest of a call is a large future, which an L1 hit
        // should neither build nor move.
        Box::pin(
            self.load_through_in_span(call, keep, load, None, l1_missed)
                .instrument(call_span(call)),
        )
        .await
    }

    /// An L1 hit, answered before anything else of the call is set up.
    /// Calls that may refresh early, and calls while an invalidation is
    /// pending, take the full path.
    fn near_fast<T: Cacheable>(&self, call: Call<'_>) -> NearFast<T> {
        let Some(near) = self.inner.near.as_deref() else {
            return NearFast::NotAsked;
        };
        let full_path = call.lifecycle.early_refresh.is_some()
            || call.uncacheable.is_some()
            || self.inner.has_pending.load(Ordering::SeqCst);
        if full_path {
            return NearFast::NotAsked;
        }
        let Some(hit) = near.get::<T>(call.key, call.name, call.tags) else {
            return NearFast::Missed;
        };
        self.inner.guarded.counters.count(Event::NearHit(call.name));
        call_span(call).record("outcome", "hit_l1");
        NearFast::Hit(hit.value)
    }

    /// [`load_through`](Self::load_through) for a load that can outlive
    /// its call, so that it can refresh in the background: what
    /// `early_refresh` and `stale` need.
    pub(crate) async fn load_through_refreshing<T, E, Fut>(
        &self,
        call: Call<'_>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        use tracing::Instrument;
        let l1_missed = match self.near_fast(call) {
            NearFast::Hit(value) => return Ok(value),
            NearFast::Missed => true,
            NearFast::NotAsked => false,
        };
        let spawn = Spawn {
            refresh: spawn_refresh::<T, E, Fut>,
            load: spawn_load::<T, E, Fut>,
        };
        Box::pin(
            self.load_through_in_span(call, keep, load, Some(spawn), l1_missed)
                .instrument(call_span(call)),
        )
        .await
    }

    /// A load with a soft timeout and an expired value at hand: the load
    /// runs in the background (it stores its value whenever it ends), and
    /// the call gets its result if it comes within `after`, else the
    /// expired value. A load that fails within `after` (an error, a value
    /// not to keep, a panic in its task) is answered with the expired value
    /// as fail-safe allows. When this process already loads the key in the
    /// background, or its last background load failed less than 30 s ago,
    /// the expired value is the answer at once.
    async fn soft_timeout<T, E, Fut>(
        &self,
        call: Call<'_>,
        start: Start<T>,
        after: Duration,
        spawn: Spawn<T, E, Fut>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Result<T, E>
    where
        T: Cacheable,
        Fut: Future<Output = Result<T, E>>,
    {
        let Start {
            epochs,
            head,
            fallback,
        } = start;
        let expired = fallback.expect("a soft timeout needs an expired value");
        let read_epochs = epochs.clone();
        let seen = Seen {
            epochs: epochs.unwrap_or_default(),
            head,
        };
        let counters = &self.inner.guarded.counters;
        let Some(mut result) = (spawn.load)(self, call, seen, keep, load) else {
            counters.count(Event::ServedStale(call.name));
            tracing::Span::current().record("outcome", "stale");
            return Ok(expired.value);
        };
        let in_time = tokio::time::timeout(after, &mut result).await;
        // The expired value was valid when read; before it answers, check
        // that no invalidation landed since.
        let key = prefixed(&self.inner.value_prefix, call.key);
        let tag_keys = self.tag_keys(call);
        let still_valid = || self.still_valid(&key, &tag_keys, read_epochs.as_deref());
        let died =
            |call: Call<'_>| -> ! { panic!("the load of `{}` failed in its task", call.key) };
        match in_time {
            Ok(Ok(Ok(value))) if keep(&value) || !self.fail_safe_holds(call, &expired) => Ok(value),
            Ok(Ok(Err(error))) if !self.fail_safe_holds(call, &expired) => Err(error),
            // A failure in time (an error, a value not to keep, a panic in
            // the task): the expired value stands in, as fail-safe has it;
            // the task stored nothing.
            Ok(failed) => {
                if still_valid().await {
                    counters.count(Event::FailSafe(call.name));
                    tracing::Span::current().record("outcome", "fail_safe");
                    return Ok(expired.value);
                }
                match failed {
                    Ok(result) => result,
                    Err(_) => died(call),
                }
            }
            Err(_) => {
                if !still_valid().await {
                    // Invalidated meanwhile: this call waits for its load.
                    return match result.await {
                        Ok(result) => result,
                        Err(_) => died(call),
                    };
                }
                counters.count(Event::ServedStale(call.name));
                tracing::Span::current().record("outcome", "timeout");
                tracing::debug!(target: "redcache", key = call.key, ?after,
                    "load slower than its soft timeout; answered with the expired value, the load goes on");
                Ok(expired.value)
            }
        }
    }

    /// Whether the key still holds the entry with `head` (false when the
    /// backend cannot tell: then the caller reads again, or refreshes
    /// nothing).
    async fn still_holds(&self, key: &str, head: &[u8]) -> bool {
        let read = self.inner.guarded.backend.read(key, &[]);
        match self.inner.guarded.op_on(Some(key), read).await {
            Ok(Read { value, .. }) => entry::head(value.as_deref()) == head,
            Err(_) => false,
        }
    }

    /// Whether an expired value may still stand in for a failed load.
    fn fail_safe_holds<T>(&self, call: Call<'_>, expired: &Found<T>) -> bool {
        call.lifecycle
            .fail_safe_allows(expired.times, call.ttl, self.now_ms())
    }

    /// A background refresh: the load of `call` from what its reader saw,
    /// stored as any load is (lock, head, epochs). False when the load
    /// failed (an error, or a value not to keep).
    pub(super) async fn refresh<T, E, Fut>(
        &self,
        call: Call<'_>,
        seen: Seen,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> bool
    where
        T: Cacheable,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = prefixed(&self.inner.value_prefix, call.key);
        // The read that started this refresh may have raced with the store
        // of another one: refresh only if the key still holds what it read.
        if !self.still_holds(&key, &seen.head).await {
            return true;
        }
        self.inner.guarded.counters.count(Event::Refresh(call.name));
        // Its result has no caller: a failure leaves the entry as it is.
        let result = self.load_in_background(call, seen, keep, load).await;
        matches!(&result, Ok(value) if keep(value))
    }

    /// The load of `call` from what its reader saw, stored as any load is
    /// (lock, head, epochs), with its result.
    pub(super) async fn load_in_background<T, E, Fut>(
        &self,
        call: Call<'_>,
        seen: Seen,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Result<T, E>
    where
        T: Cacheable,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = prefixed(&self.inner.value_prefix, call.key);
        let tag_keys = self.tag_keys(call);
        let start = Start {
            epochs: Some(seen.epochs),
            head: seen.head,
            fallback: None,
        };
        match self
            .lead(call, &key, &tag_keys, start, None, keep, load)
            .await
        {
            Led::Done(result) => result,
            // A tag moved on while it waited for the lock: its value cannot
            // be stored, but it is still this load's answer.
            Led::Superseded(load) => load.await,
        }
    }

    fn tag_keys(&self, call: Call<'_>) -> Vec<String> {
        call.tags
            .iter()
            .map(|tag| prefixed(&self.inner.tag_prefix, tag))
            .collect()
    }

    /// [`load_through`](Self::load_through) for a load that cannot fail
    /// (a plain value, or an `Option`).
    pub(crate) async fn load_infallible<T, Fut>(
        &self,
        call: Call<'_>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> T
    where
        T: Cacheable,
        Fut: Future<Output = T>,
    {
        let load = async { Ok::<T, std::convert::Infallible>(load.await) };
        match self.load_through(call, keep, load).await {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// [`load_infallible`](Self::load_infallible) for a load that can
    /// outlive its call (see [`load_through_refreshing`](Self::load_through_refreshing)).
    pub(crate) async fn load_infallible_refreshing<T, Fut>(
        &self,
        call: Call<'_>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> T
    where
        T: Cacheable,
        Fut: Future<Output = T> + Send + 'static,
    {
        let load = async { Ok::<T, std::convert::Infallible>(load.await) };
        match self.load_through_refreshing(call, keep, load).await {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    async fn load_through_in_span<T, E, Fut>(
        &self,
        call: Call<'_>,
        keep: fn(&T) -> bool,
        load: Fut,
        spawn: Option<Spawn<T, E, Fut>>,
        l1_missed: bool,
    ) -> Result<T, E>
    where
        T: Cacheable,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = &self.inner.guarded.counters;
        let mut l1_missed = l1_missed;
        let zero_ttl = call.ttl.is_zero().then_some(ZERO_TTL);
        if let Some(reason) = call.uncacheable.or(zero_ttl) {
            crate::report::once(call.name, &format!("{}: {reason}", call.name));
            counters.count(Event::Miss(call.name));
            return load.await;
        }
        let key = prefixed(&self.inner.value_prefix, call.key);
        if self.inner.guarded.is_slow(&key) {
            // Its last read timed out and a check is deciding why: reading
            // it again would only cost the server another copy of it.
            counters.count(Event::Miss(call.name));
            return load.await;
        }
        let tag_keys = self.tag_keys(call);

        // An invalidation of one of these tags that has not reached Redis
        // yet: retry it; while it is still pending, bypass the cache.
        if self.inner.has_pending.load(Ordering::SeqCst) {
            let pending = Box::pin(self.retry_pending_invalidations()).await;
            if pending.contains(&key) || tag_keys.iter().any(|tag| pending.contains(tag)) {
                counters.count(Event::Miss(call.name));
                let blind = Start::blind();
                let led = Box::pin(self.lead(call, &key, &tag_keys, blind, None, keep, load)).await;
                return led.into_result().await;
            }
        }

        let mut load = load;
        loop {
            // Read, and either return a fresh value, wait for the load of
            // this process's leader, or become the leader.
            let ask_l1 = !std::mem::take(&mut l1_missed);
            let joining = self.read_or_join(call, &key, &tag_keys, spawn.is_some(), ask_l1);
            let (start, leader, call) = match joining.await {
                Joining::Hit(value) => return Ok(value),
                Joining::Refresh(value, seen) => {
                    if let Some(spawn) = spawn {
                        (spawn.refresh)(self, call, seen, keep, load);
                    }
                    return Ok(value);
                }
                Joining::Lead(start, leader) => {
                    let soft = spawn.zip(call.lifecycle.soft_timeout);
                    match (soft, start.fallback.is_some()) {
                        (Some((spawn, after)), true) => {
                            // This process's followers read again once the
                            // leader is gone: they find the new entry, or
                            // the load running, and the expired value.
                            drop(leader);
                            // The read may have raced with the store of the
                            // last background load: read again, then.
                            if !self.still_holds(&key, &start.head).await {
                                continue;
                            }
                            return self
                                .soft_timeout(call, start, after, spawn, keep, load)
                                .await;
                        }
                        _ => (start, leader, call),
                    }
                }
                // The leader's load failed: one retry of its own, at once,
                // rather than a queue of followers each leading in turn.
                Joining::Retry(start) => (
                    start,
                    None,
                    Call {
                        stampede: Stampede::Off,
                        ..call
                    },
                ),
            };
            // Boxed: the miss path is a large future, and a hit should not
            // carry (and move) it.
            let lead = self.lead(call, &key, &tag_keys, start, leader, keep, load);
            match Box::pin(lead).await {
                Led::Done(result) => return result,
                // A tag moved on while this call waited for the lock: its
                // load could not be stored. Read again, with the new epochs.
                Led::Superseded(unused) => load = unused,
            }
        }
    }

    /// The read of a call, then its place in this process's flight of the
    /// key: a hit (perhaps with a refresh to start, when `can_refresh`),
    /// the leader, or a follower whose leader failed.
    async fn read_or_join<T: Cacheable>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        can_refresh: bool,
        ask_l1: bool,
    ) -> Joining<'_, T> {
        let counters = &self.inner.guarded.counters;
        let lifecycle = call.lifecycle;
        let near = self.inner.near.as_deref();
        // The first pass asks L1 only when the call's fast path did not
        // (one moka lookup per miss, not two).
        let mut ask_l1 = ask_l1;
        loop {
            if std::mem::replace(&mut ask_l1, true) {
                if let Some(hit) = self.near_hit(call, can_refresh) {
                    return hit;
                }
            }
            // Taken before the read: a change that lands while it is under
            // way keeps its value out of L1.
            let mut ticket = near.and_then(|near| near.ticket(key, tag_keys));
            let mut outcome = "miss";
            let mut head = Vec::new();
            let mut fallback = None;
            let read = self.inner.guarded.backend.read(key, tag_keys);
            let epochs = match self.inner.guarded.op_on(Some(key), read).await {
                Ok(Read { value, epochs }) => {
                    if let Some(bytes) = value {
                        // Copied only off the hit path: a hit needs no head.
                        let head_of = || entry::head(Some(&bytes)).to_vec();
                        let now_ms = self.now_ms();
                        match entry::decode::<T>(&bytes, call.name, call.tags, &epochs, now_ms) {
                            Decoded::Fresh(found) => {
                                counters.count(Event::Hit(call.name));
                                tracing::Span::current().record("outcome", "hit");
                                tracing::trace!(target: "redcache", key = call.key, "hit");
                                if let (Some(near), Some(ticket)) = (near, ticket.take()) {
                                    let fill = Fill {
                                        key: call.key,
                                        name: call.name,
                                        tags: call.tags,
                                        value: &found.value,
                                        times: found.times,
                                        epochs: &epochs,
                                        head: entry::head(Some(&bytes)),
                                        size: entry::expanded_len(&bytes),
                                    };
                                    near.fill(ticket, fill, now_ms);
                                }
                                if can_refresh && self.refreshes_early(call, found.times) {
                                    let head = head_of();
                                    return Joining::Refresh(found.value, Seen { epochs, head });
                                }
                                return Joining::Hit(found.value);
                            }
                            Decoded::Expired(found) => {
                                let expired_for = Duration::from_millis(
                                    now_ms.saturating_sub(found.times.expires_ms),
                                );
                                if can_refresh && lifecycle.serves_stale(expired_for) {
                                    counters.count(Event::ServedStale(call.name));
                                    tracing::Span::current().record("outcome", "stale");
                                    tracing::debug!(target: "redcache", key = call.key, ?expired_for, "served stale; refreshing");
                                    let head = head_of();
                                    return Joining::Refresh(found.value, Seen { epochs, head });
                                }
                                outcome = "expired";
                                // For a failed load, or a slow one (a soft
                                // timeout serves within `fail_safe` too).
                                if lifecycle.fail_safe_allows(found.times, call.ttl, now_ms) {
                                    fallback = Some(found);
                                }
                            }
                            Decoded::Stale => {
                                counters.count(Event::Stale(call.name));
                                outcome = "stale";
                                tracing::debug!(target: "redcache", key = call.key, "stale");
                            }
                            Decoded::OtherTags => {
                                counters.count(Event::Stale(call.name));
                                outcome = "stale";
                                other_tags(call);
                            }
                            Decoded::Invalid => {
                                counters.count(Event::Undecodable(call.name));
                                tracing::warn!(target: "redcache", key = call.key,
                                    "entry does not decode as this type; treating it as a miss");
                            }
                            // What `invalidate_key` left: a plain miss.
                            Decoded::Gone => {}
                            Decoded::OtherVersion => {
                                tracing::debug!(target: "redcache", key = call.key,
                                    "entry of another format version; replaced by this load");
                            }
                            Decoded::Unreadable(format) => {
                                counters.count(Event::Undecodable(call.name));
                                tracing::warn!(target: "redcache", key = call.key, format,
                                    "entry written in a format this build lacks (enable its redcache feature); treating it as a miss");
                            }
                            Decoded::Foreign => {
                                counters.count(Event::Undecodable(call.name));
                                tracing::warn!(target: "redcache", key = call.key, template = call.name,
                                    "the entry was written by another key template that renders the same key; treating it as a miss (give the two templates distinct literal prefixes)");
                            }
                        }
                        head = head_of();
                    }
                    Some(epochs)
                }
                Err(error) => {
                    self.inner.guarded.backend_failed("read", &error);
                    None
                }
            };
            counters.count(Event::Miss(call.name));
            tracing::Span::current().record("outcome", outcome);
            tracing::debug!(target: "redcache", key = call.key, "miss");
            let start = |epochs, head, fallback| Start {
                epochs,
                head,
                fallback,
            };
            if call.stampede == Stampede::Off {
                return Joining::Lead(start(epochs, head, fallback), None);
            }
            match self
                .inner
                .flights
                .join((key.to_owned(), call.name, epochs.clone(), head.clone()))
            {
                Joined::Leader(leader) => {
                    return Joining::Lead(start(epochs, head, fallback), Some(leader))
                }
                Joined::Follower(follower) => {
                    counters.count(Event::Coalesced(call.name));
                    match follower.wait().await {
                        Outcome::Value(shared) => {
                            if let Some(value) = shared.downcast_ref::<T>() {
                                return Joining::Hit(value.clone());
                            }
                        }
                        Outcome::Failed => return Joining::Retry(start(epochs, head, fallback)),
                        // Cancelled or panicked: start over (one follower
                        // leads the next attempt).
                        Outcome::Retry | Outcome::Pending => {}
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the engine's state, spelled out for the reader
    async fn lead<T, E, Fut>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        start: Start<T>,
        leader: Option<Leader<'_>>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Led<T, E, Fut>
    where
        T: Cacheable,
        Fut: Future<Output = Result<T, E>>,
    {
        let Start {
            epochs,
            head,
            fallback,
        } = start;
        let lock = match (call.stampede, &epochs) {
            (Stampede::Distributed, Some(epochs)) => {
                self.lock_or_wait(call, key, tag_keys, epochs).await
            }
            _ => Locking::Unlocked,
        };
        let mut held = match lock {
            Locking::Found(value) => {
                if let Some(leader) = leader {
                    leader.share(&value);
                }
                return Led::Done(Ok(value));
            }
            // Dropping the leader sends this process's followers back to
            // read as well.
            Locking::Superseded => return Led::Superseded(load),
            Locking::Held(lock) => Some(lock),
            Locking::Unlocked => None,
        };

        let started = Instant::now();
        self.inner.guarded.counters.count(Event::Load(call.name));
        // With a fail-safe value at hand a panicking load is a failed load
        // like any other; without one it goes on unwinding.
        let caught = if fallback.is_some() {
            AssertUnwindSafe(load).catch_unwind().await
        } else {
            Ok(load.await)
        };
        let elapsed = started.elapsed();
        self.inner.guarded.counters.load_time(call.name, elapsed);
        tracing::Span::current().record("load_time", tracing::field::debug(elapsed));
        let failed = match &caught {
            Ok(Ok(value)) => !keep(value),
            _ => true,
        };
        tracing::debug!(target: "redcache", key = call.key, ?elapsed, failed, "load");
        // The stand-in was valid when read; an invalidation may have landed
        // during the load (and an invalidated value is never served).
        let fallback = match fallback {
            Some(found) if failed => self
                .still_valid(key, tag_keys, epochs.as_deref())
                .await
                .then_some(found),
            _ => None,
        };
        if let Some(found) = fallback {
            let stand_in = FailSafe {
                found,
                epochs: epochs.as_deref(),
                head: &head,
            };
            let value = self
                .serve_fail_safe(call, key, tag_keys, stand_in, leader, held)
                .await;
            return Led::Done(Ok(value));
        }
        let result = match caught {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };

        if let Ok(value) = &result {
            let zeros;
            let recorded = match &epochs {
                Some(epochs) => epochs.as_slice(),
                None => {
                    zeros = vec![0; call.tags.len()];
                    &zeros
                }
            };
            let lifecycle = call.lifecycle;
            let ttl = lifecycle.jittered(call.ttl);
            let at_ms = self.now_ms();
            let times = Times {
                at_ms,
                expires_ms: at_ms.saturating_add(millis(ttl)),
                load_ms: millis(elapsed),
            };
            match self.encode(call, value, recorded, times) {
                Ok(bytes) => {
                    // A load that outlived the guaranteed life of an
                    // invalidated epoch could match an epoch key recreated at
                    // 0, so its value is returned but not stored.
                    let in_time = started.elapsed() < INVALIDATED_EPOCH_TTL / 2;
                    let fits = bytes.len() <= self.inner.max_value_size;
                    if !fits {
                        self.too_large(call.name, call.key, bytes.len());
                    }
                    if keep(value) && epochs.is_some() && in_time && fits {
                        let write = Write {
                            key,
                            bytes: &bytes,
                            // Kept past its expiry for stale and fail-safe
                            // serving.
                            ttl: ttl.saturating_add(lifecycle.keep_after_expiry()),
                            tag_keys,
                            epochs: recorded,
                            replace: Replace::IfHead(&head),
                            unlock: None,
                        };
                        self.store(call, write, held.as_mut()).await;
                    }
                }
                Err(error) => {
                    // Every call of the fn would say it again: told once
                    // (caching is off for such values), then at debug.
                    self.inner.guarded.counters.count(Event::Error("encode"));
                    let message = format!(
                        "{}: value not cached, it does not encode: {error}",
                        call.name
                    );
                    if !crate::report::once(&format!("encode:{}", call.name), &message) {
                        tracing::debug!(target: "redcache", key = call.key, %error,
                            "value does not encode; not cached");
                    }
                }
            }
        }
        if let Some(leader) = leader {
            match &result {
                // The value, stored or not (too large, not to keep, or it
                // does not encode): the followers get it as the leader does.
                Ok(value) => leader.share(value),
                // An error: each follower runs the load itself, at once.
                Err(_) => leader.finish(Outcome::Failed),
            }
        }
        if let Some(lock) = held {
            lock.release().await;
        }
        Led::Done(result)
    }

    /// The load failed and an expired value may stand in (`fail_safe`):
    /// answers with it, shares it with this process's followers, and writes
    /// it back as fresh for [`FAIL_SAFE_THROTTLE`] (never past its fail-safe
    /// limit), so that every process answers with it meanwhile instead of
    /// asking the failing source again. Its load time is kept: it is the
    /// value of that load.
    async fn serve_fail_safe<T: Cacheable>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
        stand_in: FailSafe<'_, T>,
        leader: Option<Leader<'_>>,
        mut held: Option<LoadLock>,
    ) -> T {
        let FailSafe {
            found,
            epochs,
            head,
        } = stand_in;
        self.inner
            .guarded
            .counters
            .count(Event::FailSafe(call.name));
        tracing::Span::current().record("outcome", "fail_safe");
        tracing::warn!(target: "redcache", key = call.key,
            "the load failed; answering with the value that expired (fail_safe)");
        let now_ms = self.now_ms();
        let until_ms = call.lifecycle.fail_safe_until(found.times, call.ttl);
        let expires_ms = now_ms
            .saturating_add(millis(FAIL_SAFE_THROTTLE))
            .min(until_ms);
        let times = Times {
            expires_ms,
            ..found.times
        };
        let bytes = self.encode(call, &found.value, epochs.unwrap_or(&[]), times);
        // Written again in this call's codec, which may be larger than
        // the writer's: held to the limit as every write is.
        let fits = bytes
            .as_ref()
            .is_ok_and(|bytes| bytes.len() <= self.inner.max_value_size);
        if let (Ok(bytes), Some(epochs), true) = (&bytes, epochs, fits) {
            let write = Write {
                key,
                bytes,
                // Kept until the fail-safe limit, for the next failure.
                ttl: Duration::from_millis(until_ms.saturating_sub(now_ms).max(1)),
                tag_keys,
                epochs,
                replace: Replace::IfHead(head),
                unlock: None,
            };
            self.store(call, write, held.as_mut()).await;
        }
        if let Some(leader) = leader {
            leader.share(&found.value);
        }
        if let Some(lock) = held {
            lock.release().await;
        }
        found.value
    }

    /// The call's value from the near cache, if it holds it (and a refresh
    /// to start, as for a hit from the backend).
    fn near_hit<T: Cacheable>(&self, call: Call<'_>, can_refresh: bool) -> Option<Joining<'_, T>> {
        let near = self.inner.near.as_deref()?;
        let hit = near.get::<T>(call.key, call.name, call.tags)?;
        self.inner.guarded.counters.count(Event::NearHit(call.name));
        tracing::Span::current().record("outcome", "hit_l1");
        if can_refresh && self.refreshes_early(call, hit.times()) {
            let (epochs, head) = hit.seen();
            return Some(Joining::Refresh(hit.value, Seen { epochs, head }));
        }
        Some(Joining::Hit(hit.value))
    }

    /// Whether a fresh value is refreshed now, in the background (XFetch,
    /// when the call has `early_refresh`).
    fn refreshes_early(&self, call: Call<'_>, times: Times) -> bool {
        let early = call
            .lifecycle
            .early_refresh
            .is_some_and(|beta| xfetch(self.now_ms(), times, beta, 1.0 - rand::random::<f64>()));
        if early {
            tracing::debug!(target: "redcache", key = call.key, "early refresh");
        }
        early
    }

    /// Whether what a call read is still valid: no tag epoch moved and no
    /// tombstone came since. When the backend cannot tell, it is taken as
    /// valid (an invalidation cannot land either then).
    async fn still_valid(&self, key: &str, tag_keys: &[String], epochs: Option<&[Epoch]>) -> bool {
        let read = self.inner.guarded.backend.read(key, tag_keys);
        match self.inner.guarded.op_on(Some(key), read).await {
            Ok(Read { value, epochs: now }) => {
                epochs.is_none_or(|read| read == now.as_slice())
                    && !value.as_deref().is_some_and(entry::is_tombstone)
            }
            Err(_) => true,
        }
    }

    /// Milliseconds since the Unix epoch on the cache's clock.
    pub(super) fn now_ms(&self) -> u64 {
        self.inner.clock.now_micros() / 1_000
    }

    /// Stores an entry, and releases `lock` with it where the backend can
    /// (one round trip on a single node); otherwise `lead` releases it.
    async fn store(&self, call: Call<'_>, write: Write<'_>, lock: Option<&mut LoadLock>) {
        let write = Write {
            unlock: lock.as_ref().map(|lock| Unlock {
                key: &lock.key,
                token: &lock.token,
            }),
            ..write
        };
        let written = self.write_entry(write).await;
        match written {
            Ok(written) => {
                if let (true, Some(lock)) = (written.unlocked, lock) {
                    lock.released = true;
                }
                if !written.stored {
                    self.inner.guarded.counters.count(Event::Stale(call.name));
                    tracing::debug!(target: "redcache", key = call.key,
                        "a tag was invalidated, or the key written, during the load; value returned, not stored");
                }
            }
            Err(error) => self.inner.guarded.backend_failed("write", &error),
        }
    }
}

/// The span of one cached call (see `load_through`).
fn call_span(call: Call<'_>) -> tracing::Span {
    tracing::info_span!(target: "redcache", "redcache.cached",
        name = call.name, key = call.key,
        outcome = tracing::field::Empty, load_time = tracing::field::Empty)
}

/// Every key the framework writes expires: a call with a zero `ttl` (an
/// expression, or the programmatic API) is not cached.
const ZERO_TTL: &str = "its `ttl` is zero: every key needs an expiry, so nothing is cached";

/// A `put` with a zero `ttl` stores nothing; the key is invalidated.
pub(super) const ZERO_TTL_PUT: &str =
    "a zero `ttl`: every key needs an expiry (the key was invalidated instead)";

/// What `near_fast` found.
enum NearFast<T> {
    Hit(T),
    /// L1 was asked and does not hold the call.
    Missed,
    /// L1 was not asked: there is none, or the call takes the full path.
    NotAsked,
}

/// An entry belongs to the key *and* the tags it was stored with: a call of
/// the key with other tags reads a miss and replaces it, so two calls that
/// differ only in their tags replace each other's entry and never hit. Said
/// once per key template, where a user sees it.
fn other_tags(call: Call<'_>) {
    tracing::debug!(target: "redcache", key = call.key, "entry stored under other tags");
    let subject = format!("{}#tags", call.name);
    crate::report::once(
        &subject,
        &format!(
            "`{}`: the key `{}` was called with other tags than its entry was stored with; an entry belongs to one tag set, so such calls replace each other's entry and never hit. Put what decides the tags into the key.",
            call.name, call.key
        ),
    );
}
