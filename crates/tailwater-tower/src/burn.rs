//! In-process SLO burn rates: the same windows as the Prometheus rules of `tailwater slo`
//! (5m, 30m, 1h, 2h, 6h, 1d, 3d and the 30-day period), kept in the process, so a service
//! without a Prometheus still knows how fast it spends its error budget and how much is left.
//!
//! Events land in per-minute buckets (windows up to 3 days) and per-hour buckets (the
//! period), so the windows have a resolution of one bucket, like a Prometheus range over a
//! 1-minute scrape. Burn rate over a window = error ratio / (1 − objective) (the SRE
//! Workbook's definition); budget remaining = 1 − the period's burn rate (Sloth's
//! `slo:period_error_budget_remaining:ratio`), negative once the budget is overspent.
//!
//! With [`ConcurrencyLayer::burn_rates`](crate::ConcurrencyLayer::burn_rates), a layer
//! records every finished request (`dropped` is bad, `success` good, `ignored` not counted)
//! and every rejection (shed: bad, as a user saw a 503), and exports, at most once a second,
//! the gauges [`SLO_BURN_RATE`] `{route, window}` and [`SLO_ERROR_BUDGET_REMAINING`]
//! `{route}`.
//!
//! ```
//! use std::time::Duration;
//! use tailwater_tower::burn::BurnRates;
//!
//! let burn = BurnRates::new(99.9)?;
//! let t = Duration::from_secs(3600);
//! for i in 0..1000 {
//!     burn.record(t, i < 10); // 1 % errors
//! }
//! let snap = burn.snapshot(t);
//! assert_eq!(snap.windows[0].window, Duration::from_secs(300));
//! assert!((snap.windows[0].burn_rate - 10.0).abs() < 1e-9); // 1 % / 0.1 %
//! assert!((snap.budget_remaining - (-9.0)).abs() < 1e-9);
//! # Ok::<(), tailwater_tower::burn::BurnRateError>(())
//! ```

use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::Gauge;
use tailwater_core::vocabulary;

use crate::observe::Route;

/// `tailwater_slo_burn_rate{route, window}`: error ratio over the window / error budget.
pub const SLO_BURN_RATE: &str = vocabulary::SLO_BURN_RATE.name;
/// `tailwater_slo_error_budget_remaining{route}`: 1 − the period's burn rate.
pub const SLO_ERROR_BUDGET_REMAINING: &str = vocabulary::SLO_ERROR_BUDGET_REMAINING.name;

const MINUTE: u64 = 60;
const HOUR: u64 = 3_600;
const PERIOD: u64 = 30 * 86_400;
/// The windows, with their label values: the workbook tiers' windows, then the period.
pub const WINDOWS: [(u64, &str); 8] = [
    (300, "5m"),
    (1_800, "30m"),
    (3_600, "1h"),
    (7_200, "2h"),
    (21_600, "6h"),
    (86_400, "1d"),
    (259_200, "3d"),
    (PERIOD, "30d"),
];

/// Why an objective was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnRateError(pub f64);

impl fmt::Display for BurnRateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "objective {} is not a percentage in (0, 100), e.g. 99.9",
            self.0
        )
    }
}

impl std::error::Error for BurnRateError {}

/// A ring of fixed-width buckets, each stamped with the bucket number it holds.
#[derive(Debug)]
struct Ring {
    width: u64,
    slots: Vec<(u64, u64, u64)>,
}

impl Ring {
    fn new(width: u64, span: u64) -> Self {
        Ring {
            width,
            slots: vec![(u64::MAX, 0, 0); (span / width) as usize + 1],
        }
    }

    fn add(&mut self, now: u64, total: u64, bad: u64) {
        let n = now / self.width;
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(n % len) as usize];
        if slot.0 != n {
            *slot = (n, 0, 0);
        }
        slot.1 += total;
        slot.2 += bad;
    }

    /// (total, bad) in the buckets covering the last `window` seconds, the current one included.
    fn sum(&self, now: u64, window: u64) -> (u64, u64) {
        let n = now / self.width;
        let k = (window / self.width).max(1);
        let len = self.slots.len() as u64;
        let (mut total, mut bad) = (0, 0);
        for b in n.saturating_sub(k - 1)..=n {
            let s = self.slots[(b % len) as usize];
            if s.0 == b {
                total += s.1;
                bad += s.2;
            }
        }
        (total, bad)
    }
}

#[derive(Debug)]
struct Inner {
    minutes: Ring,
    hours: Ring,
    last_export: Option<u64>,
}

/// Multi-window error-budget burn rates of one route. Thread-safe: one short lock per event.
pub struct BurnRates {
    objective: f64,
    budget: f64,
    inner: Mutex<Inner>,
    gauges: [OnceLock<Gauge>; WINDOWS.len()],
    remaining: OnceLock<Gauge>,
}

/// One window's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowBurn {
    /// The window.
    pub window: Duration,
    /// Its label value (`5m`, ..., `30d`).
    pub label: &'static str,
    /// Events in it.
    pub total: u64,
    /// Bad events in it.
    pub bad: u64,
    /// Error ratio / error budget; 0 without events.
    pub burn_rate: f64,
}

/// All windows at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnSnapshot {
    /// Shortest window first; the last is the 30-day period.
    pub windows: Vec<WindowBurn>,
    /// 1 − the period's burn rate: 1 untouched, 0 spent, negative overspent.
    pub budget_remaining: f64,
}

impl BurnRates {
    /// Tracks burn rates against `objective` percent (e.g. 99.9).
    pub fn new(objective: f64) -> Result<Self, BurnRateError> {
        if !(objective.is_finite() && objective > 0.0 && objective < 100.0) {
            return Err(BurnRateError(objective));
        }
        Ok(BurnRates {
            objective,
            budget: (100.0 - objective) / 100.0,
            inner: Mutex::new(Inner {
                minutes: Ring::new(MINUTE, 259_200),
                hours: Ring::new(HOUR, PERIOD),
                last_export: None,
            }),
            gauges: [const { OnceLock::new() }; WINDOWS.len()],
            remaining: OnceLock::new(),
        })
    }

    /// The objective in percent.
    pub fn objective(&self) -> f64 {
        self.objective
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The counters stay consistent even if a holder panicked (no invariant spans calls).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one event at `now` (time since any fixed origin, e.g. the limiter's clock).
    pub fn record(&self, now: Duration, bad: bool) {
        self.record_many(now, 1, u64::from(bad));
    }

    /// Records `total` events at `now`, `bad` of them bad (`bad` is capped at `total`). For
    /// callers that count events themselves and feed the differences now and then, as the
    /// proxy does from its request counters: events land in the bucket of `now`, so feed
    /// at least once a minute to keep the short windows' resolution.
    pub fn record_many(&self, now: Duration, total: u64, bad: u64) {
        if total == 0 {
            return;
        }
        let s = now.as_secs();
        let bad = bad.min(total);
        let mut g = self.lock();
        g.minutes.add(s, total, bad);
        g.hours.add(s, total, bad);
    }

    fn snapshot_locked(&self, g: &Inner, now: u64) -> BurnSnapshot {
        let windows: Vec<WindowBurn> = WINDOWS
            .iter()
            .map(|&(w, label)| {
                let (total, bad) = if w == PERIOD {
                    g.hours.sum(now, w)
                } else {
                    g.minutes.sum(now, w)
                };
                WindowBurn {
                    window: Duration::from_secs(w),
                    label,
                    total,
                    bad,
                    burn_rate: if total == 0 {
                        0.0
                    } else {
                        bad as f64 / total as f64 / self.budget
                    },
                }
            })
            .collect();
        let budget_remaining = 1.0 - windows.last().map_or(0.0, |w| w.burn_rate);
        BurnSnapshot {
            windows,
            budget_remaining,
        }
    }

    /// The burn rates at `now`.
    pub fn snapshot(&self, now: Duration) -> BurnSnapshot {
        let g = self.lock();
        self.snapshot_locked(&g, now.as_secs())
    }

    /// Records an event and, at most once per second, sets the gauges for `route`.
    pub(crate) fn record_and_export(&self, now: Duration, bad: bool, route: &Route) {
        let s = now.as_secs();
        let snap = {
            let mut g = self.lock();
            g.minutes.add(s, 1, u64::from(bad));
            g.hours.add(s, 1, u64::from(bad));
            if g.last_export.is_some_and(|t| t >= s) {
                return;
            }
            g.last_export = Some(s);
            self.snapshot_locked(&g, s)
        };
        for (slot, w) in self.gauges.iter().zip(&snap.windows) {
            slot.get_or_init(
                || metrics::gauge!(SLO_BURN_RATE, "route" => route.label(), "window" => w.label),
            )
            .set(w.burn_rate);
        }
        self.remaining
            .get_or_init(|| metrics::gauge!(SLO_ERROR_BUDGET_REMAINING, "route" => route.label()))
            .set(snap.budget_remaining);
    }
}

impl fmt::Debug for BurnRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BurnRates")
            .field("objective", &self.objective)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn refuses_bad_objectives() {
        for bad in [0.0, 100.0, -1.0, f64::NAN, 150.0] {
            assert!(BurnRates::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_total_outage_is_a_1000x_burn_that_ages_out_of_short_windows() {
        let b = BurnRates::new(99.9).unwrap();
        // A day of healthy traffic, 10 events a minute.
        for m in 0..1440 {
            for _ in 0..10 {
                b.record(at(m * 60), false);
            }
        }
        // Ten minutes of total outage.
        for m in 1440..1450 {
            for _ in 0..10 {
                b.record(at(m * 60), true);
            }
        }
        let s = b.snapshot(at(1449 * 60));
        let by = |label: &str| {
            s.windows
                .iter()
                .find(|w| w.label == label)
                .copied()
                .unwrap()
        };
        assert_eq!((by("5m").total, by("5m").bad), (50, 50));
        assert!((by("5m").burn_rate - 1000.0).abs() < 1e-6);
        assert_eq!((by("1h").total, by("1h").bad), (600, 100));
        assert!((by("1h").burn_rate - 1000.0 / 6.0).abs() < 1e-6);
        // 100 bad of 14,500 events over the period: 6.9 % of... a 0.69 % error ratio, 6.9× burn.
        let period = by("30d");
        assert_eq!((period.total, period.bad), (14_500, 100));
        assert!((s.budget_remaining - (1.0 - 100.0 / 14_500.0 / 0.001)).abs() < 1e-9);
        // Ten minutes after the outage the 5m window is clean again; the 1h one is not.
        let later = b.snapshot(at(1460 * 60));
        assert_eq!(later.windows[0].bad, 0);
        assert_eq!(later.windows[2].bad, 100);
        // Four days later only the period remembers it.
        let much_later = b.snapshot(at(1450 * 60 + 4 * 86_400));
        assert!(much_later.windows[..7].iter().all(|w| w.total == 0));
        assert_eq!(much_later.windows[7].bad, 100);
    }

    #[test]
    fn counts_fed_in_batches_equal_counts_fed_one_by_one() {
        let one = BurnRates::new(99.0).unwrap();
        let many = BurnRates::new(99.0).unwrap();
        for i in 0..30 {
            one.record(at(120), i < 3);
        }
        many.record_many(at(120), 30, 3);
        many.record_many(at(120), 0, 5); // nothing, not 5 bad of 0
        assert_eq!(one.snapshot(at(130)), many.snapshot(at(130)));
        assert!((many.snapshot(at(130)).windows[0].burn_rate - 10.0).abs() < 1e-9);
    }

    #[test]
    fn buckets_are_reused_after_wrapping() {
        let b = BurnRates::new(99.0).unwrap();
        b.record(at(0), true);
        // The same minute slot, 3 days and a minute later: the old count must not leak in.
        let wrap = 259_200 + 60;
        b.record(at(wrap), false);
        let s = b.snapshot(at(wrap));
        assert_eq!((s.windows[0].total, s.windows[0].bad), (1, 0));
    }
}
