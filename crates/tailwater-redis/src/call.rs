//! One bounded call to Redis: per-call timeout, back-off after failures, counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Value;
use tailwater_core::ConfigError;
use tailwater_core::clock::{Clock, MonotonicClock, duration_to_nanos};
use tailwater_core::rate::Quota;

use crate::conn::RedisConnection;
use crate::error::BackendError;
use crate::stats::{Counters, inc};

/// The largest `burst · T` the Lua scripts compute exactly (2^52 ns, about 52 days).
pub const MAX_REDIS_TOLERANCE_NANOS: u64 = 1 << 52;

/// Remembers that Redis failed, so that calls within the back-off skip it.
#[derive(Debug)]
pub(crate) struct Gate {
    clock: MonotonicClock,
    down_until: AtomicU64,
}

impl Gate {
    pub(crate) fn new() -> Self {
        Self {
            clock: MonotonicClock::new(),
            down_until: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        duration_to_nanos(self.clock.now())
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
    let result = match tokio::time::timeout(timeout, inv.invoke_async::<Vec<Value>>(&mut c)).await {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => {
            inc(&stats.errors);
            BackendError::Redis(e)
        }
        Err(_) => {
            inc(&stats.timeouts);
            BackendError::Timeout(timeout)
        }
    };
    gate.mark_down(conn.options.retry_backoff);
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
