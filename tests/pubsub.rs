//! Typed pub/sub (`Cache::channel`) on real servers and on the embedded
//! backend: typed messages, patterns, undecodable messages skipped and
//! counted, channels that never meet, resubscription after a restart and
//! after a Sentinel failover (with a gap event), and sharded channels on a
//! cluster.

use std::time::Duration;

use futures::StreamExt;
use redcache::{Cache, Event, Subscription};
use redcache_suite::{key_slot, unique_namespace, RedisCluster, RedisServer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceChanged {
    product: u64,
    cents: u64,
}

async fn redis_cache(url: String, ns: &str) -> Cache {
    Cache::builder()
        .redis(url)
        .namespace(ns)
        .op_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap()
}

async fn next<T: serde::de::DeserializeOwned>(subscription: &mut Subscription<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("a message within 5 s")
        .expect("the subscription is open")
}

/// Publishes 2, 3, ... on `channel` until `events` gets one of them (the
/// resubscription after a disconnect is in place), within `limit`.
async fn publish_until_received(
    channel: &redcache::Channel<u64>,
    events: &mut redcache::Events<u64>,
    limit: Duration,
) {
    let mut n = 2;
    let got = tokio::time::timeout(limit, async {
        loop {
            let _ = channel.publish(&n).await;
            n += 1;
            match tokio::time::timeout(Duration::from_millis(200), events.next()).await {
                Ok(Some(Event::Message(v))) => return v,
                Ok(Some(Event::Gap(_))) | Err(_) => {}
                Ok(Some(other)) => panic!("unexpected {other:?}"),
                Ok(None) => panic!("the subscription ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no message within {limit:?} of the disconnect"));
    assert!(got >= 2, "a message published after the disconnect: {got}");
}

async fn typed_messages_and_patterns(publisher: Cache, subscriber: Cache) {
    let prices = publisher.channel::<PriceChanged>("prices");
    let mut changes = subscriber
        .channel::<PriceChanged>("prices")
        .subscribe()
        .await
        .unwrap();
    let mut also = subscriber
        .channel::<PriceChanged>("prices")
        .subscribe()
        .await
        .unwrap();
    let mut other = subscriber
        .channel::<PriceChanged>("prices-eu")
        .subscribe()
        .await
        .unwrap();
    let mut all = subscriber
        .subscribe_pattern::<PriceChanged>("prices*")
        .await
        .unwrap();
    let one = PriceChanged {
        product: 7,
        cents: 1_999,
    };
    assert!(prices.publish(&one).await.unwrap() >= 1);
    assert_eq!(next(&mut changes).await, one);
    assert_eq!(
        next(&mut also).await,
        one,
        "two subscriptions of a channel both get it"
    );
    assert_eq!(next(&mut all).await, one, "the pattern matches");
    // Garbage on the channel (another writer): skipped and counted.
    let raw = publisher.channel::<String>("prices");
    raw.publish(&"not a price".to_string()).await.unwrap();
    let two = PriceChanged {
        product: 8,
        cents: 5,
    };
    prices.publish(&two).await.unwrap();
    assert_eq!(next(&mut changes).await, two);
    assert_eq!(changes.undecodable(), 1);
    let eu = PriceChanged {
        product: 9,
        cents: 1,
    };
    publisher
        .channel::<PriceChanged>("prices-eu")
        .publish(&eu)
        .await
        .unwrap();
    assert_eq!(
        next(&mut other).await,
        eu,
        "the other channel only gets its own"
    );
    assert_eq!(next(&mut all).await, two);
    assert_eq!(next(&mut all).await, eu);
}

#[tokio::test]
async fn typed_messages_and_patterns_on_memory() {
    let cache = Cache::builder().memory().build().await.unwrap();
    typed_messages_and_patterns(cache.clone(), cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_messages_and_patterns_on_redis() {
    let server = RedisServer::start();
    let ns = unique_namespace("pubsub");
    let publisher = redis_cache(server.url(), &ns).await;
    let subscriber = redis_cache(server.url(), &ns).await;
    typed_messages_and_patterns(publisher, subscriber).await;
    // Another namespace's channel of the same name never meets these.
    let foreign = redis_cache(server.url(), &unique_namespace("pubsub")).await;
    let mut mine = redis_cache(server.url(), &ns)
        .await
        .channel::<u64>("prices")
        .subscribe()
        .await
        .unwrap();
    foreign.channel::<u64>("prices").publish(&1).await.unwrap();
    redis_cache(server.url(), &ns)
        .await
        .channel::<u64>("prices")
        .publish(&2)
        .await
        .unwrap();
    assert_eq!(next(&mut mine).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_a_restart_and_reports_the_gap() {
    let mut server = RedisServer::start();
    let ns = unique_namespace("pubsub");
    let publisher = redis_cache(server.url(), &ns).await;
    let subscriber = redis_cache(server.url(), &ns).await;
    let mut events = subscriber
        .channel::<u64>("ticks")
        .subscribe()
        .await
        .unwrap()
        .events();
    publisher.channel::<u64>("ticks").publish(&1).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert_eq!(first, Some(Event::Message(1)));
    server.restart();
    // The gap is reported, then messages flow again without a new subscribe.
    let gap = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert!(matches!(gap, Some(Event::Gap(_))), "{gap:?}");
    let ticks = publisher.channel::<u64>("ticks");
    publish_until_received(&ticks, &mut events, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_follows_a_sentinel_failover() {
    let mut group = redcache_suite::SentinelGroup::start().await;
    let sentinel = &group.sentinel;
    let ns = unique_namespace("pubsub");
    let sentinel_cache = || async {
        Cache::builder()
            .redis_sentinel([sentinel.url()], "mymaster")
            .namespace(ns.as_str())
            .op_timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap()
    };
    let (publisher, subscriber) = (sentinel_cache().await, sentinel_cache().await);
    let mut events = subscriber
        .channel::<u64>("ticks")
        .subscribe()
        .await
        .unwrap()
        .events();
    let ticks = publisher.channel::<u64>("ticks");
    ticks.publish(&1).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert_eq!(first, Some(Event::Message(1)));
    // The sentinel may refuse until it has heard from the replica (NOGOODSLAVE).
    group.fail_over().await;
    let gap = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(Event::Gap(why)) = events.next().await {
                return why;
            }
        }
    })
    .await
    .expect("a gap within 15 s of the failover");
    assert!(!gap.is_empty());
    publish_until_received(&ticks, &mut events, Duration::from_secs(20)).await;
    assert!(
        group.replica.command("ROLE").contains("master"),
        "the replica was promoted"
    );
    group.replica.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_channels_on_a_cluster() {
    let cluster = RedisCluster::shared();
    let ns = unique_namespace("pubsub");
    let cache = || async {
        Cache::builder()
            .redis_cluster(cluster.urls())
            .namespace(ns.as_str())
            .op_timeout(Duration::from_secs(1))
            .build()
            .await
            .unwrap()
    };
    let (publisher, subscriber) = (cache().await, cache().await);
    // Channels on every shard (their names hash to different slots).
    let names: Vec<String> = (0..12).map(|i| format!("orders-{i}")).collect();
    let mut subscriptions = Vec::new();
    for name in &names {
        subscriptions.push(
            subscriber
                .channel::<String>(name)
                .subscribe()
                .await
                .unwrap(),
        );
    }
    for name in &names {
        let got = publisher
            .channel::<String>(name)
            .publish(name)
            .await
            .unwrap();
        assert_eq!(got, 1, "SPUBLISH reached the one subscriber of {name}");
    }
    for (name, subscription) in names.iter().zip(&mut subscriptions) {
        assert_eq!(
            &next(subscription).await,
            name,
            "each channel gets only its own"
        );
    }
    let spublished = cluster
        .nodes()
        .iter()
        .any(|n| n.command("INFO commandstats").contains("cmdstat_spublish"));
    assert!(spublished, "sharded publish was used");
    assert!(matches!(
        subscriber.subscribe_pattern::<String>("orders-*").await,
        Err(redcache::Error::Config(_))
    ));
}

/// A sharded channel's slot given to another node: the old owner drops its
/// subscribers (an unasked `sunsubscribe`); the subscription reports a gap
/// and follows the slot, so later messages arrive without a new subscribe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_subscription_follows_its_slot_to_another_node() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap();
    let ns = unique_namespace("pubsub");
    let cache = || async {
        Cache::builder()
            .redis_cluster(cluster.urls())
            .namespace(ns.as_str())
            .op_timeout(Duration::from_secs(1))
            .build()
            .await
            .unwrap()
    };
    let (publisher, subscriber) = (cache().await, cache().await);
    let ticks = publisher.channel::<u64>("ticks");
    let mut events = subscriber
        .channel::<u64>("ticks")
        .subscribe()
        .await
        .unwrap()
        .events();
    ticks.publish(&1).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert_eq!(first, Some(Event::Message(1)));

    let slot = key_slot(ticks.name());
    let owns = |node: &RedisServer| {
        node.command(&format!("CLUSTER COUNTKEYSINSLOT {slot}"))
            .starts_with(':')
            && !node
                .command(&format!("SPUBLISH {} probe", ticks.name()))
                .starts_with("-MOVED")
    };
    let from_port = cluster
        .nodes()
        .iter()
        .find(|n| owns(n))
        .expect("an owner")
        .port();
    let to = cluster
        .nodes()
        .iter()
        .find(|n| n.port() != from_port)
        .unwrap();
    let to_id = to
        .command("CLUSTER MYID")
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let reply = to.command(&format!("CLUSTER SETSLOT {slot} NODE {to_id}"));
    assert!(reply.starts_with("+OK"), "SETSLOT: {reply}");
    assert!(to.command("CLUSTER BUMPEPOCH").starts_with('+'));
    let gap = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.next().await {
                Some(Event::Gap(why)) => return why,
                Some(_) => {}
                None => panic!("the subscription ended"),
            }
        }
    })
    .await
    .expect("a gap when the slot moved");
    assert!(gap.contains("shard"), "{gap}");
    publish_until_received(&ticks, &mut events, Duration::from_secs(15)).await;
}

/// The primary that owns a sharded channel dies: its replica takes over,
/// the subscription reports a gap and gets messages again from the new
/// primary without a new subscribe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_subscription_survives_a_cluster_failover() {
    let mut cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap();
    let ns = unique_namespace("pubsub");
    let urls = cluster.urls();
    let cache = || async {
        Cache::builder()
            .redis_cluster(urls.clone())
            .namespace(ns.as_str())
            .op_timeout(Duration::from_secs(1))
            .connect_timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap()
    };
    let (publisher, subscriber) = (cache().await, cache().await);
    let ticks = publisher.channel::<u64>("ticks");
    let mut events = subscriber
        .channel::<u64>("ticks")
        .subscribe()
        .await
        .unwrap()
        .events();
    ticks.publish(&1).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert_eq!(first, Some(Event::Message(1)));

    // The channel's primary: the node that answers for its slot (a
    // replica or another primary answers MOVED).
    let port = cluster
        .nodes()
        .iter()
        .find(|n| {
            !n.command(&format!("EXISTS {}", ticks.name()))
                .starts_with("-MOVED")
        })
        .expect("the channel's primary")
        .port();
    cluster
        .nodes_mut()
        .iter_mut()
        .find(|n| n.port() == port)
        .unwrap()
        .stop();
    let gap = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.next().await {
                Some(Event::Gap(why)) => return why,
                Some(_) => {}
                None => panic!("the subscription ended"),
            }
        }
    })
    .await
    .expect("a gap when the primary died");
    assert!(!gap.is_empty());
    tokio::task::block_in_place(|| cluster.wait_until_ok(Duration::from_secs(30)));
    publish_until_received(&ticks, &mut events, Duration::from_secs(30)).await;
}
