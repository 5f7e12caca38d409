#[derive(Debug)]
struct ApiError;

#[redcache::rate_limited(limit = 10, window = "1s")]
async fn search(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
