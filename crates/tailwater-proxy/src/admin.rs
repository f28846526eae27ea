//! The admin listener: `/metrics` (Prometheus text), `/status` (JSON), `/healthz`, `/ready`.
//!
//! Bind it to loopback (the default is 127.0.0.1:9901): it has no authentication.
//!
//! It has limits of its own (`[admin]`): at most `max_connections` connections (further
//! ones wait in the kernel's backlog), and `header_read_timeout` both for a request head
//! and for idleness between requests. Without them, idle admin connections could take the
//! file descriptors the main listener needs (issue 11: 1,100 of them made it fail with
//! "Too many open files").

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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

/// Serves the admin routes on `listener` until `shutdown` resolves, within the proxy's
/// `[admin]` limits (connection cap, head and idle timeout); then stops accepting and
/// gives open connections up to a second to finish.
pub async fn serve(
    listener: TcpListener,
    proxy: Proxy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let limits = proxy.config().admin;
    let app = router(proxy);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // HTTP/1.1 only: the auto builder's protocol sniffing would wait for a first byte
    // without a deadline.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(16 * 1024);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let svc = TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    Ok(())
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
