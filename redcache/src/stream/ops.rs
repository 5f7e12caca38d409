//! The stream operations [`EventStream`](super::EventStream) and its
//! consumers need, on each backend: commands and scripts on Redis (every
//! key of one call shares the stream's hash tag), [`MemoryStreams`] on the
//! embedded backend.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, Value};

use super::memory::MemoryStreams;
use crate::backend::connection::Connection;
use crate::backend::Backend;
use crate::clock::Clock;
use crate::error::{Error, Result};

static EMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/stream_emit.lua")));
static GROUP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/stream_group.lua")));
static DEAD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/stream_dead.lua")));

/// A stream entry's id: milliseconds and a sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Id(pub(crate) u64, pub(crate) u64);

impl Id {
    pub(crate) const ZERO: Id = Id(0, 0);
    pub(crate) const MAX: Id = Id(u64::MAX, u64::MAX);

    /// The smallest id after this one.
    pub(crate) fn next(self) -> Id {
        match self.1.checked_add(1) {
            Some(seq) => Id(self.0, seq),
            None => Id(self.0.saturating_add(1), 0),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

impl FromStr for Id {
    type Err = ();

    /// `ms-seq`, or `ms` alone (sequence 0).
    fn from_str(s: &str) -> std::result::Result<Id, ()> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Ok(Id(ms.parse().map_err(drop)?, seq.parse().map_err(drop)?))
    }
}

/// An entry as read: its fields (empty when a pending entry was trimmed
/// from the stream) and, for a group read, how often it was delivered.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub(crate) id: Id,
    pub(crate) fields: Vec<(String, Vec<u8>)>,
    pub(crate) deliveries: u64,
}

impl RawEntry {
    pub(crate) fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Where a group read starts.
#[derive(Debug, Clone)]
pub(crate) enum ReadFrom {
    /// Entries never delivered to the group (`>`).
    New,
    /// This consumer's own pending entries after an id (its backlog after
    /// a restart).
    Own(Id),
}

/// What `XAUTOCLAIM` answered.
#[derive(Debug)]
pub(crate) struct Claimed {
    /// Where the next call goes on; `0-0` when the list was scanned.
    pub(crate) next: Id,
    pub(crate) entries: Vec<RawEntry>,
    /// Pending entries no longer in the stream (trimmed before handled).
    pub(crate) deleted: Vec<Id>,
}

/// The stream operations of one backend.
pub(crate) enum StreamOps<'a> {
    Memory(&'a MemoryStreams, &'a dyn Clock),
    Redis(&'a Connection),
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl<'a> StreamOps<'a> {
    pub(crate) fn of(backend: &'a Backend) -> Self {
        match backend {
            Backend::Memory(memory) => StreamOps::Memory(&memory.streams, memory.clock()),
            Backend::Redis(redis) => StreamOps::Redis(&redis.conn),
        }
    }

    fn now_ms(clock: &dyn Clock) -> u64 {
        clock.now_micros() / 1_000
    }

    /// Appends an entry. With `slide`, in one script that also sets the
    /// stream's expiry to `retention`; without, a plain `XADD NOMKSTREAM`
    /// (the stream keeps the expiry it has), falling back to the script
    /// when the stream does not exist: a stream is never made without an
    /// expiry.
    pub(crate) async fn emit(
        &self,
        key: &str,
        payload: &[u8],
        max_len: u64,
        retention: Duration,
        slide: bool,
    ) -> Result<Id> {
        if let (StreamOps::Redis(conn), false) = (self, slide) {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(key)
                .arg("NOMKSTREAM")
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len)
                .arg("*")
                .arg("d")
                .arg(payload);
            let id: Option<String> = cmd.query_async(&mut (*conn).clone()).await?;
            if let Some(id) = id {
                return parse_id(&id);
            }
        }
        match self {
            StreamOps::Memory(m, clock) => {
                let fields = vec![("d".to_string(), payload.to_vec())];
                Ok(m.append(
                    key,
                    fields,
                    max_len,
                    millis(retention),
                    Self::now_ms(*clock),
                ))
            }
            StreamOps::Redis(conn) => {
                let mut invocation = EMIT.key(key);
                invocation.arg(max_len).arg(millis(retention)).arg(payload);
                let id: String = invocation.invoke_async(&mut (*conn).clone()).await?;
                parse_id(&id)
            }
        }
    }

    pub(crate) async fn range(
        &self,
        key: &str,
        start: &str,
        end: &str,
        count: usize,
        rev: bool,
    ) -> Result<Vec<RawEntry>> {
        match self {
            StreamOps::Memory(m, clock) => {
                let (lo, hi) = if rev { (end, start) } else { (start, end) };
                let (Some(lo), Some(hi)) = (bound(lo, false), bound(hi, true)) else {
                    return Err(Error::Config("a stream range bound is `-`, `+`, an id (`ms-seq` or `ms`), or `(` and an id"));
                };
                Ok(m.range(key, lo, hi, count, rev, Self::now_ms(*clock)))
            }
            StreamOps::Redis(conn) => {
                let mut cmd = redis::cmd(if rev { "XREVRANGE" } else { "XRANGE" });
                cmd.arg(key).arg(start).arg(end).arg("COUNT").arg(count);
                let reply: Value = cmd.query_async(&mut (*conn).clone()).await?;
                entries(reply)
            }
        }
    }

    pub(crate) async fn len(&self, key: &str) -> Result<u64> {
        match self {
            StreamOps::Memory(m, clock) => Ok(m.len(key, Self::now_ms(*clock))),
            StreamOps::Redis(conn) => Ok(redis::cmd("XLEN")
                .arg(key)
                .query_async(&mut (*conn).clone())
                .await?),
        }
    }

    pub(crate) async fn create_group(
        &self,
        key: &str,
        group: &str,
        from_start: bool,
        retention: Duration,
    ) -> Result<bool> {
        match self {
            StreamOps::Memory(m, clock) => Ok(m.create_group(
                key,
                group,
                from_start,
                millis(retention),
                Self::now_ms(*clock),
            )),
            StreamOps::Redis(conn) => {
                let mut invocation = GROUP.key(key);
                invocation
                    .arg(group)
                    .arg(if from_start { "0" } else { "$" })
                    .arg(millis(retention));
                let made: i64 = invocation.invoke_async(&mut (*conn).clone()).await?;
                Ok(made == 1)
            }
        }
    }

    /// A group read. On Redis, `block` makes it `XREADGROUP ... BLOCK`,
    /// which holds its connection: `conn` is then the consumer's own.
    /// `None`: the group (or the stream) is gone.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn read_group(
        &self,
        reader: Option<&Connection>,
        key: &str,
        group: &str,
        consumer: &str,
        from: &ReadFrom,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Option<Vec<RawEntry>>> {
        match self {
            StreamOps::Memory(m, clock) => {
                let deadline = block.map(|b| tokio::time::Instant::now() + b);
                loop {
                    let appended = m.appended.notified();
                    let read =
                        m.read_group(key, group, consumer, from, count, Self::now_ms(*clock));
                    match (read, deadline) {
                        (Some(found), Some(deadline)) if found.is_empty() => {
                            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                                return Ok(Some(found));
                            }
                        }
                        (read, _) => return Ok(read),
                    }
                }
            }
            StreamOps::Redis(conn) => {
                let conn = reader.unwrap_or(conn);
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(group)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(count);
                if let Some(block) = block {
                    cmd.arg("BLOCK").arg(millis(block));
                }
                cmd.arg("STREAMS").arg(key);
                match from {
                    ReadFrom::New => cmd.arg(">"),
                    ReadFrom::Own(after) => cmd.arg(after.to_string()),
                };
                let reply: Value = match cmd.query_async(&mut conn.clone()).await {
                    Ok(reply) => reply,
                    Err(e) if e.code() == Some("NOGROUP") => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let mut found = Vec::new();
                for (_, stream) in pairs(reply)? {
                    found = entries(stream)?;
                }
                if matches!(from, ReadFrom::New) {
                    for entry in &mut found {
                        entry.deliveries = 1;
                    }
                } else {
                    // Re-reading one's history counts as a delivery.
                    let counts = self.delivery_counts(key, group, consumer, &found).await?;
                    for (entry, count) in found.iter_mut().zip(counts) {
                        entry.deliveries = count;
                    }
                }
                Ok(Some(found))
            }
        }
    }

    /// The delivery counts of `entries`, pending with `consumer`, by
    /// `XPENDING` over their id range.
    async fn delivery_counts(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        entries: &[RawEntry],
    ) -> Result<Vec<u64>> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let StreamOps::Redis(conn) = self else {
            return Ok(entries.iter().map(|e| e.deliveries).collect());
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(key)
            .arg(group)
            .arg(first.id.to_string())
            .arg(last.id.to_string())
            .arg(entries.len())
            .arg(consumer);
        let reply: redis::streams::StreamPendingCountReply =
            cmd.query_async(&mut (*conn).clone()).await?;
        let counts: std::collections::HashMap<Id, u64> = reply
            .ids
            .iter()
            .filter_map(|p| Some((p.id.parse().ok()?, p.times_delivered as u64)))
            .collect();
        // An entry pending no more (acked meanwhile) counts as delivered once.
        Ok(entries
            .iter()
            .map(|e| counts.get(&e.id).copied().unwrap_or(1))
            .collect())
    }

    pub(crate) async fn ack(&self, key: &str, group: &str, ids: &[Id]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        match self {
            StreamOps::Memory(m, clock) => Ok(m.ack(key, group, ids, Self::now_ms(*clock))),
            StreamOps::Redis(conn) => {
                let mut cmd = redis::cmd("XACK");
                cmd.arg(key).arg(group);
                for id in ids {
                    cmd.arg(id.to_string());
                }
                Ok(cmd.query_async(&mut (*conn).clone()).await?)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn auto_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        cursor: Id,
        count: usize,
    ) -> Result<Option<Claimed>> {
        match self {
            StreamOps::Memory(m, clock) => Ok(m.auto_claim(
                key,
                group,
                consumer,
                millis(min_idle),
                cursor,
                count,
                Self::now_ms(*clock),
            )),
            StreamOps::Redis(conn) => {
                let mut cmd = redis::cmd("XAUTOCLAIM");
                cmd.arg(key)
                    .arg(group)
                    .arg(consumer)
                    .arg(millis(min_idle))
                    .arg(cursor.to_string())
                    .arg("COUNT")
                    .arg(count);
                let reply: Value = match cmd.query_async(&mut (*conn).clone()).await {
                    Ok(reply) => reply,
                    Err(e) if e.code() == Some("NOGROUP") => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let Value::Array(mut parts) = reply else {
                    return Err(Error::UnexpectedReply("XAUTOCLAIM"));
                };
                if parts.len() < 2 {
                    return Err(Error::UnexpectedReply("XAUTOCLAIM"));
                }
                let deleted = if parts.len() > 2 {
                    ids(parts.pop().expect("three parts"))?
                } else {
                    Vec::new()
                };
                let mut entries = entries(parts.pop().expect("two parts"))?;
                let next = parse_id(&string(parts.pop().expect("one part"))?)?;
                let counts = self.delivery_counts(key, group, consumer, &entries).await?;
                for (entry, count) in entries.iter_mut().zip(counts) {
                    entry.deliveries = count;
                }
                Ok(Some(Claimed {
                    next,
                    entries,
                    deleted,
                }))
            }
        }
    }

    /// `XCLAIM ... IDLE idle JUSTID`: the entries stay (or become) this
    /// consumer's, idle for `idle` from now, their delivery counts
    /// unchanged. With zero, a heartbeat for entries still in hand; with
    /// the claim idle time, a hand-back that others reclaim at once.
    pub(crate) async fn touch(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[Id],
        idle: Duration,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            StreamOps::Memory(m, clock) => {
                m.touch(
                    key,
                    group,
                    consumer,
                    ids,
                    idle.as_millis() as u64,
                    Self::now_ms(*clock),
                );
                Ok(())
            }
            StreamOps::Redis(conn) => {
                let mut cmd = redis::cmd("XCLAIM");
                cmd.arg(key).arg(group).arg(consumer).arg(0);
                for id in ids {
                    cmd.arg(id.to_string());
                }
                cmd.arg("IDLE").arg(idle.as_millis() as u64).arg("JUSTID");
                let _: Value = cmd.query_async(&mut (*conn).clone()).await?;
                Ok(())
            }
        }
    }

    /// `XCLAIM` of one entry of this consumer's for another attempt (its
    /// delivery count raised): `None` if it is pending no more.
    pub(crate) async fn claim_again(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        id: Id,
    ) -> Result<Option<RawEntry>> {
        match self {
            StreamOps::Memory(m, clock) => {
                Ok(m.claim_again(key, group, consumer, id, Self::now_ms(*clock)))
            }
            StreamOps::Redis(conn) => {
                let mut cmd = redis::cmd("XCLAIM");
                cmd.arg(key)
                    .arg(group)
                    .arg(consumer)
                    .arg(0)
                    .arg(id.to_string());
                let reply: Value = cmd.query_async(&mut (*conn).clone()).await?;
                let mut found = entries(reply)?;
                let counts = self.delivery_counts(key, group, consumer, &found).await?;
                for (entry, count) in found.iter_mut().zip(counts) {
                    entry.deliveries = count;
                }
                Ok(found
                    .into_iter()
                    .find(|e| e.id == id && !e.fields.is_empty()))
            }
        }
    }

    /// Acks `entry` and appends it to `dead_key` in one step; `None` if it
    /// was no longer pending (nothing written).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn dead_letter(
        &self,
        key: &str,
        dead_key: &str,
        group: &str,
        id: Id,
        payload: &[u8],
        error: &str,
        deliveries: u64,
        max_len: u64,
        retention: Duration,
    ) -> Result<Option<Id>> {
        match self {
            StreamOps::Memory(m, clock) => {
                let fields = vec![
                    ("d".to_string(), payload.to_vec()),
                    ("id".to_string(), id.to_string().into_bytes()),
                    ("group".to_string(), group.as_bytes().to_vec()),
                    ("error".to_string(), error.as_bytes().to_vec()),
                    (
                        "deliveries".to_string(),
                        deliveries.to_string().into_bytes(),
                    ),
                ];
                Ok(m.dead_letter(
                    key,
                    dead_key,
                    group,
                    id,
                    fields,
                    max_len,
                    millis(retention),
                    Self::now_ms(*clock),
                ))
            }
            StreamOps::Redis(conn) => {
                let mut invocation = DEAD.key(key);
                invocation
                    .key(dead_key)
                    .arg(group)
                    .arg(id.to_string())
                    .arg(payload)
                    .arg(error)
                    .arg(deliveries)
                    .arg(max_len)
                    .arg(millis(retention));
                let dead: Option<String> = invocation.invoke_async(&mut (*conn).clone()).await?;
                dead.as_deref().map(parse_id).transpose()
            }
        }
    }

    pub(crate) async fn pending(&self, key: &str, group: &str) -> Result<u64> {
        match self {
            StreamOps::Memory(m, clock) => Ok(m.pending(key, group, Self::now_ms(*clock))),
            StreamOps::Redis(conn) => {
                let reply: Value = match redis::cmd("XPENDING")
                    .arg(key)
                    .arg(group)
                    .query_async(&mut (*conn).clone())
                    .await
                {
                    Ok(reply) => reply,
                    Err(e) if e.code() == Some("NOGROUP") => return Ok(0),
                    Err(e) => return Err(e.into()),
                };
                match reply {
                    Value::Array(parts) => match parts.first() {
                        Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
                        _ => Err(Error::UnexpectedReply("XPENDING")),
                    },
                    _ => Err(Error::UnexpectedReply("XPENDING")),
                }
            }
        }
    }
}

/// A range bound as `XRANGE` takes it, for the embedded backend.
fn bound(s: &str, upper: bool) -> Option<Id> {
    match s {
        "-" => Some(Id::ZERO),
        "+" => Some(Id::MAX),
        _ => match s.strip_prefix('(') {
            Some(exclusive) => {
                let id: Id = exclusive.parse().ok()?;
                if upper {
                    // The largest id before `id`.
                    Some(match (id.0, id.1) {
                        (0, 0) => return None,
                        (ms, 0) => Id(ms - 1, u64::MAX),
                        (ms, seq) => Id(ms, seq - 1),
                    })
                } else {
                    Some(id.next())
                }
            }
            None => {
                let (ms, seq) = s.split_once('-').map_or((s, None), |(m, q)| (m, Some(q)));
                let ms: u64 = ms.parse().ok()?;
                let seq = match seq {
                    Some(seq) => seq.parse().ok()?,
                    // `ms` alone spans the whole millisecond.
                    None if upper => u64::MAX,
                    None => 0,
                };
                Some(Id(ms, seq))
            }
        },
    }
}

fn parse_id(s: &str) -> Result<Id> {
    s.parse()
        .map_err(|()| Error::UnexpectedReply("a stream entry id"))
}

fn string(v: Value) -> Result<String> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b).map_err(|_| Error::UnexpectedReply("a stream entry id"))
        }
        Value::SimpleString(s) => Ok(s),
        _ => Err(Error::UnexpectedReply("a stream entry id")),
    }
}

fn ids(v: Value) -> Result<Vec<Id>> {
    match v {
        Value::Array(items) => items.into_iter().map(|i| parse_id(&string(i)?)).collect(),
        Value::Nil => Ok(Vec::new()),
        _ => Err(Error::UnexpectedReply("stream entry ids")),
    }
}

/// The (key, value) pairs of a RESP2 flat array of pairs, or a RESP3 map.
fn pairs(v: Value) -> Result<Vec<(Value, Value)>> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let value = pair.pop().expect("two");
                    Ok((pair.pop().expect("two"), value))
                }
                _ => Err(Error::UnexpectedReply("a stream read")),
            })
            .collect(),
        _ => Err(Error::UnexpectedReply("a stream read")),
    }
}

/// Entries as `XRANGE`, `XREADGROUP` (per stream), `XCLAIM` and
/// `XAUTOCLAIM` answer them: `[id, [field, value, ...] | nil]`. A nil in
/// place of an entry (Redis 6.2's claim of a deleted one) is skipped.
fn entries(v: Value) -> Result<Vec<RawEntry>> {
    let items = match v {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        _ => return Err(Error::UnexpectedReply("stream entries")),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut parts) = item else {
            continue;
        };
        if parts.is_empty() {
            continue;
        }
        let raw_fields = if parts.len() > 1 {
            parts.swap_remove(1)
        } else {
            Value::Nil
        };
        let id = parse_id(&string(parts.swap_remove(0))?)?;
        let mut fields = Vec::new();
        let flat = match raw_fields {
            Value::Array(flat) => flat,
            Value::Map(map) => map.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        };
        let mut flat = flat.into_iter();
        while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
            let Value::BulkString(value) = value else {
                continue;
            };
            fields.push((string(name)?, value));
        }
        out.push(RawEntry {
            id,
            fields,
            deliveries: 0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_print_and_order() {
        let id: Id = "1700000000000-7".parse().unwrap();
        assert_eq!(id, Id(1_700_000_000_000, 7));
        assert_eq!(id.to_string(), "1700000000000-7");
        assert_eq!("5".parse::<Id>(), Ok(Id(5, 0)));
        assert!("x-1".parse::<Id>().is_err());
        assert!(Id(1, u64::MAX) < Id(2, 0));
        assert_eq!(Id(1, u64::MAX).next(), Id(2, 0));
    }

    #[test]
    fn range_bounds_read_as_xrange_reads_them() {
        assert_eq!(bound("-", false), Some(Id::ZERO));
        assert_eq!(bound("+", true), Some(Id::MAX));
        assert_eq!(bound("5", false), Some(Id(5, 0)));
        assert_eq!(bound("5", true), Some(Id(5, u64::MAX)));
        assert_eq!(bound("(5-1", false), Some(Id(5, 2)));
        assert_eq!(bound("(5-0", true), Some(Id(4, u64::MAX)));
        assert_eq!(bound("(0-0", true), None);
        assert_eq!(bound("five", false), None);
    }
}
