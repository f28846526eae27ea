//! The run loop: precise pacers, the requests they release, and an interval collector.
//!
//! Pacing: a pacer walks the [`Arrivals`](crate::Arrivals) and releases each request once its
//! intended time has come, waking at most once per release quantum (default 250 µs). tokio's
//! timer has a 1 ms granularity, which alone would put the send lag p99 near 1 ms, so a
//! pacer sleeps on the OS's high-resolution timers instead. HTTP/1.1 runs have one pacer per
//! core, each on a thread of its own that also drives its share of the connections
//! ([`local`]): the thread that wakes at a request's time writes it. h2 runs have one pacer on
//! a dedicated thread that hands due requests in batches to the runtime, one task per request
//! (an h2 connection is shared by many requests, so it cannot belong to one thread's share).
//! Every request measures its latency from the intended time (corrected) and from the moment
//! it was written (uncorrected), and records into one of a few sharded accumulators. Nothing
//! per request is kept after it completes.

mod assemble;
mod hdr_log;
mod local;
mod pace;
mod shared;
mod timer;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use http::Uri;
use http::header::{HOST, HeaderValue};

use tokio::sync::mpsc;

use crate::LoadError;
use crate::client::Pool;
use crate::config::{Config, Progress};
use crate::report::{IntervalReport, Report};
use crate::stats::{Percentiles, Stats};

use hdr_log::HdrLog;
use pace::{OsClock, Pacing, Sink, schedule_loop};
use shared::{Job, Shared, StopGuard, drain_shards};
use worker::request;

/// Runs the load described by `config` until its schedule ends or `shutdown` completes, and
/// returns the report.
///
/// Must be called inside a multi-threaded tokio runtime (h2 request tasks are spawned onto
/// it); the pacing runs on dedicated OS threads (one per core for HTTP/1.1, each with a
/// single-threaded runtime of its own and its share of the connections) that stop when the
/// run ends or this future is dropped. After the schedule ends, outstanding requests get
/// until `drain` (default: their timeout) to finish; after `shutdown`, at most one more
/// second.
///
/// # Errors
/// [`LoadError::Config`] for invalid settings, [`LoadError::Resolve`] when the host does not
/// resolve, [`LoadError::Output`] when the HdrHistogram log cannot be written. Request failures
/// are not errors: they are counted in the report.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<Report, LoadError> {
    config.validate()?;
    let addr: SocketAddr = tokio::net::lookup_host(config.target.authority())
        .await
        .map_err(|e| LoadError::Resolve {
            host: config.target.authority().to_string(),
            source: e,
        })?
        .next()
        .ok_or_else(|| LoadError::Resolve {
            host: config.target.authority().to_string(),
            source: std::io::Error::other("no address"),
        })?;
    let connections = config.connections.get();
    let tls = if config.target.tls {
        Some(std::sync::Arc::new(crate::tls::Connector::new(
            &config.tls,
            config.target.host(),
            config.http2,
        )?))
    } else {
        None
    };
    let pool = Pool::new(
        addr,
        if config.http2 { connections } else { 0 },
        tls.clone(),
    );
    let warm_up_deadline = config.timeout.min(Duration::from_secs(5));
    let pacing = Pacing {
        spacing: config.spacing,
        seed: config.seed,
        quantum: config.pace_quantum,
        share: (0, 1),
    };
    let start_err = |e| LoadError::Output {
        path: "pacing thread".into(),
        source: e,
    };
    // HTTP/1.1: one pacing thread per core (at most one per connection), each opening and
    // driving its own connections (see `local`). h2: one pacing thread feeding the runtime.
    let mut h1_pacers = None;
    if config.http2 {
        let _ = tokio::time::timeout(warm_up_deadline, pool.warm_up()).await;
    } else {
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(connections)
            .max(1);
        let mut pacers = local::start(local::Setup {
            threads,
            connections,
            addr,
            tls: tls.clone(),
            warm_up: warm_up_deadline,
            schedule: config.schedule.clone(),
            pacing,
        })
        .map_err(start_err)?;
        pacers.connected().await.map_err(start_err)?;
        h1_pacers = Some((pacers, threads));
    }

    let mut headers = config.headers.clone();
    let uri = if let Some(call) = &config.grpc {
        grpc_uri(&config.target.uri, call.path())?
    } else if config.http2 {
        config.target.uri.clone()
    } else {
        if !headers.contains_key(HOST)
            && let Ok(v) = HeaderValue::try_from(config.target.authority())
        {
            headers.insert(HOST, v);
        }
        config
            .target
            .path
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"))
    };
    if config.grpc.is_some() {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let wall_start = SystemTime::now();
    let start = Instant::now() + Duration::from_millis(5);
    let shared = Arc::new(Shared::new(
        &config,
        pool,
        uri,
        headers,
        start,
        h1_pacers.as_ref().map_or(1, |(_, threads)| *threads),
    ));
    let _guard = StopGuard(shared.clone());
    let mut hdr_log = match &config.hdr_log {
        Some(path) => Some(HdrLog::create(path, wall_start)?),
        None => None,
    };

    // h2's dispatcher: receives due batches and spawns one task per request.
    let mut dispatcher = None;
    let pacers = if let Some((pacers, _)) = h1_pacers {
        pacers.go(&shared)
    } else {
        let (tx, mut rx) = mpsc::channel::<Vec<Job>>(64);
        let shared_d = shared.clone();
        dispatcher = Some(tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for job in batch {
                    tokio::spawn(request(shared_d.clone(), job));
                }
            }
        }));
        let shared = shared.clone();
        let schedule = config.schedule.clone();
        vec![
            std::thread::Builder::new()
                .name("tailwater-load-scheduler".into())
                .spawn(move || {
                    // Prompt wake-ups at each quantum (see `crate::latency`); without it the
                    // run is the same, with a larger send lag.
                    let _ = crate::latency::request_short_slice();
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                    {
                        rt.block_on(schedule_loop(
                            &mut OsClock,
                            &shared,
                            &schedule,
                            pacing,
                            Sink::Channel(&tx),
                        ));
                    }
                    shared.scheduler_done.store(true, Ordering::Release);
                })
                .map_err(start_err)?,
        ]
    };

    // Collector.
    let schedule_len = config.schedule.duration();
    let mut per_key: HashMap<(u16, u16), Stats> = HashMap::new();
    let mut running = crate::stats::new_histogram();
    let mut running_errors = 0u64;
    let mut running_responses = 0u64;
    let mut intervals = Vec::new();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + config.interval),
        config.interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = start;
    let mut drain_deadline: Option<Instant> = None;
    let mut drain_started: Option<Instant> = None;
    let mut stopped_at: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut shutdown_done = false;
    loop {
        let mut final_tick = false;
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep(Duration::from_millis(10)), if drain_deadline.is_some() => {
                let drained = shared.in_flight.load(Ordering::Acquire) == 0;
                let late = drain_deadline.is_some_and(|d| Instant::now() >= d);
                if !(drained || late) {
                    continue;
                }
                final_tick = true;
            }
            _ = &mut shutdown, if !shutdown_done => {
                shutdown_done = true;
                shared.stop();
                let now = Instant::now();
                stopped_at = Some(now);
                shared.window_end_us.fetch_min(
                    now.saturating_duration_since(start).as_micros() as u64,
                    Ordering::Relaxed,
                );
                drain_deadline = Some(now + config.timeout.min(Duration::from_secs(1)));
                continue;
            }
        }
        if drain_deadline.is_none() && shared.scheduler_done.load(Ordering::Acquire) {
            let now = Instant::now();
            drain_started = Some(now);
            drain_deadline = Some(
                (start + schedule_len).max(now)
                    + config.drain.unwrap_or(config.timeout)
                    + Duration::from_millis(50),
            );
        }
        let now = Instant::now();
        let taken = drain_shards(&shared);
        let mut interval = Stats::default();
        for (key, s) in taken {
            interval.merge(&s);
            match per_key.get_mut(&key) {
                Some(t) => t.merge(&s),
                None => {
                    per_key.insert(key, s);
                }
            }
        }
        let offset = last_tick.saturating_duration_since(start);
        let len = now.saturating_duration_since(last_tick);
        last_tick = now;
        if let Some(log) = hdr_log.as_mut() {
            log.write(offset, len, &interval);
        }
        let _ = running.add(&interval.corrected);
        running_errors += interval.error_count();
        running_responses += interval.responses();
        let secs = len.as_secs_f64().max(1e-9);
        let (a, b) = (offset.as_secs_f64(), (offset + len).as_secs_f64());
        let report = IntervalReport {
            start: offset,
            duration: len,
            target_rate: config.schedule.mass_between(a, b) / secs,
            achieved_rate: interval.responses() as f64 / secs,
            responses: interval.responses(),
            sent: interval.sent,
            status: interval.status.clone(),
            errors: interval.errors.clone(),
            corrected: Percentiles::of(&interval.corrected),
            uncorrected: Percentiles::of(&interval.uncorrected),
            success: Percentiles::of(&interval.success),
            send_lag: Percentiles::of(&interval.send_lag),
        };
        if let Some(cb) = &config.on_progress {
            cb(&Progress {
                elapsed: now.saturating_duration_since(start),
                total: schedule_len,
                target_rate: report.target_rate,
                achieved_rate: report.achieved_rate,
                p99_us: if running.is_empty() {
                    0
                } else {
                    running.value_at_quantile(0.99)
                },
                errors: running_errors,
                responses: running_responses,
                in_flight: shared.in_flight.load(Ordering::Relaxed),
                draining: drain_started.is_some(),
            });
        }
        if len >= Duration::from_millis(1) || report.responses > 0 {
            intervals.push(report);
        }
        if final_tick {
            break;
        }
    }
    shared.stop();
    // The scheduler sleeps at most 20 ms at a time and checks `stop`; the dispatcher ends
    // when the scheduler drops its sender.
    shared.close();
    let join_deadline = Instant::now() + Duration::from_secs(1);
    while !pacers.iter().all(|p| p.is_finished()) && Instant::now() < join_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for p in pacers {
        if p.is_finished() {
            let _ = p.join();
        }
    }
    if let Some(d) = dispatcher {
        let _ = tokio::time::timeout(Duration::from_secs(1), d).await;
    }
    let hdr_result = hdr_log.map(HdrLog::finish);
    if let (Some(Err(e)), Some(path)) = (hdr_result, &config.hdr_log) {
        return Err(LoadError::Output {
            path: path.display().to_string(),
            source: e,
        });
    }

    Ok(assemble::assemble(
        &config,
        &shared,
        assemble::Ended {
            start,
            wall_start,
            stopped_at,
            connections,
            per_key,
            intervals,
        },
    ))
}

/// The URI of a gRPC call: the target's scheme and authority, the method's path.
fn grpc_uri(target: &Uri, path: &str) -> Result<Uri, LoadError> {
    let mut parts = target.clone().into_parts();
    parts.path_and_query = Some(path.parse().map_err(|_| {
        LoadError::Config(crate::ConfigError::new(
            "grpc",
            format!("`{path}` is not a path"),
        ))
    })?);
    Uri::from_parts(parts).map_err(|e| LoadError::Config(crate::ConfigError::new("grpc", e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Schedule;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn run_future_is_send() {
        let schedule = Schedule::constant(1.0, Duration::from_secs(1)).unwrap();
        let config = Config::new("http://127.0.0.1:1/", schedule).unwrap();
        let fut = run(config, std::future::pending::<()>());
        assert_send(&fut);
    }
}
