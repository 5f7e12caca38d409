//! An HTTP service on redcache: a cached product endpoint (tagged by
//! category), an admin endpoint that invalidates a category, a
//! rate-limited search that answers 429 with the RateLimit header fields,
//! and login / whoami / logout on sessions that redcache stores
//! (`TowerSessionStore`, for tower-sessions).
//!
//! ```text
//! cargo run --example axum_service                                   # embedded backend
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example axum_service  # on Redis
//! curl -i 'localhost:3000/products/42?category=7'                    # x-cache: miss, then hit
//! curl -i -X POST localhost:3000/admin/categories/7/invalidate
//! curl -i 'localhost:3000/search?user=1&q=lamp'                      # 429 after 5 a minute
//! curl -i -c jar -X POST 'localhost:3000/login?user=ada'             # a new session id
//! curl -i -b jar localhost:3000/whoami                               # ada
//! curl -i -b jar -X POST localhost:3000/logout                       # then whoami: 401
//! ```
//!
//! `PORT` sets the port (default 3000; 0 picks a free one). The address is
//! printed as `listening on http://ADDR` once the service accepts requests.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redcache::{Cache, RateLimited};
use serde::{Deserialize, Serialize};
use tower_sessions::{Session, SessionManagerLayer};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    category: u64,
    name: String,
}

#[derive(Deserialize)]
struct CategoryQuery {
    category: u64,
}

#[derive(Deserialize)]
struct LoginQuery {
    user: String,
}

#[derive(Deserialize)]
struct SearchQuery {
    user: u64,
    q: String,
}

/// The service's errors; a refused rate limit renders as a 429.
enum ApiError {
    Limited(RateLimited),
}

impl From<RateLimited> for ApiError {
    fn from(limited: RateLimited) -> Self {
        ApiError::Limited(limited)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Limited(limited) => limited.into_response(),
        }
    }
}

/// Stands for a slow database query.
async fn load_product(id: u64, category: u64) -> Result<Product, ApiError> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(Product {
        id,
        category,
        name: format!("desk lamp #{id}"),
    })
}

async fn product(
    State(cache): State<Cache>,
    Path(id): Path<u64>,
    Query(query): Query<CategoryQuery>,
) -> Result<Response, ApiError> {
    let category = query.category;
    let mut loaded = false;
    let product = redcache::get_or_load!(
        ttl = "5m",
        key = "product:<id>",
        tags = ["category:<category>"],
        cache = cache,
        async {
            loaded = true;
            load_product(id, category).await
        }
    )
    .await?;
    let outcome = if loaded { "miss" } else { "hit" };
    Ok(([("x-cache", outcome)], Json(product)).into_response())
}

async fn invalidate_category(State(cache): State<Cache>, Path(category): Path<u64>) -> StatusCode {
    match cache
        .invalidate_tag(&redcache::key!("category:<category>"))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT,
        // The caller must know the invalidation did not happen (yet).
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[redcache::rate_limited(limit = 5, window = "60s", key = "user:<user>")]
async fn search_index(user: u64, q: String) -> Result<Vec<String>, ApiError> {
    Ok(vec![format!("{q} (for user {user})")])
}

async fn search(Query(query): Query<SearchQuery>) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(search_index(query.user, query.q).await?))
}

/// Logs `user` in (a real service checks a password first): a new
/// session id, against fixation, holding the user.
async fn login(session: Session, Query(query): Query<LoginQuery>) -> Result<String, StatusCode> {
    session
        .cycle_id()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    session
        .insert("user", &query.user)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(format!("logged in as {}", query.user))
}

async fn whoami(session: Session) -> Result<String, StatusCode> {
    match session.get::<String>("user").await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(StatusCode::UNAUTHORIZED),
        Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

async fn logout(session: Session) -> StatusCode {
    match session.flush().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::builder()
        .url_from_env()
        .namespace("axum-example")
        .build()
        .await?;
    redcache::set_global(cache.clone());
    let app = Router::new()
        .route("/products/{id}", get(product))
        .route(
            "/admin/categories/{category}/invalidate",
            post(invalidate_category),
        )
        .route("/search", get(search))
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        // Plain HTTP on localhost here; `Secure` cookies in production.
        .layer(SessionManagerLayer::new(cache.tower_session_store()).with_secure(false))
        .with_state(cache.clone());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{} ({cache:?})", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
