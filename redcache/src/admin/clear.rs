//! `Cache::clear`: deletes this cache's entries with `SCAN` + `UNLINK`, in
//! batches at a bounded pace, on every data node (each cluster primary),
//! never with `KEYS`, `FLUSHDB` or `FLUSHALL`, and never outside the
//! cache's namespace.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::backend::connection::DataNode;
use crate::backend::Backend;
use crate::cache::Cache;
use crate::error::Result;

/// What a clear did, so far or in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClearProgress {
    /// Keys `SCAN` returned (all under the cleared prefix).
    pub scanned: u64,
    /// Keys deleted.
    pub deleted: u64,
    /// Data nodes done (cluster primaries; 1 on a single node).
    pub nodes_done: usize,
    /// Data nodes to clear.
    pub nodes: usize,
}

/// A progress callback.
type Progress<'a> = Box<dyn Fn(&ClearProgress) + Send + Sync + 'a>;

/// A clear of a cache's entries, from [`Cache::clearing`]; run it with
/// [`run`](Clearing::run).
#[must_use = "a clear does nothing until `run`"]
pub struct Clearing<'a> {
    cache: &'a Cache,
    prefix: String,
    batch: usize,
    pause: Duration,
    on_progress: Option<Progress<'a>>,
}

impl Cache {
    /// Deletes every entry of this cache (all keys under
    /// `<namespace>:v:`), on every data node, with the defaults of
    /// [`clearing`](Cache::clearing). Tag epochs, locks, rate limits,
    /// sessions and streams stay: this clears the cache, not the
    /// namespace. Other namespaces and foreign keys are never touched.
    ///
    /// ```no_run
    /// # async fn demo(cache: redcache::Cache) -> redcache::Result<()> {
    /// let done = cache.clear().await?;
    /// println!("deleted {} entries", done.deleted);
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<ClearProgress> {
        self.clearing().run().await
    }

    /// A clear to configure: a key prefix, the batch size and the pause
    /// between batches (the bound on the load it puts on Redis), a
    /// progress callback.
    pub fn clearing(&self) -> Clearing<'_> {
        Clearing {
            cache: self,
            prefix: String::new(),
            batch: 500,
            pause: Duration::from_millis(5),
            on_progress: None,
        }
    }
}

impl<'a> Clearing<'a> {
    /// Only the entries whose key starts with `prefix` (as rendered, e.g.
    /// `"product:"` for `key = "product:<id>"`). Glob characters in it
    /// match themselves.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Keys asked for per `SCAN` and deleted per `UNLINK` round (default
    /// 500).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The pause after each batch (default 5 ms): at most `batch` keys per
    /// pause and round trip, per node.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// Called after every batch with the progress so far.
    pub fn on_progress(mut self, report: impl Fn(&ClearProgress) + Send + Sync + 'a) -> Self {
        self.on_progress = Some(Box::new(report));
        self
    }

    /// Runs the clear; returns what it did. This process's near cache is
    /// emptied too (other processes' drop the deleted keys as their
    /// invalidations arrive).
    pub async fn run(self) -> Result<ClearProgress> {
        let inner = &self.cache.inner;
        let prefix = format!("{}:v:{}", inner.namespace, self.prefix);
        let started = Instant::now();
        let done = match &inner.guarded.backend {
            Backend::Memory(memory) => {
                let (scanned, deleted) = memory.remove_prefix(&prefix);
                let done = ClearProgress {
                    scanned,
                    deleted,
                    nodes_done: 1,
                    nodes: 1,
                };
                self.report(&done);
                done
            }
            Backend::Redis(redis) => self.on_redis(&redis.conn, &prefix).await?,
        };
        if let Some(near) = &inner.near {
            near.flush("the cache was cleared");
        }
        tracing::info!(target: "redcache", prefix, deleted = done.deleted, scanned = done.scanned,
            nodes = done.nodes, elapsed = ?started.elapsed(), "cache cleared");
        Ok(done)
    }

    fn report(&self, progress: &ClearProgress) {
        if let Some(report) = &self.on_progress {
            report(progress);
        }
    }

    async fn on_redis(
        &self,
        conn: &crate::backend::connection::Connection,
        prefix: &str,
    ) -> Result<ClearProgress> {
        let pattern = format!("{}*", crate::glob::escape(prefix));
        let nodes = conn.data_nodes().await?;
        let mut progress = ClearProgress {
            nodes: nodes.len(),
            ..ClearProgress::default()
        };
        for node in &nodes {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(self.batch);
                let (next, keys): (u64, Vec<String>) = conn.on_node(node, scan).await?;
                // SCAN's MATCH is the server's; this check keeps a key
                // outside the prefix from ever being deleted.
                let keys: Vec<String> =
                    keys.into_iter().filter(|k| k.starts_with(prefix)).collect();
                progress.scanned += keys.len() as u64;
                progress.deleted += unlink(conn, node, &keys).await?;
                self.report(&progress);
                if next == 0 {
                    break;
                }
                cursor = next;
                if !self.pause.is_zero() {
                    tokio::time::sleep(self.pause).await;
                }
            }
            progress.nodes_done += 1;
            tracing::debug!(target: "redcache", %node, deleted = progress.deleted, "clear: node done");
        }
        Ok(progress)
    }
}

/// Deletes `keys` of `node`: one `UNLINK` on a single node; on a cluster
/// one per key, sent together (the keys of one node span many slots, and
/// one command across slots is refused).
async fn unlink(
    conn: &crate::backend::connection::Connection,
    node: &DataNode,
    keys: &[String],
) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    if *node == DataNode::Only {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(keys);
        return Ok(cmd.query_async::<u64>(&mut conn.clone()).await?);
    }
    let deleted = join_all(keys.iter().map(|key| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("UNLINK")
                .arg(key)
                .query_async::<u64>(&mut conn)
                .await
        }
    }))
    .await;
    let mut total = 0;
    for one in deleted {
        total += one?;
    }
    Ok(total)
}
