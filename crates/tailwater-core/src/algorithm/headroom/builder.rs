//! [`HeadroomBuilder`]: the checked configuration of [`Headroom`].

use std::time::Duration;

use super::super::guard::LittlesLaw;
use super::super::window_stats::{WindowConfig, Windows};
use super::{FIRST_ROUND_LIMIT, Headroom, History};
use crate::error::{ConfigError, check_limits, check_range};

/// Builder for [`Headroom`]; every setter is checked in [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct HeadroomBuilder {
    initial: usize,
    min: usize,
    burst_floor: usize,
    /// `None`: 2, or `min_limit` once that is set.
    overload_floor: Option<usize>,
    min_set: bool,
    max: usize,
    tolerance: f64,
    sustained_tolerance: f64,
    backoff: f64,
    baseline_windows: usize,
    dispersion_samples: f64,
    guard_windows: usize,
    margin: f64,
    timeout: Duration,
    growth: f64,
    slow_start: bool,
    first_round: usize,
}

/// The overload floor when neither it nor `min_limit` is set (see
/// [`HeadroomBuilder::overload_floor`]).
const DEFAULT_OVERLOAD_FLOOR: usize = 2;

impl Default for HeadroomBuilder {
    fn default() -> Self {
        Self {
            initial: 20,
            // 20, not 2: the small-pool floor is opt-in (see `burst_floor`). With a floor of
            // 2 the simulator's 4-worker overload check passes, but a 4-worker bimodal pool
            // at 0.9× load sheds 3.1 % (a healthy service harmed) and the real-socket drill
            // did not improve; measured in session 6, README "headroom on small pools".
            min: 20,
            burst_floor: 20,
            overload_floor: None,
            min_set: false,
            max: 5000,
            tolerance: 2.0,
            sustained_tolerance: 1.5,
            backoff: 0.9,
            baseline_windows: 1000,
            dispersion_samples: 25.0,
            guard_windows: 8,
            margin: 0.8,
            timeout: Duration::from_secs(5),
            growth: 2.0,
            slow_start: true,
            first_round: FIRST_ROUND_LIMIT,
        }
    }
}

impl HeadroomBuilder {
    /// The starting limit (default 20), from the first sample on: before it the limit is the
    /// [`first_round_limit`](Self::first_round_limit).
    pub fn initial_limit(mut self, v: usize) -> Self {
        self.initial = v;
        self
    }
    /// The floor (default 20): the limit never falls below it, except, while it is left at
    /// its default, to the [`overload_floor`](Self::overload_floor) under overload proven by
    /// the limiter's refusals (rule 11), and, for a small pool with little dispersion (a
    /// pooled RTT CV below 0.7), to its burst room while it is calm (rule 5). Set it below the
    /// [`burst_floor`](Self::burst_floor) (say to the worker count of a small pool) and the
    /// burst floor holds only while the demand comes in bursts; once a queue stands the
    /// limit may fall to this floor.
    pub fn min_limit(mut self, v: usize) -> Self {
        self.min = v;
        self.min_set = true;
        self
    }
    /// The floor while the demand comes in bursts (default 20, Netflix's floor; raised to
    /// `min_limit` if below it). A small pool with dispersed service needs many times its
    /// workers in flight to absorb its own bursts, which drain; a queue that stands (three
    /// binding windows in a row that queued, or a limit that bound in three quarters of
    /// recent windows) is demand above the knee, and there the limit may fall to
    /// `min_limit`: a 4-worker pool held at 20 in flight queues four service times behind
    /// every request.
    pub fn burst_floor(mut self, v: usize) -> Self {
        self.burst_floor = v;
        self
    }
    /// The floor while the limiter turns away far more than completes (see [`Headroom`],
    /// rule 11): 2 by default, or the [`min_limit`](Self::min_limit) you set (a floor you
    /// chose holds here too); never above `min_limit`. Refusals at twice the completion rate
    /// or more in a window whose mean queued are demand far past the service, not a healthy
    /// pool's burst; there a small pool's limit is held between its knee and 1.5 times it,
    /// below the default `min_limit` of 20 down to this floor: a limit held at 20 in front
    /// of 4 workers keeps a queue of four service times behind every request.
    pub fn overload_floor(mut self, v: usize) -> Self {
        self.overload_floor = Some(v);
        self
    }
    /// The ceiling (default 5000: a limit that does not bind sheds nothing and is never
    /// raised, so the ceiling only bounds growth under sustained demand).
    pub fn max_limit(mut self, v: usize) -> Self {
        self.max = v;
        self
    }
    /// How many times the baseline a binding window's mean RTT may be before it counts as
    /// queueing, before the noise allowance, in `[1, 100]` (default 2).
    pub fn tolerance(mut self, v: f64) -> Self {
        self.tolerance = v;
        self
    }
    /// The tolerance once the limit has bound in most recent windows (sustained demand rather
    /// than bursts), in `[1, 100]` (default 1.5, Netflix's Gradient2 tolerance).
    pub fn sustained_tolerance(mut self, v: f64) -> Self {
        self.sustained_tolerance = v;
        self
    }
    /// Multiplicative decrease on a drop or timeout, in `[0.5, 1)` (default 0.9).
    pub fn backoff_ratio(mut self, v: f64) -> Self {
        self.backoff = v;
        self
    }
    /// Window means the baseline percentile is taken over (default 1000, at least 1).
    pub fn baseline_windows(mut self, v: usize) -> Self {
        self.baseline_windows = v;
        self
    }
    /// A window needs `dispersion_samples × CV²` successes (10 to 400), so that its mean's
    /// standard error is about `1/√dispersion_samples` (default 25: 20 %).
    pub fn dispersion_samples(mut self, v: f64) -> Self {
        self.dispersion_samples = v;
        self
    }
    /// Windows in the Little's-law filters (default 8).
    pub fn guard_windows(mut self, v: usize) -> Self {
        self.guard_windows = v;
        self
    }
    /// The guard engages below `margin × F`, in `(0, 1]` (default 0.8).
    pub fn margin(mut self, v: f64) -> Self {
        self.margin = v;
        self
    }
    /// An RTT at or above this counts as a drop (default 5 s), or at or above 50 times the
    /// no-queue baseline if that is longer: a healthy slow, dispersed service's tail (300 ms
    /// lognormal CV 2: 0.2 % of requests over 5 s) is not a loss.
    pub fn timeout(mut self, v: Duration) -> Self {
        self.timeout = v;
        self
    }

    /// The factor a binding limit grows by per window while the mean RTT shows no sign of
    /// queueing, in `[1, 4]` (default 2, as BBR's startup roughly doubles per round trip).
    pub fn growth(mut self, v: f64) -> Self {
        self.growth = v;
        self
    }

    /// Whether to start in slow start (default yes): the limit doubles per round trip while
    /// it binds and the RTT shows no queue, until the first binding window that queues.
    pub fn slow_start(mut self, v: bool) -> Self {
        self.slow_start = v;
        self
    }

    /// The limit until the first sample arrives (default 100; never below the initial
    /// limit, at most the ceiling). Before any request has completed nothing is known of the
    /// service, and the initial limit would shed most of a large pool's first round trip; from
    /// the first sample on the limit is the initial limit, grown by slow start. Set it to the
    /// initial limit to admit no more than that before any feedback.
    pub fn first_round_limit(mut self, v: usize) -> Self {
        self.first_round = v;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Headroom, ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        if self.overload_floor == Some(0) {
            return Err(ConfigError::new("overload_floor", "must be at least 1"));
        }
        check_range("tolerance", self.tolerance, 1.0, 100.0)?;
        check_range("sustained_tolerance", self.sustained_tolerance, 1.0, 100.0)?;
        check_range("margin", self.margin, f64::MIN_POSITIVE, 1.0)?;
        check_range("growth", self.growth, 1.0, 4.0)?;
        check_range("dispersion_samples", self.dispersion_samples, 0.0, 10_000.0)?;
        if !(self.backoff.is_finite() && (0.5..1.0).contains(&self.backoff)) {
            return Err(ConfigError::new(
                "backoff_ratio",
                format!("must be within [0.5, 1), got {}", self.backoff),
            ));
        }
        if self.baseline_windows == 0 {
            return Err(ConfigError::new("baseline_windows", "must be at least 1"));
        }
        if self.guard_windows == 0 {
            return Err(ConfigError::new("guard_windows", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
        }
        Ok(Headroom {
            limit: self.initial as f64,
            min: self.min,
            burst_floor: self.burst_floor.clamp(self.min, self.max),
            overload_floor: match (self.overload_floor, self.min_set) {
                (Some(v), _) => v.min(self.min),
                (None, true) => self.min,
                (None, false) => DEFAULT_OVERLOAD_FLOOR.min(self.min),
            },
            max: self.max,
            timeout: self.timeout,
            queued_run: 0,
            seen: 0,
            full: 0,
            pressed_run: 0,
            cv: 1.0,
            dispersion: Default::default(),
            service: Default::default(),
            usual_drops: Default::default(),
            tolerance: self.tolerance,
            sustained_tolerance: self.sustained_tolerance,
            backoff: self.backoff,
            smoothing: 0.2,
            growth: self.growth,
            grew: false,
            binding_share: 0.0,
            full_share: 0.0,
            history: History::new(self.baseline_windows),
            windows: Windows::new(WindowConfig {
                min_window: Duration::from_millis(20),
                max_window: Duration::from_millis(100),
                min_samples: 10,
                max_samples: 400,
                dispersion_samples: self.dispersion_samples,
                // Headroom applies its own timeout, which scales with the baseline.
                timeout: Duration::MAX,
            }),
            guard: LittlesLaw::new(self.guard_windows, self.margin),
            last: None,
            slow_start: self.slow_start,
            paused: false,
            queued_windows: 0,
            slow_start_rate: 0.0,
            flat_windows: 0,
            flat_at: Duration::ZERO,
            opened: self.initial as f64,
            started: None,
            warm_from: 0,
            calm: false,
            first_rate: None,
            start_mean: f64::INFINITY,
            idle_windows: 0,
            undo: None,
            hold_growth: 0,
            no_double: 0,
            undone: false,
            since_calm: 0,
            calm_cv: 0.0,
            sharing: 0.0,
            ps_tight: false,
            episode_shed: false,
            burst_need: 0.0,
            burst_base: 0.0,
            refused_mark: (0, Duration::ZERO),
            overload_run: 0,
            queued_now: false,
            completed_since: 0,
            rate_share: 1.0,
            overload_knee: 0.0,
            first_round: Some(self.first_round.clamp(self.initial, self.max)),
        })
    }
}
