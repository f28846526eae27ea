//! An axum 0.8 server behind tailwater's layers.
//!
//! Outermost first:
//! 1. per-client rate limit: 20 requests/s with a burst of 40 per peer IP (axum's
//!    `ConnectInfo`), answered with `429` + `Retry-After` + `RateLimit-Policy` / `RateLimit`;
//! 2. criticality from `x-criticality` (clients may not claim more than `critical`);
//! 3. adaptive concurrency (Gradient2 with tiers), waiting up to 50 ms in a CoDel queue,
//!    answered with `503` + `Retry-After` when shed. `/stream` shows the permit being held
//!    until the streamed body ends.
//!
//! Run: `cargo run -p tailwater-tower --example axum_server -- 127.0.0.1:3000`, then
//! `curl -i localhost:3000/` or `curl -N localhost:3000/stream`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use bytes::Bytes;
use http_body::Frame;
use tailwater_core::algorithm::Gradient2;
use tailwater_core::clock::Clock;
use tailwater_core::limiter::QueueConfig;
use tailwater_core::rate::{KeyedLimiter, MemoryStore, Quota};
use tailwater_core::{Criticality, Limiter, TierThresholds};
use tailwater_tower::{ConcurrencyLayer, CriticalityLayer, RateLimitLayer};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tower::ServiceBuilder;

/// The peer IP from axum's `ConnectInfo` (serve with `into_make_service_with_connect_info`).
fn peer_ip(req: &http::request::Parts) -> Option<String> {
    let ConnectInfo(addr) = req.extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(addr.ip().to_string())
}

/// The application with its layers.
pub(crate) fn app<C: Clock>(limiter: Limiter<C>, per_client: Quota) -> Router {
    let store = MemoryStore::new(
        KeyedLimiter::<String>::builder(per_client)
            .max_keys(100_000)
            .build()
            .expect("valid keyed limiter"),
    );
    let layers = ServiceBuilder::new()
        .layer(
            RateLimitLayer::new(store, per_client, peer_ip as fn(&_) -> _)
                .policy_names(["per-client"])
                .expect("one name for one quota")
                .route("api"),
        )
        .layer(CriticalityLayer::new().ceiling(Criticality::Critical))
        .layer(
            ConcurrencyLayer::new(limiter)
                .wait(Duration::from_millis(50))
                .route("api"),
        );
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/stream", get(|| async { Body::new(Ticks::new(5)) }))
        .layer(layers)
}

/// A body of `n` chunks, 100 ms apart.
struct Ticks {
    left: u32,
    sleep: Pin<Box<Sleep>>,
}

impl Ticks {
    fn new(n: u32) -> Self {
        Self {
            left: n,
            sleep: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
        }
    }
}

impl http_body::Body for Ticks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + Duration::from_millis(100);
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!(
            "tick {}\n",
            self.left
        ))))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let limiter = Limiter::builder()
        .algorithm(Gradient2::default())
        .tiers(TierThresholds::default())
        .queue(QueueConfig::codel(64)?)
        .build()?;
    let per_client = Quota::per_second(20)?.with_burst(40)?;
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        app(limiter, per_client).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
