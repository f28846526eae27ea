//! The HdrHistogram interval log written during a run.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use crate::LoadError;
use crate::stats::Stats;

pub(super) struct HdrLog {
    out: BufWriter<File>,
    error: Option<std::io::Error>,
}

impl HdrLog {
    pub(super) fn create(path: &std::path::Path, start: SystemTime) -> Result<Self, LoadError> {
        let file = File::create(path).map_err(|e| LoadError::Output {
            path: path.display().to_string(),
            source: e,
        })?;
        let mut log = Self {
            out: BufWriter::new(file),
            error: None,
        };
        let mut ser = V2DeflateSerializer::new();
        let result = IntervalLogWriterBuilder::new()
            .add_comment("tailwater load: latency in microseconds")
            .add_comment(
                "untagged = corrected (from intended send time); tags: uncorrected, send_lag",
            )
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut log.out, &mut ser)
            .map(|_| ());
        if let Err(e) = result {
            log.error = Some(e);
        }
        Ok(log)
    }

    pub(super) fn write(&mut self, offset: Duration, len: Duration, stats: &Stats) {
        if self.error.is_some() {
            return;
        }
        let mut ser = V2DeflateSerializer::new();
        // The builder writes headers only when configured; an empty builder just wraps.
        let mut writer =
            match IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut ser) {
                Ok(w) => w,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            };
        let series: [(&hdrhistogram::Histogram<u64>, Option<&str>); 3] = [
            (&stats.corrected, None),
            (&stats.uncorrected, Some("uncorrected")),
            (&stats.send_lag, Some("send_lag")),
        ];
        for (h, tag) in series {
            let tag = tag.and_then(Tag::new);
            if let Err(e) = writer.write_histogram(h, offset, len, tag) {
                self.error = Some(std::io::Error::other(e.to_string()));
                return;
            }
        }
    }

    pub(super) fn finish(mut self) -> Result<(), std::io::Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}
