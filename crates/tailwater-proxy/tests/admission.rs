//! The shared admission steps on both engines (the lean HTTP/1.1 path and hyper's,
//! `server.lean_http1 = false`): the tier ceiling with its trusted sources
//! (`[route.criticality]`), and rate limits whose state is in Redis
//! (`[[route.rate_limit]] store = "redis"` / `"redis-leased"`), against a real
//! `redis-server` from tailwater-test's launcher (skipped loudly without one; a failure
//! under `TAILWATER_REQUIRE_REDIS=1`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tailwater_test::redis::{RedisServer, redis_available};

const ENGINES: [bool; 2] = [true, false];

/// GET `/` with `headers`: the status and the response head.
async fn send(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, http::HeaderMap) {
    let mut req = Request::get(format!("http://{addr}/"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client()
        .request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let (parts, body) = resp.into_parts();
    let _ = body.collect().await.expect("body");
    (parts.status.as_u16(), parts.headers)
}

/// The `tailwater_requests_total` lines of the route's successes.
fn successes(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("tailwater_requests_total{") && l.contains("outcome=\"success\""))
        .filter(|l| !l.ends_with(" 0"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_above_the_ceiling_is_lowered_unless_the_client_is_trusted() {
    let up = text_backend("ok").await;
    for lean in ENGINES {
        for (trusted, want) in [
            ("", "sheddable_plus"),
            ("trusted_sources = [\"10.0.0.0/8\"]", "sheddable_plus"),
            ("trusted_sources = [\"127.0.0.0/8\"]", "critical_plus"),
            ("trusted_sources = [\"::ffff:127.0.0.1\"]", "critical_plus"),
        ] {
            let toml = format!(
                "[server]\nlean_http1 = {lean}\n[[route]]\nupstream = \"http://{}\"\n\
                 [route.criticality]\nceiling = \"sheddable_plus\"\n{trusted}\n",
                up.addr
            );
            let running = start_proxy(config(&toml)).await;
            let (status, _) = send(running.addr, &[("x-criticality", "critical_plus")]).await;
            assert_eq!(status, 200, "lean={lean} {trusted}");
            // A claim below the ceiling stands for anyone.
            let (status, _) = send(running.addr, &[("x-criticality", "sheddable")]).await;
            assert_eq!(status, 200);
            // A request is counted once its answer's last byte is written, which can follow
            // the client's read of it: wait until both are counted.
            eventually(Duration::from_secs(5), || {
                let m = running.proxy.metrics_text();
                successes(&m).len() >= 2
            })
            .await;
            let m = running.proxy.metrics_text();
            let ok = successes(&m);
            assert_eq!(ok.len(), 2, "lean={lean} {trusted}: {ok:#?}");
            assert!(
                ok.iter()
                    .any(|l| l.contains(&format!("tier=\"{want}\"}} 1"))),
                "lean={lean} {trusted}: critical_plus counted as {want}: {ok:#?}"
            );
            assert!(
                ok.iter().any(|l| l.contains("tier=\"sheddable\"} 1")),
                "lean={lean}: {ok:#?}"
            );
            running.shutdown(Duration::from_secs(5)).await;
        }
    }
}

#[test]
fn the_criticality_table_is_typed() {
    let base = "[[route]]\nupstream = \"http://127.0.0.1:9\"\n[route.criticality]\n";
    let err = tailwater_proxy::Config::from_toml(
        &format!("{base}ceiling = \"critical_plus\"\ntrusted_sources = [\"10.0.0.0/8\"]\n"),
        None,
    )
    .unwrap_err();
    assert_eq!(err.field(), "route[0].criticality.trusted_sources");
    assert_eq!(err.line(), Some(5));
    let err = tailwater_proxy::Config::from_toml(
        &format!("{base}ceiling = \"critical\"\ntrusted_sources = [\"10.0.0.0/33\"]\n"),
        None,
    )
    .unwrap_err();
    assert_eq!(err.line(), Some(5), "{err}");
    assert!(err.message().contains("10.0.0.0/33"), "{err}");
    let err = tailwater_proxy::Config::from_toml(&format!("{base}ceiling = \"vip\"\n"), None)
        .unwrap_err();
    assert_eq!(err.line(), Some(4), "{err}");
    let err = tailwater_proxy::Config::from_toml(
        &format!("{base}ceiling = \"critical\"\ntrusted = []\n"),
        None,
    )
    .unwrap_err();
    assert_eq!(err.line(), Some(5), "{err}");
    assert!(err.message().contains("unknown field"), "{err}");
}

#[test]
fn a_rate_limit_store_takes_only_its_own_fields() {
    let base = "[[route]]\nupstream = \"http://127.0.0.1:9\"\n[[route.rate_limit]]\nrate = 5\n";
    let cases = [
        // A Redis field on a local limit.
        (
            "redis_url = \"redis://127.0.0.1:1\"\n",
            "route[0].rate_limit[0].redis_url",
            5,
        ),
        (
            "on_store_error = \"closed\"\n",
            "route[0].rate_limit[0].on_store_error",
            5,
        ),
        // A Redis store without its URL, or with another scheme.
        ("store = \"redis\"\n", "route[0].rate_limit[0].redis_url", 3),
        (
            "store = \"redis\"\nredis_url = \"http://127.0.0.1:1\"\n",
            "route[0].rate_limit[0].redis_url",
            6,
        ),
        // A lease is one bucket.
        (
            "store = \"redis-leased\"\nkey = \"client_ip\"\nredis_url = \"redis://127.0.0.1:1\"\n",
            "route[0].rate_limit[0].key",
            6,
        ),
        (
            "store = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\ncall_timeout = \"0s\"\n",
            "route[0].rate_limit[0].call_timeout",
            7,
        ),
    ];
    for (extra, field, line) in cases {
        let err = tailwater_proxy::Config::from_toml(&format!("{base}{extra}"), None).unwrap_err();
        assert_eq!(err.field(), field, "{extra}: {err}");
        assert_eq!(err.line(), Some(line), "{extra}: {err}");
    }
    let err = tailwater_proxy::Config::from_toml(&format!("{base}store = \"memcached\"\n"), None)
        .unwrap_err();
    assert_eq!(err.line(), Some(5), "{err}");
}

/// A route whose only rate limit is in Redis at `url` (`store`), with `extra` settings.
fn redis_route(lean: bool, upstream: SocketAddr, store: &str, url: &str, extra: &str) -> String {
    format!(
        "[server]\nlean_http1 = {lean}\n[[route]]\nname = \"api\"\nupstream = \"http://{upstream}\"\n\
         [[route.rate_limit]]\nname = \"shared\"\nrate = 3\nperiod = \"1h\"\n\
         store = \"{store}\"\nredis_url = \"{url}\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_store_that_cannot_decide_follows_the_failure_policy() {
    // Nothing listens on the port: every call fails within the connect timeout.
    let closed = tailwater_test::port::RefusedPort::new().expect("port");
    let url = format!("redis://{}", closed.addr());
    let up = text_backend("ok").await;
    for lean in ENGINES {
        for (policy, want) in [("open", 200), ("closed", 503)] {
            let toml = redis_route(
                lean,
                up.addr,
                "redis",
                &url,
                &format!("on_store_error = \"{policy}\"\n"),
            );
            let running = start_proxy(config(&toml)).await;
            for _ in 0..2 {
                let (status, _) = send(running.addr, &[]).await;
                assert_eq!(status, want, "lean={lean} {policy}");
            }
            running.shutdown(Duration::from_secs(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_on_one_redis_share_one_budget() {
    let test = "proxies_on_one_redis_share_one_budget";
    if !redis_available(test) {
        return;
    }
    let server = RedisServer::start().expect("redis");
    let up = text_backend("ok").await;
    for lean in ENGINES {
        // Generous timeouts: this test is about sharing, not about the failure policy.
        let extra = format!(
            "redis_prefix = \"share-{lean}\"\ncall_timeout = \"2s\"\non_store_error = \"closed\"\n"
        );
        let toml = redis_route(lean, up.addr, "redis", &server.url(), &extra);
        let a = start_proxy(config(&toml)).await;
        let b = start_proxy(config(&toml)).await;
        let mut statuses = Vec::new();
        for addr in [a.addr, b.addr, a.addr, b.addr, a.addr] {
            let (status, headers) = send(addr, &[]).await;
            if status == 429 {
                assert!(headers.contains_key("retry-after"), "lean={lean}");
                assert!(
                    headers["ratelimit-policy"]
                        .to_str()
                        .is_ok_and(|p| p.contains("\"shared\";q=3")),
                    "lean={lean}: {headers:?}"
                );
            }
            statuses.push(status);
        }
        // Three in the hour between both proxies, not three each.
        assert_eq!(statuses, [200, 200, 200, 429, 429], "lean={lean}");
        a.shutdown(Duration::from_secs(5)).await;
        b.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_limit_never_admits_beyond_its_budget() {
    let test = "a_leased_limit_never_admits_beyond_its_budget";
    if !redis_available(test) {
        return;
    }
    let server = RedisServer::start().expect("redis");
    let up = text_backend("ok").await;
    for lean in ENGINES {
        let extra = format!(
            "redis_prefix = \"lease-{lean}\"\ncall_timeout = \"2s\"\non_store_error = \"closed\"\n"
        );
        let toml = redis_route(lean, up.addr, "redis-leased", &server.url(), &extra);
        let a = start_proxy(config(&toml)).await;
        let b = start_proxy(config(&toml)).await;
        let mut admitted = 0;
        for i in 0..8 {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            let (status, _) = send(addr, &[]).await;
            assert!(status == 200 || status == 429, "lean={lean}: {status}");
            admitted += usize::from(status == 200);
        }
        // Every admitted request was debited in Redis first: three in the hour at most,
        // whichever proxy held the credit.
        assert!(
            (1..=3).contains(&admitted),
            "lean={lean}: {admitted} admitted"
        );
        a.shutdown(Duration::from_secs(5)).await;
        b.shutdown(Duration::from_secs(5)).await;
    }
}
