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
/// ```
///
/// Fields: time (UTC, at the request's start), client address, method, target,
/// protocol, status, body bytes sent, duration (to the response's end), upstream time (to
/// the upstream's response head), user agent, route, the admission decision
/// (`admitted`, `shed`, `rate_limited`, `rejected`, `refused`, `no_route`) with its
/// reason, tier, queue wait and the concurrency limit at the decision. Values the client
/// sent are escaped (`\xHH` in text, `\u00HH` in JSON) and cut at 2 KiB, so no request can
/// forge or split a line. Lines are written by a thread of their own through a queue of
/// `buffer_lines`: a request never waits for the log; when the writer falls behind, lines
/// are dropped and counted (`tailwater_access_log_dropped_total`). A reload reopens the
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
}

fn default_buffer_lines() -> usize {
    8192
}

/// The most `buffer_lines` may be (a bound on the memory the queue may hold).
pub(crate) const MAX_BUFFER_LINES: usize = 1 << 20;
