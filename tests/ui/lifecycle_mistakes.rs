// A return type that cannot carry a `LoadTimeout`.
#[redcache::cached(ttl = 60, hard_timeout = "2s")]
async fn slow(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = 60, jitter = "150%", early_refresh = 0.0, stale = "0s", load_timeout = "1s")]
async fn bad_values(id: u64) -> u64 {
    id
}


// A soft timeout with no expired value to answer with.
#[redcache::cached(ttl = 60, timeout = "100ms")]
async fn soft_without_fail_safe(id: u64) -> u64 {
    id
}

fn main() {}
