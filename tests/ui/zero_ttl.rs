#[redcache::cached(ttl = 0)]
async fn get_product(id: u64) -> u64 {
    id
}

#[redcache::cached(ttl = "0s")]
async fn get_price(id: u64) -> u64 {
    id
}

fn main() {}
