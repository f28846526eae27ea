//! TLS on the proxy's listener, over real sockets with the test certificates
//! (`tailwater_test::tls_dir()`): HTTP/1.1 and h2 by ALPN, SNI, client certificates, a
//! stalled handshake, bad files and reload.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Handler, backend, config, start_proxy};
use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

fn tls_file(name: &str) -> String {
    tailwater_test::tls_dir().join(name).display().to_string()
}

/// A backend that answers with the `Forwarded` header it received.
async fn echo_forwarded() -> common::Backend {
    let handler: Handler = Arc::new(|req| {
        let fwd = req
            .headers()
            .get("forwarded")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Box::pin(async move { Response::new(Full::new(Bytes::from(fwd))) })
    });
    backend(handler).await
}

fn proxy_toml(upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
header_read_timeout = "300ms"

[server.tls]
cert = "{}"
key = "{}"
{extra}

[[route]]
name = "all"
upstream = "http://{upstream}"
"#,
        tls_file("server.pem"),
        tls_file("server.key"),
    )
}

fn client_config(alpn: &[u8], client_cert: bool) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(tls_file("ca.pem")).expect("ca") {
        roots.add(c.expect("cert")).expect("root");
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = if client_cert {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(tls_file("client.pem"))
                .expect("client cert")
                .collect::<Result<_, _>>()
                .expect("client cert");
        let key = PrivateKeyDer::from_pem_file(tls_file("client.key")).expect("client key");
        b.with_client_auth_cert(chain, key).expect("client auth")
    } else {
        b.with_no_client_auth()
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg
}

async fn handshake(
    addr: std::net::SocketAddr,
    name: &str,
    cfg: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    connector
        .connect(ServerName::try_from(name.to_string()).expect("name"), tcp)
        .await
}

/// One GET over `tls`, HTTP/1.1 or h2; returns (status, body).
async fn get(tls: tokio_rustls::client::TlsStream<TcpStream>, h2: bool) -> (u16, String) {
    let req = http::Request::get(if h2 { "https://localhost/" } else { "/" })
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        send.send_request(req).await.expect("h2 response")
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        send.send_request(req).await.expect("response")
    };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_http1_and_h2_reach_the_upstream_marked_https() {
    let up = echo_forwarded().await;
    let proxy = start_proxy(config(&proxy_toml(up.addr, ""))).await;
    for h2 in [false, true] {
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let tls = handshake(proxy.addr, "localhost", client_config(alpn, false))
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let (status, forwarded) = get(tls, h2).await;
        assert_eq!(status, 200);
        assert!(
            forwarded.ends_with("proto=https;host=\"localhost\""),
            "{forwarded}"
        );
    }
    assert_eq!(up.received.load(std::sync::atomic::Ordering::Relaxed), 2);
}

/// SNI picks the certificate: `other.test` gets `other.pem` (a client checking that name
/// accepts it), anything else the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate() {
    let up = echo_forwarded().await;
    let extra = format!(
        "[[server.tls.sni]]\nname = \"other.test\"\ncert = \"{}\"\nkey = \"{}\"\n",
        tls_file("other.pem"),
        tls_file("other.key")
    );
    let proxy = start_proxy(config(&proxy_toml(up.addr, &extra))).await;
    let tls = handshake(proxy.addr, "other.test", client_config(b"http/1.1", false))
        .await
        .expect("other.test is served its own certificate");
    assert_eq!(get(tls, false).await.0, 200);
    let tls = handshake(proxy.addr, "localhost", client_config(b"http/1.1", false))
        .await
        .expect("the default certificate for localhost");
    assert_eq!(get(tls, false).await.0, 200);
}

/// With `client_ca`, a client without a certificate is refused at the handshake and never
/// reaches the upstream; one with a certificate from that CA gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_configured() {
    let up = echo_forwarded().await;
    let extra = format!("client_ca = \"{}\"", tls_file("ca.pem"));
    let proxy = start_proxy(config(&proxy_toml(up.addr, &extra))).await;
    // TLS 1.3: the server's refusal arrives after the client's handshake completes, at the
    // first read; either way no request gets an answer.
    let refused = match handshake(proxy.addr, "localhost", client_config(b"http/1.1", false)).await
    {
        Err(_) => true,
        Ok(tls) => {
            let req = http::Request::get("/")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .expect("request");
            match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await {
                Err(_) => true,
                Ok((mut send, conn)) => {
                    tokio::spawn(conn);
                    send.send_request(req).await.is_err()
                }
            }
        }
    };
    assert!(refused, "a client without a certificate was served");
    let tls = handshake(proxy.addr, "localhost", client_config(b"http/1.1", true))
        .await
        .expect("handshake with a client certificate");
    assert_eq!(get(tls, false).await.0, 200);
    assert_eq!(up.received.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// A client that connects and never starts the handshake is closed after
/// `header_read_timeout`, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_and_counted() {
    let up = echo_forwarded().await;
    let proxy = start_proxy(config(&proxy_toml(up.addr, ""))).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed by the proxy within its deadline");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let metrics = proxy.proxy.metrics_text();
    assert!(
        metrics.contains("tailwater_tls_handshake_failures_total 1"),
        "{metrics}"
    );
}

/// Unreadable or mismatched files refuse the configuration, naming the field; a reload
/// with a bad certificate keeps the running one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_name_the_field_and_reload_keeps_the_running_one() {
    let up = echo_forwarded().await;
    let good = proxy_toml(up.addr, "");
    let missing = good.replace(&tls_file("server.pem"), "/nonexistent/cert.pem");
    let err = tailwater_proxy::Config::from_toml(&missing, None).expect_err("refused");
    assert_eq!(err.field(), "server.tls.cert", "{err}");
    assert_eq!(err.line(), Some(6), "{err}");
    let mismatched = good.replace(&tls_file("server.key"), &tls_file("other.key"));
    let err = tailwater_proxy::Config::from_toml(&mismatched, None).expect_err("refused");
    assert_eq!(err.field(), "server.tls.key", "{err}");

    let proxy = start_proxy(config(&good)).await;
    let mut bad = config(&good);
    if let Some(tls) = bad.server.tls.as_mut() {
        tls.cert = "/nonexistent/cert.pem".into();
    }
    let err = proxy
        .proxy
        .reload(bad)
        .expect_err("a reload with a missing certificate");
    assert_eq!(err.field(), "server.tls.cert", "{err}");
    let tls = handshake(proxy.addr, "localhost", client_config(b"http/1.1", false))
        .await
        .expect("still served with the running certificate");
    assert_eq!(get(tls, false).await.0, 200);
}
