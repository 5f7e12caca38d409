#[redcache::cached(ttl = 60, stampede = "global")]
async fn get_product(id: u64) -> u64 {
    id
}

fn main() {}
