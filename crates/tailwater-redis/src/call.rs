//! One bounded call to Redis: per-call timeout, back-off after failures, counters.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Value;
use tailwater_core::ConfigError;
use tailwater_core::clock::duration_to_nanos;
use tailwater_core::rate::Quota;

use crate::conn::RedisConnection;
use crate::error::BackendError;
use crate::stats::{Counters, inc};

/// The largest `burst · T` the Lua scripts compute exactly in plain nanoseconds (2^52 ns,
/// about 52 days): every intermediate value is an integer below 2^53, exact in Lua's
/// doubles. Quotas up to this bound are sent as they are.
pub const EXACT_REDIS_TOLERANCE_NANOS: u64 = 1 << 52;

/// The grain of long quotas (ns): a quota whose `burst · T` exceeds
/// [`EXACT_REDIS_TOLERANCE_NANOS`] has its emission interval `T` rounded **up** to a
/// multiple of 8 ns ([`redis_quota`]). Redis `TIME` is in microseconds, so `now`, every
/// stored TAT and every offset are then multiples of 8 ns too: values `8·m` with
/// `m < 2^53`, still exact in doubles.
pub const REDIS_LONG_GRAIN_NANOS: u64 = 8;

/// The largest `burst · T` the Redis stores accept (2^55 ns, about 417 days: a `year`
/// rule fits, with any `u32` rate). Above [`EXACT_REDIS_TOLERANCE_NANOS`] the quota is
/// rounded to the [`REDIS_LONG_GRAIN_NANOS`] grain by [`redis_quota`].
pub const MAX_REDIS_TOLERANCE_NANOS: u64 = 1 << 55;

/// The quota the Redis scripts enforce for `q`: `q` itself when its tolerance is at most
/// [`EXACT_REDIS_TOLERANCE_NANOS`]; else the same rate and burst with the emission interval
/// `T` rounded up to a multiple of [`REDIS_LONG_GRAIN_NANOS`] (its period grows to
/// `rate · T'`). The rate is then lower by less than 8 ns / `T` (for a year of at most
/// `u32::MAX` hits, `T >= 7.3 ms`: under 1.1 parts per million). Both the script and the
/// Rust recomputation of each decision use this quota, so they still agree exactly.
///
/// Errors (field `quotas`): the rounded tolerance exceeds [`MAX_REDIS_TOLERANCE_NANOS`].
pub fn redis_quota(q: &Quota) -> Result<Quota, ConfigError> {
    if q.tolerance_nanos() <= EXACT_REDIS_TOLERANCE_NANOS {
        return Ok(*q);
    }
    if q.tolerance_nanos() > MAX_REDIS_TOLERANCE_NANOS {
        return Err(too_long(q.tolerance_nanos()));
    }
    let t = q.emission_nanos().next_multiple_of(REDIS_LONG_GRAIN_NANOS);
    let rounded = t
        .checked_mul(u64::from(q.rate()))
        .ok_or_else(|| too_long(q.tolerance_nanos()))
        .and_then(|period| Quota::new(q.rate(), Duration::from_nanos(period), q.burst()))?;
    debug_assert_eq!(rounded.emission_nanos(), t);
    if rounded.tolerance_nanos() > MAX_REDIS_TOLERANCE_NANOS {
        return Err(too_long(rounded.tolerance_nanos()));
    }
    Ok(rounded)
}

fn too_long(tolerance: u64) -> ConfigError {
    ConfigError::new(
        "quotas",
        format!(
            "burst x emission interval is {tolerance} ns; the Redis store computes exactly \
             only up to 2^55 ns (about 417 days): lower the burst or split the quota"
        ),
    )
}

/// [`redis_quota`] of each quota, borrowed as they are when none is long.
pub(crate) fn redis_quotas(quotas: &[Quota]) -> Result<Cow<'_, [Quota]>, ConfigError> {
    if quotas
        .iter()
        .all(|q| q.tolerance_nanos() <= EXACT_REDIS_TOLERANCE_NANOS)
    {
        return Ok(Cow::Borrowed(quotas));
    }
    quotas.iter().map(redis_quota).collect()
}

/// Whether a (rounded) quota is a long one: every time the script handles for it must be
/// a multiple of [`REDIS_LONG_GRAIN_NANOS`].
pub(crate) fn is_long(q: &Quota) -> bool {
    q.tolerance_nanos() > EXACT_REDIS_TOLERANCE_NANOS
}

/// A caller-given `now` (tests) for quotas of which some are long: rounded down to the
/// grain, as Redis `TIME` (microseconds) always is.
pub(crate) fn grain_now(now: u64, quotas: &[Quota]) -> u64 {
    if quotas.iter().any(is_long) {
        now - now % REDIS_LONG_GRAIN_NANOS
    } else {
        now
    }
}

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

/// Checks that every quota can be computed exactly by the scripts (a long one must have
/// been rounded by [`redis_quota`]); appends `T, DVT, burst`.
pub(crate) fn quota_args(quotas: &[Quota]) -> Result<Vec<u64>, ConfigError> {
    let mut args = Vec::with_capacity(quotas.len() * 3);
    for q in quotas {
        if q.tolerance_nanos() > MAX_REDIS_TOLERANCE_NANOS {
            return Err(too_long(q.tolerance_nanos()));
        }
        if is_long(q) && q.emission_nanos() % REDIS_LONG_GRAIN_NANOS != 0 {
            return Err(ConfigError::new(
                "quotas",
                format!(
                    "burst x emission interval is {} ns, above 2^52 ns: the emission interval \
                     ({} ns) must be a multiple of {REDIS_LONG_GRAIN_NANOS} ns (redis_quota)",
                    q.tolerance_nanos(),
                    q.emission_nanos()
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

    const YEAR: Duration = Duration::from_secs(365 * 86_400);

    #[test]
    fn long_quotas_are_rounded_to_the_grain_and_bounded() {
        // Short quotas (a 30-day month included) are sent as they are.
        let month = Quota::per_month(7).expect("valid");
        assert_eq!(redis_quota(&month).expect("fits"), month);
        // A year of 7: T = ceil(365 d / 7) = 4 505 142 857 142 858 ns, rounded up to 8 ns.
        let year = Quota::per_period(7, YEAR).expect("valid");
        assert_eq!(year.emission_nanos(), 4_505_142_857_142_858);
        let r = redis_quota(&year).expect("a year fits");
        assert_eq!(r.emission_nanos(), 4_505_142_857_142_864);
        assert_eq!((r.rate(), r.burst()), (7, 7));
        assert_eq!(r.tolerance_nanos(), 7 * 4_505_142_857_142_864);
        assert!(r.tolerance_nanos() <= MAX_REDIS_TOLERANCE_NANOS);
        // Rounding is idempotent, and the rounded quota passes the script check.
        assert_eq!(redis_quota(&r).expect("fits"), r);
        assert_eq!(
            quota_args(&[r]).expect("sendable")[0],
            4_505_142_857_142_864
        );
        // The unrounded one does not: the scripts would not be exact.
        assert_eq!(quota_args(&[year]).expect_err("inexact").field(), "quotas");
        // The largest u32 rate over a year still fits.
        let many = Quota::per_period(u32::MAX, YEAR).expect("valid");
        assert!(redis_quota(&many).is_ok());
        // Beyond 2^55 ns (about 417 days) the store refuses, naming the field.
        let long = Quota::per_period(10, Duration::from_secs(420 * 86_400)).expect("valid");
        assert_eq!(redis_quota(&long).expect_err("too long").field(), "quotas");
        assert_eq!(quota_args(&[long]).expect_err("too long").field(), "quotas");
        // A caller-given `now` is rounded down only when a quota is long.
        assert_eq!(grain_now(1_000_000_007, &[month]), 1_000_000_007);
        assert_eq!(grain_now(1_000_000_007, &[month, r]), 1_000_000_000);
    }

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
