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
/// A success ends the back-off opened by any call that started before it completed.
/// After a Redis restart, the connection manager keeps its last, failed connection attempt
/// installed until a call fails on it: that call (typically a background one, in flight
/// while another call already goes through the new connection) fails *after* Redis is back,
/// for a reason that is already over. It falls back on its own, but it must not send the
/// calls that follow the first success to the fallback too (the flake of
/// `tests/failure.rs`, seen in CI: one fallback right after the first Redis answer).
///
/// The rule is checked when the back-off is read, not only when it is opened: a failure
/// that opened it just before a success completed (whatever the order of the two threads'
/// writes) is older than that success, and [`is_down`](Self::is_down) ignores it.
///
/// Its clock is tokio's (`tokio::time::Instant`): the back-off is a wait in async code, so
/// it follows `tokio::time::pause()` in tests like the per-call timeout does.
#[derive(Debug)]
pub(crate) struct Gate {
    origin: tokio::time::Instant,
    /// End of the back-off (gate clock, ns).
    down_until: AtomicU64,
    /// When the latest call that opened the back-off started (gate clock, ns).
    down_started: AtomicU64,
    /// When the latest successful call completed (gate clock, ns; 0 = never).
    last_ok: AtomicU64,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            down_until: AtomicU64::new(0),
            down_started: AtomicU64::new(0),
            last_ok: AtomicU64::new(0),
        }
    }

    /// The gate clock now (ns): pass it back to [`failed`](Self::failed) for the call that
    /// starts now.
    pub(crate) fn start(&self) -> u64 {
        self.now()
    }

    /// A call succeeded: any back-off opened by a call that started before now is over.
    pub(crate) fn succeeded(&self) {
        self.last_ok.fetch_max(self.now(), Ordering::AcqRel);
    }

    /// A call that started at `started` failed: open the back-off unless a success
    /// completed after it started.
    pub(crate) fn failed(&self, started: u64, backoff: Duration) {
        if started < self.last_ok.load(Ordering::Acquire) {
            return;
        }
        // `down_started` first: a reader that sees the new `down_until` sees it too.
        self.down_started.fetch_max(started, Ordering::AcqRel);
        self.down_until
            .fetch_max(self.now() + duration_to_nanos(backoff), Ordering::AcqRel);
    }

    fn now(&self) -> u64 {
        // +1: 0 means "never" for `last_ok`.
        duration_to_nanos(self.origin.elapsed()) + 1
    }

    /// Whether calls should skip Redis now: within the back-off of a failure that no later
    /// success has overtaken.
    pub(crate) fn is_down(&self) -> bool {
        if self.now() >= self.down_until.load(Ordering::Acquire) {
            return false;
        }
        self.down_started.load(Ordering::Acquire) >= self.last_ok.load(Ordering::Acquire)
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
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    for a in args {
        inv.arg(a);
    }
    invoke(conn, gate, stats, &inv, timeout, true).await
}

/// Sends a prepared script invocation, bounded by `timeout`: counts the call (and its
/// error, and its timeout when `count_timeout`: group calls count their callers' timeouts
/// instead) and tells `gate` how it went. The caller checked the gate.
pub(crate) async fn invoke(
    conn: &RedisConnection,
    gate: &Gate,
    stats: &Counters,
    inv: &redis::ScriptInvocation<'_>,
    timeout: Duration,
    count_timeout: bool,
) -> Result<Vec<Value>, BackendError> {
    inc(&stats.redis_calls);
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
            if count_timeout {
                inc(&stats.timeouts);
            }
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

    /// Spins (no sleep) until the gate clock moved past `t`: outside a runtime the gate
    /// reads the real clock.
    fn after(gate: &Gate, t: u64) -> u64 {
        while gate.start() == t {
            std::hint::spin_loop();
        }
        gate.start()
    }

    /// A call sent on the old connection failed *after* a newer call had succeeded: it
    /// must not open the back-off.
    #[test]
    fn a_failure_older_than_the_latest_success_does_not_open_the_backoff() {
        let gate = Gate::new();
        let backoff = Duration::from_secs(60);
        let stale = gate.start();
        after(&gate, stale);
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

    /// The CI flake itself: a call failed on the manager's last failed connection attempt
    /// (opening the back-off) just before a concurrent call, already past the gate,
    /// succeeded on the new connection. The success ends that back-off: the next call goes
    /// to Redis instead of falling back once more.
    #[test]
    fn a_success_ends_the_backoff_of_an_older_failure() {
        let gate = Gate::new();
        let backoff = Duration::from_secs(60);
        let failing = gate.start();
        let t = after(&gate, failing);
        gate.failed(failing, backoff);
        assert!(gate.is_down());
        after(&gate, t);
        gate.succeeded();
        assert!(!gate.is_down(), "the back-off outlived a later success");
        // A new failure (a call started after that success) opens it again.
        let next = after(&gate, gate.start());
        gate.failed(next, backoff);
        assert!(gate.is_down());
    }
}
