//! What every launcher of a private server shares: the loud skip (or the failure, in CI)
//! when the program is missing, free loopback ports, a private directory, the readiness poll
//! with a deadline, and the kill.
//!
//! A launcher ([`redis`](crate::redis), [`nats`](crate::nats),
//! [`rabbitmq`](crate::rabbitmq)) supplies how to spawn its program on a port and how to tell
//! that it is ready; the rest is here, once.
#![cfg_attr(
    not(any(feature = "redis", feature = "nats", feature = "rabbitmq")),
    allow(dead_code)
)]

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A program a launcher runs, and how a test is told that it is missing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Program {
    /// Its name, for messages (`nats-server`).
    pub(crate) name: &'static str,
    /// Where to look for it: names on `PATH` or absolute paths, in order.
    pub(crate) candidates: &'static [&'static str],
    /// The argument that makes it print its version and exit 0, proving it runs (`None`:
    /// the file existing is enough, for programs without such a switch).
    pub(crate) version_arg: Option<&'static str>,
    /// The environment variable that turns a skip into a failure (`TAILWATER_REQUIRE_NATS`).
    pub(crate) require_env: &'static str,
    /// The Debian package that installs it.
    pub(crate) package: &'static str,
}

impl Program {
    /// The first candidate that runs (or exists, without a version switch).
    pub(crate) fn find(&self) -> Option<PathBuf> {
        self.candidates
            .iter()
            .find(|b| match self.version_arg {
                Some(arg) => Command::new(b)
                    .arg(arg)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                None => std::path::Path::new(b).is_file(),
            })
            .map(PathBuf::from)
    }

    /// Whether the program can be run here. Returns `false` after printing a loud message
    /// to stderr when it cannot; panics instead when [`require_env`](Self::require_env) is
    /// `1`. `test` names the calling test in the message.
    pub(crate) fn available(&self, test: &str) -> bool {
        if self.find().is_some() {
            return true;
        }
        let (name, env, package) = (self.name, self.require_env, self.package);
        if std::env::var(env).as_deref() == Ok("1") {
            panic!("{test}: {name} is not installed but {env}=1 requires it");
        }
        // Written to the process's stderr directly (not `eprintln!`), so that the test
        // harness's output capture cannot hide the skip.
        let _ = writeln!(
            io::stderr(),
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !! SKIPPED {test}: `{name}` is not on PATH.\n\
             !! Install it (apt-get install -y {package}) or set {env}=1 to fail.\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
        false
    }
}

/// Runs `start` on a fresh free port until it succeeds, at most `attempts` times: another
/// process may take the port between the probe and the server's bind.
pub(crate) fn on_free_port<T>(
    name: &str,
    attempts: usize,
    mut port: impl FnMut() -> io::Result<u16>,
    mut start: impl FnMut(u16) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_err = None;
    for _ in 0..attempts {
        match start(port()?) {
            Ok(server) => return Ok(server),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other(format!("could not start {name}"))))
}

/// A loopback port nobody listens on now (the NATS and RabbitMQ launchers; Redis picks
/// its own).
#[cfg_attr(not(any(feature = "nats", feature = "rabbitmq")), allow(dead_code))]
pub(crate) fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(l.local_addr()?.port())
}

/// A new private directory under the system's temporary directory, named after the kind
/// of server, this process and the port.
pub(crate) fn temp_dir(kind: &str, port: u16) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "tailwater-{kind}-{}-{port}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A spawned server process: killed (with its process group, when it has one of its own)
/// by [`kill`](Self::kill).
#[derive(Debug)]
pub(crate) struct Process {
    child: Option<Child>,
    /// Whether the child leads a process group of its own (its helpers die with it).
    group: bool,
}

impl Process {
    /// A child that runs alone.
    pub(crate) fn new(child: Child) -> Self {
        Self {
            child: Some(child),
            group: false,
        }
    }

    /// A child spawned with `process_group(0)`: [`kill`](Self::kill) kills the whole group.
    #[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
    pub(crate) fn group_leader(child: Child) -> Self {
        Self {
            child: Some(child),
            group: true,
        }
    }

    /// Whether it was not killed (it may still have exited).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills it at once (SIGKILL, as a crash would) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.group {
                // The group's id is the leader's pid; `kill -KILL -- -PGID` reaches every
                // process in it (the launcher script's children included).
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls `ready` until it is true, the process exits (an error), or `deadline` passes
    /// (the process is killed and an error returned). `what` names the server in errors.
    pub(crate) fn wait_ready(
        &mut self,
        what: &str,
        deadline: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> io::Result<()> {
        let deadline = Instant::now() + deadline;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!("{what} exited early: {status}")));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{what} did not become ready"),
                ));
            }
            // Polling an external process with a deadline: there is no readiness signal to
            // wait on other than trying to talk to it.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
