//! What the integration tests share: real `redis-server` processes on free
//! loopback ports, which a test can stop and restart.
//!
//! No test talks to a Redis it did not start, and none is skipped when
//! `redis-server` is missing: [`RedisServer::start`] panics with what to
//! install.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A cache on the Redis at `url` in namespace `ns`, with a 1 s operation
/// timeout: room for a loaded CI machine, and an outage still ends a test
/// soon.
pub async fn redis_cache(url: impl Into<String>, ns: &str) -> redcache::Cache {
    redcache::Cache::builder()
        .redis(url)
        .namespace(ns)
        .op_timeout(Duration::from_secs(1))
        .build()
        .await
        .expect("a cache on the test redis")
}

/// The program started, `redis-server` unless `REDIS_SERVER_BIN` names another.
pub fn server_program() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_string())
}

/// A `redis-server` child process on a free port of 127.0.0.1, with no
/// persistence, killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    /// For a sentinel: the monitored master's port (its config is written
    /// in `dir` before the first start).
    sentinel_of: Option<u16>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` cannot be run, with a message saying what to install.
    pub fn start() -> Self {
        Self::start_with(&[], free_port)
    }

    /// Starts a server with more arguments, on a port from `pick_port`.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with(extra_args: &[&str], pick_port: fn() -> u16) -> Self {
        let dir = unique_dir();
        for _ in 0..5 {
            let port = pick_port();
            let mut server = RedisServer {
                port,
                dir: dir.clone(),
                extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
                sentinel_of: None,
                child: None,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on a free port after 5 tries");
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    ///
    /// # Panics
    ///
    /// If it does not come back within five seconds.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Suspends the server (SIGSTOP): it keeps its connections open and
    /// answers nothing, like a server stuck in a long command.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Whether the server process is running (not stopped by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends one command in the inline protocol and returns the raw reply.
    pub fn command(&self, line: &str) -> String {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to test redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Starts a Sentinel on a free port monitoring the master on
    /// `master_port` as `mymaster`, quorum 1, failing over after one second
    /// of silence.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_sentinel(master_port: u16) -> Self {
        let dir = unique_dir();
        for _ in 0..5 {
            let mut sentinel = RedisServer {
                port: free_port(),
                dir: dir.clone(),
                extra_args: Vec::new(),
                sentinel_of: Some(master_port),
                child: None,
            };
            let config = format!(
                "sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 5000\n\
                 sentinel parallel-syncs mymaster 1\n"
            );
            std::fs::write(dir.join("sentinel.conf"), config).expect("write sentinel.conf");
            if sentinel.spawn() {
                return sentinel;
            }
        }
        panic!("redis-server --sentinel did not start on a free port after 5 tries");
    }

    fn spawn(&mut self) -> bool {
        let program = server_program();
        let mut command = Command::new(&program);
        if self.sentinel_of.is_some() {
            command
                .arg(self.dir.join("sentinel.conf"))
                .arg("--sentinel");
        } else {
            command.args(["--save", "", "--appendonly", "no"]);
        }
        let child = command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{program}` was not found on PATH. The integration tests start their own Redis \
                 servers: install Redis (Debian/Ubuntu: `apt-get install redis-server`, macOS: \
                 `brew install redis`) or set REDIS_SERVER_BIN to a redis-server binary."
            ),
            Err(error) => panic!("cannot run `{program}`: {error}"),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: most likely the port was taken meanwhile
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A free port whose cluster bus port (+10 000) is free too, both below the
/// ephemeral range (32768 and up on Linux) so that no outgoing connection
/// takes the bus port before the node binds it.
pub fn free_cluster_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::process::id() as u64 * 7919 + NEXT.fetch_add(1, Ordering::Relaxed) * 104_729;
    for i in 0..1000 {
        let port = 10_000 + ((seed + i * 7_919) % 12_000) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// A loopback port nothing listens on (at the time of the call).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn unique_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "redcache-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Waits until `check` holds, polling every 10 ms, for at most `limit`.
///
/// # Panics
///
/// If it does not hold by then, saying `what` did not happen.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A master, a replica of it in sync, and a Sentinel monitoring them as
/// `mymaster` that has seen the replica: what the Sentinel tests start.
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

impl SentinelGroup {
    pub async fn start() -> Self {
        let master = RedisServer::start();
        let replica = RedisServer::start_with(
            &["--replicaof", "127.0.0.1", &master.port().to_string()],
            free_port,
        );
        eventually("replication", Duration::from_secs(10), || {
            let info = replica.command("INFO replication");
            async move { info.contains("master_link_status:up") }
        })
        .await;
        let sentinel = RedisServer::start_sentinel(master.port());
        eventually(
            "the sentinel seeing the replica",
            Duration::from_secs(15),
            || {
                let replicas = sentinel.command("SENTINEL replicas mymaster");
                let port = replica.port().to_string();
                async move { replicas.contains(&port) }
            },
        )
        .await;
        SentinelGroup {
            master,
            replica,
            sentinel,
        }
    }

    /// `SENTINEL FAILOVER mymaster`, asked again while the sentinel refuses
    /// (NOGOODSLAVE until it has heard from the replica).
    pub async fn fail_over(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reply = self.sentinel.command("SENTINEL FAILOVER mymaster");
            if reply.starts_with("+OK") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SENTINEL FAILOVER kept answering {reply:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A namespace no other test uses, so tests can share a server safely.
pub fn unique_namespace(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Redis Cluster of real `redis-server` processes on loopback, made with
/// `redis-cli --cluster create`, stopped when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each, and waits
    /// until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` is missing (with what to install),
    /// or if the cluster does not form within 30 seconds.
    pub fn start(masters: usize, replicas: usize) -> Self {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            // Replicas sync at once and may always take over, so a test can
            // kill a master right after the cluster forms.
            "--repl-diskless-sync-delay",
            "0",
            "--cluster-replica-validity-factor",
            "0",
        ];
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start_with(&args, free_cluster_port))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run redis-cli ({error}): install it with Redis (Debian/Ubuntu: `apt-get install redis-server` or `redis-tools`)"
                )
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {output:?}"
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok(Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster.nodes.iter().any(|n| {
            let replication = n.command("INFO replication");
            replication.contains("role:slave") && !replication.contains("master_link_status:up")
        }) {
            assert!(
                Instant::now() < deadline,
                "the replicas did not sync within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The shared 3-master cluster of this test binary: started by the
    /// first test that asks, stopped when the last one holding it ends.
    pub fn shared() -> std::sync::Arc<RedisCluster> {
        static SHARED: std::sync::Mutex<std::sync::Weak<RedisCluster>> =
            std::sync::Mutex::new(std::sync::Weak::new());
        let mut slot = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cluster) = slot.upgrade() {
            return cluster;
        }
        let cluster = std::sync::Arc::new(RedisCluster::start(3, 0));
        *slot = std::sync::Arc::downgrade(&cluster);
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Waits until every running node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// If that takes longer than `limit`.
    pub fn wait_until_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .all(|n| n.command("CLUSTER INFO").contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The cluster slot of a key (CRC16/XMODEM of its hash tag, mod 16384), as
/// Redis computes it.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &bytes[open + 1..open + 1 + close])
        })
        .unwrap_or(bytes);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}
