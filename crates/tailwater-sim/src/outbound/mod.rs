//! The client side: circuit breakers, the retry-and-hedge budget, hedging and adaptive
//! throttling, simulated with tailwater-core's own `outbound` state machines on virtual time,
//! each side by side with the defaults of the libraries it is measured against (modelled in
//! the same run, on the same arrivals).
//!
//! | scenario | what it proves | goal (issue 12) |
//! |---|---|---|
//! | [`retry`] | `retry-storm` (naive ×3) with the shared budget | amplification ≤ 1.1× vs ≥ 2.5× naive; goodput ≥ no retries |
//! | [`hedge`] | heavy-tail fan-out | p99.9 ≥ 5× lower for ≤ 5 % extra load |
//! | [`breaker`] | 10 s hard outage, 20 clients | ≤ probes per open interval; closed ≤ 2 intervals after recovery; no herd |
//! | [`tied`] | tied requests vs hedging where the tail is queueing | (Tail at Scale: tied copies cost little extra load) |
//! | [`throttle`] | backend rejecting most `Sheddable` work | local rejection, per tier |
//!
//! `cargo run --release -p tailwater-sim --example outbound` prints the tables.

pub mod breaker;
mod events;
pub mod hedge;
pub mod retry;
pub mod throttle;
pub mod tied;

use std::fmt::Write as _;

use crate::error::SimError;

/// One goal of issue 12, checked on the figures of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GoalCheck {
    /// What is checked.
    pub goal: &'static str,
    /// Whether the figure meets it.
    pub ok: bool,
    /// The figure.
    pub figure: String,
}

/// Every table in Markdown, then the goals with ok/FAIL. `Ok((text, all goals met))`.
pub fn report(seed: u64) -> Result<(String, bool), SimError> {
    let mut out = String::new();
    let w = &mut out;
    let mut checks = Vec::new();
    for policy in retry::POLICIES {
        let rows = retry::run(policy)?;
        let _ = writeln!(
            w,
            "retry-storm, 1.5x for {} s, server policy `{policy}`:\n",
            retry::OVERLOAD_S
        );
        let _ = writeln!(
            w,
            "| clients | amplification (run) | amplification (overload phase) | successes |\n|---|---|---|---|"
        );
        for r in &rows {
            let _ = writeln!(
                w,
                "| {} | {:.2}x | {:.2}x | {} |",
                r.clients, r.amplification, r.amplification_overload, r.successes
            );
        }
        let _ = writeln!(w);
        let find = |p: &str| rows.iter().find(|r| r.clients.starts_with(p));
        if let (Some(none), Some(naive), Some(tw)) = (
            find("no retries"),
            find("naive"),
            find("tailwater client, defaults"),
        ) {
            // The storm's premise is the server without a limiter (behind Headroom, fast
            // sheds end most requests' attempts early).
            if policy == "none" {
                checks.push(GoalCheck {
                    goal: "retry-storm: naive x3 amplifies >= 2.5x",
                    ok: naive.amplification >= 2.5,
                    figure: format!("{policy}: {:.2}x", naive.amplification),
                });
            }
            checks.push(GoalCheck {
                goal: "retry-storm: <= 1.1x with the budget (tailwater client, defaults)",
                ok: tw.amplification <= 1.1,
                figure: format!(
                    "{policy}: {:.3}x (overload phase {:.3}x)",
                    tw.amplification, tw.amplification_overload
                ),
            });
            checks.push(GoalCheck {
                goal: "retry-storm: goodput with the budget >= no retries",
                ok: tw.successes >= none.successes,
                figure: format!("{policy}: {} vs {}", tw.successes, none.successes),
            });
        }
    }
    let rows = hedge::run(seed)?;
    let _ = writeln!(
        w,
        "hedging, fan-out {} (p99.9 of user requests):\n",
        hedge::FANOUT
    );
    let _ = writeln!(
        w,
        "| clients | p50 ms | p99 ms | p99.9 ms | extra load |\n|---|---|---|---|---|"
    );
    for r in &rows {
        let _ = writeln!(
            w,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} % |",
            r.clients,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            100.0 * r.extra_load
        );
    }
    if let (Some(none), Some(tw)) = (rows.first(), rows.last()) {
        checks.push(GoalCheck {
            goal: "hedging: p99.9 >= 5x lower for <= 5 % extra load",
            ok: tw.p999_ms * 5.0 <= none.p999_ms && tw.extra_load <= 0.05,
            figure: format!(
                "{:.1} -> {:.1} ms, +{:.1} %",
                none.p999_ms,
                tw.p999_ms,
                100.0 * tw.extra_load
            ),
        });
    }
    let rows = tied::run(seed)?;
    let _ = writeln!(
        w,
        "\ntied requests, {} servers at {:.0} % load, 0.5 % of calls 50-100 ms (queueing tail):\n",
        tied::SERVERS,
        100.0 * tied::LOAD
    );
    let _ = writeln!(
        w,
        "| clients | p50 ms | p99 ms | p99.9 ms | extra load | copies dropped by a tie |\n|---|---|---|---|---|---|"
    );
    for r in &rows {
        let _ = writeln!(
            w,
            "| {} | {:.2} | {:.1} | {:.1} | {:.1} % | {} |",
            r.clients,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            100.0 * r.extra_load,
            r.tie_dropped
        );
    }
    let rows = breaker::run(seed)?;
    let _ = writeln!(
        w,
        "\nbreaker, {} clients, outage {:?} s:\n",
        breaker::CLIENTS,
        breaker::OUTAGE
    );
    let _ = writeln!(
        w,
        "| clients | probes | calls in outage per open interval (max) | closed after recovery (s, max) | in open intervals | peak probes / 100 ms | refused |\n|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        let _ = writeln!(
            w,
            "| {} | {} | {:.1} | {:.1} | {:.2} | {} | {} |",
            r.clients,
            r.probes,
            r.leaked_per_open,
            r.closed_after_s,
            r.closed_after_intervals,
            r.peak_probes_per_100ms,
            r.refused
        );
    }
    let find = |p: &str| rows.iter().find(|r| r.clients == p);
    if let (Some(tw), Some(flat)) = (find("tailwater defaults"), find("tailwater, no jitter")) {
        checks.push(GoalCheck {
            goal: "breaker: calls while open <= probes per open interval",
            ok: tw.leaked_per_open <= f64::from(tw.probes),
            figure: format!("{:.1} <= {}", tw.leaked_per_open, tw.probes),
        });
        checks.push(GoalCheck {
            goal: "breaker: closed within 2 open intervals of recovery",
            ok: tw.closed_after_intervals <= 2.0,
            figure: format!(
                "{:.2} intervals ({:.1} s)",
                tw.closed_after_intervals, tw.closed_after_s
            ),
        });
        checks.push(GoalCheck {
            goal: "breaker: no herd (peak probes per 100 ms, jitter vs none)",
            ok: tw.peak_probes_per_100ms * 2 <= flat.peak_probes_per_100ms,
            figure: format!(
                "{} vs {} of {} clients",
                tw.peak_probes_per_100ms,
                flat.peak_probes_per_100ms,
                breaker::CLIENTS
            ),
        });
    }
    let _ = writeln!(
        w,
        "\nadaptive throttling (backend accepts 1000/s, critical first):\n"
    );
    let _ = writeln!(
        w,
        "| clients | backend requests per accept | critical goodput | critical rejected locally |\n|---|---|---|---|"
    );
    for r in throttle::run(seed)? {
        let _ = writeln!(
            w,
            "| {} | {:.2} | {:.1} % | {} |",
            r.clients,
            r.backend_per_accept,
            100.0 * r.critical_goodput,
            r.critical_local_rejects
        );
    }
    let _ = writeln!(w, "\ngoals (issue 12):\n");
    for c in &checks {
        let _ = writeln!(
            w,
            "- {} {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.goal,
            c.figure
        );
    }
    Ok((out, checks.iter().all(|c| c.ok)))
}
