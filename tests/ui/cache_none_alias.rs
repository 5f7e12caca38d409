// `cache_none` is checked on the real return type: an alias of `Option`
// takes it, an alias of `Result` does not.
type Maybe = Option<u32>;
type Fallible = Result<u32, String>;

#[redcache::cached(ttl = 60, key = "a:<x>", cache_none = true)]
async fn a(x: u32) -> Maybe {
    Some(x)
}

#[redcache::cached(ttl = 60, key = "b:<x>", cache_none = true)]
async fn b(x: u32) -> Fallible {
    Ok(x)
}

fn main() {}
