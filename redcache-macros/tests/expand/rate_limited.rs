#[rate_limited(limit = 100, window = "60s", key = "user:<user_id>")]
async fn search(user_id: u64, q: &str) -> Result<Vec<Hit>, ApiError> {
    index::search(q).await
}

#[rate_limited(limit = 10, window = "1s", key = "user:<user_id>", cost = files.len() as u64)]
#[rate_limited(limit = 1000, window = "1h", algorithm = "gcra", burst = 50, on_error = "deny")]
async fn upload(user_id: u64, files: Vec<File>) -> Result<(), ApiError> {
    storage::put(files).await
}

#[cached(ttl = 300, key = "report:<id>")]
#[rate_limited(limit = 5, window = "1m")]
async fn report(id: u64) -> Result<Report, ApiError> {
    reports::build(id).await
}
