impl Catalog {
    async fn price(&self, item: &Item) -> Money {
        let __redcache_key = ::redcache::__private::Key::new()
            .lit("price:")
            .arg(&item.sku)
            .finish();
        ::redcache::__private::cached_value(
                &(self.cache),
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
        let __redcache_key = ::redcache::__private::Key::new()
            .lit(::core::any::type_name::<Self>())
            .lit("::stock")
            .lit(":")
            .arg(&sku)
            .finish();
        ::redcache::__private::cached_value(
                &(self.cache),
                ::redcache::__private::Call::new(
                    ::core::concat!(::core::module_path!(), "::stock"),
                    &__redcache_key,
                    ::redcache::__private::Duration::from_secs(3600),
                ),
                async move { self.inventory.count(sku).await },
            )
            .await
    }
}
