//! The writer thread: records go through a bounded queue to a thread that formats them
//! into one reused buffer and writes it in batches, so that a request never waits for
//! the disk, nor formats its own line.
//!
//! The thread wakes every [`INTERVAL`] and writes what is queued, one write per batch
//! (at most [`BATCH_BYTES`] and a line); senders never wake it (a wake-up per record
//! would cost a system call on the request's thread). A full queue drops the record and
//! counts it. When the configuration that opened the log is replaced (a reload) and its
//! last request ends, the log closes: the thread, which waits on a second channel that
//! closes with it, wakes at once, writes what is left and exits.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Record;
use super::format::Formatter;
use crate::config::{AccessLogConfig, ConfigError};

/// How often the writer thread writes what is queued.
const INTERVAL: Duration = Duration::from_millis(20);
/// A batch is written once it holds this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// An open access log: the queue to its writer thread.
#[derive(Debug)]
pub(crate) struct AccessLog {
    /// Declared before `_closed`, so dropped first: when the thread sees `_closed` go,
    /// the queue is closed too, and it drains to the end.
    tx: SyncSender<Record>,
    /// Dropped with the log: wakes the writer thread from its wait between batches.
    _closed: mpsc::Sender<()>,
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
        let (tx, rx) = mpsc::sync_channel(config.buffer_lines);
        let (closed, wait) = mpsc::channel();
        let writer = Writer {
            out,
            format: Formatter::new(config.format),
            buf: Vec::with_capacity(BATCH_BYTES + super::format::MAX_LINE),
            lines: 0,
            lost: Arc::clone(&dropped),
            warned: false,
        };
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(&rx, &wait, interval))
            .map_err(|e| ConfigError::new("access_log", format_args!("writer thread: {e}")))?;
        let log = Arc::new(AccessLog {
            tx,
            _closed: closed,
            dropped,
        });
        Ok((log, thread))
    }

    /// Queues `record` without waiting; a full queue drops it (counted).
    pub(crate) fn send(&self, record: Record) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(record)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread's state.
struct Writer {
    out: Box<dyn Write + Send>,
    format: Formatter,
    /// The batch being formatted (reused).
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u64,
    lost: Arc<AtomicU64>,
    warned: bool,
}

impl Writer {
    /// After every `interval` (or at once when the log closes), format what is queued
    /// and write it; on a closed queue, write the rest and return.
    fn run(mut self, rx: &Receiver<Record>, closed: &Receiver<()>, interval: Duration) {
        loop {
            // Nothing is ever sent on `closed`: this returns at the timeout, or at once
            // when the log is dropped.
            let _: Result<(), RecvTimeoutError> = closed.recv_timeout(interval);
            let end = loop {
                match rx.try_recv() {
                    Ok(record) => {
                        self.format.line(&mut self.buf, &record);
                        self.lines += 1;
                        if self.buf.len() >= BATCH_BYTES {
                            self.write();
                        }
                    }
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            self.write();
            if end {
                return;
            }
        }
    }

    /// Writes the batch; a failed write loses its lines (counted, warned once).
    fn write(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let ok = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush());
        if ok.is_err() {
            self.lost.fetch_add(self.lines, Ordering::Relaxed);
            if !self.warned {
                tracing::warn!("access log: write failed; lines are being dropped");
                self.warned = true;
            }
        }
        self.buf.clear();
        self.lines = 0;
    }
}
