#[redcache::cached(ttl = 60)]
async fn touch(id: u64) {
    let _ = id;
}

fn main() {}
