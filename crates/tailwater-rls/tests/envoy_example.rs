//! `examples/envoy/`: Envoy is not run here, so the example is checked the way it can be.
//! `envoy.yaml` parses; its `ratelimit` filter names a gRPC (HTTP/2) cluster on the
//! service's default port; its route's `rate_limits` actions, translated action by action
//! into the client's descriptor specs (Envoy's documented semantics), produce descriptors
//! that the real service, loaded with `ratelimit/` unchanged, decides as the comments in
//! both files say.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tailwater_core::clock::ManualClock;
use tailwater_rls::client::{Action, DEFAULT_TIMEOUT, DescriptorSpec, RequestParts, RlsClient};
use tailwater_rls::{ConfigWatcher, MemoryStore, RateLimiter, Store, serve_grpc};

fn example(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/envoy")
        .join(path)
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*k],
    })
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is a string"))
}

/// One Envoy `rate_limits[].actions` entry as the client's action.
fn action(a: &Value) -> Action {
    if let Some(h) = a.get("request_headers") {
        let name = text(h, &["header_name"]);
        let key = text(h, &["descriptor_key"]).to_owned();
        let skip_if_absent = h["skip_if_absent"].as_bool().unwrap_or(false);
        if name == ":path" {
            assert!(!skip_if_absent, ":path is always present");
            return Action::Path { key };
        }
        return Action::Header {
            name: name.to_owned(),
            key,
            skip_if_absent,
        };
    }
    if a.get("remote_address").is_some() {
        return Action::RemoteAddress;
    }
    if let Some(g) = a.get("generic_key") {
        return Action::GenericKey {
            value: text(g, &["descriptor_value"]).to_owned(),
            key: g["descriptor_key"]
                .as_str()
                .unwrap_or("generic_key")
                .to_owned(),
        };
    }
    panic!("an action the example should not use: {a}");
}

struct Req {
    key: Option<&'static str>,
    path: &'static str,
    ip: IpAddr,
}

impl RequestParts for Req {
    fn header(&self, name: &str) -> Option<&str> {
        (name == "x-api-key").then_some(self.key).flatten()
    }
    fn path(&self) -> &str {
        self.path
    }
    fn remote_address(&self) -> Option<IpAddr> {
        Some(self.ip)
    }
}

fn ip(i: u32) -> IpAddr {
    IpAddr::from((0x0a00_0000 + i).to_be_bytes())
}

#[tokio::test]
async fn the_envoy_example_sends_descriptors_the_example_limits_decide() {
    let envoy: Value = serde_norway::from_str(
        &std::fs::read_to_string(example("envoy.yaml")).expect("envoy.yaml"),
    )
    .expect("envoy.yaml parses");
    let hcm = at(
        &envoy,
        &[
            "static_resources",
            "listeners",
            "0",
            "filter_chains",
            "0",
            "filters",
            "0",
            "typed_config",
        ],
    );
    let filter = at(hcm, &["http_filters", "0"]);
    assert_eq!(text(filter, &["name"]), "envoy.filters.http.ratelimit");
    let rl = &filter["typed_config"];
    let domain = text(rl, &["domain"]);
    let cluster = text(
        rl,
        &[
            "rate_limit_service",
            "grpc_service",
            "envoy_grpc",
            "cluster_name",
        ],
    );
    assert_eq!(
        text(rl, &["rate_limit_service", "transport_api_version"]),
        "V3"
    );
    let clusters = at(&envoy, &["static_resources", "clusters"])
        .as_array()
        .expect("clusters");
    let rls_cluster = clusters
        .iter()
        .find(|c| c["name"] == cluster)
        .expect("the ratelimit filter's cluster exists");
    assert!(
        rls_cluster["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            .get("http2_protocol_options")
            .is_some(),
        "gRPC needs HTTP/2 to the service"
    );
    let port = at(
        rls_cluster,
        &[
            "load_assignment",
            "endpoints",
            "0",
            "lb_endpoints",
            "0",
            "endpoint",
            "address",
            "socket_address",
            "port_value",
        ],
    );
    assert_eq!(
        port.as_u64(),
        Some(8081),
        "tailwater rls's default --grpc port"
    );

    // The service, loaded with the example directory unchanged, on 127.0.0.1:0.
    let clock = ManualClock::new();
    let watcher = ConfigWatcher::open(&example("ratelimit")).expect("ratelimit/ loads");
    let store = Store::Memory(Arc::new(MemoryStore::with_clock(
        10_000,
        Arc::new(clock.clone()),
    )));
    let limiter = RateLimiter::new(watcher.handle(), store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve_grpc(listener, limiter, std::future::pending()));

    let routes = at(
        hcm,
        &[
            "route_config",
            "virtual_hosts",
            "0",
            "routes",
            "0",
            "route",
            "rate_limits",
        ],
    );
    // The example's filter timeout is Envoy's default, which is also the client's.
    assert_eq!(
        text(rl, &["timeout"]),
        "0.02s",
        "the example keeps Envoy's default RPC timeout"
    );
    let client = RlsClient::new(&format!("http://{addr}"), domain).expect("client");
    assert_eq!(client.call_timeout(), DEFAULT_TIMEOUT);
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_millis(20));
    // This test checks what the service decides, not how fast: on a loaded 2-core machine
    // (CI, parallel builds) the first call (connect + h2 handshake) can take longer than
    // the 20 ms product default, so the test client gets an explicit, generous deadline.
    let mut client = client.timeout(Duration::from_secs(10)).expect("timeout");
    for r in routes.as_array().expect("rate_limits") {
        let actions = r["actions"].as_array().expect("actions");
        let spec = DescriptorSpec::new(actions.iter().map(action).collect()).expect("spec");
        client = client.descriptor(spec);
    }
    let allowed = |req: Req| {
        let client = client.clone();
        async move {
            client
                .check(&req)
                .expect("a descriptor applies")
                .await
                .expect("the service answers")
                .allowed
        }
    };

    // Per API key, 60 per minute (each request from its own address).
    for i in 0..60 {
        assert!(
            allowed(Req {
                key: Some("k1"),
                path: "/items",
                ip: ip(i)
            })
            .await,
            "k1 #{i}"
        );
    }
    assert!(
        !allowed(Req {
            key: Some("k1"),
            path: "/items",
            ip: ip(60)
        })
        .await
    );
    // The partner's key has 600.
    for i in 0..61 {
        assert!(
            allowed(Req {
                key: Some("partner-1"),
                path: "/items",
                ip: ip(100 + i)
            })
            .await
        );
    }
    // Per client address, 10 per second, with or without a key.
    let one = ip(1_000);
    for i in 0..10 {
        assert!(
            allowed(Req {
                key: None,
                path: "/items",
                ip: one
            })
            .await,
            "client #{i}"
        );
    }
    assert!(
        !allowed(Req {
            key: None,
            path: "/items",
            ip: one
        })
        .await
    );
    clock.advance(std::time::Duration::from_secs(1));
    assert!(
        allowed(Req {
            key: None,
            path: "/items",
            ip: one
        })
        .await
    );
    // Uploads: 5 per minute in all, whoever sends them; other paths are not limited.
    for i in 0..5 {
        assert!(
            allowed(Req {
                key: None,
                path: "/upload",
                ip: ip(2_000 + i)
            })
            .await
        );
    }
    assert!(
        !allowed(Req {
            key: None,
            path: "/upload",
            ip: ip(2_100)
        })
        .await
    );
    assert!(
        allowed(Req {
            key: None,
            path: "/download",
            ip: ip(2_101)
        })
        .await
    );
}
