//! The Little's-law guard, and `LlGuard`: the research notes' guarded Gradient2 (see its docs).

use std::collections::VecDeque;
use std::time::Duration;

use super::util::setters;
use super::window_stats::{Closed, WindowConfig, Windows};
use super::{Estimates, Gradient2, LimitAlgorithm, Sample};
use crate::error::{ConfigError, check_limits, check_range};

/// The gain cycle while guarding, after BBR's `bbr_pacing_gain` (5/4, 3/4, then 1).
pub const GAIN_CYCLE: [f64; 3] = [1.25, 0.75, 1.0];

/// One closed window, as the guard's filters keep it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measure {
    /// Completions per second.
    rate: f64,
    /// Mean RTT of the successes, seconds.
    mean: f64,
}

/// The Little's-law guard: the filters `max(rate)` and `min(mean RTT)` over the last `k`
/// windows, and the guard state. Pure; shared by [`LlGuard`] and
/// [`Headroom`](super::Headroom).
#[derive(Debug, Clone)]
pub(crate) struct LittlesLaw {
    k: usize,
    margin: f64,
    history: VecDeque<Measure>,
    guarding: bool,
    phase: usize,
    estimate: Option<f64>,
    /// The mean and the highest completion rate over `history`, computed once per window
    /// (read several times per window by [`Headroom`](super::Headroom)).
    mean_rate: Option<f64>,
    max_rate: Option<f64>,
}

impl LittlesLaw {
    pub(crate) fn new(k: usize, margin: f64) -> Self {
        Self {
            k: k.max(1),
            margin,
            history: VecDeque::with_capacity(k + 1),
            guarding: false,
            phase: 0,
            estimate: None,
            mean_rate: None,
            max_rate: None,
        }
    }

    /// Records a window without drops that had successes.
    pub(crate) fn observe(&mut self, c: &Closed) {
        if c.dropped() {
            return;
        }
        if let (Some(rate), Some(mean)) = (c.rate, c.mean) {
            self.history.push_back(Measure { rate, mean });
            while self.history.len() > self.k {
                self.history.pop_front();
            }
        }
        let n = self.history.len();
        self.mean_rate =
            (n > 0).then(|| self.history.iter().map(|m| m.rate).sum::<f64>() / n as f64);
        self.max_rate = self.history.iter().map(|m| m.rate).reduce(f64::max);
        let mean = self.history.iter().map(|m| m.mean).reduce(f64::min);
        self.estimate = self.max_rate.zip(mean).map(|(r, m)| r * m);
    }

    /// The limit for this window given the latency rule's `proposal`: the proposal, or a gain
    /// of the cycle times `F` while guarding. A window with a drop leaves the guard.
    pub(crate) fn steer(&mut self, proposal: f64, dropped: bool) -> f64 {
        if dropped {
            self.guarding = false;
            return proposal;
        }
        let Some(f) = self.estimate else {
            return proposal;
        };
        if !self.guarding && proposal < self.margin * f {
            self.guarding = true;
            self.phase = 0;
        } else if self.guarding && proposal >= f {
            self.guarding = false;
        }
        if !self.guarding {
            return proposal;
        }
        let gain = GAIN_CYCLE[self.phase % GAIN_CYCLE.len()];
        self.phase += 1;
        gain * f
    }

    /// Forgets the filters' windows and leaves the guard: their means were a queue's
    /// ([`Headroom`](super::Headroom) restarting its warm-up after slow start).
    pub(crate) fn forget(&mut self) {
        self.history.clear();
        self.guarding = false;
        self.estimate = None;
        self.mean_rate = None;
        self.max_rate = None;
    }

    /// The mean completion rate over the filter's windows (per second), the guard's view of
    /// what the service delivers now.
    pub(crate) fn mean_rate(&self) -> Option<f64> {
        self.mean_rate
    }

    /// The highest completion rate over the filter's windows (per second).
    pub(crate) fn max_rate(&self) -> Option<f64> {
        self.max_rate
    }

    pub(crate) fn guarding(&self) -> bool {
        self.guarding
    }

    pub(crate) fn estimate(&self) -> Option<f64> {
        self.estimate
    }
}

/// The Little's-law guard over the corrected Gradient2: a latency gradient that does not read
/// a uniformly slower service as a queue.
///
/// A latency gradient compares the current RTT with a historical one, so a service that
/// becomes uniformly 4× slower looks like a 4× queue and the limit halves (research:
/// `adaptive-limits.md` §0). The right concurrency of a pool of W workers is W whatever the
/// service time, and two measurements that do not depend on the service time's scale say
/// where it is:
///
/// - **Little's law, BBR-style.** `F = max(completion rate) × min(mean RTT)` over the last
///   `K` windows (BBR's `bottleneck bandwidth × RTprop`, Linux `tcp_bbr.c`; Kratos and go-zero
///   take the minimum of bucket *means*, not of samples, because Little's law needs the mean service time).
///   Both filters share one short horizon, so after a slowdown both move together.
/// - **Probing.** At a binding limit Little's law is an identity (`X × R̄ = L`), so `F` only
///   learns when the limit moves: BBR's gain cycle, compressed to `[1.25, 0.75, 1]`, one gain
///   per window. The 1.25 probe finds a higher saturation point; the 0.75 drain refreshes the
///   minimum mean RTT from a window without a standing queue, which is what tells a new
///   bottleneck (the drain lowers the RTT: `F` shrinks) from a slowdown (the drain lowers the
///   rate: `F` holds).
///
/// Rule per window (windows of `clamp(2 × fastest RTT, 20 ms, 100 ms)` with at least 10
/// completions):
///
/// 1. a proposal `L_p` comes from a latency rule (here the corrected [`Gradient2`] fed the
///    window's mean RTT and largest in-flight; [`Headroom`](super::Headroom) has its own);
/// 2. a window with a drop or timeout leaves the guard and keeps `L_p`;
/// 3. the guard is entered when `L_p < margin × F` (latency says "queue", completions say the
///    service still sustains `F` in flight: the signature of a slowdown) and left when
///    `L_p ≥ F`; while in it, the limit is `gain × F` with the gain cycling `[1.25, 0.75, 1]`
///    and the latency rule's cuts are ignored.
///
/// [`LlGuard`] is that design exactly as the research notes recommend it (`adaptive-limits.md`
/// §5, "LL-guarded gradient": corrected Gradient2 in 20–100 ms windows, K = 8, margin 0.8),
/// kept for comparison in the simulator.
///
/// Origins: the latency gradient is Netflix concurrency-limits' `Gradient2Limit` (corrected,
/// see [`Gradient2`]); the guard follows BBR (Cardwell et al., 2016; Linux `tcp_bbr.c`) and
/// the Little's-law limiters of Alibaba Sentinel, Kratos and go-zero.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::{LimitAlgorithm, LlGuard, Sample};
/// let mut g = LlGuard::default();
/// let ms = Duration::from_millis;
/// for i in 0..2000u64 {
///     g.update(&Sample::success(ms(i) / 2, ms(30), g.limit()));
/// }
/// assert!(g.limit() >= 20);
/// ```
#[derive(Debug, Clone)]
pub struct LlGuard {
    gradient: Gradient2,
    windows: Windows,
    guard: LittlesLaw,
    last_rtt: Option<Duration>,
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
        self.guard.guarding()
    }

    /// The last Little's-law estimate `max rate × min mean RTT`, in requests.
    pub fn littles_law_estimate(&self) -> Option<f64> {
        self.guard.estimate()
    }

    /// How many windows closed.
    pub fn windows(&self) -> u64 {
        self.windows.closed()
    }
}

impl LimitAlgorithm for LlGuard {
    fn name(&self) -> &'static str {
        "ll-guard"
    }

    fn limit(&self) -> usize {
        self.gradient.limit()
    }

    fn update(&mut self, sample: &Sample) -> usize {
        let Some(c) = self.windows.push(sample) else {
            return self.limit();
        };
        self.last_rtt = c.mean.map(|_| c.mean_duration());
        self.gradient.update(&Sample {
            now: c.now,
            rtt: c.mean_duration(),
            in_flight: c.max_in_flight,
            limit: 0,
            weight: 1,
            refused: sample.refused,
            outcome: if c.dropped() {
                super::Outcome::Dropped
            } else {
                super::Outcome::Success
            },
        });
        self.guard.observe(&c);
        let limit = self.guard.steer(self.gradient.estimated(), c.dropped());
        self.gradient.set_limit(limit)
    }

    fn estimates(&self) -> Estimates {
        Estimates {
            short_rtt: self.last_rtt,
            queue: self.guard.estimate(),
            probing: Some(self.guard.guarding()),
            ..self.gradient.estimates()
        }
    }

    /// Yes: it aggregates windows, and counts completions by each sample's
    /// [`weight`](Sample::weight), so the limiter may measure only every 2^k-th permit.
    fn aggregates_samples(&self) -> bool {
        true
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
}

impl Default for LlGuardBuilder {
    fn default() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 200,
            k: 8,
            margin: 0.8,
        }
    }
}

impl LlGuardBuilder {
    setters! {
        /// The starting limit (default 20).
        initial_limit(initial: usize);
        /// The floor (default 20, Netflix's).
        min_limit(min: usize);
        /// The ceiling (default 200, Netflix's).
        max_limit(max: usize);
        /// Windows in the Little's-law filters (default 8).
        windows(k: usize);
        /// The guard engages when the gradient proposes less than `margin × F`, in `(0, 1]`
        /// (default 0.8).
        margin(margin: f64);
    }

    /// Validates and builds.
    pub fn build(self) -> Result<LlGuard, ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_range("margin", self.margin, f64::MIN_POSITIVE, 1.0)?;
        if self.k == 0 {
            return Err(ConfigError::new("windows", "must be at least 1"));
        }
        let gradient = Gradient2::builder()
            .corrected()
            .initial_limit(self.initial)
            .min_limit(self.min)
            .max_limit(self.max)
            .build()?;
        Ok(LlGuard {
            gradient,
            windows: Windows::new(WindowConfig {
                min_window: Duration::from_millis(20),
                max_window: Duration::from_millis(100),
                min_samples: 10,
                max_samples: 10,
                dispersion_samples: 0.0,
                timeout: Duration::from_secs(5),
            }),
            guard: LittlesLaw::new(self.k, self.margin),
            last_rtt: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(rate: f64, mean_ms: f64) -> Closed {
        Closed {
            now: Duration::ZERO,
            mean: Some(mean_ms / 1e3),
            cv: Some(0.5),
            count: 10,
            rate: Some(rate),
            max_in_flight: 50,
            drops: 0,
        }
    }

    #[test]
    fn table_littles_law_estimate_and_gain_cycle() {
        let mut g = LittlesLaw::new(3, 0.8);
        // F = max rate × min mean over the last 3 windows.
        g.observe(&window(1000.0, 50.0)); // F = 1000 × 0.050 = 50
        assert!((g.estimate().unwrap() - 50.0).abs() < 1e-9);
        g.observe(&window(1600.0, 120.0)); // max 1600, min 0.050: F = 80
        assert!((g.estimate().unwrap() - 80.0).abs() < 1e-9);
        g.observe(&window(400.0, 30.0)); // max 1600, min 0.030: F = 48
        assert!((g.estimate().unwrap() - 48.0).abs() < 1e-9);
        g.observe(&window(400.0, 120.0)); // the 1000/50 window ages out: 1600 × 0.030 = 48
        assert!((g.estimate().unwrap() - 48.0).abs() < 1e-9);
        // A proposal at or above 0.8 F = 38.4 passes through.
        assert_eq!(g.steer(40.0, false), 40.0);
        assert!(!g.guarding());
        // Below it: guard, and the gains cycle 1.25, 0.75, 1 around F = 48.
        assert_eq!(g.steer(30.0, false), 60.0);
        assert!(g.guarding());
        assert_eq!(g.steer(30.0, false), 36.0);
        assert_eq!(g.steer(47.0, false), 48.0);
        assert_eq!(g.steer(30.0, false), 60.0);
        // The proposal reaching F leaves the guard; so does a drop.
        assert_eq!(g.steer(48.0, false), 48.0);
        assert!(!g.guarding());
        assert_eq!(g.steer(10.0, false), 60.0);
        assert_eq!(g.steer(10.0, true), 10.0);
        assert!(!g.guarding());
    }

    #[test]
    fn drop_windows_teach_the_filters_nothing() {
        let mut g = LittlesLaw::new(8, 0.8);
        assert_eq!(g.steer(5.0, false), 5.0); // no estimate yet
        let mut w = window(5000.0, 1.0);
        w.drops = 1;
        g.observe(&w);
        assert_eq!(g.estimate(), None);
    }

    #[test]
    fn uniform_slowdown_keeps_the_limit_where_the_gradient_halves_it() {
        use super::super::window_stats::fluid_pool;
        use super::super::{Gradient2, Windowed};
        // 48 workers at 30 ms with demand above any limit, then every request 4x slower.
        let fast = Windowed::builder()
            .min_window(Duration::from_millis(20))
            .max_window(Duration::from_millis(100))
            .build(Gradient2::corrected())
            .unwrap();
        let run = |alg: &mut dyn LimitAlgorithm| {
            let mut t = Duration::ZERO;
            let before = *fluid_pool(alg, &mut t, 48, Duration::from_millis(30), 20_000)
                .last()
                .unwrap();
            let after = fluid_pool(alg, &mut t, 48, Duration::from_millis(120), 5_000);
            (before, after.iter().sum::<usize>() / after.len())
        };
        let (before, after) = run(&mut LlGuard::default());
        assert!(before >= 48, "{before}");
        assert!(after >= 40, "guarded: {before} then {after} on average");
        // The corrected gradient alone reads the slowdown as queueing.
        let (_, plain) = run(&mut { fast });
        assert!(plain < 36, "unguarded: {plain}");
    }
}
