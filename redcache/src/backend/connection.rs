//! One connection type for every topology, so the Redis backend is written
//! once: a single node through redis-rs' `ConnectionManager` (it
//! reconnects), Redis Cluster through `cluster_async` (it follows slot
//! moves and failovers), or a master found through Sentinel (asked again
//! after a failover). Cluster and Sentinel connect on first use, so a cache
//! can be built while they are down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::error::{redis_unreachable, Error, Result};

/// Where the data lives, as the cache was configured: what a connection of
/// its own (a subscriber, a blocking stream reader, the near cache's
/// tracking) is made from.
#[derive(Debug, Clone)]
pub(crate) enum Nodes {
    Single(String),
    Sentinel {
        sentinels: Vec<String>,
        service: String,
    },
    Cluster(Vec<String>),
}

impl Nodes {
    /// The URLs given: the node, the cluster's seeds, or the sentinels.
    pub(crate) fn urls(&self) -> &[String] {
        match self {
            Nodes::Single(url) => std::slice::from_ref(url),
            Nodes::Cluster(urls)
            | Nodes::Sentinel {
                sentinels: urls, ..
            } => urls,
        }
    }

    /// A new connection to these nodes, shared with nothing else: for
    /// commands that block it (`XREADGROUP ... BLOCK`). On a cluster, the
    /// client answers an unanswered command after `response_timeout`.
    pub(crate) fn dedicated(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Connection> {
        match self {
            Nodes::Single(url) => Connection::single(url, connect_timeout),
            Nodes::Sentinel { sentinels, service } => {
                Connection::sentinel(sentinels, service, connect_timeout)
            }
            Nodes::Cluster(nodes) => Connection::cluster(nodes, connect_timeout, response_timeout),
        }
    }
}

/// `client` speaking RESP3: what connections that take pushes (tracking
/// invalidations, pub/sub messages) need.
pub(crate) fn resp3(client: Client) -> Client {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(settings)).unwrap_or(client)
}

#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
    Sentinel(Arc<SentinelMaster>),
}

/// The master of a Sentinel-monitored group: the connection to the master
/// the sentinels named last, dropped when it turns out to be a replica or
/// unreachable, so that the next command asks the sentinels again.
pub(crate) struct SentinelMaster {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    master: Slot<ConnectionManager>,
    connect_timeout: Duration,
}

/// A cluster connection made on first use, and made anew (from a fresh
/// view of the slots) when nodes stop answering: after a master dies, its
/// replica takes its slots, and a new connection finds it even where the
/// old one keeps trying the dead node.
pub(crate) struct LazyCluster {
    client: ClusterClient,
    conn: Slot<ClusterConnection>,
}

/// A connection made on first use and dropped on demand, so the next
/// command makes it anew: the one pattern behind the Cluster connection
/// (rebuilt from a fresh view of the slots) and the Sentinel master (asked
/// of the sentinels again). One caller connects at a time; the others wait
/// for its connection instead of making their own.
pub(crate) struct Slot<C> {
    current: std::sync::RwLock<Option<(C, std::time::Instant)>>,
    connecting: tokio::sync::Mutex<()>,
}

impl<C: Clone> Slot<C> {
    fn new() -> Self {
        Slot {
            current: std::sync::RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<C> {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.as_ref().map(|(conn, _)| conn.clone())
    }

    /// The connection, made with `connect` if there is none.
    async fn get<F, Fut>(&self, connect: F) -> redis::RedisResult<C>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<C>>,
    {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _connecting = self.connecting.lock().await;
        // Another caller may have connected while this one waited.
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let conn = connect().await?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((conn.clone(), std::time::Instant::now()));
        Ok(conn)
    }

    /// Drops the connection if it is at least `age` old; true if it did.
    fn forget_if_older_than(&self, age: Duration) -> bool {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|(_, made)| made.elapsed() >= age)
        {
            *current = None;
            return true;
        }
        false
    }

    /// Drops the connection: the next command connects anew.
    fn forget(&self) {
        self.forget_if_older_than(Duration::ZERO);
    }
}

/// The least time between two rebuilds of a cluster connection.
const CLUSTER_REBUILD_INTERVAL: Duration = Duration::from_millis(500);

impl Connection {
    /// Whether keys of different hash slots must go in separate commands.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }

    /// A single node, connected in the background.
    pub(crate) fn single(url: &str, connect_timeout: Duration) -> Result<Self> {
        let client = Client::open(url).map_err(|source| invalid(url, source))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            // Few retries per reconnect: while Redis is down, commands fail
            // fast (and the next command starts a new reconnect) instead of
            // each waiting out the operation timeout.
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_number_of_retries(2)
            // The engine bounds every operation by its own timeout; a second
            // timer per command in redis-rs would only cost time on the hit path.
            .set_response_timeout(None);
        Ok(Connection::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// A Redis Cluster, from any of its nodes; connected on first use.
    pub(crate) fn cluster(
        nodes: &[String],
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self> {
        let client = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            .retries(2)
            .build()
            .map_err(|source| invalid(&nodes.join(","), source))?;
        Ok(Connection::Cluster(Arc::new(LazyCluster {
            client,
            conn: Slot::new(),
        })))
    }
}

impl Connection {
    /// The master of `service` as the `sentinels` name it; asked on first
    /// use and again after every failover.
    pub(crate) fn sentinel(
        sentinels: &[String],
        service: &str,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let client = SentinelClient::build(
            sentinels.to_vec(),
            service.to_string(),
            None,
            SentinelServerType::Master,
        )
        .map_err(|source| invalid(&sentinels.join(","), source))?;
        let watchers = sentinels
            .iter()
            .map(|url| Client::open(url.as_str()).map_err(|source| invalid(url, source)))
            .collect::<Result<Vec<_>>>()?;
        let group = Arc::new(SentinelMaster {
            sentinel: tokio::sync::Mutex::new(client),
            master: Slot::new(),
            connect_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(follow_switch_master(
                Arc::downgrade(&group),
                watchers,
                service.to_string(),
            ));
        }
        Ok(Connection::Sentinel(group))
    }
}

impl SentinelMaster {
    /// Drops the master's connection: the next command asks the sentinels.
    fn forget(&self) {
        self.master.forget();
    }

    async fn get(&self) -> redis::RedisResult<ConnectionManager> {
        self.master
            .get(|| async {
                let client = self.sentinel.lock().await.async_get_client().await?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_number_of_retries(1)
                    .set_response_timeout(None);
                let master = ConnectionManager::new_with_config(client, config).await?;
                tracing::info!(target: "redcache", "connected to the master the sentinels name");
                Ok(master)
            })
            .await
    }

    /// After an error that says the master moved (it answers READONLY: it
    /// was demoted) or cannot be reached, forget it: the next command asks
    /// the sentinels again.
    fn check(&self, error: &RedisError) {
        let demoted = error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if demoted || redis_unreachable(error) {
            tracing::warn!(target: "redcache", %error, "the master is gone or demoted; asking the sentinels again");
            self.forget();
        }
    }
}

/// Listens to the sentinels' `+switch-master` announcements and forgets the
/// old master at once, rather than when it next fails or answers READONLY
/// (a demoted master may keep accepting writes until the sentinels reach it).
/// Ends when the cache is dropped.
async fn follow_switch_master(
    group: std::sync::Weak<SentinelMaster>,
    sentinels: Vec<Client>,
    service: String,
) {
    use futures_util::StreamExt;
    for sentinel in sentinels.iter().cycle() {
        if group.strong_count() == 0 {
            return;
        }
        if let Ok(mut pubsub) = sentinel.get_async_pubsub().await {
            if pubsub.subscribe("+switch-master").await.is_ok() {
                let mut messages = pubsub.on_message();
                loop {
                    // Wake up now and then to end with the cache.
                    let message =
                        match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                            Ok(Some(message)) => message,
                            Ok(None) => break,
                            Err(_) if group.strong_count() == 0 => return,
                            Err(_) => continue,
                        };
                    let Some(group) = group.upgrade() else { return };
                    let payload: String = message.get_payload().unwrap_or_default();
                    if payload.split(' ').next() == Some(service.as_str()) {
                        tracing::info!(target: "redcache", %payload, "sentinel switched master");
                        group.forget();
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Connection {
    /// The data nodes, to send a command to each (`SCAN`, `INFO`): the one
    /// node (single, Sentinel master), or every cluster primary.
    pub(crate) async fn data_nodes(&self) -> redis::RedisResult<Vec<DataNode>> {
        let Connection::Cluster(lazy) = self else {
            return Ok(vec![DataNode::Only]);
        };
        let mut conn = lazy.get().await.inspect_err(|e| lazy.check(e))?;
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let reply: Vec<Vec<Value>> = slots.query_async(&mut conn).await?;
        let mut primaries: Vec<(String, u16)> = reply
            .iter()
            .filter_map(|range| match range.get(2) {
                Some(Value::Array(primary)) => match (primary.first(), primary.get(1)) {
                    (Some(Value::BulkString(host)), Some(Value::Int(port))) => Some((
                        String::from_utf8_lossy(host).into_owned(),
                        u16::try_from(*port).ok()?,
                    )),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        primaries.sort();
        primaries.dedup();
        Ok(primaries
            .into_iter()
            .map(|(host, port)| DataNode::Primary { host, port })
            .collect())
    }

    /// Sends `cmd` to `node`.
    pub(crate) async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: &DataNode,
        cmd: Cmd,
    ) -> redis::RedisResult<T> {
        match (self, node) {
            (Connection::Cluster(lazy), DataNode::Primary { host, port }) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let mut conn = lazy.get().await.inspect_err(|e| lazy.check(e))?;
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let value = conn
                    .route_command(cmd, routing)
                    .await
                    .inspect_err(|e| lazy.check(e))?;
                Ok(redis::from_redis_value(value)?)
            }
            _ => cmd.query_async(&mut self.clone()).await,
        }
    }
}

/// A node that holds data, from [`Connection::data_nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataNode {
    /// The connection's one node.
    Only,
    /// A cluster primary.
    Primary { host: String, port: u16 },
}

impl std::fmt::Display for DataNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataNode::Only => f.write_str("the server"),
            DataNode::Primary { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl LazyCluster {
    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        self.conn.get(|| self.client.get_async_connection()).await
    }

    /// After an error that says a node cannot be reached, drop the
    /// connection (at most every `CLUSTER_REBUILD_INTERVAL`) so the next
    /// command starts from a fresh view of the slots.
    fn check(&self, error: &RedisError) {
        if redis_unreachable(error) && self.conn.forget_if_older_than(CLUSTER_REBUILD_INTERVAL) {
            tracing::warn!(target: "redcache", %error, "a cluster node does not answer; reconnecting to the cluster");
        }
    }
}

fn invalid(url: &str, source: redis::RedisError) -> Error {
    Error::InvalidUrl {
        url: redact(url),
        source,
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await.inspect_err(|e| lazy.check(e))?;
                conn.req_packed_command(cmd)
                    .await
                    .inspect_err(|e| lazy.check(e))
            }),
            Connection::Sentinel(group) => Box::pin(async move {
                let mut conn = group.get().await.inspect_err(|e| group.check(e))?;
                conn.req_packed_command(cmd)
                    .await
                    .inspect_err(|e| group.check(e))
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await.inspect_err(|e| lazy.check(e))?;
                conn.req_packed_commands(pipeline, offset, count)
                    .await
                    .inspect_err(|e| lazy.check(e))
            }),
            Connection::Sentinel(group) => Box::pin(async move {
                let mut conn = group.get().await.inspect_err(|e| group.check(e))?;
                conn.req_packed_commands(pipeline, offset, count)
                    .await
                    .inspect_err(|e| group.check(e))
            }),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The URL with the password of its user info (if any) replaced by `***`,
/// for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
    format!("{scheme}://{user}:***@{host}")
}
