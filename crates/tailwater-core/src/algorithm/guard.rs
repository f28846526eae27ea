//! The Little's-law guard over the corrected Gradient2: a latency gradient that does not read
//! a uniformly slower service as a queue.
//!
//! A latency gradient compares the current RTT with a historical one, so a service that
//! becomes uniformly 4× slower looks like a 4× queue and the limit halves (research:
//! `adaptive-limits.md` §0). The right concurrency of a pool of W workers is W whatever the
//! service time, and two measurements that do not depend on the service time's scale say
//! where it is:
//!
//! - **Little's law, BBR-style.** `F = max(completion rate) × min(mean RTT)` over the last
//!   `K` windows (BBR's `bottleneck bandwidth × RTprop`, Linux `tcp_bbr.c`; Kratos and go-zero
//!   take the minimum of bucket *means*, not of samples, because Little's law needs E[S]).
//!   Both filters share one short horizon, so after a slowdown both move together.
//! - **Probing.** At a binding limit Little's law is an identity (`X × R̄ = L`), so `F` only
//!   learns when the limit moves: BBR's gain cycle, compressed to `[1.25, 0.75, 1]`, one gain
//!   per window. The 1.25 probe finds a higher saturation point; the 0.75 drain refreshes the
//!   minimum mean RTT from a window without a standing queue, which is what tells a new
//!   bottleneck (the drain lowers the RTT: `F` shrinks) from a slowdown (the drain lowers the
//!   rate: `F` holds).
//!
//! Rule per window (the window is at least `clamp(2 × its fastest RTT, 20 ms, 100 ms)` long and
//! holds at least `min_samples` completions — more when the service is dispersed, see
//! [`LlGuardBuilder::dispersion_samples`]):
//!
//! 1. the window's mean RTT and largest in-flight go to the corrected [`Gradient2`], which
//!    proposes `L_g` (drops and timeouts back off by 0.9; Netflix's app-limited hold);
//! 2. a window with a drop or timeout leaves the guard and keeps `L_g`;
//! 3. the guard is entered when `L_g < margin × F` (latency says "queue", completions say the
//!    service still sustains `F` in flight: the signature of a slowdown) and left when
//!    `L_g ≥ F`; while in it, the limit is `gain × F` with the gain cycling `[1.25, 0.75, 1]`
//!    and the gradient's cuts are ignored;
//! 4. with [`hold_unless_binding`](LlGuardBuilder::hold_unless_binding) (the default), a window
//!    in which the in-flight count never reached the limit cannot lower it: a limit that did
//!    not bind shed nothing, so there is nothing to correct, and a latency gradient on a
//!    high-variance service would otherwise read variance as queue (issue 16: 60 % shed at
//!    0.5× load on exponential service times).
//!
//! Origins: the latency gradient is Netflix concurrency-limits' `Gradient2Limit` (corrected,
//! see [`Gradient2`]); the guard is the "LL-guarded gradient" of tailwater's research notes,
//! after BBR (Cardwell et al., 2016) and the Little's-law limiters of Sentinel, Kratos and
//! go-zero; the binding rule is BBR's app-limited marking and Breakwater/DAGOR's principle of
//! acting on congestion only where it is observed.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Estimates, Gradient2, LimitAlgorithm, Outcome, Sample};
use crate::error::{ConfigError, check_limits, check_range};

/// The gain cycle while guarding, after BBR's `bbr_pacing_gain` (5/4, 3/4, then 1).
pub const GAIN_CYCLE: [f64; 3] = [1.25, 0.75, 1.0];

/// One window's running sums.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: Option<Duration>,
    count: u64,
    sum: f64,
    sum_sq: f64,
    fastest: Option<Duration>,
    max_in_flight: usize,
    drops: u64,
}

/// One closed window, as the guard's filters keep it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measure {
    /// Completions per second.
    rate: f64,
    /// Mean RTT of the successes, seconds.
    mean: f64,
}

/// The Little's-law estimate `max(rate) × min(mean RTT)` over `history`, in requests.
fn littles_law(history: &VecDeque<Measure>) -> Option<f64> {
    let rate = history.iter().map(|m| m.rate).reduce(f64::max)?;
    let mean = history.iter().map(|m| m.mean).reduce(f64::min)?;
    Some(rate * mean)
}

/// The corrected [`Gradient2`] in short windows, guarded by a Little's-law estimate with
/// BBR-style probing; see the [module docs](self) for the rule and its origins.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::{LimitAlgorithm, LlGuard, Sample};
/// let mut g = LlGuard::default();
/// let ms = Duration::from_millis;
/// // 48 workers at 30 ms, the limit binding: windows of 20 completions every 12.5 ms.
/// for i in 0..2000u64 {
///     g.update(&Sample::success(ms(i) / 2, ms(30), g.limit()));
/// }
/// assert!(g.limit() > 20);
/// ```
#[derive(Debug, Clone)]
pub struct LlGuard {
    gradient: Gradient2,
    k: usize,
    margin: f64,
    min_samples: u64,
    dispersion_samples: f64,
    max_samples: u64,
    min_window: Duration,
    max_window: Duration,
    timeout: Duration,
    hold_unless_binding: bool,
    name: &'static str,
    window: Window,
    next_end: Duration,
    needed: u64,
    history: VecDeque<Measure>,
    guarding: bool,
    phase: usize,
    last_estimate: Option<f64>,
    last_rtt: Option<Duration>,
    windows: u64,
}

impl Default for LlGuard {
    fn default() -> Self {
        LlGuardBuilder::default()
            .build()
            .expect("the default LlGuard configuration is valid")
    }
}

impl LlGuard {
    /// A builder with the defaults.
    pub fn builder() -> LlGuardBuilder {
        LlGuardBuilder::default()
    }

    /// Whether the guard currently holds the limit at a multiple of the Little's-law estimate.
    pub fn guarding(&self) -> bool {
        self.guarding
    }

    /// The last Little's-law estimate `max rate × min mean RTT`, in requests.
    pub fn littles_law_estimate(&self) -> Option<f64> {
        self.last_estimate
    }

    /// How many windows closed.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    fn close(&mut self, now: Duration) {
        let w = std::mem::take(&mut self.window);
        self.window.start = Some(now);
        let len = w
            .fastest
            .unwrap_or(self.max_window)
            .saturating_mul(2)
            .clamp(self.min_window, self.max_window);
        self.next_end = now.saturating_add(len);
        self.windows += 1;
        let elapsed = w.start.map_or(0.0, |s| now.saturating_sub(s).as_secs_f64());
        let before = self.gradient.estimated();
        let binding = w.max_in_flight as f64 >= before.floor();
        let dropped = w.drops > 0;
        // The window mean and its dispersion; a window of drops only has neither.
        let (mean, cv) = if w.count > 0 {
            let n = w.count as f64;
            let mean = w.sum / n;
            let var = (w.sum_sq / n - mean * mean).max(0.0);
            (Some(mean), (mean > 0.0).then(|| var.sqrt() / mean))
        } else {
            (None, None)
        };
        self.needed = match cv {
            Some(cv) if self.dispersion_samples > 0.0 => ((self.dispersion_samples * cv * cv)
                .ceil() as u64)
                .clamp(self.min_samples, self.max_samples),
            _ => self.min_samples,
        };
        let rtt = mean
            .and_then(|m| Duration::try_from_secs_f64(m).ok())
            .unwrap_or(Duration::ZERO);
        self.last_rtt = mean.and(Some(rtt));
        self.gradient.update(&Sample {
            now,
            rtt,
            in_flight: w.max_in_flight,
            outcome: if dropped {
                Outcome::Dropped
            } else {
                Outcome::Success
            },
        });
        let mut limit = self.gradient.estimated();
        if let Some(mean) = mean
            && !dropped
            && elapsed > 0.0
        {
            self.history.push_back(Measure {
                rate: w.count as f64 / elapsed,
                mean,
            });
            while self.history.len() > self.k {
                self.history.pop_front();
            }
        }
        let estimate = littles_law(&self.history);
        self.last_estimate = estimate;
        if dropped {
            self.guarding = false;
        } else if let Some(f) = estimate {
            if !self.guarding && limit < self.margin * f {
                self.guarding = true;
                self.phase = 0;
            } else if self.guarding && limit >= f {
                self.guarding = false;
            }
            if self.guarding {
                limit = GAIN_CYCLE[self.phase % GAIN_CYCLE.len()] * f;
                self.phase += 1;
            }
        }
        if self.hold_unless_binding && !binding && !dropped {
            limit = limit.max(before);
        }
        self.gradient.set_limit(limit);
    }
}

impl LimitAlgorithm for LlGuard {
    fn name(&self) -> &'static str {
        self.name
    }

    fn limit(&self) -> usize {
        self.gradient.limit()
    }

    fn update(&mut self, sample: &Sample) -> usize {
        if sample.outcome == Outcome::Ignored {
            return self.limit();
        }
        let w = &mut self.window;
        if w.start.is_none() {
            w.start = Some(sample.now);
            self.next_end = sample.now.saturating_add(self.min_window);
        }
        w.max_in_flight = w.max_in_flight.max(sample.in_flight);
        if sample.is_drop() || sample.rtt >= self.timeout {
            w.drops += 1;
        } else {
            let r = sample.rtt.as_secs_f64();
            w.count += 1;
            w.sum += r;
            w.sum_sq += r * r;
            w.fastest = Some(w.fastest.map_or(sample.rtt, |f| f.min(sample.rtt)));
        }
        let full = w.count >= self.needed || w.drops > 0;
        if sample.now >= self.next_end && full {
            self.close(sample.now);
        }
        self.limit()
    }

    fn estimates(&self) -> Estimates {
        let g = self.gradient.estimates();
        Estimates {
            short_rtt: self.last_rtt,
            queue: self.last_estimate,
            probing: Some(self.guarding),
            ..g
        }
    }

    /// No: the guard counts completions per second, so it must see every one of them.
    fn aggregates_samples(&self) -> bool {
        false
    }
}

/// Builder for [`LlGuard`]; every setter is checked in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct LlGuardBuilder {
    initial: usize,
    min: usize,
    max: usize,
    k: usize,
    margin: f64,
    min_samples: usize,
    dispersion_samples: f64,
    max_samples: usize,
    min_window: Duration,
    max_window: Duration,
    timeout: Duration,
    hold_unless_binding: bool,
}

impl Default for LlGuardBuilder {
    fn default() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 5000,
            k: 8,
            margin: 0.8,
            min_samples: 10,
            dispersion_samples: 25.0,
            max_samples: 400,
            min_window: Duration::from_millis(20),
            max_window: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
            hold_unless_binding: true,
        }
    }
}

impl LlGuardBuilder {
    /// The starting limit (default 20).
    pub fn initial_limit(mut self, v: usize) -> Self {
        self.initial = v;
        self
    }
    /// The floor (default 20, Netflix's).
    pub fn min_limit(mut self, v: usize) -> Self {
        self.min = v;
        self
    }
    /// The ceiling (default 5000: a limit that does not bind sheds nothing, so the ceiling
    /// only bounds how far probing can go).
    pub fn max_limit(mut self, v: usize) -> Self {
        self.max = v;
        self
    }
    /// Windows in the Little's-law filters (default 8; 12 made the research prototype slower
    /// to follow a slowdown).
    pub fn windows(mut self, v: usize) -> Self {
        self.k = v;
        self
    }
    /// The guard engages when the gradient proposes less than `margin × F`, in `(0, 1]`
    /// (default 0.8).
    pub fn margin(mut self, v: f64) -> Self {
        self.margin = v;
        self
    }
    /// Completions a window needs at least (default 10, Netflix's `WindowedLimit`).
    pub fn min_samples(mut self, v: usize) -> Self {
        self.min_samples = v;
        self
    }
    /// A window needs `dispersion_samples × CV²` completions (CV of the previous window's
    /// RTTs), bounded by `min_samples` and 400: the standard error of the window mean is then
    /// at most `1/√dispersion_samples` of it (default 25: 20 %). 0 turns it off.
    pub fn dispersion_samples(mut self, v: f64) -> Self {
        self.dispersion_samples = v;
        self
    }
    /// The shortest window (default 20 ms).
    pub fn min_window(mut self, v: Duration) -> Self {
        self.min_window = v;
        self
    }
    /// The longest window by time alone (default 100 ms; a window still waits for its
    /// completions).
    pub fn max_window(mut self, v: Duration) -> Self {
        self.max_window = v;
        self
    }
    /// An RTT at or above this counts as a drop (default 5 s).
    pub fn timeout(mut self, v: Duration) -> Self {
        self.timeout = v;
        self
    }
    /// Whether a window in which the limit never bound may lower it (default: it may not).
    pub fn hold_unless_binding(mut self, v: bool) -> Self {
        self.hold_unless_binding = v;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<LlGuard, ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_range("margin", self.margin, f64::MIN_POSITIVE, 1.0)?;
        check_range("dispersion_samples", self.dispersion_samples, 0.0, 10_000.0)?;
        if self.k == 0 {
            return Err(ConfigError::new("windows", "must be at least 1"));
        }
        if self.min_samples == 0 {
            return Err(ConfigError::new("min_samples", "must be at least 1"));
        }
        if self.min_window.is_zero() {
            return Err(ConfigError::new("min_window", "must be greater than zero"));
        }
        if self.max_window < self.min_window {
            return Err(ConfigError::new(
                "max_window",
                format!(
                    "max_window {:?} is shorter than min_window {:?}",
                    self.max_window, self.min_window
                ),
            ));
        }
        let gradient = Gradient2::builder()
            .corrected()
            .initial_limit(self.initial)
            .min_limit(self.min)
            .max_limit(self.max)
            .timeout(self.timeout)
            .build()?;
        Ok(LlGuard {
            gradient,
            k: self.k,
            margin: self.margin,
            min_samples: self.min_samples as u64,
            dispersion_samples: self.dispersion_samples,
            max_samples: (self.min_samples as u64).max(400),
            min_window: self.min_window,
            max_window: self.max_window,
            timeout: self.timeout,
            hold_unless_binding: self.hold_unless_binding,
            name: if self.hold_unless_binding {
                "ll-guard"
            } else {
                "ll-guard-plain"
            },
            window: Window::default(),
            next_end: Duration::ZERO,
            needed: self.min_samples as u64,
            history: VecDeque::with_capacity(self.k + 1),
            guarding: false,
            phase: 0,
            last_estimate: None,
            last_rtt: None,
            windows: 0,
        })
    }
}
