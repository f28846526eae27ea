//! The admin listener's own limits (issue 11, item 5c): a connection cap and a head/idle
//! timeout, so idle admin connections cannot take the main listener's file descriptors.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tailwater_proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

async fn start_admin(admin_toml: &str) -> (SocketAddr, oneshot::Sender<()>) {
    let cfg = config(&format!(
        "[admin]\n{admin_toml}\n[[route]]\nupstream = \"http://127.0.0.1:9\"\n"
    ));
    let proxy = Proxy::new(cfg).expect("valid config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(tailwater_proxy::admin::serve(listener, proxy, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Reads until EOF or `deadline`: whether the server closed.
async fn closed_within(s: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn idle_admin_connections_are_closed() {
    let (addr, _stop) = start_admin("header_read_timeout = \"200ms\"").await;
    // Never a byte.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    // One request, then idle on keep-alive.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = idle.read(&mut buf).await.expect("response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn admin_connections_are_capped() {
    let (addr, _stop) = start_admin("max_connections = 2\nheader_read_timeout = \"10s\"").await;
    let holders = [
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect"),
    ];
    let mut third = TcpStream::connect(addr).await.expect("connect (backlog)");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    // Over the cap: not served while both slots are held.
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    drop(holders);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a slot freed")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
}
