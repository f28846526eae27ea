//! The writer thread: records go through a bounded queue (`queue`) to a thread that
//! formats them into one reused buffer and writes it in batches, so that a request never
//! waits for the disk, nor formats its own line.
//!
//! The thread wakes every [`INTERVAL`], takes what is queued and writes it, one write per
//! batch (at most [`BATCH_BYTES`] and a line); senders never wake it. A full queue drops
//! the record and counts it. When the configuration that opened the log is replaced (a
//! reload) and its last request ends, the log closes: the thread wakes at once, writes
//! what is left and exits.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::format::{Cursor, Formatter, MAX_LINE};
use super::queue::{Batch, Entry, Queue};
use crate::config::{AccessLogConfig, ConfigError};

/// How often the writer thread writes what is queued.
const INTERVAL: Duration = Duration::from_millis(20);
/// A batch is written once it holds this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// An open access log: the queue to its writer thread, which closes with it.
#[derive(Debug)]
pub(crate) struct AccessLog {
    queue: Arc<Queue>,
    /// Records dropped (queue full, or the write failed), for the proxy's lifetime.
    dropped: Arc<AtomicU64>,
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
        let queue = Arc::new(Queue::new(config.buffer_lines, config.buffer_bytes));
        let writer = Writer {
            out,
            format: Formatter::new(config.format),
            buf: vec![0; BATCH_BYTES + MAX_LINE].into_boxed_slice(),
            len: 0,
            lines: 0,
            lost: Arc::clone(&dropped),
            warned: false,
        };
        let q = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(&q, interval))
            .map_err(|e| ConfigError::new("access_log", format_args!("writer thread: {e}")))?;
        Ok((Arc::new(AccessLog { queue, dropped }), thread))
    }

    /// Queues `entry` (with its client's bytes, `parts`) without waiting; a full queue
    /// drops it (counted).
    pub(super) fn send(&self, entry: Entry, parts: [&[u8]; 2]) {
        if !self.queue.push(entry, parts) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// The writer thread's state.
struct Writer {
    out: Box<dyn Write + Send>,
    format: Formatter,
    /// The bytes being batched (reused): `len` of them are lines.
    buf: Box<[u8]>,
    len: usize,
    /// Lines in `buf`.
    lines: u64,
    lost: Arc<AtomicU64>,
    warned: bool,
}

impl Writer {
    /// After every `interval` (or at once when the log closes), format what is queued
    /// and write it; on a closed queue, write the rest and return.
    fn run(mut self, queue: &Queue, interval: Duration) {
        let mut batch = Batch::default();
        loop {
            let end = queue.take(&mut batch, interval);
            if !batch.is_empty() {
                // Entries carry the time on the log's monotonic clock; one reading of
                // both clocks per batch maps them to the wall clock.
                let (wall, mono) = (SystemTime::now(), super::now());
                let time = |start: u64| {
                    wall.checked_sub(Duration::from_nanos(mono.saturating_sub(start)))
                        .unwrap_or(wall)
                };
                for line in batch.lines(time) {
                    let mut c = Cursor::new(&mut self.buf[self.len..]);
                    self.format.line(&mut c, &line);
                    self.len += c.len();
                    self.lines += 1;
                    if self.len >= BATCH_BYTES {
                        self.write();
                    }
                }
                batch.clear();
            }
            self.write();
            if end {
                return;
            }
        }
    }

    /// Writes the batch; a failed write loses its lines (counted, warned once).
    fn write(&mut self) {
        if self.len == 0 {
            return;
        }
        let ok = self
            .out
            .write_all(&self.buf[..self.len])
            .and_then(|()| self.out.flush());
        if ok.is_err() {
            self.lost.fetch_add(self.lines, Ordering::Relaxed);
            if !self.warned {
                tracing::warn!("access log: write failed; lines are being dropped");
                self.warned = true;
            }
        }
        self.len = 0;
        self.lines = 0;
    }
}
