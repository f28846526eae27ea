//! A service on 127.0.0.1:0 (gRPC and HTTP) over a temporary config directory, with a
//! manual clock, and a generated tonic client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tailwater_core::clock::ManualClock;
use tailwater_rls::proto::{
    Code, Entry, RateLimitDescriptor, RateLimitRequest, RateLimitResponse, RateLimitServiceClient,
};
use tailwater_rls::{ConfigWatcher, MemoryStore, RateLimiter, Store, serve_grpc, serve_http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "tailwater-rls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write config");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Rls {
    pub client: RateLimitServiceClient<Channel>,
    pub clock: ManualClock,
    pub http: SocketAddr,
    pub watcher: Arc<ConfigWatcher>,
    pub dir: TempDir,
    stop: Vec<oneshot::Sender<()>>,
}

/// Starts the service on the memory store with a manual clock.
pub async fn start(files: &[(&str, &str)]) -> Rls {
    let clock = ManualClock::new();
    let store = Store::Memory(Arc::new(MemoryStore::with_clock(
        10_000,
        Arc::new(clock.clone()),
    )));
    let mut rls = start_with(files, store).await;
    rls.clock = clock;
    rls
}

/// Starts the service on `store`.
pub async fn start_with(files: &[(&str, &str)], store: Store) -> Rls {
    let dir = TempDir::new();
    for (name, text) in files {
        dir.write(name, text);
    }
    let watcher = Arc::new(ConfigWatcher::open(&dir.0).expect("config loads"));
    let limiter = RateLimiter::new(watcher.handle(), store);
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (grpc_addr, http_addr) = (
        grpc.local_addr().expect("addr"),
        http.local_addr().expect("addr"),
    );
    let (tx1, rx1) = oneshot::channel::<()>();
    let (tx2, rx2) = oneshot::channel::<()>();
    let l = limiter.clone();
    tokio::spawn(async move {
        serve_grpc(grpc, l, async {
            let _ = rx1.await;
        })
        .await
        .expect("grpc serves");
    });
    let w = Arc::clone(&watcher);
    tokio::spawn(async move {
        serve_http(http, limiter, Some(w), async {
            let _ = rx2.await;
        })
        .await
        .expect("http serves");
    });
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Rls {
        client: RateLimitServiceClient::new(channel),
        clock: ManualClock::new(),
        http: http_addr,
        watcher,
        dir,
        stop: vec![tx1, tx2],
    }
}

pub fn desc(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        ..Default::default()
    }
}

pub fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>, hits: u32) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: hits,
    }
}

impl Rls {
    pub async fn call(&mut self, req: RateLimitRequest) -> RateLimitResponse {
        self.client
            .should_rate_limit(req)
            .await
            .expect("call succeeds")
            .into_inner()
    }

    /// One call with one descriptor; returns the overall code.
    pub async fn one(&mut self, domain: &str, entries: &[(&str, &str)], hits: u32) -> Code {
        let r = self.call(request(domain, vec![desc(entries)], hits)).await;
        Code::try_from(r.overall_code).expect("code")
    }

    /// An HTTP/1.1 request by hand (method, path, body): (status, body).
    pub async fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.http)
            .await
            .expect("connect");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: rls\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        let status = out
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let body = out
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_owned();
        (status, body)
    }
}

pub fn path(dir: &TempDir, name: &str) -> String {
    Path::new(&dir.0).join(name).display().to_string()
}
