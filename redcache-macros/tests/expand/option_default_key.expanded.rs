async fn find_user(email: &str, active: bool) -> Option<User> {
    let __redcache_key = ::redcache::__private::Key::new()
        .lit(::core::concat!(::core::module_path!(), "::find_user"))
        .lit(":")
        .arg(&email)
        .lit(":")
        .arg(&active)
        .finish();
    ::redcache::__private::cached_option(
            ::redcache::__private::global(),
            ::redcache::__private::Call::new(
                ::core::concat!(::core::module_path!(), "::find_user"),
                &__redcache_key,
                ::redcache::__private::Duration::from_secs(90),
            ),
            true,
            async move { db::find_user(email, active).await },
        )
        .await
}
