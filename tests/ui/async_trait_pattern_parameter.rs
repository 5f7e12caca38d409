use async_trait::async_trait;

#[async_trait]
trait Geometry {
    async fn area(&self, size: (u64, u64)) -> u64;
}

struct Plane;

#[async_trait]
impl Geometry for Plane {
    #[redcache::cached(ttl = 60, key = "area:<w>:<h>")]
    async fn area(&self, (w, h): (u64, u64)) -> u64 {
        w * h
    }
}

fn main() {}
