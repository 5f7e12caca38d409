#[redcache::cached(ttl = 60, ttl = 30)]
async fn a(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 60, tag = "a", tags = ["b"])]
async fn b(id: u64) -> u64 {
    id
}

fn main() {}
