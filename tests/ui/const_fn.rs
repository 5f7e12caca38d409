#[redcache::cached(ttl = 60)]
const fn get_product(id: u64) -> u64 {
    id
}

fn main() {}
