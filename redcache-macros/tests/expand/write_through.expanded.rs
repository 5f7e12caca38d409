async fn save(product: Product) -> Result<Product, DbError> {
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit("product:")
        .part(::redcache::__private::key_part!(product.id))
        .finish();
    let __redcache_tags = [
        ::redcache::__private::Key::new()
            .lit("category:")
            .part(::redcache::__private::key_part!(product.category))
            .finish(),
    ];
    ::redcache::__private::writes!(Result < Product, DbError >)
        .put(
            __redcache_cache,
            ::redcache::__private::Call::new(
                    "product:<product.id>",
                    &__redcache_key,
                    ::redcache::__private::Duration::from_secs(300),
                )
                .tags(&__redcache_tags),
            async move {
                db::update(&product).await?;
                Ok(product)
            },
        )
        .await
}
async fn delete(id: u64, category: u64) -> Result<(), DbError> {
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_tags: [::std::string::String; 1] = [
        ::redcache::__private::Key::new()
            .lit("category:")
            .part(::redcache::__private::key_part!(category))
            .finish(),
    ];
    let __redcache_keys: [::std::string::String; 1] = [
        ::redcache::__private::Key::new()
            .lit("product:")
            .part(::redcache::__private::key_part!(id))
            .finish(),
    ];
    ::redcache::__private::writes!(Result < (), DbError >)
        .invalidate(
            __redcache_cache,
            ::redcache::__private::Invalidation::new(&__redcache_tags, &__redcache_keys),
            async move { db::delete(id).await },
        )
        .await
}
async fn rename(product: Product) -> Result<Product, DbError> {
    let __redcache_cache = ::redcache::__private::global();
    let __redcache_key = ::redcache::__private::Key::new()
        .lit("product:")
        .part(::redcache::__private::key_part!(product.id))
        .finish();
    ::redcache::__private::writes!(Result < Product, DbError >)
        .put(
            __redcache_cache,
            ::redcache::__private::Call::new(
                "product:<product.id>",
                &__redcache_key,
                ::redcache::__private::Duration::from_secs(300),
            ),
            async move {
                let __redcache_cache = ::redcache::__private::global();
                let __redcache_tags: [::std::string::String; 1] = [
                    ::redcache::__private::Key::new()
                        .lit("lists:")
                        .part(::redcache::__private::key_part!(product.category))
                        .finish(),
                ];
                let __redcache_keys: [::std::string::String; 0] = [];
                ::redcache::__private::writes!(Result < Product, DbError >)
                    .invalidate(
                        __redcache_cache,
                        ::redcache::__private::Invalidation::new(
                            &__redcache_tags,
                            &__redcache_keys,
                        ),
                        async move {
                            db::update(&product).await?;
                            Ok(product)
                        },
                    )
                    .await
            },
        )
        .await
}
