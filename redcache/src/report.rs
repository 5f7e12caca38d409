//! Problems a user must see: a misconfiguration that turns caching off, or
//! a Redis that cannot be reached. Each is told once per process (per
//! distinct subject), as a `tracing` error, and also on standard error
//! while no `tracing` subscriber is installed: a new user running the
//! quick start has none, and a silent fallback to "every call loads" is
//! the mistake they would never find.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

static TOLD: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Tells `message` once for `subject` (e.g. a fn's path or a Redis
/// address); later calls with the same subject do nothing. Returns whether
/// this call told it.
pub(crate) fn once(subject: &str, message: &str) -> bool {
    {
        let mut told = TOLD.lock().unwrap_or_else(PoisonError::into_inner);
        if !told
            .get_or_insert_with(HashSet::new)
            .insert(subject.to_string())
        {
            return false;
        }
    }
    tracing::error!(target: "redcache", subject, "{message}");
    if !tracing::dispatcher::has_been_set() {
        eprintln!("redcache: {message}");
    }
    true
}

/// Forgets `subject`, so that it is told again if it happens again (e.g.
/// once Redis answered, the next outage is news).
pub(crate) fn forget(subject: &str) {
    if let Some(told) = TOLD.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        told.remove(subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_told_once_until_forgotten() {
        assert!(once("report-test", "first"));
        assert!(!once("report-test", "again"));
        forget("report-test");
        assert!(once("report-test", "after forget"));
    }
}
