//! Sessions in Redis hashes: [`Cache::sessions`] gives a [`SessionStore`].
//!
//! A session is a hash `<ns>:sess:{<tag>}<secret>` with one field per
//! value (JSON), its creation time (the server's) and its user. Each
//! touch slides its expiry to the idle timeout, never past its maximum
//! lifetime, both checked by the server in one script. An id is 36 hex
//! digits: a 16-bit tag (the key's hash tag, kept by rotation so the old
//! and the new key share a cluster slot) and 128 random bits; an id the
//! server did not issue is a missing session. Ids are never written to
//! logs, spans or metrics (their `Debug` shows nothing of them).

#[cfg(feature = "tower-sessions")]
mod tower;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{SessionOp, SessionReply};
use crate::cache::Cache;
use crate::error::Result;
use crate::key::Key;

#[cfg(feature = "tower-sessions")]
pub use self::tower::TowerSessionStore;

/// A session id, as the client presents it back (a cookie).
///
/// Parse what a client sends with [`SessionId::parse`]; an id that is not
/// of the shape the store issues is refused before Redis is asked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

const TAG_LEN: usize = 4;
const ID_LEN: usize = TAG_LEN + 32;

impl SessionId {
    /// A new id: a random tag and 128 random bits (a CSPRNG seeded by the
    /// operating system), as 36 lowercase hex digits.
    fn generate() -> Self {
        let tag = rand::random::<u16>();
        let secret = rand::random::<u128>();
        SessionId(format!("{tag:04x}{secret:032x}"))
    }

    /// The same tag, new secret bits: what rotation gives.
    fn rotated(&self) -> Self {
        SessionId(format!(
            "{}{:032x}",
            &self.0[..TAG_LEN],
            rand::random::<u128>()
        ))
    }

    /// `text` as an id, if it has the shape of one (36 lowercase hex
    /// digits). Whether such a session exists is for the store to say.
    pub fn parse(text: &str) -> Option<Self> {
        let shaped = text.len() == ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        shaped.then(|| SessionId(text.to_string()))
    }

    /// The id, to send to the client (in a `Secure; HttpOnly` cookie).
    /// Do not log it: it is the session's bearer credential.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// A whole session as read.
#[derive(Debug, Clone, Default)]
pub struct Session {
    fields: Vec<(String, Vec<u8>)>,
    user: Option<String>,
}

impl Session {
    /// The value of `field`, decoded as a `T`; `None` when absent or when
    /// it does not decode (a warning says so: never a panic).
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Option<T> {
        let (_, bytes) = self.fields.iter().find(|(name, _)| name == field)?;
        decode(field, bytes)
    }

    /// The names of its fields.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(name, _)| name.as_str())
    }

    /// The user it was created for, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

fn decode<T: DeserializeOwned>(field: &str, bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(target: "redcache", field, %error, "a session field does not decode as this type; read as absent");
            None
        }
    }
}

/// Sessions on a cache's backend (Redis, or the embedded one).
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redcache::Error> {
/// let cache = redcache::Cache::builder().build().await?;
/// let sessions = cache.sessions().idle_timeout(Duration::from_secs(30 * 60));
/// let id = sessions.create(Some("user-7")).await?;
/// sessions.set(&id, "cart", &vec![42u64, 7]).await?;
/// let cart: Option<Vec<u64>> = sessions.get(&id, "cart").await?;
/// assert_eq!(cart, Some(vec![42, 7]));
/// let id = sessions.rotate(&id).await?.expect("live"); // after login: a new id, the same data
/// sessions.delete(&id).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SessionStore {
    cache: Cache,
    idle: Duration,
    max_lifetime: Duration,
}

impl Cache {
    /// The session store on this cache's backend: sessions expire after
    /// 24 h without a touch, and 7 days after their creation at most.
    pub fn sessions(&self) -> SessionStore {
        SessionStore {
            cache: self.clone(),
            idle: Duration::from_secs(24 * 60 * 60),
            max_lifetime: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

impl SessionStore {
    /// A session expires this long after its last touch (default 24 h).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// A session expires this long after its creation, touched or not
    /// (default 7 days).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    fn key(&self, id: &SessionId) -> String {
        let (tag, secret) = id.0.split_at(TAG_LEN);
        format!("{}:sess:{{{tag}}}{secret}", self.cache.inner.namespace)
    }

    fn index_key(&self, user: &str) -> String {
        let user = Key::new().arg(user).finish();
        format!("{}:sess-user:{user}", self.cache.inner.namespace)
    }

    async fn op<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.cache.inner.guarded.op(fut).await
    }

    /// Creates a session (for `user`, whose sessions
    /// [`delete_user_sessions`](Self::delete_user_sessions) can end) and
    /// returns its new id.
    ///
    /// # Errors
    ///
    /// A Redis error when Redis cannot be reached.
    pub async fn create(&self, user: Option<&str>) -> Result<SessionId> {
        let backend = &self.cache.inner.guarded.backend;
        loop {
            let id = SessionId::generate();
            let key = self.key(&id);
            let created = self
                .op(backend.session_create(&key, self.idle, self.max_lifetime, user.unwrap_or("")))
                .await?;
            if !created {
                continue; // 128 random bits met another id: draw again
            }
            if let Some(user) = user {
                let index = self.index_key(user);
                self.op(backend.session_index(&index, self.max_lifetime, None, Some(id.expose())))
                    .await?;
            }
            return Ok(id);
        }
    }

    async fn touch(&self, id: &SessionId, op: SessionOp<'_>) -> Result<SessionReply> {
        let backend = &self.cache.inner.guarded.backend;
        self.op(backend.session_touch(&self.key(id), self.idle, self.max_lifetime, op))
            .await
    }

    /// The whole session, touched; `None` when there is no live session
    /// with this id.
    ///
    /// # Errors
    ///
    /// A Redis error when Redis cannot be reached.
    pub async fn load(&self, id: &SessionId) -> Result<Option<Session>> {
        Ok(match self.touch(id, SessionOp::All).await? {
            SessionReply::All(fields, user) => Some(Session {
                fields,
                user: (!user.is_empty()).then_some(user),
            }),
            _ => None,
        })
    }

    /// One field, touched: `None` when the session or the field is absent
    /// or the value does not decode as a `T`.
    ///
    /// # Errors
    ///
    /// A Redis error when Redis cannot be reached.
    pub async fn get<T: DeserializeOwned>(&self, id: &SessionId, field: &str) -> Result<Option<T>> {
        Ok(match self.touch(id, SessionOp::Get(field)).await? {
            SessionReply::Field(Some(bytes)) => decode(field, &bytes),
            _ => None,
        })
    }

    /// Sets one field (`HSET`: concurrent updates of other fields are
    /// kept) and touches the session. False when there is no live session
    /// with this id: nothing is created for an id the store did not issue.
    ///
    /// # Errors
    ///
    /// [`Error::Unstorable`] for a value that does not encode; a Redis
    /// error when Redis cannot be reached.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        id: &SessionId,
        field: &str,
        value: &T,
    ) -> Result<bool> {
        let bytes = crate::codec::to_json(value)?;
        Ok(matches!(
            self.touch(id, SessionOp::Set(field, &bytes)).await?,
            SessionReply::Done
        ))
    }

    /// Removes one field; false when there is no live session.
    ///
    /// # Errors
    ///
    /// A Redis error when Redis cannot be reached.
    pub async fn remove(&self, id: &SessionId, field: &str) -> Result<bool> {
        Ok(matches!(
            self.touch(id, SessionOp::Del(field)).await?,
            SessionReply::Done
        ))
    }

    /// Ends a session (logout); false when there was none.
    ///
    /// # Errors
    ///
    /// A Redis error when Redis cannot be reached.
    pub async fn delete(&self, id: &SessionId) -> Result<bool> {
        let SessionReply::Ended(user) = self.touch(id, SessionOp::End).await? else {
            return Ok(false);
        };
        if !user.is_empty() {
            let backend = &self.cache.inner.guarded.backend;
            let index = self.index_key(&user);
            self.op(backend.session_index(&index, self.max_lifetime, Some(id.expose()), None))
                .await?;
        }
        Ok(true)
    }

    /// Gives a live session a new id, atomically (one script: the data and
    /// its expiry move, the old id is gone): call it when a user logs in,
    /// against session fixation. `None` when there is no live session.
    ///
    /// # Errors
    ///
    /// A Redis error when Redis cannot be reached.
    pub async fn rotate(&self, id: &SessionId) -> Result<Option<SessionId>> {
        let backend = &self.cache.inner.guarded.backend;
        let new = id.rotated();
        let (old_key, new_key) = (self.key(id), self.key(&new));
        let rotated = backend.session_rotate(&old_key, &new_key, self.idle, self.max_lifetime);
        let Some(user) = self.op(rotated).await? else {
            return Ok(None);
        };
        if !user.is_empty() {
            let index = self.index_key(&user);
            let update = backend.session_index(
                &index,
                self.max_lifetime,
                Some(id.expose()),
                Some(new.expose()),
            );
            self.op(update).await?;
        }
        Ok(Some(new))
    }

    /// Ends every session created for `user` (a password change, "log out
    /// everywhere"); returns how many were live.
    ///
    /// # Errors
    ///
    /// A Redis error when Redis cannot be reached.
    pub async fn delete_user_sessions(&self, user: &str) -> Result<usize> {
        let backend = &self.cache.inner.guarded.backend;
        let ids = self
            .op(backend.session_take_index(&self.index_key(user)))
            .await?;
        let mut ended = 0;
        for id in ids.iter().filter_map(|id| SessionId::parse(id)) {
            // One command per session: each is in a slot of its own.
            if matches!(
                self.touch(&id, SessionOp::End).await?,
                SessionReply::Ended(_)
            ) {
                ended += 1;
            }
        }
        Ok(ended)
    }
}
