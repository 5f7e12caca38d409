//! The embedded backend's sessions: the same operations as the session
//! scripts (`scripts/session_*.lua`), on the cache's clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::{SessionOp, SessionReply};

#[derive(Default)]
pub(crate) struct SessionTable {
    sessions: Mutex<HashMap<String, Stored>>,
    indexes: Mutex<HashMap<String, (HashSet<String>, u64)>>,
}

struct Stored {
    fields: BTreeMap<String, Vec<u8>>,
    user: String,
    created_us: u64,
    until_us: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl SessionTable {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stored>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn create(
        &self,
        key: &str,
        idle: Duration,
        max: Duration,
        user: &str,
        now_us: u64,
    ) -> bool {
        let mut sessions = self.sessions();
        if sessions.get(key).is_some_and(|s| s.until_us > now_us) {
            return false;
        }
        // Expired sessions go as the table grows.
        if sessions.len() % 1024 == 1023 {
            sessions.retain(|_, s| s.until_us > now_us);
        }
        sessions.insert(
            key.to_string(),
            Stored {
                fields: BTreeMap::new(),
                user: user.to_string(),
                created_us: now_us,
                until_us: now_us.saturating_add(micros(idle.min(max))),
            },
        );
        true
    }

    /// The live session at `key`, its expiry slid; `None` (and removed)
    /// past its maximum lifetime.
    fn open<'a>(
        sessions: &'a mut HashMap<String, Stored>,
        key: &str,
        idle: Duration,
        max: Duration,
        now_us: u64,
    ) -> Option<&'a mut Stored> {
        let live = sessions.get(key).is_some_and(|s| {
            s.until_us > now_us && s.created_us.saturating_add(micros(max)) > now_us
        });
        if !live {
            sessions.remove(key);
            return None;
        }
        let stored = sessions.get_mut(key)?;
        let end = stored.created_us.saturating_add(micros(max));
        stored.until_us = now_us.saturating_add(micros(idle)).min(end);
        Some(stored)
    }

    pub(crate) fn touch(
        &self,
        key: &str,
        idle: Duration,
        max: Duration,
        op: SessionOp<'_>,
        now_us: u64,
    ) -> SessionReply {
        let mut sessions = self.sessions();
        let Some(stored) = Self::open(&mut sessions, key, idle, max, now_us) else {
            return SessionReply::Missing;
        };
        match op {
            SessionOp::All => SessionReply::All(
                stored
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                stored.user.clone(),
            ),
            SessionOp::Get(field) => SessionReply::Field(stored.fields.get(field).cloned()),
            SessionOp::Set(field, value) => {
                stored.fields.insert(field.to_string(), value.to_vec());
                SessionReply::Done
            }
            SessionOp::Del(field) => {
                stored.fields.remove(field);
                SessionReply::Done
            }
            SessionOp::End => {
                let user = stored.user.clone();
                sessions.remove(key);
                SessionReply::Ended(user)
            }
        }
    }

    pub(crate) fn rotate(
        &self,
        old: &str,
        new: &str,
        idle: Duration,
        max: Duration,
        now_us: u64,
    ) -> Option<String> {
        let mut sessions = self.sessions();
        if sessions.get(new).is_some_and(|s| s.until_us > now_us) {
            return None;
        }
        Self::open(&mut sessions, old, idle, max, now_us)?;
        let stored = sessions.remove(old)?;
        let user = stored.user.clone();
        sessions.insert(new.to_string(), stored);
        Some(user)
    }

    pub(crate) fn index(
        &self,
        index: &str,
        keep: Duration,
        remove: Option<&str>,
        add: Option<&str>,
        now_us: u64,
    ) {
        let mut indexes = self.indexes.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = indexes.entry(index.to_string()).or_default();
        if entry.1 <= now_us {
            entry.0.clear();
        }
        if let Some(id) = remove {
            entry.0.remove(id);
        }
        if let Some(id) = add {
            entry.0.insert(id.to_string());
        }
        entry.1 = now_us.saturating_add(micros(keep));
        if entry.0.is_empty() {
            indexes.remove(index);
        }
    }

    /// The ids in `index`, which is then removed.
    pub(crate) fn take_index(&self, index: &str, now_us: u64) -> Vec<String> {
        let mut indexes = self.indexes.lock().unwrap_or_else(PoisonError::into_inner);
        match indexes.remove(index) {
            Some((ids, until_us)) if until_us > now_us => ids.into_iter().collect(),
            _ => Vec::new(),
        }
    }
}
