//! Cells in the proxy (`[[cell]]`): a route's requests spread over cells by a stable key,
//! each cell a route of its own (upstreams, limiter, queue, rate limits, metrics), so one
//! cell's dead backend or noisy tenant is confined to that cell's keys — the blast radius.
//!
//! Keys go to cells by tailwater-core's weighted rendezvous hashing
//! ([`CellMap`](tailwater_core::cell::CellMap)): stable across processes and reloads, and a
//! change of weights or a drain moves only the keys it has to. A cell is built as the
//! route's configuration with the cell's upstream and admission settings in place of the
//! route's, under the name `ROUTE:CELL` (the `route` label of its metrics). Lookup adds
//! nothing to routes without cells.

use std::net::SocketAddr;
use std::sync::Arc;

use tailwater_core::cell::{CellMap, Cells};

use super::Route;
use crate::config::{CellKey, Config, ConfigError, RouteConfig};
use tailwater_tower::admission::RequestView;

/// The cells of every route that has some.
#[derive(Debug, Default)]
pub(crate) struct CellTable {
    groups: Vec<CellGroup>,
}

#[derive(Debug)]
struct CellGroup {
    /// The parent route's name.
    route: String,
    key: CellKey,
    cells: Cells<Arc<Route>>,
}

/// One cell as a route configuration: the parent's, with the cell's settings.
pub(crate) struct CellRoute {
    /// Index of the `[[cell]]` entry (for error paths, `cell[i]`).
    pub(crate) index: usize,
    pub(crate) config: RouteConfig,
}

/// The cells of `config` as route configurations, checked: each names an existing route,
/// names are unique within a route, and a route's cells share one key.
pub(crate) fn cell_routes(config: &Config) -> Result<Vec<CellRoute>, ConfigError> {
    let mut out = Vec::with_capacity(config.cells.len());
    for (i, cell) in config.cells.iter().enumerate() {
        let prefix = format!("cell[{i}]");
        let Some(parent) = config.routes.iter().find(|r| r.name == cell.route) else {
            return Err(ConfigError::new(
                format!("{prefix}.route"),
                format!("no [[route]] named `{}`", cell.route),
            ));
        };
        if cell.name.is_empty() {
            return Err(ConfigError::new(
                format!("{prefix}.name"),
                "must not be empty",
            ));
        }
        if let Some(j) = config.cells[..i]
            .iter()
            .position(|c| c.route == cell.route && c.name == cell.name)
        {
            return Err(ConfigError::new(
                format!("{prefix}.name"),
                format!(
                    "cell `{}` of route `{}` is also cell[{j}]",
                    cell.name, cell.route
                ),
            ));
        }
        if let Some(first) = config.cells.iter().find(|c| c.route == cell.route)
            && first.key != cell.key
        {
            return Err(ConfigError::new(
                format!("{prefix}.key"),
                format!("the cells of route `{}` must share one key", cell.route),
            ));
        }
        let mut rc = parent.clone();
        rc.name = format!("{}:{}", cell.route, cell.name);
        rc.upstream = cell.upstream.clone();
        if let Some(limit) = &cell.limit {
            rc.limit = *limit;
        }
        if let Some(queue) = &cell.queue {
            rc.queue = Some(queue.clone());
        }
        if let Some(rates) = &cell.rate_limit {
            rc.rate_limit = rates.clone();
        }
        out.push(CellRoute {
            index: i,
            config: rc,
        });
    }
    Ok(out)
}

/// The cells of `config` grouped by their parent route: the route, the indices of its
/// cells in `config.cells`, and the map that assigns keys to them (weights and drains
/// checked, each error at its own cell).
pub(crate) fn cell_maps(
    config: &Config,
) -> Result<Vec<(String, Vec<usize>, CellMap)>, ConfigError> {
    let mut members: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, cell) in config.cells.iter().enumerate() {
        match members.iter_mut().find(|(r, _)| *r == cell.route) {
            Some((_, m)) => m.push(i),
            None => members.push((cell.route.clone(), vec![i])),
        }
    }
    let mut out = Vec::with_capacity(members.len());
    for (route, idx) in members {
        // Weights are checked per cell so the error points at the right entry.
        for &i in &idx {
            let w = config.cells[i].weight;
            if !(w.is_finite() && w > 0.0) {
                return Err(ConfigError::new(
                    format!("cell[{i}].weight"),
                    format!("must be a positive number, got {w}"),
                ));
            }
        }
        let mut map = CellMap::new(
            idx.iter()
                .map(|&i| (config.cells[i].name.clone(), config.cells[i].weight)),
        )
        .map_err(|e| ConfigError::core(&format!("cell[{}]", idx[0]), &e))?;
        for &i in &idx {
            let cell = &config.cells[i];
            if cell.drain != 0.0 {
                map = map
                    .drain(&cell.name, cell.drain)
                    .map_err(|e| ConfigError::new(format!("cell[{i}].drain"), e.reason()))?;
            }
        }
        out.push((route, idx, map));
    }
    Ok(out)
}

impl CellTable {
    /// Groups the built cell routes (`built[k]` is the route of `config.cells[k]`) by their
    /// parent route, with each group's map.
    pub(crate) fn build(config: &Config, built: Vec<Arc<Route>>) -> Result<Self, ConfigError> {
        let groups = cell_maps(config)?
            .into_iter()
            .map(|(route, idx, map)| {
                let key = config.cells[idx[0]].key.clone();
                let cells = Cells::new(map, |_, c| Arc::clone(&built[idx[c.get()]]));
                CellGroup { route, key, cells }
            })
            .collect();
        Ok(Self { groups })
    }

    /// The route a request goes to: `route` itself when it has no cells (or every cell is
    /// fully drained), else the cell its key belongs to.
    pub(crate) fn pick<'a>(
        &'a self,
        route: &'a Arc<Route>,
        req: &impl RequestView,
        path: &[u8],
        peer: SocketAddr,
    ) -> &'a Arc<Route> {
        if self.groups.is_empty() {
            return route;
        }
        let Some(group) = self.groups.iter().find(|g| g.route == route.name) else {
            return route;
        };
        let routed = match &group.key {
            CellKey::Header(name) => group
                .cells
                .route(req.header(name.as_str()).unwrap_or("").as_bytes()),
            CellKey::PathSegment(n) => {
                let seg = path
                    .split(|&b| b == b'/')
                    .filter(|s| !s.is_empty())
                    .nth(n - 1);
                group.cells.route(seg.unwrap_or(b""))
            }
            CellKey::ClientIp => group.cells.route(peer.ip().to_string().as_bytes()),
        };
        routed.map_or(route, |(_, r)| r)
    }

    /// Every cell's route (for metrics and `/status`).
    pub(crate) fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.groups
            .iter()
            .flat_map(|g| g.cells.iter().map(|(_, r)| r))
    }
}
