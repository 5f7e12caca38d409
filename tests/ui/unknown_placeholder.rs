#[redcache::cached(ttl = 60, key = "product:<idd>")]
async fn get_product(id: u64, category_id: u64) -> u64 {
    id + category_id
}

#[redcache::cached(ttl = 60, key = "product:<id>", tags = ["category:<category>"])]
async fn get_price(id: u64, category_id: u64) -> u64 {
    id + category_id
}

fn main() {}
