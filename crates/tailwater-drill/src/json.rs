//! The drill as JSON.
//!
//! Keys (stable): `capacity`, `capacity_source`, `target` (the `--target` URL or null), `recovery_s` (external target: seconds to recover after the unprotected side; null otherwise or when it did not), `workers`, `service_time_ms`, `service_dist`, `timeout_ms`, `connections`,
//! `algorithm`, `queue`, `mix` (tier → percent), `elapsed_s`, `outcomes_balance`, and
//! `unprotected` / `protected`, each with `elapsed_s`, `abandoned`, `delayed_by_cap`,
//! `wasted_after_end`, `backend_service_mean_ms`, `proxy` (protected only: `final_limit`, `min_limit`, `max_limit`,
//! `peak_in_flight`, `admitted`, `shed`) and `phases[]`: `multiplier`, `offered`,
//! `duration_s`, `scheduled`, `requests`, `ok`, `shed`, `other_status`, `timeouts`, `errors`,
//! `goodput`, `goodput_pct`, `success_p50_us`, `success_p99_us`, `wasted`,
//! `backend_completed`, `tiers[]` (`tier`, `requests`, `ok`); and `series[]` (one point per
//! 250 ms interval: `t_s`, `offered`, `goodput`, `success_p99_ms`, `limit` (protected, else
//! null), `wasted` (per second)).

use serde_json::{Map, Value, json};

use crate::model::{DrillReport, PhaseResult, SideResult};

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn phase_json(p: &PhaseResult, capacity: f64) -> Value {
    json!({
        "multiplier": p.multiplier,
        "offered": round2(p.offered),
        "duration_s": p.duration.as_secs_f64(),
        "scheduled": p.scheduled,
        "requests": p.requests,
        "ok": p.ok,
        "shed": p.shed,
        "other_status": p.other_status,
        "timeouts": p.timeouts,
        "errors": p.errors,
        "goodput": round2(p.goodput),
        "goodput_pct": round2(100.0 * p.goodput_share(capacity)),
        "success_p50_us": p.success_p50_us,
        "success_p99_us": p.success_p99_us,
        "wasted": p.wasted,
        "backend_completed": p.backend_completed,
        "tiers": p.tiers.iter().map(|t| json!({
            "tier": t.tier,
            "requests": t.requests,
            "ok": t.ok,
        })).collect::<Vec<_>>(),
    })
}

fn side_json(s: &SideResult, capacity: f64) -> Value {
    let mut m = Map::new();
    m.insert("elapsed_s".into(), json!(round2(s.elapsed.as_secs_f64())));
    m.insert("abandoned".into(), json!(s.abandoned));
    m.insert("delayed_by_cap".into(), json!(s.delayed_by_cap));
    m.insert("wasted_after_end".into(), json!(s.wasted_after_end));
    m.insert(
        "backend_service_mean_ms".into(),
        json!(
            s.backend_service_mean
                .map(|d| round2(d.as_secs_f64() * 1000.0))
        ),
    );
    if let Some(p) = &s.proxy {
        m.insert(
            "proxy".into(),
            json!({
                "final_limit": p.final_limit,
                "min_limit": p.min_limit,
                "max_limit": p.max_limit,
                "peak_in_flight": p.peak_in_flight,
                "admitted": p.admitted,
                "shed": p.shed,
            }),
        );
    }
    m.insert(
        "phases".into(),
        Value::Array(s.phases.iter().map(|p| phase_json(p, capacity)).collect()),
    );
    m.insert(
        "series".into(),
        Value::Array(
            s.series
                .iter()
                .map(|p| {
                    json!({
                        "t_s": round2(p.t),
                        "offered": round2(p.offered),
                        "goodput": round2(p.goodput),
                        "success_p99_ms": round2(p.success_p99_ms),
                        "limit": p.limit,
                        "wasted": round2(p.wasted),
                    })
                })
                .collect(),
        ),
    );
    Value::Object(m)
}

/// The drill as JSON, with the stable keys listed in this module's documentation.
pub fn to_json(report: &DrillReport) -> Value {
    let mix: Map<String, Value> = report
        .mix
        .iter()
        .map(|(t, p)| (t.clone(), json!(round2(*p))))
        .collect();
    json!({
        "capacity": round2(report.capacity),
        "capacity_source": report.capacity_source,
        "target": report.target,
        "recovery_s": report.recovery.map(|r| r.map(|d| round2(d.as_secs_f64()))),
        "workers": report.workers,
        "service_time_ms": report.service_time.as_secs_f64() * 1000.0,
        "service_dist": report.service_dist,
        "timeout_ms": report.timeout.as_secs_f64() * 1000.0,
        "connections": report.connections,
        "algorithm": report.algorithm,
        "queue": report.queue,
        "mix": mix,
        "elapsed_s": round2(report.elapsed.as_secs_f64()),
        "outcomes_balance": report.sides().iter().all(|s| s.outcomes_balance()),
        "unprotected": side_json(&report.unprotected, report.capacity),
        "protected": side_json(&report.protected, report.capacity),
    })
}
