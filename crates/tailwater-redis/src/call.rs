//! One bounded call to Redis: per-call timeout, back-off after failures, counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Value;
use tailwater_core::ConfigError;
use tailwater_core::clock::duration_to_nanos;
use tailwater_core::rate::Quota;

use crate::conn::RedisConnection;
use crate::error::BackendError;
use crate::stats::{Counters, inc};

/// The largest `burst · T` the Lua scripts compute exactly (2^52 ns, about 52 days).
pub const MAX_REDIS_TOLERANCE_NANOS: u64 = 1 << 52;

/// Remembers that Redis failed, so that calls within the back-off skip it.
///
/// A failure only opens the back-off if its call started after the latest success
/// completed. A call that was already in flight when another call succeeded (typically one
/// sent on the old connection while the connection manager reconnected after a Redis
/// restart) fails for a reason that is already over: it falls back on its own, but it must
/// not send the calls that follow it to the fallback too.
///
/// Its clock is tokio's (`tokio::time::Instant`): the back-off is a wait in async code, so
/// it follows `tokio::time::pause()` in tests like the per-call timeout does.
#[derive(Debug)]
pub(crate) struct Gate {
    origin: tokio::time::Instant,
    down_until: AtomicU64,
    /// When the latest successful call completed (gate clock, ns; 0 = never).
    last_ok: AtomicU64,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            down_until: AtomicU64::new(0),
            last_ok: AtomicU64::new(0),
        }
    }

    /// The gate clock now (ns): pass it back to [`succeeded`](Self::succeeded) or
    /// [`failed`](Self::failed) for the call that starts now.
    pub(crate) fn start(&self) -> u64 {
        self.now()
    }

    /// A call succeeded.
    pub(crate) fn succeeded(&self) {
        self.last_ok.fetch_max(self.now(), Ordering::Relaxed);
    }

    /// A call that started at `started` failed: open the back-off unless a success
    /// completed after it started.
    pub(crate) fn failed(&self, started: u64, backoff: Duration) {
        if started < self.last_ok.load(Ordering::Relaxed) {
            return;
        }
        self.mark_down(backoff);
    }

    fn now(&self) -> u64 {
        // +1: 0 means "never" for `last_ok`.
        duration_to_nanos(self.origin.elapsed()) + 1
    }

    pub(crate) fn is_down(&self) -> bool {
        self.now() < self.down_until.load(Ordering::Relaxed)
    }

    fn mark_down(&self, backoff: Duration) {
        self.down_until
            .store(self.now() + duration_to_nanos(backoff), Ordering::Relaxed);
    }
}

/// Checks that every quota can be computed exactly by the scripts; appends `T, DVT, burst`.
pub(crate) fn quota_args(quotas: &[Quota]) -> Result<Vec<u64>, ConfigError> {
    let mut args = Vec::with_capacity(quotas.len() * 3);
    for q in quotas {
        if q.tolerance_nanos() > MAX_REDIS_TOLERANCE_NANOS {
            return Err(ConfigError::new(
                "quotas",
                format!(
                    "burst x emission interval is {} ns; the Redis store computes exactly only \
                     up to 2^52 ns (about 52 days): lower the burst or split the quota",
                    q.tolerance_nanos()
                ),
            ));
        }
        args.extend([
            q.emission_nanos(),
            q.tolerance_nanos(),
            u64::from(q.burst()),
        ]);
    }
    Ok(args)
}

/// Runs `script` on `keys` with `args`, bounded by `timeout`, counting into `stats`.
pub(crate) async fn run(
    conn: &RedisConnection,
    gate: &Gate,
    stats: &Counters,
    script: &redis::Script,
    keys: &[String],
    args: &[String],
    timeout: Duration,
) -> Result<Vec<Value>, BackendError> {
    if gate.is_down() {
        inc(&stats.skipped_backoff);
        return Err(BackendError::BackingOff);
    }
    inc(&stats.redis_calls);
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    for a in args {
        inv.arg(a);
    }
    let mut c = conn.clone();
    let started = gate.start();
    let result = match tokio::time::timeout(timeout, inv.invoke_async::<Vec<Value>>(&mut c)).await {
        Ok(Ok(v)) => {
            gate.succeeded();
            return Ok(v);
        }
        Ok(Err(e)) => {
            inc(&stats.errors);
            BackendError::Redis(e)
        }
        Err(_) => {
            inc(&stats.timeouts);
            BackendError::Timeout(timeout)
        }
    };
    gate.failed(started, conn.options.retry_backoff);
    Err(result)
}

pub(crate) fn int(v: Option<&Value>) -> Result<i64, BackendError> {
    match v {
        Some(Value::Int(i)) => Ok(*i),
        other => Err(BackendError::Protocol(format!(
            "expected an integer, got {other:?}"
        ))),
    }
}

pub(crate) fn text(v: Option<&Value>) -> Result<String, BackendError> {
    match v {
        Some(Value::BulkString(b)) => String::from_utf8(b.clone())
            .map_err(|_| BackendError::Protocol("non-UTF-8 string".into())),
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        Some(Value::Int(i)) => Ok(i.to_string()),
        other => Err(BackendError::Protocol(format!(
            "expected a string, got {other:?}"
        ))),
    }
}

pub(crate) fn nanos(v: Option<&Value>) -> Result<u64, BackendError> {
    let s = text(v)?;
    crate::script::parse_nanos(&s)
        .ok_or_else(|| BackendError::Protocol(format!("not a nanosecond count: {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flake of `tests/failure.rs`: after a Redis restart, a call sent on the old
    /// connection failed *after* a newer call had succeeded, and sent the next calls to the
    /// fallback for a whole back-off.
    #[test]
    fn a_failure_older_than_the_latest_success_does_not_open_the_backoff() {
        let gate = Gate::new();
        let backoff = Duration::from_secs(60);
        let stale = gate.start();
        // Outside a runtime the gate reads the real clock: wait (no sleep) until it ticked.
        while gate.start() == stale {
            std::hint::spin_loop();
        }
        gate.succeeded();
        gate.failed(stale, backoff);
        assert!(!gate.is_down(), "a stale failure re-opened the back-off");
        let fresh = gate.start();
        gate.failed(fresh, backoff);
        assert!(
            gate.is_down(),
            "a failure after the success must open the back-off"
        );
    }
}
