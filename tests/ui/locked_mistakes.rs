// `#[locked]` mistakes, each reported at its token.
#[derive(Debug)]
struct JobError;

impl From<redcache::Locked> for JobError {
    fn from(_: redcache::Locked) -> Self {
        JobError
    }
}

// A zero ttl, an unknown option, a wait that is no duration.
#[redcache::locked(key = "job:<name>", ttl = 0, timeout = "5s", wait = "soon")]
async fn run(name: String) -> Result<(), JobError> {
    Ok(())
}

// A key that names no parameter.
#[redcache::locked(key = "job:<id>")]
async fn report(name: String) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
