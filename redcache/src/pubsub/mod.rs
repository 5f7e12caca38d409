//! Typed pub/sub: publish a `T`, subscribe to a stream of `T`s.
//!
//! Pub/sub is fire-and-forget (at most once): a message published while a
//! subscriber is disconnected is lost to it. redcache subscribes again by
//! itself after a reconnect or a Sentinel failover, and tells the
//! application that messages may have been lost with an [`Event::Gap`]
//! (see [`Subscription::events`]). For delivery that survives crashes, use
//! an [`EventStream`](crate::EventStream).
//!
//! ```no_run
//! # async fn demo() -> redcache::Result<()> {
//! use futures_util::StreamExt;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct PriceChanged { product: u64, cents: u64 }
//!
//! let cache = redcache::Cache::builder().url("redis://127.0.0.1:6379").build().await?;
//! let prices = cache.channel::<PriceChanged>("prices");
//! let mut changes = prices.subscribe().await?;
//! prices.publish(&PriceChanged { product: 7, cents: 1_999 }).await?;
//! while let Some(change) = changes.next().await {
//!     println!("{} now costs {}", change.product, change.cents);
//! #   break;
//! }
//! # Ok(()) }
//! ```

mod hub;
mod redis;

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast;

pub(crate) use self::hub::Hub;
use self::hub::{Joined, Signal, Topic};
pub(crate) use self::redis::Subscriber;
use crate::backend::Backend;
use crate::cache::Cache;
use crate::error::{Error, Result};

/// A typed pub/sub channel, from [`Cache::channel`]. Cheap to clone.
pub struct Channel<T> {
    cache: Cache,
    name: Arc<str>,
    _values: PhantomData<fn() -> T>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            cache: self.cache.clone(),
            name: Arc::clone(&self.name),
            _values: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("name", &self.name).finish()
    }
}

/// What a subscription yields with [`Subscription::events`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<T> {
    /// A message.
    Message(T),
    /// Messages may have been lost here: the connection dropped (and was
    /// made again), a cluster shard moved, or this subscriber fell more
    /// than 1024 messages behind. A subscriber that keeps state from the
    /// messages should reload it.
    Gap(String),
}

impl Cache {
    /// The pub/sub channel `name` of `T`s, under this cache's namespace
    /// (`<namespace>:ch:<name>`). On Redis Cluster it is a sharded channel
    /// (`SPUBLISH`/`SSUBSCRIBE`, Redis 7): its messages stay on the shard
    /// that owns it, rather than crossing every node.
    pub fn channel<T>(&self, name: &str) -> Channel<T> {
        Channel {
            cache: self.clone(),
            name: format!("{}:ch:{name}", self.inner.namespace).into(),
            _values: PhantomData,
        }
    }

    /// Subscribes to every channel of this cache's namespace whose name
    /// matches `pattern` (`PSUBSCRIBE`: `*`, `?`, `[...]`), as `T`s.
    ///
    /// On Redis Cluster channels are sharded, which patterns cannot
    /// follow: this is then an [`Error::Config`].
    pub async fn subscribe_pattern<T: DeserializeOwned>(
        &self,
        pattern: &str,
    ) -> Result<Subscription<T>> {
        if is_cluster(&self.inner.guarded.backend) {
            return Err(Error::Config(
                "pattern subscriptions cannot follow sharded channels on Redis Cluster",
            ));
        }
        let escaped = crate::glob::escape(&self.inner.namespace);
        let topic = Topic::Pattern(format!("{escaped}:ch:{pattern}"));
        self.subscribe_to(topic).await
    }

    async fn subscribe_to<T: DeserializeOwned>(&self, topic: Topic) -> Result<Subscription<T>> {
        let pubsub = &self.inner.pubsub;
        let (receiver, joined) = pubsub.hub.join(&topic);
        let subscription = Subscription {
            receiver: Box::pin(futures_util::stream::unfold(
                receiver,
                |mut receiver| async move {
                    let received = receiver.recv().await;
                    Some((received, receiver))
                },
            )),
            leave: Leave {
                cache: self.clone(),
                topic: topic.clone(),
            },
            undecodable: Arc::default(),
            gaps: Arc::default(),
            _values: PhantomData,
        };
        let Backend::Redis(redis) = &self.inner.guarded.backend else {
            pubsub.hub.confirm(&topic);
            return Ok(subscription);
        };
        let subscriber = pubsub.subscriber(redis);
        match joined {
            Joined::First => {
                subscriber.subscribe(topic.clone()).await?;
                pubsub.hub.confirm(&topic);
            }
            // Another subscription of the topic is being made: this one
            // too returns once the server confirmed it.
            Joined::Later(mut confirmed) => {
                let wait = subscriber.wait();
                match tokio::time::timeout(wait, confirmed.wait_for(|c| *c)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return Err(Error::Timeout(wait)),
                }
            }
        }
        Ok(subscription)
    }
}

fn is_cluster(backend: &Backend) -> bool {
    matches!(backend, Backend::Redis(redis) if redis.conn.is_cluster())
}

impl<T> Channel<T> {
    /// The channel's name on the server.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn topic(&self) -> Topic {
        if is_cluster(&self.cache.inner.guarded.backend) {
            Topic::Sharded(self.name.to_string())
        } else {
            Topic::Channel(self.name.to_string())
        }
    }
}

impl<T: Serialize> Channel<T> {
    /// Publishes `value` (as JSON); returns how many subscribers got it
    /// (on a cluster, those on the shard's nodes this one reached).
    pub async fn publish(&self, value: &T) -> Result<u64> {
        let payload = crate::codec::to_json(value)?;
        let inner = &self.cache.inner;
        match &inner.guarded.backend {
            Backend::Memory(_) => Ok(inner.pubsub.hub.publish_local(&self.name, &payload) as u64),
            Backend::Redis(redis) => {
                let verb = match self.topic() {
                    Topic::Sharded(_) => "SPUBLISH",
                    _ => "PUBLISH",
                };
                let mut cmd = ::redis::cmd(verb);
                cmd.arg(&*self.name).arg(payload);
                let mut conn = redis.conn.clone();
                inner
                    .guarded
                    .op(async move { Ok(cmd.query_async::<u64>(&mut conn).await?) })
                    .await
            }
        }
    }
}

impl<T: DeserializeOwned> Channel<T> {
    /// Subscribes; returns once the server confirmed the subscription, so
    /// every message published after this returns reaches it (while the
    /// connection holds).
    pub async fn subscribe(&self) -> Result<Subscription<T>> {
        self.cache.subscribe_to(self.topic()).await
    }
}

/// The per-cache state of pub/sub: the fan-out, and the subscriber task
/// (Redis; started by the first subscription).
#[derive(Default)]
pub(crate) struct PubSub {
    pub(crate) hub: Arc<Hub>,
    subscriber: std::sync::OnceLock<Subscriber>,
}

impl PubSub {
    fn subscriber(&self, redis: &crate::backend::redis::RedisBackend) -> &Subscriber {
        self.subscriber.get_or_init(|| {
            Subscriber::spawn(
                redis.nodes.clone(),
                redis.connect_timeout,
                Arc::clone(&self.hub),
            )
        })
    }
}

/// What a subscription's broadcast receiver gives.
type Received = std::result::Result<Signal, broadcast::error::RecvError>;

/// Drops the server subscription with the topic's last subscription.
struct Leave {
    cache: Cache,
    topic: Topic,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let pubsub = &self.cache.inner.pubsub;
        if pubsub.hub.leave_if_unused(&self.topic) {
            if let Some(subscriber) = pubsub.subscriber.get() {
                subscriber.unsubscribe(self.topic.clone());
            }
        }
    }
}

/// A subscription: a [`Stream`] of the `T`s published. Messages that do
/// not decode as `T` are skipped, with a warning, and counted
/// ([`undecodable`](Subscription::undecodable)). Dropping it unsubscribes.
pub struct Subscription<T> {
    receiver: Pin<Box<dyn Stream<Item = Received> + Send>>,
    // Dropped after the receiver: the topic is then unused.
    leave: Leave,
    undecodable: Arc<AtomicU64>,
    gaps: Arc<AtomicU64>,
    _values: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.leave.topic.name())
            .finish()
    }
}

impl<T: DeserializeOwned> Subscription<T> {
    /// Messages that did not decode as `T`, so far.
    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// Gaps seen so far (times messages may have been lost).
    pub fn gaps(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }

    /// The next message or gap; `None` only if the cache is gone.
    pub async fn next_event(&mut self) -> Option<Event<T>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// This subscription as a stream of [`Event`]s: the messages, and a
    /// [`Event::Gap`] wherever messages may have been lost.
    pub fn events(self) -> Events<T> {
        Events(self)
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event<T>>> {
        loop {
            let signal = match self.receiver.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(signal)) => signal,
            };
            match signal {
                Ok(Signal::Message { channel, payload }) => {
                    match serde_json::from_slice(&payload) {
                        Ok(value) => return Poll::Ready(Some(Event::Message(value))),
                        Err(error) => {
                            self.undecodable.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(target: "redcache", channel = &*channel, %error, "pub/sub message skipped: it does not decode");
                        }
                    }
                }
                Ok(Signal::Gap(why)) => {
                    self.gaps.fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Some(Event::Gap(why.to_string())));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.gaps.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "redcache", topic = self.leave.topic.name(), missed, "pub/sub subscriber fell behind; messages dropped");
                    return Poll::Ready(Some(Event::Gap(format!(
                        "this subscriber fell behind and missed {missed} messages"
                    ))));
                }
                Err(broadcast::error::RecvError::Closed) => return Poll::Ready(None),
            }
        }
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        loop {
            match this.poll_event(cx) {
                Poll::Ready(Some(Event::Message(value))) => return Poll::Ready(Some(value)),
                Poll::Ready(Some(Event::Gap(_))) => {}
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A [`Subscription`] as a stream of [`Event`]s, from
/// [`Subscription::events`].
pub struct Events<T>(Subscription<T>);

impl<T> fmt::Debug for Events<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: DeserializeOwned> Stream for Events<T> {
    type Item = Event<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<T>>> {
        self.get_mut().0.poll_event(cx)
    }
}
