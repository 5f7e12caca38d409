//! Drives `examples/axum_service.rs` as a user would: the example binary
//! runs on a free port against a redis-server of this test's own, and a
//! real HTTP client calls it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use redcache_suite::RedisServer;

/// The example process, killed when dropped.
struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cargo test` builds the examples next to the test binaries' folder.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let binary = deps.parent().unwrap().join("examples").join("axum_service");
    assert!(
        binary.exists(),
        "{} not built: run `cargo test --workspace` (it builds the examples)",
        binary.display()
    );
    binary
}

fn start(redis_url: &str) -> Service {
    let mut child = Command::new(example_binary())
        .env("REDIS_URL", redis_url)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    Service {
        child,
        base: address,
    }
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, Option<String>, ureq::http::HeaderMap) {
    let response = agent.get(url).call().expect("request");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_string());
    (status, cache, response.headers().clone())
}

#[test]
fn cached_products_invalidation_and_rate_limits_over_http() {
    let redis = RedisServer::start();
    let service = start(&redis.url());
    let agent = client();
    let product =
        |id: u32, category: u32| format!("{}/products/{id}?category={category}", service.base);

    assert_eq!(get(&agent, &product(42, 7)).1.as_deref(), Some("miss"));
    assert_eq!(get(&agent, &product(42, 7)).1.as_deref(), Some("hit"));
    assert_eq!(get(&agent, &product(43, 8)).1.as_deref(), Some("miss"));
    let mut body = agent.get(product(42, 7)).call().unwrap();
    let text = body.body_mut().read_to_string().unwrap();
    assert_eq!(text, r#"{"id":42,"category":7,"name":"desk lamp #42"}"#);

    let invalidated = agent
        .post(format!("{}/admin/categories/7/invalidate", service.base))
        .send_empty()
        .unwrap();
    assert_eq!(invalidated.status().as_u16(), 204);
    assert_eq!(
        get(&agent, &product(42, 7)).1.as_deref(),
        Some("miss"),
        "category 7 was invalidated"
    );
    assert_eq!(
        get(&agent, &product(43, 8)).1.as_deref(),
        Some("hit"),
        "category 8 was not"
    );

    let search = |user: u32| format!("{}/search?user={user}&q=lamp", service.base);
    for _ in 0..5 {
        assert_eq!(get(&agent, &search(1)).0, 200);
    }
    let (status, _, headers) = get(&agent, &search(1));
    assert_eq!(status, 429);
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let retry: u64 = header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        header("ratelimit-policy").as_deref(),
        Some("\"5-per-1m\";q=5;w=60")
    );
    let ratelimit = header("ratelimit").expect("RateLimit");
    assert!(ratelimit.starts_with("\"5-per-1m\";r=0;t="), "{ratelimit}");
    assert_eq!(
        get(&agent, &search(2)).0,
        200,
        "another user has their own quota"
    );
}
