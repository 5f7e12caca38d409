#[cached(ttl = "90s", cache_none = true)]
async fn find_user(email: &str, active: bool) -> Option<User> {
    db::find_user(email, active).await
}
