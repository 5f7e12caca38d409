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

/// The `id` cookie a response sets, as `id=value` for a `Cookie` header.
fn session_cookie(headers: &ureq::http::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("id="))
        .map(|c| c.split(';').next().unwrap().to_string())
}

fn send(
    agent: &ureq::Agent,
    post: bool,
    url: &str,
    cookie: Option<&str>,
) -> (u16, String, ureq::http::HeaderMap) {
    let mut response = match (post, cookie) {
        (true, Some(cookie)) => agent.post(url).header("cookie", cookie).send_empty(),
        (true, None) => agent.post(url).send_empty(),
        (false, Some(cookie)) => agent.get(url).header("cookie", cookie).call(),
        (false, None) => agent.get(url).call(),
    }
    .expect("request");
    let headers = response.headers().clone();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), body, headers)
}

#[test]
fn login_whoami_and_logout_over_http_with_sessions_in_redis() {
    let redis = RedisServer::start();
    let service = start(&redis.url());
    let agent = client();
    let url = |path: &str| format!("{}{path}", service.base);

    assert_eq!(send(&agent, false, &url("/whoami"), None).0, 401);
    let (status, body, headers) = send(&agent, true, &url("/login?user=ada"), None);
    assert_eq!((status, body.as_str()), (200, "logged in as ada"));
    let cookie = session_cookie(&headers).expect("a session cookie");
    let stored = redis.command("SCAN 0 MATCH axum-example:tsess:* COUNT 1000");
    assert!(
        stored.contains("axum-example:tsess:"),
        "stored in Redis: {stored:?}"
    );
    assert_eq!(send(&agent, false, &url("/whoami"), Some(&cookie)).1, "ada");

    // Another login from the same browser gets a new id: the old one is gone.
    let (_, _, headers) = send(&agent, true, &url("/login?user=bob"), Some(&cookie));
    let rotated = session_cookie(&headers).expect("a new session cookie");
    assert_ne!(rotated, cookie);
    assert_eq!(
        send(&agent, false, &url("/whoami"), Some(&cookie)).0,
        401,
        "the old id"
    );
    assert_eq!(
        send(&agent, false, &url("/whoami"), Some(&rotated)).1,
        "bob"
    );

    assert_eq!(send(&agent, true, &url("/logout"), Some(&rotated)).0, 204);
    assert_eq!(send(&agent, false, &url("/whoami"), Some(&rotated)).0, 401);
    // A made-up id is no session.
    let forged = "id=AAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(send(&agent, false, &url("/whoami"), Some(forged)).0, 401);
}

/// The store itself: records expire at their date, a record past it is
/// not kept, garbage reads as no session, and `create` never takes an id
/// in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_sessions_store_keeps_records_until_their_expiry() {
    use tower_sessions::session::{Id, Record};
    use tower_sessions::SessionStore as _;

    let redis = RedisServer::start();
    let cache = redcache::Cache::builder()
        .redis(redis.url())
        .namespace("tsess-test")
        .build()
        .await
        .unwrap();
    let store = cache.tower_session_store();
    let in_a_minute = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let mut record = Record {
        id: Id::default(),
        data: [("user".to_string(), serde_json::json!("ada"))].into(),
        expiry_date: in_a_minute,
    };
    store.create(&mut record).await.unwrap();
    assert_eq!(store.load(&record.id).await.unwrap(), Some(record.clone()));
    let pttl = redis.command(&format!("PTTL tsess-test:tsess:{}", record.id));
    let pttl: i64 = pttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(
        (50_000..=60_000).contains(&pttl),
        "expires with the record: {pttl}"
    );

    // A second record with the same id gets another one.
    let mut twin = Record {
        data: Default::default(),
        ..record.clone()
    };
    store.create(&mut twin).await.unwrap();
    assert_ne!(twin.id, record.id);
    assert_eq!(
        store.load(&record.id).await.unwrap(),
        Some(record.clone()),
        "untouched"
    );

    // Saved past its expiry: gone.
    let expired = Record {
        expiry_date: time::OffsetDateTime::now_utc() - time::Duration::seconds(1),
        ..record.clone()
    };
    store.save(&expired).await.unwrap();
    assert_eq!(store.load(&record.id).await.unwrap(), None);

    // Garbage under a record's key: no session, no panic.
    redis.command(&format!(
        "SET tsess-test:tsess:{} not-json PX 60000",
        twin.id
    ));
    assert_eq!(store.load(&twin.id).await.unwrap(), None);
    store.delete(&twin.id).await.unwrap();
}
