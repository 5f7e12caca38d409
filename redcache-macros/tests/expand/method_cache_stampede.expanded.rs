impl Catalog {
    async fn price(&self, item: &Item) -> Money {
        let __redcache_cache = ::redcache::__private::handle(&(self.cache));
        let __redcache_key = ::redcache::__private::Key::new()
            .lit("price:")
            .part(::redcache::__private::key_part!(item.sku))
            .finish();
        ::redcache::__private::returns!(Money)
            .cached(
                __redcache_cache,
                ::redcache::__private::Call::new(
                        "price:<item.sku>",
                        &__redcache_key,
                        ::redcache::__private::Duration::from_millis(500),
                    )
                    .stampede(::redcache::__private::Stampede::Local),
                async move { self.pricing.quote(item).await },
            )
            .await
    }
    async fn stock(&self, sku: Sku) -> u32 {
        let __redcache_fn = ::redcache::__private::fn_path!();
        let __redcache_cache = ::redcache::__private::handle(&(self.cache));
        let __redcache_key = ::redcache::__private::Key::new()
            .lit(&__redcache_fn.with_self(::core::any::type_name::<Self>()))
            .lit(":")
            .part(::redcache::__private::key_part!(sku))
            .finish();
        ::redcache::__private::returns!(u32)
            .cached(
                __redcache_cache,
                ::redcache::__private::Call::new(
                    __redcache_fn.as_str(),
                    &__redcache_key,
                    ::redcache::__private::Duration::from_secs(3600),
                ),
                async move { self.inventory.count(sku).await },
            )
            .await
    }
}
