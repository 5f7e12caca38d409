//! The Redis side of the near cache: a task per cache that keeps a
//! RESP3 connection of its own to every node that holds data, with
//! `CLIENT TRACKING ON BCAST PREFIX <ns>:v: PREFIX <ns>:tag:`, and turns
//! what the server pushes into L1 invalidations.
//!
//! Why BCAST: the server then keeps no table of the keys each client read
//! (default tracking remembers every key read, up to
//! `tracking-table-max-keys`), reads may go over any connection (redis-rs'
//! `ConnectionManager` and cluster client would lose a per-connection
//! `CLIENT TRACKING` on reconnect), and a key is announced whoever changed
//! it. The cost: every process hears of every write under the two
//! prefixes, not only of keys it holds (README, "Near cache").
//!
//! A session is one set of tracking connections. It ends, and L1 is
//! flushed and bypassed until the next one is up, when a connection drops
//! (redis-rs pushes a `Disconnection`), stops answering the periodic check,
//! the Sentinel master is no longer a master, or the cluster's slot map
//! changes (Redis 7.0 announces nothing when a slot is given to another
//! node). Where the server refuses `CLIENT TRACKING`, the session
//! subscribes to a channel of the cache's namespace instead, which
//! redcache's own changes are published to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, Value};

use super::{Near, NearStatus};
use crate::backend::connection::resp3;
pub(crate) use crate::backend::connection::Nodes;
use crate::error::redis_unreachable;

/// Publishes this process's changes on the pub/sub fallback.
#[derive(Clone)]
pub(crate) struct Publisher {
    conn: MultiplexedConnection,
    channel: Arc<str>,
}

impl Publisher {
    /// `PUBLISH`, in the background: the change itself is done; other
    /// processes drop their copy when the message reaches them (or when
    /// the short fallback lifetime ends, if it is lost).
    pub(crate) fn publish(&self, key: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&*self.channel).arg(key);
        runtime.spawn(async move {
            if let Err(error) = cmd.query_async::<()>(&mut conn).await {
                tracing::debug!(target: "redcache", %error, "near cache: publishing a change failed");
            }
        });
    }
}

/// The session whose disconnect counts (older connections' pushes may
/// still arrive: their invalidations are applied, their disconnects not).
static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// Starts the task that keeps `near` coherent with the `nodes`; it ends
/// when the cache is dropped.
pub(crate) fn spawn(near: &Arc<Near>, nodes: Nodes, namespace: &str, connect_timeout: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        near.unsupported("no tokio runtime to track invalidations on");
        return;
    };
    let tracker = Tracker {
        near: Arc::downgrade(near),
        nodes,
        channel: format!("{namespace}:near").into(),
        connect_timeout,
        check_interval: near.settings().check_interval,
        session: Arc::new(AtomicU64::new(0)),
        went_live: false,
        slots: None,
        sentinel: None,
        told_fallback: false,
    };
    runtime.spawn(tracker.run());
}

struct Tracker {
    near: Weak<Near>,
    nodes: Nodes,
    channel: Arc<str>,
    connect_timeout: Duration,
    check_interval: Duration,
    /// The id of the session whose disconnect counts; 0 once it was lost
    /// (and for connections of no session).
    session: Arc<AtomicU64>,
    /// The last session went live (the backoff starts over).
    went_live: bool,
    /// On a cluster, the slot map the session's connections were made from.
    slots: Option<SlotMap>,
    /// Asked for the master on Sentinel, at each session and check.
    sentinel: Option<tokio::sync::Mutex<redis::sentinel::SentinelClient>>,
    told_fallback: bool,
}

/// How a session ended.
enum Ended {
    /// The connection dropped, or a check failed: reconnect.
    Lost(String),
    /// The server cannot keep L1 coherent: stop.
    Unsupported(String),
    /// The cache is gone.
    Dropped,
}

/// One node's connection in a session, and how to check it.
struct Tracked {
    conn: MultiplexedConnection,
    check: Check,
}

#[derive(Clone, PartialEq)]
enum Check {
    Ping,
    /// The node must still be a master, and the one the sentinels name
    /// (after a failover they name the new one at once; the old one may go
    /// on as a master for a while).
    Master(redis::ConnectionAddr),
}

impl Tracker {
    async fn run(mut self) {
        // If the task is dropped unfinished (its runtime shut down; the
        // connections' tasks die with it), nothing would drop stale
        // entries any more: L1 is bypassed for good.
        let _stopped = StopsTracking(self.near.clone());
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.session().await {
                Ended::Dropped => return,
                Ended::Unsupported(why) => {
                    if let Some(near) = self.near.upgrade() {
                        tracing::warn!(target: "redcache", %why, "near cache: invalidations cannot be had from this server; L1 is bypassed");
                        near.unsupported(&why);
                    }
                    return;
                }
                Ended::Lost(why) => {
                    let Some(near) = self.near.upgrade() else {
                        return;
                    };
                    near.go_down(&why);
                    drop(near);
                    tracing::debug!(target: "redcache", %why, ?backoff, "near cache: tracking session ended; reconnecting");
                }
            }
            if std::mem::take(&mut self.went_live) {
                backoff = Duration::from_millis(50);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            if self.near.strong_count() == 0 {
                return;
            }
        }
    }

    /// Connects, tracks, and checks until something ends the session.
    async fn session(&mut self) -> Ended {
        let id = SESSIONS.fetch_add(1, Ordering::Relaxed);
        self.session.store(id, Ordering::Release);
        let clients = match self.clients().await {
            Ok(clients) => clients,
            Err(ended) => return ended,
        };
        let mut tracked = Vec::with_capacity(clients.len());
        for (client, check) in &clients {
            let conn = match self.connect(client, id).await {
                Ok(conn) => conn,
                Err(ended) => return ended,
            };
            tracked.push(Tracked {
                conn,
                check: check.clone(),
            });
        }
        let Some(near) = self.near.upgrade() else {
            return Ended::Dropped;
        };
        let [values, tags] = near.prefixes();
        let mut status = NearStatus::Tracking;
        for node in &mut tracked {
            let mut track = redis::cmd("CLIENT");
            track
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(values)
                .arg("PREFIX")
                .arg(tags);
            match self.within(track.query_async::<()>(&mut node.conn)).await {
                Ok(()) => {}
                Err(Some(error)) if !redis_unreachable(&error) => {
                    status = NearStatus::PubSub;
                    break;
                }
                Err(error) => return lost("CLIENT TRACKING", error),
            }
        }
        if status == NearStatus::PubSub {
            if near.settings().fallback_lifetime.is_zero() {
                return Ended::Unsupported(
                    "the server refuses CLIENT TRACKING and the pub/sub fallback is off".into(),
                );
            }
            // One subscription is enough: a cluster forwards PUBLISH to
            // every node.
            tracked.truncate(1);
            let node = &mut tracked[0];
            if let Err(error) = self.within(node.conn.subscribe(&*self.channel)).await {
                return lost("SUBSCRIBE", error);
            }
            near.set_publisher(Some(Publisher {
                conn: node.conn.clone(),
                channel: Arc::clone(&self.channel),
            }));
            if !self.told_fallback {
                self.told_fallback = true;
                tracing::warn!(target: "redcache", channel = &*self.channel,
                    lifetime = ?near.settings().fallback_lifetime,
                    "near cache: the server refuses CLIENT TRACKING; falling back to a pub/sub channel that only redcache's own changes reach, with a short L1 lifetime");
            }
        } else {
            near.set_publisher(None);
        }
        near.go_live(status);
        tracing::debug!(target: "redcache", ?status, nodes = tracked.len(), "near cache: invalidations flow");
        drop(near);
        self.went_live = true;
        // Compared with the map the connections were made from: a change
        // since then, too, ends the session.
        let slots = self.slots.take();
        loop {
            let Some(near) = self.near.upgrade() else {
                return Ended::Dropped;
            };
            let woken = tokio::time::timeout(self.check_interval, near.wake.notified()).await;
            drop(near);
            // A wake-up left over from an earlier session is no news.
            if woken.is_ok() && self.session.load(Ordering::Acquire) != id {
                return Ended::Lost("the tracking connection was closed".into());
            }
            for node in &mut tracked {
                if let Err(why) = self.check(node).await {
                    return Ended::Lost(why);
                }
            }
            if let Some(slots) = &slots {
                let now = slot_map(&mut tracked[0].conn, self).await;
                if now.as_ref() != Ok(slots) {
                    return Ended::Lost("the cluster's slot map changed".into());
                }
            }
        }
    }

    /// A clean answer within the check interval (at least the connect
    /// timeout): `None` for no answer in time.
    async fn within<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Option<redis::RedisError>> {
        match tokio::time::timeout(self.check_interval.max(self.connect_timeout), fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Some(error)),
            Err(_) => Err(None),
        }
    }

    async fn check(&self, node: &mut Tracked) -> Result<(), String> {
        match &node.check {
            Check::Ping => {
                let ping = redis::cmd("PING");
                self.within(ping.query_async::<Value>(&mut node.conn))
                    .await
                    .map(drop)
                    .map_err(|e| describe("PING", e))
            }
            Check::Master(addr) => {
                let role = redis::cmd("ROLE");
                match self
                    .within(role.query_async::<Vec<Value>>(&mut node.conn))
                    .await
                {
                    Ok(role) if matches!(role.first(), Some(Value::BulkString(r)) if r == b"master") =>
                        {}
                    Ok(_) => return Err("the Sentinel master is no longer a master".into()),
                    Err(e) => return Err(describe("ROLE", e)),
                }
                match self.sentinel_master().await {
                    Ok(master) if master.get_connection_info().addr() == addr => Ok(()),
                    Ok(_) => Err("the sentinels name another master".into()),
                    Err(Ended::Lost(why) | Ended::Unsupported(why)) => Err(why),
                    Err(Ended::Dropped) => Ok(()),
                }
            }
        }
    }

    /// The master the sentinels name now.
    async fn sentinel_master(&self) -> Result<Client, Ended> {
        let Some(sentinel) = &self.sentinel else {
            return Err(Ended::Unsupported("no sentinels".into()));
        };
        let mut sentinel = sentinel.lock().await;
        tokio::time::timeout(self.connect_timeout, sentinel.async_get_client())
            .await
            .map_err(|_| Ended::Lost("the sentinels did not answer in time".into()))?
            .map_err(|e| Ended::Lost(format!("no master from the sentinels: {e}")))
    }

    /// The RESP3 clients of the nodes to track.
    async fn clients(&mut self) -> Result<Vec<(Client, Check)>, Ended> {
        let open = |url: &str| {
            Client::open(url)
                .map(resp3)
                .map_err(|e| Ended::Unsupported(format!("the URL cannot be used: {e}")))
        };
        match &self.nodes {
            Nodes::Single(url) => Ok(vec![(open(url)?, Check::Ping)]),
            Nodes::Sentinel { sentinels, service } => {
                if self.sentinel.is_none() {
                    let sentinel = redis::sentinel::SentinelClient::build(
                        sentinels.clone(),
                        service.clone(),
                        None,
                        redis::sentinel::SentinelServerType::Master,
                    )
                    .map_err(|e| {
                        Ended::Unsupported(format!("the sentinels cannot be used: {e}"))
                    })?;
                    self.sentinel = Some(tokio::sync::Mutex::new(sentinel));
                }
                let master = self.sentinel_master().await?;
                let addr = master.get_connection_info().addr().clone();
                Ok(vec![(resp3(master), Check::Master(addr))])
            }
            Nodes::Cluster(seeds) => {
                for seed in seeds {
                    let client = open(seed)?;
                    let Ok(mut conn) = self.connect(&client, 0).await else {
                        continue;
                    };
                    let Ok(slots) = slot_map(&mut conn, self).await else {
                        continue;
                    };
                    let mut primaries: Vec<(String, u16)> =
                        slots.iter().map(|s| (s.2.clone(), s.3)).collect();
                    primaries.sort();
                    primaries.dedup();
                    self.slots = Some(slots);
                    let info = client.get_connection_info().clone();
                    return primaries
                        .into_iter()
                        .map(|(host, port)| {
                            let addr = match info.addr() {
                                redis::ConnectionAddr::TcpTls {
                                    insecure,
                                    tls_params,
                                    ..
                                } => redis::ConnectionAddr::TcpTls {
                                    host,
                                    port,
                                    insecure: *insecure,
                                    tls_params: tls_params.clone(),
                                },
                                _ => redis::ConnectionAddr::Tcp(host, port),
                            };
                            Client::open(info.clone().set_addr(addr))
                                .map(|c| (c, Check::Ping))
                                .map_err(|e| Ended::Unsupported(e.to_string()))
                        })
                        .collect();
                }
                Err(Ended::Lost("no cluster node answered".into()))
            }
        }
    }

    /// A RESP3 connection whose pushes reach the near cache.
    async fn connect(&self, client: &Client, session: u64) -> Result<MultiplexedConnection, Ended> {
        let near = self.near.clone();
        let current = Arc::clone(&self.session);
        let on_push = move |push: PushInfo| -> Result<(), ()> {
            if let Some(near) = near.upgrade() {
                on_push(&near, push, session, &current);
            }
            Ok(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None)
            .set_push_sender(on_push);
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) if error.kind() == redis::ErrorKind::RESP3NotSupported => Err(
                Ended::Unsupported(format!("the server speaks no RESP3: {error}")),
            ),
            Ok(Err(error)) => Err(lost("connect", Some(error))),
            Err(_) => Err(lost("connect", None)),
        }
    }
}

/// Marks the near cache unsupported when the tracking task ends, by any
/// way but its cache being dropped.
struct StopsTracking(Weak<Near>);

impl Drop for StopsTracking {
    fn drop(&mut self) {
        if let Some(near) = self.0.upgrade() {
            if near.status() != NearStatus::Unsupported {
                tracing::warn!(target: "redcache", "near cache: its tracking task stopped (the tokio runtime it ran on shut down); L1 is bypassed from now on");
                near.unsupported("the tracking task stopped");
            }
        }
    }
}

/// What a server pushed on a tracking connection of session `session`.
fn on_push(near: &Near, push: PushInfo, session: u64, current: &AtomicU64) {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    if let Value::BulkString(key) = key {
                        near.invalidated(&String::from_utf8_lossy(key));
                    }
                }
            }
            // FLUSHDB or FLUSHALL (of any database).
            _ => near.flush("the server was flushed"),
        },
        PushKind::Message => {
            if let Some(Value::BulkString(key)) = push.data.get(1) {
                near.invalidated(&String::from_utf8_lossy(key));
            }
        }
        PushKind::Disconnection => {
            // Flushed and bypassed at once; the task reconnects.
            let ours = current.compare_exchange(session, 0, Ordering::AcqRel, Ordering::Acquire);
            if session != 0 && ours.is_ok() {
                near.go_down("the tracking connection was closed");
                near.wake.notify_one();
            }
        }
        _ => {}
    }
}

/// The cluster's slots: (start, end, host, port) of each range's primary.
type SlotMap = Vec<(i64, i64, String, u16)>;

async fn slot_map(conn: &mut MultiplexedConnection, tracker: &Tracker) -> Result<SlotMap, ()> {
    let mut slots = redis::cmd("CLUSTER");
    slots.arg("SLOTS");
    let reply: Vec<Vec<Value>> = tracker
        .within(slots.query_async(conn))
        .await
        .map_err(drop)?;
    let mut map = SlotMap::new();
    for range in reply {
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (range.first(), range.get(1), range.get(2))
        else {
            return Err(());
        };
        let (Some(Value::BulkString(host)), Some(Value::Int(port))) =
            (primary.first(), primary.get(1))
        else {
            return Err(());
        };
        let port = u16::try_from(*port).map_err(drop)?;
        map.push((
            *start,
            *end,
            String::from_utf8_lossy(host).into_owned(),
            port,
        ));
    }
    map.sort();
    Ok(map)
}

fn describe(what: &str, error: Option<redis::RedisError>) -> String {
    match error {
        Some(error) => format!("{what} failed: {error}"),
        None => format!("{what}: no answer in time"),
    }
}

fn lost(what: &str, error: Option<redis::RedisError>) -> Ended {
    Ended::Lost(describe(what, error))
}
