//! In-process single flight: concurrent callers of one key share one load.
//!
//! The first caller of a key becomes the *leader* and runs the load; the
//! others *follow* and wait for its value (a clone each: nothing is
//! decoded again). The leader
//! holds a guard: if its future is dropped (cancelled) or its load panics,
//! the guard tells the followers to retry, and one of them leads the next
//! attempt. Nobody waits on a load that will never finish.
//!
//! Flights are keyed by the cache key *and* the tag epochs read before the
//! load, so a call that starts after a tag invalidation never joins a load
//! that began before it.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::entry::Epoch;

/// A key, the template that rendered it, and the tag epochs the load is
/// based on (`None` when the backend could not be read and the epochs are
/// unknown). Two templates that render the same key never share a load.
/// A flight is one load of one key, for calls that read the same tag epochs
/// and the same entry head: a call that read after a `put` or an
/// `invalidate_key` never joins a load that began before it.
pub(crate) type FlightKey = (String, &'static str, Option<Vec<Epoch>>, Vec<u8>);

#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Pending,
    /// The value the leader loaded (a `T` of the cached fn; a follower of
    /// another type, which a shared template allows, reads again).
    Value(Arc<dyn Any + Send + Sync>),
    /// The leader was cancelled or panicked: try again (one follower
    /// leads the next attempt).
    Retry,
    /// The leader's load returned an error (or a value that does not
    /// encode): each follower runs the load once itself, at once.
    Failed,
}

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<FlightKey, Arc<watch::Sender<Outcome>>>>,
}

pub(crate) enum Joined<'a> {
    Leader(Leader<'a>),
    Follower(Follower),
}

impl Flights {
    /// Joins the flight of `key`, starting it if there is none.
    pub(crate) fn join(&self, key: FlightKey) -> Joined<'_> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = map.get(&key) {
            return Joined::Follower(Follower { rx: tx.subscribe() });
        }
        let tx = Arc::new(watch::Sender::new(Outcome::Pending));
        map.insert(key.clone(), Arc::clone(&tx));
        Joined::Leader(Leader {
            flights: self,
            key,
            tx,
            finished: false,
        })
    }

    fn remove(&self, key: &FlightKey, tx: &Arc<watch::Sender<Outcome>>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|current| Arc::ptr_eq(current, tx)) {
            map.remove(key);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

/// The caller that runs the load. Dropping it unfinished releases the
/// followers with [`Outcome::Retry`].
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: FlightKey,
    tx: Arc<watch::Sender<Outcome>>,
    finished: bool,
}

impl Leader<'_> {
    /// Hands `value` to the followers and ends the flight. With no
    /// follower nothing is cloned; one that joins meanwhile reads again.
    pub(crate) fn share<T: Clone + Send + Sync + 'static>(self, value: &T) {
        let outcome = match self.tx.receiver_count() {
            0 => Outcome::Retry,
            _ => Outcome::Value(Arc::new(value.clone())),
        };
        self.finish(outcome);
    }

    /// Hands the outcome to the followers and ends the flight.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.release(outcome);
    }

    fn release(&mut self, outcome: Outcome) {
        if !self.finished {
            self.finished = true;
            // Remove first: a caller arriving after this point starts a new
            // flight (and reads the backend) instead of joining a finished one.
            self.flights.remove(&self.key, &self.tx);
            self.tx.send_replace(outcome);
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.release(Outcome::Retry);
    }
}

pub(crate) struct Follower {
    rx: watch::Receiver<Outcome>,
}

impl Follower {
    /// Waits for the leader. Cancel-safe: dropping this future leaves the
    /// flight untouched.
    pub(crate) async fn wait(mut self) -> Outcome {
        match self.rx.wait_for(|o| !matches!(o, Outcome::Pending)).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => Outcome::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> FlightKey {
        (k.to_string(), "t", Some(vec![]), vec![])
    }

    #[tokio::test]
    async fn followers_receive_the_leaders_value() {
        let flights = Flights::default();
        let Joined::Leader(leader) = flights.join(key("a")) else {
            panic!("first caller must lead")
        };
        let Joined::Follower(follower) = flights.join(key("a")) else {
            panic!("second caller must follow")
        };
        leader.share(&"v".to_string());
        let Outcome::Value(value) = follower.wait().await else {
            panic!("the follower gets the value")
        };
        assert_eq!(
            value.downcast_ref::<String>().map(String::as_str),
            Some("v")
        );
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn without_followers_nothing_is_cloned() {
        #[derive(Debug)]
        struct NoClone;
        impl Clone for NoClone {
            fn clone(&self) -> Self {
                panic!("cloned for nobody")
            }
        }
        let flights = Flights::default();
        let Joined::Leader(leader) = flights.join(key("a")) else {
            panic!("first caller must lead")
        };
        leader.share(&NoClone);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_followers_with_retry() {
        let flights = Flights::default();
        let Joined::Leader(leader) = flights.join(key("a")) else {
            panic!()
        };
        let Joined::Follower(follower) = flights.join(key("a")) else {
            panic!()
        };
        drop(leader);
        assert!(matches!(follower.wait().await, Outcome::Retry));
        assert!(matches!(flights.join(key("a")), Joined::Leader(_)));
    }

    #[tokio::test]
    async fn other_epochs_start_another_flight() {
        let flights = Flights::default();
        let _old = flights.join(("a".into(), "t", Some(vec![1]), vec![]));
        assert!(matches!(
            flights.join(("a".into(), "t", Some(vec![2]), vec![])),
            Joined::Leader(_)
        ));
        assert!(matches!(
            flights.join(("a".into(), "other", Some(vec![1]), vec![])),
            Joined::Leader(_)
        ));
    }
}
