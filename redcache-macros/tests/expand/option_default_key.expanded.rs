async fn find_user(email: &str, active: bool) -> Option<User> {
    let __redcache_fn = ::redcache::__private::fn_path!();
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit(__redcache_fn.as_str())
        .lit(":")
        .part(::redcache::__private::key_part!(email))
        .lit(":")
        .part(::redcache::__private::key_part!(active))
        .finish();
    ::redcache::__private::cache_none(
            ::redcache::__private::returns!(Option < User >),
            true,
        )
        .cached(
            __redcache_cache,
            ::redcache::__private::Call::new(
                    __redcache_fn.as_str(),
                    &__redcache_key,
                    ::redcache::__private::Duration::from_secs(90),
                )
                .fn_path(__redcache_fn),
            async move { db::find_user(email, active).await },
        )
        .await
}
