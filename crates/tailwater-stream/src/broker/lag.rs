//! The lag's growth rate from successive samples.

use std::time::Duration;

/// Turns lag samples into a growth rate (messages per second) between the last two samples.
///
/// A rate over one sampling interval, not a long average: a downstream that slows down
/// shows within one interval. Samples taken less than 1 ms apart keep the previous rate.
///
/// ```
/// use std::time::Duration;
/// use tailwater_stream::broker::LagMeter;
/// let mut meter = LagMeter::default();
/// assert_eq!(meter.observe(100, Duration::from_secs(0)), None);
/// assert_eq!(meter.observe(300, Duration::from_secs(2)), Some(100.0));
/// assert_eq!(meter.observe(200, Duration::from_secs(3)), Some(-100.0));
/// ```
#[derive(Debug, Default, Clone)]
pub struct LagMeter {
    last: Option<(u64, Duration)>,
    rate: Option<f64>,
}

impl LagMeter {
    /// Records `lag` seen at time `at` (any monotonic origin) and returns the growth rate
    /// since the previous sample (`None` on the first).
    pub fn observe(&mut self, lag: u64, at: Duration) -> Option<f64> {
        if let Some((prev, then)) = self.last {
            let dt = at.saturating_sub(then);
            if dt < Duration::from_millis(1) {
                return self.rate;
            }
            self.rate = Some((lag as f64 - prev as f64) / dt.as_secs_f64());
        }
        self.last = Some((lag, at));
        self.rate
    }

    /// The last rate computed.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }
}
