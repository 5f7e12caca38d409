#[derive(Debug)]
struct ApiError;
impl From<redcache::RateLimited> for ApiError {
    fn from(_: redcache::RateLimited) -> Self {
        ApiError
    }
}

#[redcache::rate_limited(key = "user:<id>")]
async fn search(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
