//! Turns what a run recorded into its [`Report`]: totals, phases, tiers and rates.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::report::{IntervalReport, PhaseReport, Report, TierReport};
use crate::stats::Stats;

use super::shared::Shared;

/// How the run ended, and what the collector gathered.
pub(super) struct Ended {
    /// The run's time origin.
    pub(super) start: Instant,
    /// Wall-clock start, for the report's provenance.
    pub(super) wall_start: SystemTime,
    /// When the shutdown future ended the run early.
    pub(super) stopped_at: Option<Instant>,
    /// Connections used.
    pub(super) connections: usize,
    /// Everything recorded, per (phase, tag).
    pub(super) per_key: HashMap<(u16, u16), Stats>,
    /// The interval series.
    pub(super) intervals: Vec<IntervalReport>,
}

/// Assembles the report. Rates are per second of the part of the schedule that ran
/// (`covered`); stragglers completed after it count in the latencies, not in the rates.
pub(super) fn assemble(config: &Config, shared: &Shared, ended: Ended) -> Report {
    let schedule_len = config.schedule.duration();
    let last_completion = Duration::from_micros(shared.last_completion_us.load(Ordering::Relaxed));
    let covered = match ended.stopped_at {
        Some(t) => t.saturating_duration_since(ended.start).min(schedule_len),
        None => schedule_len,
    };
    let elapsed =
        covered.max(last_completion.min(covered + config.drain.unwrap_or(config.timeout)));
    let mut total = Stats::default();
    let mut phase_reports = Vec::with_capacity(config.schedule.segments().len());
    let tier_names: Vec<String> = config
        .header_mix
        .as_ref()
        .map(|m| m.values().to_vec())
        .unwrap_or_default();
    let mut tiers: Vec<Stats> = tier_names.iter().map(|_| Stats::default()).collect();
    for (i, seg) in config.schedule.segments().iter().enumerate() {
        let mut stats = Stats::default();
        let mut phase_tiers: Vec<Stats> = tier_names.iter().map(|_| Stats::default()).collect();
        for ((p, t), s) in &ended.per_key {
            if usize::from(*p) != i {
                continue;
            }
            stats.merge(s);
            if let Some(ts) = phase_tiers.get_mut(usize::from(*t)) {
                ts.merge(s);
            }
        }
        for (all, one) in tiers.iter_mut().zip(&phase_tiers) {
            all.merge(one);
        }
        total.merge(&stats);
        phase_reports.push(PhaseReport {
            index: i,
            segment: *seg,
            start: config.schedule.phase_start(i),
            duration: seg.duration(),
            target_rate: seg.mass() / seg.duration().as_secs_f64(),
            scheduled: shared.scheduled_per_phase[i].load(Ordering::Relaxed),
            completed: shared.completed_per_phase[i].load(Ordering::Relaxed),
            completed_ok: shared.completed_ok_per_phase[i].load(Ordering::Relaxed),
            stats,
            tiers: tier_names
                .iter()
                .cloned()
                .zip(phase_tiers)
                .map(|(value, stats)| TierReport { value, stats })
                .collect(),
        });
    }
    let target_rate = if covered.is_zero() {
        config.schedule.mean_rate()
    } else {
        config.schedule.cumulative(covered.as_secs_f64()) / covered.as_secs_f64()
    };
    Report {
        target: config.target.to_string(),
        target_rate,
        achieved_rate: shared.responses_in_window.load(Ordering::Relaxed) as f64
            / covered.as_secs_f64().max(1e-9),
        elapsed,
        schedule_duration: schedule_len,
        stopped_early: ended.stopped_at.is_some(),
        scheduled: shared.dispatched.load(Ordering::Relaxed),
        delayed_by_cap: shared.delayed_by_cap.load(Ordering::Relaxed),
        abandoned: shared.in_flight.load(Ordering::Relaxed) as u64,
        connections: ended.connections,
        max_in_flight: config.max_in_flight.get(),
        http2: config.http2,
        total,
        phases: phase_reports,
        tiers: tier_names
            .into_iter()
            .zip(tiers)
            .map(|(value, stats)| TierReport { value, stats })
            .collect(),
        intervals: ended.intervals,
        meta: crate::RunMeta::new(ended.wall_start),
    }
}
