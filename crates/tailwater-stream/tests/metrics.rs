//! The pipeline's metrics, captured in process with a recorder of our own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tailwater_stream::pipeline::metrics::PipelineMetrics;
use tailwater_stream::{Pipeline, StageConfig};
use tokio::time::sleep;

/// The last value of every series, by `name{label=value,...}`.
#[derive(Debug, Default, Clone)]
struct Values(Arc<Mutex<BTreeMap<String, f64>>>);

struct Series(String, Values);

impl CounterFn for Series {
    fn increment(&self, v: u64) {
        *self
            .1
            .0
            .lock()
            .expect("lock")
            .entry(self.0.clone())
            .or_default() += v as f64;
    }
    fn absolute(&self, v: u64) {
        self.1
            .0
            .lock()
            .expect("lock")
            .insert(self.0.clone(), v as f64);
    }
}

impl GaugeFn for Series {
    fn increment(&self, v: f64) {
        *self
            .1
            .0
            .lock()
            .expect("lock")
            .entry(self.0.clone())
            .or_default() += v;
    }
    fn decrement(&self, v: f64) {
        GaugeFn::increment(self, -v);
    }
    fn set(&self, v: f64) {
        self.1.0.lock().expect("lock").insert(self.0.clone(), v);
    }
}

impl HistogramFn for Series {
    fn record(&self, _: f64) {}
}

impl Values {
    fn series(&self, key: &Key) -> Arc<Series> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Series(
            format!("{}{{{}}}", key.name(), labels.join(",")),
            self.clone(),
        ))
    }

    fn get(&self, series: &str) -> Option<f64> {
        self.0.lock().expect("lock").get(series).copied()
    }
}

impl Recorder for Values {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.series(key))
    }
}

#[tokio::test(start_paused = true)]
async fn the_metrics_name_the_bottleneck_and_its_time_split() {
    let values = Values::default();
    let handle = Pipeline::from_stream(stream::iter(0u64..))
        .stage("parse", StageConfig::new(), |n| async move { n })
        .sink("write", StageConfig::new(), |_n| async {
            sleep(Duration::from_millis(10)).await;
        });
    let mut metrics = PipelineMetrics::new("ingest");
    sleep(Duration::from_secs(1)).await;
    metrics::with_local_recorder(&values, || metrics.record(&handle));
    sleep(Duration::from_secs(1)).await;
    let interval = metrics::with_local_recorder(&values, || metrics.record(&handle));
    assert_eq!(interval.completed(), 100, "the second interval only");

    let get = |s: &str| values.get(s).unwrap_or_else(|| panic!("no series {s}"));
    assert_eq!(
        get("tailwater_pipeline_bottleneck{pipeline=ingest,stage=write}"),
        1.0
    );
    assert_eq!(
        get("tailwater_pipeline_bottleneck{pipeline=ingest,stage=parse}"),
        0.0
    );
    assert_eq!(
        get("tailwater_pipeline_bottleneck{pipeline=ingest,stage=source}"),
        0.0
    );
    let busy = get("tailwater_pipeline_stage_time_ratio{pipeline=ingest,stage=write,state=busy}");
    assert!(busy > 0.99, "{busy}");
    let bp =
        get("tailwater_pipeline_stage_time_ratio{pipeline=ingest,stage=parse,state=backpressured}");
    assert!(bp > 0.95, "{bp}");
    assert_eq!(
        get("tailwater_pipeline_queue_capacity{pipeline=ingest,stage=write}"),
        16.0
    );
    assert_eq!(
        get("tailwater_pipeline_queue_depth{pipeline=ingest,stage=write}"),
        16.0
    );
    // 10 ms per item for 2 s (the 200th may finish on the boundary).
    let items = get("tailwater_pipeline_stage_items_total{pipeline=ingest,stage=write}");
    assert!((199.0..=200.0).contains(&items), "{items}");
}
