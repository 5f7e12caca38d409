// A codec that is not one of ours, one that is not a string, and the
// names users guess for the option.

#[redcache::cached(ttl = 60, key = "a:<id>", codec = "bincode")]
async fn a(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[redcache::cached(ttl = 60, key = "b:<id>", codec = msgpack)]
async fn b(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[redcache::cached(ttl = 60, key = "c:<id>", serializer = "msgpack")]
async fn c(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[redcache::cached(ttl = 60, key = "d:<id>", compression = "zstd")]
async fn d(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[redcache::rate_limited(limit = 5, window = "1s", key = "e:<id>", codec = "json")]
async fn e(id: u64) -> Result<u64, redcache::RateLimited> {
    Ok(id)
}

fn main() {}
