// A `#[locked]` fn whose error cannot hold the refusal: the message says
// to implement `From<redcache::Locked>`, at the error type.
#[derive(Debug)]
struct JobError;

#[redcache::locked(key = "job:<name>", ttl = "30s")]
async fn run(name: String) -> Result<(), JobError> {
    Ok(())
}

// Not a `Result` at all.
#[redcache::locked(key = "job:<name>")]
async fn count(name: String) -> u64 {
    7
}

fn main() {}
