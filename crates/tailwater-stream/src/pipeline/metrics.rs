//! Pipeline metrics through the `metrics` facade, named as the tower crate's
//! (`tailwater_` prefix, base units, `_total` on counters).
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | [`STAGE_TIME_RATIO`] `tailwater_pipeline_stage_time_ratio` | gauge | `pipeline`, `stage`, `state` | fraction of the stage's worker time since the previous record in `state`: `busy`, `backpressured`, `idle`, `limited` (Flink's `*TimeMsPerSecond` / 1000) |
//! | [`STAGE_ITEMS_TOTAL`] `tailwater_pipeline_stage_items_total` | counter | `pipeline`, `stage` | items (batches, for a batching stage) the stage handed on or finished |
//! | [`QUEUE_DEPTH`] `tailwater_pipeline_queue_depth` | gauge | `pipeline`, `stage` | items waiting in the stage's input queue |
//! | [`QUEUE_CAPACITY`] `tailwater_pipeline_queue_capacity` | gauge | `pipeline`, `stage` | the input queue's bound |
//! | [`BOTTLENECK`] `tailwater_pipeline_bottleneck` | gauge | `pipeline`, `stage` | 1 for the stage named by [`PipelineStats::bottleneck`] over the interval, 0 for the others |
//!
//! The pipeline itself emits nothing per item: a [`PipelineMetrics`] turns two snapshots
//! into these series whenever [`record`](PipelineMetrics::record) is called (on a timer, or
//! before each scrape).

use super::{PipelineHandle, PipelineStats};

/// `tailwater_pipeline_stage_time_ratio`.
pub const STAGE_TIME_RATIO: &str = "tailwater_pipeline_stage_time_ratio";
/// `tailwater_pipeline_stage_items_total`.
pub const STAGE_ITEMS_TOTAL: &str = "tailwater_pipeline_stage_items_total";
/// `tailwater_pipeline_queue_depth`.
pub const QUEUE_DEPTH: &str = "tailwater_pipeline_queue_depth";
/// `tailwater_pipeline_queue_capacity`.
pub const QUEUE_CAPACITY: &str = "tailwater_pipeline_queue_capacity";
/// `tailwater_pipeline_bottleneck`.
pub const BOTTLENECK: &str = "tailwater_pipeline_bottleneck";

/// Records one pipeline's stats as metrics, with ratios over the interval between records.
///
/// ```
/// use tailwater_stream::pipeline::metrics::PipelineMetrics;
/// let mut metrics = PipelineMetrics::new("ingest");
/// # let _ = &mut metrics;
/// // every few seconds: metrics.record(&handle);
/// ```
#[derive(Debug)]
pub struct PipelineMetrics {
    name: String,
    previous: Option<PipelineStats>,
}

impl PipelineMetrics {
    /// Metrics labelled `pipeline = name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            previous: None,
        }
    }

    /// Reads `handle`'s stats and records them; returns the interval's stats (the whole
    /// run on the first call).
    pub fn record(&mut self, handle: &PipelineHandle) -> PipelineStats {
        let now = handle.stats();
        let interval = match &self.previous {
            Some(earlier) => now.since(earlier),
            None => now.clone(),
        };
        let bottleneck = interval.bottleneck().map(|s| s.name.clone());
        for (stage, total) in interval.stages.iter().zip(&now.stages) {
            let labels = [
                ("pipeline", self.name.clone()),
                ("stage", stage.name.clone()),
            ];
            for (state, ratio) in [
                ("busy", stage.busy_ratio()),
                ("backpressured", stage.backpressured_ratio()),
                ("idle", stage.idle_ratio()),
                ("limited", stage.limited_ratio()),
            ] {
                ::metrics::gauge!(STAGE_TIME_RATIO, "pipeline" => self.name.clone(),
                    "stage" => stage.name.clone(), "state" => state)
                .set(ratio);
            }
            ::metrics::counter!(STAGE_ITEMS_TOTAL, &labels).absolute(total.processed);
            ::metrics::gauge!(QUEUE_DEPTH, &labels).set(total.queue_depth as f64);
            ::metrics::gauge!(QUEUE_CAPACITY, &labels).set(total.queue_capacity as f64);
            let is = bottleneck.as_deref() == Some(stage.name.as_str());
            ::metrics::gauge!(BOTTLENECK, &labels).set(if is { 1.0 } else { 0.0 });
        }
        self.previous = Some(now);
        interval
    }
}
