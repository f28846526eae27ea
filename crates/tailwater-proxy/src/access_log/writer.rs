//! The writer thread: each request thread formats its own lines and appends them to a
//! buffer of its own (`sink`); a thread of the log's takes those buffers whole and writes
//! them, so that a request never waits for the disk.
//!
//! The thread wakes every [`INTERVAL`], takes every thread's lines and writes them (one
//! write per thread's batch), and refreshes the mapping from the log's clock to the wall
//! clock that request threads use to stamp their lines; senders never wake it. Lines of
//! one thread are in the order they ended; lines of different threads are interleaved by
//! batch. A line that finds no room in the bound is dropped and counted. When the
//! configuration that opened the log is replaced (a reload) and its last request ends,
//! the log closes: the thread wakes at once, writes what is left and exits.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::cursor::Cursor;
use super::sink::{Sink, Sinks};
use crate::config::{AccessLogConfig, AccessLogFormat, ConfigError};

/// How often the writer thread writes what is queued.
const INTERVAL: Duration = Duration::from_millis(20);

/// An open access log: the sinks of its request threads and its writer thread, which
/// closes with it.
#[derive(Debug)]
pub(crate) struct AccessLog {
    /// Unique among the logs a process opens: a thread's cached sink is this log's only if
    /// the ids match (an address could be reused by a later log).
    pub(super) id: u64,
    pub(super) json: bool,
    sinks: Arc<Sinks>,
    /// The wall clock (ns since the epoch) less the log's clock, wrapping: refreshed by
    /// the writer at each wake-up.
    offset: Arc<AtomicU64>,
    /// Records dropped (no room in the bound, or the write failed), for the proxy's
    /// lifetime.
    dropped: Arc<AtomicU64>,
}

/// The wall clock less the log's clock, in nanoseconds (wrapping).
fn clock_offset() -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    wall.wrapping_sub(super::now())
}

impl AccessLog {
    /// Opens `config.path` (appending; `-` is stdout) and starts its writer thread;
    /// `dropped` counts the lines lost.
    pub(crate) fn open(
        config: &AccessLogConfig,
        dropped: Arc<AtomicU64>,
    ) -> Result<Arc<Self>, ConfigError> {
        Self::start(config, dropped, INTERVAL).map(|(log, _)| log)
    }

    /// [`Self::open`], with the writer's wait between batches, and its thread.
    pub(super) fn start(
        config: &AccessLogConfig,
        dropped: Arc<AtomicU64>,
        interval: Duration,
    ) -> Result<(Arc<Self>, JoinHandle<()>), ConfigError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let out: Box<dyn Write + Send> = if config.path == "-" {
            Box::new(std::io::stdout())
        } else {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&config.path)
                .map_err(|e| {
                    ConfigError::new("access_log.path", format_args!("{}: {e}", config.path))
                })?;
            Box::new(file)
        };
        let sinks = Arc::new(Sinks::new(config.buffer_lines, config.buffer_bytes));
        let offset = Arc::new(AtomicU64::new(clock_offset()));
        let writer = Writer {
            out,
            lost: Arc::clone(&dropped),
            warned: false,
        };
        let (s, o) = (Arc::clone(&sinks), Arc::clone(&offset));
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(&s, &o, interval))
            .map_err(|e| ConfigError::new("access_log", format_args!("writer thread: {e}")))?;
        let log = AccessLog {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            json: config.format == AccessLogFormat::Json,
            sinks,
            offset,
            dropped,
        };
        Ok((Arc::new(log), thread))
    }

    /// `mono` (the log's clock) as nanoseconds since the epoch.
    pub(super) fn wall(&self, mono: u64) -> u64 {
        mono.wrapping_add(self.offset.load(Ordering::Relaxed))
    }

    /// The calling thread's sink of this log.
    pub(super) fn sink(&self) -> Arc<Sink> {
        self.sinks.for_this_thread()
    }

    /// Formats a line with `f` in place in `sink` (this thread's) without waiting; no
    /// room drops it (counted).
    pub(super) fn write(&self, sink: &Sink, f: impl FnOnce(&mut Cursor<'_>)) {
        if !self.sinks.write(sink, f) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.sinks.close();
    }
}

/// The writer thread's state.
struct Writer {
    out: Box<dyn Write + Send>,
    lost: Arc<AtomicU64>,
    warned: bool,
}

impl Writer {
    /// After every `interval` (or at once when the log closes), write every thread's
    /// lines; on a closed log, write the rest and return.
    fn run(mut self, sinks: &Sinks, offset: &AtomicU64, interval: Duration) {
        let mut batch = Vec::new();
        let mut list = Vec::new();
        loop {
            let end = sinks.wait(interval);
            offset.store(clock_offset(), Ordering::Relaxed);
            sinks.list(&mut list);
            for sink in list.drain(..) {
                // `batch` keeps its length: its bytes past the lines are the next sink's
                // room, zeroed once.
                let (lines, used) = sinks.take(&sink, &mut batch, end);
                self.write(&batch[..used], lines);
            }
            if end {
                return;
            }
        }
    }

    /// Writes `lines` lines; a failed write loses them (counted, warned once).
    fn write(&mut self, bytes: &[u8], lines: usize) {
        if bytes.is_empty() {
            return;
        }
        let ok = self.out.write_all(bytes).and_then(|()| self.out.flush());
        if ok.is_err() {
            self.lost.fetch_add(lines as u64, Ordering::Relaxed);
            if !self.warned {
                tracing::warn!("access log: write failed; lines are being dropped");
                self.warned = true;
            }
        }
    }
}
