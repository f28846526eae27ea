//! `[access_log]`: see [`AccessLogConfig`].

use serde::Deserialize;

/// The line format of the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One nginx-like text line: the combined log's fields, then `key=value` pairs.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[access_log]`: one line per request the proxy answered (off when the table is absent).
///
/// ```toml
/// [access_log]
/// path = "/var/log/tailwater/access.log"   # or "-" for stdout
/// format = "json"                          # or "text" (default)
/// buffer_lines = 8192
/// buffer_bytes = 4194304
/// ```
///
/// Fields: time (UTC, at the request's start), client address, method, target,
/// protocol, status, body bytes sent, duration (to the response's end), upstream time (to
/// the upstream's response head), user agent, route, the admission decision
/// (`admitted`, `shed`, `rate_limited`, `rejected`, `refused`, `no_route`) with its
/// reason, tier, queue wait and the concurrency limit at the decision. Values the client
/// sent are escaped (`\xHH` in text, `\u00HH` in JSON) and cut at 2 KiB, so no request can
/// forge or split a line. Lines are written by a thread of their own through a queue of
/// at most `buffer_lines` and `buffer_bytes`: a request never waits for the log; when the
/// writer falls behind, lines are dropped and counted (`tailwater_access_log_dropped_total`). A reload reopens the
/// file (for log rotation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// Where to write: a file path (appended to, created if absent) or `-` for stdout.
    pub path: String,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: AccessLogFormat,
    /// Lines the queue to the writer holds before lines are dropped (default 8192, 1 to
    /// 1048576).
    #[serde(default = "default_buffer_lines")]
    pub buffer_lines: usize,
    /// Bytes the queue to the writer holds before lines are dropped: about 150 per line
    /// of a short request, up to about 6 KiB for one with huge values (default 4194304,
    /// 65536 to 268435456). Memory grows to it only under load, and the writer's batch
    /// being written may hold as much again.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
}

fn default_buffer_lines() -> usize {
    8192
}

fn default_buffer_bytes() -> usize {
    4 << 20
}

/// The most `buffer_lines` may be.
pub(crate) const MAX_BUFFER_LINES: usize = 1 << 20;
/// The bounds of `buffer_bytes`: room for the largest line's record, and a bound on the
/// memory the queue may hold.
pub(crate) const BUFFER_BYTES: std::ops::RangeInclusive<usize> = (64 << 10)..=(256 << 20);
