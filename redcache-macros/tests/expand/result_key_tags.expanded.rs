/// A product, cached for five minutes under its id, tagged by category.
pub async fn get_product(id: u64, category_id: u64) -> Result<Product, DbError> {
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit("product:")
        .part(::redcache::__private::key_part!(id))
        .finish();
    let __redcache_tags = [
        ::redcache::__private::Key::new()
            .lit("category:")
            .part(::redcache::__private::key_part!(category_id))
            .finish(),
    ];
    ::redcache::__private::returns!(Result < Product, DbError >)
        .cached(
            __redcache_cache,
            ::redcache::__private::Call::new(
                    "product:<id>",
                    &__redcache_key,
                    ::redcache::__private::Duration::from_secs(300),
                )
                .tags(&__redcache_tags),
            async move { db::load_product(id).await },
        )
        .await
}
