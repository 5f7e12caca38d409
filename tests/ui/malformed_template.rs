#[redcache::cached(ttl = 60, key = "product:<id")]
async fn a(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 60, key = "product:<>")]
async fn b(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 60, key = "")]
async fn c(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 60, key = product)]
async fn d(id: u64) -> u64 {
    id
}

fn main() {}
