fn main() {
    let id = 1;
    let _ = redcache::key!("product:<id>", unused = 2);
    let _ = redcache::key!("product:<id");
    let _ = redcache::key!(product);
}
