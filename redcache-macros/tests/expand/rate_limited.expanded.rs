async fn search(user_id: u64, q: &str) -> Result<Vec<Hit>, ApiError> {
    let __redcache_fn = ::redcache::__private::fn_path!();
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit("user:")
        .part(::redcache::__private::key_part!(user_id))
        .finish();
    ::redcache::__private::rate_limited(
            __redcache_cache,
            ::redcache::__private::Limits::new(
                __redcache_fn.as_str(),
                &__redcache_key,
                &[
                    ::redcache::__private::Policy::new(
                        100,
                        ::redcache::__private::Duration::from_secs(60),
                    ),
                ],
            ),
            async move { index::search(q).await },
        )
        .await
}
async fn upload(user_id: u64, files: Vec<File>) -> Result<(), ApiError> {
    let __redcache_fn = ::redcache::__private::fn_path!();
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit("user:")
        .part(::redcache::__private::key_part!(user_id))
        .finish();
    ::redcache::__private::rate_limited(
            __redcache_cache,
            ::redcache::__private::Limits::new(
                    __redcache_fn.as_str(),
                    &__redcache_key,
                    &[
                        ::redcache::__private::Policy::new(
                            10,
                            ::redcache::__private::Duration::from_secs(1),
                        ),
                        ::redcache::__private::Policy::new(
                                1000,
                                ::redcache::__private::Duration::from_secs(3600),
                            )
                            .algorithm(::redcache::__private::Algorithm::Gcra)
                            .burst(50),
                    ],
                )
                .cost(files.len() as u64)
                .on_error(::redcache::__private::OnError::Deny),
            async move { storage::put(files).await },
        )
        .await
}
async fn report(id: u64) -> Result<Report, ApiError> {
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit("report:")
        .part(::redcache::__private::key_part!(id))
        .finish();
    ::redcache::__private::returns!(Result < Report, ApiError >)
        .cached(
            __redcache_cache,
            ::redcache::__private::Call::new(
                "report:<id>",
                &__redcache_key,
                ::redcache::__private::Duration::from_secs(300),
            ),
            async move {
                let __redcache_fn = ::redcache::__private::fn_path!();
                let __redcache_cache = ::redcache::__private::global();
                ::redcache::__private::rate_limited(
                        __redcache_cache,
                        ::redcache::__private::Limits::new(
                            __redcache_fn.as_str(),
                            "",
                            &[
                                ::redcache::__private::Policy::new(
                                    5,
                                    ::redcache::__private::Duration::from_secs(60),
                                ),
                            ],
                        ),
                        async move { reports::build(id).await },
                    )
                    .await
            },
        )
        .await
}
