#[redcache::cached(ttl = "5 years")]
async fn a(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 1.5)]
async fn b(id: u64) -> u64 {
    id
}

// A constant works when it is a Duration or whole seconds; not a float.
const HALF_A_SECOND: f64 = 0.5;

#[redcache::cached(ttl = HALF_A_SECOND)]
async fn c(id: u64) -> u64 {
    id
}

fn main() {}
