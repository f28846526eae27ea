//! tailwater-test: support code for tailwater's own tests (not published).
//!
//! - [`redis`] (feature `redis`): launchers for a private `redis-server` and a three-master
//!   Redis Cluster on free loopback ports.
//! - [`nats`] (feature `nats`): a launcher for a private `nats-server -js` (JetStream) on a
//!   free loopback port.
//! - [`rabbitmq`] (feature `rabbitmq`): a launcher for a private `rabbitmq-server` (with its
//!   own `epmd`) on free loopback ports.
//! - [`tls_dir`]: test certificates (a CA, server, SNI and client certificates).
//! - [`port`]: loopback ports that stay refused (a dead endpoint no other test can take).
//!
//! The three launchers share one pattern (the private `server` module): a loud skip when
//! the program is missing (a failure under the launcher's `TAILWATER_REQUIRE_*=1`), free
//! loopback ports, a private directory, a readiness poll with a deadline, and SIGKILL on
//! `Drop`.

#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "nats")]
pub mod nats;

#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;

pub mod port;

mod server;

/// The directory of the test certificates (`tls/README.md`): `ca.pem`, `server.pem` and
/// `server.key` for `localhost`/127.0.0.1, `other.pem`/`other.key` for `other.test`,
/// `client.pem`/`client.key` for client authentication.
pub fn tls_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tls")
}
