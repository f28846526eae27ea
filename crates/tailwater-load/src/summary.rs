//! The terminal summary of a run: the outcome of every request first, the latency of the
//! successful ones as the headline, a histogram, and warnings that name the bottleneck.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::report::{Report, fmt_us};
use crate::stats::Percentiles;

/// A lag this small against the service's own latency is noise, not a finding.
const LAG_FLOOR_US: u64 = 1_000;

fn share(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// Whether a lag's p99 is worth a warning: above 1 ms and above a tenth of the service's own
/// p99 (a 2 ms lag under a 300 ms service time changes no conclusion).
fn lag_matters(lag_p99: u64, service_p99: u64) -> bool {
    lag_p99 > LAG_FLOOR_US && lag_p99 > service_p99 / 10
}

impl Report {
    /// The human-readable summary: what happened to the requests, the latency of the
    /// successful ones (the headline) beside the other outcomes', a latency histogram of the
    /// successes, per-phase and per-tier rows, and warnings that name what limited the run.
    pub fn summary(&self) -> String {
        let t = &self.total;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Target rate  {:>10.1} req/s    Achieved {:>10.1} req/s ({:.1}% of target)",
            self.target_rate,
            self.achieved_rate,
            if self.target_rate > 0.0 {
                100.0 * self.achieved_rate / self.target_rate
            } else {
                0.0
            }
        );
        let _ = writeln!(
            s,
            "Requests     {} scheduled, {} sent, {} responses, {} errors over {:.2}s ({} connections{}, max in flight {})",
            self.scheduled,
            t.sent,
            t.responses(),
            t.error_count(),
            self.elapsed.as_secs_f64(),
            self.connections,
            if self.http2 { ", h2c" } else { "" },
            self.max_in_flight
        );
        let ok = t.successes();
        let (shed, limited) = (t.status_count(503), t.status_count(429));
        let other = t.responses() - ok - shed - limited;
        let _ = writeln!(
            s,
            "Outcomes     success {ok} ({:.1}%), shed 503 {shed} ({:.1}%), rate-limited 429 {limited} ({:.1}%), other status {other} ({:.1}%), no response {} ({:.1}%)",
            share(ok, t.requests),
            share(shed, t.requests),
            share(limited, t.requests),
            share(other, t.requests),
            t.error_count(),
            share(t.error_count(), t.requests),
        );
        let codes: Vec<String> = t.status.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let _ = writeln!(
            s,
            "Status       {}",
            if codes.is_empty() {
                "-".into()
            } else {
                codes.join(", ")
            }
        );
        if !t.grpc.is_empty() {
            let g: Vec<String> = t.grpc.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            let _ = writeln!(
                s,
                "gRPC         {} (Status above: each outcome's HTTP mapping)",
                g.join(", ")
            );
        }
        if !t.errors.is_empty() {
            let errs: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            let _ = writeln!(s, "Errors       {}", errs.join(", "));
        }
        self.write_timing_notes(&mut s);
        self.write_warnings(&mut s);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "Latency (from intended send)", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let rows = [
            ("success (2xx)", Percentiles::of(&t.success)),
            ("rejected (429/503)", Percentiles::of(&t.rejected)),
            ("all responses", Percentiles::of(&t.corrected)),
            ("uncorrected (service)", Percentiles::of(&t.uncorrected)),
            ("send lag", Percentiles::of(&t.send_lag)),
        ];
        for (name, p) in rows {
            if p.count == 0 {
                let _ = writeln!(s, "{name:<28} {:>9}", "-");
                continue;
            }
            let _ = writeln!(
                s,
                "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                fmt_us(p.p50),
                fmt_us(p.p90),
                fmt_us(p.p99),
                fmt_us(p.p99_9),
                fmt_us(p.p99_99),
                fmt_us(p.max)
            );
        }
        if !t.success.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "Success latency histogram (from intended send)");
            s.push_str(&histogram(&t.success, 10, 40));
        }
        self.write_phases(&mut s);
        s
    }

    fn write_timing_notes(&self, s: &mut String) {
        if self.delayed_by_cap > 0 || self.stopped_early {
            let _ = writeln!(
                s,
                "Not on time  {} sent late because max in flight was reached{}",
                self.delayed_by_cap,
                if self.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                }
            );
        }
        let covered = if self.stopped_early {
            self.elapsed.min(self.schedule_duration)
        } else {
            self.schedule_duration
        };
        let drained = self.elapsed.saturating_sub(covered);
        if drained.as_millis() >= 100 || self.abandoned > 0 {
            let _ = writeln!(
                s,
                "Drain        waited {:.2}s after the schedule for outstanding requests; {} abandoned (bound it with --drain)",
                drained.as_secs_f64(),
                self.abandoned
            );
        }
    }

    fn write_warnings(&self, s: &mut String) {
        let t = &self.total;
        let service = Percentiles::of(&t.uncorrected);
        let pacer = Percentiles::of(&t.pacer_lag);
        let wait = Percentiles::of(&t.conn_wait);
        if lag_matters(pacer.p99, service.p99) {
            let _ = writeln!(
                s,
                "Warning      the load generator itself sent late (pacer lag p99 {}): its machine is saturated. Latencies are still measured from the intended times, but the target saw a burstier load than scheduled",
                fmt_us(pacer.p99)
            );
        }
        if !lag_matters(wait.p99, service.p99) {
            return;
        }
        let mean_s = service.mean / 1e6;
        if self.http2 || mean_s <= 0.0 {
            let _ = writeln!(
                s,
                "Warning      requests waited for a connection (p99 {}); corrected latencies include that wait",
                fmt_us(wait.p99)
            );
            return;
        }
        // Little's law: N connections, each carrying one request at a time for `mean_s`,
        // carry at most N / mean_s requests per second at the latency the target showed.
        let carry = self.connections as f64 / mean_s;
        // Did the target's latency grow under this load? Its first interval is the least
        // loaded sample of the target this run has.
        let first = self
            .intervals
            .iter()
            .find(|i| i.uncorrected.count > 0)
            .map(|i| i.uncorrected.p50);
        let grew = first.is_some_and(|f| service.p50 > 2 * f.max(1));
        if grew {
            let _ = writeln!(
                s,
                "Warning      the target is the bottleneck: requests waited for one of the {} connections (p99 {}) because the target's own latency grew under this load (p50 {} in the first interval, {} over the run). More connections would move that queue into the target, not raise its throughput",
                self.connections,
                fmt_us(wait.p99),
                fmt_us(first.unwrap_or(0)),
                fmt_us(service.p50),
            );
        } else {
            let need = (self.target_rate * mean_s * 1.25).ceil() as u64;
            let _ = writeln!(
                s,
                "Warning      requests waited for a free connection (p99 {}): at the target's latency (mean {}) {} connections carry at most {:.0} req/s against {:.0} req/s scheduled. If that latency is the target's normal one, raise --connections to about {need}; if the target is saturated, more connections only move the queue into it",
                fmt_us(wait.p99),
                fmt_us(service.mean as u64),
                self.connections,
                carry,
                self.target_rate,
            );
        }
    }

    fn write_phases(&self, s: &mut String) {
        if self.phases.len() <= 1 && self.tiers.is_empty() {
            return;
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<32} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9}",
            "Phase", "target/s", "got/s", "2xx/s", "errors", "p50 ok", "p99 ok"
        );
        for p in &self.phases {
            let pc = Percentiles::of(&p.stats.success);
            let _ = writeln!(
                s,
                "{:<32} {:>10.1} {:>10.1} {:>10.1} {:>8} {:>9} {:>9}",
                format!("{}. {}", p.index + 1, p.segment),
                p.target_rate,
                p.achieved_rate(),
                p.goodput(),
                p.stats.error_count(),
                fmt_us(pc.p50),
                fmt_us(pc.p99)
            );
        }
        for tier in &self.tiers {
            let pc = Percentiles::of(&tier.stats.success);
            let _ = writeln!(
                s,
                "{:<32} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9}",
                format!(
                    "tier {}: {} ok / {}",
                    tier.value,
                    tier.stats.successes(),
                    tier.stats.requests
                ),
                "",
                "",
                "",
                tier.stats.error_count(),
                fmt_us(pc.p50),
                fmt_us(pc.p99)
            );
        }
    }
}

/// A text histogram of `h` (µs) in `rows` buckets spaced evenly on a log scale between its
/// minimum and maximum (latencies span decades), each bar at most `width` characters.
pub(crate) fn histogram(h: &Histogram<u64>, rows: usize, width: usize) -> String {
    let mut out = String::new();
    if h.is_empty() || rows == 0 {
        return out;
    }
    let lo = h.min().max(1) as f64;
    let hi = (h.highest_equivalent(h.max()).max(1) as f64).max(lo * 1.000_001);
    let ratio = (hi / lo).powf(1.0 / rows as f64);
    let mut edges: Vec<u64> = (1..=rows)
        .map(|i| (lo * ratio.powi(i as i32)) as u64)
        .collect();
    if let Some(last) = edges.last_mut() {
        *last = u64::MAX;
    }
    let mut counts = vec![0u64; rows];
    for v in h.iter_recorded() {
        let value = v.value_iterated_to();
        let i = edges.partition_point(|e| *e < value).min(rows - 1);
        counts[i] += v.count_at_value();
    }
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let shown_edges: Vec<u64> = (1..=rows)
        .map(|i| (lo * ratio.powi(i as i32)) as u64)
        .collect();
    for (i, n) in counts.iter().enumerate() {
        let bar = ((*n as f64 / most as f64) * width as f64).round() as usize;
        let _ = writeln!(
            out,
            "  <= {:>9} [{:>9}] {}",
            fmt_us(shown_edges[i]),
            n,
            "#".repeat(bar)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn histogram_puts_every_value_in_one_bucket_and_scales_bars() {
        let mut h = new_histogram();
        for _ in 0..90 {
            h.record(1_000).unwrap();
        }
        for _ in 0..10 {
            h.record(100_000).unwrap();
        }
        let text = histogram(&h, 4, 20);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        let count = |l: &str| -> u64 {
            let a = l.find('[').unwrap() + 1;
            let b = l.find(']').unwrap();
            l[a..b].trim().parse().unwrap()
        };
        let total: u64 = lines.iter().map(|l| count(l)).sum();
        assert_eq!(total, 100);
        assert_eq!(count(lines[0]), 90);
        assert_eq!(count(lines[3]), 10);
        assert_eq!(lines[0].matches('#').count(), 20);
        assert_eq!(lines[3].matches('#').count(), 2);
        assert!(histogram(&new_histogram(), 4, 20).is_empty());
    }

    #[test]
    fn small_lags_against_slow_services_are_not_warnings() {
        assert!(!lag_matters(900, 1_000));
        assert!(!lag_matters(2_000, 300_000));
        assert!(lag_matters(2_000, 10_000));
    }
}
