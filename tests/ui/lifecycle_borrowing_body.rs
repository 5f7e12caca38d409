struct Repo {
    cache: redcache::Cache,
}

impl Repo {
    // The refresh outlives the call: a body that borrows `self` cannot be one.
    #[redcache::cached(ttl = 60, stale = "10m", key = "name:<id>", cache = self.cache)]
    async fn name(&self, id: u64) -> String {
        format!("{id}: {:?}", self.cache.stats().hits)
    }
}

fn main() {}
