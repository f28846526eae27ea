//! Shared test helpers: a private redis-server per test, skipped loudly when absent.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::time::Duration;

use tailwater_redis::{ConnectionOptions, RedisConnection};
pub use tailwater_test::redis::{REQUIRE_ENV, RedisCluster, RedisServer, redis_available};

/// Starts a private server, or returns `None` (after a loud message) when redis-server is
/// not installed and `TAILWATER_REQUIRE_REDIS` is not `1`.
pub fn server(test: &str) -> Option<RedisServer> {
    if !redis_available(test) {
        return None;
    }
    Some(RedisServer::start().expect("start redis-server"))
}

/// Generous timeouts: tests share two cores with other builds, and exactness tests must
/// not turn scheduling hiccups into fail-open admissions.
pub fn relaxed() -> ConnectionOptions {
    ConnectionOptions::default()
        .call_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1))
}

pub fn connect(server: &RedisServer, opts: ConnectionOptions) -> RedisConnection {
    RedisConnection::open(&server.url(), opts).expect("open")
}
