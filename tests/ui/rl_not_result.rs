#[redcache::rate_limited(limit = 10, window = "1s")]
async fn search(id: u64) -> u64 {
    id
}

fn main() {}
