#[redcache::cached(ttl = 60, cache_none = true)]
async fn get_product(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {}
