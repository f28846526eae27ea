//! The writer thread: lines go through a bounded queue to a thread that writes them in
//! batches, so that a request never waits for the disk.
//!
//! The thread wakes every [`INTERVAL`] and writes what is queued with one buffered write
//! per batch; senders never wake it (a wake-up per line would cost a system call on the
//! request's thread). A full queue drops the line and counts it. When the configuration
//! that opened the log is replaced (a reload) and its last request ends, the queue closes
//! and the thread writes what is left and exits.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use crate::config::{AccessLogConfig, AccessLogFormat, ConfigError};

/// How often the writer thread writes what is queued.
const INTERVAL: Duration = Duration::from_millis(20);

/// An open access log: the queue to its writer thread.
#[derive(Debug)]
pub(crate) struct AccessLog {
    tx: SyncSender<String>,
    format: AccessLogFormat,
    /// Lines dropped (queue full, or the write failed), for the proxy's lifetime.
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens `config.path` (appending; `-` is stdout) and starts its writer thread;
    /// `dropped` counts the lines lost.
    pub(crate) fn open(
        config: &AccessLogConfig,
        dropped: Arc<AtomicU64>,
    ) -> Result<Arc<Self>, ConfigError> {
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
        let lost = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&rx, BufWriter::with_capacity(64 * 1024, out), &lost))
            .map_err(|e| ConfigError::new("access_log", format_args!("writer thread: {e}")))?;
        Ok(Arc::new(AccessLog {
            tx,
            format: config.format,
            dropped,
        }))
    }

    /// The line format.
    pub(crate) fn format(&self) -> AccessLogFormat {
        self.format
    }

    /// Queues `line` without waiting; a full queue drops it (counted).
    pub(crate) fn send(&self, line: String) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread's loop: every [`INTERVAL`], write what is queued and flush; on a
/// closed queue, write the rest and return.
fn write_lines(rx: &Receiver<String>, mut out: BufWriter<Box<dyn Write + Send>>, lost: &AtomicU64) {
    let mut warned = false;
    loop {
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    if out.write_all(line.as_bytes()).is_err() {
                        lost.fetch_add(1, Ordering::Relaxed);
                        if !warned {
                            tracing::warn!("access log: write failed; lines are being dropped");
                            warned = true;
                        }
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let _ = out.flush();
        if closed {
            return;
        }
        std::thread::sleep(INTERVAL);
    }
}
