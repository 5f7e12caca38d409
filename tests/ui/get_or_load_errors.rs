async fn load(id: u64) -> Result<u64, std::io::Error> {
    let missing_key = redcache::get_or_load!(ttl = 60, async { Ok::<_, std::io::Error>(id) }).await;
    let missing_ttl = redcache::get_or_load!(key = "k:<id>", async { Ok::<_, std::io::Error>(id) }).await;
    let no_future = redcache::get_or_load!(ttl = 60, key = "k:<id>").await;
    let none = redcache::get_or_load!(ttl = 60, key = "k:<id>", cache_none = true, async { Ok::<_, std::io::Error>(id) }).await;
    missing_key
}

fn main() {}
