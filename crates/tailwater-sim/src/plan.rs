//! Capacity planning: the queueing-theory answer to "how many servers, what limit, what queue
//! bound" for a rate, a service time and their variability (the maths behind `tailwater plan`).
//!
//! [`plan`] evaluates a [`Model`] with the formulas of [`theory`] (Little's law, Erlang C,
//! Kingman, Allen–Cunneen, M/M/c/K), sizes the servers for a latency [`Budget`] or a target
//! utilisation, derives the concurrency limit (Little: more in flight than `λ·W_max` cannot all
//! finish within the budget) and the queue bound (a waiter beyond `W_q,max·c/E[S]` would miss
//! it anyway), draws the utilisation → wait curve, and can check the prediction against the
//! simulator. [`Plan::to_text`] and [`Plan::curve_chart`] present it. All times are seconds.
//!
//! ```
//! use tailwater_sim::plan::{PlanInput, plan};
//! use tailwater_sim::theory::Budget;
//!
//! let input = PlanInput {
//!     budget: Some(Budget::parse("p99=100ms")?),
//!     ..PlanInput::new(200.0, 0.020)
//! };
//! let p = plan(&input)?;
//! let fit = p.budget.as_ref().expect("a budget was given");
//! assert!(fit.servers_needed >= 5); // 200/s × 20 ms = 4 Erlangs, and the queue needs room
//! assert!(p.prediction.utilisation < 1.0);
//! # Ok::<(), tailwater_sim::SimError>(())
//! ```

use std::fmt::Write as _;

use crate::SimError;
use crate::theory::{self, Budget, Model};
use tailwater_chart::{Axis, LineChart, Series};

/// What to plan for. Build it with [`PlanInput::new`] and override fields.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    /// Arrival rate λ, requests per second.
    pub rate: f64,
    /// Mean service time E\[S\], seconds.
    pub service: f64,
    /// Coefficient of variation of inter-arrival times (1 = Poisson).
    pub ca: f64,
    /// Coefficient of variation of service times (1 = exponential).
    pub cs: f64,
    /// Servers to evaluate; `None` sizes them from `budget` or `utilisation`.
    pub servers: Option<u64>,
    /// Target utilisation in (0, 1) for sizing.
    pub utilisation: Option<f64>,
    /// Latency budget for sizing (response or wait quantile or mean).
    pub budget: Option<Budget>,
    /// Waiting room (M/M/c/K); allows ρ ≥ 1.
    pub queue_bound: Option<u64>,
    /// Also simulate the model: `(arrivals, seed)`.
    pub validate: Option<(u64, u64)>,
}

impl PlanInput {
    /// Poisson arrivals and exponential service (both CVs 1), nothing else given.
    pub fn new(rate: f64, service: f64) -> Self {
        Self {
            rate,
            service,
            ca: 1.0,
            cs: 1.0,
            servers: None,
            utilisation: None,
            budget: None,
            queue_bound: None,
            validate: None,
        }
    }
}

/// Everything [`plan`] computes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The model evaluated (with the servers given or sized).
    pub model: Model,
    /// Its prediction: utilisation, P(wait), mean wait and response, Little's-law counts.
    pub prediction: theory::Prediction,
    /// `(p, wait quantile)` for p = 0.5, 0.9, 0.99, 0.999 (exponential tail).
    pub wait_quantiles: Vec<(f64, f64)>,
    /// `(p, response quantile)`: wait quantile plus service quantile (conservative).
    pub response_quantiles: Vec<(f64, f64)>,
    /// The sizing for the budget, when one was given.
    pub budget: Option<BudgetFit>,
    /// Mean and p99 wait against utilisation, from 0.1 to 0.99, at the model's servers.
    pub curve: Vec<CurveRow>,
    /// The simulator's answer for the same model, when asked.
    pub validation: Option<crate::Measured>,
}

/// How many servers a latency budget needs, and the limits that follow from it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BudgetFit {
    /// The budget as given (`p99=100ms`).
    pub budget: String,
    /// The budget in seconds.
    pub seconds: f64,
    /// The fewest servers that meet it.
    pub servers_needed: u64,
    /// The budgeted statistic predicted at `servers_needed`.
    pub predicted_at_needed: f64,
    /// `max(servers_needed, ⌈λ·W_max⌉)`: the concurrency limit the budget implies.
    pub concurrency_limit: u64,
    /// `⌊W_q,max·c/E[S]⌋`: waiters that can still be served within the budget.
    pub queue_bound: u64,
    /// Whether the servers given (if any) meet the budget.
    pub met_with_given_servers: Option<bool>,
}

/// One row of the utilisation → wait curve (seconds).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CurveRow {
    /// Utilisation ρ.
    pub utilisation: f64,
    /// The arrival rate giving that utilisation, requests per second.
    pub rate: f64,
    /// Mean wait in the queue.
    pub wait_mean: f64,
    /// 99th percentile of the wait.
    pub wait_p99: f64,
    /// Mean response time (wait + service).
    pub response_mean: f64,
}

/// Evaluates (and, with a budget or utilisation, sizes) the model. Errors name the input
/// that is out of range.
pub fn plan(input: &PlanInput) -> Result<Plan, SimError> {
    let PlanInput {
        rate,
        service,
        ca,
        cs,
        servers: given_servers,
        queue_bound,
        budget,
        ..
    } = input.clone();
    let base = Model {
        rate,
        service,
        ca,
        cs,
        servers: given_servers.unwrap_or(1),
        queue_bound,
    };
    // Validate everything but ρ first (a queue bound skips that check), so that a bad CV or
    // an absurd --servers / --queue-bound is reported as such.
    Model {
        servers: given_servers.unwrap_or(1),
        queue_bound: base.queue_bound.or(Some(0)),
        ..base
    }
    .validate()?;
    let sized = if budget.is_some() || input.utilisation.is_some() {
        Some(theory::size_servers(
            Model {
                queue_bound: None,
                ..base
            },
            budget,
            input.utilisation,
        )?)
    } else {
        None
    };
    let servers = match (given_servers, sized) {
        (Some(c), _) => c,
        (None, Some(c)) => c,
        (None, None) => {
            return Err(SimError::invalid(
                "servers",
                "give --servers to evaluate a system, or --budget / --utilisation to size one",
            ));
        }
    };
    let model = Model { servers, ..base };
    let prediction = model.predict()?;
    let ps = [0.5, 0.9, 0.99, 0.999];
    let wait_q: Vec<(f64, f64)> = ps
        .iter()
        .map(|&p| model.wait_quantile(p).map(|q| (p, q)))
        .collect::<Result<_, _>>()?;
    let resp_q: Vec<(f64, f64)> = ps
        .iter()
        .map(|&p| model.response_quantile(p).map(|q| (p, q)))
        .collect::<Result<_, _>>()?;
    let budget_out = match (budget, sized) {
        (Some(b), Some(need)) => {
            let at = Model {
                servers: need,
                queue_bound: None,
                ..base
            };
            // Time a request may spend waiting, and in the system, under the budget.
            let (wait_allowed, response_allowed) = if b.wait_only {
                (b.seconds(), b.seconds() + service)
            } else {
                (b.seconds() - service, b.seconds())
            };
            // Little: at most λ·W requests can be in the system if each is to finish within W.
            let limit = (rate * response_allowed).ceil() as u64;
            // Waiters that can still be served within the budget once all servers are busy.
            let queue = ((wait_allowed * need as f64 / service).floor()).max(0.0) as u64;
            Some(BudgetFit {
                budget: b.label(),
                seconds: b.seconds(),
                servers_needed: need,
                predicted_at_needed: b.predicted(&at)?,
                concurrency_limit: limit.max(need),
                queue_bound: queue,
                met_with_given_servers: match given_servers {
                    Some(_) if model.utilisation() < 1.0 || queue_bound.is_some() => {
                        Some(b.predicted(&model)? <= b.seconds())
                    }
                    Some(_) => Some(false),
                    None => None,
                },
            })
        }
        _ => None,
    };
    let curve: Vec<CurveRow> = [
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99,
    ]
    .iter()
    .map(|&u| {
        let m = Model {
            rate: u * servers as f64 / service,
            queue_bound: None,
            ..model
        };
        let p = m.predict()?;
        Ok(CurveRow {
            utilisation: u,
            rate: m.rate,
            wait_mean: p.wait_mean,
            wait_p99: m.wait_quantile(0.99)?,
            response_mean: p.response_mean,
        })
    })
    .collect::<Result<_, SimError>>()?;
    let validation = if let Some((events, seed)) = input.validate {
        Some(crate::simulate_model(&model, events, seed)?)
    } else {
        None
    };
    Ok(Plan {
        model,
        prediction,
        wait_quantiles: wait_q,
        response_quantiles: resp_q,
        budget: budget_out,
        curve,
        validation,
    })
}

impl Plan {
    /// The utilisation → wait curve as a chart (milliseconds, log scale).
    pub fn curve_chart(&self) -> LineChart {
        let m = &self.model;
        let curve = &self.curve;
        let line = |name: &str, f: fn(&CurveRow) -> f64| {
            Series::new(
                name,
                curve.iter().map(|r| (r.utilisation, f(r) * 1e3)).collect(),
            )
        };
        LineChart::new(
            format!(
                "wait vs utilisation: c = {}, E[S] = {}, ca = {}, cs = {} (Allen–Cunneen)",
                m.servers,
                ms(m.service),
                m.ca,
                m.cs
            ),
            Axis::linear("utilisation").fitted(),
            Axis::log("ms (log)"),
        )
        .series(line("mean wait", |r| r.wait_mean))
        .series(line("p99 wait", |r| r.wait_p99))
        .series(line("mean response", |r| r.response_mean))
    }

    /// The plan as the text `tailwater plan` prints (with the sample summary, if the inputs
    /// came from measured samples).
    pub fn to_text(&self, samples: Option<&theory::SampleStats>) -> String {
        let mut out = String::new();
        write_text(&mut out, self, samples);
        out
    }
}

/// Milliseconds with three significant figures, for the text.
fn ms(s: f64) -> String {
    let v = s * 1e3;
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.3} ms")
    }
}

fn write_text(out: &mut String, o: &Plan, samples: Option<&theory::SampleStats>) {
    let m = &o.model;
    let p = &o.prediction;
    if let Some(s) = samples {
        _ = writeln!(
            out,
            "samples: {} pairs → rate {:.2}/s, E[S] {}, ca {:.3}, cs {:.3}",
            s.count,
            s.rate,
            ms(s.service),
            s.ca,
            s.cs
        );
    }
    _ = writeln!(
        out,
        "inputs: λ = {} req/s, E[S] = {}, ca = {}, cs = {}, servers c = {}{}",
        m.rate,
        ms(m.service),
        m.ca,
        m.cs,
        m.servers,
        m.queue_bound
            .map_or(String::new(), |k| format!(", queue bound K = {k}"))
    );
    _ = writeln!(
        out,
        "offered load A = λ·E[S] = {:.3} Erlangs; utilisation ρ = A/c = {:.3}",
        p.offered_erlangs, p.utilisation
    );
    let model_name = match (m.queue_bound, m.servers) {
        (Some(_), _) => "M/M/c/K scaled by (ca²+cs²)/2",
        (None, 1) => "Kingman G/G/1",
        (None, _) => "Allen–Cunneen G/G/c",
    };
    _ = writeln!(
        out,
        "P(wait) = {:.4} ({}){}",
        p.p_wait,
        if m.queue_bound.is_some() {
            "M/M/c/K"
        } else {
            "Erlang C"
        },
        if m.queue_bound.is_some() {
            format!(
                "; P(blocked) = {:.4}, throughput {:.2}/s",
                p.p_block, p.throughput
            )
        } else {
            String::new()
        }
    );
    _ = writeln!(
        out,
        "mean wait W_q = {} ({model_name}); M/M/c with the same λ, E[S], c: {}",
        ms(p.wait_mean),
        ms(p.wait_mean_mmc)
    );
    _ = writeln!(
        out,
        "mean response W = W_q + E[S] = {}",
        ms(p.response_mean)
    );
    _ = writeln!(
        out,
        "Little's law: L_q = λW_q = {:.3} waiting, L = λW = {:.3} in the system",
        p.queue_mean, p.in_system_mean
    );
    let qs = |v: &[(f64, f64)]| {
        v.iter()
            .map(|(p, q)| format!("p{} {}", p * 100.0, ms(*q)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    _ = writeln!(
        out,
        "wait quantiles (exponential tail): {}",
        qs(&o.wait_quantiles)
    );
    _ = writeln!(
        out,
        "response quantiles (wait + service quantile, conservative): {}",
        qs(&o.response_quantiles)
    );
    if let Some(b) = &o.budget {
        _ = writeln!(out);
        _ = writeln!(
            out,
            "budget {} ≤ {}: {} server(s) needed (predicted {} at ρ = {:.3}){}",
            b.budget,
            ms(b.seconds),
            b.servers_needed,
            ms(b.predicted_at_needed),
            m.rate * m.service / b.servers_needed as f64,
            match b.met_with_given_servers {
                Some(true) => format!("; met with {} servers", m.servers),
                Some(false) => format!("; NOT met with {} servers", m.servers),
                None => String::new(),
            }
        );
        _ = writeln!(
            out,
            "  concurrency limit ≈ max(c, ⌈λ·W_max⌉) = {} (Little: more in flight cannot all finish within the budget)",
            b.concurrency_limit
        );
        _ = writeln!(
            out,
            "  queue bound ≈ ⌊W_q,max·c/E[S]⌋ = {} waiters (a later one would miss the budget anyway)",
            b.queue_bound
        );
    }
    _ = writeln!(out);
    _ = writeln!(out, "utilisation → wait (c = {}):", m.servers);
    _ = writeln!(
        out,
        "  {:>5}  {:>10}  {:>12}  {:>12}  {:>12}",
        "ρ", "λ (req/s)", "mean wait", "p99 wait", "mean resp"
    );
    for r in &o.curve {
        _ = writeln!(
            out,
            "  {:>5.2}  {:>10.1}  {:>12}  {:>12}  {:>12}",
            r.utilisation,
            r.rate,
            ms(r.wait_mean),
            ms(r.wait_p99),
            ms(r.response_mean)
        );
    }
    if let Some(v) = &o.validation {
        let err = |pred: f64, sim: f64| {
            if sim > 0.0 {
                format!("{:+.1}%", (pred - sim) / sim * 100.0)
            } else {
                "-".into()
            }
        };
        let wait_p99 = o
            .wait_quantiles
            .iter()
            .find(|(p, _)| (*p - 0.99).abs() < 1e-9)
            .map_or(0.0, |x| x.1);
        let resp_p99 = o
            .response_quantiles
            .iter()
            .find(|(p, _)| (*p - 0.99).abs() < 1e-9)
            .map_or(0.0, |x| x.1);
        _ = writeln!(out);
        _ = writeln!(
            out,
            "validation: simulated {} requests (gamma inter-arrivals; constant, exponential or lognormal service times, as assumed above)",
            v.served
        );
        _ = writeln!(
            out,
            "  {:<16} {:>12} {:>12} {:>10}",
            "", "predicted", "simulated", "error"
        );
        let rows = [
            ("mean wait", p.wait_mean, v.wait_mean),
            ("p99 wait", wait_p99, v.wait_p99),
            ("mean response", p.response_mean, v.response_mean),
            ("p99 response", resp_p99, v.response_p99),
        ];
        for (name, pred, sim) in rows {
            _ = writeln!(
                out,
                "  {name:<16} {:>12} {:>12} {:>10}",
                ms(pred),
                ms(sim),
                err(pred, sim)
            );
        }
        if m.queue_bound.is_some() {
            _ = writeln!(
                out,
                "  {:<16} {:>12.4} {:>12.4} {:>10}",
                "P(blocked)",
                p.p_block,
                v.blocked,
                err(p.p_block, v.blocked)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mm1_at_half_load_waits_one_service_time() {
        // M/M/1, ρ = 0.5: W_q = ρ/(1−ρ)·E[S] = E[S].
        let p = plan(&PlanInput {
            servers: Some(1),
            ..PlanInput::new(50.0, 0.010)
        })
        .unwrap();
        assert!((p.prediction.wait_mean - 0.010).abs() < 1e-9);
        assert!((p.prediction.response_mean - 0.020).abs() < 1e-9);
        assert!(p.budget.is_none() && p.validation.is_none());
        assert_eq!(p.curve.len(), 13);
        assert!(p.curve.windows(2).all(|w| w[0].wait_mean < w[1].wait_mean));
    }

    #[test]
    fn a_budget_sizes_servers_and_limits() {
        let p = plan(&PlanInput {
            budget: Some(Budget::parse("p99=100ms").unwrap()),
            ..PlanInput::new(200.0, 0.020)
        })
        .unwrap();
        let fit = p.budget.clone().unwrap();
        assert_eq!(p.model.servers, fit.servers_needed);
        assert!(fit.predicted_at_needed <= 0.100);
        // One server fewer misses the budget.
        let fewer = Model {
            servers: fit.servers_needed - 1,
            ..p.model
        };
        assert!(
            fewer.utilisation() >= 1.0
                || Budget::parse("p99=100ms")
                    .unwrap()
                    .predicted(&fewer)
                    .unwrap()
                    > 0.100
        );
        // Little: 200/s × 100 ms = 20 in flight at most.
        assert_eq!(fit.concurrency_limit, 20.max(fit.servers_needed));
        assert!(p.to_text(None).contains("server(s) needed"));
    }

    #[test]
    fn neither_servers_nor_budget_is_an_error_naming_servers() {
        match plan(&PlanInput::new(100.0, 0.020)) {
            Err(SimError::Invalid { field, .. }) => assert_eq!(field, "servers"),
            other => panic!("expected an invalid-servers error, got {other:?}"),
        }
    }
}
