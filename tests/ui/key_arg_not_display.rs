#[redcache::cached(ttl = 60)]
async fn total(ids: Vec<u64>) -> u64 {
    ids.iter().sum()
}

fn main() {}
