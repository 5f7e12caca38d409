#[derive(Debug)]
struct ApiError;
impl From<redcache::RateLimited> for ApiError {
    fn from(_: redcache::RateLimited) -> Self {
        ApiError
    }
}

#[redcache::rate_limited(limit = 0, window = "0s", algorithm = "leaky_bucket", on_error = "retry")]
async fn a(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

#[redcache::rate_limited(limit = 10, window = "1s", burst = 5)]
async fn b(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

#[redcache::rate_limited(limit = 10, window = "1s", ttl = 60, rate = 5, key = "u:<user>")]
async fn c(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
