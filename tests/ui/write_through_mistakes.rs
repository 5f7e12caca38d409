#[derive(serde::Serialize)]
struct Product {
    id: u64,
}

#[redcache::cache_put(ttl = 300)]
async fn save_without_key(product: Product) -> Product {
    product
}

#[redcache::cache_put(ttl = 300, key = "product:<product.id>", stampede = "off")]
async fn save_with_a_read_option(product: Product) -> Product {
    product
}

#[redcache::invalidates(cache = redcache::global())]
async fn invalidates_nothing(id: u64) -> u64 {
    id
}

#[redcache::invalidates(keys = ["product:<product_id>"], ttl = 60)]
async fn unknown_placeholder(id: u64) -> u64 {
    id
}

struct NotSerializable;

#[redcache::cache_put(ttl = 300, key = "thing:<id>")]
async fn value_not_serializable(id: u64) -> Option<NotSerializable> {
    let _ = id;
    None
}

fn main() {}
