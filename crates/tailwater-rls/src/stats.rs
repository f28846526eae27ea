//! Counters per rule, as envoyproxy/ratelimit keeps them (`total_hits`, `over_limit`,
//! `near_limit`, `within_limit`, `shadow_mode` per stat key), rendered as Prometheus text.
//!
//! Memory is bounded: at most [`MAX_STAT_KEYS`] keys (rule paths, plus request values for
//! `detailed_metric` rules); hits of further keys are counted under `_overflow`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tailwater_core::vocabulary::escape_label_value;

/// The most stat keys kept.
pub const MAX_STAT_KEYS: usize = 10_000;

/// The name hits of keys beyond [`MAX_STAT_KEYS`] are counted under.
pub const OVERFLOW_KEY: &str = "_overflow";

/// The counters of one stat key (monotonic, in hits).
#[derive(Debug, Default)]
pub struct RuleCounters {
    /// Hits asked for.
    pub total_hits: AtomicU64,
    /// Hits over the limit (denied, or would have been in shadow mode).
    pub over_limit: AtomicU64,
    /// Admitted hits past 80 % of the limit.
    pub near_limit: AtomicU64,
    /// Admitted hits.
    pub within_limit: AtomicU64,
    /// Hits over the limit that shadow mode admitted.
    pub shadow_mode: AtomicU64,
}

/// Service-wide counters and the per-rule ones.
#[derive(Debug, Default)]
pub struct Stats {
    rules: RwLock<HashMap<String, Arc<RuleCounters>>>,
    /// Calls answered OK.
    pub calls_ok: AtomicU64,
    /// Calls answered OVER_LIMIT.
    pub calls_over_limit: AtomicU64,
    /// Calls refused as invalid (gRPC `INVALID_ARGUMENT`).
    pub calls_invalid: AtomicU64,
    /// Calls refused because the store failed closed (gRPC `UNAVAILABLE`).
    pub calls_unavailable: AtomicU64,
    /// Calls decided by a fallback of the Redis failure policy (open or degraded).
    pub calls_fallback: AtomicU64,
}

impl Stats {
    /// The counters of `key`, created on first use (or the overflow counters when full).
    pub fn rule(&self, key: &str) -> Arc<RuleCounters> {
        // The common case (a known key) takes the read lock only.
        {
            let map = match self.rules.read() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            if let Some(c) = map.get(key) {
                return Arc::clone(c);
            }
        }
        let mut map = match self.rules.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let key = if map.len() >= MAX_STAT_KEYS {
            OVERFLOW_KEY
        } else {
            key
        };
        Arc::clone(map.entry(key.to_owned()).or_default())
    }

    /// Prometheus text exposition of every counter.
    pub fn render(&self, out: &mut String, loads: (u64, u64), store: &str) {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP tailwater_rls_calls_total ShouldRateLimit calls by outcome.\n\
             # TYPE tailwater_rls_calls_total counter"
        );
        for (code, v) in [
            ("ok", c(&self.calls_ok)),
            ("over_limit", c(&self.calls_over_limit)),
            ("invalid", c(&self.calls_invalid)),
            ("unavailable", c(&self.calls_unavailable)),
        ] {
            let _ = writeln!(out, "tailwater_rls_calls_total{{code=\"{code}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP tailwater_rls_fallback_calls_total Calls decided by the store's failure policy.\n\
             # TYPE tailwater_rls_fallback_calls_total counter\n\
             tailwater_rls_fallback_calls_total{{store=\"{store}\"}} {}",
            c(&self.calls_fallback)
        );
        let _ = writeln!(
            out,
            "# HELP tailwater_rls_config_loads_total Configuration loads by result.\n\
             # TYPE tailwater_rls_config_loads_total counter\n\
             tailwater_rls_config_loads_total{{result=\"success\"}} {}\n\
             tailwater_rls_config_loads_total{{result=\"error\"}} {}",
            loads.0, loads.1
        );
        let map = match self.rules.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for (name, help, pick) in [
            ("total_hits", "Hits asked for.", 0),
            ("over_limit", "Hits over the limit.", 1),
            ("near_limit", "Admitted hits past 80% of the limit.", 2),
            ("within_limit", "Admitted hits.", 3),
            ("shadow_mode", "Over-limit hits admitted by shadow mode.", 4),
        ] {
            let _ = writeln!(
                out,
                "# HELP tailwater_rls_rule_{name} {help}\n# TYPE tailwater_rls_rule_{name} counter"
            );
            for k in &keys {
                let r = &map[*k];
                let v = match pick {
                    0 => &r.total_hits,
                    1 => &r.over_limit,
                    2 => &r.near_limit,
                    3 => &r.within_limit,
                    _ => &r.shadow_mode,
                };
                let _ = writeln!(
                    out,
                    "tailwater_rls_rule_{name}{{key=\"{}\"}} {}",
                    escape_label_value(k),
                    c(v)
                );
            }
        }
    }
}

/// Prometheus text of a Redis store's counters, as `tailwater_rls_redis_<name>_total`
/// labelled with the store kind (`redis`, `redis-leased`, `redis-cluster`).
pub fn render_redis(out: &mut String, store: &str, s: &tailwater_redis::RedisStats) {
    for (name, help, v) in [
        ("calls", "Scripts sent to Redis.", s.redis_calls),
        (
            "grouped_decisions",
            "Decisions sent inside group-commit scripts.",
            s.grouped_decisions,
        ),
        ("allowed", "Decisions Redis admitted.", s.redis_allowed),
        ("denied", "Decisions Redis denied.", s.redis_denied),
        (
            "timeouts",
            "Decisions that hit the per-call timeout.",
            s.timeouts,
        ),
        (
            "errors",
            "Scripts that failed with a Redis or connection error.",
            s.errors,
        ),
        (
            "skipped_backoff",
            "Decisions not sent to Redis during the back-off after a failure.",
            s.skipped_backoff,
        ),
        (
            "fallback_open",
            "Decisions admitted by fail-open.",
            s.fallback_open,
        ),
        (
            "fallback_closed",
            "Decisions refused by fail-closed.",
            s.fallback_closed,
        ),
        (
            "fallback_degraded",
            "Decisions of the local limit / N fallback.",
            s.fallback_degraded,
        ),
        (
            "mismatches",
            "Script decisions that differed from the Rust GCRA (should stay 0).",
            s.mismatches,
        ),
        (
            "local_allowed",
            "Leased: decisions admitted from local credit.",
            s.local_allowed,
        ),
        (
            "local_denied",
            "Leased: decisions denied locally.",
            s.local_denied,
        ),
        (
            "lease_refills",
            "Leased: refills sent to Redis.",
            s.lease_refills,
        ),
        (
            "lease_granted",
            "Leased: cells granted by Redis.",
            s.lease_granted,
        ),
        (
            "lease_expired",
            "Leased: granted cells dropped unused.",
            s.lease_expired,
        ),
        (
            "lease_returned",
            "Leased: unused cells given back.",
            s.lease_returned,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP tailwater_rls_redis_{name}_total {help}
             # TYPE tailwater_rls_redis_{name}_total counter
             tailwater_rls_redis_{name}_total{{store=\"{store}\"}} {v}"
        );
    }
}
