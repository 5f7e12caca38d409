//! What the macros expand to. Not a public API: names and signatures here
//! change without notice. The logic lives in the engine (`cache.rs`), so
//! that expansions stay a few readable lines.

use std::future::Future;

pub use crate::cache::Stampede;
pub use crate::global::global;
pub use crate::identity::{FnId, FnPath};
pub use crate::key::{ArgPart, IntPart, Key, KeyArg, ListPart};
pub use crate::ratelimit::{Algorithm, OnError, Policy};
mod generic_result;
mod writes;

pub use crate::{
    __redcache_fn_path as fn_path, __redcache_key_part as key_part, __redcache_returns as returns,
    __redcache_writes as writes,
};
pub use core::time::Duration;
pub use writes::{
    kind as writes_kind, Invalidation, OptionWrite, ResultQuiet, ResultTold, ValueWrite,
};

use crate::cache::Cache;
use crate::ratelimit::{Mode, RateLimited, Request};

/// What `ttl = <expr>` takes: a `Duration`, or whole seconds.
#[diagnostic::on_unimplemented(
    message = "`ttl = ...` takes a `Duration` or whole seconds (an unsigned integer), not `{Self}`",
    label = "not a time to live"
)]
pub trait IntoTtl {
    fn into_ttl(self) -> Duration;
}

impl IntoTtl for Duration {
    fn into_ttl(self) -> Duration {
        self
    }
}

macro_rules! seconds_into_ttl {
    ($($int:ty),*) => {$(
        impl IntoTtl for $int {
            fn into_ttl(self) -> Duration {
                Duration::from_secs(u64::from(self))
            }
        }
    )*};
}
seconds_into_ttl!(u8, u16, u32, u64);

/// The `ttl` of an attribute given as an expression. A zero one is caught
/// by the engine when the call is made: the fn runs uncached, and says so.
pub fn ttl(ttl: impl IntoTtl) -> Duration {
    ttl.into_ttl()
}

/// What `cache = <expr>` takes.
#[diagnostic::on_unimplemented(
    message = "`cache = ...` takes a `redcache::Cache` (or `&Cache`, `Arc<Cache>`), not `{Self}`",
    label = "this is not a cache",
    note = "build one with `redcache::Cache::builder()...build().await` and keep it in your state"
)]
pub trait CacheHandle {
    fn cache(&self) -> &Cache;
}

impl<C: AsRef<Cache> + ?Sized> CacheHandle for C {
    fn cache(&self) -> &Cache {
        self.as_ref()
    }
}

/// The cache of `cache = <expr>`, as an owned handle (a reference count):
/// taken before the body runs, so the body may move what it came from.
pub fn handle<C: CacheHandle + ?Sized>(cache: &C) -> Cache {
    cache.cache().clone()
}

pub use crate::cache::Cacheable;

/// What `codec = "..."` names: a codec, or, for one whose feature is off,
/// a stand-in that `Call::codec` refuses with a message naming the feature.
pub mod codecs {
    pub const JSON: crate::Codec = crate::Codec::Json;
    #[cfg(feature = "msgpack")]
    pub const MSGPACK: crate::Codec = crate::Codec::MessagePack;
    #[cfg(not(feature = "msgpack"))]
    pub const MSGPACK: super::FeatureOff = super::FeatureOff("msgpack");
}

/// A codec whose feature is off (see [`codecs`]).
pub struct FeatureOff(pub &'static str);

/// What `codec = ...` takes.
#[diagnostic::on_unimplemented(
    message = "this codec needs a feature of redcache that is off",
    label = "its feature is off",
    note = "`codec = \"msgpack\"` needs redcache's `msgpack` feature (on by default: check `default-features = false`)"
)]
pub trait IntoCodec {
    fn into_codec(self) -> crate::Codec;
}

impl IntoCodec for crate::Codec {
    fn into_codec(self) -> crate::Codec {
        self
    }
}

/// One call of a cached function.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a>(crate::cache::Call<'a>);

impl<'a> Call<'a> {
    /// `name` is the key template as written (or the fn's path): it names
    /// the call in spans and metrics, where the rendered `key` would be one
    /// name per argument.
    pub fn new(name: &'static str, key: &'a str, ttl: Duration) -> Self {
        Call(crate::cache::Call {
            name,
            key,
            ttl,
            tags: &[],
            stampede: Stampede::default(),
            uncacheable: None,
            lifecycle: Default::default(),
            codec: None,
        })
    }

    /// The codec of this fn's entries (`codec = "..."`).
    pub fn codec(mut self, codec: impl IntoCodec) -> Self {
        self.0.codec = Some(codec.into_codec());
        self
    }

    /// For a default key that could not name `Self`: a fn of a generic impl
    /// cannot tell its instances apart, so it runs uncached (and says so).
    pub fn fn_path(mut self, path: &FnPath) -> Self {
        if path.is_generic_impl() {
            self.0.uncacheable = Some(GENERIC_IMPL);
        }
        self
    }

    pub fn tags(mut self, tags: &'a [String]) -> Self {
        self.0.tags = tags;
        self
    }

    pub fn stampede(mut self, stampede: Stampede) -> Self {
        self.0.stampede = stampede;
        self
    }

    /// Serve an expired value for this long while one background refresh
    /// runs.
    pub fn stale(mut self, stale: Duration) -> Self {
        self.0.lifecycle.stale = stale;
        self
    }

    /// When the load fails, answer with a value expired no longer than
    /// this ago.
    pub fn fail_safe(mut self, fail_safe: Duration) -> Self {
        self.0.lifecycle.fail_safe = fail_safe;
        self
    }

    /// Refresh early, in the background (XFetch, with this β).
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.0.lifecycle.early_refresh = Some(beta);
        self
    }

    /// With an expired value at hand, answer with it when the load takes
    /// longer than this, and let the load finish in the background.
    pub fn soft_timeout(mut self, after: Duration) -> Self {
        self.0.lifecycle.soft_timeout = Some(after);
        self
    }

    /// Spread each entry's ttl by up to this fraction.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.0.lifecycle.jitter = fraction;
        self
    }

    pub(crate) fn into_inner(self) -> crate::cache::Call<'a> {
        self.0
    }
}

const GENERIC_IMPL: &str = "this fn is in an impl with generic parameters and has no `self`: its default key cannot tell `Repo<A>` from `Repo<B>`, so it runs uncached. Give it a `key = \"...\"` that names the type, or a receiver";

/// The path of the cached fn whose body this is written in, computed once.
#[doc(hidden)]
#[macro_export]
macro_rules! __redcache_fn_path {
    () => {{
        fn __redcache_id() {}
        static ID: $crate::__private::FnId = $crate::__private::FnId::new();
        ID.get(&__redcache_id)
    }};
}

/// A key argument as [`Key::part`] takes it, chosen on its concrete type:
/// an [`IntPart`] for an integer (the text `Display` gives, written by
/// `itoa`), a [`ListPart`] for an `Option`, a `Vec` or a slice (any
/// [`KeyList`](crate::KeyList)), else an [`ArgPart`], which must be a
/// [`KeyArg`] (`Display`).
#[doc(hidden)]
#[macro_export]
macro_rules! __redcache_key_part {
    ($arg:expr) => {{
        #[allow(unused_imports)]
        use $crate::__private::parts::{ViaArg as _, ViaInt as _, ViaList as _};
        (&&&$crate::__private::parts::Arg(&$arg)).part()
    }};
}

/// The dispatch behind [`key_part!`]: the impl on `&&Arg<I>` for an
/// integer is tried first, then the one on `&Arg<L>` for a list, then the
/// one on any `Arg<T>` (autoref specialization). The
/// fallback has no bound, so a type that is neither is reported as "not
/// `KeyArg`", with its note, not as a missing method.
pub mod parts {
    use super::{ArgPart, IntPart, ListPart};
    use crate::{KeyArg, KeyList};

    /// A key argument, by reference.
    pub struct Arg<'a, T: ?Sized>(pub &'a T);

    /// An integer, tried first: rendered as `Display` would, without it.
    pub trait ViaInt<T> {
        fn part(&self) -> IntPart<T>;
    }

    impl<T: itoa::Integer + Copy> ViaInt<T> for &&Arg<'_, T> {
        fn part(&self) -> IntPart<T> {
            IntPart(*self.0)
        }
    }

    pub trait ViaList<'a, T: ?Sized> {
        fn part(&self) -> ListPart<'a, T>;
    }

    impl<'a, T: KeyList + ?Sized> ViaList<'a, T> for &Arg<'a, T> {
        fn part(&self) -> ListPart<'a, T> {
            ListPart(self.0)
        }
    }

    pub trait ViaArg<'a, T: ?Sized> {
        /// The bound is on the method, not the impl: the impl is always
        /// chosen, and a type that is no `KeyArg` gets `KeyArg`'s message.
        fn part(&self) -> ArgPart<'a>
        where
            T: KeyArg + Sized;
    }

    impl<'a, T: ?Sized> ViaArg<'a, T> for Arg<'a, T> {
        fn part(&self) -> ArgPart<'a>
        where
            T: KeyArg + Sized,
        {
            ArgPart(self.0)
        }
    }
}

/// How a fn returning `$ty` is cached, decided on the real type (a type
/// alias of `Result` or `Option` is a `Result` or an `Option`): a
/// [`ResultKind`], an [`OptionKind`] or a [`ValueKind`].
#[doc(hidden)]
#[macro_export]
macro_rules! __redcache_returns {
    ($ty:ty) => {{
        #[allow(unused_imports)]
        use $crate::__private::kind::{ViaResultOrOption as _, ViaValue as _};
        (&&$crate::__private::kind::Returns::<$ty>::new()).kind()
    }};
}

/// The dispatch behind [`returns!`]: method resolution tries the impls on
/// `&Returns<Result<..>>` and `&Returns<Option<..>>` before the one on any
/// `Returns<R>` (autoref specialization), on the concrete return type.
pub mod kind {
    use std::marker::PhantomData;

    use super::{OptionKind, ResultKind, ValueKind};

    /// The return type of a cached fn.
    pub struct Returns<R>(PhantomData<fn() -> R>);

    impl<R> Returns<R> {
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            Returns(PhantomData)
        }
    }

    /// `Result` and `Option`, chosen first.
    pub trait ViaResultOrOption {
        type Kind;
        fn kind(&self) -> Self::Kind;
    }

    impl<T, E> ViaResultOrOption for &Returns<Result<T, E>> {
        type Kind = ResultKind;
        fn kind(&self) -> ResultKind {
            ResultKind
        }
    }

    impl<T> ViaResultOrOption for &Returns<Option<T>> {
        type Kind = OptionKind;
        fn kind(&self) -> OptionKind {
            OptionKind { cache_none: false }
        }
    }

    /// Any other type.
    pub trait ViaValue {
        fn kind(&self) -> ValueKind;
    }

    impl<R> ViaValue for Returns<R> {
        fn kind(&self) -> ValueKind {
            ValueKind
        }
    }
}

/// A fn returning `Result<T, E>` (or an alias of it): `Ok` values are cached.
#[derive(Debug, Clone, Copy)]
pub struct ResultKind;

impl ResultKind {
    pub async fn cached<C, T, E, Fut>(self, cache: C, call: Call<'_>, load: Fut) -> Result<T, E>
    where
        C: AsRef<Cache>,
        T: Cacheable,
        Fut: Future<Output = Result<T, E>>,
    {
        cached_result(cache, call, load).await
    }

    /// `cached` for `early_refresh` and `stale`: the load may be finished
    /// in the background, after the call returned, so it must own what it
    /// uses (`Send + 'static`).
    pub async fn cached_refreshing<C, T, E, Fut>(
        self,
        cache: C,
        call: Call<'_>,
        load: Fut,
    ) -> Result<T, E>
    where
        C: AsRef<Cache>,
        T: Cacheable,
        E: Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let keep: fn(&T) -> bool = |_| true;
        cache
            .as_ref()
            .load_through_refreshing(call.0, keep, load)
            .await
    }
}

/// A fn returning `Option<T>` (or an alias of it): `Some` values are
/// cached, and `None` too after [`cache_none`].
#[derive(Debug, Clone, Copy)]
pub struct OptionKind {
    cache_none: bool,
}

impl OptionKind {
    pub async fn cached<C, T, Fut>(self, cache: C, call: Call<'_>, load: Fut) -> Option<T>
    where
        C: AsRef<Cache>,
        Option<T>: Cacheable,
        Fut: Future<Output = Option<T>>,
    {
        let keep: fn(&Option<T>) -> bool = if self.cache_none {
            |_| true
        } else {
            Option::is_some
        };
        cache.as_ref().load_infallible(call.0, keep, load).await
    }

    /// `cached` for `early_refresh` and `stale` (see
    /// [`ResultKind::cached_refreshing`]).
    pub async fn cached_refreshing<C, T, Fut>(
        self,
        cache: C,
        call: Call<'_>,
        load: Fut,
    ) -> Option<T>
    where
        C: AsRef<Cache>,
        Option<T>: Cacheable,
        T: Send + 'static,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        let keep: fn(&Option<T>) -> bool = if self.cache_none {
            |_| true
        } else {
            Option::is_some
        };
        cache
            .as_ref()
            .load_infallible_refreshing(call.0, keep, load)
            .await
    }
}

/// A fn returning any other type: every value is cached. Also a fn whose
/// return type is a type parameter, which may be a `Result` where it is
/// called: then its `Err`s are neither cached nor shared, as for
/// [`ResultKind`] (see `generic_result.rs`).
#[derive(Debug, Clone, Copy)]
pub struct ValueKind;

impl ValueKind {
    pub async fn cached<C, T, Fut>(self, cache: C, call: Call<'_>, load: Fut) -> T
    where
        C: AsRef<Cache>,
        T: Cacheable,
        Fut: Future<Output = T>,
    {
        let load = async { err_apart(load.await) };
        let (Ok(value) | Err(value)) = cache.as_ref().load_through(call.0, |_| true, load).await;
        value
    }

    /// `cached` for `early_refresh` and `stale` (see
    /// [`ResultKind::cached_refreshing`]).
    pub async fn cached_refreshing<C, T, Fut>(self, cache: C, call: Call<'_>, load: Fut) -> T
    where
        C: AsRef<Cache>,
        T: Cacheable,
        Fut: Future<Output = T> + Send + 'static,
    {
        let load = async { err_apart(load.await) };
        let (Ok(value) | Err(value)) = cache
            .as_ref()
            .load_through_refreshing(call.0, |_| true, load)
            .await;
        value
    }
}

/// A load as the engine takes it: fallible, failing only with the `Err`
/// of a generic return that is a `Result` (the whole value).
fn err_apart<T: serde::Serialize>(value: T) -> Result<T, T> {
    match is_generic_err(&value) {
        true => Err(value),
        false => Ok(value),
    }
}

/// Whether `value`, the return of a generic fn, is the `Err` of a `Result`
/// (which a writing fn does not write).
pub(crate) fn is_generic_err<T: serde::Serialize>(value: &T) -> bool {
    generic_result::is_result::<T>() && generic_result::is_err(value)
}

/// `cache_none = true`: only a fn returning an `Option` has a `None` to cache.
#[diagnostic::on_unimplemented(
    message = "`cache_none` applies only to a fn returning `Option<T>`",
    label = "this fn does not return an `Option`",
    note = "remove `cache_none`, or return an `Option<T>`"
)]
pub trait CachesNone {
    fn with_cache_none(self, cache_none: bool) -> Self;
}

impl CachesNone for OptionKind {
    fn with_cache_none(mut self, cache_none: bool) -> Self {
        self.cache_none = cache_none;
        self
    }
}

/// Sets `cache_none` on the kind of a fn, which must return an `Option`.
pub fn cache_none<K: CachesNone>(kind: K, cache_none: bool) -> K {
    kind.with_cache_none(cache_none)
}

/// A fn returning `Result<T, E>`: `Ok` values are cached.
pub async fn cached_result<C, T, E, Fut>(cache: C, call: Call<'_>, load: Fut) -> Result<T, E>
where
    C: AsRef<Cache>,
    T: Cacheable,
    Fut: Future<Output = Result<T, E>>,
{
    cache.as_ref().load_through(call.0, |_| true, load).await
}

/// The bound on the return type of a fn with a `hard_timeout`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot report a load timeout: `hard_timeout` needs a `Result<T, E>` with `E: From<redcache::LoadTimeout>`",
    label = "the timeout is returned as this type's error",
    note = "implement `From<redcache::LoadTimeout>` for the error type, or drop `hard_timeout`"
)]
pub trait TimesOut {
    fn timed_out(after: Duration) -> Self;
}

impl<T, E: From<crate::LoadTimeout>> TimesOut for Result<T, E> {
    fn timed_out(after: Duration) -> Self {
        Err(E::from(crate::LoadTimeout { after }))
    }
}

/// The fn's body, failing with `LoadTimeout` after `after`.
pub async fn hard_timeout<R: TimesOut>(after: Duration, body: impl Future<Output = R>) -> R {
    match tokio::time::timeout(after, body).await {
        Ok(result) => result,
        Err(_) => R::timed_out(after),
    }
}

/// One call of a `#[locked]` fn: its resource and lock options.
#[derive(Debug, Clone, Copy)]
pub struct LockCall<'a> {
    resource: &'a str,
    ttl: Option<Duration>,
    wait: Duration,
    auto_extend: bool,
}

impl<'a> LockCall<'a> {
    pub fn new(resource: &'a str) -> Self {
        LockCall {
            resource,
            ttl: None,
            wait: Duration::ZERO,
            auto_extend: false,
        }
    }

    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    pub fn auto_extend(mut self) -> Self {
        self.auto_extend = true;
        self
    }
}

/// What a `#[locked]` fn returns: a `Result` whose error can hold the
/// refusal.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot report that the lock was not taken: `#[locked]` needs a fn returning `Result<T, E>` with `E: From<redcache::Locked>`",
    label = "the refusal is returned as this type",
    note = "return a `Result<T, E>` and implement `From<redcache::Locked>` for `E` (e.g. a variant holding it)"
)]
pub trait Lockable {
    fn not_locked(locked: crate::Locked) -> Self;
}

/// The bound on the error type of a `#[locked]` fn.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a lock refusal: `#[locked]` needs `{Self}: From<redcache::Locked>`",
    label = "the refusal is returned as this error type",
    note = "implement `From<redcache::Locked>` for `{Self}` (e.g. a variant holding it)"
)]
pub trait FromLocked: From<crate::Locked> {}

impl<E: From<crate::Locked>> FromLocked for E {}

impl<T, E: FromLocked> Lockable for Result<T, E> {
    fn not_locked(locked: crate::Locked) -> Self {
        Err(E::from(locked))
    }
}

/// Runs `body` under the lock of `call`, then releases it (also if the
/// body panics or the call is cancelled: the guard is dropped); without
/// the lock, returns the refusal as the fn's error.
pub async fn locked<C, R, Fut>(cache: C, call: LockCall<'_>, body: Fut) -> R
where
    C: AsRef<Cache>,
    R: Lockable,
    Fut: Future<Output = R>,
{
    let mut options = cache.as_ref().lock(call.resource).wait(call.wait);
    if let Some(ttl) = call.ttl {
        options = options.ttl(ttl);
    }
    if call.auto_extend {
        options = options.auto_extend();
    }
    let guard = match options.acquire().await {
        Ok(guard) => guard,
        Err(locked) => return R::not_locked(locked),
    };
    let result = body.await;
    if let Err(error) = guard.release().await {
        tracing::warn!(target: "redcache", resource = call.resource, %error,
            "the lock of a #[locked] fn was not held to the end of its body (give it a longer ttl, or auto_extend)");
    }
    result
}

/// The bound on the error type of a rate-limited fn.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a rate-limit refusal: `#[rate_limited]` needs `{Self}: From<redcache::RateLimited>`",
    label = "the refusal is returned as this error type",
    note = "implement `From<redcache::RateLimited>` for `{Self}` (e.g. a variant holding it, which can render a 429)"
)]
pub trait FromRateLimited: From<RateLimited> {}

impl<E: From<RateLimited>> FromRateLimited for E {}

/// The limits of one rate-limited fn.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a>(Request<'a>);

impl<'a> Limits<'a> {
    pub fn new(name: &'a str, key: &'a str, policies: &'a [Policy]) -> Self {
        Limits(Request {
            name,
            key,
            policies,
            cost: 1,
            on_error: OnError::default(),
        })
    }

    /// The weight of the call: any unsigned integer (`body.len()` is a
    /// `usize`); a negative or unrepresentable one is a cost no policy
    /// admits.
    pub fn cost(mut self, cost: impl TryInto<u64>) -> Self {
        self.0.cost = cost.try_into().unwrap_or(u64::MAX);
        self
    }

    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.0.on_error = on_error;
        self
    }
}

/// What a rate-limited fn returns: a `Result` (or an alias of one) whose
/// error can hold the refusal.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a rate-limit refusal: `#[rate_limited]` needs a fn returning `Result<T, E>` with `E: From<redcache::RateLimited>`",
    label = "the refusal is returned as this type",
    note = "return a `Result<T, E>` and implement `From<redcache::RateLimited>` for `E` (e.g. a variant holding it, which can render a 429)"
)]
pub trait Refusable {
    fn refused(limited: RateLimited) -> Self;
}

impl<T, E: FromRateLimited> Refusable for Result<T, E> {
    fn refused(limited: RateLimited) -> Self {
        Err(E::from(limited))
    }
}

/// Runs `body` if every policy has room, after taking from each; else
/// returns the refusal as the fn's error.
pub async fn rate_limited<C, R, Fut>(cache: C, limits: Limits<'_>, body: Fut) -> R
where
    C: AsRef<Cache>,
    R: Refusable,
    Fut: Future<Output = R>,
{
    match cache.as_ref().rates.check(limits.0, Mode::Consume).await {
        // The body can read the status of its own check (for the RateLimit
        // header fields of a 200) with `redcache::rate_status()`.
        Ok(status) => crate::limiter::CURRENT_STATUS.scope(status, body).await,
        Err(limited) => R::refused(limited),
    }
}

/// The arguments the Redis backend passes to `scripts/rate_limit.lua`
/// (after the keys, one per policy) for a call of `cost`: for tests and
/// benchmarks that run the script themselves.
pub fn rate_limit_script_args(policies: &[Policy], cost: u64, peek: bool) -> Vec<String> {
    let request = Request {
        name: "",
        key: "",
        policies,
        cost,
        on_error: OnError::default(),
    };
    let mode = if peek { "peek" } else { "consume" };
    std::iter::once(mode.to_string())
        .chain(std::iter::once(cost.to_string()))
        .chain(request.script_args().iter().map(u64::to_string))
        .collect()
}

/// The embedded backend's rate-limit state and arithmetic, at a time the
/// caller gives: for tests that compare it with the script on one trace.
/// No engine in front (no remembered denials, no capacity check), and no
/// state is dropped for its expiry (the test keeps the Redis keys too).
pub struct RateModel {
    store: crate::ratelimit::memory::RateStore,
}

impl Default for RateModel {
    fn default() -> Self {
        RateModel {
            store: crate::ratelimit::memory::RateStore::keeping_expired(),
        }
    }
}

impl RateModel {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks a call of `cost` at `now_us` against `policies` (state keys:
    /// the policies' indexes), as the script would: per policy, `[allowed
    /// (0 or 1), remaining, retry_after_us, reset_after_us]`.
    pub fn check(&self, policies: &[Policy], cost: u64, peek: bool, now_us: u64) -> Vec<[u64; 4]> {
        let keys: Vec<String> = (0..policies.len()).map(|i| i.to_string()).collect();
        let mode = if peek { Mode::Peek } else { Mode::Consume };
        self.store
            .check(&keys, policies, cost, mode, now_us)
            .into_iter()
            .map(|v| {
                [
                    u64::from(v.allowed),
                    v.remaining,
                    v.retry_after_us,
                    v.reset_after_us,
                ]
            })
            .collect()
    }
}
