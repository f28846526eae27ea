//! Open-loop arrival schedules: steps and linear ramps, uniform or Poisson spacing.
//!
//! A schedule is a list of segments (a *phase* each). The cumulative expected number of
//! requests `Λ(t) = ∫ rate` is piecewise linear (steps) or quadratic (ramps). Arrival `n` is due
//! at `Λ⁻¹(xₙ)` where `xₙ = n` for uniform spacing (wrk2's `start + n/λ`) and
//! `xₙ = xₙ₋₁ + Exp(1)` for Poisson spacing (a non-homogeneous Poisson process obtained by
//! time-changing a unit-rate one). [`Arrivals`] computes these times as a pure function of the
//! schedule, the spacing and the seed: no clock is read, so the math is tested directly.

use std::fmt;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, Exp1};
use tailwater_core::ConfigError;

use crate::parse::{parse_duration, parse_rate};

/// One phase of a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Segment {
    /// A constant rate (requests/s) for a duration; a rate of 0 is a pause.
    Constant {
        /// Requests per second.
        rate: f64,
        /// How long the phase lasts.
        duration: Duration,
    },
    /// A rate that changes linearly from `from` to `to` over `duration`.
    Ramp {
        /// Rate at the start of the phase (requests/s).
        from: f64,
        /// Rate at the end of the phase (requests/s).
        to: f64,
        /// How long the phase lasts.
        duration: Duration,
    },
}

impl Segment {
    /// The phase's duration.
    pub fn duration(&self) -> Duration {
        match *self {
            Segment::Constant { duration, .. } | Segment::Ramp { duration, .. } => duration,
        }
    }

    /// Rate at `t` seconds into the phase.
    pub fn rate_at(&self, t: f64) -> f64 {
        match *self {
            Segment::Constant { rate, .. } => rate,
            Segment::Ramp { from, to, duration } => {
                let d = duration.as_secs_f64();
                if d == 0.0 {
                    from
                } else {
                    from + (to - from) * (t / d).clamp(0.0, 1.0)
                }
            }
        }
    }

    /// Expected requests in the first `t` seconds of the phase (`t` clamped to the phase).
    pub fn mass_until(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.duration().as_secs_f64());
        match *self {
            Segment::Constant { rate, .. } => rate * t,
            Segment::Ramp { from, .. } => (from + self.rate_at(t)) * 0.5 * t,
        }
    }

    /// Expected requests over the whole phase.
    pub fn mass(&self) -> f64 {
        self.mass_until(f64::INFINITY)
    }

    /// Seconds into the phase at which the expected count reaches `x` (`0 ≤ x ≤ mass`).
    fn time_of_mass(&self, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        match *self {
            Segment::Constant { rate, .. } => x / rate,
            Segment::Ramp { from, to, duration } => {
                // Solve from·t + k·t²/2 = x with k = (to − from)/T, in the cancellation-free
                // form t = 2x / (from + sqrt(from² + 2kx)), valid for k = 0 too.
                let k = (to - from) / duration.as_secs_f64();
                let disc = (from * from + 2.0 * k * x).max(0.0);
                2.0 * x / (from + disc.sqrt())
            }
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Segment::Constant { rate, duration } => {
                write!(f, "{rate}/s for {:?}", duration)
            }
            Segment::Ramp { from, to, duration } => {
                write!(f, "ramp {from}..{to}/s over {:?}", duration)
            }
        }
    }
}

/// How arrivals are spaced within the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spacing {
    /// Evenly spaced: arrival `n` at `Λ⁻¹(n)` (wrk2's `start + n/λ` for a constant rate).
    #[default]
    Uniform,
    /// A Poisson process with the schedule's rate (exponential gaps), from a seeded RNG.
    Poisson,
}

/// A validated open-loop schedule: one or more phases, at least one expected request.
///
/// ```
/// use std::time::Duration;
/// use tailwater_load::Schedule;
/// let s = Schedule::parse("500:10s,2000:10s,ramp:2000..10000:20s").unwrap();
/// assert_eq!(s.segments().len(), 3);
/// assert_eq!(s.duration(), Duration::from_secs(40));
/// assert_eq!(s.expected_requests(), 5_000.0 + 20_000.0 + 120_000.0);
/// assert_eq!(Schedule::parse("-5:10s").unwrap_err().field(), "schedule");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    segments: Vec<Segment>,
}

impl Schedule {
    /// A single constant-rate phase. Errors name `rate` or `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Result<Self, ConfigError> {
        crate::parse::check_rate("rate", rate)?;
        if rate == 0.0 {
            return Err(ConfigError::new("rate", "must be greater than 0"));
        }
        if duration.is_zero() {
            return Err(ConfigError::new("duration", "must be greater than 0"));
        }
        Self::new(vec![Segment::Constant { rate, duration }])
    }

    /// A schedule from segments; errors name `schedule`.
    pub fn new(segments: Vec<Segment>) -> Result<Self, ConfigError> {
        for (i, s) in segments.iter().enumerate() {
            let rates = match *s {
                Segment::Constant { rate, .. } => [rate, rate],
                Segment::Ramp { from, to, .. } => [from, to],
            };
            for r in rates {
                crate::parse::check_rate("schedule", r).map_err(|e| {
                    ConfigError::new("schedule", format!("phase {}: {}", i + 1, e.reason()))
                })?;
            }
            if s.duration().is_zero() {
                return Err(ConfigError::new(
                    "schedule",
                    format!("phase {}: duration must be greater than 0", i + 1),
                ));
            }
        }
        let schedule = Self { segments };
        if schedule.segments.is_empty() {
            return Err(ConfigError::new("schedule", "has no phases"));
        }
        if schedule.expected_requests() < 1.0 {
            return Err(ConfigError::new(
                "schedule",
                "expects fewer than one request in total",
            ));
        }
        Ok(schedule)
    }

    /// Parses `RATE:DURATION` and `ramp:FROM..TO:DURATION` items separated by commas,
    /// e.g. `500:10s,2000:10s,ramp:2000..10000:20s`. Errors name `schedule`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut segments = Vec::new();
        for (i, item) in text.split(',').enumerate() {
            let seg = parse_segment(item)
                .map_err(|r| ConfigError::new("schedule", format!("item {}: {r}", i + 1)))?;
            segments.push(seg);
        }
        Self::new(segments)
    }

    /// Parses a schedule file: one or more comma-separated items per line, `#` starts a
    /// comment. Errors name `schedule` and give `file:line`.
    pub fn parse_file(name: &str, contents: &str) -> Result<Self, ConfigError> {
        let mut segments = Vec::new();
        for (lineno, line) in contents.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            for item in line.split(',').filter(|s| !s.trim().is_empty()) {
                let seg = parse_segment(item).map_err(|r| {
                    ConfigError::new("schedule", format!("{name}:{}: {r}", lineno + 1))
                })?;
                segments.push(seg);
            }
        }
        Self::new(segments)
            .map_err(|e| ConfigError::new("schedule", format!("{name}: {}", e.reason())))
    }

    /// The phases.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Total duration.
    pub fn duration(&self) -> Duration {
        self.segments.iter().map(Segment::duration).sum()
    }

    /// Expected number of requests over the whole schedule.
    pub fn expected_requests(&self) -> f64 {
        self.segments.iter().map(Segment::mass).sum()
    }

    /// Mean target rate over the whole schedule (requests/s).
    pub fn mean_rate(&self) -> f64 {
        self.expected_requests() / self.duration().as_secs_f64()
    }

    /// Start offset of phase `index`.
    pub fn phase_start(&self, index: usize) -> Duration {
        self.segments[..index.min(self.segments.len())]
            .iter()
            .map(Segment::duration)
            .sum()
    }

    /// Expected requests between offsets `a` and `b` (seconds since the start).
    pub fn mass_between(&self, a: f64, b: f64) -> f64 {
        self.cumulative(b) - self.cumulative(a)
    }

    /// Expected requests from the start to offset `t` seconds.
    pub fn cumulative(&self, t: f64) -> f64 {
        let mut start = 0.0;
        let mut total = 0.0;
        for s in &self.segments {
            let d = s.duration().as_secs_f64();
            if t <= start {
                break;
            }
            total += s.mass_until(t - start);
            start += d;
        }
        total
    }

    /// The arrival times of this schedule, as offsets from the start.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tailwater_load::{Schedule, Spacing};
    /// let s = Schedule::constant(4.0, Duration::from_secs(1)).unwrap();
    /// let t: Vec<_> = s.arrivals(Spacing::Uniform, 0).map(|a| a.offset).collect();
    /// assert_eq!(t, [0, 250, 500, 750].map(Duration::from_millis));
    /// ```
    pub fn arrivals(&self, spacing: Spacing, seed: u64) -> Arrivals {
        Arrivals {
            segments: self.segments.clone(),
            spacing,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            index: 0,
            seg: 0,
            seg_start: 0.0,
            mass_before: 0.0,
            next_mass: 0.0,
            started: false,
        }
    }
}

fn parse_segment(item: &str) -> Result<Segment, String> {
    let item = item.trim();
    let parts: Vec<&str> = item.split(':').map(str::trim).collect();
    match parts.as_slice() {
        ["ramp", range, dur] => {
            let (a, b) = range
                .split_once("..")
                .ok_or_else(|| format!("`{item}`: a ramp is `ramp:FROM..TO:DURATION`"))?;
            let from =
                parse_rate("schedule", a).map_err(|e| format!("`{item}`: {}", e.reason()))?;
            let to = parse_rate("schedule", b).map_err(|e| format!("`{item}`: {}", e.reason()))?;
            let duration =
                parse_duration("schedule", dur).map_err(|e| format!("`{item}`: {}", e.reason()))?;
            Ok(Segment::Ramp { from, to, duration })
        }
        [rate, dur] => {
            let rate =
                parse_rate("schedule", rate).map_err(|e| format!("`{item}`: {}", e.reason()))?;
            let duration =
                parse_duration("schedule", dur).map_err(|e| format!("`{item}`: {}", e.reason()))?;
            Ok(Segment::Constant { rate, duration })
        }
        _ => Err(format!(
            "`{item}` is neither `RATE:DURATION` nor `ramp:FROM..TO:DURATION`"
        )),
    }
}

/// One scheduled request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Sequence number, from 0.
    pub index: u64,
    /// Intended send time, as an offset from the start of the run.
    pub offset: Duration,
    /// Index of the phase (segment) the arrival falls in.
    pub phase: usize,
}

/// Iterator over the arrivals of a [`Schedule`]; see [`Schedule::arrivals`].
#[derive(Debug, Clone)]
pub struct Arrivals {
    segments: Vec<Segment>,
    spacing: Spacing,
    rng: Xoshiro256PlusPlus,
    index: u64,
    seg: usize,
    seg_start: f64,
    mass_before: f64,
    next_mass: f64,
    started: bool,
}

impl Iterator for Arrivals {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        // The target cumulative mass of this arrival.
        match self.spacing {
            Spacing::Uniform => self.next_mass = self.index as f64,
            Spacing::Poisson => {
                let gap: f64 = Exp1.sample(&mut self.rng);
                self.next_mass = if self.started {
                    self.next_mass + gap
                } else {
                    gap
                };
            }
        }
        self.started = true;
        loop {
            let seg = self.segments.get(self.seg)?;
            let mass = seg.mass();
            let x = self.next_mass - self.mass_before;
            if x < mass {
                let t = self.seg_start + seg.time_of_mass(x);
                let arrival = Arrival {
                    index: self.index,
                    offset: Duration::from_secs_f64(t.max(0.0)),
                    phase: self.seg,
                };
                self.index += 1;
                return Some(arrival);
            }
            self.mass_before += mass;
            self.seg_start += seg.duration().as_secs_f64();
            self.seg += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn constant_rate_is_start_plus_n_over_lambda() {
        let s = Schedule::constant(1000.0, Duration::from_secs(2)).unwrap();
        let all: Vec<_> = s.arrivals(Spacing::Uniform, 1).collect();
        assert_eq!(all.len(), 2000);
        for (n, a) in all.iter().enumerate() {
            let want = n as f64 / 1000.0;
            assert!(
                (a.offset.as_secs_f64() - want).abs() < 1e-9,
                "{n}: {:?}",
                a.offset
            );
        }
    }

    #[test]
    fn steps_change_spacing_at_phase_boundaries() {
        let s = Schedule::parse("10:1s,20:1s").unwrap();
        let all: Vec<_> = s.arrivals(Spacing::Uniform, 0).collect();
        assert_eq!(all.len(), 30);
        assert_eq!(all[9].offset, ms(900));
        assert_eq!(all[9].phase, 0);
        assert_eq!(all[10].offset, ms(1000));
        assert_eq!(all[10].phase, 1);
        assert!((all[11].offset.as_secs_f64() - 1.05).abs() < 1e-9);
    }

    #[test]
    fn ramp_counts_match_the_integral() {
        // 0 → 100/s over 10 s: 500 requests; the first half holds a quarter of them.
        let s = Schedule::parse("ramp:0..100:10s").unwrap();
        let all: Vec<_> = s.arrivals(Spacing::Uniform, 0).collect();
        assert_eq!(all.len(), 500);
        let first_half = all
            .iter()
            .filter(|a| a.offset < Duration::from_secs(5))
            .count();
        assert_eq!(first_half, 125);
        assert!(all.windows(2).all(|w| w[0].offset <= w[1].offset));
        // Arrival n is at t with 5·t² = n.
        let t = all[320].offset.as_secs_f64();
        assert!((5.0 * t * t - 320.0).abs() < 1e-6);
    }

    #[test]
    fn ramp_down_and_pause() {
        let s = Schedule::parse("ramp:100..0:10s,0:5s,10:1s").unwrap();
        let all: Vec<_> = s.arrivals(Spacing::Uniform, 0).collect();
        assert_eq!(all.len(), 510);
        assert_eq!(all[500].offset, Duration::from_secs(15));
        assert_eq!(all[500].phase, 2);
    }

    #[test]
    fn poisson_is_seeded_and_has_the_right_mean() {
        let s = Schedule::constant(1000.0, Duration::from_secs(20)).unwrap();
        let a: Vec<_> = s.arrivals(Spacing::Poisson, 7).map(|a| a.offset).collect();
        let b: Vec<_> = s.arrivals(Spacing::Poisson, 7).map(|a| a.offset).collect();
        let c: Vec<_> = s.arrivals(Spacing::Poisson, 8).map(|a| a.offset).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let n = a.len() as f64;
        assert!((n - 20_000.0).abs() < 5.0 * 20_000f64.sqrt(), "{n}");
        // Exponential gaps: coefficient of variation ≈ 1.
        let gaps: Vec<f64> = a.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!((cv - 1.0).abs() < 0.05, "cv {cv}");
    }

    #[test]
    fn bad_schedules_name_the_field() {
        for bad in [
            "",
            "abc",
            "-5:10s",
            "10:-1s",
            "10",
            "ramp:1..x:1s",
            "10:0s",
            "0:10s",
            "nan:1s",
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert_eq!(err.field(), "schedule", "{bad}");
        }
        assert_eq!(
            Schedule::constant(-1.0, ms(10)).unwrap_err().field(),
            "rate"
        );
        assert_eq!(
            Schedule::constant(1.0, ms(0)).unwrap_err().field(),
            "duration"
        );
        let err = Schedule::parse_file("s.txt", "# steps\n10:1s\n\n20:x\n").unwrap_err();
        assert!(err.reason().contains("s.txt:4"), "{err}");
        let ok = Schedule::parse_file("s.txt", "10:1s # warm\nramp:10..20:1s, 5:1s\n").unwrap();
        assert_eq!(ok.segments().len(), 3);
    }

    #[test]
    fn cumulative_mass() {
        let s = Schedule::parse("10:1s,ramp:10..30:2s").unwrap();
        assert!((s.cumulative(1.0) - 10.0).abs() < 1e-9);
        assert!((s.cumulative(3.0) - 50.0).abs() < 1e-9);
        assert!((s.mass_between(1.0, 2.0) - 15.0).abs() < 1e-9);
        assert!((s.cumulative(99.0) - 50.0).abs() < 1e-9);
    }
}
