//! Orchestration: for each side, a fresh runtime with the synthetic backend (and, protected,
//! the proxy in front of it) on `127.0.0.1:0`, and one open-loop run of the load generator
//! whose schedule has one segment per phase.
//!
//! Each side gets its own backend and its own runtime, dropped at the end of the side, so the
//! work the unprotected backend still has queued (for clients long gone) cannot slow the
//! protected run down. Backend and proxy counters are sampled on every reporting interval of
//! the load generator, and phase boundaries are read off those samples.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tailwater_load::backend::{Backend, BackendStats};
use tailwater_load::{ErrorKind, Percentiles, Progress, Report};
use tailwater_proxy::Proxy;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::DrillConfig;
use crate::model::{
    DrillReport, PhaseResult, ProxyTotals, SeriesPoint, Side, SideResult, TierResult,
};
use crate::setup::{backend_config, load_config, proxy_config};
use crate::{ConfigError, DrillError};

/// Something the drill reports while it runs (for progress output).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// A side starts.
    SideStarted {
        /// Which side.
        side: Side,
    },
    /// A phase starts.
    Phase {
        /// Which side.
        side: Side,
        /// Phase index, from 0.
        index: usize,
        /// Number of phases.
        of: usize,
        /// Offered load as a multiple of capacity.
        multiplier: f64,
        /// Offered rate, requests/s.
        offered: f64,
    },
    /// One reporting interval passed.
    Tick {
        /// Which side.
        side: Side,
        /// Time since the side's load started.
        elapsed: Duration,
        /// Length of the side's schedule.
        total: Duration,
        /// Responses per second over the last interval.
        achieved: f64,
    },
    /// A side finished.
    SideFinished {
        /// Which side.
        side: Side,
        /// Its wall time.
        elapsed: Duration,
    },
}

/// Receives [`Event`]s; called from the load generator's collector, so keep it quick.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Runs the drill: the unprotected side, then the protected one, each on its own runtime.
///
/// Blocking: call it from a plain thread, not from inside an async runtime (it starts its
/// own). Takes about `2 × (phases × phase + timeout)` plus a second of setup.
///
/// # Errors
/// [`DrillError::Config`] for invalid settings; [`DrillError::Io`] when a runtime or a
/// loopback listener cannot be created; [`DrillError::Load`] / [`DrillError::Proxy`] when the
/// load generator or the proxy refuse their configuration. Request failures are results,
/// not errors.
pub fn run(config: &DrillConfig, observer: Option<Observer>) -> Result<DrillReport, DrillError> {
    config.validate()?;
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(DrillError::Internal(
            "run() starts its own runtimes: call it outside async code (or use run_side)",
        ));
    }
    let started = Instant::now();
    let (config, capacity_source) = &prepare(config)?;
    let mut sides = Vec::with_capacity(2);
    let mut recovery: Option<Option<Duration>> = None;
    for side in [Side::Unprotected, Side::Protected] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tailwater-drill")
            .enable_all()
            .build()?;
        let result = rt.block_on(run_side(config, side, observer.clone()));
        if side == Side::Unprotected
            && let Some(target) = &config.target
        {
            recovery = Some(rt.block_on(crate::knee::wait_until_recovered(target, config))?);
        }
        // Cancels what is left: the backend's queued work, idle connections, the servers.
        rt.shutdown_timeout(Duration::from_millis(500));
        sides.push(result?);
    }
    let protected = sides
        .pop()
        .ok_or(DrillError::Internal("protected side missing"))?;
    let unprotected = sides
        .pop()
        .ok_or(DrillError::Internal("unprotected side missing"))?;
    let total: f64 = config.mix.iter().map(|(_, w)| *w).sum();
    Ok(DrillReport {
        capacity: config.capacity(),
        workers: config.workers.get(),
        service_time: config.service_time,
        service_dist: config.service_dist.describe(),
        timeout: config.timeout,
        connections: config.connections.get(),
        algorithm: config.algorithm.as_str().to_string(),
        queue: config.queue.as_str().to_string(),
        mix: config
            .mix
            .iter()
            .map(|(t, w)| (t.as_str().to_string(), 100.0 * w / total))
            .collect(),
        unprotected,
        protected,
        elapsed: started.elapsed(),
        target: config.target.as_ref().map(|t| t.url.clone()),
        capacity_source: capacity_source.clone(),
        recovery,
    })
}

/// Resolves and vets an external target and finds its capacity when not given (on a
/// runtime of its own); returns the config to drill with and where its capacity came from.
fn prepare(config: &DrillConfig) -> Result<(DrillConfig, String), DrillError> {
    let Some(target) = &config.target else {
        return Ok((
            config.clone(),
            "synthetic backend (workers / service time)".into(),
        ));
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tailwater-drill-ramp")
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let url = tailwater_load::Target::parse(&target.url)
            .map_err(|e| ConfigError::new("target", e.to_string()))?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(url.authority())
            .await
            .map_err(|e| ConfigError::new("target", format!("`{}`: {e}", target.url)))?
            .collect();
        target.check_resolved(&addrs)?;
        match target.capacity {
            Some(c) => Ok::<_, DrillError>((c, "given (--capacity)".to_string())),
            None => {
                let knee = crate::knee::find_capacity(target, config).await?;
                // The ramp's overloaded steps leave a backlog: let it drain before the
                // unprotected side starts.
                crate::knee::wait_until_recovered(target, config).await?;
                let steps: Vec<String> = knee
                    .steps
                    .iter()
                    .map(|s| {
                        format!(
                            "{:.0}/s{}",
                            s.offered,
                            if s.overloaded { " overloaded" } else { " ok" }
                        )
                    })
                    .collect();
                Ok((
                    knee.capacity,
                    format!("found by a ramp ({})", steps.join(", ")),
                ))
            }
        }
    });
    rt.shutdown_timeout(Duration::from_millis(500));
    let (capacity, source) = result?;
    let mut config = config.clone();
    if let Some(t) = config.target.as_mut() {
        t.capacity = Some(capacity);
    }
    config.validate()?;
    Ok((config, source))
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    elapsed: Duration,
    backend: BackendStats,
    limit: Option<usize>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn bind() -> Result<(TcpListener, SocketAddr), DrillError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Runs one side inside the current (multi-threaded) tokio runtime and returns its results.
///
/// The servers it starts stop when it returns; work the backend still holds is left to the
/// runtime (the blocking [`run`] drops its runtime after each side).
pub async fn run_side(
    config: &DrillConfig,
    side: Side,
    observer: Option<Observer>,
) -> Result<SideResult, DrillError> {
    config.validate()?;
    let started = Instant::now();
    if let Some(o) = &observer {
        o(&Event::SideStarted { side });
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    // The service under drill: the synthetic backend, or the target you run.
    let (backend, backend_addr, path) = match &config.target {
        None => {
            let (listener, addr) = bind().await?;
            let backend = Backend::new(backend_config(config));
            let b = backend.clone();
            let rx = stop_rx.clone();
            tokio::spawn(async move { b.serve(listener, stopped(rx)).await });
            (Some(backend), addr, "/".to_string())
        }
        Some(t) => {
            let url = tailwater_load::Target::parse(&t.url)
                .map_err(|e| ConfigError::new("target", e.to_string()))?;
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(url.authority()).await?.collect();
            t.check_resolved(&addrs)?;
            let path = t
                .url
                .splitn(4, '/')
                .nth(3)
                .map_or_else(|| "/".to_string(), |p| format!("/{p}"));
            (None, addrs[0], path)
        }
    };
    let (target, proxy) = match side {
        Side::Unprotected => (backend_addr, None),
        Side::Protected => {
            let proxy = Proxy::new(proxy_config(config, backend_addr)?)?;
            let (listener, addr) = bind().await?;
            let p = proxy.clone();
            let rx = stop_rx.clone();
            tokio::spawn(async move { p.serve(listener, stopped(rx)).await });
            (addr, Some(proxy))
        }
    };
    let backend_stats = |b: &Option<Backend>| {
        b.as_ref()
            .map_or_else(BackendStats::default, Backend::stats)
    };

    // The unprotected side of an https:// target goes to its URL (its host name is what
    // the certificate names); the proxy in front speaks http.
    let tls_target = config.target.as_ref().filter(|t| t.is_tls());
    let mut load = match (&proxy, tls_target) {
        (None, Some(t)) => {
            let mut load = load_config(config, &t.url)?;
            load.tls.ca_file = t.ca_file.clone();
            load
        }
        _ => load_config(config, &format!("http://{target}{path}"))?,
    };
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let samples = samples.clone();
        let backend = backend.clone();
        let proxy = proxy.clone();
        let observer = observer.clone();
        let phase = config.phase;
        let multipliers = config.multipliers.clone();
        let capacity = config.capacity();
        let announced = Mutex::new(Some(0usize));
        load.on_progress = Some(Arc::new(move |p: &Progress| {
            let limit = proxy
                .as_ref()
                .and_then(|px| px.status().first().map(|r| r.limit));
            if let Ok(mut s) = samples.lock() {
                s.push(Sample {
                    elapsed: p.elapsed,
                    backend: backend_stats(&backend),
                    limit,
                });
            }
            if let Some(o) = &observer {
                let index = ((p.elapsed.as_secs_f64() / phase.as_secs_f64()) as usize)
                    .min(multipliers.len().saturating_sub(1));
                if let Ok(mut last) = announced.lock()
                    && *last != Some(index)
                    && p.elapsed < p.total
                {
                    *last = Some(index);
                    let m = multipliers.get(index).copied().unwrap_or(0.0);
                    o(&Event::Phase {
                        side,
                        index,
                        of: multipliers.len(),
                        multiplier: m,
                        offered: m * capacity,
                    });
                }
                o(&Event::Tick {
                    side,
                    elapsed: p.elapsed,
                    total: p.total,
                    achieved: p.achieved_rate,
                });
            }
        }));
    }
    if let Some(o) = &observer {
        o(&Event::Phase {
            side,
            index: 0,
            of: config.multipliers.len(),
            multiplier: config.multipliers[0],
            offered: config.offered(0),
        });
    }
    let report = tailwater_load::run(load, std::future::pending::<()>()).await?;
    let end = backend_stats(&backend);
    let proxy_status = proxy.as_ref().and_then(|p| p.status().into_iter().next());
    let _ = stop_tx.send(true);

    let samples = match samples.lock() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let mut result = side_result(config, side, &report, &samples, end);
    if let Some(st) = proxy_status {
        let limits = samples.iter().filter_map(|s| s.limit);
        result.proxy = Some(ProxyTotals {
            final_limit: st.limit,
            min_limit: limits.clone().min().unwrap_or(st.limit),
            max_limit: limits.max().unwrap_or(st.limit),
            peak_in_flight: st.peak_in_flight,
            admitted: st.admitted,
            shed: st.shed,
        });
    }
    result.elapsed = started.elapsed();
    if let Some(o) = &observer {
        o(&Event::SideFinished {
            side,
            elapsed: result.elapsed,
        });
    }
    Ok(result)
}

/// Goodput of a phase: 2xx responses per second that completed in the phase's steady part,
/// `[start + settle, start + len)`, from the load generator's intervals (each attributed by
/// its midpoint).
///
/// `settle` is the client timeout when the phase is longer than it (half the phase
/// otherwise): a 2xx only counts when it arrives within the timeout of its intended send
/// time, so every response counted after one timeout into the phase was *sent* in the phase.
/// Neither the previous phase's backlog nor a backlog carried into the next phase blurs the
/// figure, and it cannot exceed what the backend delivered meanwhile.
fn goodput_during(report: &Report, start: Duration, len: Duration, timeout: Duration) -> f64 {
    let settle = if timeout < len { timeout } else { len / 2 };
    let (from, to) = (start + settle, start + len);
    let (mut ok, mut secs) = (0u64, 0.0);
    for iv in &report.intervals {
        let mid = iv.start + iv.duration / 2;
        if mid >= from && mid < to {
            ok += iv.status.range(200..300).map(|(_, n)| n).sum::<u64>();
            secs += iv.duration.as_secs_f64();
        }
    }
    if secs <= 0.0 {
        return 0.0;
    }
    ok as f64 / secs
}

/// The sample nearest to `t` (samples are in time order).
fn at(samples: &[Sample], t: Duration) -> Option<&Sample> {
    samples.iter().min_by_key(|s| s.elapsed.abs_diff(t))
}

fn side_result(
    config: &DrillConfig,
    side: Side,
    report: &Report,
    samples: &[Sample],
    end: BackendStats,
) -> SideResult {
    let zero = BackendStats::default();
    let n = report.phases.len();
    let wasted_after_end = end.in_system as u64;
    let mut phases = Vec::with_capacity(n);
    for (i, p) in report.phases.iter().enumerate() {
        let from = if i == 0 {
            zero
        } else {
            at(samples, p.start).map_or(zero, |s| s.backend)
        };
        let to = if i + 1 == n {
            end
        } else {
            at(samples, p.start + p.duration).map_or(end, |s| s.backend)
        };
        let mut wasted = to.wasted.saturating_sub(from.wasted);
        if i + 1 == n {
            wasted += wasted_after_end;
        }
        let s = &p.stats;
        let shed = s.status_count(503) + s.status_count(429);
        let ok = s.successes();
        let success = Percentiles::of(&s.success);
        let timeouts = s.error_kind_count(ErrorKind::Timeout);
        phases.push(PhaseResult {
            multiplier: config.multipliers.get(i).copied().unwrap_or(0.0),
            offered: p.target_rate,
            duration: p.duration,
            scheduled: p.scheduled,
            requests: s.requests,
            ok,
            shed,
            other_status: s.responses() - ok - shed,
            timeouts,
            errors: s.error_count() - timeouts,
            goodput: goodput_during(report, p.start, p.duration, config.timeout),
            success_p50_us: success.p50,
            success_p99_us: success.p99,
            wasted,
            backend_completed: to.completed.saturating_sub(from.completed),
            tiers: p
                .tiers
                .iter()
                .map(|t| TierResult {
                    tier: t.value.clone(),
                    requests: t.stats.requests,
                    ok: t.stats.successes(),
                })
                .collect(),
        });
    }
    let mut series = Vec::with_capacity(report.intervals.len());
    let mut prev_wasted = 0u64;
    for iv in &report.intervals {
        let t_end = iv.start + iv.duration;
        let secs = iv.duration.as_secs_f64().max(1e-9);
        let ok: u64 = iv.status.range(200..300).map(|(_, n)| n).sum();
        let sample = at(samples, t_end);
        let wasted_now = sample.map_or(prev_wasted, |s| s.backend.wasted);
        series.push(SeriesPoint {
            t: t_end.as_secs_f64(),
            offered: iv.target_rate,
            goodput: ok as f64 / secs,
            success_p99_ms: iv.success.p99 as f64 / 1000.0,
            limit: sample.and_then(|s| s.limit),
            wasted: wasted_now.saturating_sub(prev_wasted) as f64 / secs,
        });
        prev_wasted = prev_wasted.max(wasted_now);
    }
    SideResult {
        side,
        phases,
        series,
        abandoned: report.abandoned,
        delayed_by_cap: report.delayed_by_cap,
        wasted_after_end,
        backend_service_mean: {
            let finished = end.completed + end.wasted;
            (finished > 0).then(|| end.busy / u32::try_from(finished).unwrap_or(u32::MAX))
        },
        proxy: None,
        elapsed: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests;
