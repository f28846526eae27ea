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
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Name of the environment variable that turns "skip when nats-server is missing" into a
/// test failure.
pub const REQUIRE_ENV: &str = "TAILWATER_REQUIRE_NATS";

/// How long a server gets to become ready after it was spawned.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Whether `nats-server` can be run here.
///
/// Returns `false` after printing a loud message to stderr when it cannot; panics instead when
/// the environment variable [`REQUIRE_ENV`] is `1`. `test` names the calling test in the message.
pub fn nats_available(test: &str) -> bool {
    let found = binary().is_some();
    if found {
        return true;
    }
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{test}: nats-server is not installed but {REQUIRE_ENV}=1 requires it");
    }
    // Written to the process's stderr directly (not `eprintln!`), so that the test
    // harness's output capture cannot hide the skip.
    let _ = writeln!(
        io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! SKIPPED {test}: `nats-server` is not on PATH.\n\
         !! Install it (apt-get install -y nats-server) or set {REQUIRE_ENV}=1 to fail.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    false
}

/// The `nats-server` to run: the one on `PATH`, else Debian's `/usr/sbin/nats-server`
/// (`/usr/sbin` is not on every user's `PATH`).
fn binary() -> Option<PathBuf> {
    ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(PathBuf::from)
}

/// A private `nats-server -js` on a loopback port, killed on `Drop`.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts a JetStream-enabled server on a free loopback port and waits until it is
    /// ready.
    pub fn start() -> io::Result<Self> {
        let mut last_err = None;
        // Another process may take the port between our probe and the server's bind: retry
        // with a new port a few times.
        for _ in 0..5 {
            let port = free_port()?;
            match Self::start_on_port(port) {
                Ok(server) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("could not start nats-server")))
    }

    fn start_on_port(port: u16) -> io::Result<Self> {
        let bin = binary().ok_or_else(|| io::Error::other("nats-server not found"))?;
        let dir = temp_dir(port)?;
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
            child: Some(child),
            port,
            dir,
        };
        server.wait_ready()?;
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
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "nats-server on port {} exited early: {status}",
                    self.port
                )));
            }
            if ready(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nats-server on port {} did not become ready", self.port),
                ));
            }
            // Polling an external process with a deadline: there is no readiness signal to
            // wait on other than trying to talk to it.
            std::thread::sleep(Duration::from_millis(10));
        }
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

fn temp_dir(port: u16) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("tailwater-nats-{}-{port}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A loopback port nobody listens on now.
fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(l.local_addr()?.port())
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
