//! Load balancing over several endpoints, on virtual time, with tailwater-core's own
//! [`Balancer`] (the code the proxy runs): Poisson arrivals, each endpoint a FIFO server
//! with `workers` workers and its own service-time distribution, the balancer told each
//! request's latency (queueing at the endpoint included, as the proxy sees it) when it
//! completes.
//!
//! The figure of issue 12: with one of four endpoints ten times slower, the p99 with P2C
//! over PeakEWMA stays within 1.5× of the all-healthy p99, while round robin (the
//! baseline, same arrivals and service draws) does not.
//!
//! ```
//! use tailwater_sim::balance::{BalanceScenario, run};
//! use tailwater_core::balance::Policy;
//! let mut s = BalanceScenario::default();
//! s.requests = 2_000; // short for the doctest
//! let r = run(&s, Policy::PeakEwma).unwrap();
//! assert_eq!(r.completed, 2_000);
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tailwater_core::ConfigError;
use tailwater_core::balance::{BalanceConfig, Balancer, Outcome, Policy, Selected};

use crate::dist::{Sampler, Shape};
use crate::rng::Xoshiro256PlusPlus;

/// A balancing scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceScenario {
    /// Endpoints.
    pub endpoints: usize,
    /// Workers per endpoint (requests served at once; the rest wait in its FIFO queue).
    pub workers: usize,
    /// Mean service time of a healthy endpoint.
    pub service: Duration,
    /// Service-time distribution.
    pub shape: Shape,
    /// Service-time multiplier of each slow endpoint (the first `slow` ones).
    pub slowdown: f64,
    /// How many endpoints are slow.
    pub slow: usize,
    /// Offered load as a share of the healthy capacity (`endpoints × workers / service`).
    pub load: f64,
    /// Requests to send.
    pub requests: usize,
    /// Seed of the arrivals and service draws (the balancer's own seed is its default).
    pub seed: u64,
}

impl Default for BalanceScenario {
    /// Four endpoints of 8 workers, 10 ms exponential service, one endpoint 10× slower,
    /// 50 % of the healthy capacity (1 600 requests/s), 200 000 requests.
    fn default() -> Self {
        Self {
            endpoints: 4,
            workers: 8,
            service: Duration::from_millis(10),
            shape: Shape::Exponential,
            slowdown: 10.0,
            slow: 1,
            load: 0.5,
            requests: 200_000,
            seed: 12,
        }
    }
}

/// What one policy did in one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceResult {
    /// The policy.
    pub policy: Policy,
    /// Requests completed (all of them: nothing is dropped).
    pub completed: usize,
    /// Latency percentiles (arrival to completion).
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Share of the requests each endpoint served.
    pub share: Vec<f64>,
}

/// Requests in service: completions by (time, sequence), and each one's endpoint.
struct Queued {
    heap: BinaryHeap<Reverse<(Duration, u64)>>,
    in_service: HashMap<u64, (usize, Waiting)>,
    seq: u64,
}

struct Waiting {
    arrived: Duration,
    selected: Selected,
}

/// Runs `scenario` with `policy` (the balancer's other settings are its defaults).
pub fn run(scenario: &BalanceScenario, policy: Policy) -> Result<BalanceResult, ConfigError> {
    let s = scenario;
    let config = BalanceConfig {
        policy,
        ..BalanceConfig::default()
    };
    let balancer = Arc::new(Balancer::new(s.endpoints, config, Duration::ZERO)?);
    let mut arrivals = Xoshiro256PlusPlus::seed_from_u64(s.seed);
    let mut services = Xoshiro256PlusPlus::seed_from_u64(s.seed ^ 0x5e41_1ce5);
    let healthy = Sampler::new(s.shape, s.service.as_secs_f64());
    let capacity = (s.endpoints * s.workers) as f64 / s.service.as_secs_f64();
    let rate = capacity * s.load;
    let mut busy = vec![0usize; s.endpoints];
    let mut queues: Vec<VecDeque<Waiting>> = (0..s.endpoints).map(|_| VecDeque::new()).collect();
    let mut q = Queued {
        heap: BinaryHeap::new(),
        in_service: HashMap::new(),
        seq: 0,
    };
    let mut latencies = Vec::with_capacity(s.requests);
    let mut served = vec![0usize; s.endpoints];
    let mut next_arrival = Duration::from_secs_f64(arrivals.exp1() / rate);
    let mut sent = 0usize;
    let mut start = |i: usize, now: Duration, w: Waiting, q: &mut Queued| {
        let mut t = healthy.sample(&mut services);
        if i < s.slow {
            t *= s.slowdown;
        }
        let done = now + Duration::from_secs_f64(t);
        q.seq += 1;
        q.heap.push(Reverse((done, q.seq)));
        q.in_service.insert(q.seq, (i, w));
    };
    loop {
        let completion = q.heap.peek().map(|Reverse((t, _))| *t);
        let arrival = (sent < s.requests).then_some(next_arrival);
        let now = match (arrival, completion) {
            (Some(a), Some(c)) if a < c => a,
            (Some(a), None) => a,
            (_, Some(c)) => c,
            (None, None) => break,
        };
        if arrival == Some(now) {
            sent += 1;
            next_arrival = now + Duration::from_secs_f64(arrivals.exp1() / rate);
            let Some(selected) = balancer.select(now, 0) else {
                break;
            };
            let i = selected.index();
            let w = Waiting {
                arrived: now,
                selected,
            };
            if busy[i] < s.workers {
                busy[i] += 1;
                start(i, now, w, &mut q);
            } else {
                queues[i].push_back(w);
            }
            continue;
        }
        let Some(Reverse((_, id))) = q.heap.pop() else {
            break;
        };
        let Some((i, w)) = q.in_service.remove(&id) else {
            continue;
        };
        let latency = now.saturating_sub(w.arrived);
        latencies.push(latency);
        served[i] += 1;
        w.selected.finish(now, Some(latency), Outcome::Success);
        match queues[i].pop_front() {
            Some(next) => start(i, now, next, &mut q),
            None => busy[i] -= 1,
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let k = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1));
        latencies.get(k - 1).copied().unwrap_or_default()
    };
    let total = served.iter().sum::<usize>().max(1) as f64;
    Ok(BalanceResult {
        policy,
        completed: latencies.len(),
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        share: served.iter().map(|&n| n as f64 / total).collect(),
    })
}

/// The issue's comparison: every policy with all endpoints healthy and with
/// `scenario.slow` of them slow, on the same arrivals and service draws.
pub fn compare(
    scenario: &BalanceScenario,
) -> Result<Vec<(BalanceResult, BalanceResult)>, ConfigError> {
    let healthy = BalanceScenario {
        slow: 0,
        ..scenario.clone()
    };
    Policy::ALL
        .iter()
        .map(|&p| Ok((run(&healthy, p)?, run(scenario, p)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slow_endpoint_of_four_peak_ewma_keeps_the_p99_and_round_robin_does_not() {
        let s = BalanceScenario {
            requests: 60_000,
            ..BalanceScenario::default()
        };
        let results = compare(&s).expect("valid");
        let find = |p: Policy| results.iter().find(|(h, _)| h.policy == p).expect("run");
        let (healthy, slow) = find(Policy::PeakEwma);
        assert!(
            slow.p99.as_secs_f64() <= 1.5 * healthy.p99.as_secs_f64(),
            "PeakEWMA: {:?} vs healthy {:?}",
            slow.p99,
            healthy.p99
        );
        let (rr_healthy, rr_slow) = find(Policy::RoundRobin);
        assert!(
            rr_slow.p99.as_secs_f64() > 3.0 * rr_healthy.p99.as_secs_f64(),
            "round robin is the baseline that suffers: {:?} vs {:?}",
            rr_slow.p99,
            rr_healthy.p99
        );
        assert_eq!(slow.completed, 60_000);
    }
}
