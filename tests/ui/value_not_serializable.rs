struct Product {
    id: u64,
}

#[redcache::cached(ttl = 60)]
async fn get_product(id: u64) -> Result<Product, std::io::Error> {
    Ok(Product { id })
}

fn main() {}
