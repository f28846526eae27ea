//! Test helpers: backends of known behaviour and a proxy on 127.0.0.1:0.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tailwater_proxy::{Config, Proxy};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub mod raw;
pub mod tls;

pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

/// A backend on 127.0.0.1:0 with a request counter and a "received" notification.
pub struct Backend {
    pub addr: SocketAddr,
    /// Requests that reached the backend.
    pub received: Arc<AtomicU64>,
    /// Notified for each request received.
    pub arrived: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn backend(handler: Handler) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let received = Arc::new(AtomicU64::new(0));
    let arrived = Arc::new(Notify::new());
    let (r, a) = (Arc::clone(&received), Arc::clone(&arrived));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (h, r, a) = (Arc::clone(&handler), Arc::clone(&r), Arc::clone(&a));
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    r.fetch_add(1, Ordering::SeqCst);
                    a.notify_waiters();
                    let fut = h(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        received,
        arrived,
        task,
    }
}

/// Answers every request with `text` (and the request's HTTP version in `x-version`).
pub async fn text_backend(text: &'static str) -> Backend {
    backend(Arc::new(move |req: Request<Incoming>| {
        let v = format!("{:?}", req.version());
        Box::pin(async move {
            let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
            resp.headers_mut()
                .insert("x-version", v.parse().expect("header value"));
            resp
        })
    }))
    .await
}

/// `workers` workers, each request takes `service` of a worker: capacity = workers / service.
pub async fn capacity_backend(workers: usize, service: Duration) -> Backend {
    let sem = Arc::new(tokio::sync::Semaphore::new(workers));
    backend(Arc::new(move |_req| {
        let sem = Arc::clone(&sem);
        Box::pin(async move {
            let _worker = sem.acquire_owned().await.expect("semaphore open");
            tokio::time::sleep(service).await;
            Response::new(Full::new(Bytes::from_static(b"ok")))
        })
    }))
    .await
}

/// Holds every request until `release` is notified (notify_waiters), then answers "done".
pub async fn gated_backend(release: Arc<Notify>) -> Backend {
    backend(Arc::new(move |_req| {
        let release = Arc::clone(&release);
        Box::pin(async move {
            release.notified().await;
            Response::new(Full::new(Bytes::from_static(b"done")))
        })
    }))
    .await
}

pub struct Running {
    pub addr: SocketAddr,
    pub proxy: Proxy,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), tailwater_proxy::Error>>,
}

impl Running {
    /// Starts the drain and waits (at most `deadline`) for `serve` to return.
    pub async fn shutdown(mut self, deadline: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let res = tokio::time::timeout(deadline, &mut self.task).await;
        let res = res
            .expect("proxy stopped within the deadline")
            .expect("proxy task");
        res.expect("serve returned Ok");
    }
}

pub async fn start_proxy(config: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let proxy = Proxy::new(config).expect("valid config");
    let (tx, rx) = oneshot::channel::<()>();
    let p = proxy.clone();
    let task = tokio::spawn(async move {
        p.serve(listener, async move {
            let _ = rx.await;
        })
        .await
    });
    Running {
        addr,
        proxy,
        stop: Some(tx),
        task,
    }
}

pub fn config(toml: &str) -> Config {
    match Config::from_toml(toml, None) {
        Ok(c) => c,
        Err(e) => panic!("test config invalid: {e}"),
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http()
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// GET `path` on `addr`; returns the response head and the whole body.
pub async fn get(
    client: &TestClient,
    addr: SocketAddr,
    path: &str,
) -> Result<(http::response::Parts, Bytes), Box<dyn std::error::Error + Send + Sync>> {
    let req = Request::get(format!("http://{addr}{path}")).body(Full::new(Bytes::new()))?;
    let resp = client.request(req).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok((parts, bytes))
}

/// Waits for `cond` to hold, checking every few milliseconds, failing after `deadline`.
pub async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
