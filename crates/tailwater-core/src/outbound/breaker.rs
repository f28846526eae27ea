//! A circuit breaker as a state machine on the project's clock.
//!
//! - **Closed**: every call goes through; outcomes land in a sliding [`Window`](super::Window). Once it holds
//!   `min_calls` calls, the breaker trips when the failure rate *or* the slow-call rate
//!   reaches its threshold (resilience4j's rule, with tailwater's lower minimum).
//! - **Open**: every call is refused at once with the time left ([`BreakerOpen`]). The
//!   interval doubles with each consecutive trip up to `open_max` and is jittered, so that
//!   many clients of one dependency do not re-probe it in lockstep (failsafe-go #142).
//!   A `Retry-After`-style hint recorded with a failure is a floor for the interval.
//! - **HalfOpen**: entered by the first call after the interval (under the lock, so exactly
//!   one transition: resilience4j #1432). At most `probes` calls are let through per
//!   episode, never all (SmallRye #319); the rest are refused. `reopen_after` failed probes
//!   re-open it, `probes − reopen_after + 1` successes close it. Probes still out after
//!   `half_open_deadline` count as failed and their permits are reclaimed (resilience4j
//!   #903: a lost probe must not wedge the breaker).
//!
//! A [`BreakerPermit`] is RAII: record its outcome once; dropped unrecorded, it returns its
//! probe slot and counts for nothing. Results that arrive after the state moved on (a call
//! admitted before a trip) are ignored, as in Polly.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::breaker_config::BreakerConfig;
use super::window::{Tally, WindowState};
use crate::algorithm::Outcome;
use crate::algorithm::util::SplitMix64;
use crate::clock::{Clock, MonotonicClock};
use crate::error::ConfigError;

/// The three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are refused at once.
    Open,
    /// A bounded number of probes test the dependency.
    HalfOpen,
}

impl BreakerState {
    /// The snake-case name, for metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// A gauge value: 0 closed, 1 half-open, 2 open.
    pub const fn as_gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused call: the breaker is open, or half-open with every probe out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {state}: retry after {retry_after:?}")]
pub struct BreakerOpen {
    /// The state that refused the call.
    pub state: BreakerState,
    /// When asking again may succeed (the rest of the open interval, or of the half-open
    /// deadline).
    pub retry_after: Duration,
}

/// A state change, as passed to the transition observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// For a move to `Open`: how long it stays open (jitter included).
    pub open_for: Option<Duration>,
}

/// A callback told of every transition (after the breaker's lock is released).
pub type TransitionObserver = Arc<dyn Fn(Transition) + Send + Sync>;

/// A snapshot for dashboards and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerStats {
    /// The current state (a lapsed open interval still reads `Open` until the next call).
    pub state: BreakerState,
    /// Consecutive trips (0 once closed again).
    pub trips: u32,
    /// The window's counts (closed state).
    pub window: Tally,
    /// Probes out now (half-open).
    pub probes_in_flight: u32,
    /// Calls refused since the breaker was built.
    pub rejected: u64,
}

#[derive(Debug)]
struct State {
    state: BreakerState,
    generation: u64,
    window: WindowState,
    trips: u32,
    open_until: Duration,
    hint: Duration,
    issued: u32,
    in_flight: u32,
    successes: u32,
    failures: u32,
    deadline: Duration,
    rejected: u64,
    rng: SplitMix64,
}

struct Shared<C> {
    config: BreakerConfig,
    clock: C,
    state: Mutex<State>,
    observer: Option<TransitionObserver>,
}

/// A circuit breaker (see the [module docs](self)). Cheap to clone: clones share one state.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::algorithm::Outcome;
/// use tailwater_core::clock::ManualClock;
/// use tailwater_core::outbound::{BreakerConfig, BreakerState, CircuitBreaker, Window};
/// let clock = ManualClock::new();
/// let cfg = BreakerConfig { window: Window::Count(4), min_calls: 4, jitter: 0.0, ..Default::default() };
/// let breaker = CircuitBreaker::with_clock(cfg, clock.clone())?;
/// for _ in 0..4 {
///     breaker.try_acquire().unwrap().record(Outcome::Dropped);
/// }
/// assert_eq!(breaker.state(), BreakerState::Open);
/// assert_eq!(breaker.try_acquire().unwrap_err().retry_after, Duration::from_secs(5));
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct CircuitBreaker<C: Clock = MonotonicClock> {
    shared: Arc<Shared<C>>,
}

impl<C: Clock> Clone for CircuitBreaker<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Clock> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl CircuitBreaker<MonotonicClock> {
    /// A breaker on the default clock.
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, MonotonicClock::new())
    }
}

impl<C: Clock> CircuitBreaker<C> {
    /// A breaker reading `clock` (a `ManualClock` in tests and the simulator).
    pub fn with_clock(config: BreakerConfig, clock: C) -> Result<Self, ConfigError> {
        Self::build(config, clock, None)
    }

    /// As [`with_clock`](Self::with_clock), telling `observer` of every transition (the
    /// tower layer turns them into metrics).
    pub fn with_observer(
        config: BreakerConfig,
        clock: C,
        observer: TransitionObserver,
    ) -> Result<Self, ConfigError> {
        Self::build(config, clock, Some(observer))
    }

    fn build(
        config: BreakerConfig,
        clock: C,
        observer: Option<TransitionObserver>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let state = State {
            state: BreakerState::Closed,
            generation: 0,
            window: WindowState::new(config.window),
            trips: 0,
            open_until: Duration::ZERO,
            hint: Duration::ZERO,
            issued: 0,
            in_flight: 0,
            successes: 0,
            failures: 0,
            deadline: Duration::ZERO,
            rejected: 0,
            rng: SplitMix64::new(config.seed),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                clock,
                state: Mutex::new(state),
                observer,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BreakerStats {
        let now = self.shared.clock.now();
        let s = self.lock();
        BreakerStats {
            state: s.state,
            trips: s.trips,
            window: s.window.tally(now),
            probes_in_flight: s.in_flight,
            rejected: s.rejected,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks to make one call. `Err` means: do not call, answer 503 / `UNAVAILABLE` now.
    pub fn try_acquire(&self) -> Result<BreakerPermit<C>, BreakerOpen> {
        let now = self.shared.clock.now();
        let cfg = &self.shared.config;
        let mut moved = [None, None];
        let result = {
            let mut s = self.lock();
            if s.state == BreakerState::Open && now >= s.open_until {
                moved[0] = Some(s.half_open(now, cfg));
            }
            if s.state == BreakerState::HalfOpen && now >= s.deadline && s.in_flight > 0 {
                moved[1] = s.reclaim(now, cfg);
            }
            match s.state {
                BreakerState::Closed => Ok((s.generation, false)),
                BreakerState::HalfOpen if s.issued < cfg.probes => {
                    s.issued += 1;
                    s.in_flight += 1;
                    Ok((s.generation, true))
                }
                state => {
                    s.rejected += 1;
                    let until = if state == BreakerState::Open {
                        s.open_until
                    } else {
                        s.deadline
                    };
                    Err(BreakerOpen {
                        state,
                        retry_after: until.saturating_sub(now),
                    })
                }
            }
        };
        self.notify(moved.into_iter().flatten());
        result.map(|(generation, probe)| BreakerPermit {
            breaker: self.clone(),
            generation,
            probe,
            start: now,
            done: false,
        })
    }

    fn notify(&self, moved: impl Iterator<Item = Transition>) {
        if let Some(observer) = &self.shared.observer {
            moved.for_each(|t| observer(t));
        }
    }

    fn finish(
        &self,
        generation: u64,
        probe: bool,
        start: Duration,
        outcome: Outcome,
        hint: Option<Duration>,
    ) {
        let now = self.shared.clock.now();
        let cfg = &self.shared.config;
        let moved = {
            let mut s = self.lock();
            if s.generation != generation {
                return; // the state moved on since this call was admitted
            }
            let slow = now.saturating_sub(start) >= cfg.slow_call;
            let failed = outcome == Outcome::Dropped;
            if failed && let Some(h) = hint {
                s.hint = s.hint.max(h);
            }
            if !probe {
                if outcome == Outcome::Ignored {
                    return;
                }
                s.window.record(now, failed, slow);
                let t = s.window.tally(now);
                let trips = t.calls >= cfg.min_calls
                    && (f64::from(t.failures) >= cfg.failure_rate * f64::from(t.calls)
                        || f64::from(t.slow) >= cfg.slow_call_rate * f64::from(t.calls));
                trips.then(|| s.trip(now, cfg))
            } else {
                s.in_flight -= 1;
                match outcome {
                    Outcome::Ignored => {
                        s.issued -= 1; // the slot goes back: this call said nothing
                        None
                    }
                    _ if failed || slow => {
                        s.failures += 1;
                        s.decide(now, cfg)
                    }
                    _ => {
                        s.successes += 1;
                        s.decide(now, cfg)
                    }
                }
            }
        };
        self.notify(moved.into_iter());
    }
}

impl State {
    fn half_open(&mut self, now: Duration, cfg: &BreakerConfig) -> Transition {
        self.state = BreakerState::HalfOpen;
        self.generation += 1;
        self.issued = 0;
        self.in_flight = 0;
        self.successes = 0;
        self.failures = 0;
        self.deadline = now + cfg.half_open_deadline;
        Transition {
            from: BreakerState::Open,
            to: BreakerState::HalfOpen,
            open_for: None,
        }
    }

    /// The half-open deadline passed with probes out: they count as failed, their late
    /// results will be ignored, and the episode goes on (or ends) from there.
    fn reclaim(&mut self, now: Duration, cfg: &BreakerConfig) -> Option<Transition> {
        self.failures += self.in_flight;
        self.in_flight = 0;
        self.generation += 1;
        self.deadline = now + cfg.half_open_deadline;
        self.decide(now, cfg)
    }

    fn decide(&mut self, now: Duration, cfg: &BreakerConfig) -> Option<Transition> {
        if self.failures >= cfg.reopen_after {
            Some(self.trip(now, cfg))
        } else if self.successes > cfg.probes - cfg.reopen_after {
            self.state = BreakerState::Closed;
            self.generation += 1;
            self.trips = 0;
            self.hint = Duration::ZERO;
            self.window.clear();
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed,
                open_for: None,
            })
        } else {
            None
        }
    }

    fn trip(&mut self, now: Duration, cfg: &BreakerConfig) -> Transition {
        let from = self.state;
        self.trips = self.trips.saturating_add(1);
        let base = cfg.open_interval(self.trips).as_secs_f64();
        let factor = if cfg.jitter > 0.0 {
            self.rng.range_f64(1.0 - cfg.jitter, 1.0 + cfg.jitter)
        } else {
            1.0
        };
        let open_for = Duration::from_secs_f64(base * factor).max(self.hint);
        self.hint = Duration::ZERO;
        self.state = BreakerState::Open;
        self.generation += 1;
        self.open_until = now + open_for;
        self.issued = 0;
        self.in_flight = 0;
        self.window.clear();
        Transition {
            from,
            to: BreakerState::Open,
            open_for: Some(open_for),
        }
    }
}

/// Leave to make one call through a [`CircuitBreaker`]. Record the outcome once with
/// [`record`](Self::record); dropped unrecorded it counts as [`Outcome::Ignored`].
#[must_use = "record the call's outcome, or the breaker learns nothing from it"]
pub struct BreakerPermit<C: Clock = MonotonicClock> {
    breaker: CircuitBreaker<C>,
    generation: u64,
    probe: bool,
    start: Duration,
    done: bool,
}

impl<C: Clock> fmt::Debug for BreakerPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("probe", &self.probe)
            .field("start", &self.start)
            .finish()
    }
}

impl<C: Clock> BreakerPermit<C> {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records the call's outcome (`Dropped` = failure) and its latency (from the acquire to
    /// now).
    pub fn record(self, outcome: Outcome) {
        self.record_with_hint(outcome, None);
    }

    /// As [`record`](Self::record), with the server's pushback (`Retry-After`,
    /// `grpc-retry-pushback-ms`): if this failure trips the breaker, it stays open at least
    /// that long.
    pub fn record_with_hint(mut self, outcome: Outcome, hint: Option<Duration>) {
        self.done = true;
        self.breaker
            .finish(self.generation, self.probe, self.start, outcome, hint);
    }
}

impl<C: Clock> Drop for BreakerPermit<C> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.finish(
                self.generation,
                self.probe,
                self.start,
                Outcome::Ignored,
                None,
            );
        }
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
