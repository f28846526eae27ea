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
//! | [`throttle`] | backend rejecting most `Sheddable` work | local rejection, per tier |
//!
//! `cargo run --release -p tailwater-sim --example outbound` prints the tables.

pub mod breaker;
mod events;
pub mod hedge;
pub mod retry;
pub mod throttle;

use std::fmt::Write as _;

use crate::error::SimError;

/// Every table, in Markdown, with the seed used.
pub fn report(seed: u64) -> Result<String, SimError> {
    let mut out = String::new();
    let w = &mut out;
    for policy in retry::POLICIES {
        let _ = writeln!(w, "retry-storm, server policy `{policy}`:\n");
        let _ = writeln!(
            w,
            "| clients | amplification (run) | amplification (1.5x phase) | successes |\n|---|---|---|---|"
        );
        for r in retry::run(policy)? {
            let _ = writeln!(
                w,
                "| {} | {:.2}x | {:.2}x | {} |",
                r.clients, r.amplification, r.amplification_overload, r.successes
            );
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(
        w,
        "\nhedging, fan-out {} (p99.9 of user requests):\n",
        hedge::FANOUT
    );
    let _ = writeln!(
        w,
        "| clients | p50 ms | p99 ms | p99.9 ms | extra load |\n|---|---|---|---|---|"
    );
    for r in hedge::run(seed)? {
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
    for r in breaker::run(seed)? {
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
    Ok(out)
}
