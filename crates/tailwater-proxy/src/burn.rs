//! In-process SLO burn rates per route: tailwater-tower's [`BurnRates`] (the windows of
//! `tailwater slo`'s rules, 5 m to 30 d), fed from the route's request counters, exported as
//! `tailwater_slo_burn_rate{route,window}` and `tailwater_slo_error_budget_remaining{route}`
//! and shown in `/status` as "budget left", so an operator without a Prometheus still sees
//! how fast a route spends its error budget.
//!
//! Events are what the native SLO spec's availability SLI counts by default: requests that
//! ended `success`, `upstream_error`, `timeout` or `shed`; the last three are bad (a shed
//! request is a 503 the user saw). Rate-limited requests and client faults are not counted.
//! The request path does no extra work: the counters it already keeps are read, and their
//! growth since the last read is recorded, when `/metrics` or `/status` is served (a
//! Prometheus scraping every 15 s gives the short windows their resolution) and by the
//! proxy's once-a-second tick while it serves.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tailwater_core::vocabulary::{self, outcome};
use tailwater_tower::burn::{BurnRates, BurnSnapshot};

use crate::config::{Config, ConfigError};
use crate::conn::Shared;
use crate::metrics::{RouteMetrics, esc};
use crate::route::RouteTable;

/// The objective used when a route sets none, percent.
pub(crate) const DEFAULT_OBJECTIVE: f64 = 99.9;

struct Feed {
    rates: BurnRates,
    /// Counter values already recorded: (events, bad events).
    seen: (u64, u64),
}

/// A route's burn rates and what of its counters they have seen. Lives with the route's
/// counters, so it survives reloads; a new objective starts a new history.
pub(crate) struct RouteBurn {
    feed: Mutex<Feed>,
}

impl Default for RouteBurn {
    fn default() -> Self {
        Self {
            feed: Mutex::new(Feed {
                rates: new_rates(DEFAULT_OBJECTIVE),
                seen: (0, 0),
            }),
        }
    }
}

impl std::fmt::Debug for RouteBurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteBurn").finish_non_exhaustive()
    }
}

fn new_rates(objective: f64) -> BurnRates {
    BurnRates::new(objective)
        .or_else(|_| BurnRates::new(DEFAULT_OBJECTIVE))
        .unwrap_or_else(|_| unreachable!("99.9 is a valid objective"))
}

/// (events, bad events) of a route so far, from its counters by outcome.
fn events(m: &RouteMetrics) -> (u64, u64) {
    let by = m.by_outcome();
    let count = |name: &str| {
        outcome::ALL
            .iter()
            .position(|o| *o == name)
            .map_or(0, |i| by[i])
    };
    let bad = count(outcome::UPSTREAM_ERROR) + count(outcome::TIMEOUT) + count(outcome::SHED);
    (count(outcome::SUCCESS) + bad, bad)
}

impl RouteBurn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Feed> {
        // Plain counters: consistent even if a holder panicked.
        self.feed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Uses `objective` from now on; a changed objective starts from an empty history
    /// (counting from the counters' current values).
    pub(crate) fn set_objective(&self, objective: f64, m: &RouteMetrics) {
        let mut g = self.lock();
        if g.rates.objective() != objective {
            g.rates = new_rates(objective);
            g.seen = events(m);
        }
    }

    /// Records what the counters gained since the last call at `now` (seconds since the
    /// Unix epoch), then returns the burn rates.
    pub(crate) fn update(&self, m: &RouteMetrics, now: u64) -> (f64, BurnSnapshot) {
        let (total, bad) = events(m);
        let now = Duration::from_secs(now);
        let mut g = self.lock();
        let (seen_total, seen_bad) = g.seen;
        g.rates.record_many(
            now,
            total.saturating_sub(seen_total),
            bad.saturating_sub(seen_bad),
        );
        g.seen = (total, bad);
        (g.rates.objective(), g.rates.snapshot(now))
    }
}

/// Refuses an objective outside (0, 100) with the route's field name.
pub(crate) fn check(config: &Config) -> Result<(), ConfigError> {
    for (i, rc) in config.routes.iter().enumerate() {
        if let Err(e) = BurnRates::new(rc.slo_objective) {
            return Err(ConfigError::new(format!("route[{i}].slo_objective"), e));
        }
    }
    Ok(())
}

/// Applies each route's objective to its counters' burn rates (after a table was built).
pub(crate) fn apply(config: &Config, table: &RouteTable) {
    for r in table.routes() {
        if let Some(rc) = config.routes.iter().find(|c| c.name == r.name) {
            r.metrics.burn.set_objective(rc.slo_objective, &r.metrics);
        }
    }
}

/// Feeds every route's burn rates once a second until dropped.
pub(crate) fn spawn_tick(shared: Arc<Shared>) -> Tick {
    Tick(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let now = crate::metrics::unix_secs();
            for r in shared.state.load().table.routes() {
                r.metrics.burn.update(&r.metrics, now);
            }
        }
    }))
}

/// The tick task; aborted when dropped (the worker stopped serving).
pub(crate) struct Tick(tokio::task::JoinHandle<()>);

impl Drop for Tick {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The `/status` view of one route's burn rates.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetStatus {
    /// The availability objective, percent.
    pub objective: f64,
    /// The share of the 30-day error budget left: 1 untouched, 0 spent, negative overspent.
    pub budget_left: f64,
    /// Burn rate per window (`5m` ... `30d`): error ratio / (1 − objective).
    pub burn_rates: std::collections::BTreeMap<&'static str, f64>,
}

/// Updates and returns `m`'s budget status at `now` (Unix seconds).
pub(crate) fn status(m: &RouteMetrics, now: u64) -> BudgetStatus {
    let (objective, snap) = m.burn.update(m, now);
    BudgetStatus {
        objective,
        budget_left: snap.budget_remaining,
        burn_rates: snap
            .windows
            .iter()
            .map(|w| (w.label, w.burn_rate))
            .collect(),
    }
}

/// Renders the burn-rate gauges of the routes in `table` (their counters are in `routes`).
pub(crate) fn render(
    out: &mut String,
    routes: &[(String, Arc<RouteMetrics>)],
    table: &RouteTable,
    now: u64,
) {
    let live: Vec<_> = routes
        .iter()
        .filter(|(name, _)| table.routes().iter().any(|r| &r.name == name))
        .map(|(name, m)| (name, m.burn.update(m, now)))
        .collect();
    if live.is_empty() {
        return;
    }
    let objective = vocabulary::SLO_OBJECTIVE;
    objective.write_header(out);
    for (name, (o, _)) in &live {
        let _ = writeln!(
            out,
            "{}{{route=\"{}\"}} {}",
            objective.name,
            esc(name),
            o / 100.0
        );
    }
    let rate = vocabulary::SLO_BURN_RATE;
    rate.write_header(out);
    for (name, (_, snap)) in &live {
        for w in &snap.windows {
            let _ = writeln!(
                out,
                "{}{{route=\"{}\",window=\"{}\"}} {}",
                rate.name,
                esc(name),
                w.label,
                w.burn_rate
            );
        }
    }
    let left = vocabulary::SLO_ERROR_BUDGET_REMAINING;
    left.write_header(out);
    for (name, (_, snap)) in &live {
        let _ = writeln!(
            out,
            "{}{{route=\"{}\"}} {}",
            left.name,
            esc(name),
            snap.budget_remaining
        );
    }
}
