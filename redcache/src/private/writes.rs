//! After a write: what `#[cache_put]` and `#[invalidates]` do once their
//! body has succeeded (an `Ok`, a `Some`, or any other value), chosen on
//! the fn's real return type by `__private::writes!`.
//!
//! A failure to reach Redis after the write is never lost: the key or tag
//! is kept pending and retried (see `cache/pending.rs`). It is also the
//! fn's error when the fn returns `Result<T, E>` with
//! `E: From<redcache::Error>`; otherwise it shows in tracing and stats only.

use std::future::Future;

use serde::Serialize;

use super::Call;
use crate::cache::Cache;
use crate::error::{Error, Result};

/// The tags and keys `#[invalidates]` invalidates, rendered.
#[derive(Debug, Clone, Copy)]
pub struct Invalidation<'a> {
    tags: &'a [String],
    keys: &'a [String],
}

impl<'a> Invalidation<'a> {
    pub fn new(tags: &'a [String], keys: &'a [String]) -> Self {
        Invalidation { tags, keys }
    }
}

impl Cache {
    /// Invalidates every tag and key; each is tried (a failure is kept
    /// pending), and the first error is returned.
    pub(crate) async fn invalidate_all(&self, invalidation: Invalidation<'_>) -> Result<()> {
        let mut first_error = None;
        for tag in invalidation.tags {
            if let Err(error) = self.invalidate_tag(tag).await {
                first_error.get_or_insert(error);
            }
        }
        for key in invalidation.keys {
            if let Err(error) = self.invalidate_key(key).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A fn returning `Result<T, E>` where `E: From<redcache::Error>`: a
/// failure after the write is the fn's error.
#[derive(Debug, Clone, Copy)]
pub struct ResultTold;

impl ResultTold {
    pub async fn put<C, T, E, Fut>(self, cache: C, call: Call<'_>, body: Fut) -> Result<T, E>
    where
        C: AsRef<Cache>,
        T: Serialize,
        E: From<Error>,
        Fut: Future<Output = Result<T, E>>,
    {
        let value = body.await?;
        cache.as_ref().put_call(call.into_inner(), &value).await?;
        Ok(value)
    }

    pub async fn invalidate<C, T, E, Fut>(
        self,
        cache: C,
        invalidation: Invalidation<'_>,
        body: Fut,
    ) -> Result<T, E>
    where
        C: AsRef<Cache>,
        E: From<Error>,
        Fut: Future<Output = Result<T, E>>,
    {
        let value = body.await?;
        cache.as_ref().invalidate_all(invalidation).await?;
        Ok(value)
    }
}

/// A fn returning `Result<T, E>` whose `E` cannot hold a
/// `redcache::Error`: a failure after the write shows in tracing and stats.
#[derive(Debug, Clone, Copy)]
pub struct ResultQuiet;

impl ResultQuiet {
    pub async fn put<C, T, E, Fut>(self, cache: C, call: Call<'_>, body: Fut) -> Result<T, E>
    where
        C: AsRef<Cache>,
        T: Serialize,
        Fut: Future<Output = Result<T, E>>,
    {
        let result = body.await;
        if let Ok(value) = &result {
            let _kept_pending = cache.as_ref().put_call(call.into_inner(), value).await;
        }
        result
    }

    pub async fn invalidate<C, T, E, Fut>(
        self,
        cache: C,
        invalidation: Invalidation<'_>,
        body: Fut,
    ) -> Result<T, E>
    where
        C: AsRef<Cache>,
        Fut: Future<Output = Result<T, E>>,
    {
        let result = body.await;
        if result.is_ok() {
            let _kept_pending = cache.as_ref().invalidate_all(invalidation).await;
        }
        result
    }
}

/// A fn returning `Option<T>`: `Some` is the success; `None` writes and
/// invalidates nothing.
#[derive(Debug, Clone, Copy)]
pub struct OptionWrite;

impl OptionWrite {
    pub async fn put<C, T, Fut>(self, cache: C, call: Call<'_>, body: Fut) -> Option<T>
    where
        C: AsRef<Cache>,
        T: Serialize,
        Fut: Future<Output = Option<T>>,
    {
        let result = body.await;
        if let Some(value) = &result {
            let _kept_pending = cache.as_ref().put_call(call.into_inner(), value).await;
        }
        result
    }

    pub async fn invalidate<C, T, Fut>(
        self,
        cache: C,
        invalidation: Invalidation<'_>,
        body: Fut,
    ) -> Option<T>
    where
        C: AsRef<Cache>,
        Fut: Future<Output = Option<T>>,
    {
        let result = body.await;
        if result.is_some() {
            let _kept_pending = cache.as_ref().invalidate_all(invalidation).await;
        }
        result
    }
}

/// A fn returning any other type: every return is a success, except that
/// the `Err` of a generic return that is a `Result` where it is called is
/// not written.
#[derive(Debug, Clone, Copy)]
pub struct ValueWrite;

impl ValueWrite {
    pub async fn put<C, T, Fut>(self, cache: C, call: Call<'_>, body: Fut) -> T
    where
        C: AsRef<Cache>,
        T: Serialize,
        Fut: Future<Output = T>,
    {
        let value = body.await;
        // A generic return that is a `Result` here: an `Err` is a failure,
        // as for `ResultQuiet`.
        if !super::is_generic_err(&value) {
            let _kept_pending = cache.as_ref().put_call(call.into_inner(), &value).await;
        }
        value
    }

    pub async fn invalidate<C, T, Fut>(
        self,
        cache: C,
        invalidation: Invalidation<'_>,
        body: Fut,
    ) -> T
    where
        C: AsRef<Cache>,
        Fut: Future<Output = T>,
    {
        // Even after the `Err` of a generic `Result` (not told apart here,
        // as `T` need not be `Serialize`): one invalidation too many costs
        // a load, never a wrong value.
        let value = body.await;
        let _kept_pending = cache.as_ref().invalidate_all(invalidation).await;
        value
    }
}

/// The dispatch behind `writes!`: `&&Writes<Result<T, E>>` with
/// `E: From<Error>` first, then `&Writes<Result<..>>` and
/// `&Writes<Option<..>>`, then any `Writes<R>` (autoref specialization).
pub mod kind {
    use std::marker::PhantomData;

    use super::{OptionWrite, ResultQuiet, ResultTold, ValueWrite};
    use crate::error::Error;

    /// The return type of a writing fn.
    pub struct Writes<R>(PhantomData<fn() -> R>);

    impl<R> Writes<R> {
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            Writes(PhantomData)
        }
    }

    pub trait ViaTold {
        fn kind(&self) -> ResultTold;
    }

    impl<T, E: From<Error>> ViaTold for &&Writes<Result<T, E>> {
        fn kind(&self) -> ResultTold {
            ResultTold
        }
    }

    pub trait ViaResultOrOption {
        type Kind;
        fn kind(&self) -> Self::Kind;
    }

    impl<T, E> ViaResultOrOption for &Writes<Result<T, E>> {
        type Kind = ResultQuiet;
        fn kind(&self) -> ResultQuiet {
            ResultQuiet
        }
    }

    impl<T> ViaResultOrOption for &Writes<Option<T>> {
        type Kind = OptionWrite;
        fn kind(&self) -> OptionWrite {
            OptionWrite
        }
    }

    pub trait ViaValue {
        fn kind(&self) -> ValueWrite;
    }

    impl<R> ViaValue for Writes<R> {
        fn kind(&self) -> ValueWrite {
            ValueWrite
        }
    }
}

/// How a writing fn returning `$ty` treats its result: a [`ResultTold`],
/// [`ResultQuiet`], [`OptionWrite`] or [`ValueWrite`], decided on the real
/// type.
#[doc(hidden)]
#[macro_export]
macro_rules! __redcache_writes {
    ($ty:ty) => {{
        #[allow(unused_imports)]
        use $crate::__private::writes_kind::{ViaResultOrOption as _, ViaTold as _, ViaValue as _};
        (&&&$crate::__private::writes_kind::Writes::<$ty>::new()).kind()
    }};
}
