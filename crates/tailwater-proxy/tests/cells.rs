//! `[[cell]]` over real sockets (issue 14): a route's requests go to the cell of their key
//! (a header, a path segment or the client's address) as tailwater-core's `CellMap` says,
//! on both engines; each cell admits on its own limiter, so a saturated or dead cell leaves
//! the other cells' keys untouched; and bad `[[cell]]` tables are refused with file:line and
//! the field.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;
use tailwater_core::cell::CellMap;
use tokio::sync::Notify;

const CELLS: [&str; 4] = ["a", "b", "c", "d"];

fn cell_toml(route_upstream: &str, cells: &[(&str, String)], key: &str, lean: bool) -> String {
    let mut t = format!(
        "[server]\nlean_http1 = {lean}\n\n[[route]]\nname = \"api\"\nupstream = \"{route_upstream}\"\nqueue = {{ discipline = \"none\" }}\n[route.limit]\nalgorithm = \"static\"\nlimit = 64\n"
    );
    for (name, upstream) in cells {
        t.push_str(&format!(
            "\n[[cell]]\nroute = \"api\"\nname = \"{name}\"\nkey = \"{key}\"\nupstream = \"{upstream}\"\n"
        ));
    }
    t
}

async fn get_with(
    client: &TestClient,
    addr: std::net::SocketAddr,
    path: &str,
    tenant: Option<&str>,
) -> (u16, String) {
    let mut req = Request::get(format!("http://{addr}{path}"));
    if let Some(t) = tenant {
        req = req.header("x-tenant", t);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn expected(map: &CellMap, key: &str) -> &'static str {
    let name = map.name(map.route(key.as_bytes()).expect("cells active"));
    CELLS
        .iter()
        .find(|c| **c == name)
        .copied()
        .expect("known cell")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_cell_of_their_key_on_both_engines() {
    let backends = [
        text_backend("a").await,
        text_backend("b").await,
        text_backend("c").await,
        text_backend("d").await,
    ];
    let fallback = text_backend("route").await;
    let map = CellMap::new(CELLS.map(|c| (c, 1.0))).expect("map");
    let cells: Vec<(&str, String)> = CELLS
        .iter()
        .zip(&backends)
        .map(|(c, b)| (*c, format!("http://{}", b.addr)))
        .collect();
    for lean in [true, false] {
        // By header.
        let toml = cell_toml(
            &format!("http://{}", fallback.addr),
            &cells,
            "header:x-tenant",
            lean,
        );
        let proxy = start_proxy(config(&toml)).await;
        let client = client();
        let mut hit = std::collections::HashSet::new();
        for i in 0..40 {
            let tenant = format!("tenant-{i}");
            let (status, body) = get_with(&client, proxy.addr, "/x", Some(&tenant)).await;
            assert_eq!(status, 200);
            assert_eq!(body, expected(&map, &tenant), "lean={lean} {tenant}");
            // Stable: the same key again lands in the same cell.
            let (_, again) = get_with(&client, proxy.addr, "/y", Some(&tenant)).await;
            assert_eq!(again, body);
            hit.insert(body);
        }
        assert_eq!(hit.len(), 4, "40 tenants spread over all four cells");
        // No header: the empty key, one cell for all of them.
        let (_, none) = get_with(&client, proxy.addr, "/x", None).await;
        assert_eq!(none, expected(&map, ""));
        // The cells' routes are listed in /status under ROUTE:CELL.
        let names: Vec<String> = proxy.proxy.status().into_iter().map(|r| r.name).collect();
        for c in CELLS {
            assert!(names.contains(&format!("api:{c}")), "{names:?}");
        }
        proxy.shutdown(Duration::from_secs(5)).await;

        // By path segment: /t/<tenant>/... with `path:2`.
        let toml = cell_toml(&format!("http://{}", fallback.addr), &cells, "path:2", lean);
        let proxy = start_proxy(config(&toml)).await;
        for i in 0..20 {
            let tenant = format!("acme-{i}");
            let (status, body) =
                get_with(&client, proxy.addr, &format!("/t/{tenant}/orders"), None).await;
            assert_eq!(status, 200);
            assert_eq!(body, expected(&map, &tenant), "lean={lean} path {tenant}");
        }
        proxy.shutdown(Duration::from_secs(5)).await;

        // By client address: this test's client is 127.0.0.1.
        let toml = cell_toml(
            &format!("http://{}", fallback.addr),
            &cells,
            "client_ip",
            lean,
        );
        let proxy = start_proxy(config(&toml)).await;
        let (_, body) = get_with(&client, proxy.addr, "/x", Some("tenant-1")).await;
        assert_eq!(body, expected(&map, "127.0.0.1"));
        proxy.shutdown(Duration::from_secs(5)).await;
    }
    assert_eq!(
        fallback.received.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request fell back to the route's own upstream"
    );
}

/// Tenant keys of a given cell.
fn tenants_of(map: &CellMap, cell: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("tenant-{i}"))
        .filter(|k| map.name(map.route(k.as_bytes()).expect("active")) == cell)
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_or_dead_cell_leaves_the_other_cells_admitting() {
    // Cell a's backend holds every request; cell b's answers at once; cell c has no
    // backend at all (a port nobody listens on).
    let release = Arc::new(Notify::new());
    let held = gated_backend(Arc::clone(&release)).await;
    let fast = text_backend("b").await;
    let refused = tailwater_test::port::RefusedPort::new().expect("port");
    let dead = refused.addr();
    let toml = format!(
        r#"
[[route]]
name = "api"
upstream = "http://{fast}"
queue = {{ discipline = "none" }}
[route.limit]
algorithm = "static"
limit = 4

[[cell]]
route = "api"
name = "a"
key = "header:x-tenant"
upstream = "http://{held}"

[[cell]]
route = "api"
name = "b"
key = "header:x-tenant"
upstream = "http://{fast}"

[[cell]]
route = "api"
name = "c"
key = "header:x-tenant"
upstream = "http://{dead}"
"#,
        fast = fast.addr,
        held = held.addr,
    );
    let proxy = start_proxy(config(&toml)).await;
    let map = CellMap::new([("a", 1.0), ("b", 1.0), ("c", 1.0)]).expect("map");
    let (in_a, in_b, in_c) = (
        tenants_of(&map, "a", 8),
        tenants_of(&map, "b", 8),
        tenants_of(&map, "c", 4),
    );
    let client = client();
    // Fill cell a: its own limit of 4 (each cell has its own limiter).
    let mut hanging = Vec::new();
    for t in in_a.iter().take(4) {
        let (c, addr, t) = (client.clone(), proxy.addr, t.clone());
        hanging.push(tokio::spawn(async move {
            get_with(&c, addr, "/", Some(&t)).await
        }));
    }
    eventually(Duration::from_secs(5), || {
        held.received.load(std::sync::atomic::Ordering::SeqCst) == 4
    })
    .await;
    // Cell a refuses the next of its tenants at once...
    for t in &in_a[4..] {
        let (status, _) = get_with(&client, proxy.addr, "/", Some(t)).await;
        assert_eq!(status, 503, "cell a is full");
    }
    // ...cell c's dead backend answers 502...
    for t in &in_c {
        let (status, _) = get_with(&client, proxy.addr, "/", Some(t)).await;
        assert_eq!(status, 502, "cell c's backend is dead");
    }
    // ...and every tenant of cell b is served.
    for t in &in_b {
        let (status, body) = get_with(&client, proxy.addr, "/", Some(t)).await;
        assert_eq!((status, body.as_str()), (200, "b"), "cell b is untouched");
    }
    // A permit is released once the proxy has written the response's last byte, which can
    // be just after the client has read it: cell b's counts are awaited, then checked.
    let cell_b_settled = || {
        let status = proxy.proxy.status();
        let b = status
            .iter()
            .find(|r| r.name == "api:b")
            .expect("cell listed");
        b.in_flight == 0 && b.success == 8
    };
    eventually(Duration::from_secs(5), cell_b_settled).await;
    let status = proxy.proxy.status();
    let of = |n: &str| status.iter().find(|r| r.name == n).expect("cell listed");
    assert_eq!(of("api:a").in_flight, 4);
    assert_eq!(of("api:b").in_flight, 0);
    assert_eq!(of("api:b").success, 8);
    release.notify_waiters();
    for h in hanging {
        assert_eq!(h.await.expect("task").0, 200);
    }
    proxy.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn bad_cells_are_refused_with_the_line_and_the_field() {
    let base = "[[route]]\nname = \"api\"\nupstream = \"http://127.0.0.1:1\"\n";
    let cases = [
        (
            "[[cell]]\nroute = \"nope\"\nname = \"a\"\nkey = \"client_ip\"\nupstream = \"http://127.0.0.1:2\"\n",
            "cell[0].route",
            5,
        ),
        (
            "[[cell]]\nroute = \"api\"\nname = \"a\"\nkey = \"client_ip\"\nweight = -1.0\nupstream = \"http://127.0.0.1:2\"\n",
            "cell[0].weight",
            8,
        ),
        (
            "[[cell]]\nroute = \"api\"\nname = \"a\"\nkey = \"client_ip\"\nupstream = \"http://127.0.0.1:2\"\n[[cell]]\nroute = \"api\"\nname = \"b\"\nkey = \"path:1\"\nupstream = \"http://127.0.0.1:3\"\n",
            "cell[1].key",
            12,
        ),
        (
            "[[cell]]\nroute = \"api\"\nname = \"a\"\nkey = \"client_ip\"\nupstream = \"http://127.0.0.1:2\"\n[[cell]]\nroute = \"api\"\nname = \"a\"\nkey = \"client_ip\"\nupstream = \"http://127.0.0.1:3\"\n",
            "cell[1].name",
            11,
        ),
        (
            "[[cell]]\nroute = \"api\"\nname = \"a\"\nkey = \"client_ip\"\ndrain = 2.0\nupstream = \"http://127.0.0.1:2\"\n",
            "cell[0].drain",
            8,
        ),
    ];
    for (cell, field, line) in cases {
        let src = format!("{base}{cell}");
        let err = tailwater_proxy::Config::from_toml(&src, None).expect_err(field);
        assert_eq!(err.field(), field, "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
    }
    // A key that is not one of the three forms: a parse error at its line.
    let src = format!(
        "{base}[[cell]]\nroute = \"api\"\nname = \"a\"\nkey = \"cookie:x\"\nupstream = \"http://127.0.0.1:2\"\n"
    );
    let err = tailwater_proxy::Config::from_toml(&src, None).expect_err("bad key");
    assert_eq!(err.line(), Some(7), "{err}");
    assert!(err.message().contains("header:<name>"), "{err}");
}
