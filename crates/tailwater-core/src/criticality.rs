//! Criticality tiers: shed the least important work first.
//!
//! The four levels are those of Google's SRE book ("Handling Overload"): `CriticalPlus`,
//! `Critical` (the default for a request that says nothing), `SheddablePlus` and `Sheddable`.
//! Each tier has a utilisation threshold (in-flight / limit); the default thresholds follow
//! the seed's "Tiered shedding" pattern: 100 %, 80 %, 50 % and 20 %.
//!
//! A threshold is a **reservation that holds only under contention**. Below its threshold a
//! tier is always admitted. Above it, up to the full limit, a tier may borrow the capacity
//! that no more important request is waiting for, so with no more important traffic a tier
//! uses the whole limit (untagged `Critical` traffic is not capped at 80 %):
//!
//! - **With a wait queue**, waiting is literal: a tier borrows while no more important
//!   request waits in the queue, and the queue, which orders waiters by tier, hands every
//!   freed slot to the most important waiter. No capacity is held idle.
//! - **Without one**, a refused request stands for a waiting one: the limiter keeps free, for
//!   the more important tiers, a *headroom* that grows by one slot each time a more
//!   important request is refused and shrinks by one slot for every
//!   [`contention_window`](TierThresholds::contention_window) without such a refusal, never
//!   beyond the threshold's reservation. Holding slots free for requests that have not
//!   arrived costs some capacity; the window trades it against how well the more important
//!   tiers are served (see [`DEFAULT_CONTENTION_WINDOW`]).
//!
//! Either way shedding is strictly by tier: once a `Critical` request has been refused (or
//! waits), a freed slot goes to `Critical` work, not to a `Sheddable` request, and under
//! sustained contention each tier is held to its reservation.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{ConfigError, check_range};

/// How important a request is. Ordered from most to least important.
///
/// ```
/// use tailwater_core::Criticality;
/// assert!(Criticality::CriticalPlus > Criticality::Sheddable);
/// assert_eq!("sheddable_plus".parse::<Criticality>().unwrap(), Criticality::SheddablePlus);
/// assert_eq!(Criticality::default(), Criticality::Critical);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Criticality {
    /// Must not fail: shed only at the full limit (payments, auth).
    CriticalPlus,
    /// The default for user-facing work.
    #[default]
    Critical,
    /// Work whose loss is noticed but tolerated (recommendations, search suggestions).
    SheddablePlus,
    /// Work that can be dropped freely (batch, prefetch, analytics).
    Sheddable,
}

impl Criticality {
    /// Every tier, most important first.
    pub const ALL: [Criticality; 4] = [
        Criticality::CriticalPlus,
        Criticality::Critical,
        Criticality::SheddablePlus,
        Criticality::Sheddable,
    ];

    /// Index into per-tier arrays: 0 for `CriticalPlus` up to 3 for `Sheddable`.
    pub const fn index(self) -> usize {
        match self {
            Criticality::CriticalPlus => 0,
            Criticality::Critical => 1,
            Criticality::SheddablePlus => 2,
            Criticality::Sheddable => 3,
        }
    }

    /// The canonical lower-case name, as used in headers, metrics and config files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Criticality::CriticalPlus => "critical_plus",
            Criticality::Critical => "critical",
            Criticality::SheddablePlus => "sheddable_plus",
            Criticality::Sheddable => "sheddable",
        }
    }
}

impl PartialOrd for Criticality {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Criticality {
    /// More important compares greater.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.index().cmp(&self.index())
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for an unknown criticality name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown criticality `{0}` (expected critical_plus, critical, sheddable_plus or sheddable)"
)]
pub struct ParseCriticalityError(String);

impl FromStr for Criticality {
    type Err = ParseCriticalityError;

    /// Accepts the canonical names, their upper-case gRPC spelling (`CRITICAL_PLUS`) and
    /// hyphens or no separator (`critical-plus`, `criticalplus`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match norm.as_str() {
            "criticalplus" => Ok(Criticality::CriticalPlus),
            "critical" => Ok(Criticality::Critical),
            "sheddableplus" => Ok(Criticality::SheddablePlus),
            "sheddable" => Ok(Criticality::Sheddable),
            _ => Err(ParseCriticalityError(s.to_owned())),
        }
    }
}

/// Utilisation thresholds per tier: a request of tier `t` is always admitted while
/// `in_flight < max(1, floor(limit × threshold[t]))` ([`capacity`](Self::capacity)), and
/// above that only into capacity no more important request is contending for (see the
/// [module docs](self)).
///
/// Thresholds must be in `(0, 1]` and must not increase from a more important tier to a less
/// important one, so that shedding always starts with the least important work.
///
/// ```
/// use tailwater_core::{Criticality, TierThresholds};
/// let t = TierThresholds::default();
/// assert_eq!(t.capacity(Criticality::Sheddable, 20), 4);
/// assert_eq!(t.capacity(Criticality::CriticalPlus, 20), 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierThresholds {
    thresholds: [f64; 4],
    contention_window: Duration,
}

/// The default [`TierThresholds::contention_window`]. Chosen in `tailwater sim
/// tiered-overload` (no queue, 48 workers × 30 ms, 3× load): 1 ms keeps 96.3 % of capacity
/// but serves `critical_plus` hardly better than `critical` (63 % vs 60 %); 5 ms keeps
/// 94.4 % with 80 % vs 60 %; 100 ms 89.9 % with 98 % vs 52 %. With a wait queue the window
/// plays no part (see [`TierThresholds`]).
pub const DEFAULT_CONTENTION_WINDOW: Duration = Duration::from_millis(5);

impl TierThresholds {
    /// Thresholds for `[CriticalPlus, Critical, SheddablePlus, Sheddable]`.
    pub fn new(thresholds: [f64; 4]) -> Result<Self, ConfigError> {
        const FIELDS: [&str; 4] = [
            "tiers.critical_plus",
            "tiers.critical",
            "tiers.sheddable_plus",
            "tiers.sheddable",
        ];
        for (i, t) in thresholds.iter().enumerate() {
            check_range(FIELDS[i], *t, f64::MIN_POSITIVE, 1.0)?;
            if i > 0 && *t > thresholds[i - 1] {
                return Err(ConfigError::new(
                    FIELDS[i],
                    format!(
                        "{t} is above the threshold of the more important tier ({})",
                        thresholds[i - 1]
                    ),
                ));
            }
        }
        Ok(Self {
            thresholds,
            contention_window: DEFAULT_CONTENTION_WINDOW,
        })
    }

    /// How long the headroom kept for more important tiers takes to shrink by one slot when
    /// none of their requests is refused (default [`DEFAULT_CONTENTION_WINDOW`]). Longer
    /// windows refuse fewer important requests under contention and leave more capacity
    /// idle; shorter ones the opposite. Must be at least 1 ms.
    pub fn with_contention_window(mut self, window: Duration) -> Result<Self, ConfigError> {
        if window < Duration::from_millis(1) {
            return Err(ConfigError::new(
                "tiers.contention_window",
                format!("must be at least 1ms, got {window:?}"),
            ));
        }
        self.contention_window = window;
        Ok(self)
    }

    /// See [`with_contention_window`](Self::with_contention_window).
    pub fn contention_window(&self) -> Duration {
        self.contention_window
    }

    /// Every tier admitted up to the full limit: tiers only order the wait queue.
    pub const fn flat() -> Self {
        Self {
            thresholds: [1.0; 4],
            contention_window: DEFAULT_CONTENTION_WINDOW,
        }
    }

    /// The threshold of `tier`, in `(0, 1]`.
    pub fn threshold(&self, tier: Criticality) -> f64 {
        self.thresholds[tier.index()]
    }

    /// How many requests may be in flight when one of `tier` is admitted, at `limit`, when
    /// more important tiers are contending for all of their reservation (the reserved
    /// capacity; without contention a tier may use up to `limit`).
    #[inline]
    pub fn capacity(&self, tier: Criticality, limit: usize) -> usize {
        let t = self.thresholds[tier.index()];
        if t >= 1.0 {
            return limit;
        }
        ((limit as f64 * t).floor() as usize).max(1).min(limit)
    }
}

impl Default for TierThresholds {
    /// The seed's "Tiered shedding": 100 %, 80 %, 50 %, 20 %.
    fn default() -> Self {
        Self {
            thresholds: [1.0, 0.8, 0.5, 0.2],
            contention_window: DEFAULT_CONTENTION_WINDOW,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_common_spellings() {
        for (s, c) in [
            ("CRITICAL_PLUS", Criticality::CriticalPlus),
            ("critical-plus", Criticality::CriticalPlus),
            (" Critical ", Criticality::Critical),
            ("SHEDDABLE", Criticality::Sheddable),
        ] {
            assert_eq!(s.parse::<Criticality>().unwrap(), c);
        }
        assert!("urgent".parse::<Criticality>().is_err());
    }

    #[test]
    fn thresholds_reject_bad_values_naming_the_field() {
        let e = TierThresholds::new([1.0, 0.8, f64::NAN, 0.1]).unwrap_err();
        assert_eq!(e.field(), "tiers.sheddable_plus");
        let e = TierThresholds::new([1.0, 0.8, 0.9, 0.1]).unwrap_err();
        assert_eq!(e.field(), "tiers.sheddable_plus");
        let e = TierThresholds::new([1.0, 0.0, 0.0, 0.0]).unwrap_err();
        assert_eq!(e.field(), "tiers.critical");
    }

    #[test]
    fn capacity_is_at_least_one_and_at_most_the_limit() {
        let t = TierThresholds::default();
        assert_eq!(t.capacity(Criticality::Sheddable, 1), 1);
        assert_eq!(t.capacity(Criticality::Critical, 20), 16);
        assert_eq!(t.capacity(Criticality::SheddablePlus, 20), 10);
        assert_eq!(t.capacity(Criticality::Sheddable, 0), 0);
    }
}
