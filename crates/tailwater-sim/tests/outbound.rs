//! The client-side scenarios meet issue 12's goals (figures in the README).

use tailwater_sim::outbound::{breaker, hedge, retry, throttle, tied};

#[test]
fn hedging_cuts_the_fan_out_tail_within_five_percent() {
    let rows = hedge::run(1).unwrap();
    let none = &rows[0];
    let tw = rows
        .iter()
        .find(|r| r.clients.starts_with("tailwater"))
        .unwrap();
    assert!(tw.p999_ms * 5.0 <= none.p999_ms, "{tw:?} vs {none:?}");
    assert!(tw.extra_load <= 0.05, "{tw:?}");
}

#[test]
fn breaker_bounds_probes_recovers_in_two_intervals_and_spreads_probes() {
    let rows = breaker::run(1).unwrap();
    let tw = rows
        .iter()
        .find(|r| r.clients == "tailwater defaults")
        .unwrap();
    let flat = rows
        .iter()
        .find(|r| r.clients == "tailwater, no jitter")
        .unwrap();
    assert!(tw.leaked_per_open <= f64::from(tw.probes), "{tw:?}");
    assert!(
        tw.closed_after_intervals > 0.0 && tw.closed_after_intervals <= 2.0,
        "{tw:?}"
    );
    // Jitter: the 20 clients' probes do not arrive in one 100 ms burst.
    assert!(
        tw.peak_probes_per_100ms * 2 <= flat.peak_probes_per_100ms,
        "{tw:?} vs {flat:?}"
    );
}

#[test]
fn the_storm_amplifies_naive_retries_and_the_default_client_holds_it() {
    for policy in retry::POLICIES {
        let rows = retry::run(policy).unwrap();
        let get = |p: &str| rows.iter().find(|r| r.clients.starts_with(p)).unwrap();
        let (none, naive) = (get("no retries"), get("naive"));
        let tw = get("tailwater client, defaults");
        if policy == "none" {
            // The premise: naive x3 at least 2.5x (the 4 s built-in gave 2.40x).
            assert!(naive.amplification >= 2.5, "{naive:?}");
        }
        // The goal, over the run, at the defaults. Over the overload phase alone 10 % + the
        // 10/s floor can reach 1.104x (the floor is 0.4 % of the storm's requests): held to
        // 1.105x there, which a 20 % ratio (1.19x) fails.
        assert!(tw.amplification <= 1.1, "{policy}: {tw:?}");
        assert!(tw.amplification_overload <= 1.105, "{policy}: {tw:?}");
        assert!(
            tw.successes >= none.successes,
            "{policy}: {tw:?} vs {none:?}"
        );
    }
}

#[test]
fn per_tier_throttling_keeps_critical_work_and_offloads_the_backend() {
    let rows = throttle::run(1).unwrap();
    let (none, shared, tiered) = (&rows[0], &rows[1], &rows[2]);
    assert!(
        tiered.backend_per_accept < none.backend_per_accept / 2.0,
        "{tiered:?}"
    );
    assert!(tiered.critical_goodput >= 0.99, "{tiered:?}");
    assert!(shared.critical_goodput < 0.9, "{shared:?}");
}

#[test]
fn tied_requests_cut_the_queueing_tail_for_little_extra_load() {
    let rows = tied::run(1).unwrap();
    let get = |p: &str| rows.iter().find(|r| r.clients.starts_with(p)).unwrap();
    let (none, tied, both) = (get("no hedging"), get("tailwater tied"), get("two copies"));
    // Waiting in the shorter of two queues: the p99 at least halves...
    assert!(tied.p99_ms * 2.0 <= none.p99_ms, "{tied:?} vs {none:?}");
    assert!(tied.p999_ms < none.p999_ms, "{tied:?} vs {none:?}");
    // ...while the tie keeps the second copy from running most of the time (two untied
    // copies double the load and overload the servers).
    assert!(tied.extra_load <= 0.1, "{tied:?}");
    assert!(
        both.extra_load >= 0.99 && both.p99_ms > none.p99_ms,
        "{both:?}"
    );
}
