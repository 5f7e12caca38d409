//! A [`tower_sessions`](https://docs.rs/tower-sessions) store on a
//! redcache [`Cache`] (feature `tower-sessions`): axum and tower services
//! keep their sessions on redcache's connection, so on Redis Cluster and
//! Sentinel as well, with its timeouts and circuit breaker.
//!
//! A record is one JSON value under `<ns>:tsess:<id>`, expiring at the
//! record's expiry date. A record past its date is neither written nor
//! read; one that does not decode reads as no session.

use async_trait::async_trait;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, SessionStore};

use crate::cache::Cache;

/// A `tower_sessions::SessionStore` on a [`Cache`].
///
/// ```no_run
/// # fn layer(cache: &redcache::Cache) {
/// let store = cache.tower_session_store();
/// // then: tower_sessions::SessionManagerLayer::new(store), as examples/axum_service.rs does
/// # let _ = store;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TowerSessionStore {
    cache: Cache,
}

impl Cache {
    /// This cache as a `tower_sessions::SessionStore`.
    pub fn tower_session_store(&self) -> TowerSessionStore {
        TowerSessionStore {
            cache: self.clone(),
        }
    }
}

impl TowerSessionStore {
    fn key(&self, id: &Id) -> String {
        format!("{}:tsess:{id}", self.cache.inner.namespace)
    }

    /// Writes `record` until its expiry date (`only_new`: if its id is
    /// free); false when it is already past it, or the id is taken.
    async fn write(&self, record: &Record, only_new: bool) -> session_store::Result<bool> {
        let left = record.expiry_date - time::OffsetDateTime::now_utc();
        let Ok(ttl) = std::time::Duration::try_from(left) else {
            // Expired (negative): never stored.
            return Ok(!only_new);
        };
        if ttl.is_zero() {
            return Ok(!only_new);
        }
        let bytes =
            serde_json::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let guarded = &self.cache.inner.guarded;
        guarded
            .op(guarded
                .backend
                .kv_set(&self.key(&record.id), &bytes, ttl, only_new))
            .await
            .map_err(backend)
    }
}

fn backend(error: crate::Error) -> session_store::Error {
    session_store::Error::Backend(error.to_string())
}

#[async_trait]
impl SessionStore for TowerSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A fresh id until it is free (`SET NX`): never another's session.
        while !self.write(record, true).await? {
            if record.expiry_date <= time::OffsetDateTime::now_utc() {
                return Ok(());
            }
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if record.expiry_date <= time::OffsetDateTime::now_utc() {
            return self.delete(&record.id).await;
        }
        self.write(record, false).await.map(drop)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let guarded = &self.cache.inner.guarded;
        let bytes = guarded
            .op(guarded.backend.kv_get(&self.key(id)))
            .await
            .map_err(backend)?;
        let record = bytes.and_then(|bytes| match serde_json::from_slice::<Record>(&bytes) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(target: "redcache", %error, "a tower-sessions record does not decode; read as no session");
                None
            }
        });
        Ok(record.filter(|r| r.id == *id && r.expiry_date > time::OffsetDateTime::now_utc()))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let guarded = &self.cache.inner.guarded;
        guarded
            .op(guarded.backend.unlink_aside(&self.key(id)))
            .await
            .map_err(backend)
    }
}
