//! In-process SLO burn rates per route: tailwater-tower's
//! [`BurnRates`](tailwater_tower::burn::BurnRates) (the windows of `tailwater slo`'s rules,
//! 5 m to 30 d), fed from the route's request counters, exported as
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
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tailwater_core::vocabulary;

use crate::conn::Shared;
use crate::metrics::{RouteMetrics, esc};
use crate::route::RouteTable;

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
