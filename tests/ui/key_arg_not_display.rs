pub struct Filter {
    pub min_price: u64,
}

#[redcache::cached(ttl = 60)]
async fn count(filter: Filter) -> u64 {
    filter.min_price
}

fn main() {}
