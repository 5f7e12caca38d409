#[derive(Debug)]
struct ApiError;
impl From<redcache::RateLimited> for ApiError {
    fn from(_: redcache::RateLimited) -> Self {
        ApiError
    }
}

// Above 2^53 the rate-limit script cannot count exactly; past 100 years its
// times stop being exact.
#[redcache::rate_limited(limit = 9007199254740993, window = "36526d")]
async fn a(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

// GCRA: an interval (window / limit) under a nanosecond.
#[redcache::rate_limited(limit = 2000000, window = "1ms", algorithm = "gcra")]
async fn b(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

// GCRA: a burst that would take over 100 years to earn back, and one above 2^53.
#[redcache::rate_limited(limit = 1, window = "36525d", algorithm = "gcra", burst = 2)]
#[redcache::rate_limited(limit = 10, window = "1s", algorithm = "gcra", burst = 9007199254740993)]
async fn c(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

// At the bounds: accepted (no error below for these).
#[redcache::rate_limited(limit = 9007199254740992, window = "36525d")]
#[redcache::rate_limited(limit = 1000000, window = "1ms", algorithm = "gcra")]
async fn d(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
