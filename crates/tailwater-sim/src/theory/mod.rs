//! Queueing formulas for capacity planning: Little's law, Erlang B/C (M/M/c), Kingman (G/G/1),
//! Allen–Cunneen (G/G/c), and M/M/c/K for a bounded queue.
//!
//! Notation: λ arrival rate, E\[S\] mean service time, μ = 1/E\[S\], c servers,
//! A = λ/μ offered load (Erlangs), ρ = A/c, c_a and c_s the coefficients of variation of
//! inter-arrival and service times.
//!
//! - **Erlang C** through the Erlang B recursion `B_0 = 1, B_k = A·B_{k−1}/(k + A·B_{k−1})`,
//!   then `C = c·B_c / (c − A(1 − B_c))`: no factorials, no overflow, stable for any c.
//!   `W_q = C/(cμ − λ)`, `P(W_q > t) = C·e^{−(cμ−λ)t}`.
//! - **Kingman** (G/G/1): `W_q ≈ ρ/(1−ρ) · (c_a² + c_s²)/2 · E[S]`; exact for M/G/1
//!   (Pollaczek–Khinchine), asymptotically exact as ρ → 1.
//! - **Allen–Cunneen** (G/G/c): `W_q ≈ C(c, A)/(cμ − λ) · (c_a² + c_s²)/2`; exact for M/M/c
//!   and equal to Kingman for c = 1. Wait quantiles here assume the M/M/c exponential tail
//!   with the mean scaled the same way: `t_p = (c_a²+c_s²)/2 · ln(C/(1−p))/(cμ − λ)`.
//! - **Response quantiles** are approximated (conservatively) by the wait quantile plus the
//!   service-time quantile (exponential for c_s = 1, constant for 0, lognormal otherwise).
//! - **M/M/c/K** (a queue bound of K waiters): the birth–death stationary distribution, in
//!   logarithms; waits are scaled by (c_a²+c_s²)/2 for G/G inputs (an approximation).
//!
//! Accuracy (Whitt, "Approximations for the GI/G/m queue", 1993): good at moderate to heavy
//! load, worse at light load, for c_a² ≪ 1 and for c_s² ≫ 1; means only. `tailwater plan
//! --validate` compares them with the simulator.

use serde::Serialize;

use crate::error::{SimError, check};

/// Erlang B blocking probability for `c` servers and offered load `a` (recursion).
///
/// ```
/// let b = tailwater_sim::theory::erlang_b(1, 1.0);
/// assert!((b - 0.5).abs() < 1e-12);
/// ```
pub fn erlang_b(c: u64, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    b
}

/// Erlang C: the probability that an arrival waits, M/M/c, for `a < c`.
pub fn erlang_c(c: u64, a: f64) -> f64 {
    let b = erlang_b(c, a);
    let c = c as f64;
    c * b / (c - a * (1.0 - b))
}

/// Inverse of the standard normal CDF (Acklam's rational approximation, relative error
/// below 1.2e-9).
#[allow(clippy::excessive_precision)] // the published coefficients, verbatim
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.383577518672690e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Most servers a model may have: Erlang C and M/M/c/K cost O(c) per evaluation, and
/// `tailwater plan` evaluates many (quantiles, curves), so larger inputs ran for minutes.
pub const MAX_SERVERS: u64 = 1_000_000;

/// Largest queue bound (M/M/c/K's waiting room, O(K) per evaluation), for the same reason.
pub const MAX_QUEUE_BOUND: u64 = 1_000_000;

/// A queueing system to predict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Model {
    /// Arrival rate, per second.
    pub rate: f64,
    /// Mean service time, seconds.
    pub service: f64,
    /// CV of inter-arrival times.
    pub ca: f64,
    /// CV of service times.
    pub cs: f64,
    /// Servers.
    pub servers: u64,
    /// Waiting room (queue bound); `None` = unbounded.
    pub queue_bound: Option<u64>,
}

/// Predictions for one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// ρ = λ E\[S\] / c.
    pub utilisation: f64,
    /// A = λ E\[S\].
    pub offered_erlangs: f64,
    /// Probability of waiting (Erlang C; M/M/c/K: of finding all servers busy).
    pub p_wait: f64,
    /// Probability of being turned away by a full queue (M/M/c/K only).
    pub p_block: f64,
    /// Mean wait, seconds (Allen–Cunneen; Kingman for c = 1).
    pub wait_mean: f64,
    /// Mean wait of the M/M/c with the same λ, E\[S\], c.
    pub wait_mean_mmc: f64,
    /// Mean response time = wait + E\[S\].
    pub response_mean: f64,
    /// Mean requests waiting (Little: L_q = λ_eff W_q).
    pub queue_mean: f64,
    /// Mean requests in the system (Little: L = λ_eff W).
    pub in_system_mean: f64,
    /// Throughput (λ less blocked arrivals).
    pub throughput: f64,
}

fn scv_factor(ca: f64, cs: f64) -> f64 {
    (ca * ca + cs * cs) / 2.0
}

impl Model {
    /// Validates the inputs; the error names the field as the CLI spells it.
    pub fn validate(&self) -> Result<(), SimError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(SimError::invalid(
                "rate",
                format!("must be > 0, got {}", self.rate),
            ));
        }
        if !(self.service.is_finite() && self.service > 0.0) {
            return Err(SimError::invalid(
                "service-time",
                format!("must be > 0, got {}s", self.service),
            ));
        }
        check("ca", self.ca, 0.0, 100.0)?;
        check("cs", self.cs, 0.0, 100.0)?;
        if !(1..=MAX_SERVERS).contains(&self.servers) {
            return Err(SimError::invalid(
                "servers",
                format!("must be within [1, {MAX_SERVERS}], got {}", self.servers),
            ));
        }
        if let Some(k) = self.queue_bound
            && k > MAX_QUEUE_BOUND
        {
            return Err(SimError::invalid(
                "queue-bound",
                format!("must be within [0, {MAX_QUEUE_BOUND}], got {k}"),
            ));
        }
        if self.queue_bound.is_none() && self.utilisation() >= 1.0 {
            return Err(SimError::invalid(
                "rate",
                format!(
                    "utilisation ρ = {:.3} ≥ 1 with {} server(s): an unbounded queue grows for ever; add servers, lower the rate, or give a queue bound",
                    self.utilisation(),
                    self.servers
                ),
            ));
        }
        Ok(())
    }

    /// ρ.
    pub fn utilisation(&self) -> f64 {
        self.rate * self.service / self.servers as f64
    }

    /// The predictions.
    pub fn predict(&self) -> Result<Prediction, SimError> {
        self.validate()?;
        let c = self.servers;
        let a = self.rate * self.service;
        let mu = 1.0 / self.service;
        let f = scv_factor(self.ca, self.cs);
        match self.queue_bound {
            None => {
                let pc = erlang_c(c, a);
                let mmc = pc / (c as f64 * mu - self.rate);
                let wq = mmc * f;
                let w = wq + self.service;
                Ok(Prediction {
                    utilisation: self.utilisation(),
                    offered_erlangs: a,
                    p_wait: pc,
                    p_block: 0.0,
                    wait_mean: wq,
                    wait_mean_mmc: mmc,
                    response_mean: w,
                    queue_mean: self.rate * wq,
                    in_system_mean: self.rate * w,
                    throughput: self.rate,
                })
            }
            Some(k) => {
                let (p_wait, p_block, lq) = mmck(c, k, a);
                let throughput = self.rate * (1.0 - p_block);
                let mmc = if throughput > 0.0 {
                    lq / throughput
                } else {
                    0.0
                };
                let wq = mmc * f;
                let w = wq + self.service;
                Ok(Prediction {
                    utilisation: self.utilisation(),
                    offered_erlangs: a,
                    p_wait,
                    p_block,
                    wait_mean: wq,
                    wait_mean_mmc: mmc,
                    response_mean: w,
                    queue_mean: throughput * wq,
                    in_system_mean: throughput * w,
                    throughput,
                })
            }
        }
    }

    /// The p-quantile of the wait (exponential tail, scaled as Allen–Cunneen), seconds.
    pub fn wait_quantile(&self, p: f64) -> Result<f64, SimError> {
        check_percentile(p)?;
        let pred = self.predict()?;
        if pred.p_wait <= 0.0 || pred.wait_mean <= 0.0 {
            return Ok(0.0);
        }
        let theta = pred.wait_mean / pred.p_wait;
        if p <= 1.0 - pred.p_wait {
            return Ok(0.0);
        }
        Ok(theta * (pred.p_wait / (1.0 - p)).ln())
    }

    /// The p-quantile of the service time under the assumed shape, seconds.
    pub fn service_quantile(&self, p: f64) -> Result<f64, SimError> {
        check_percentile(p)?;
        Ok(if self.cs == 0.0 {
            self.service
        } else if (self.cs - 1.0).abs() < 1e-9 {
            -self.service * (1.0 - p).ln()
        } else {
            let s2 = (1.0 + self.cs * self.cs).ln();
            let mu = self.service.ln() - s2 / 2.0;
            (mu + s2.sqrt() * normal_quantile(p)).exp()
        })
    }

    /// The p-quantile of the response time (wait quantile + service quantile), seconds.
    pub fn response_quantile(&self, p: f64) -> Result<f64, SimError> {
        Ok(self.wait_quantile(p)? + self.service_quantile(p)?)
    }
}

/// (P(all busy), P(block), L_q) of M/M/c/K with K waiting places.
fn mmck(c: u64, k: u64, a: f64) -> (f64, f64, f64) {
    let n_max = c + k;
    let ln_a = a.ln();
    let rho = a / c as f64;
    let mut logs = Vec::with_capacity(n_max as usize + 1);
    let mut ln_fact = 0.0;
    for n in 0..=n_max {
        if n > 0 && n <= c {
            ln_fact += (n as f64).ln();
        }
        let l = if n <= c {
            n as f64 * ln_a - ln_fact
        } else {
            logs[c as usize] + (n - c) as f64 * rho.ln()
        };
        logs.push(l);
    }
    let max = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let p = |n: usize| weights[n] / total;
    let p_busy: f64 = (c as usize..=n_max as usize).map(p).sum();
    let p_block = p(n_max as usize);
    let lq: f64 = (c as usize..=n_max as usize)
        .map(|n| (n - c as usize) as f64 * p(n))
        .sum();
    // An arrival that is not blocked waits iff all servers are busy and it is admitted.
    let p_wait = if p_block < 1.0 {
        (p_busy - p_block) / (1.0 - p_block)
    } else {
        1.0
    };
    (p_wait, p_block, lq)
}

/// Checks a percentile is strictly within (0, 1).
pub fn check_percentile(p: f64) -> Result<(), SimError> {
    if !(p.is_finite() && p > 0.0 && p < 1.0) {
        return Err(SimError::invalid(
            "percentile",
            format!("must be within (0, 1) exclusive, got {p}"),
        ));
    }
    Ok(())
}

/// A latency budget: on the response time (wait + service), or on the wait alone
/// (`wait-p99=...`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    /// `None` for the mean, else the percentile in (0, 1).
    pub quantile: Option<f64>,
    /// The bound, seconds.
    pub seconds: f64,
    /// Whether the bound is on the queueing wait only.
    pub wait_only: bool,
}

impl Budget {
    /// Parses `p99=100ms`, `p99.9=1s`, `mean=50ms`, `0.95=80ms`, and the same prefixed with
    /// `wait-` (`wait-p99=20ms`) for a bound on the wait alone.
    pub fn parse(s: &str) -> Result<Self, SimError> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            SimError::invalid(
                "budget",
                format!("expected KIND=DURATION (p99=100ms, mean=50ms, wait-p99=20ms), got `{s}`"),
            )
        })?;
        let seconds = crate::scenario::parse_duration(v)
            .map_err(|e| SimError::invalid("budget", e))?
            .as_secs_f64();
        if seconds <= 0.0 {
            return Err(SimError::invalid("budget", "must be greater than zero"));
        }
        let k = k.trim();
        let (wait_only, k) = match k.strip_prefix("wait-") {
            Some(rest) => (true, rest),
            None => (false, k),
        };
        if k == "mean" {
            return Ok(Budget {
                quantile: None,
                seconds,
                wait_only,
            });
        }
        let p = if let Some(digits) = k.strip_prefix('p') {
            let x: f64 = digits
                .parse()
                .map_err(|_| SimError::invalid("budget", format!("bad percentile `{k}`")))?;
            x / 100.0
        } else {
            k.parse()
                .map_err(|_| SimError::invalid("budget", format!("bad percentile `{k}`")))?
        };
        check_percentile(p).map_err(|_| {
            SimError::invalid(
                "budget",
                format!("percentile `{k}` must be within (0, 1) exclusive (p0 < pX < p100)"),
            )
        })?;
        Ok(Budget {
            quantile: Some(p),
            seconds,
            wait_only,
        })
    }

    /// The predicted value the budget bounds.
    pub fn predicted(&self, m: &Model) -> Result<f64, SimError> {
        match (self.quantile, self.wait_only) {
            (None, false) => Ok(m.predict()?.response_mean),
            (None, true) => Ok(m.predict()?.wait_mean),
            (Some(p), false) => m.response_quantile(p),
            (Some(p), true) => m.wait_quantile(p),
        }
    }

    /// The bound in seconds.
    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// A label such as `p99`, `mean` or `wait p99`.
    pub fn label(&self) -> String {
        let q = match self.quantile {
            None => "mean".to_string(),
            Some(p) => format!("p{}", trim_float(p * 100.0)),
        };
        if self.wait_only {
            format!("wait {q}")
        } else {
            format!("response {q}")
        }
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The fewest servers meeting the budget (and the utilisation target), up to
/// [`MAX_SERVERS`].
pub fn size_servers(
    base: Model,
    budget: Option<Budget>,
    utilisation_target: Option<f64>,
) -> Result<u64, SimError> {
    if let Some(u) = utilisation_target
        && !(u.is_finite() && u > 0.0 && u < 1.0)
    {
        return Err(SimError::invalid(
            "utilisation",
            format!("must be within (0, 1) exclusive, got {u}"),
        ));
    }
    let a = base.rate * base.service;
    let mut c = (a.floor() as u64).max(1);
    if let Some(u) = utilisation_target {
        c = c.max((a / u).ceil() as u64);
    }
    if let Some(b) = budget
        && !b.wait_only
    {
        let s = match b.quantile {
            None => base.service,
            Some(p) => base.service_quantile(p)?,
        };
        if s >= b.seconds() {
            return Err(SimError::invalid(
                "budget",
                format!(
                    "the {} of the service time alone is {:.1} ms (E[S] {:.1} ms, cs {}), at or above the budget of {:.1} ms: no number of servers meets it; bound the wait instead (wait-{}=...) or make the service faster",
                    b.label().trim_start_matches("response "),
                    s * 1e3,
                    base.service * 1e3,
                    base.cs,
                    b.seconds() * 1e3,
                    b.label().trim_start_matches("response "),
                ),
            ));
        }
    }
    while c <= MAX_SERVERS {
        let m = Model {
            servers: c,
            queue_bound: None,
            ..base
        };
        if m.utilisation() < 1.0 && utilisation_target.is_none_or(|u| m.utilisation() <= u + 1e-12)
        {
            match budget {
                None => return Ok(c),
                Some(b) => {
                    if b.predicted(&m)? <= b.seconds() {
                        return Ok(c);
                    }
                }
            }
        }
        c += 1;
    }
    Err(SimError::invalid(
        "budget",
        format!("needs more than {MAX_SERVERS} servers"),
    ))
}

/// Sample statistics of measured inter-arrival and service times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SampleStats {
    /// Pairs read.
    pub count: usize,
    /// 1 / mean inter-arrival time.
    pub rate: f64,
    /// Mean service time, seconds.
    pub service: f64,
    /// CV of inter-arrival times.
    pub ca: f64,
    /// CV of service times.
    pub cs: f64,
}

fn mean_cv(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, if mean > 0.0 { var.sqrt() / mean } else { 0.0 })
}

/// Parses a samples file: one `INTERARRIVAL SERVICE` pair per line (whitespace or comma
/// separated; seconds, or durations with units such as `12ms`); `#` comments and a header
/// line are skipped. Errors name the line.
pub fn parse_samples(text: &str) -> Result<SampleStats, SimError> {
    let value = |s: &str| -> Option<f64> {
        s.parse::<f64>().ok().or_else(|| {
            crate::scenario::parse_duration(s)
                .ok()
                .map(|d| d.as_secs_f64())
        })
    };
    let (mut ia, mut sv) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|c| !c.is_empty())
            .collect();
        if cols.len() != 2 {
            return Err(SimError::invalid(
                format!("samples line {}", n + 1),
                format!(
                    "expected 2 columns (inter-arrival, service), found {}",
                    cols.len()
                ),
            ));
        }
        match (value(cols[0]), value(cols[1])) {
            (Some(a), Some(s)) => {
                if !(a.is_finite() && a >= 0.0 && s.is_finite() && s >= 0.0) {
                    return Err(SimError::invalid(
                        format!("samples line {}", n + 1),
                        "times must be finite and ≥ 0",
                    ));
                }
                ia.push(a);
                sv.push(s);
            }
            _ if ia.is_empty() && n == 0 => {} // a header
            _ => {
                return Err(SimError::invalid(
                    format!("samples line {}", n + 1),
                    format!("cannot read `{line}` as two times"),
                ));
            }
        }
    }
    if ia.len() < 2 {
        return Err(SimError::invalid("samples", "need at least 2 samples"));
    }
    let (ma, ca) = mean_cv(&ia);
    let (ms, cs) = mean_cv(&sv);
    if ma <= 0.0 || ms <= 0.0 {
        return Err(SimError::invalid(
            "samples",
            "mean inter-arrival and service times must be > 0",
        ));
    }
    Ok(SampleStats {
        count: ia.len(),
        rate: 1.0 / ma,
        service: ms,
        ca,
        cs,
    })
}

#[cfg(test)]
mod tests;
