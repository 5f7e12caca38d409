impl Catalog {
    #[cached(ttl = "500ms", key = "price:<item.sku>", cache = self.cache, stampede = "local")]
    async fn price(&self, item: &Item) -> Money {
        self.pricing.quote(item).await
    }

    #[cached(ttl = "1h", cache = self.cache)]
    async fn stock(&self, sku: Sku) -> u32 {
        self.inventory.count(sku).await
    }
}
