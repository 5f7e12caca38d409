use std::time::Duration;

/// What can go wrong when building a [`Cache`](crate::Cache) or asking it to
/// invalidate.
///
/// Cached calls never return this error: when the backend fails they run the
/// function instead (see the crate documentation on fail-open behaviour). Only
/// operations whose whole point is to reach the backend, such as
/// [`Cache::invalidate_tag`](crate::Cache::invalidate_tag), report it, so that
/// an invalidation is never silently lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection string could not be understood.
    #[error("invalid Redis URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL as given (credentials included: do not log it as is).
        url: String,
        /// What the Redis client said about it.
        #[source]
        source: redis::RedisError,
    },
    /// The connection string is not one the cache can use; `hint` says
    /// what to write instead.
    #[error("{url:?} is not a usable Redis URL: {hint}")]
    BadUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What is wrong and how to write it.
        hint: String,
    },
    /// A builder option has a value that cannot work.
    #[error("invalid cache configuration: {0}")]
    Config(&'static str),
    /// Redis answered with an error or the connection failed.
    #[error("redis operation failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// A key the framework owns holds something it did not write.
    #[error("unexpected data in Redis: {0}")]
    UnexpectedReply(&'static str),
    /// Redis did not answer within the operation timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis failed repeatedly and the circuit breaker is open: the
    /// operation was not tried.
    #[error("redis is skipped while the circuit breaker is open")]
    CircuitOpen,
    /// A value to [`put`](crate::Cache::put) could not be stored: it does
    /// not encode, or it is larger than `max_value_size`. The key's old
    /// entry was invalidated instead.
    #[error("the value could not be cached: {0}")]
    Unstorable(String),
    /// A [`LockGuard`](crate::LockGuard) no longer holds its lock: it
    /// expired, and another holder may have taken it.
    #[error("the lock `{0}` is no longer held: it expired")]
    LockLost(String),
}

impl Error {
    /// Whether the error means Redis could not be reached (as opposed to
    /// an answer it gave): what the circuit breaker counts.
    pub(crate) fn is_unreachable(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            Error::Redis(e) => redis_unreachable(e),
            _ => false,
        }
    }
}

/// Whether a redis-rs error means the server could not be reached (the
/// connection failed, dropped or timed out), as opposed to an answer it gave.
impl Error {
    /// Redis refused a write because it is out of memory (`OOM`).
    pub(crate) fn is_out_of_memory(&self) -> bool {
        matches!(self, Error::Redis(e) if e.code() == Some("OOM"))
    }
}

pub(crate) fn redis_unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
}

/// A load of a `#[cached(hard_timeout = ...)]` fn took longer than its
/// hard timeout: the fn's error (its `E` needs `From<LoadTimeout>`), unless
/// a `fail_safe` value stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the load did not finish within its hard timeout of {after:?}")]
#[non_exhaustive]
pub struct LoadTimeout {
    /// The hard timeout.
    pub after: Duration,
}

/// A shorthand for `Result<T, redcache::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
