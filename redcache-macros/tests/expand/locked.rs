#[locked(key = "job:<name>", ttl = "30s", wait = "5s")]
async fn nightly(name: String) -> Result<(), JobError> {
    jobs::run(&name).await
}

#[locked(ttl = "10m", auto_extend = true, cache = self.cache)]
async fn rebuild_index(&self) -> Result<(), JobError> {
    self.index.rebuild().await
}
