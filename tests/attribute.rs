//! `#[cached]`, `get_or_load!` and `key!` as users write them.

use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use redcache::{cached, Cache};
use redcache_suite::{unique_namespace, RedisServer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    category: u64,
    version: usize,
}

#[derive(Debug, PartialEq)]
struct DbError(String);

struct User {
    id: u32,
    name: String,
}

struct Repo {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

impl Repo {
    async fn new(cache: Cache) -> Self {
        Repo {
            cache,
            loads: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn load(&self) -> usize {
        self.loads.fetch_add(1, SeqCst) + 1
    }

    fn loads(&self) -> usize {
        self.loads.load(SeqCst)
    }

    /// A product, cached under its id and tagged with its category.
    #[cached(ttl = 60, key = "product:<id>", tags = ["category:<category>"], cache = self.cache)]
    pub(crate) async fn product(&self, id: u64, category: u64) -> Result<Product, DbError> {
        let version = self.load();
        if id == 0 {
            return Err(DbError("no product 0".into()));
        }
        Ok(Product {
            id,
            category,
            version,
        })
    }

    #[cached(ttl = "5m", cache = self.cache)]
    async fn default_key(&self, a: u32, b: &str) -> Result<String, DbError> {
        self.load();
        Ok(format!("{a}/{b}"))
    }

    #[cached(ttl = 60, key = "user:<user.id>", tag = "users", cache = self.cache)]
    async fn nickname(&self, user: &User) -> Option<String> {
        self.load();
        (!user.name.is_empty()).then(|| user.name.to_lowercase())
    }

    #[cached(ttl = 60, key = "maybe:<id>", cache_none = true, cache = self.cache)]
    async fn maybe(&self, id: u32) -> Option<u32> {
        self.load();
        (id % 2 == 0).then_some(id)
    }

    #[cached(ttl = "90s", key = "plain:<id>", cache = self.cache, stampede = "local")]
    async fn plain(&self, id: u32) -> Vec<u32> {
        self.load();
        vec![id; 3]
    }

    #[cached(ttl = 60, key = "pair:<a>:<b>", cache = self.cache)]
    async fn pair(&self, a: &str, b: &str) -> Result<String, DbError> {
        self.load();
        Ok(format!("{a}|{b}"))
    }

    #[cached(ttl = 60, key = "generic:<x>", cache = &self.cache)]
    async fn generic<T>(&self, x: T) -> Result<String, DbError>
    where
        T: Display + Send + Sync,
    {
        self.load();
        Ok(format!("<{x}>"))
    }
}

async fn memory_repo() -> Repo {
    Repo::new(
        Cache::builder()
            .namespace(unique_namespace("attr"))
            .build()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn result_fns_cache_ok_and_not_err() {
    let repo = memory_repo().await;
    let first = repo.product(1, 7).await.unwrap();
    assert_eq!(repo.product(1, 7).await.unwrap(), first);
    assert_eq!(repo.loads(), 1);
    assert_eq!(
        repo.product(0, 7).await,
        Err(DbError("no product 0".into()))
    );
    assert_eq!(
        repo.product(0, 7).await,
        Err(DbError("no product 0".into()))
    );
    assert_eq!(repo.loads(), 3, "errors are not cached");
}

#[tokio::test]
async fn tags_from_arguments_invalidate_their_entries() {
    let repo = memory_repo().await;
    repo.product(1, 7).await.unwrap();
    repo.product(2, 8).await.unwrap();
    repo.cache.invalidate_tag("category:7").await.unwrap();
    assert_eq!(
        repo.product(1, 7).await.unwrap().version,
        3,
        "category 7 reloads"
    );
    assert_eq!(
        repo.product(2, 8).await.unwrap().version,
        2,
        "category 8 stays"
    );
}

#[tokio::test]
async fn key_macro_renders_the_attribute_key_for_invalidate_key() {
    let repo = memory_repo().await;
    repo.product(5, 1).await.unwrap();
    repo.product(6, 1).await.unwrap();
    let id = 5;
    repo.cache
        .invalidate_key(&redcache::key!("product:<id>"))
        .await
        .unwrap();
    repo.product(5, 1).await.unwrap();
    repo.product(6, 1).await.unwrap();
    assert_eq!(repo.loads(), 3, "only product 5 reloads");
    // Arguments are escaped identically by both.
    repo.pair("a b", "c").await.unwrap();
    repo.cache
        .invalidate_key(&redcache::key!("pair:<a>:<b>", a = "a b", b = "c"))
        .await
        .unwrap();
    repo.pair("a b", "c").await.unwrap();
    assert_eq!(repo.loads(), 5);
}

#[tokio::test]
async fn option_fns_cache_some_and_none_only_when_asked() {
    let repo = memory_repo().await;
    let ada = User {
        id: 1,
        name: "Ada".into(),
    };
    let nobody = User {
        id: 2,
        name: String::new(),
    };
    assert_eq!(repo.nickname(&ada).await.as_deref(), Some("ada"));
    assert_eq!(repo.nickname(&ada).await.as_deref(), Some("ada"));
    assert_eq!(repo.nickname(&nobody).await, None);
    assert_eq!(repo.nickname(&nobody).await, None);
    assert_eq!(repo.loads(), 3, "Some cached once, None loaded each time");
    assert_eq!(repo.maybe(1).await, None);
    assert_eq!(repo.maybe(1).await, None);
    assert_eq!(repo.loads(), 4, "with cache_none, None is cached");
}

#[tokio::test]
async fn plain_return_types_are_cached_as_they_are() {
    let repo = memory_repo().await;
    assert_eq!(repo.plain(4).await, vec![4, 4, 4]);
    assert_eq!(repo.plain(4).await, vec![4, 4, 4]);
    assert_eq!(repo.loads(), 1);
}

#[tokio::test]
async fn arguments_cannot_forge_a_shared_key() {
    let repo = memory_repo().await;
    assert_eq!(repo.pair("1:2", "3").await.unwrap(), "1:2|3");
    assert_eq!(repo.pair("1", "2:3").await.unwrap(), "1|2:3");
    assert_eq!(repo.pair("*", "{x}").await.unwrap(), "*|{x}");
    assert_eq!(repo.pair("%2A", "{x}").await.unwrap(), "%2A|{x}");
    assert_eq!(repo.pair("a\nb", " ").await.unwrap(), "a\nb| ");
    assert_eq!(repo.loads(), 5);
}

#[tokio::test]
async fn self_is_not_part_of_the_key() {
    let cache = Cache::builder()
        .namespace(unique_namespace("attr"))
        .build()
        .await
        .unwrap();
    let (one, two) = (Repo::new(cache.clone()).await, Repo::new(cache).await);
    one.product(3, 3).await.unwrap();
    two.product(3, 3).await.unwrap();
    assert_eq!((one.loads(), two.loads()), (1, 0));
}

#[tokio::test]
async fn generic_methods_work() {
    let repo = memory_repo().await;
    assert_eq!(repo.generic(5u8).await.unwrap(), "<5>");
    assert_eq!(repo.generic("5").await.unwrap(), "<5>", "same rendered key");
    assert_eq!(repo.loads(), 1);
}

#[tokio::test]
async fn get_or_load_macro_caches_a_block() {
    let cache = Cache::builder()
        .namespace(unique_namespace("inline"))
        .build()
        .await
        .unwrap();
    let loads = AtomicUsize::new(0);
    for _ in 0..3 {
        let id = 9;
        let value = redcache::get_or_load!(
            ttl = 60,
            key = "inline:<id>",
            tags = ["t"],
            cache = cache,
            async {
                loads.fetch_add(1, SeqCst);
                Ok::<_, DbError>(id * 2)
            }
        )
        .await;
        assert_eq!(value, Ok(18));
    }
    assert_eq!(loads.load(SeqCst), 1);
}

#[tokio::test]
async fn default_keys_are_readable_in_redis() {
    let server = RedisServer::start();
    let ns = unique_namespace("keys");
    let repo = Repo::new(
        Cache::builder()
            .redis(server.url())
            .namespace(&ns)
            .build()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(repo.default_key(1, "x y").await.unwrap(), "1/x y");
    assert_eq!(repo.default_key(1, "x y").await.unwrap(), "1/x y");
    assert_eq!(repo.loads(), 1);
    let reply = server.command(&format!(
        "EXISTS {ns}:v:attribute::Repo::default_key:1:x%20y"
    ));
    assert_eq!(
        reply, ":1\r\n",
        "the default key is the type path, fn name and escaped arguments"
    );
    let reply = server.command(&format!("EXISTS {ns}:v:product:1"));
    assert_eq!(reply, ":0\r\n");
    repo.product(1, 2).await.unwrap();
    assert_eq!(
        server.command(&format!("EXISTS {ns}:v:product:1")),
        ":1\r\n"
    );
}

/// Runs `body` on a runtime of its own under a `fmt` subscriber (spans
/// logged as they close), and returns what it printed.
fn traced(body: impl std::future::Future<Output = ()>) -> String {
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(body);
    });
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    output
}

/// An entry belongs to one tag set: calls of one key with other tags
/// replace each other's entry (0 % hits). That is told, once per template.
#[test]
fn a_key_called_with_other_tags_is_told_once() {
    let output = traced(async {
        let cache = Cache::builder().build().await.unwrap();
        let loads = AtomicUsize::new(0);
        for category in [1, 2, 1, 2] {
            let tag = format!("category:{category}");
            let value = cache
                .get_or_load(
                    "flip",
                    std::time::Duration::from_secs(60),
                    &[&tag],
                    || async {
                        loads.fetch_add(1, SeqCst);
                        Ok::<_, DbError>(category)
                    },
                )
                .await;
            assert_eq!(value, Ok(category), "never the other tag set's value");
        }
        assert_eq!(loads.load(SeqCst), 4, "each replaced the other's entry");
        assert_eq!(cache.stats().stale, 3);
    });
    let told: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("other tags than its entry was stored with"))
        .collect();
    assert_eq!(told.len(), 1, "told once: {output}");
    assert!(told[0].contains("ERROR"), "{}", told[0]);
}

/// What a `tracing-subscriber` user sees: a `redcache.cached` span per call
/// with the key and its outcome (`hit_l1` for a hit of the near cache).
#[test]
fn each_cached_call_is_a_span_with_its_key_and_outcome() {
    let output = traced(async {
        let repo = memory_repo().await;
        repo.product(9, 1).await.unwrap();
        repo.product(9, 1).await.unwrap();
        repo.product(9, 1).await.unwrap();
    });
    let spans: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("redcache.cached"))
        .collect();
    assert_eq!(spans.len(), 3, "{output}");
    // The third comes from the near cache, which the second filled.
    assert!(
        spans[2].contains("outcome=\"hit_l1\"") && spans[2].contains("key=\"product:9\""),
        "{}",
        spans[2]
    );
    assert!(
        spans[0].contains("key=\"product:9\"") && spans[0].contains("outcome=\"miss\""),
        "{}",
        spans[0]
    );
    assert!(spans[1].contains("outcome=\"hit\""), "{}", spans[1]);
}

/// A service held in an `Arc`, with its cache in a field: the body moves
/// `self`, so the cache is taken before it (this was E0505).
struct Service {
    cache: Cache,
    loads: AtomicUsize,
}

impl Service {
    #[cached(ttl = 60, key = "svc:<id>", cache = self.cache)]
    async fn double(self: Arc<Self>, id: u64) -> u64 {
        self.loads.fetch_add(1, SeqCst);
        id * 2
    }
}

#[tokio::test]
async fn a_method_on_self_arc_takes_its_cache_from_a_field() {
    let service = Arc::new(Service {
        cache: Cache::builder().build().await.unwrap(),
        loads: AtomicUsize::new(0),
    });
    assert_eq!(service.clone().double(21).await, 42);
    assert_eq!(service.clone().double(21).await, 42);
    assert_eq!(service.loads.load(SeqCst), 1);
}

/// `Arc<T>` values: cached as their `T` (serde's `rc`), a fresh `Arc` per hit.
#[cached(ttl = 60, key = "shared-list:<n>")]
async fn shared_list(n: usize) -> Arc<Vec<u32>> {
    let list: Vec<u32> = (0..n as u32).collect();
    Arc::new(list)
}

#[tokio::test]
async fn arc_values_are_cached() {
    assert_eq!(*shared_list(3).await, vec![0, 1, 2]);
    assert_eq!(*shared_list(3).await, vec![0, 1, 2]);
}

/// `get_or_load!` with the future in a variable (it was read as an option).
#[tokio::test]
async fn get_or_load_takes_a_future_in_a_variable() {
    let cache = Cache::builder().build().await.unwrap();
    let id = 5;
    let fut = async { Ok::<_, DbError>(id * 3) };
    let value = redcache::get_or_load!(ttl = 60, key = "tripled:<id>", cache = cache, fut).await;
    assert_eq!(value, Ok(15));
}

const PRODUCT_TTL: u64 = 300;
static TTL_LOADS: AtomicUsize = AtomicUsize::new(0);

/// `ttl` as a constant (seconds) or a `Duration` expression.
#[cached(ttl = PRODUCT_TTL, key = "ttl-const:<id>")]
async fn ttl_from_a_const(id: u64) -> u64 {
    TTL_LOADS.fetch_add(1, SeqCst);
    id
}

#[cached(ttl = std::time::Duration::from_millis(1500), key = "ttl-expr:<id>")]
async fn ttl_from_an_expression(id: u64) -> u64 {
    TTL_LOADS.fetch_add(1, SeqCst);
    id
}

fn zero() -> std::time::Duration {
    std::time::Duration::ZERO
}

/// A zero `ttl` from an expression cannot be refused at compile time: the
/// fn runs uncached (no key without an expiry).
#[cached(ttl = zero(), key = "ttl-zero:<id>")]
async fn ttl_zero_at_run_time(id: u64) -> u64 {
    TTL_LOADS.fetch_add(1, SeqCst);
    id
}

#[tokio::test]
async fn ttl_takes_a_const_or_a_duration_expression() {
    for _ in 0..2 {
        assert_eq!(ttl_from_a_const(1).await, 1);
        assert_eq!(ttl_from_an_expression(2).await, 2);
    }
    assert_eq!(TTL_LOADS.load(SeqCst), 2, "both cached");
    assert_eq!(ttl_zero_at_run_time(3).await, 3);
    assert_eq!(ttl_zero_at_run_time(3).await, 3);
    assert_eq!(TTL_LOADS.load(SeqCst), 4, "a zero ttl is never cached");
}
