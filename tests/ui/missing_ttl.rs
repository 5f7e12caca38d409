#[redcache::cached(key = "product:<id>")]
async fn get_product(id: u64) -> Result<String, std::io::Error> {
    Ok(id.to_string())
}

fn main() {}
