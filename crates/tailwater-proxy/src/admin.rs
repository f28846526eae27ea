//! The admin listener: `/metrics` (Prometheus text), `/status` (JSON), `/healthz`, `/ready`.
//!
//! Bind it to loopback (the default is 127.0.0.1:9901): it has no authentication.

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::Proxy;

/// The admin routes for `proxy`.
pub fn router(proxy: Proxy) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(proxy)
}

/// Serves the admin routes on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    proxy: Proxy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(proxy))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(proxy): State<Proxy>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        proxy.metrics_text(),
    )
}

async fn status(State(proxy): State<Proxy>) -> impl IntoResponse {
    let body = serde_json::json!({
        "draining": proxy.is_draining(),
        "routes": proxy.status(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&body).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
    )
}

async fn ready(State(proxy): State<Proxy>) -> impl IntoResponse {
    if proxy.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
