// A return type that cannot carry a `LoadTimeout`.
#[redcache::cached(ttl = 60, hard_timeout = "2s")]
async fn slow(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 60, jitter = "150%", early_refresh = 0.0, stale = "0s", timeout = "1s")]
async fn bad_values(id: u64) -> u64 {
    id
}

fn main() {}
