//! One budget for retries *and* hedges.
//!
//! Finagle's `RetryBudget` (and tower's `TpsBudget`, Linkerd's ServiceProfile `retryBudget`):
//! over the last `ttl` (10 s), the extra attempts may be at most `ratio` of the requests plus
//! a floor of `min_per_sec` (10) per second of the ttl, so a quiet client can still retry a
//! little. The ratio is the Google SRE book's **10 %** ("Handling Overload": retry a request
//! only while retries are below 10 % of a client's requests), not Finagle's 20 %: in
//! `tailwater sim --suite outbound`'s `retry-storm` (README, "Calling a dependency in
//! trouble") 20 % lets the load grow 1.19× behind Headroom against the goal of 1.1×, where
//! 10 % holds it to 1.09–1.10× with no less goodput than no retries. Set `ratio: 0.2` for
//! Finagle's and Linkerd's setting.
//! Hedges draw from the same budget (gRPC A6, failsafe-go) and are further capped at
//! `hedge_ratio` (5 %, "The Tail at Scale") of the requests.
//!
//! A retry is charged when it is *decided*, before its backoff, so retries waiting in backoff
//! count against the budget (Envoy #30205: 1000 simultaneous failures all entered backoff
//! "despite a 20 % budget").
//!
//! Counts live in `slots` buckets of `ttl / slots`; the oldest bucket ages out whole. At the
//! moment of every withdrawal, `retries + hedges ≤ ratio × requests + min_per_sec × ttl`
//! over the window (a proptest checks it).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock, duration_to_nanos};
use crate::error::{ConfigError, check_range};

/// The budget's knobs.
///
/// | field | default | anchor |
/// |---|---|---|
/// | `ttl` | 10 s | Finagle `RetryBudget()` ttl, tower `TpsBudget`, Linkerd `retryBudget.ttl` |
/// | `min_per_sec` | 10 | Finagle `minRetriesPerSec`, Linkerd `minRetriesPerSecond` |
/// | `ratio` | 0.1 | Google SRE book (per-client retries < 10 %); Finagle `percentCanRetry`, Linkerd `retryRatio` and Envoy `budget_percent` use 0.2 (see the [module docs](self) for why not) |
/// | `hedge_ratio` | 0.05 | "The Tail at Scale" (≈ 5 % extra load for hedges) |
/// | `slots` | 10 | tower `TpsBudget` (10 generations) |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// The window the ratio is computed over.
    pub ttl: Duration,
    /// Extra attempts allowed per second of `ttl` whatever the traffic.
    pub min_per_sec: u32,
    /// Extra attempts (retries + hedges) as a share of requests, in `[0, 10]`.
    pub ratio: f64,
    /// Hedges as a share of requests (within `ratio`), in `[0, 1]`.
    pub hedge_ratio: f64,
    /// Buckets the window is cut into (1..=100).
    pub slots: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            ratio: 0.1,
            hedge_ratio: 0.05,
            slots: 10,
        }
    }
}

impl BudgetConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl < Duration::from_millis(1) || self.ttl > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "ttl",
                format!("must be in [1 ms, 1 h], got {:?}", self.ttl),
            ));
        }
        check_range("ratio", self.ratio, 0.0, 10.0)?;
        check_range("hedge_ratio", self.hedge_ratio, 0.0, 1.0)?;
        if self.slots == 0 || self.slots > 100 {
            return Err(ConfigError::new(
                "slots",
                format!("must be in 1..=100, got {}", self.slots),
            ));
        }
        Ok(())
    }
}

/// Why an extra attempt is being asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extra {
    /// A retry after a failure.
    Retry,
    /// A hedge racing a slow attempt.
    Hedge,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    epoch: u64,
    retries: u64,
    hedges: u64,
}

/// A slot's deposits, outside the lock: every request deposits, so the common case is one
/// atomic add on a slot whose epoch is current. Rotating a slot (resetting it for a new
/// epoch) happens under the lock.
#[derive(Debug, Default)]
struct Deposits {
    epoch: AtomicU64,
    requests: AtomicU64,
}

/// The window's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Requests deposited in the window.
    pub requests: u64,
    /// Retries withdrawn in the window.
    pub retries: u64,
    /// Hedges withdrawn in the window.
    pub hedges: u64,
    /// Extra attempts refused since the budget was built.
    pub refused: u64,
}

/// A retry-and-hedge budget (see the [module docs](self)). Share one per downstream
/// service, in an `Arc`.
///
/// ```
/// use std::time::Duration;
/// use tailwater_core::clock::ManualClock;
/// use tailwater_core::outbound::{BudgetConfig, Extra, RetryBudget};
/// let cfg = BudgetConfig { min_per_sec: 0, ..Default::default() };
/// let budget = RetryBudget::with_clock(cfg, ManualClock::new())?;
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw(Extra::Retry)); // 1 ≤ 10 % of 10
/// assert!(!budget.try_withdraw(Extra::Retry));
/// # Ok::<(), tailwater_core::ConfigError>(())
/// ```
pub struct RetryBudget<C: Clock = MonotonicClock> {
    config: BudgetConfig,
    slot_nanos: u64,
    /// `min_per_sec × ttl`, in withdrawals.
    floor: f64,
    clock: C,
    state: Mutex<(Vec<Slot>, u64)>,
    deposits: Box<[Deposits]>,
}

impl<C: Clock> fmt::Debug for RetryBudget<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RetryBudget<MonotonicClock> {
    /// A budget on the default clock.
    pub fn new(config: BudgetConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, MonotonicClock::new())
    }
}

impl<C: Clock> RetryBudget<C> {
    /// A budget reading `clock`.
    pub fn with_clock(config: BudgetConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            slot_nanos: (duration_to_nanos(config.ttl) / u64::from(config.slots)).max(1),
            floor: f64::from(config.min_per_sec) * config.ttl.as_secs_f64(),
            config,
            clock,
            state: Mutex::new((vec![Slot::default(); config.slots as usize], 0)),
            deposits: (0..config.slots).map(|_| Deposits::default()).collect(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Runs `f` on the current slot, the window's totals (only when `totals`: a deposit
    /// needs none) and the refusal counter.
    fn with<R>(&self, totals: bool, f: impl FnOnce(&mut Slot, BudgetStats, &mut u64) -> R) -> R {
        let epoch = self.clock.now_nanos() / self.slot_nanos + 1;
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (slots, refused) = &mut *guard;
        let len = slots.len() as u64;
        let mut total = BudgetStats {
            refused: *refused,
            ..Default::default()
        };
        if totals {
            let oldest = epoch.saturating_sub(len - 1);
            for s in slots
                .iter()
                .filter(|s| s.epoch >= oldest && s.epoch <= epoch)
            {
                total.retries += s.retries;
                total.hedges += s.hedges;
            }
            for d in self.deposits.iter() {
                let e = d.epoch.load(Ordering::Acquire);
                if e >= oldest && e <= epoch {
                    total.requests += d.requests.load(Ordering::Relaxed);
                }
            }
        }
        let slot = &mut slots[(epoch % len) as usize];
        if slot.epoch != epoch {
            *slot = Slot {
                epoch,
                ..Default::default()
            };
        }
        f(slot, total, refused)
    }

    /// Records one request (call it once per logical request, not per attempt). Lock-free
    /// unless its slot must be rotated to a new epoch (once per slot per `ttl / slots`).
    pub fn deposit(&self) {
        let epoch = self.clock.now_nanos() / self.slot_nanos + 1;
        let d = &self.deposits[(epoch % self.deposits.len() as u64) as usize];
        if d.epoch.load(Ordering::Acquire) != epoch {
            // Rotate under the lock, so that two depositors do not both reset it. (A deposit
            // that read the old epoch just before a rotation lands in the new epoch: it is
            // counted `ttl` late, never lost.)
            let _guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if d.epoch.load(Ordering::Acquire) != epoch {
                d.requests.store(0, Ordering::Relaxed);
                d.epoch.store(epoch, Ordering::Release);
            }
        }
        d.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks for one extra attempt; `true` charges it to the budget.
    pub fn try_withdraw(&self, kind: Extra) -> bool {
        self.with(true, |slot, t, refused| {
            let allowed = self.config.ratio * t.requests as f64 + self.floor;
            let mut ok = (t.retries + t.hedges + 1) as f64 <= allowed;
            if kind == Extra::Hedge {
                ok &= (t.hedges + 1) as f64 <= self.config.hedge_ratio * t.requests as f64;
            }
            match (ok, kind) {
                (false, _) => *refused += 1,
                (true, Extra::Retry) => slot.retries += 1,
                (true, Extra::Hedge) => slot.hedges += 1,
            }
            ok
        })
    }

    /// The window's totals now.
    pub fn stats(&self) -> BudgetStats {
        self.with(true, |_, t, _| t)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::clock::ManualClock;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ratio_floor_and_hedge_cap_by_hand() {
        let clock = ManualClock::new();
        let b = RetryBudget::with_clock(BudgetConfig::default(), clock.clone()).unwrap();
        // No requests: the floor alone, 10/s × 10 s = 100 retries, but no hedge (5 % of 0).
        assert!(!b.try_withdraw(Extra::Hedge));
        for _ in 0..100 {
            assert!(b.try_withdraw(Extra::Retry));
        }
        assert!(!b.try_withdraw(Extra::Retry));
        // 100 requests: 10 more retries or hedges; hedges at most 5.
        for _ in 0..100 {
            b.deposit();
        }
        for _ in 0..5 {
            assert!(b.try_withdraw(Extra::Hedge));
        }
        assert!(!b.try_withdraw(Extra::Hedge));
        for _ in 0..5 {
            assert!(b.try_withdraw(Extra::Retry));
        }
        assert!(!b.try_withdraw(Extra::Retry));
        let st = b.stats();
        assert_eq!(
            (st.requests, st.retries, st.hedges, st.refused),
            (100, 105, 5, 4)
        );
        // 10 s later everything has aged out: the floor again.
        clock.advance(10 * S);
        assert_eq!(b.stats().retries, 0);
        assert!(b.try_withdraw(Extra::Retry));
    }

    /// Deposits from several threads, through slot rotations, are all counted.
    #[test]
    fn concurrent_deposits_are_all_counted() {
        let clock = ManualClock::new();
        let b = RetryBudget::with_clock(BudgetConfig::default(), clock.clone()).unwrap();
        for round in 0..3u64 {
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..2_000 {
                            b.deposit();
                        }
                    });
                }
            });
            assert_eq!(b.stats().requests, 8_000 * (round + 1), "round {round}");
            clock.advance(S); // the next round deposits into a rotated slot
        }
    }

    #[test]
    fn bad_config_names_the_field() {
        let bad = BudgetConfig {
            ratio: -1.0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "ratio");
        let bad = BudgetConfig {
            slots: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "slots");
    }

    proptest! {
        /// At every granted withdrawal, the window's extra attempts stay within
        /// ratio × requests + floor, and hedges within hedge_ratio × requests.
        #[test]
        fn budget_never_exceeded(
            ops in proptest::collection::vec((0u8..4, 0u16..2000), 1..400),
            floor in 0u32..3,
        ) {
            let clock = ManualClock::new();
            let cfg = BudgetConfig { min_per_sec: floor, ..Default::default() };
            let b = RetryBudget::with_clock(cfg, clock.clone()).unwrap();
            for (op, ms) in ops {
                match op {
                    0 => b.deposit(),
                    1 | 2 => {
                        let kind = if op == 1 { Extra::Retry } else { Extra::Hedge };
                        if b.try_withdraw(kind) {
                            let t = b.stats();
                            let cap = cfg.ratio * t.requests as f64 + f64::from(floor) * 10.0;
                            prop_assert!((t.retries + t.hedges) as f64 <= cap + 1e-9, "{t:?}");
                            // Deposits age out first, so the hedge cap holds when a hedge is granted.
                            if kind == Extra::Hedge {
                                prop_assert!(t.hedges as f64 <= 0.05 * t.requests as f64 + 1e-9);
                            }
                        }
                    }
                    _ => clock.advance(Duration::from_millis(u64::from(ms))),
                }
            }
        }
    }
}
