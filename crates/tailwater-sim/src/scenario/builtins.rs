//! The built-in scenarios.

use std::time::Duration;

use super::{CapacityChange, Phase, RetryMode, Scenario, ServerModel, ServiceConfig, TierMix};

fn phase(duration_ms: u64, load: f64) -> Phase {
    Phase {
        duration: Duration::from_millis(duration_ms),
        load,
        ramp_to: None,
    }
}

/// The names of the built-in scenarios, in suite order.
pub const BUILTIN: [&str; 11] = [
    "steady-2x",
    "spike-10x",
    "ramp",
    "step-1.4x",
    "drastic-slowdown",
    "heavy-tail",
    "retry-storm",
    "retry-budgeted",
    "tiered-overload",
    "cpu-thrash",
    "small-pool",
];

/// A built-in scenario by name. Every one runs 48 workers with lognormal service times
/// (mean 30 ms, CV 0.5: capacity 1600 requests/s), Poisson arrivals and a 1 s client
/// timeout unless it says otherwise. The ideal concurrency (48) is well above the initial
/// limits and floors of the reference algorithms (Netflix 20, Envoy 3), so they have to
/// find it; `small-pool` is the opposite case (8 workers, below those floors).
pub fn builtin(name: &str) -> Option<Scenario> {
    let mut s = match name {
        "steady-2x" => Scenario::new(
            name,
            "1 s at 0.5x capacity, then 9 s at 2x: sustained overload",
            vec![phase(1000, 0.5), phase(9000, 2.0)],
        ),
        "spike-10x" => Scenario::new(
            name,
            "0.5x for 3 s, 10x for 1 s, 0.5x for 4 s: a sudden spike and the recovery",
            vec![phase(3000, 0.5), phase(1000, 10.0), phase(4000, 0.5)],
        ),
        "ramp" => {
            let mut s = Scenario::new(
                name,
                "load ramps linearly from 0.2x to 3x capacity over 10 s",
                vec![phase(10_000, 0.2)],
            );
            s.phase[0].ramp_to = Some(3.0);
            s
        }
        "step-1.4x" => {
            let mut s = Scenario::new(
                name,
                "0.5x for 3 s, then 1.4x for 7 s (Breakwater's step): how fast the limit settles",
                vec![phase(3000, 0.5), phase(7000, 1.4)],
            );
            s.step_at = Some(Duration::from_secs(3));
            s
        }
        "drastic-slowdown" => {
            let mut s = Scenario::new(
                name,
                "steady 0.7x load; the service becomes 4x slower from 3 s to 6 s (Palantir's drastic_slowdown)",
                vec![phase(9000, 0.7)],
            );
            s.capacity = vec![
                CapacityChange::speed(Duration::from_secs(3), 0.25),
                CapacityChange::speed(Duration::from_secs(6), 1.0),
            ];
            s
        }
        "heavy-tail" => {
            let mut s = Scenario::new(
                name,
                "1.5x load; 0.5% of requests are 50x slower (bimodal): latency noise for latency-based limits",
                vec![phase(1000, 0.5), phase(8000, 1.5)],
            );
            s.server.service = ServiceConfig {
                dist: "bimodal".into(),
                mean: Duration::from_millis(30),
                cv: Some(0.5),
                // 0.5 %, not 1 %: with 1 % the p99 sits exactly on the edge of the slow mode,
                // and the unloaded p99 flips between the two modes.
                slow_fraction: Some(0.005),
                slow_factor: Some(50.0),
            };
            s
        }
        "retry-storm" => {
            let mut s = Scenario::new(
                name,
                "1.5x for 4 s with naive clients (3 attempts, 500 ms timeout, 10 ms backoff): retries amplify the overload",
                vec![phase(1000, 0.5), phase(4000, 1.5), phase(3000, 0.5)],
            );
            s.client.retry = RetryMode::Naive;
            s.client.timeout = Duration::from_millis(500);
            s
        }
        "retry-budgeted" => {
            let mut s = builtin("retry-storm")?;
            s.name = name.into();
            s.description =
                "retry-storm with budgeted clients: retries capped at 10% of requests (SRE book)"
                    .into();
            s.client.retry = RetryMode::Budgeted;
            s
        }
        "tiered-overload" => {
            let mut s = Scenario::new(
                name,
                "3x load with a criticality mix 10/40/25/25% (critical_plus/critical/sheddable_plus/sheddable)",
                vec![phase(1000, 0.5), phase(7000, 3.0)],
            );
            s.mix = TierMix {
                critical_plus: 0.1,
                critical: 0.4,
                sheddable_plus: 0.25,
                sheddable: 0.25,
            };
            s
        }
        "cpu-thrash" => {
            let mut s = Scenario::new(
                name,
                "processor sharing on 48 cores, 2x load; beyond 48 in flight every request slows (slowdown 0.5): admission decides whether the server thrashes",
                vec![phase(1000, 0.5), phase(7000, 2.0)],
            );
            s.server.model = ServerModel::ProcessorSharing;
            s.server.slowdown = 0.5;
            s
        }
        "small-pool" => {
            let mut s = Scenario::new(
                name,
                "8 workers, 5 ms service (1600 req/s), 2x load: the ideal limit (8) is below Netflix's floor of 20",
                vec![phase(1000, 0.5), phase(7000, 2.0)],
            );
            s.server.workers = 8;
            s.server.service.mean = Duration::from_millis(5);
            s
        }
        _ => return None,
    };
    s.seed = 1;
    Some(s)
}
