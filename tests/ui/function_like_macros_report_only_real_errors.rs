// Several mistakes in one `key!` or `get_or_load!` are each reported, and
// nothing else: no "missing angle brackets", no E0223, no error from the
// caller's `.await?` on what the macro stands in for.
async fn f() -> Result<u64, std::io::Error> {
    let id = 1;
    let _ = redcache::key!("product:<id>", unused = 2, other = 3);
    let v: u64 = redcache::get_or_load!(key = "k:<id>", tags = [1], async { Ok::<_, std::io::Error>(id) }).await?;
    Ok(v)
}

fn main() {
    let _ = f();
}
