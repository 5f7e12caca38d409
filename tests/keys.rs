//! Two different calls never meet: default keys name the real fn (impl,
//! trait and generic arguments included), templates that could render the
//! same key never read each other's entries, and a `Result` or `Option`
//! behind a type alias is still a `Result` or an `Option`.
//!
//! Each test here returned another call's value, or cached an error,
//! before the fix it is named after.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use redcache::{cached, Cache};
use redcache_suite::{unique_namespace, RedisServer};
use serde::{Deserialize, Serialize};

static LOADS: AtomicUsize = AtomicUsize::new(0);
static TABLE_LOADS: AtomicUsize = AtomicUsize::new(0);

fn load() -> usize {
    LOADS.fetch_add(1, SeqCst)
}

/// Associated fns without a receiver, of the same name, in two impls of one
/// module: the global cache, default keys.
mod same_module {
    use super::*;

    pub struct User;
    pub struct Order;

    impl User {
        #[cached(ttl = 60)]
        pub async fn load(id: u64) -> String {
            super::load();
            format!("user {id}")
        }
    }

    impl Order {
        #[cached(ttl = 60)]
        pub async fn load(id: u64) -> String {
            super::load();
            format!("order {id}")
        }
    }

    pub trait Describe {
        async fn describe(&self, id: u64) -> String;
    }

    pub struct Shelf {
        pub cache: Cache,
    }

    impl Shelf {
        #[cached(ttl = 60, cache = self.cache)]
        pub async fn describe(&self, id: u64) -> String {
            format!("inherent {id}")
        }
    }

    impl Describe for Shelf {
        #[cached(ttl = 60, cache = self.cache)]
        async fn describe(&self, id: u64) -> String {
            format!("trait {id}")
        }
    }

    pub struct Users;
    pub struct Orders;

    pub trait Table {
        const NAME: &'static str;
    }
    impl Table for Users {
        const NAME: &'static str = "users";
    }
    impl Table for Orders {
        const NAME: &'static str = "orders";
    }

    #[cached(ttl = 60)]
    pub async fn row_label<T: Table>(id: u64) -> String {
        format!("{}#{id}", T::NAME)
    }

    #[cached(ttl = 60)]
    pub async fn nth<const N: usize>(id: u64) -> usize {
        N * 1000 + id as usize
    }

    pub struct Repo<T> {
        pub cache: Cache,
        pub table: std::marker::PhantomData<T>,
    }

    impl<T: Table + Send + Sync> Repo<T> {
        /// With a receiver: `Self` names the instance of the impl.
        #[cached(ttl = 60, cache = self.cache)]
        pub async fn label(&self, id: u64) -> String {
            format!("{}#{id}", T::NAME)
        }

        /// Without one, and without `Self` in the signature: the default
        /// key cannot tell `Repo<Users>` from `Repo<Orders>`.
        #[cached(ttl = 60)]
        pub async fn table_name(id: u64) -> String {
            super::TABLE_LOADS.fetch_add(1, SeqCst);
            format!("{}#{id}", T::NAME)
        }
    }
}

#[tokio::test]
async fn associated_fns_of_two_impls_in_one_module_do_not_share_a_key() {
    use same_module::{Order, User};
    assert_eq!(User::load(1).await, "user 1");
    assert_eq!(Order::load(1).await, "order 1");
    assert_eq!(User::load(1).await, "user 1");
    assert_eq!(Order::load(1).await, "order 1");
}

#[tokio::test]
async fn an_inherent_and_a_trait_method_of_one_name_do_not_share_a_key() {
    use same_module::{Describe, Shelf};
    let shelf = Shelf {
        cache: Cache::builder().build().await.unwrap(),
    };
    assert_eq!(Shelf::describe(&shelf, 3).await, "inherent 3");
    assert_eq!(<Shelf as Describe>::describe(&shelf, 3).await, "trait 3");
    assert_eq!(Shelf::describe(&shelf, 3).await, "inherent 3");
}

#[tokio::test]
async fn instantiations_of_a_generic_fn_do_not_share_a_key() {
    use same_module::{nth, row_label, Orders, Users};
    assert_eq!(row_label::<Users>(1).await, "users#1");
    assert_eq!(row_label::<Orders>(1).await, "orders#1");
    assert_eq!(row_label::<Users>(1).await, "users#1");
    assert_eq!(nth::<1>(5).await, 1005);
    assert_eq!(nth::<2>(5).await, 2005);
}

#[tokio::test]
async fn methods_of_a_generic_impl_are_keyed_by_their_self_type() {
    use same_module::{Orders, Repo, Users};
    let cache = Cache::builder().build().await.unwrap();
    let users = Repo::<Users> {
        cache: cache.clone(),
        table: Default::default(),
    };
    let orders = Repo::<Orders> {
        cache,
        table: Default::default(),
    };
    assert_eq!(users.label(1).await, "users#1");
    assert_eq!(orders.label(1).await, "orders#1");
    assert_eq!(users.label(1).await, "users#1");
}

#[tokio::test]
async fn a_generic_impl_fn_that_cannot_name_self_runs_uncached_and_correct() {
    use same_module::{Orders, Repo, Users};
    assert_eq!(Repo::<Users>::table_name(1).await, "users#1");
    assert_eq!(Repo::<Orders>::table_name(1).await, "orders#1");
    assert_eq!(Repo::<Users>::table_name(1).await, "users#1");
    assert_eq!(TABLE_LOADS.load(SeqCst), 3, "it never hits");
}

/// Default keys start with the fn's path: readable in `redis-cli`, and the
/// same in every process.
#[tokio::test]
async fn default_keys_name_the_impl_and_the_generic_arguments() {
    use same_module::{Orders, Repo};
    let server = RedisServer::start();
    let ns = unique_namespace("ident");
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(&ns)
        .build()
        .await
        .unwrap();
    let orders = Repo::<Orders> {
        cache,
        table: Default::default(),
    };
    orders.label(7).await;
    let key = format!("{ns}:v:keys::same_module::Repo<keys::same_module::Orders>::label:7");
    assert_eq!(server.command(&format!("EXISTS {key}")), ":1\r\n", "{key}");
}

/// Two templates whose renderings meet: `page-<slug>` with "draft-intro"
/// and `page-draft-<slug>` with "intro" are both `page-draft-intro`.
struct Pages {
    cache: Cache,
}

impl Pages {
    #[cached(ttl = 60, key = "page-<slug>", cache = self.cache)]
    async fn page(&self, slug: &str) -> String {
        format!("page {slug}")
    }

    #[cached(ttl = 60, key = "page-draft-<slug>", cache = self.cache)]
    async fn draft(&self, slug: &str) -> String {
        format!("draft {slug}")
    }
}

async fn templates_that_render_one_key_never_read_each_others_entries(cache: Cache) {
    let pages = Pages { cache };
    for _ in 0..2 {
        assert_eq!(pages.page("draft-intro").await, "page draft-intro");
        assert_eq!(pages.draft("intro").await, "draft intro");
    }
}

#[tokio::test]
async fn templates_that_render_one_key_never_read_each_others_entries_in_memory() {
    templates_that_render_one_key_never_read_each_others_entries(
        Cache::builder().build().await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn templates_that_render_one_key_never_read_each_others_entries_on_redis() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("tpl"))
        .build()
        .await
        .unwrap();
    templates_that_render_one_key_never_read_each_others_entries(cache).await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AppError(String);

type AppResult<T> = Result<T, AppError>;
type Maybe<T> = Option<T>;

static ALIAS_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "alias-result:<fail>")]
async fn through_result_alias(fail: bool) -> AppResult<usize> {
    let n = ALIAS_LOADS.fetch_add(1, SeqCst);
    if fail {
        Err(AppError(format!("failure {n}")))
    } else {
        Ok(n)
    }
}

static OPTION_LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, key = "alias-option:<none>")]
async fn through_option_alias(none: bool) -> Maybe<usize> {
    let n = OPTION_LOADS.fetch_add(1, SeqCst);
    (!none).then_some(n)
}

#[tokio::test]
async fn a_result_behind_a_type_alias_does_not_cache_its_errors() {
    let first = through_result_alias(true).await;
    let second = through_result_alias(true).await;
    assert_ne!(first, second, "the error was served from the cache");
    let ok = through_result_alias(false).await;
    assert_eq!(through_result_alias(false).await, ok, "Ok is cached");
}

#[tokio::test]
async fn an_option_behind_a_type_alias_does_not_cache_none() {
    assert_eq!(through_option_alias(true).await, None);
    assert_eq!(through_option_alias(true).await, None);
    assert_eq!(
        OPTION_LOADS.load(SeqCst),
        2,
        "None was served from the cache"
    );
}

/// A value a generic fn makes: a `Result` that fails on its first load.
trait Answer: redcache::Cacheable {
    fn answer(load: usize) -> Self;
}

impl Answer for Result<usize, AppError> {
    fn answer(load: usize) -> Self {
        if load == 0 {
            Err(AppError("first load fails".into()))
        } else {
            Ok(load)
        }
    }
}

impl Answer for u32 {
    fn answer(load: usize) -> Self {
        load as u32
    }
}

static GENERIC_LOADS: AtomicUsize = AtomicUsize::new(0);
static GENERIC_VALUE_LOADS: AtomicUsize = AtomicUsize::new(0);

/// The return type is a type parameter: where the fn is written, nothing
/// tells it is a `Result`; only the instance does.
#[cached(ttl = 60, key = "generic-answer:<id>")]
async fn generic_answer<R: Answer>(id: u64) -> R {
    let _ = id;
    R::answer(GENERIC_LOADS.fetch_add(1, SeqCst))
}

#[cached(ttl = 60, key = "generic-value:<id>")]
async fn generic_value<R: Answer>(id: u64) -> R {
    let _ = id;
    R::answer(GENERIC_VALUE_LOADS.fetch_add(1, SeqCst))
}

static SLOW_LOADS: AtomicUsize = AtomicUsize::new(0);

/// `generic_answer`, slow enough that concurrent callers wait for it.
#[cached(ttl = 60, key = "slow-generic-answer:<id>")]
async fn slow_generic_answer<R: Answer>(id: u64) -> R {
    let _ = id;
    let load = SLOW_LOADS.fetch_add(1, SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    R::answer(load)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_on_a_generic_result_never_get_its_err() {
    let calls: Vec<_> = (0..8)
        .map(|_| tokio::spawn(slow_generic_answer::<Result<usize, AppError>>(1)))
        .collect();
    let mut errors = 0;
    for call in calls {
        if call.await.unwrap().is_err() {
            errors += 1;
        }
    }
    // The first load fails, and only its own caller sees it: the callers
    // that waited on it load again (as for any `Result`), and succeed.
    assert_eq!(errors, 1, "the leader's Err was shared with its followers");
}

/// Writes what `generic_answer` reads.
#[redcache::cache_put(ttl = 60, key = "generic-answer:<id>")]
async fn put_generic_answer<R: Answer>(id: u64, load: usize) -> R {
    let _ = id;
    R::answer(load)
}

#[tokio::test]
async fn a_generic_return_that_is_a_result_never_writes_its_errors() {
    type R = Result<usize, AppError>;
    assert_eq!(put_generic_answer::<R>(2, 40).await, Ok(40));
    assert_eq!(generic_answer::<R>(2).await, Ok(40), "the Ok was written");
    assert!(put_generic_answer::<R>(2, 0).await.is_err());
    assert_eq!(
        generic_answer::<R>(2).await,
        Ok(40),
        "the Err was not written over it"
    );
}

#[tokio::test]
async fn a_generic_return_that_is_a_result_never_caches_its_errors() {
    let first = generic_answer::<Result<usize, AppError>>(1).await;
    assert!(first.is_err());
    let second = generic_answer::<Result<usize, AppError>>(1).await;
    assert_eq!(second, Ok(1), "the error was served from the cache");
    // Its Ok is cached, like any `Result`'s.
    assert_eq!(generic_answer::<Result<usize, AppError>>(1).await, Ok(1));
    assert_eq!(GENERIC_LOADS.load(SeqCst), 2, "the Ok was cached");
    // Another instance of a generic return is a value, cached as one.
    let value = generic_value::<u32>(1).await;
    assert_eq!(generic_value::<u32>(1).await, value);
    assert_eq!(
        GENERIC_VALUE_LOADS.load(SeqCst),
        1,
        "a plain value is cached"
    );
}

/// Parameters that do not change the result: `ignore`, or a `_` name.
struct Lookup {
    cache: Cache,
    loads: AtomicUsize,
}

impl Lookup {
    #[cached(ttl = 60, key = "user:<id>", ignore = [request_id], cache = self.cache)]
    async fn user(&self, id: u64, request_id: u64, _trace: &str) -> String {
        let _ = request_id;
        self.loads.fetch_add(1, SeqCst);
        format!("user {id}")
    }

    /// Placeholders name the bindings of a pattern.
    #[cached(ttl = 60, key = "point:<x>:<y>", cache = self.cache)]
    async fn point(&self, (x, y): (i32, i32)) -> String {
        self.loads.fetch_add(1, SeqCst);
        format!("{x},{y}")
    }
}

/// A pattern parameter is its bindings in the default key (it used to be a
/// compile error: "this parameter has no name").
#[cached(ttl = 60)]
async fn area((w, h): (u64, u64)) -> String {
    format!("{w}x{h}")
}

#[tokio::test]
async fn pattern_parameters_are_their_bindings_in_the_default_key() {
    assert_eq!(area((2, 3)).await, "2x3");
    assert_eq!(area((3, 2)).await, "3x2");
    assert_eq!(area((2, 3)).await, "2x3");
}

#[tokio::test]
async fn ignored_parameters_share_an_entry_and_pattern_bindings_do_not() {
    let lookup = Lookup {
        cache: Cache::builder().build().await.unwrap(),
        loads: AtomicUsize::new(0),
    };
    assert_eq!(lookup.user(1, 100, "a").await, "user 1");
    assert_eq!(lookup.user(1, 200, "b").await, "user 1");
    assert_eq!(lookup.loads.load(SeqCst), 1);
    assert_eq!(lookup.point((1, 2)).await, "1,2");
    assert_eq!(lookup.point((2, 1)).await, "2,1");
    assert_eq!(lookup.loads.load(SeqCst), 3);
}

/// Namespaces `X` and `X:v` would read each other's entries (`X:v:v:x`),
/// and an entry of one would be a tag epoch of the other.
#[tokio::test]
async fn namespaces_that_could_reach_into_each_other_are_refused() {
    for namespace in ["X:v", "app:cache", "a{b}"] {
        let built = Cache::builder().namespace(namespace).build().await;
        assert!(
            matches!(built, Err(redcache::Error::Config(_))),
            "{namespace:?}"
        );
    }
}

/// `Option`, `Vec` and slice arguments in default keys and templates.
struct Search {
    cache: Cache,
    loads: AtomicUsize,
}

impl Search {
    #[cached(ttl = 60, cache = self.cache)]
    async fn by_words(&self, words: Vec<String>, page: Option<u32>) -> String {
        self.loads.fetch_add(1, SeqCst);
        format!("{words:?} {page:?}")
    }

    #[cached(ttl = 60, key = "ids:<ids>:<owner>", cache = self.cache)]
    async fn by_ids(&self, ids: &[u64], owner: Option<&str>) -> String {
        self.loads.fetch_add(1, SeqCst);
        format!("{ids:?} {owner:?}")
    }
}

async fn optional_and_list_arguments_key_every_call_apart(cache: Cache) {
    let search = Search {
        cache,
        loads: AtomicUsize::new(0),
    };
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Calls that a naive join (`,` or `:`) or `None` as "" would merge.
    let word_calls = [
        (words(&[]), None),
        (words(&[""]), None),
        (words(&["a,b"]), None),
        (words(&["a", "b"]), None),
        (words(&["a", "b"]), Some(0)),
        (words(&["a:b"]), Some(1)),
        (words(&["a"]), Some(1)),
    ];
    let id_calls: [(&[u64], Option<&str>); 5] = [
        (&[], None),
        (&[], Some("")),
        (&[], Some("%none")),
        (&[1, 2], None),
        (&[12], None),
    ];
    for _ in 0..2 {
        for (w, page) in &word_calls {
            assert_eq!(
                search.by_words(w.clone(), *page).await,
                format!("{w:?} {page:?}")
            );
        }
        for (ids, owner) in id_calls {
            assert_eq!(
                search.by_ids(ids, owner).await,
                format!("{ids:?} {owner:?}")
            );
        }
    }
    // The second round was all hits.
    assert_eq!(search.loads.load(SeqCst), word_calls.len() + id_calls.len());
    let ids = [1u64, 2];
    let owner: Option<&str> = None;
    assert_eq!(redcache::key!("ids:<ids>:<owner>"), "ids:1,2:%none");
}

#[tokio::test]
async fn optional_and_list_arguments_key_every_call_apart_in_memory() {
    optional_and_list_arguments_key_every_call_apart(Cache::builder().build().await.unwrap()).await;
}

#[tokio::test]
async fn optional_and_list_arguments_key_every_call_apart_on_redis() {
    let server = RedisServer::start();
    let cache = Cache::builder()
        .redis(server.url())
        .namespace(unique_namespace("lists"))
        .build()
        .await
        .unwrap();
    optional_and_list_arguments_key_every_call_apart(cache).await;
}

/// One literal prefix, placeholders naming different fields: two fns, two
/// entries (a writer naming `<product.id>` reaches a reader of `<id>`, but
/// `<user_id>` never reaches `<org_id>`).
#[cached(ttl = 60, key = "stats:<user_id>")]
async fn user_stats(user_id: u64) -> String {
    format!("user {user_id}")
}

#[cached(ttl = 60, key = "stats:<org_id>")]
async fn org_stats(org_id: u64) -> String {
    format!("org {org_id}")
}

#[tokio::test]
async fn templates_with_one_prefix_and_other_placeholders_do_not_meet() {
    for _ in 0..2 {
        assert_eq!(user_stats(7).await, "user 7");
        assert_eq!(org_stats(7).await, "org 7");
    }
}
