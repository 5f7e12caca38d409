//! The fan-out of one cache's subscriptions: one broadcast channel per
//! subscribed topic, fed by the subscriber task (Redis) or by `publish`
//! itself (the embedded backend). Many subscriptions of a topic share one
//! server subscription.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{broadcast, watch};

/// What a subscription is to: a channel, a pattern of channels, or (on a
/// cluster) a sharded channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    Channel(String),
    Pattern(String),
    Sharded(String),
}

impl Topic {
    pub(crate) fn name(&self) -> &str {
        match self {
            Topic::Channel(name) | Topic::Pattern(name) | Topic::Sharded(name) => name,
        }
    }
}

/// What reaches a subscription.
#[derive(Debug, Clone)]
pub(crate) enum Signal {
    /// A message published on `channel`.
    Message {
        channel: Arc<str>,
        payload: Arc<[u8]>,
    },
    /// Messages may have been lost: the connection dropped, or a shard
    /// moved.
    Gap(Arc<str>),
}

/// Messages a subscriber may fall behind by before it loses some (and is
/// told with a gap).
pub(crate) const BUFFER: usize = 1024;

#[derive(Default)]
pub(crate) struct Hub {
    topics: Mutex<HashMap<Topic, Subscribed>>,
}

/// A topic's fan-out, and whether the server confirmed its subscription.
struct Subscribed {
    sender: broadcast::Sender<Signal>,
    confirmed: watch::Sender<bool>,
}

impl std::ops::Deref for Subscribed {
    type Target = broadcast::Sender<Signal>;

    fn deref(&self) -> &Self::Target {
        &self.sender
    }
}

/// How a subscription joined its topic.
pub(crate) enum Joined {
    /// The first: it asks the server, then calls [`Hub::confirm`].
    First,
    /// Another: the server subscription is the first's; it is confirmed
    /// when this says `true`.
    Later(watch::Receiver<bool>),
}

impl Hub {
    fn topics(&self) -> MutexGuard<'_, HashMap<Topic, Subscribed>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver of `topic`, and how it joined.
    pub(crate) fn join(&self, topic: &Topic) -> (broadcast::Receiver<Signal>, Joined) {
        let mut topics = self.topics();
        if let Some(subscribed) = topics.get(topic) {
            if subscribed.receiver_count() > 0 {
                return (
                    subscribed.subscribe(),
                    Joined::Later(subscribed.confirmed.subscribe()),
                );
            }
        }
        let (sender, receiver) = broadcast::channel(BUFFER);
        let (confirmed, _) = watch::channel(false);
        topics.insert(topic.clone(), Subscribed { sender, confirmed });
        (receiver, Joined::First)
    }

    /// The server confirmed the subscription of `topic`.
    pub(crate) fn confirm(&self, topic: &Topic) {
        if let Some(subscribed) = self.topics().get(topic) {
            subscribed.confirmed.send_replace(true);
        }
    }

    /// Forgets `topic` if no subscription is left; true if it did (the
    /// server subscription can go).
    pub(crate) fn leave_if_unused(&self, topic: &Topic) -> bool {
        let mut topics = self.topics();
        if topics.get(topic).is_some_and(|s| s.receiver_count() == 0) {
            topics.remove(topic);
            return true;
        }
        false
    }

    /// Whether `topic` has a subscription.
    pub(crate) fn in_use(&self, topic: &Topic) -> bool {
        self.topics()
            .get(topic)
            .is_some_and(|s| s.receiver_count() > 0)
    }

    /// Every topic with a subscription (to subscribe again after a
    /// reconnect).
    pub(crate) fn topics_in_use(&self) -> Vec<Topic> {
        self.topics()
            .iter()
            .filter(|(_, s)| s.receiver_count() > 0)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Hands a message to the subscriptions of `topic`.
    pub(crate) fn deliver(&self, topic: &Topic, channel: &str, payload: &[u8]) -> usize {
        let topics = self.topics();
        let Some(sender) = topics.get(topic) else {
            return 0;
        };
        sender
            .send(Signal::Message {
                channel: channel.into(),
                payload: payload.into(),
            })
            .unwrap_or(0)
    }

    /// Hands a message published on `channel` to every subscription that
    /// matches it (the embedded backend's `PUBLISH`); how many got it.
    pub(crate) fn publish_local(&self, channel: &str, payload: &[u8]) -> usize {
        let topics = self.topics();
        let message = Signal::Message {
            channel: channel.into(),
            payload: payload.into(),
        };
        topics
            .iter()
            .filter(|(topic, _)| match topic {
                Topic::Channel(name) | Topic::Sharded(name) => name == channel,
                Topic::Pattern(pattern) => {
                    crate::glob::matches(pattern.as_bytes(), channel.as_bytes())
                }
            })
            .map(|(_, sender)| sender.send(message.clone()).unwrap_or(0))
            .sum()
    }

    /// Tells every subscription that messages may have been lost.
    pub(crate) fn gap(&self, why: &str) {
        let why: Arc<str> = why.into();
        for sender in self.topics().values() {
            let _ = sender.send(Signal::Gap(Arc::clone(&why)));
        }
    }

    /// Tells the subscriptions of `topic` that messages may have been lost.
    pub(crate) fn gap_on(&self, topic: &Topic, why: &str) {
        if let Some(sender) = self.topics().get(topic) {
            let _ = sender.send(Signal::Gap(why.into()));
        }
    }
}
