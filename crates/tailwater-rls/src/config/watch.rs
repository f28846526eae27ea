//! Reloading the configuration directory when its files change (polling their names,
//! sizes and modification times: no inotify dependency, works on every filesystem and
//! with Kubernetes' symlink swaps).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::load::config_files;
use super::{Config, ConfigError, load_dir};

/// What identifies a directory's state: each file's path, length and mtime.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The running configuration and the directory it comes from.
///
/// [`poll`](Self::poll) reloads when the directory changed; a directory that fails to load
/// keeps the running configuration, and the error is logged and kept for `/rlconfig`.
#[derive(Debug)]
pub struct ConfigWatcher {
    dir: PathBuf,
    current: Arc<ArcSwap<Config>>,
    seen: Mutex<Fingerprint>,
    max_tolerance_nanos: u64,
    last_error: Mutex<Option<ConfigError>>,
    loads_ok: AtomicU64,
    loads_failed: AtomicU64,
}

impl ConfigWatcher {
    /// Loads `dir` once; fails if the first load fails (a server should not start without
    /// its limits).
    pub fn open(dir: &Path) -> Result<Self, ConfigError> {
        Self::open_with_limit(dir, u64::MAX)
    }

    /// Like [`open`](Self::open), and every load (the first and each reload) also refuses
    /// a rule whose GCRA tolerance (`burst × emission interval` = its unit) exceeds
    /// `max_tolerance_nanos`: the Redis stores compute exactly only up to 2^55 ns
    /// (`tailwater_redis::MAX_REDIS_TOLERANCE_NANOS`, about 417 days: a `year` fits), so a
    /// longer rule would be refused at load time rather than failing every call.
    pub fn open_with_limit(dir: &Path, max_tolerance_nanos: u64) -> Result<Self, ConfigError> {
        let seen = fingerprint(dir);
        let config = load_checked(dir, max_tolerance_nanos)?;
        Ok(Self {
            dir: dir.to_owned(),
            current: Arc::new(ArcSwap::from_pointee(config)),
            seen: Mutex::new(seen),
            max_tolerance_nanos,
            last_error: Mutex::new(None),
            loads_ok: AtomicU64::new(1),
            loads_failed: AtomicU64::new(0),
        })
    }

    /// The running configuration (shared with the service, which reads it per call).
    pub fn handle(&self) -> Arc<ArcSwap<Config>> {
        Arc::clone(&self.current)
    }

    /// Reloads if the directory changed since the last look. `Ok(true)`: a new
    /// configuration is running; `Ok(false)`: nothing changed; `Err`: the directory
    /// changed but does not load, and the running configuration stays.
    pub fn poll(&self) -> Result<bool, ConfigError> {
        let now = fingerprint(&self.dir);
        {
            let mut seen = lock(&self.seen);
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        self.reload().map(|()| true)
    }

    /// Reloads now, whatever changed.
    pub fn reload(&self) -> Result<(), ConfigError> {
        match load_checked(&self.dir, self.max_tolerance_nanos) {
            Ok(config) => {
                tracing::info!(dir = %self.dir.display(), domains = config.len(), "configuration reloaded");
                self.current.store(Arc::new(config));
                self.loads_ok.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = None;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "configuration not reloaded; the running one stays");
                self.loads_failed.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Polls every `interval` until `shutdown` completes.
    pub async fn run(&self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    // Errors are logged and kept by `reload`.
                    let _ = self.poll();
                }
            }
        }
    }

    /// The error of the last failed reload, if the last reload failed.
    pub fn last_error(&self) -> Option<ConfigError> {
        lock(&self.last_error).clone()
    }

    /// Successful loads (including the first) and failed reloads.
    pub fn load_counts(&self) -> (u64, u64) {
        (
            self.loads_ok.load(Ordering::Relaxed),
            self.loads_failed.load(Ordering::Relaxed),
        )
    }
}

fn load_checked(dir: &Path, max_tolerance_nanos: u64) -> Result<Config, ConfigError> {
    let config = load_dir(dir)?;
    config.check_tolerance(max_tolerance_nanos)?;
    Ok(config)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let files = config_files(dir).unwrap_or_default();
    files
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let mtime = meta.and_then(|m| m.modified().ok());
            (p, len, mtime)
        })
        .collect()
}
