#[redcache::cached(ttl = "5 years")]
async fn a(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 1.5)]
async fn b(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = SOME_CONST)]
async fn c(id: u64) -> u64 {
    id
}

fn main() {}
