//! Launchers for Debian's `redis-server`, one private server (or cluster) per test.
//!
//! Each [`RedisServer`] runs on a free loopback port with persistence off
//! (`--save '' --appendonly no`) in its own temporary directory, is ready (answers `PING`)
//! when [`RedisServer::start`] returns, and is killed (and its directory removed) on `Drop`.
//! [`RedisCluster`] starts three masters with `--cluster-enabled yes` and joins them with
//! `redis-cli --cluster create ... --cluster-yes`.
//!
//! Tests that need Redis call [`redis_available`] first: when `redis-server` is missing it
//! prints a loud message and the test returns early, unless `TAILWATER_REQUIRE_REDIS=1`, in
//! which case it panics (CI sets it so that Redis tests can never be skipped silently).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{self, Process, Program};

/// Name of the environment variable that turns "skip when redis-server is missing" into a
/// test failure.
pub const REQUIRE_ENV: &str = "TAILWATER_REQUIRE_REDIS";

/// How long a server gets to answer `PING` after it was spawned.
const START_DEADLINE: Duration = Duration::from_secs(10);

const PROGRAM: Program = Program {
    name: "redis-server",
    candidates: &["redis-server"],
    version_arg: Some("--version"),
    require_env: REQUIRE_ENV,
    package: "redis-server",
};

/// Whether `redis-server` can be run here.
///
/// Returns `false` after printing a loud message to stderr when it cannot; panics instead when
/// the environment variable [`REQUIRE_ENV`] is `1`. `test` names the calling test in the message.
pub fn redis_available(test: &str) -> bool {
    PROGRAM.available(test)
}

/// A private `redis-server` on a loopback port, killed on `Drop`.
#[derive(Debug)]
pub struct RedisServer {
    process: Process,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub fn start() -> io::Result<Self> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> io::Result<Self> {
        server::on_free_port(
            "redis-server",
            5,
            || free_port(false),
            |port| Self::start_on_port(port, extra),
        )
    }

    /// Starts a server on exactly `port` (used to restart a killed server on the same port).
    pub fn start_on_port(port: u16, extra: &[&str]) -> io::Result<Self> {
        let dir = server::temp_dir("redis", port)?;
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = spawn(port, &dir, &extra)?;
        let mut server = Self {
            process: Process::new(child),
            port,
            dir,
            extra,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://127.0.0.1:PORT/` URL for this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server at once (SIGKILL, as a crash would) and waits for it to exit.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Whether the server process is running (was not killed).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Starts the server again on the same port after [`kill`](Self::kill) (empty data set).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let child = spawn(self.port, &self.dir, &self.extra)?;
            self.process = Process::new(child);
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                // The old socket can linger for a moment: retry until the deadline.
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => self.kill(),
            }
        }
    }

    /// Sends one command in RESP and returns the raw reply text (test helper, no parsing).
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        raw_command(self.port, args)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let (port, what) = (self.port, format!("redis-server on port {}", self.port));
        self.process
            .wait_ready(&what, START_DEADLINE, || ping(port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three `redis-server` masters joined into a Redis Cluster, killed on `Drop`.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters with `--cluster-enabled yes`, creates the cluster with
    /// `redis-cli --cluster create ... --cluster-yes` and waits until every node reports
    /// `cluster_state:ok`.
    pub fn start() -> io::Result<Self> {
        let mut last_err = None;
        for _ in 0..3 {
            match Self::try_start() {
                Ok(c) => return Ok(c),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("could not start a redis cluster")))
    }

    fn try_start() -> io::Result<Self> {
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            // The cluster bus listens on port + 10000: both must be free.
            let port = free_port(true)?;
            nodes.push(RedisServer::start_on_port(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let cluster = Self { nodes };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn wait_ok(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all_ok = self.nodes.iter().all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .map(|s| s.contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if all_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis cluster did not reach cluster_state:ok",
                ));
            }
            // Polling an external process with a deadline: the nodes gossip slot ownership
            // asynchronously and only CLUSTER INFO tells when they agree.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes (masters), in creation order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// `redis://127.0.0.1:PORT/` URLs of all nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

fn spawn(port: u16, dir: &Path, extra: &[String]) -> io::Result<Child> {
    Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--protected-mode", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// A loopback port nobody listens on now (and, with `bus`, port + 10000 as well).
fn free_port(bus: bool) -> io::Result<u16> {
    for _ in 0..100 {
        let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let port = l.local_addr()?.port();
        if !bus {
            return Ok(port);
        }
        if port < 55_000
            && TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port + 10_000))).is_ok()
        {
            return Ok(port);
        }
    }
    Err(io::Error::other("no free loopback port found"))
}

fn ping(port: u16) -> bool {
    raw_command(port, &["PING"])
        .map(|r| r.starts_with("+PONG"))
        .unwrap_or(false)
}

fn raw_command(port: u16, args: &[&str]) -> io::Result<String> {
    raw_command_with_timeout(port, args, Duration::from_millis(500))
}

/// Sends one command in RESP to `127.0.0.1:port` and returns the first chunk of the raw
/// reply, waiting at most `read_timeout` for it (test helper, no parsing).
pub fn raw_command_with_timeout(
    port: u16,
    args: &[&str],
    read_timeout: Duration,
) -> io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(read_timeout))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
