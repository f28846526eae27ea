//! A launcher for Debian's `nats-server` with JetStream, one private server per test.
//!
//! Each [`NatsServer`] runs `nats-server -js` on a free loopback port with its JetStream
//! store in its own temporary directory, is ready when [`NatsServer::start`] returns (it has
//! sent its `INFO` line with `"jetstream":true` and answered `PING`), and is killed (and its
//! directory removed) on `Drop`.
//!
//! Tests that need NATS call [`nats_available`] first: when `nats-server` is missing it
//! prints a loud message and the test returns early, unless `TAILWATER_REQUIRE_NATS=1`, in
//! which case it panics (CI sets it so that NATS tests can never be skipped silently). The
//! same pattern as the [`redis`](crate::redis) launcher.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::server::{self, Process, Program};

/// Name of the environment variable that turns "skip when nats-server is missing" into a
/// test failure.
pub const REQUIRE_ENV: &str = "TAILWATER_REQUIRE_NATS";

/// How long a server gets to become ready after it was spawned.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// `nats-server`: on `PATH`, else Debian's `/usr/sbin/nats-server` (`/usr/sbin` is not on
/// every user's `PATH`).
const PROGRAM: Program = Program {
    name: "nats-server",
    candidates: &["nats-server", "/usr/sbin/nats-server"],
    version_arg: Some("--version"),
    require_env: REQUIRE_ENV,
    package: "nats-server",
};

/// Whether `nats-server` can be run here.
///
/// Returns `false` after printing a loud message to stderr when it cannot; panics instead when
/// the environment variable [`REQUIRE_ENV`] is `1`. `test` names the calling test in the message.
pub fn nats_available(test: &str) -> bool {
    PROGRAM.available(test)
}

/// A private `nats-server -js` on a loopback port, killed on `Drop`.
#[derive(Debug)]
pub struct NatsServer {
    process: Process,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts a JetStream-enabled server on a free loopback port and waits until it is
    /// ready.
    pub fn start() -> io::Result<Self> {
        server::on_free_port("nats-server", 5, server::free_port, Self::start_on_port)
    }

    fn start_on_port(port: u16) -> io::Result<Self> {
        let bin = PROGRAM
            .find()
            .ok_or_else(|| io::Error::other("nats-server not found"))?;
        let dir = server::temp_dir("nats", port)?;
        let child = Command::new(bin)
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &port.to_string()])
            .arg("-sd")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Self {
            process: Process::new(child),
            port,
            dir,
        };
        let what = format!("nats-server on port {port}");
        server
            .process
            .wait_ready(&what, START_DEADLINE, || ready(port))?;
        Ok(server)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `nats://127.0.0.1:PORT` URL for this server.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL, as a crash would) and waits for it to exit.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server on `port` greets with an `INFO` line that has JetStream on, and
/// answers `PING` with `PONG`.
fn ready(port: u16) -> bool {
    let attempt = || -> io::Result<bool> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if !(line.starts_with("INFO ") && line.contains("\"jetstream\":true")) {
            return Ok(false);
        }
        (&stream).write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")?;
        line.clear();
        reader.read_line(&mut line)?;
        Ok(line.starts_with("PONG"))
    };
    attempt().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_a_jetstream_server_and_kills_it_on_drop() {
        if !nats_available("starts_a_jetstream_server_and_kills_it_on_drop") {
            return;
        }
        let server = NatsServer::start().expect("start nats-server");
        let port = server.port();
        assert!(ready(port), "ready after start");
        let dir = server.dir.clone();
        assert!(dir.exists());
        drop(server);
        assert!(!ready(port), "gone after drop");
        assert!(!dir.exists(), "store directory removed");
    }
}
