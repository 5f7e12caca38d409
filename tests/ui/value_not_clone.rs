// A value the near cache cannot hand out a copy of: the message says to
// derive `Clone` or to cache an `Arc<T>`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    rows: Vec<u64>,
}

#[redcache::cached(ttl = 60)]
async fn report(id: u64) -> Result<Report, std::io::Error> {
    Ok(Report { rows: vec![id] })
}

fn main() {}
