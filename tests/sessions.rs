//! Sessions (`Cache::sessions`) on real Redis and on the embedded backend:
//! typed fields, concurrent field updates, sliding and absolute expiry,
//! rotation, logout everywhere, ids the store did not issue, garbage in a
//! session hash, and 10 000 sessions from 64 tasks without a collision.

use std::collections::HashSet;
use std::time::Duration;

use redcache::{Cache, SessionId, SessionStore};
use redcache_suite::{redis_cache, unique_namespace, RedisServer};

async fn memory_cache() -> Cache {
    Cache::builder().memory().build().await.unwrap()
}

async fn fields_rotation_and_logout(sessions: SessionStore) {
    let id = sessions.create(Some("ada")).await.unwrap();
    assert_eq!(SessionId::parse(id.expose()), Some(id.clone()));
    assert!(format!("{id:?}").contains("redacted") && !format!("{id:?}").contains(id.expose()));
    assert!(sessions.set(&id, "cart", &vec![42u64, 7]).await.unwrap());
    assert!(sessions.set(&id, "name", "Ada").await.unwrap());
    assert_eq!(
        sessions.get::<Vec<u64>>(&id, "cart").await.unwrap(),
        Some(vec![42, 7])
    );
    assert_eq!(sessions.get::<u64>(&id, "absent").await.unwrap(), None);
    let whole = sessions.load(&id).await.unwrap().unwrap();
    assert_eq!(whole.user(), Some("ada"));
    assert_eq!(whole.get::<String>("name").as_deref(), Some("Ada"));
    assert_eq!(
        whole.get::<u64>("name"),
        None,
        "another type reads as absent"
    );

    // Concurrent updates of different fields keep each other.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (sessions, id) = (sessions.clone(), id.clone());
            tokio::spawn(async move { sessions.set(&id, &format!("f{i}"), &i).await.unwrap() })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    let whole = sessions.load(&id).await.unwrap().unwrap();
    assert_eq!(whole.fields().filter(|f| f.starts_with('f')).count(), 64);
    assert_eq!(whole.get::<u64>("f17"), Some(17));

    // An id the store never issued: nothing read, nothing created.
    let forged = SessionId::parse(&"0".repeat(36)).unwrap();
    assert!(!sessions.set(&forged, "cart", &1).await.unwrap());
    assert!(sessions.load(&forged).await.unwrap().is_none());
    assert!(SessionId::parse("not-an-id").is_none());
    assert!(SessionId::parse(&"A".repeat(36)).is_none());

    // Rotation: the same data under a new id; the old id is gone.
    sessions.remove(&id, "name").await.unwrap();
    let rotated = sessions.rotate(&id).await.unwrap().expect("live");
    assert_ne!(rotated, id);
    assert!(sessions.load(&id).await.unwrap().is_none());
    assert!(
        !sessions.set(&id, "cart", &1).await.unwrap(),
        "the old id writes nothing"
    );
    assert_eq!(
        sessions.get::<Vec<u64>>(&rotated, "cart").await.unwrap(),
        Some(vec![42, 7])
    );
    assert_eq!(
        sessions.get::<String>(&rotated, "name").await.unwrap(),
        None
    );
    assert!(sessions.rotate(&id).await.unwrap().is_none());

    // Logout everywhere: every session of the user, no other.
    let others = [
        sessions.create(Some("ada")).await.unwrap(),
        sessions.create(Some("ada")).await.unwrap(),
    ];
    let bob = sessions.create(Some("bob")).await.unwrap();
    let anonymous = sessions.create(None).await.unwrap();
    assert_eq!(
        sessions.delete_user_sessions("ada").await.unwrap(),
        3,
        "the rotated one and two more"
    );
    for id in others.iter().chain([&rotated]) {
        assert!(sessions.load(id).await.unwrap().is_none());
    }
    assert!(sessions.load(&bob).await.unwrap().is_some());
    assert!(sessions.delete(&anonymous).await.unwrap());
    assert!(!sessions.delete(&anonymous).await.unwrap());
    assert!(sessions.load(&anonymous).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_rotation_and_logout_in_memory() {
    fields_rotation_and_logout(memory_cache().await.sessions()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_rotation_and_logout_on_redis() {
    let server = RedisServer::start();
    fields_rotation_and_logout(
        redis_cache(server.url(), &unique_namespace("sess"))
            .await
            .sessions(),
    )
    .await;
}

/// Touches keep a session (sliding expiry) until its maximum lifetime.
async fn expiry(cache: Cache) {
    let sessions = cache
        .sessions()
        .idle_timeout(Duration::from_millis(400))
        .max_lifetime(Duration::from_millis(1600));
    let idle = sessions.create(None).await.unwrap();
    let touched = sessions.create(None).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            sessions.load(&touched).await.unwrap().is_some(),
            "kept by its touches"
        );
    }
    assert!(
        sessions.load(&idle).await.unwrap().is_none(),
        "expired after 400 ms untouched"
    );
    // Past the maximum lifetime, touches do not help.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = sessions.load(&touched).await.unwrap();
    }
    assert!(
        sessions.load(&touched).await.unwrap().is_none(),
        "gone after 1.6 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_slide_until_their_maximum_lifetime_in_memory() {
    expiry(memory_cache().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_slide_until_their_maximum_lifetime_on_redis() {
    let server = RedisServer::start();
    expiry(redis_cache(server.url(), &unique_namespace("sess")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_a_session_is_absent_and_every_key_has_a_ttl() {
    let server = RedisServer::start();
    let ns = unique_namespace("sess");
    let sessions = redis_cache(server.url(), &ns).await.sessions();
    let id = sessions.create(Some("ada")).await.unwrap();
    let (tag, secret) = id.expose().split_at(4);
    let key = format!("{ns}:sess:{{{tag}}}{secret}");
    assert_eq!(
        server.command(&format!("HSET {key} f:cart not-json")),
        ":1\r\n"
    );
    assert_eq!(sessions.get::<Vec<u64>>(&id, "cart").await.unwrap(), None);
    assert_eq!(
        sessions
            .load(&id)
            .await
            .unwrap()
            .unwrap()
            .get::<Vec<u64>>("cart"),
        None
    );
    for key in [key, format!("{ns}:sess-user:ada")] {
        let ttl = server.command(&format!("PTTL {key}"));
        assert!(
            ttl.starts_with(':') && !ttl.starts_with(":-"),
            "{key}: PTTL {ttl}"
        );
    }
}

async fn ten_thousand_sessions(cache: Cache) {
    let sessions = cache.sessions();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let sessions = sessions.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..157 {
                    ids.push(sessions.create(None).await.unwrap().expose().to_string());
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(all.insert(id), "a collision");
        }
    }
    assert_eq!(all.len(), 64 * 157);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_from_64_tasks_never_collide_in_memory() {
    ten_thousand_sessions(memory_cache().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_from_64_tasks_never_collide_on_redis() {
    let server = RedisServer::start();
    ten_thousand_sessions(redis_cache(server.url(), &unique_namespace("sess")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_rotation_and_logout_on_a_cluster() {
    let cluster = tokio::task::spawn_blocking(redcache_suite::RedisCluster::shared)
        .await
        .unwrap();
    let cache = Cache::builder()
        .redis_cluster(cluster.urls())
        .namespace(unique_namespace("sess"))
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    fields_rotation_and_logout(cache.sessions()).await;
}
