// `{id}` as cashews and format! write it would be taken literally, and
// every call would share one key.
#[redcache::cached(ttl = 60, key = "user:{id}")]
async fn user(id: u64) -> String {
    id.to_string()
}

fn main() {}
