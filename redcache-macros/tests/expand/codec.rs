/// A large page, written as MessagePack whatever the cache's codec.
#[cached(ttl = "10m", key = "page:<slug>", codec = "msgpack")]
pub async fn page(slug: String) -> Result<Page, DbError> {
    db::load_page(&slug).await
}
