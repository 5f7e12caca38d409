// `cache = ` takes a Cache; the error points at the expression.
struct Config {
    url: String,
}

#[redcache::cached(ttl = 60, key = "user:<id>", cache = CONFIG.url)]
async fn user(id: u64) -> String {
    id.to_string()
}

static CONFIG: Config = Config { url: String::new() };

fn main() {}
