//! The routes' SLO objectives (`slo_objective`): checked when the table is built, then set
//! on each route's burn rates, which live with its counters (`crate::metrics`).

use tailwater_tower::burn::BurnRates;

use super::RouteTable;
use crate::config::{Config, ConfigError};

/// Refuses an objective outside (0, 100) with the route's field name.
pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    for (i, rc) in config.routes.iter().enumerate() {
        if let Err(e) = BurnRates::new(rc.slo_objective) {
            return Err(ConfigError::new(format!("route[{i}].slo_objective"), e));
        }
    }
    Ok(())
}

/// Applies each route's objective to its counters' burn rates (after a table was built).
pub(super) fn apply(config: &Config, table: &RouteTable) {
    for r in table.routes() {
        if let Some(rc) = config.routes.iter().find(|c| c.name == r.name) {
            r.metrics.burn.set_objective(rc.slo_objective, &r.metrics);
        }
    }
}
