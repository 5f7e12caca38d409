// ("a", "b-c") and ("a-b", "c") would both render `a-b-c`.
#[redcache::cached(ttl = 60, key = "pair:<a>-<b>")]
async fn pair(a: String, b: String) -> String {
    a + &b
}

#[redcache::cached(ttl = 60, key = "pair:<a><b>")]
async fn glued(a: String, b: String) -> String {
    a + &b
}

fn main() {}
