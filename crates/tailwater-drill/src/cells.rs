//! `tailwater drill --cells`: the blast radius of a cell architecture, measured.
//!
//! Four cells, each with its own synthetic backend, behind one tailwater proxy whose route
//! spreads requests over the cells by the `x-tenant` header (`[[cell]]`, weighted rendezvous
//! hashing). One tenant per cell sends steady load at a share of its cell's capacity, each
//! tenant its own client (own connections). Four scenarios, each of open-loop load runs:
//!
//! 1. **baseline**: the four tenants only;
//! 2. **noisy**: a fifth tenant, whose key lands in cell A, sends `noisy`× a tenant's rate;
//! 3. **control**: the four tenants only, again (what the noisy check reads when nothing
//!    changed: the noise floor of the machine);
//! 4. **dead**: cell A's backend is stopped (connections refused: 502s in cell A).
//!
//! Baseline, noisy and control run in each of [`rounds`](CellsConfig::rounds) rounds, noisy
//! in the middle and baseline and control swapping ends from round to round (each follows
//! the noisy scenario in half the rounds); then dead runs once. The noisy check takes per cell the median over the rounds of
//! the ratio within a round (see [`CellsReport`]); the table also gives each scenario's
//! figures pooled over the rounds.
//!
//! The seed's goal for cells is that a failure or a noisy customer stays in its cell: the
//! report gives each cell's goodput (2xx within the client timeout / requests scheduled)
//! and its 2xx p99 per scenario, and the two checks of issue 14: the other cells keep
//! ≥ 99 % goodput while A is dead, and cells B–D's p99 under the noisy tenant stays within
//! 1.1× of their baseline.
//!
//! Everything (load generator, proxy, four backends) shares one machine, so the noisy
//! tenant's extra requests cost CPU that the other cells' requests also need: what the
//! p99 check measures on a small machine includes that contention, not only admission.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use tailwater_core::cell::CellMap;
use tailwater_load::backend::{Backend, BackendConfig};
use tailwater_load::{Config as LoadConfig, HeaderMix, Schedule, Segment, Spacing, Stats};
use tailwater_proxy::Proxy;
use tailwater_proxy::config::{
    CellConfig, CellKey, Config as ProxyConfig, LimitConfig, QueueSettings, RouteConfig,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{ConfigError, DrillError};

mod report;

pub use report::{CellResult, CellsReport, RoundP99, Scenario, render_cells_table};
use report::{p99_ms, result};

/// The header that carries the tenant (the cell key).
pub const TENANT_HEADER: &str = "x-tenant";

/// The cells drill's settings.
#[derive(Debug, Clone)]
pub struct CellsConfig {
    /// Cell names (each gets a backend); the noisy tenant and the dead backend are in the
    /// first.
    pub cells: Vec<String>,
    /// Workers of each cell's backend.
    pub workers: NonZeroUsize,
    /// Mean service time of each cell's backend.
    pub service_time: Duration,
    /// Each tenant's rate as a share of its cell's capacity.
    pub load: f64,
    /// The noisy tenant's rate, as a multiple of a tenant's.
    pub noisy: f64,
    /// Length of each scenario.
    pub phase: Duration,
    /// Client timeout.
    pub timeout: Duration,
    /// Seed of the arrivals.
    pub seed: u64,
    /// Rounds of the baseline, noisy and control scenarios (the noisy check is a median
    /// over them; each tenant's figures are also pooled over them).
    pub rounds: usize,
}

impl Default for CellsConfig {
    /// Four cells `a`–`d` of 4 workers × 20 ms (200 req/s each), tenants at 0.5× their
    /// cell, a noisy tenant at 10×, 3 s scenarios, 8 rounds of baseline, noisy and control
    /// (2 400 answers per cell and scenario; 25 scenarios, about 80 s), a 1 s client timeout.
    fn default() -> Self {
        Self {
            cells: ["a", "b", "c", "d"].map(str::to_owned).to_vec(),
            workers: NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN),
            service_time: Duration::from_millis(20),
            load: 0.5,
            noisy: 10.0,
            phase: Duration::from_secs(3),
            timeout: Duration::from_secs(1),
            seed: 1,
            rounds: 8,
        }
    }
}

impl CellsConfig {
    /// Checks the settings; errors name the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cells.len() < 2 {
            return Err(ConfigError::new("cells", "needs at least two cells"));
        }
        if !(self.load > 0.0 && self.load.is_finite()) {
            return Err(ConfigError::new("load", "must be a positive number"));
        }
        if !(self.noisy > 0.0 && self.noisy.is_finite()) {
            return Err(ConfigError::new("noisy", "must be a positive number"));
        }
        if self.rounds == 0 || self.rounds > 100 {
            return Err(ConfigError::new("rounds", "must be within 1 and 100"));
        }
        if self.service_time.is_zero() {
            return Err(ConfigError::new("service_time", "must be positive"));
        }
        if self.phase < Duration::from_millis(500) || self.phase <= self.timeout {
            return Err(ConfigError::new(
                "phase",
                "must be at least 500 ms and longer than the timeout",
            ));
        }
        CellMap::new(self.cells.iter().map(|c| (c.clone(), 1.0)))?;
        Ok(())
    }

    /// One cell's capacity, requests/s.
    pub fn cell_capacity(&self) -> f64 {
        self.workers.get() as f64 / self.service_time.as_secs_f64()
    }
}

/// The first key `tenant-N` (N from `from`) that `map` sends to `cell`.
fn tenant_in(map: &CellMap, cell: &str, from: usize) -> String {
    (from..)
        .map(|i| format!("tenant-{i}"))
        .find(|k| map.route(k.as_bytes()).is_some_and(|c| map.name(c) == cell))
        .unwrap_or_default()
}

/// Runs the scenarios on runtimes of its own (call it outside async code). Takes about
/// `(3 × rounds + 1) × phase` plus a second.
pub fn run_cells(config: &CellsConfig) -> Result<CellsReport, DrillError> {
    config.validate()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(DrillError::Internal(
            "run_cells() starts its own runtime: call it outside async code",
        ));
    }
    // Three runtimes, as three processes would be: the load generators (the clients), the
    // proxy, and the backends. On one shared runtime a request of cell B would wait in the
    // same run queue as the noisy tenant's client and backend tasks, a coupling of the test
    // harness that a real deployment does not have.
    let runtime = |name: &str, threads: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
    };
    let rt = runtime("tailwater-drill-cells-load", 2)?;
    let proxy_rt = runtime("tailwater-drill-cells-proxy", 2)?;
    let backend_rt = runtime("tailwater-drill-cells-backends", 1)?;
    let sides = Sides {
        proxy: proxy_rt.handle().clone(),
        backends: backend_rt.handle().clone(),
    };
    let report = rt.block_on(run_async(config, &sides));
    for r in [rt, proxy_rt, backend_rt] {
        r.shutdown_timeout(Duration::from_millis(500));
    }
    report
}

/// Where the proxy and the backends run (the load runs on the caller's runtime).
struct Sides {
    proxy: tokio::runtime::Handle,
    backends: tokio::runtime::Handle,
}

/// A loopback listener bound now, to be handed to a task on another runtime.
fn loopback() -> Result<(std::net::TcpListener, SocketAddr), DrillError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

struct Served {
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<tailwater_load::backend::BackendStats>>,
}

fn start_backend(
    config: &CellsConfig,
    i: usize,
    on: &tokio::runtime::Handle,
) -> Result<(SocketAddr, Served), DrillError> {
    let (listener, addr) = loopback()?;
    let mut b = BackendConfig::new(config.workers, config.service_time);
    b.seed = config.seed.wrapping_add(i as u64);
    let backend = Backend::new(b);
    let (stop, mut rx) = watch::channel(false);
    let task = on.spawn(async move {
        backend
            .serve(TcpListener::from_std(listener)?, async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await
    });
    Ok((addr, Served { stop, task }))
}

/// The proxy: one route, `[[cell]]` per cell on `x-tenant`, each cell with its own
/// recommended limit and CoDel queue.
pub fn cells_proxy_config(
    config: &CellsConfig,
    backends: &[SocketAddr],
) -> Result<ProxyConfig, DrillError> {
    let uri = |a: &SocketAddr| -> Result<http::Uri, DrillError> {
        format!("http://{a}")
            .parse()
            .map_err(|_| DrillError::Internal("backend address is not a URI"))
    };
    let first = backends
        .first()
        .ok_or(DrillError::Internal("no backends"))?;
    let mut route = RouteConfig::new("drill", uri(first)?);
    let workers = config.workers.get();
    // The default algorithm (recommended), which takes no bounds: each cell learns its own.
    route.limit = LimitConfig::default();
    route.queue = Some(QueueSettings {
        capacity: (workers * 8).max(16),
        ..QueueSettings::default()
    });
    let mut proxy = ProxyConfig::simple(uri(first)?);
    proxy.routes = vec![route];
    for (name, addr) in config.cells.iter().zip(backends) {
        proxy.cells.push(CellConfig {
            route: "drill".to_owned(),
            name: name.clone(),
            key: CellKey::Header(http::HeaderName::from_static(TENANT_HEADER)),
            weight: 1.0,
            drain: 0.0,
            upstream: uri(addr)?.into(),
            limit: None,
            queue: None,
            rate_limit: None,
        });
    }
    proxy.upstream.request_timeout = config.timeout;
    proxy.upstream.connect_timeout = config.timeout;
    proxy.server.drain_timeout = Duration::from_millis(500);
    proxy.validate()?;
    Ok(proxy)
}

async fn run_async(config: &CellsConfig, sides: &Sides) -> Result<CellsReport, DrillError> {
    let map = CellMap::new(config.cells.iter().map(|c| (c.clone(), 1.0)))?;
    let tenants: Vec<String> = config.cells.iter().map(|c| tenant_in(&map, c, 0)).collect();
    let noisy_tenant = tenant_in(&map, &config.cells[0], 1000);
    let mut backends = Vec::with_capacity(config.cells.len());
    let mut addrs = Vec::with_capacity(config.cells.len());
    for i in 0..config.cells.len() {
        let (addr, served) = start_backend(config, i, &sides.backends)?;
        addrs.push(addr);
        backends.push(served);
    }
    let proxy_config = cells_proxy_config(config, &addrs)?;
    let (listener, proxy_addr) = loopback()?;
    let (proxy_stop, mut proxy_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    // Built and served on the proxy's runtime, so that its tasks and timers live there.
    sides.proxy.spawn(async move {
        let started = Proxy::new(proxy_config)
            .map_err(DrillError::from)
            .and_then(|p| Ok((p, TcpListener::from_std(listener)?)));
        let (proxy, listener) = match started {
            Ok(v) => {
                let _ = ready_tx.send(Ok(()));
                v
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let _ = proxy
            .serve(listener, async move {
                let _ = proxy_rx.wait_for(|v| *v).await;
            })
            .await;
    });
    ready_rx
        .await
        .map_err(|_| DrillError::Internal("the proxy's runtime ended"))??;

    let tenant_rate = config.load * config.cell_capacity();
    let url = format!("http://{proxy_addr}/");
    // Baseline, noisy and control in every round, so that a slow drift in what else the
    // machine runs weighs on all three alike and the check compares scenarios of the same
    // round. Noisy runs in the middle, baseline and control swap ends from round to round:
    // each follows the noisy scenario (and whatever it leaves behind) in half the rounds,
    // so the control is exposed exactly as the baseline is.
    let mut order: Vec<(usize, &'static str)> = Vec::with_capacity(3 * config.rounds + 1);
    for r in 0..config.rounds {
        let round = if r % 2 == 0 {
            ["baseline", "noisy", "control"]
        } else {
            ["control", "noisy", "baseline"]
        };
        order.extend(round.map(|name| (r, name)));
    }
    order.push((config.rounds, "dead"));
    let mut pooled: Vec<(&'static str, HashMap<String, Stats>)> = Vec::with_capacity(4);
    let blank = || RoundP99 {
        baseline: Vec::new(),
        noisy: Vec::new(),
        control: Vec::new(),
    };
    let mut rounds: Vec<RoundP99> = (0..config.rounds).map(|_| blank()).collect();
    for (round, name) in order {
        if name == "dead" {
            let a = backends.remove(0);
            let _ = a.stop.send(true);
            let _ = a.task.await;
        }
        let mut mix: Vec<(&str, f64)> = tenants.iter().map(|t| (t.as_str(), 1.0)).collect();
        if name == "noisy" {
            mix.push((noisy_tenant.as_str(), config.noisy));
        }
        // Each tenant is its own client, with its own connections, started together: one
        // shared client would be a queue common to every cell (its connections held by the
        // noisy tenant's slow, queued requests would delay the other tenants' sends), which
        // is a fault of the measurement, not of the cells.
        let runs = mix.iter().enumerate().map(|(i, &(tenant, weight))| {
            tenant_load(config, &url, tenant, tenant_rate * weight, i as u64)
        });
        let reports = futures_util::future::join_all(runs).await;
        let mut this_run: HashMap<String, Stats> = HashMap::new();
        for report in reports {
            for tier in report?.tiers {
                this_run
                    .entry(tier.value.clone())
                    .or_default()
                    .merge(&tier.stats);
            }
        }
        if let Some(r) = rounds.get_mut(round) {
            let p99s = tenants.iter().map(|t| p99_ms(this_run.get(t))).collect();
            match name {
                "baseline" => r.baseline = p99s,
                "noisy" => r.noisy = p99s,
                _ => r.control = p99s,
            }
        }
        let slot = match pooled.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                pooled.push((name, HashMap::new()));
                pooled.len() - 1
            }
        };
        for (tenant, stats) in &this_run {
            pooled[slot]
                .1
                .entry(tenant.clone())
                .or_default()
                .merge(stats);
        }
    }
    // Table order: baseline, noisy, control, dead.
    pooled.sort_by_key(|(name, _)| match *name {
        "baseline" => 0,
        "noisy" => 1,
        "control" => 2,
        _ => 3,
    });
    let scenarios = pooled
        .into_iter()
        .map(|(name, stats)| {
            let cells = config
                .cells
                .iter()
                .zip(&tenants)
                .map(|(cell, tenant)| result(cell, tenant, stats.get(tenant)))
                .collect();
            let noisy = (name == "noisy").then(|| {
                stats
                    .get(&noisy_tenant)
                    .map_or((0, 0), |s| (s.requests, report::ok_count(s)))
            });
            Scenario { name, cells, noisy }
        })
        .collect();
    let _ = proxy_stop.send(true);
    for b in backends {
        let _ = b.stop.send(true);
    }
    Ok(CellsReport {
        config_summary: format!(
            "{} cells of {} workers × {:?} ({:.0} req/s each); one tenant per cell at {:.0} req/s; noisy tenant {}× in cell {}; {:?} per scenario, {} rounds of baseline, noisy and control (baseline and control swap ends), {:?} timeout",
            config.cells.len(),
            config.workers,
            config.service_time,
            config.cell_capacity(),
            tenant_rate,
            config.noisy,
            config.cells[0],
            config.phase,
            config.rounds,
            config.timeout
        ),
        scenarios,
        rounds,
    })
}

/// One tenant's open-loop load run: Poisson arrivals at `rate`, its own connections.
async fn tenant_load(
    config: &CellsConfig,
    url: &str,
    tenant: &str,
    rate: f64,
    index: u64,
) -> Result<tailwater_load::Report, DrillError> {
    let schedule = Schedule::new(vec![Segment::Constant {
        rate,
        duration: config.phase,
    }])?;
    let mut load = LoadConfig::new(url, schedule)?;
    load.spacing = Spacing::Poisson;
    load.seed = config.seed.wrapping_add(index.wrapping_mul(7919));
    load.timeout = config.timeout;
    // Enough connections for every request the tenant may have outstanding within the
    // client timeout (HTTP/1.1: one request per connection), capped at 64.
    let needed = (rate * config.timeout.as_secs_f64() * 2.0) as usize + 16;
    load.connections = NonZeroUsize::new(needed.min(64)).unwrap_or(NonZeroUsize::MIN);
    if let Some(n) = NonZeroUsize::new((needed + 48).max(tailwater_load::DEFAULT_MAX_IN_FLIGHT)) {
        load.max_in_flight = n;
    }
    load.header_mix = Some(HeaderMix::new(TENANT_HEADER, &[(tenant, 1.0)])?);
    Ok(tailwater_load::run(load, std::future::pending::<()>()).await?)
}
