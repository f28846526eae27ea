//! A launcher for Debian's `rabbitmq-server`, one private broker per test binary.
//!
//! A [`RabbitServer`] runs RabbitMQ (no plugins) on a free loopback AMQP port, with its own
//! node name, Mnesia and log directories in a private temporary directory, its own Erlang
//! cookie (`HOME` is that directory), and its own `epmd` and distribution port, all bound to
//! 127.0.0.1: it neither sees nor disturbs another broker on the machine (Debian's service,
//! or another test's). It is ready when [`RabbitServer::start`] returns (the AMQP port
//! answers the protocol header with `connection.start`), and on `Drop` the broker (its
//! whole process group: the start script and the Erlang VM) and its `epmd` are killed and
//! the directory removed.
//!
//! RabbitMQ takes seconds to boot (9 to 54 s at a load average of 11 to 17 on 2 cores: the
//! Erlang VM, Mnesia and the feature flags), so a test binary should start one broker and
//! run its cases on separate queues. (The start and the kill on `Drop` are tested there,
//! in `tailwater-stream`'s `broker_rabbitmq`, rather than by a second broker here.)
//!
//! Tests that need RabbitMQ call [`rabbitmq_available`] first: when `rabbitmq-server` is
//! missing it prints a loud message and the test returns early, unless
//! `TAILWATER_REQUIRE_RABBITMQ=1`, in which case it panics (CI sets it so that RabbitMQ
//! tests can never be skipped silently). The same pattern as the [`redis`](crate::redis)
//! and [`nats`](crate::nats) launchers.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::server::{self, Process, Program};

/// Name of the environment variable that turns "skip when rabbitmq-server is missing" into
/// a test failure.
pub const REQUIRE_ENV: &str = "TAILWATER_REQUIRE_RABBITMQ";

/// How long a broker gets to boot after it was spawned: generous, for a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// How long [`RabbitServer::kill`] waits for the killed VM to release its AMQP port.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The start script itself, not `/usr/sbin/rabbitmq-server` (a wrapper that switches to the
/// `rabbitmq` user and its shared directories).
const PROGRAM: Program = Program {
    name: "rabbitmq-server",
    candidates: &["/usr/lib/rabbitmq/bin/rabbitmq-server"],
    version_arg: None,
    require_env: REQUIRE_ENV,
    package: "rabbitmq-server",
};

/// Erlang's port mapper, run privately for the broker's node.
const EPMD: Program = Program {
    name: "epmd",
    candidates: &["/usr/bin/epmd", "/usr/lib/erlang/bin/epmd"],
    version_arg: None,
    require_env: REQUIRE_ENV,
    package: "erlang-base",
};

/// Whether `rabbitmq-server` (and `epmd`) can be run here.
///
/// Returns `false` after printing a loud message to stderr when it cannot; panics instead
/// when the environment variable [`REQUIRE_ENV`] is `1`. `test` names the calling test in
/// the message.
pub fn rabbitmq_available(test: &str) -> bool {
    PROGRAM.available(test) && EPMD.available(test)
}

/// A private RabbitMQ broker on a loopback port, killed on `Drop`.
#[derive(Debug)]
pub struct RabbitServer {
    broker: Process,
    epmd: Process,
    port: u16,
    dir: PathBuf,
}

impl RabbitServer {
    /// Starts a broker on a free loopback port and waits until it speaks AMQP.
    pub fn start() -> io::Result<Self> {
        server::on_free_port("rabbitmq-server", 3, server::free_port, Self::start_on_port)
    }

    fn start_on_port(port: u16) -> io::Result<Self> {
        let bin = PROGRAM
            .find()
            .ok_or_else(|| io::Error::other("rabbitmq-server not found"))?;
        let epmd_bin = EPMD
            .find()
            .ok_or_else(|| io::Error::other("epmd not found"))?;
        // Three distinct ports (two probes in a row may return the same free port). A port
        // taken by another process between the probe and the bind fails the boot, and
        // `start` tries again with new ports.
        let mut ports = vec![port];
        while ports.len() < 3 {
            let p = server::free_port()?;
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let (epmd_port, dist_port) = (ports[1], ports[2]);
        let dir = server::temp_dir("rabbitmq", port)?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        let epmd = Command::new(epmd_bin)
            .args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut epmd = Process::new(epmd);
        let d = |name: &str| dir.join(name);
        let child = Command::new(bin)
            // Its working directory, where the Erlang VM writes a crash dump if the boot
            // fails: removed with the rest on drop, never left in the caller's tree.
            .current_dir(&dir)
            .env("ERL_CRASH_DUMP", d("erl_crash.dump"))
            .env("HOME", &dir)
            .env("RABBITMQ_NODENAME", format!("tailwater{port}@localhost"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_LOGS", d("log/rabbit.log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", d("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d("advanced.config"))
            .env("RABBITMQ_PID_FILE", d("rabbit.pid"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", d("plugins"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", d("feature_flags"))
            .env("RABBITMQ_QUORUM_DIR", d("quorum"))
            .env("RABBITMQ_STREAM_DIR", d("stream"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the script runs the Erlang VM as a child, and both
            // must die with the broker.
            .process_group(0)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                epmd.kill();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut server = Self {
            broker: Process::group_leader(child),
            epmd,
            port,
            dir,
        };
        let what = format!("rabbitmq-server on port {port}");
        server
            .broker
            .wait_ready(&what, START_DEADLINE, || speaks_amqp(port))?;
        Ok(server)
    }

    /// The broker's AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An `amqp://guest:guest@127.0.0.1:PORT/%2f` URL for this broker (the default user,
    /// which RabbitMQ accepts from loopback only).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Kills the broker at once (SIGKILL, as a crash would) and its `epmd`, and returns once
    /// the AMQP port refuses connections (or after 10 s, `STOP_DEADLINE`).
    ///
    /// The signal reaches the Erlang VM (a grandchild, in the start script's process group)
    /// asynchronously: waiting for the script alone left the port answering for a moment
    /// after `kill` returned (3 of 4 runs on an idle machine).
    pub fn kill(&mut self) {
        let was_running = self.broker.is_running();
        self.broker.kill();
        self.epmd.kill();
        if was_running {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            let deadline = std::time::Instant::now() + STOP_DEADLINE;
            while std::time::Instant::now() < deadline
                && TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the broker on `port` answers the AMQP 0-9-1 protocol header with a method frame
/// (`connection.start`: frame type 1 on channel 0).
fn speaks_amqp(port: u16) -> bool {
    let attempt = || -> io::Result<bool> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_millis(1000)))?;
        stream.write_all(b"AMQP\x00\x00\x09\x01")?;
        let mut head = [0u8; 3];
        stream.read_exact(&mut head)?;
        Ok(head == [1, 0, 0])
    };
    attempt().unwrap_or(false)
}
