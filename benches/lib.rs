//! The benchmarks live in `benches/`; run them with `cargo bench -p redcache-benches`.
