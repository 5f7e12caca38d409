//! `Cache::health`: what each data node says about its memory (`INFO`,
//! never `CONFIG`, which managed Redis services often refuse), and what in
//! it is wrong for a cache.

use crate::backend::Backend;
use crate::cache::Cache;
use crate::error::Result;

/// The memory settings and state of the cache's Redis, per data node, with
/// warnings where the setup is wrong for a cache. From [`Cache::health`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// One per data node (each cluster primary); empty on the embedded
    /// backend.
    pub nodes: Vec<NodeHealth>,
    /// What is wrong for a cache, in words (README, "Running in
    /// production", says what each means).
    pub warnings: Vec<String>,
}

/// One data node's memory, from `INFO memory` and `INFO stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeHealth {
    /// The node (`host:port`, or "the server").
    pub node: String,
    /// `maxmemory` in bytes; 0 for none.
    pub maxmemory: u64,
    /// `maxmemory-policy`, e.g. `allkeys-lru`.
    pub maxmemory_policy: String,
    /// `used_memory` in bytes.
    pub used_memory: u64,
    /// Keys evicted since the server started.
    pub evicted_keys: u64,
}

impl NodeHealth {
    fn from_info(node: String, info: &str) -> Self {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        NodeHealth {
            node,
            maxmemory: number("maxmemory"),
            maxmemory_policy: field("maxmemory_policy").unwrap_or_default().to_string(),
            used_memory: number("used_memory"),
            evicted_keys: number("evicted_keys"),
        }
    }

    /// What is wrong with this node for a cache.
    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.maxmemory == 0 {
            warnings.push(format!(
                "{}: no maxmemory; Redis grows until the machine runs out of memory. Set maxmemory and an eviction policy (allkeys-lru)",
                self.node
            ));
        } else if self.maxmemory_policy == "noeviction" {
            warnings.push(format!(
                "{}: maxmemory-policy noeviction; when memory is full Redis refuses writes instead of evicting old entries (the cache then runs functions uncached). Use allkeys-lru, or volatile-lru if this Redis also holds keys without a TTL that must stay",
                self.node
            ));
        }
        warnings
    }
}

impl Cache {
    /// Reads `maxmemory`, `maxmemory-policy`, `used_memory` and
    /// `evicted_keys` from every data node, and says what is wrong for a
    /// cache: no `maxmemory` at all, or `noeviction` with one (writes fail
    /// when full). Uses `INFO` only. redcache checks this once when a
    /// Redis cache is built, and logs the warnings.
    ///
    /// ```no_run
    /// # async fn demo(cache: redcache::Cache) -> redcache::Result<()> {
    /// let health = cache.health().await?;
    /// for warning in &health.warnings {
    ///     eprintln!("redis setup: {warning}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn health(&self) -> Result<Health> {
        let Backend::Redis(redis) = &self.inner.guarded.backend else {
            return Ok(Health::default());
        };
        let conn = &redis.conn;
        let mut health = Health::default();
        for node in conn.data_nodes().await? {
            let mut memory = redis::cmd("INFO");
            memory.arg("memory");
            let mut stats = redis::cmd("INFO");
            stats.arg("stats");
            let memory: String = conn.on_node(&node, memory).await?;
            let stats: String = conn.on_node(&node, stats).await?;
            let node = NodeHealth::from_info(node.to_string(), &format!("{memory}\n{stats}"));
            health.warnings.extend(node.warnings());
            health.nodes.push(node);
        }
        Ok(health)
    }

    /// [`health`](Cache::health) in the background, its warnings logged
    /// once: what `build` does for a Redis cache.
    pub(crate) fn check_health_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = self.clone();
        runtime.spawn(async move {
            match cache.health().await {
                Ok(health) => {
                    for warning in &health.warnings {
                        tracing::warn!(target: "redcache", warning, "the Redis setup is wrong for a cache");
                    }
                }
                Err(error) => {
                    tracing::debug!(target: "redcache", %error, "could not read the Redis memory settings")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::NodeHealth;

    #[test]
    fn info_fields_and_warnings() {
        let info = "# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n# Stats\r\nevicted_keys:7\r\n";
        let node = NodeHealth::from_info("n".into(), info);
        assert_eq!(
            (node.used_memory, node.maxmemory, node.evicted_keys),
            (1024, 0, 7)
        );
        assert_eq!(node.maxmemory_policy, "noeviction");
        assert!(node.warnings()[0].contains("no maxmemory"));
        let full = NodeHealth {
            maxmemory: 1 << 20,
            ..node.clone()
        };
        assert!(full.warnings()[0].contains("noeviction"));
        let good = NodeHealth {
            maxmemory_policy: "allkeys-lru".into(),
            ..full
        };
        assert!(good.warnings().is_empty());
        // `used_memory_human` and friends are other fields.
        let human = NodeHealth::from_info("n".into(), "used_memory_human:1K\nused_memory:5\n");
        assert_eq!(human.used_memory, 5);
    }
}
