//! `https://` upstreams over real sockets with the test certificates
//! (`tailwater_test::tls_dir()`): the upstream is a second proxy serving TLS in front of a
//! plain backend. Verification against a CA file, SNI names, client certificates, errors
//! naming the field and line, and reload.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Handler, backend, client, config, get, start_proxy};
use http_body_util::Full;
use hyper::Response;

const WAIT: Duration = Duration::from_secs(10);

fn tls_file(name: &str) -> String {
    tailwater_test::tls_dir().join(name).display().to_string()
}

/// A plain backend answering `hello over tls`.
async fn hello() -> common::Backend {
    let handler: Handler = Arc::new(|_req| {
        Box::pin(async move { Response::new(Full::new(Bytes::from_static(b"hello over tls"))) })
    });
    backend(handler).await
}

/// A proxy serving TLS (`server.pem`, for `localhost`) in front of `upstream`; `client_ca`
/// requires client certificates.
async fn tls_front(upstream: std::net::SocketAddr, client_ca: bool) -> common::Running {
    let ca = if client_ca {
        format!("client_ca = \"{}\"\n", tls_file("ca.pem"))
    } else {
        String::new()
    };
    start_proxy(config(&format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{ca}\n[[route]]\nupstream = \"http://{upstream}\"\n",
        tls_file("server.pem"),
        tls_file("server.key"),
    )))
    .await
}

/// The proxy under test: one route to `https://localhost:<port of front>` with `tls`
/// lines under `[route.tls]`.
fn edge_toml(front: std::net::SocketAddr, lean: bool, tls: &str) -> String {
    format!(
        "[server]\nlean_http1 = {lean}\n[upstream]\nrequest_timeout = \"5s\"\n\
         [[route]]\nname = \"secure\"\nupstream = \"https://localhost:{}\"\n[route.tls]\n{tls}\n",
        front.port()
    )
}

fn trust_ca() -> String {
    format!("system_roots = false\nca = \"{}\"\n", tls_file("ca.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_verified_with_a_ca_file_on_both_engines() {
    let plain = hello().await;
    let front = tls_front(plain.addr, false).await;
    for lean in [true, false] {
        let edge = start_proxy(config(&edge_toml(front.addr, lean, &trust_ca()))).await;
        let c = client();
        for _ in 0..3 {
            let (parts, body) = get(&c, edge.addr, "/x").await.expect("answered");
            assert_eq!(parts.status, 200, "lean={lean}");
            assert_eq!(&body[..], b"hello over tls", "lean={lean}");
        }
        // The front saw requests arriving over TLS.
        let status = edge.proxy.status();
        assert_eq!(status[0].admitted, 3, "lean={lean}");
        edge.shutdown(WAIT).await;
    }
    assert_eq!(front.proxy.status()[0].admitted, 6);
    front.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_fails_verification_is_502_and_never_sees_the_request() {
    let plain = hello().await;
    let front = tls_front(plain.addr, false).await;
    for tls in [
        // System roots only: the test CA is not among them.
        String::new(),
        // The right CA, but the certificate is not for this name (SNI and verification).
        format!("{}server_name = \"other.test\"\n", trust_ca()),
    ] {
        let edge = start_proxy(config(&edge_toml(front.addr, true, &tls))).await;
        let (parts, _) = get(&client(), edge.addr, "/x").await.expect("answered");
        assert_eq!(parts.status, 502, "{tls}");
        edge.shutdown(WAIT).await;
    }
    assert_eq!(
        front.proxy.status()[0].admitted,
        0,
        "no request got through"
    );
    front.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_when_configured() {
    let plain = hello().await;
    let front = tls_front(plain.addr, true).await;
    let without = start_proxy(config(&edge_toml(front.addr, true, &trust_ca()))).await;
    let (parts, _) = get(&client(), without.addr, "/x").await.expect("answered");
    assert_eq!(parts.status, 502, "the front requires a client certificate");
    without.shutdown(WAIT).await;
    let with = format!(
        "{}cert = \"{}\"\nkey = \"{}\"\n",
        trust_ca(),
        tls_file("client.pem"),
        tls_file("client.key")
    );
    let edge = start_proxy(config(&edge_toml(front.addr, true, &with))).await;
    let (parts, body) = get(&client(), edge.addr, "/x").await.expect("answered");
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], b"hello over tls");
    edge.shutdown(WAIT).await;
    front.shutdown(WAIT).await;
}

#[test]
fn bad_tls_settings_name_the_field_and_line() {
    let front: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
    for (tls, field, line) in [
        (
            "ca = \"/nonexistent/ca.pem\"\n".to_owned(),
            "route[0].tls.ca",
            Some(9),
        ),
        (
            format!("cert = \"{}\"\n", tls_file("client.pem")),
            "route[0].tls.key",
            None,
        ),
        ("system_roots = false\n".to_owned(), "route[0].tls.ca", None),
        (
            format!("{}server_name = \"not a name\"\n", trust_ca()),
            "route[0].tls.server_name",
            Some(11),
        ),
        (
            format!(
                "{}cert = \"{}\"\nkey = \"{}\"\n",
                trust_ca(),
                tls_file("client.pem"),
                tls_file("server.key")
            ),
            "route[0].tls.key",
            Some(12),
        ),
    ] {
        let toml = edge_toml(front, true, &tls);
        let err = tailwater_proxy::Config::from_toml(&toml, None).expect_err(&tls);
        assert_eq!(err.field(), field, "{tls}: {err}");
        if line.is_some() {
            assert_eq!(err.line(), line, "{tls}: {err}\n{toml}");
        }
    }
    let plain_with_tls = "[[route]]\nupstream = \"http://127.0.0.1:9\"\n[route.tls]\n";
    let err = tailwater_proxy::Config::from_toml(plain_with_tls, None).expect_err("http + tls");
    assert_eq!(err.field(), "route[0].tls");
    let mixed = "[[route]]\nupstream = [\"http://127.0.0.1:9\", \"https://127.0.0.1:10\"]\n";
    let err = tailwater_proxy::Config::from_toml(mixed, None).expect_err("mixed");
    assert_eq!(err.field(), "route[0].upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rereads_the_ca() {
    let plain = hello().await;
    let front = tls_front(plain.addr, false).await;
    let edge = start_proxy(config(&edge_toml(front.addr, true, ""))).await;
    let (parts, _) = get(&client(), edge.addr, "/x").await.expect("answered");
    assert_eq!(parts.status, 502, "not trusted yet");
    // What SIGHUP does: read the file again.
    let dir = std::env::temp_dir().join(format!("tw-upstream-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("proxy.toml");
    std::fs::write(&file, edge_toml(front.addr, true, &trust_ca())).expect("write");
    edge.proxy.reload_from_file(&file).expect("reload");
    let (parts, body) = get(&client(), edge.addr, "/x").await.expect("answered");
    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], b"hello over tls");
    // A bad file keeps the running configuration.
    std::fs::write(
        &file,
        edge_toml(front.addr, true, "ca = \"/nonexistent/ca.pem\"\n"),
    )
    .expect("write");
    let err = edge.proxy.reload_from_file(&file).expect_err("bad CA file");
    assert_eq!(err.field(), "route[0].tls.ca");
    assert_eq!(err.line(), Some(9), "{err}");
    let (parts, _) = get(&client(), edge.addr, "/x").await.expect("answered");
    assert_eq!(parts.status, 200, "still the previous configuration");
    let _ = std::fs::remove_dir_all(&dir);
    edge.shutdown(WAIT).await;
    front.shutdown(WAIT).await;
}
