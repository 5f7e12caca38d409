//! One connection type for every topology, so the Redis backend is written
//! once: a single node through redis-rs' `ConnectionManager` (it
//! reconnects), or Redis Cluster through `cluster_async` (it follows slot
//! moves and failovers), connected on first use so a cache can be built
//! while the cluster is down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};

#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

pub(crate) struct LazyCluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl Connection {
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
            .set_number_of_retries(2);
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
            conn: OnceCell::new(),
        })))
    }
}

impl LazyCluster {
    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        self.conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

fn invalid(url: &str, source: redis::RedisError) -> Error {
    Error::InvalidUrl {
        url: url.to_string(),
        source,
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_command(cmd).await
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
                let mut conn = lazy.get().await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}
