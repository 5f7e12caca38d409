#[redcache::cached(tll = 60, key = "p:<nope>", stampede = "sometimes")]
fn get_product(id: u64) -> u64 {
    id
}

fn main() {}
