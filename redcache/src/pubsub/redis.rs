//! The Redis side of pub/sub: one task per cache, started by its first
//! subscription, that owns a RESP3 connection of its own (pushes carry the
//! messages; commands on the shared connection are never held up by it)
//! and subscribes the hub's topics on it.
//!
//! Single node and Sentinel: the task checks the connection every second
//! (`PING`; on Sentinel also `ROLE`, so a demoted master is left). When the
//! connection drops or a check fails, every subscription gets a gap, and
//! the task connects again (on Sentinel to the master the sentinels name
//! now) and subscribes every topic again.
//!
//! Cluster: a RESP3 cluster connection with `SSUBSCRIBE`s. A node's
//! disconnect ends it like a single node's (gap, new connection from a
//! fresh view of the slots, every topic subscribed again: after a failover
//! redis-rs alone renews nothing until a command of its own fails, and a
//! subscriber sends none). A shard subscription the server drops by itself
//! (its slot moved to another node: Redis sends `sunsubscribe`) is a gap
//! on that channel, and is made again where the slot lives now.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::hub::{Hub, Topic};
use crate::backend::connection::{resp3, Nodes};
use crate::error::{Error, Result};

/// Why a subscription cannot be made any more.
const TASK_STOPPED: &str = "the pub/sub task stopped (its tokio runtime shut down)";

/// How often the connection is checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The handle of a cache's subscriber task; the task ends with it.
pub(crate) struct Subscriber {
    control: mpsc::UnboundedSender<Control>,
    wait: Duration,
}

enum Control {
    Subscribe(Topic, oneshot::Sender<Result<()>>),
    Unsubscribe(Topic),
}

impl Subscriber {
    pub(crate) fn spawn(nodes: Nodes, connect_timeout: Duration, hub: Arc<Hub>) -> Self {
        let (control, requests) = mpsc::unbounded_channel();
        let task = Task {
            nodes,
            connect_timeout,
            hub,
            requests,
            waiting: Vec::new(),
            sentinel: None,
        };
        tokio::spawn(task.run());
        Subscriber {
            control,
            // Time to connect, ask the sentinels, and subscribe.
            wait: connect_timeout * 3 + Duration::from_secs(1),
        }
    }

    /// Subscribes `topic` on the server; returns once the server confirmed.
    pub(crate) async fn subscribe(&self, topic: Topic) -> Result<()> {
        let (done, confirmed) = oneshot::channel();
        self.control
            .send(Control::Subscribe(topic, done))
            .map_err(|_| Error::Config(TASK_STOPPED))?;
        match tokio::time::timeout(self.wait, confirmed).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Config(TASK_STOPPED)),
            Err(_) => Err(Error::Timeout(self.wait)),
        }
    }

    /// How long a subscription waits for the server's confirmation.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    pub(crate) fn unsubscribe(&self, topic: Topic) {
        let _ = self.control.send(Control::Unsubscribe(topic));
    }
}

enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

struct Task {
    nodes: Nodes,
    connect_timeout: Duration,
    hub: Arc<Hub>,
    requests: mpsc::UnboundedReceiver<Control>,
    /// Subscriptions asked for while no connection was up.
    waiting: Vec<oneshot::Sender<Result<()>>>,
    sentinel: Option<redis::sentinel::SentinelClient>,
}

/// How a session ended.
enum Ended {
    Lost(String),
    /// The cache is gone.
    Dropped,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        let mut lost_before = false;
        loop {
            match self.session(&mut lost_before, &mut backoff).await {
                Ended::Dropped => return,
                Ended::Lost(why) => {
                    tracing::warn!(target: "redcache", %why, "pub/sub connection lost; subscribing again (messages published meanwhile are lost)");
                    if !std::mem::replace(&mut lost_before, true) {
                        self.hub.gap(&format!("pub/sub connection lost: {why}"));
                    }
                }
            }
            // Waits out the backoff; subscriptions asked for meanwhile are
            // answered once a connection is up.
            let pause = tokio::time::sleep(backoff);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    request = self.requests.recv() => match request {
                        None => return,
                        Some(Control::Subscribe(_, done)) => self.waiting.push(done),
                        Some(Control::Unsubscribe(_)) => {}
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// The connection, and on Sentinel the master's address.
    async fn connect(
        &mut self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<(Conn, Option<redis::ConnectionAddr>)> {
        let within = |fut| tokio::time::timeout(self.connect_timeout, fut);
        let node_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout))
            .set_push_sender(pushes.clone());
        match &self.nodes {
            Nodes::Single(url) => {
                let client = resp3(Client::open(url.as_str())?);
                let conn =
                    within(client.get_multiplexed_async_connection_with_config(&node_config))
                        .await
                        .map_err(|_| Error::Timeout(self.connect_timeout))??;
                Ok((Conn::Node(conn), None))
            }
            Nodes::Sentinel { sentinels, service } => {
                if self.sentinel.is_none() {
                    self.sentinel = Some(redis::sentinel::SentinelClient::build(
                        sentinels.clone(),
                        service.clone(),
                        None,
                        redis::sentinel::SentinelServerType::Master,
                    )?);
                }
                let sentinel = self.sentinel.as_mut().expect("just made");
                let master =
                    tokio::time::timeout(self.connect_timeout, sentinel.async_get_client())
                        .await
                        .map_err(|_| Error::Timeout(self.connect_timeout))??;
                let addr = master.get_connection_info().addr().clone();
                let conn = tokio::time::timeout(
                    self.connect_timeout,
                    resp3(master).get_multiplexed_async_connection_with_config(&node_config),
                )
                .await
                .map_err(|_| Error::Timeout(self.connect_timeout))??;
                Ok((Conn::Node(conn), Some(addr)))
            }
            Nodes::Cluster(urls) => {
                let client =
                    redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
                        .use_protocol(ProtocolVersion::RESP3)
                        .push_sender(pushes)
                        .connection_timeout(self.connect_timeout)
                        .response_timeout(self.connect_timeout)
                        .build()?;
                let conn =
                    tokio::time::timeout(self.connect_timeout, client.get_async_connection())
                        .await
                        .map_err(|_| Error::Timeout(self.connect_timeout))??;
                Ok((Conn::Cluster(conn), None))
            }
        }
    }

    async fn session(&mut self, lost_before: &mut bool, backoff: &mut Duration) -> Ended {
        let (pushes, mut received) = mpsc::unbounded_channel();
        let (mut conn, sentinel) = match self.connect(pushes).await {
            Ok(conn) => conn,
            Err(error) => return Ended::Lost(format!("connect: {error}")),
        };
        for topic in self.hub.topics_in_use() {
            if let Err(error) = self.subscribe(&mut conn, &topic).await {
                return Ended::Lost(format!("subscribe {}: {error}", topic.name()));
            }
        }
        for done in self.waiting.drain(..) {
            let _ = done.send(Ok(()));
        }
        if std::mem::take(lost_before) {
            tracing::info!(target: "redcache", "pub/sub subscribed again");
        }
        *backoff = Duration::from_millis(50);
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        loop {
            tokio::select! {
                push = received.recv() => {
                    let Some(push) = push else {
                        return Ended::Lost("the connection closed".into());
                    };
                    if let Some(ended) = self.on_push(&mut conn, push).await {
                        return ended;
                    }
                }
                request = self.requests.recv() => match request {
                    None => return Ended::Dropped,
                    Some(Control::Subscribe(topic, done)) => {
                        let result = self.subscribe(&mut conn, &topic).await;
                        let lost = result.as_ref().err().filter(|e| e.is_unreachable()).map(ToString::to_string);
                        let _ = done.send(result);
                        if let Some(why) = lost {
                            return Ended::Lost(why);
                        }
                    }
                    Some(Control::Unsubscribe(topic)) => {
                        if !self.hub.in_use(&topic) {
                            let _ = self.unsubscribe(&mut conn, &topic).await;
                        }
                    }
                },
                _ = check.tick() => {
                    if let Err(why) = self.check(&mut conn, sentinel.as_ref()).await {
                        return Ended::Lost(why);
                    }
                }
            }
        }
    }

    async fn on_push(&self, conn: &mut Conn, push: PushInfo) -> Option<Ended> {
        let mut data = push.data.into_iter();
        match push.kind {
            PushKind::Message => {
                if let (Some(channel), Some(payload)) = (bytes(data.next()), bytes(data.next())) {
                    let channel = String::from_utf8_lossy(&channel);
                    self.hub
                        .deliver(&Topic::Channel(channel.to_string()), &channel, &payload);
                }
            }
            PushKind::SMessage => {
                if let (Some(channel), Some(payload)) = (bytes(data.next()), bytes(data.next())) {
                    let channel = String::from_utf8_lossy(&channel);
                    self.hub
                        .deliver(&Topic::Sharded(channel.to_string()), &channel, &payload);
                }
            }
            PushKind::PMessage => {
                if let (Some(pattern), Some(channel), Some(payload)) =
                    (bytes(data.next()), bytes(data.next()), bytes(data.next()))
                {
                    let pattern = String::from_utf8_lossy(&pattern);
                    let channel = String::from_utf8_lossy(&channel);
                    self.hub
                        .deliver(&Topic::Pattern(pattern.to_string()), &channel, &payload);
                }
            }
            PushKind::SUnsubscribe => {
                // Unasked for (a topic in use): its slot moved to another
                // node. Subscribe again; the cluster client finds the node.
                if let Some(channel) = bytes(data.next()) {
                    let topic = Topic::Sharded(String::from_utf8_lossy(&channel).into_owned());
                    if self.hub.in_use(&topic) {
                        self.hub
                            .gap_on(&topic, "the channel's shard moved to another node");
                        if let Err(error) = self.subscribe(conn, &topic).await {
                            return Some(Ended::Lost(format!(
                                "subscribe {} again: {error}",
                                topic.name()
                            )));
                        }
                    }
                }
            }
            // On a cluster, one node's connection: after a failover the
            // cluster client would renew its subscriptions only once a
            // command of its own found the new topology, and the
            // subscriber sends none. A new cluster connection reads the
            // slots afresh, and every topic is subscribed again.
            PushKind::Disconnection => return Some(Ended::Lost("the connection closed".into())),
            _ => {}
        }
        None
    }

    async fn subscribe(&self, conn: &mut Conn, topic: &Topic) -> Result<()> {
        let name = topic.name();
        let done = match (conn, topic) {
            (Conn::Node(c), Topic::Channel(_)) => self.within(c.subscribe(name)).await,
            (Conn::Node(c), Topic::Pattern(_)) => self.within(c.psubscribe(name)).await,
            (Conn::Cluster(c), Topic::Sharded(_)) => self.within(c.ssubscribe(name)).await,
            (Conn::Cluster(c), Topic::Channel(_)) => self.within(c.subscribe(name)).await,
            (Conn::Cluster(c), Topic::Pattern(_)) => self.within(c.psubscribe(name)).await,
            (Conn::Node(_), Topic::Sharded(_)) => {
                return Err(Error::Config("sharded channels need Redis Cluster"))
            }
        };
        done
    }

    async fn unsubscribe(&self, conn: &mut Conn, topic: &Topic) -> Result<()> {
        let name = topic.name();
        match (conn, topic) {
            (Conn::Node(c), Topic::Channel(_)) => self.within(c.unsubscribe(name)).await,
            (Conn::Node(c), Topic::Pattern(_)) => self.within(c.punsubscribe(name)).await,
            (Conn::Cluster(c), Topic::Sharded(_)) => self.within(c.sunsubscribe(name)).await,
            (Conn::Cluster(c), Topic::Channel(_)) => self.within(c.unsubscribe(name)).await,
            (Conn::Cluster(c), Topic::Pattern(_)) => self.within(c.punsubscribe(name)).await,
            (Conn::Node(_), Topic::Sharded(_)) => Ok(()),
        }
    }

    async fn within<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.connect_timeout, fut).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::Timeout(self.connect_timeout)),
        }
    }

    /// `PING`; on Sentinel also `ROLE`, and the master the sentinels name
    /// (after a failover they name the new one at once, while the old one
    /// may go on as a master for seconds): the connection is left for the
    /// new master.
    async fn check(
        &mut self,
        conn: &mut Conn,
        master: Option<&redis::ConnectionAddr>,
    ) -> std::result::Result<(), String> {
        let ping = redis::cmd("PING");
        let pinged = match conn {
            Conn::Node(c) => self.within(ping.query_async::<Value>(c)).await,
            Conn::Cluster(c) => self.within(ping.query_async::<Value>(c)).await,
        };
        if let Err(error) = pinged {
            return Err(format!("PING: {error}"));
        }
        if let (Some(master), Conn::Node(c)) = (master, conn) {
            let role = self
                .within(redis::cmd("ROLE").query_async::<Vec<Value>>(c))
                .await
                .map_err(|e| format!("ROLE: {e}"))?;
            if !matches!(role.first(), Some(Value::BulkString(r)) if r == b"master") {
                return Err("the Sentinel master is no longer a master".into());
            }
            if let Some(sentinel) = self.sentinel.as_mut() {
                let named =
                    tokio::time::timeout(self.connect_timeout, sentinel.async_get_client()).await;
                if let Ok(Ok(named)) = named {
                    if named.get_connection_info().addr() != master {
                        return Err("the sentinels name another master".into());
                    }
                }
            }
        }
        Ok(())
    }
}

fn bytes(value: Option<Value>) -> Option<Vec<u8>> {
    match value? {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}
