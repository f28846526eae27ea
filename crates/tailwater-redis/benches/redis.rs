//! Decisions per second and overshoot of the three ways to enforce a global limit on
//! Redis, side by side against one local redis-server that this binary starts:
//!
//! - `atomic`: [`RedisRateStore`], one Lua GCRA script per decision;
//! - `leased`: [`LeasedLimiter`], local credit leased in chunks (1 and 4 instances);
//! - `incr+expire`: envoyproxy/ratelimit's fixed window, a pipelined `INCRBY` + `EXPIRE`
//!   per decision (denied hits counted, 2x at window edges).
//!
//! Run: `cargo bench -p tailwater-redis --bench redis` (env `BENCH_SECS`, default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tailwater_core::rate::Quota;
use tailwater_redis::{ConnectionOptions, LeasedLimiter, RedisConnection, RedisRateStore};
use tailwater_test::redis::{RedisServer, redis_available};

/// Concurrent callers per instance.
const CALLERS: usize = 8;

/// One limit configuration, the same for every path.
#[derive(Clone, Copy)]
struct Regime {
    name: &'static str,
    rate: u32,
    burst: u32,
    max_chunk: u32,
}

const REGIMES: [Regime; 3] = [
    // Demand far above the limit: measures overshoot (and local denials on the leased path).
    Regime {
        name: "saturated: limit 100 000/s, burst 1 000, max_chunk 500",
        rate: 100_000,
        burst: 1_000,
        max_chunk: 500,
    },
    // A limit below every path's throughput: the fixed window's edge effect shows.
    Regime {
        name: "saturated for every path: limit 20 000/s, burst 200, max_chunk 100",
        rate: 20_000,
        burst: 200,
        max_chunk: 100,
    },
    // Limit far above demand: every decision admits; measures the raw cost of admitting.
    Regime {
        name: "under the limit: limit 50 000 000/s, burst 5 000 000, max_chunk 5 000",
        rate: 50_000_000,
        burst: 5_000_000,
        max_chunk: 5_000,
    },
];

struct Outcome {
    name: String,
    instances: usize,
    decisions: u64,
    admitted: u64,
    elapsed: Duration,
    /// Admitted per 10 ms bucket.
    buckets: Vec<u64>,
}

impl Outcome {
    fn per_sec_per_instance(&self) -> f64 {
        self.decisions as f64 / self.elapsed.as_secs_f64() / self.instances as f64
    }
    /// GCRA allowance over the run: burst + rate * elapsed.
    /// The most admitted in any 1 s window (sliding in 10 ms steps).
    fn max_sliding_second(&self) -> u64 {
        self.buckets
            .windows(100)
            .map(|w| w.iter().sum::<u64>())
            .max()
            .unwrap_or_else(|| self.buckets.iter().sum())
    }

    fn allowance(&self, r: Regime) -> f64 {
        f64::from(r.burst) + f64::from(r.rate) * self.elapsed.as_secs_f64()
    }
}

type Decide = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

async fn drive(name: &str, deciders: Vec<Decide>, secs: u64) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let decisions = Arc::new(AtomicU64::new(0));
    let admitted = Arc::new(AtomicU64::new(0));
    let windows: Arc<Vec<AtomicU64>> =
        Arc::new((0..(secs + 1) * 100).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in &deciders {
        for _ in 0..CALLERS {
            let (d, stop, decisions, admitted, windows) = (
                Arc::clone(d),
                Arc::clone(&stop),
                Arc::clone(&decisions),
                Arc::clone(&admitted),
                Arc::clone(&windows),
            );
            tasks.push(tokio::spawn(async move {
                let (mut n, mut ok) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    // Batches of 64 between checks of the stop flag and yields.
                    for _ in 0..64 {
                        n += 1;
                        if d().await {
                            ok += 1;
                            let w = (start.elapsed().as_millis() / 10) as usize;
                            if let Some(c) = windows.get(w) {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    tokio::task::yield_now().await;
                }
                decisions.fetch_add(n, Ordering::Relaxed);
                admitted.fetch_add(ok, Ordering::Relaxed);
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    Outcome {
        name: name.to_owned(),
        instances: deciders.len(),
        decisions: decisions.load(Ordering::Relaxed),
        admitted: admitted.load(Ordering::Relaxed),
        elapsed,
        buckets: windows.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
    }
}

fn options() -> ConnectionOptions {
    // The bench measures Redis, not the failure policy: a generous per-call timeout.
    ConnectionOptions::default()
        .call_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
}

fn quota(r: Regime) -> Quota {
    Quota::new(r.rate, Duration::from_secs(1), r.burst).expect("valid quota")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !redis_available("redis bench") {
        return;
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let server = RedisServer::start().expect("start redis-server");
    let version = server
        .command(&["INFO", "server"])
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("redis_version"))
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "{CALLERS} callers per instance, {secs} s per row, 2 tokio workers, one local \
         redis-server ({version}) on loopback"
    );
    for (i, regime) in REGIMES.into_iter().enumerate() {
        let results = run_regime(&server.url(), regime, secs, i).await;
        print_table(regime, &results);
    }
}

async fn run_regime(url: &str, regime: Regime, secs: u64, tag: usize) -> Vec<Outcome> {
    let mut results = Vec::new();
    let q = quota(regime);

    // Atomic path.
    let store = RedisRateStore::builder(RedisConnection::open(url, options()).expect("open"))
        .build()
        .expect("store");
    let key = format!("bench{tag}:atomic");
    let d: Decide = Arc::new(move || {
        let (store, key) = (store.clone(), key.clone());
        Box::pin(async move {
            store
                .check_detailed(&key, &[q], 1)
                .await
                .map(|c| c.decision.allowed)
                .unwrap_or(false)
        })
    });
    results.push(drive("atomic (Lua GCRA)", vec![d], secs).await);

    // Leased path, 1 and 4 instances.
    for instances in [1usize, 4] {
        let key = format!("bench{tag}:leased{instances}");
        let mut deciders = Vec::new();
        let mut limiters = Vec::new();
        for _ in 0..instances {
            let l = LeasedLimiter::builder(
                RedisConnection::open(url, options()).expect("open"),
                &key,
                q,
            )
            .max_chunk(regime.max_chunk)
            .build()
            .expect("limiter");
            limiters.push(l.clone());
            let d: Decide = Arc::new(move || {
                let l = l.clone();
                Box::pin(async move {
                    l.check(1)
                        .await
                        .map(|c| c.decision.allowed)
                        .unwrap_or(false)
                })
            });
            deciders.push(d);
        }
        let name = format!(
            "leased ({instances} instance{})",
            if instances > 1 { "s" } else { "" }
        );
        let out = drive(&name, deciders, secs).await;
        for l in &limiters {
            let st = l.stats();
            eprintln!(
                "  {name}: refills {} granted {} local {} local_denied {} expired {} chunk {} fallbacks {}",
                st.lease_refills,
                st.lease_granted,
                st.local_allowed,
                st.local_denied,
                st.lease_expired,
                l.chunk(),
                st.fallback_open + st.fallback_closed + st.fallback_degraded
            );
        }
        results.push(out);
    }

    // Naive fixed window, envoyproxy/ratelimit style.
    let conn = RedisConnection::open(url, options()).expect("open");
    let rate = regime.rate;
    let d: Decide = Arc::new(move || {
        let mut conn = conn.clone();
        Box::pin(async move {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let key = format!("bench{tag}:fixed:{now}");
            let r: Result<(i64,), _> = redis::pipe()
                .cmd("INCRBY")
                .arg(&key)
                .arg(1)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(1)
                .ignore()
                .query_async(&mut conn)
                .await;
            matches!(r, Ok((count,)) if count <= i64::from(rate))
        })
    });
    results.push(drive("INCR+EXPIRE fixed window", vec![d], secs).await);
    results
}

fn print_table(regime: Regime, results: &[Outcome]) {
    let atomic_rate = results[0].per_sec_per_instance();
    println!("\n{}\n", regime.name);
    println!(
        "| path | decisions/s per instance | vs atomic | admitted | allowance (burst + rate·t) | overshoot over the run | max admitted in any 1 s window (GCRA bound: burst + rate) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in results {
        let over = (r.admitted as f64 - r.allowance(regime)).max(0.0);
        println!(
            "| {} | {:.0} | {:.1}x | {} | {:.0} | {:.0} ({:.3} %) | {} ({:+.2} % vs burst + rate) |",
            r.name,
            r.per_sec_per_instance(),
            r.per_sec_per_instance() / atomic_rate,
            r.admitted,
            r.allowance(regime),
            over,
            over / r.allowance(regime) * 100.0,
            r.max_sliding_second(),
            (r.max_sliding_second() as f64 / f64::from(regime.burst + regime.rate) - 1.0) * 100.0,
        );
    }
}
