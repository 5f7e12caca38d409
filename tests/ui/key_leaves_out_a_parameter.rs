// Calls that differ only in `lang` would share one entry.
#[redcache::cached(ttl = 60, key = "greeting:<name>")]
async fn greeting(name: String, lang: String) -> String {
    format!("{lang}: hello {name}")
}

// `ignore` names a parameter that does not exist, or one the key uses.
#[redcache::cached(ttl = 60, key = "user:<id>", ignore = [db, id])]
async fn user(id: u64, trace: u64) -> String {
    format!("{id} {trace}")
}

fn main() {}
