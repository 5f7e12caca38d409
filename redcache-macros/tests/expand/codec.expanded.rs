/// A large page, written as MessagePack whatever the cache's codec.
pub async fn page(slug: String) -> Result<Page, DbError> {
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit("page:")
        .part(::redcache::__private::key_part!(slug))
        .finish();
    ::redcache::__private::returns!(Result < Page, DbError >)
        .cached(
            __redcache_cache,
            ::redcache::__private::Call::new(
                    "page:<slug>",
                    &__redcache_key,
                    ::redcache::__private::Duration::from_secs(600),
                )
                .codec(::redcache::__private::codecs::MSGPACK),
            async move { db::load_page(&slug).await },
        )
        .await
}
