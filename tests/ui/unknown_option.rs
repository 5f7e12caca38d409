#[redcache::cached(ttl = 60, expire = 60)]
async fn a(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 60, size = 100)]
async fn b(id: u64) -> u64 {
    id
}

fn main() {}
