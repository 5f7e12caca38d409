//! The Redis backend, on one multiplexed connection per node (see
//! `connection.rs`). Timeouts are applied by the engine around every
//! operation (the clients' own do not bound the wait while they reconnect).

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::Script;

use super::connection::{Connection, Nodes};
use super::{
    Read, Replace, SessionOp, SessionReply, Write, Written, EPOCH_MARGIN, INVALIDATED_EPOCH_TTL,
};
use crate::entry::{Epoch, HEAD_LEN};
use crate::error::{Error, Result};
use crate::ratelimit::{Mode, Request, Verdict};

static TOUCH_EPOCH: &str = include_str!("../scripts/touch_epoch.lua");
static BUMP_EPOCH: &str = include_str!("../scripts/bump_epoch.lua");
static UNLOCK: &str = include_str!("../scripts/unlock.lua");
static START_EPOCH: &str = include_str!("../scripts/start_epoch.lua");
static STORE: &str = include_str!("../scripts/store.lua");
static RATE_LIMIT: &str = include_str!("../scripts/rate_limit.lua");
static MUTEX_ACQUIRE: &str = include_str!("../scripts/mutex_acquire.lua");
static MUTEX_EXTEND: &str = include_str!("../scripts/mutex_extend.lua");
static RAISE_FENCE: &str = include_str!("../scripts/raise_fence.lua");
static SESSION_CREATE: &str = include_str!("../scripts/session_create.lua");
static SESSION_TOUCH: &str = include_str!("../scripts/session_touch.lua");
static SESSION_ROTATE: &str = include_str!("../scripts/session_rotate.lua");
static SESSION_INDEX: &str = include_str!("../scripts/session_index.lua");

/// Values as `GET`/`MGET` answer them.
type Raw = Vec<Option<Vec<u8>>>;

pub(crate) struct RedisBackend {
    pub(crate) conn: Connection,
    /// A second connection for checks after a timeout: a large reply on
    /// `conn` holds back every command behind it, and the check must tell
    /// a slow reply from a server that does not answer.
    side: Connection,
    /// What the connection was made from: the URLs an outage is diagnosed
    /// with, and what connections of their own (stream readers,
    /// subscribers, near-cache tracking) are made from.
    pub(crate) nodes: Nodes,
    pub(crate) connect_timeout: Duration,
    touch_epoch: Script,
    start_epoch: Script,
    bump_epoch: Script,
    unlock: Script,
    store: Script,
    rate_limit: Script,
    mutex_acquire: Script,
    mutex_extend: Script,
    raise_fence: Script,
    session_create: Script,
    session_touch: Script,
    session_rotate: Script,
    session_index: Script,
}

impl RedisBackend {
    /// A backend on `conn`, which connects in the background: a cache
    /// built while Redis is down works (by running functions) and uses
    /// Redis once it answers.
    pub(crate) fn new(
        conn: Connection,
        side: Connection,
        nodes: Nodes,
        connect_timeout: Duration,
    ) -> Self {
        RedisBackend {
            conn,
            side,
            nodes,
            connect_timeout,
            touch_epoch: Script::new(TOUCH_EPOCH),
            start_epoch: Script::new(START_EPOCH),
            bump_epoch: Script::new(BUMP_EPOCH),
            unlock: Script::new(UNLOCK),
            store: Script::new(STORE),
            rate_limit: Script::new(RATE_LIMIT),
            mutex_acquire: Script::new(MUTEX_ACQUIRE),
            mutex_extend: Script::new(MUTEX_EXTEND),
            raise_fence: Script::new(RAISE_FENCE),
            session_create: Script::new(SESSION_CREATE),
            session_touch: Script::new(SESSION_TOUCH),
            session_rotate: Script::new(SESSION_ROTATE),
            session_index: Script::new(SESSION_INDEX),
        }
    }

    /// The entry and the epoch of each tag in one round trip: one `GET`
    /// without tags, one `MGET` on a single node or Sentinel master, and on
    /// a cluster one `GET` per key sent at once (never one command across
    /// slots).
    pub(crate) async fn read(&self, key: &str, tag_keys: &[String]) -> Result<Read> {
        let (value, raw_epochs) = if tag_keys.is_empty() {
            (self.get(key).await?, Vec::new())
        } else if self.conn.is_cluster() {
            // Boxed: the rarest case should not grow every read's future.
            Box::pin(self.get_across_slots(key, tag_keys)).await?
        } else {
            self.mget(key, tag_keys).await?
        };
        let epochs = self.started(tag_keys, &raw_epochs).await?;
        Ok(Read { value, epochs })
    }

    /// The epochs as read, with every absent (or legacy 0) one started at
    /// the server's clock (`start_epoch.lua`): an epoch a reader sees is
    /// never 0, so no entry records 0, and an epoch key evicted later
    /// starts again above anything an entry recorded. One more round trip,
    /// only for a tag never used or whose key is gone.
    async fn started(&self, tag_keys: &[String], raw: &Raw) -> Result<Vec<Epoch>> {
        let mut epochs = raw
            .iter()
            .map(|raw| parse_epoch(raw.as_deref()))
            .collect::<Result<Vec<_>>>()?;
        if !epochs.contains(&0) {
            return Ok(epochs);
        }
        let ttl = millis(INVALIDATED_EPOCH_TTL);
        let started = try_join_all(
            tag_keys
                .iter()
                .zip(&epochs)
                .filter(|(_, &epoch)| epoch == 0)
                .map(|(tag, _)| {
                    let mut conn = self.conn.clone();
                    let mut call = self.start_epoch.key(tag);
                    call.arg(ttl);
                    async move { call.invoke_async::<u64>(&mut conn).await }
                }),
        )
        .await?;
        let mut started = started.into_iter();
        for epoch in epochs.iter_mut().filter(|e| **e == 0) {
            *epoch = started.next().unwrap_or(0);
        }
        Ok(epochs)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        Ok(cmd.query_async(&mut conn).await?)
    }

    /// The entry and the tag epochs in one `MGET` (one node holds them all).
    async fn mget(&self, key: &str, tag_keys: &[String]) -> Result<(Option<Vec<u8>>, Raw)> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(key).arg(tag_keys);
        let mut values: Raw = cmd.query_async(&mut conn).await?;
        if values.len() != 1 + tag_keys.len() {
            return Err(Error::UnexpectedReply(
                "MGET answered with the wrong number of values",
            ));
        }
        let epochs = values.split_off(1);
        Ok((values.pop().flatten(), epochs))
    }

    /// The entry and each tag epoch as separate commands, sent at once.
    async fn get_across_slots(
        &self,
        key: &str,
        tag_keys: &[String],
    ) -> Result<(Option<Vec<u8>>, Raw)> {
        futures_util::future::try_join(
            self.get(key),
            try_join_all(tag_keys.iter().map(|t| self.get(t))),
        )
        .await
    }

    pub(crate) async fn write(&self, w: Write<'_>) -> Result<Written> {
        // First make every epoch key outlive the entry, then write the entry:
        // were the order reversed, a failure in between could leave an entry
        // whose epoch key expires first and starts again.
        let need = millis(w.ttl + EPOCH_MARGIN);
        let current: Vec<i64> = try_join_all(w.tag_keys.iter().map(|tag| {
            let mut conn = self.conn.clone();
            let mut call = self.touch_epoch.key(tag);
            call.arg(need);
            async move { call.invoke_async::<i64>(&mut conn).await }
        }))
        .await?;
        let unchanged = current
            .iter()
            .zip(w.epochs)
            .all(|(&now, &read)| u64::try_from(now) == Ok(read));
        if !unchanged {
            return Ok(Written::default());
        }
        let mut conn = self.conn.clone();
        let head = match w.replace {
            Replace::IfHead(head) => head,
            // A put or a tombstone replaces whatever is there.
            Replace::Always => {
                redis::cmd("SET")
                    .arg(w.key)
                    .arg(w.bytes)
                    .arg("PX")
                    .arg(millis(w.ttl))
                    .query_async::<()>(&mut conn)
                    .await?;
                return Ok(Written {
                    stored: true,
                    unlocked: false,
                });
            }
        };
        // The entry only if the key still holds what the load began from,
        // and on a single node the lock in the same script: one round trip
        // on every miss. A cluster keeps the lock in another slot, and the
        // engine releases it itself.
        let unlock = w.unlock.filter(|_| !self.conn.is_cluster());
        let mut call = self.store.key(w.key);
        if let Some(lock) = unlock {
            call.key(lock.key);
        }
        call.arg(w.bytes).arg(millis(w.ttl)).arg(head).arg(HEAD_LEN);
        if let Some(lock) = unlock {
            call.arg(lock.token);
        }
        let stored: i64 = call.invoke_async(&mut conn).await?;
        Ok(Written {
            stored: stored == 1,
            unlocked: unlock.is_some(),
        })
    }

    /// The current epoch of each tag (started at the clock where absent).
    pub(crate) async fn epochs(&self, tag_keys: &[String]) -> Result<Vec<Epoch>> {
        let raw: Raw = if self.conn.is_cluster() {
            try_join_all(tag_keys.iter().map(|t| self.get(t))).await?
        } else {
            let mut conn = self.conn.clone();
            redis::cmd("MGET")
                .arg(tag_keys)
                .query_async(&mut conn)
                .await?
        };
        self.started(tag_keys, &raw).await
    }

    pub(crate) async fn bump_epoch(&self, tag_key: &str) -> Result<Epoch> {
        let mut conn = self.conn.clone();
        let epoch: u64 = self
            .bump_epoch
            .key(tag_key)
            .arg(millis(INVALIDATED_EPOCH_TTL))
            .invoke_async(&mut conn)
            .await?;
        Ok(epoch)
    }

    /// `SET key token NX PX ttl`: true when this caller now holds the lock.
    pub(crate) async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(reply.is_some())
    }

    /// Deletes the lock if `token` still holds it.
    pub(crate) async fn unlock(&self, key: &str, token: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        self.unlock
            .key(key)
            .arg(token)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Takes the lock at `key` for `token` and issues the next fencing
    /// token from `fence_key` (one script, one slot); `None` when held.
    pub(crate) async fn mutex_acquire(
        &self,
        key: &str,
        fence_key: &str,
        token: &str,
        ttl: Duration,
        fence_ttl: Duration,
    ) -> Result<Option<u64>> {
        let mut conn = self.conn.clone();
        Ok(self
            .mutex_acquire
            .key(key)
            .key(fence_key)
            .arg(token)
            .arg(millis(ttl).max(1))
            .arg(millis(fence_ttl).max(1))
            .invoke_async(&mut conn)
            .await?)
    }

    /// Extends the lock at `key` if `token` still holds it.
    pub(crate) async fn mutex_extend(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn.clone();
        let extended: i64 = self
            .mutex_extend
            .key(key)
            .arg(token)
            .arg(millis(ttl).max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(extended == 1)
    }

    /// `SET key bytes PX ttl [NX]`.
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) async fn set(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: Duration,
        only_new: bool,
    ) -> Result<bool> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(bytes).arg("PX").arg(millis(ttl).max(1));
        if only_new {
            cmd.arg("NX");
        }
        let reply: Option<String> = cmd.query_async(&mut conn).await?;
        Ok(reply.is_some())
    }

    pub(crate) async fn session_create(
        &self,
        key: &str,
        idle: Duration,
        max: Duration,
        user: &str,
    ) -> Result<bool> {
        let mut conn = self.conn.clone();
        let created: i64 = self
            .session_create
            .key(key)
            .arg(millis(idle).max(1))
            .arg(millis(max).max(1))
            .arg(user)
            .invoke_async(&mut conn)
            .await?;
        Ok(created == 1)
    }

    /// User fields are kept as `f:<name>`, beside `m:created` and `m:user`.
    pub(crate) async fn session_touch(
        &self,
        key: &str,
        idle: Duration,
        max: Duration,
        op: SessionOp<'_>,
    ) -> Result<SessionReply> {
        let mut conn = self.conn.clone();
        let mut invocation = self.session_touch.key(key);
        invocation.arg(millis(idle).max(1)).arg(millis(max).max(1));
        match op {
            SessionOp::All => invocation.arg("all"),
            SessionOp::Get(field) => invocation.arg("get").arg(format!("f:{field}")),
            SessionOp::Set(field, value) => {
                invocation.arg("set").arg(format!("f:{field}")).arg(value)
            }
            SessionOp::Del(field) => invocation.arg("del").arg(format!("f:{field}")),
            SessionOp::End => invocation.arg("end"),
        };
        let reply: redis::Value = invocation.invoke_async(&mut conn).await?;
        let bytes = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => Some(b.clone()),
            redis::Value::SimpleString(s) => Some(s.clone().into_bytes()),
            _ => None,
        };
        let text = |v: Option<&redis::Value>| {
            v.and_then(bytes)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let missing = matches!(reply, redis::Value::Nil);
        Ok(match (op, reply) {
            (_, _) if missing => SessionReply::Missing,
            (SessionOp::All, redis::Value::Array(items)) => {
                let (mut fields, mut user) = (Vec::new(), String::new());
                for pair in items.chunks(2) {
                    let (name, value) = (
                        text(pair.first()),
                        pair.get(1).and_then(bytes).unwrap_or_default(),
                    );
                    if let Some(field) = name.strip_prefix("f:") {
                        fields.push((field.to_string(), value));
                    } else if name == "m:user" {
                        user = String::from_utf8_lossy(&value).into_owned();
                    }
                }
                SessionReply::All(fields, user)
            }
            (SessionOp::Get(_), redis::Value::Array(items)) => {
                SessionReply::Field(items.get(1).and_then(bytes))
            }
            (SessionOp::End, redis::Value::Array(items)) => SessionReply::Ended(text(items.get(1))),
            (SessionOp::Set(..) | SessionOp::Del(_), _) => SessionReply::Done,
            _ => {
                return Err(Error::UnexpectedReply(
                    "a session script answered in an unknown shape",
                ))
            }
        })
    }

    pub(crate) async fn session_rotate(
        &self,
        old: &str,
        new: &str,
        idle: Duration,
        max: Duration,
    ) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        Ok(self
            .session_rotate
            .key(old)
            .key(new)
            .arg(millis(idle).max(1))
            .arg(millis(max).max(1))
            .invoke_async(&mut conn)
            .await?)
    }

    pub(crate) async fn session_index(
        &self,
        index: &str,
        keep: Duration,
        remove: Option<&str>,
        add: Option<&str>,
    ) -> Result<()> {
        let mut conn = self.conn.clone();
        self.session_index
            .key(index)
            .arg(millis(keep).max(1))
            .arg(remove.unwrap_or(""))
            .arg(add.unwrap_or(""))
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn session_take_index(&self, index: &str) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(index)
            .query_async(&mut conn)
            .await?;
        redis::cmd("UNLINK")
            .arg(index)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(ids)
    }

    /// Raises the last fencing token at `fence_key` to at least `token`.
    pub(crate) async fn raise_fence(
        &self,
        fence_key: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<()> {
        let mut conn = self.conn.clone();
        self.raise_fence
            .key(fence_key)
            .arg(token)
            .arg(millis(ttl).max(1))
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Deletes the lock at `key` if `token` still holds it; true if it did.
    pub(crate) async fn mutex_release(&self, key: &str, token: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let deleted: i64 = self
            .unlock
            .key(key)
            .arg(token)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }

    /// One EVALSHA of `scripts/rate_limit.lua` for every policy of the
    /// request (NOSCRIPT is answered by loading the script once).
    pub(crate) async fn rate_limit(
        &self,
        keys: &[String],
        request: &Request<'_>,
        mode: Mode,
    ) -> Result<Vec<Verdict>> {
        let mut call = self.rate_limit.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        call.arg(match mode {
            Mode::Consume => "consume",
            Mode::Peek => "peek",
        });
        call.arg(request.cost);
        for arg in request.script_args() {
            call.arg(arg);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = call.invoke_async(&mut conn).await?;
        let figures = reply.get(1..).unwrap_or_default();
        if figures.len() != 4 * keys.len() {
            return Err(Error::UnexpectedReply(
                "the rate-limit script answered with the wrong number of figures",
            ));
        }
        let unsigned = |x: i64| u64::try_from(x).unwrap_or(0);
        Ok(figures
            .chunks_exact(4)
            .map(|f| Verdict {
                allowed: f[0] == 1,
                remaining: unsigned(f[1]),
                retry_after_us: unsigned(f[2]),
                reset_after_us: unsigned(f[3]),
            })
            .collect())
    }

    /// `STRLEN`, on the side connection.
    pub(crate) async fn size(&self, key: &str) -> Result<u64> {
        let mut conn = self.side.clone();
        Ok(redis::cmd("STRLEN").arg(key).query_async(&mut conn).await?)
    }

    /// `UNLINK`, on the side connection (for an entry too large to read).
    pub(crate) async fn unlink_aside(&self, key: &str) -> Result<()> {
        let mut conn = self.side.clone();
        Ok(redis::cmd("UNLINK").arg(key).query_async(&mut conn).await?)
    }

    /// `PING` on the side connection.
    pub(crate) async fn ping_aside(&self) -> Result<()> {
        let mut conn = self.side.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }

    /// The node(s) this backend talks to, passwords redacted.
    pub(crate) fn endpoint(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .urls()
            .iter()
            .map(|u| super::connection::redact(u))
            .collect();
        urls.join(",")
    }

    /// Connects afresh to the first URL to learn why Redis cannot be
    /// reached (the shared connection only says that it failed or timed out).
    /// `None` when a new connection is answered now.
    pub(crate) async fn diagnose(&self) -> Option<String> {
        let url = self.nodes.urls().first()?;
        let client = match redis::Client::open(url.as_str()) {
            Ok(client) => client,
            Err(error) => return Some(error.to_string()),
        };
        let attempt = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!(
                "no answer within {:?} (host down, or a firewall drops the packets)",
                self.connect_timeout
            )),
        }
    }

    /// A round trip, to find out whether Redis answers.
    pub(crate) async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}

fn parse_epoch(raw: Option<&[u8]>) -> Result<Epoch> {
    match raw {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Error::UnexpectedReply(
                "a tag epoch key holds something other than an integer",
            )),
    }
}

/// Milliseconds for `PX`/`PEXPIRE`, at least 1 (0 is an error in Redis).
fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}
