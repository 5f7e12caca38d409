//! One cached call: read the entry and its tag epochs, join this process's
//! flight of the key (or lead it), take the cross-process lock, load, and
//! store the entry unless a tag moved on meanwhile.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::lock::{LoadLock, Locking};
use super::{prefixed, Cache, Call, Stampede};
use crate::backend::{Read, Replace, Unlock, Write, INVALIDATED_EPOCH_TTL};
use crate::entry::{self, Decoded, Epoch};
use crate::flight::{Joined, Leader, Outcome};
use crate::stats::Event;

/// Where a call stands after its read, in this process's flight of its key.
enum Joining<'a, T> {
    Hit(T),
    /// Load (as the flight's leader, or alone) with these epochs, from this
    /// head of the entry (see `entry::head`).
    Lead(Option<Vec<Epoch>>, Vec<u8>, Option<Leader<'a>>),
    /// The leader's load failed: load once, alone.
    Retry(Option<Vec<Epoch>>, Vec<u8>),
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
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<T, E>>,
    {
        use tracing::Instrument;
        let span = tracing::info_span!(target: "redcache", "redcache.cached",
            name = call.name, key = call.key,
            outcome = tracing::field::Empty, load_time = tracing::field::Empty);
        self.load_through_in_span(call, keep, load)
            .instrument(span)
            .await
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
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = T>,
    {
        let load = async { Ok::<T, std::convert::Infallible>(load.await) };
        match self.load_through(call, keep, load).await {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    async fn load_through_in_span<T, E, Fut>(
        &self,
        call: Call<'_>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = &self.inner.guarded.counters;
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
        let tag_keys: Vec<String> = call
            .tags
            .iter()
            .map(|tag| prefixed(&self.inner.tag_prefix, tag))
            .collect();

        // An invalidation of one of these tags that has not reached Redis
        // yet: retry it; while it is still pending, bypass the cache.
        if self.inner.has_pending.load(Ordering::SeqCst) {
            let pending = Box::pin(self.retry_pending_invalidations()).await;
            if pending.contains(&key) || tag_keys.iter().any(|tag| pending.contains(tag)) {
                counters.count(Event::Miss(call.name));
                let led =
                    Box::pin(self.lead(call, &key, &tag_keys, None, Vec::new(), None, keep, load))
                        .await;
                return led.into_result().await;
            }
        }

        let mut load = load;
        loop {
            // Read, and either return a fresh value, wait for the load of
            // this process's leader, or become the leader.
            let (epochs, head, leader, call) = match self.read_or_join(call, &key, &tag_keys).await
            {
                Joining::Hit(value) => return Ok(value),
                Joining::Lead(epochs, head, leader) => (epochs, head, leader, call),
                // The leader's load failed: one retry of its own, at once,
                // rather than a queue of followers each leading in turn.
                Joining::Retry(epochs, head) => (
                    epochs,
                    head,
                    None,
                    Call {
                        stampede: Stampede::Off,
                        ..call
                    },
                ),
            };
            // Boxed: the miss path is a large future, and a hit should not
            // carry (and move) it.
            let lead = self.lead(call, &key, &tag_keys, epochs, head, leader, keep, load);
            match Box::pin(lead).await {
                Led::Done(result) => return result,
                // A tag moved on while this call waited for the lock: its
                // load could not be stored. Read again, with the new epochs.
                Led::Superseded(unused) => load = unused,
            }
        }
    }

    /// The read of a call, then its place in this process's flight of the
    /// key: a hit, the leader, or a follower whose leader failed.
    async fn read_or_join<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        key: &str,
        tag_keys: &[String],
    ) -> Joining<'_, T> {
        let counters = &self.inner.guarded.counters;
        loop {
            let mut outcome = "miss";
            let mut head = Vec::new();
            let read = self.inner.guarded.backend.read(key, tag_keys);
            let epochs = match self.inner.guarded.op_on(Some(key), read).await {
                Ok(Read { value, epochs }) => {
                    if let Some(bytes) = value {
                        head = entry::head(Some(&bytes)).to_vec();
                        match entry::decode::<T>(&bytes, call.name, call.tags, &epochs) {
                            Decoded::Fresh(value) => {
                                counters.count(Event::Hit(call.name));
                                tracing::Span::current().record("outcome", "hit");
                                tracing::trace!(target: "redcache", key = call.key, "hit");
                                return Joining::Hit(value);
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
                            Decoded::Foreign => {
                                counters.count(Event::Undecodable(call.name));
                                tracing::warn!(target: "redcache", key = call.key, template = call.name,
                                    "the entry was written by another key template that renders the same key; treating it as a miss (give the two templates distinct literal prefixes)");
                            }
                        }
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
            if call.stampede == Stampede::Off {
                return Joining::Lead(epochs, head, None);
            }
            match self
                .inner
                .flights
                .join((key.to_owned(), call.name, epochs.clone(), head.clone()))
            {
                Joined::Leader(leader) => return Joining::Lead(epochs, head, Some(leader)),
                Joined::Follower(follower) => {
                    counters.count(Event::Coalesced(call.name));
                    match follower.wait().await {
                        Outcome::Value(bytes) => {
                            if let Some(value) = entry::decode_value::<T>(&bytes, call.name) {
                                return Joining::Hit(value);
                            }
                        }
                        Outcome::Failed => return Joining::Retry(epochs, head),
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
        epochs: Option<Vec<Epoch>>,
        head: Vec<u8>,
        leader: Option<Leader<'_>>,
        keep: fn(&T) -> bool,
        load: Fut,
    ) -> Led<T, E, Fut>
    where
        T: Serialize + DeserializeOwned,
        Fut: Future<Output = Result<T, E>>,
    {
        let lock = match (call.stampede, &epochs) {
            (Stampede::Distributed, Some(epochs)) => {
                self.lock_or_wait(call, key, tag_keys, epochs).await
            }
            _ => Locking::Unlocked,
        };
        let mut held = match lock {
            Locking::Found(value, bytes) => {
                if let Some(leader) = leader {
                    leader.finish(Outcome::Value(Arc::from(bytes)));
                }
                return Led::Done(Ok(value));
            }
            // Dropping the leader sends this process's followers back to
            // read as well.
            Locking::Superseded => return Led::Superseded(load),
            Locking::Held(lock) => Some(lock),
            Locking::Unlocked => None,
        };
        let mut leader = leader;

        let started = Instant::now();
        self.inner.guarded.counters.count(Event::Load(call.name));
        let result = load.await;
        let elapsed = started.elapsed();
        self.inner.guarded.counters.load_time(call.name, elapsed);
        tracing::Span::current().record("load_time", tracing::field::debug(elapsed));
        tracing::debug!(target: "redcache", key = call.key, ?elapsed, ok = result.is_ok(), "load");

        if let Ok(value) = &result {
            let zeros;
            let recorded = match &epochs {
                Some(epochs) => epochs.as_slice(),
                None => {
                    zeros = vec![0; call.tags.len()];
                    &zeros
                }
            };
            match entry::encode(value, call.name, call.tags, recorded) {
                Ok(bytes) => {
                    // A load that outlived the guaranteed life of an
                    // invalidated epoch could match an epoch key recreated at
                    // 0, so its value is returned but not stored.
                    let in_time = started.elapsed() < INVALIDATED_EPOCH_TTL / 2;
                    let fits = bytes.len() <= self.inner.max_entry_size;
                    if !fits {
                        self.inner.guarded.counters.count(Event::Error("too_large"));
                        tracing::warn!(target: "redcache", key = call.key, size = bytes.len(),
                            max = self.inner.max_entry_size, "value larger than max_entry_size; returned, not cached");
                    }
                    if keep(value) && epochs.is_some() && in_time && fits {
                        let write = Write {
                            key,
                            bytes: &bytes,
                            ttl: call.ttl,
                            tag_keys,
                            epochs: recorded,
                            replace: Replace::IfHead(&head),
                            unlock: None,
                        };
                        self.store(call, write, held.as_mut()).await;
                    }
                    if let Some(leader) = leader.take() {
                        leader.finish(Outcome::Value(Arc::from(bytes)));
                    }
                }
                Err(error) => {
                    self.inner.guarded.counters.count(Event::Error("encode"));
                    tracing::warn!(target: "redcache", key = call.key, %error,
                        "value does not encode; not cached");
                }
            }
        }
        // An error, or a value that does not encode: nothing to share.
        if let Some(leader) = leader {
            leader.finish(Outcome::Failed);
        }
        if let Some(lock) = held {
            lock.release().await;
        }
        Led::Done(result)
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
        match self
            .inner
            .guarded
            .op(self.inner.guarded.backend.write(write))
            .await
        {
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

/// Every key the framework writes expires: a call with a zero `ttl` (an
/// expression, or the programmatic API) is not cached.
const ZERO_TTL: &str = "its `ttl` is zero: every key needs an expiry, so nothing is cached";

/// A `put` with a zero `ttl` stores nothing; the key is invalidated.
pub(super) const ZERO_TTL_PUT: &str =
    "a zero `ttl`: every key needs an expiry (the key was invalidated instead)";

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
