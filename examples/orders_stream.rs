//! Orders through a stream, billed by a consumer group, with a price
//! change fanned out over pub/sub.
//!
//! ```text
//! cargo run --example orders_stream                                   # embedded backend, no server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example orders_stream  # on Redis (or REDCACHE_URL)
//! ```
//!
//! Two billing consumers share the group `billing`: each order is billed
//! once, a card that fails is retried with backoff, and one that keeps
//! failing ends in the dead-letter stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redcache::{Cache, Delivery};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
    cents: u64,
    card: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PriceChanged {
    product: u64,
    cents: u64,
}

#[derive(Debug)]
struct Declined(String);

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "card {} declined", self.0)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::builder()
        .url_from_env() // REDCACHE_URL, else REDIS_URL, else the embedded backend
        .namespace("orders-example")
        .build()
        .await?;

    // Pub/sub: fire and forget, to whoever listens now.
    let prices = cache.channel::<PriceChanged>("prices");
    let mut changes = prices.subscribe().await?;
    prices
        .publish(&PriceChanged {
            product: 7,
            cents: 1_999,
        })
        .await?;
    if let Some(change) = changes.next().await {
        println!(
            "price of product {} is now {} cents",
            change.product, change.cents
        );
    }

    // A stream: kept until handled, at least once.
    let orders = cache.stream::<Order>("orders").max_len(10_000);
    let billed = Arc::new(AtomicU64::new(0));
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let billed = Arc::clone(&billed);
        let consumer = orders
            .consumer("billing")
            .concurrency(4)
            .block(Duration::from_millis(100))
            .max_deliveries(3)
            .retry_backoff(Duration::from_millis(50))
            .start(move |order: Delivery<Order>| {
                let billed = Arc::clone(&billed);
                async move {
                    if order.value.card == "0000" {
                        return Err(Declined(order.value.card));
                    }
                    // Charge here, idempotently (keyed by order.value.id).
                    billed.fetch_add(order.value.cents, Ordering::Relaxed);
                    Ok(())
                }
            })
            .await?;
        consumers.push(consumer);
    }
    for id in 1..=20 {
        let card = if id == 13 { "0000" } else { "4242" };
        orders
            .emit(&Order {
                id,
                cents: 100 * id,
                card: card.into(),
            })
            .await?;
    }
    // Wait until every order is billed or dead.
    for _ in 0..100 {
        let handled: u64 = consumers.iter().map(|c| c.stats().handled).sum();
        let dead: u64 = consumers.iter().map(|c| c.stats().dead_lettered).sum();
        if handled + dead == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for consumer in consumers {
        let name = consumer.name().to_string();
        let stats = consumer.shutdown().await;
        println!(
            "consumer {name}: billed {}, failed {}, retried {}, dead-lettered {}",
            stats.handled, stats.failed, stats.retried, stats.dead_lettered
        );
    }
    println!("billed {} cents in all", billed.load(Ordering::Relaxed));
    for dead in orders.dead_letters(10).await? {
        println!(
            "dead letter: order {} ({}) after {} deliveries",
            dead.value.map_or(0, |o| o.id),
            dead.error,
            dead.deliveries
        );
    }
    Ok(())
}
