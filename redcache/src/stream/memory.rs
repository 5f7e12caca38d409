//! The embedded backend's streams: the subset of Redis Streams that
//! [`EventStream`](super::EventStream) and its consumer groups use, with
//! the same semantics (ids, approximate `MAXLEN` kept exact, consumer
//! groups with a pending entries list and delivery counts, idle claims,
//! expiry by retention), on the cache's clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::ops::{Claimed, Id, RawEntry, ReadFrom};

#[derive(Default)]
pub(crate) struct MemoryStreams {
    streams: Mutex<HashMap<String, Log>>,
    /// Woken on every append: a blocked group read looks again.
    pub(crate) appended: tokio::sync::Notify,
}

#[derive(Default)]
struct Log {
    entries: BTreeMap<Id, Vec<(String, Vec<u8>)>>,
    last: Id,
    groups: HashMap<String, Group>,
    until_ms: u64,
}

#[derive(Default)]
struct Group {
    last_delivered: Id,
    pending: BTreeMap<Id, Pending>,
}

struct Pending {
    consumer: String,
    /// When it was delivered, in ms of the cache's clock; before 0 for an
    /// entry made idle for longer than the clock has run (a hand-back
    /// under a test clock that starts at 0).
    delivered_ms: i128,
    count: u64,
}

impl MemoryStreams {
    fn streams(&self) -> MutexGuard<'_, HashMap<String, Log>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live stream at `key`, if any (an expired one is removed).
    fn live<'a>(
        streams: &'a mut HashMap<String, Log>,
        key: &str,
        now_ms: u64,
    ) -> Option<&'a mut Log> {
        if streams.get(key).is_some_and(|log| log.until_ms <= now_ms) {
            streams.remove(key);
        }
        streams.get_mut(key)
    }

    pub(crate) fn append(
        &self,
        key: &str,
        fields: Vec<(String, Vec<u8>)>,
        max_len: u64,
        retention_ms: u64,
        now_ms: u64,
    ) -> Id {
        let id = {
            let mut streams = self.streams();
            if Self::live(&mut streams, key, now_ms).is_none() {
                // Expired streams go as new ones come (as Redis' expiry
                // cycle would), not only when touched again.
                streams.retain(|_, log| log.until_ms > now_ms);
                streams.insert(key.to_string(), Log::default());
            }
            let log = streams.get_mut(key).expect("just made");
            let id = if now_ms > log.last.0 {
                Id(now_ms, 0)
            } else {
                Id(log.last.0, log.last.1 + 1)
            };
            log.last = id;
            log.entries.insert(id, fields);
            while log.entries.len() as u64 > max_len {
                log.entries.pop_first();
            }
            log.until_ms = now_ms.saturating_add(retention_ms);
            id
        };
        self.appended.notify_waiters();
        id
    }

    pub(crate) fn range(
        &self,
        key: &str,
        start: Id,
        end: Id,
        count: usize,
        rev: bool,
        now_ms: u64,
    ) -> Vec<RawEntry> {
        let mut streams = self.streams();
        let Some(log) = Self::live(&mut streams, key, now_ms) else {
            return Vec::new();
        };
        if start > end {
            return Vec::new();
        }
        let range = log.entries.range(start..=end);
        let entry = |(id, fields): (&Id, &Vec<(String, Vec<u8>)>)| RawEntry {
            id: *id,
            fields: fields.clone(),
            deliveries: 0,
        };
        if rev {
            range.rev().take(count).map(entry).collect()
        } else {
            range.take(count).map(entry).collect()
        }
    }

    pub(crate) fn len(&self, key: &str, now_ms: u64) -> u64 {
        let mut streams = self.streams();
        Self::live(&mut streams, key, now_ms).map_or(0, |log| log.entries.len() as u64)
    }

    /// `XGROUP CREATE ... MKSTREAM`; false if the group existed.
    pub(crate) fn create_group(
        &self,
        key: &str,
        group: &str,
        from_start: bool,
        retention_ms: u64,
        now_ms: u64,
    ) -> bool {
        let mut streams = self.streams();
        if Self::live(&mut streams, key, now_ms).is_none() {
            streams.insert(
                key.to_string(),
                Log {
                    until_ms: now_ms.saturating_add(retention_ms),
                    ..Log::default()
                },
            );
        }
        let log = streams.get_mut(key).expect("just made");
        if log.groups.contains_key(group) {
            return false;
        }
        let last_delivered = if from_start { Id::ZERO } else { log.last };
        log.groups.insert(
            group.to_string(),
            Group {
                last_delivered,
                pending: BTreeMap::new(),
            },
        );
        true
    }

    /// `XREADGROUP` without `BLOCK`: `None` if the stream or group is gone
    /// (Redis answers `NOGROUP`).
    pub(crate) fn read_group(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        from: &ReadFrom,
        count: usize,
        now_ms: u64,
    ) -> Option<Vec<RawEntry>> {
        let mut streams = self.streams();
        let log = Self::live(&mut streams, key, now_ms)?;
        let g = log.groups.get_mut(group)?;
        let mut out = Vec::new();
        match from {
            ReadFrom::New => {
                let after = g.last_delivered;
                for (id, fields) in log.entries.range(after.next()..).take(count) {
                    g.last_delivered = *id;
                    g.pending.insert(
                        *id,
                        Pending {
                            consumer: consumer.to_string(),
                            delivered_ms: i128::from(now_ms),
                            count: 1,
                        },
                    );
                    out.push(RawEntry {
                        id: *id,
                        fields: fields.clone(),
                        deliveries: 1,
                    });
                }
            }
            ReadFrom::Own(after) => {
                let mine = g
                    .pending
                    .range_mut(after.next()..)
                    .filter(|(_, p)| p.consumer == consumer)
                    .take(count);
                for (id, p) in mine {
                    p.count += 1;
                    p.delivered_ms = i128::from(now_ms);
                    out.push(RawEntry {
                        id: *id,
                        // Empty when the entry was trimmed: Redis answers nil fields.
                        fields: log.entries.get(id).cloned().unwrap_or_default(),
                        deliveries: p.count,
                    });
                }
            }
        }
        Some(out)
    }

    pub(crate) fn ack(&self, key: &str, group: &str, ids: &[Id], now_ms: u64) -> u64 {
        let mut streams = self.streams();
        let Some(g) =
            Self::live(&mut streams, key, now_ms).and_then(|log| log.groups.get_mut(group))
        else {
            return 0;
        };
        ids.iter()
            .filter(|id| g.pending.remove(id).is_some())
            .count() as u64
    }

    #[allow(clippy::too_many_arguments)]
    /// `XAUTOCLAIM`: pending entries idle at least `min_idle_ms` move to
    /// `consumer`, their delivery count raised; entries no longer in the
    /// stream leave the pending list and are reported as deleted.
    pub(crate) fn auto_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle_ms: u64,
        cursor: Id,
        count: usize,
        now_ms: u64,
    ) -> Option<Claimed> {
        let mut streams = self.streams();
        let log = Self::live(&mut streams, key, now_ms)?;
        let g = log.groups.get_mut(group)?;
        let mut claimed = Claimed {
            next: Id::ZERO,
            entries: Vec::new(),
            deleted: Vec::new(),
        };
        let ids: Vec<Id> = g.pending.range(cursor..).map(|(id, _)| *id).collect();
        for id in ids {
            if claimed.entries.len() + claimed.deleted.len() >= count {
                claimed.next = id;
                break;
            }
            let p = g.pending.get_mut(&id).expect("listed");
            if i128::from(now_ms) - p.delivered_ms < i128::from(min_idle_ms) {
                continue;
            }
            match log.entries.get(&id) {
                Some(fields) => {
                    p.consumer = consumer.to_string();
                    p.delivered_ms = i128::from(now_ms);
                    p.count += 1;
                    claimed.entries.push(RawEntry {
                        id,
                        fields: fields.clone(),
                        deliveries: p.count,
                    });
                }
                None => {
                    g.pending.remove(&id);
                    claimed.deleted.push(id);
                }
            }
        }
        Some(claimed)
    }

    /// `XCLAIM ... JUSTID` (with `IDLE`): the entries are `consumer`'s,
    /// idle for `idle_ms` from now, their delivery counts unchanged.
    pub(crate) fn touch(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        ids: &[Id],
        idle_ms: u64,
        now_ms: u64,
    ) {
        let mut streams = self.streams();
        let Some(g) =
            Self::live(&mut streams, key, now_ms).and_then(|log| log.groups.get_mut(group))
        else {
            return;
        };
        for id in ids {
            if let Some(p) = g.pending.get_mut(id) {
                p.consumer = consumer.to_string();
                p.delivered_ms = i128::from(now_ms) - i128::from(idle_ms);
            }
        }
    }

    /// `XCLAIM` of one entry for another attempt: its delivery count
    /// raised; `None` once it is no longer pending (or no longer exists).
    pub(crate) fn claim_again(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        id: Id,
        now_ms: u64,
    ) -> Option<RawEntry> {
        let mut streams = self.streams();
        let log = Self::live(&mut streams, key, now_ms)?;
        let g = log.groups.get_mut(group)?;
        let fields = log.entries.get(&id)?;
        let p = g.pending.get_mut(&id)?;
        p.consumer = consumer.to_string();
        p.delivered_ms = i128::from(now_ms);
        p.count += 1;
        Some(RawEntry {
            id,
            fields: fields.clone(),
            deliveries: p.count,
        })
    }

    /// Acks `id` and appends the dead letter, as `stream_dead.lua` does.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dead_letter(
        &self,
        key: &str,
        dead_key: &str,
        group: &str,
        id: Id,
        fields: Vec<(String, Vec<u8>)>,
        max_len: u64,
        retention_ms: u64,
        now_ms: u64,
    ) -> Option<Id> {
        if self.ack(key, group, &[id], now_ms) == 0 {
            return None;
        }
        Some(self.append(dead_key, fields, max_len, retention_ms, now_ms))
    }

    pub(crate) fn pending(&self, key: &str, group: &str, now_ms: u64) -> u64 {
        let mut streams = self.streams();
        Self::live(&mut streams, key, now_ms)
            .and_then(|log| log.groups.get(group))
            .map_or(0, |g| g.pending.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &str) -> Vec<(String, Vec<u8>)> {
        vec![("d".into(), v.as_bytes().to_vec())]
    }

    #[test]
    fn ids_grow_within_a_millisecond_and_trim_keeps_the_newest() {
        let s = MemoryStreams::default();
        let a = s.append("k", fields("a"), 2, 1_000, 5);
        let b = s.append("k", fields("b"), 2, 1_000, 5);
        let c = s.append("k", fields("c"), 2, 1_000, 4);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(s.len("k", 5), 2);
        let kept = s.range("k", Id::ZERO, Id::MAX, 10, false, 5);
        assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b, c]);
    }

    #[test]
    fn a_stream_expires_after_its_retention() {
        let s = MemoryStreams::default();
        s.append("k", fields("a"), 10, 100, 1_000);
        assert_eq!(s.len("k", 1_099), 1);
        assert_eq!(s.len("k", 1_100), 0);
    }

    #[test]
    fn an_entry_made_idle_longer_than_the_clock_has_run_is_claimed() {
        // A test clock that starts at 0: a hand-back's 30 days of idle
        // must not be cut to the 10 ms the clock has run.
        let s = MemoryStreams::default();
        assert!(s.create_group("k", "g", true, 10_000, 0));
        let a = s.append("k", fields("a"), 10, 10_000, 1);
        assert_eq!(
            s.read_group("k", "g", "c1", &ReadFrom::New, 10, 1)
                .unwrap()
                .len(),
            1
        );
        s.touch("k", "g", "c1", &[a], 30 * 24 * 3_600_000, 10);
        let claimed = s
            .auto_claim("k", "g", "c2", 30_000, Id::ZERO, 10, 10)
            .unwrap();
        assert_eq!(
            claimed.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![a]
        );
    }

    #[test]
    fn groups_deliver_once_and_claim_idle_entries_with_counts() {
        let s = MemoryStreams::default();
        assert!(s.create_group("k", "g", true, 10_000, 0));
        assert!(!s.create_group("k", "g", true, 10_000, 0));
        let a = s.append("k", fields("a"), 10, 10_000, 1);
        let first = s.read_group("k", "g", "c1", &ReadFrom::New, 10, 1).unwrap();
        assert_eq!(first.len(), 1);
        assert!(s
            .read_group("k", "g", "c2", &ReadFrom::New, 10, 1)
            .unwrap()
            .is_empty());
        // Not idle long enough for c2, then claimed with a second delivery.
        assert!(s
            .auto_claim("k", "g", "c2", 100, Id::ZERO, 10, 50)
            .unwrap()
            .entries
            .is_empty());
        let claimed = s
            .auto_claim("k", "g", "c2", 100, Id::ZERO, 10, 200)
            .unwrap();
        assert_eq!(claimed.entries[0].id, a);
        assert_eq!(claimed.entries[0].deliveries, 2);
        // c1's own history no longer holds it; c2's does.
        assert!(s
            .read_group("k", "g", "c1", &ReadFrom::Own(Id::ZERO), 10, 200)
            .unwrap()
            .is_empty());
        assert_eq!(
            s.read_group("k", "g", "c2", &ReadFrom::Own(Id::ZERO), 10, 200)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(s.ack("k", "g", &[a], 200), 1);
        assert_eq!(s.pending("k", "g", 200), 0);
    }

    #[test]
    fn a_trimmed_pending_entry_is_reported_deleted() {
        let s = MemoryStreams::default();
        s.create_group("k", "g", true, 10_000, 0);
        let a = s.append("k", fields("a"), 1, 10_000, 1);
        s.read_group("k", "g", "c1", &ReadFrom::New, 10, 1).unwrap();
        s.append("k", fields("b"), 1, 10_000, 2);
        let claimed = s.auto_claim("k", "g", "c2", 0, Id::ZERO, 10, 3).unwrap();
        assert_eq!(claimed.deleted, vec![a]);
        assert_eq!(s.pending("k", "g", 3), 0);
    }
}
