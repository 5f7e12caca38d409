#[derive(Debug)]
struct ApiError;
impl From<redcache::RateLimited> for ApiError {
    fn from(_: redcache::RateLimited) -> Self {
        ApiError
    }
}

#[redcache::rate_limited(limit = 10, window = "1s", key = "user:<id>")]
#[redcache::rate_limited(limit = 1000, window = "1h", key = "global")]
async fn search(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

#[redcache::rate_limited(limit = 10, window = "1s")]
#[redcache::rate_limited(window = "1h")]
async fn upload(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
