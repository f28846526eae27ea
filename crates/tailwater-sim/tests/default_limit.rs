//! The default limit (`headroom`) in cells of the `default-limit` suite that it once failed.

use std::time::Duration;

use tailwater_sim::engine::{self, RunOptions};
use tailwater_sim::policy::PolicySpec;
use tailwater_sim::scenario::ServiceConfig;
use tailwater_sim::suite;

#[test]
fn headroom_keeps_a_bursty_small_pools_traffic() {
    // 4 workers, lognormal CV 2, 30 ms, 0.9× load: ~21 in flight on average and bursts of
    // several times that, which drain. The limit used to sit at its floor of 20 and shed
    // 2.3 %; the goal is at most 2 %.
    let service = ServiceConfig {
        dist: "lognormal".into(),
        mean: Duration::from_secs(1),
        cv: Some(2.0),
        slow_fraction: None,
        slow_factor: None,
    };
    let s = suite::no_harm_cell("logn2", &service, 4, Duration::from_millis(30), 0.9);
    let policy = PolicySpec::parse("headroom").unwrap();
    let r = engine::run(&s, &policy, RunOptions::default()).unwrap();
    let shed = r.shed_total as f64 / r.attempts as f64;
    assert!(
        shed <= suite::NO_HARM_SHED_NINE,
        "shed {:.2} %",
        shed * 100.0
    );
}

/// Asserts that `headroom` sheds at most `bound` in the `default-limit` cell named `name`
/// on `seed`.
fn assert_cell_sheds_at_most(name: &str, seed: u64, bound: f64) {
    let mut checks = suite::suite("default-limit").expect("the suite");
    checks.retain(|c| c.scenario.name == name);
    suite::reseed(&mut checks, seed);
    let [check] = checks.as_slice() else {
        panic!("one cell named {name}, not {}", checks.len());
    };
    let policy = PolicySpec::parse("headroom").expect("a policy");
    let r = engine::run(&check.scenario, &policy, RunOptions::default()).expect("the cell runs");
    let shed = r.shed_total as f64 / r.attempts as f64;
    assert!(
        shed <= bound,
        "{name}, seed {seed}: shed {:.2} %",
        shed * 100.0
    );
}

#[test]
fn headroom_keeps_a_heavy_tailed_small_pools_own_queue() {
    // 4 workers × 300 ms, bimodal (5 % of requests 10× slower: CV 1.6), 0.9× load, seed 2:
    // the healthy service's own queue reaches 60 in its first 16 s (`static:40` sheds
    // 3.6 %, `static:50` 1.6 %). The limit sat at 20 until a burst had shed and drained,
    // and shed 3.59 %; rule 13 (the tail room, from the CV of the successes that found no
    // queue) keeps the room the service's tail needs.
    assert_cell_sheds_at_most("no-harm bimodal w4 300ms 0.9x", 2, suite::NO_HARM_SHED_NINE);
}

#[test]
fn slow_start_does_not_end_on_a_dispersed_services_first_windows() {
    // 48 workers × 300 ms, lognormal CV 2, 0.9× load, held-out seed 8: slow start's first
    // windows hold only the fast requests, so one window at the service's real mean read
    // as a queue, slow start ended and drained to 20, and the cell shed 2.44 %. Three
    // queued windows in a row are now needed while the baseline is that young.
    assert_cell_sheds_at_most("no-harm logn2 w48 300ms 0.9x", 8, suite::NO_HARM_SHED_NINE);
    // The same at 30 ms and half load, where the windows' averaged CV (seeded by a first
    // window of 0.66) was still under 0.8 when slow start ended: 0.90 % shed, now judged by
    // the window's own CV too.
    assert_cell_sheds_at_most("no-harm logn2 w48 30ms 0.5x", 8, suite::NO_HARM_SHED_HALF);
}

#[test]
fn tiers_keep_their_order_under_the_default() {
    let checks = suite::suite("default-limit").unwrap();
    let tiers: Vec<_> = checks.into_iter().filter(|c| c.group == "tiers").collect();
    let policy = PolicySpec::parse("headroom").unwrap();
    let results = suite::run(&tiers, &[policy], &[]).unwrap();
    for r in results {
        assert!(r.outcomes[0].pass, "{}: {}", r.name, r.outcomes[0].figure);
    }
}

#[test]
fn headroom_does_not_shed_a_large_pools_first_round_trip() {
    // 500 workers × 300 ms lognormal CV 0.25 at 0.5× load: 250 requests arrive in the first
    // round trip, before anything completes. At an initial limit of 20 the cell shed 0.58 %
    // (goal 0.5 %), 230 requests in that first round trip alone; with the first-round limit
    // (100 until the first sample) it sheds about half that.
    let service = ServiceConfig {
        dist: "lognormal".into(),
        mean: Duration::from_secs(1),
        cv: Some(0.25),
        slow_fraction: None,
        slow_factor: None,
    };
    let s = suite::no_harm_cell("logn0.25", &service, 500, Duration::from_millis(300), 0.5);
    let policy = PolicySpec::parse("headroom").unwrap();
    let r = engine::run(&s, &policy, RunOptions::default()).unwrap();
    let shed = r.shed_total as f64 / r.attempts as f64;
    assert!(
        shed <= suite::NO_HARM_SHED_HALF,
        "shed {:.2} %",
        shed * 100.0
    );
}

#[test]
fn tier_order_is_judged_under_overload() {
    // A static limit with tiers at 10× serves the sheddable tiers only in the first
    // milliseconds of the overload. Over the whole run the 1 s at 0.5× (every tier served)
    // decided the order by chance, and `static` failed it; under overload the tiers are in
    // order and the shares are reported per tier.
    let check = suite::suite("default-limit")
        .unwrap()
        .into_iter()
        .find(|c| c.scenario.name == "tiered-10x")
        .unwrap();
    let policy = PolicySpec::parse("static").unwrap();
    let results = suite::run(std::slice::from_ref(&check), &[policy], &[]).unwrap();
    let o = &results[0].outcomes[0];
    assert!(o.pass, "{}", o.figure);
    let tiers = &o.result.tiers;
    assert_eq!(tiers.len(), 4);
    for t in tiers {
        let under = t.overload_goodput.expect("tiered-10x overloads");
        assert!(t.overload_offered > 0 && t.overload_offered < t.offered);
        // The unloaded second served every tier, so the whole run's share is higher.
        assert!(t.goodput >= under, "{}: {} < {under}", t.tier, t.goodput);
    }
    let critical_plus = tiers[0].overload_goodput.unwrap();
    let sheddable = tiers[3].overload_goodput.unwrap();
    assert!(critical_plus > 0.5 && sheddable < 0.01, "{}", o.figure);
}

#[test]
fn headroom_keeps_most_of_a_heavy_tailed_services_capacity() {
    // `heavy-tail`: 48 workers at 1.5× load, 0.5 % of requests 50× slower, so they outlast
    // the 1 s client timeout and end as drops, about 8 a second. Each window holding one
    // backed the limit off until rule 12 (drops at the service's usual share are not
    // overload): 52.5 % of capacity before it, 78.1 % with it, 84.3 % since its Poisson
    // test (session 23); a static limit of 48 keeps 92.9 %. The bound keeps that
    // regression, which went unseen for a day, from returning.
    let s = tailwater_sim::scenario::builtin("heavy-tail").expect("a built-in scenario");
    let run = |policy: &str| {
        let policy = PolicySpec::parse(policy).expect("a policy");
        let r = engine::run(&s, &policy, RunOptions::default()).expect("the scenario runs");
        r.overload_goodput.expect("the scenario overloads")
    };
    let (headroom, fixed) = (run("headroom"), run("static"));
    assert!(
        headroom >= 0.8 && headroom >= fixed - 0.15,
        "headroom {:.1} % against static {:.1} %",
        headroom * 100.0,
        fixed * 100.0
    );
}
