//! The two line formats, and the escaping that keeps a client's bytes from forging or
//! splitting a line.
//!
//! Text, nginx-like (the combined log's order for the client's fields, then the proxy's
//! as `key=value`):
//!
//! ```text
//! 2026-12-02T18:16:07.123Z 127.0.0.1:50412 "GET /api/x?y=1 HTTP/1.1" "curl/8.5.0" 200 13 0.000412 0.000301 route="api" decision=admitted reason=- tier=critical queue_wait=0.000000 limit=20
//! ```
//!
//! Fields: time (RFC 3339, UTC, ms), client address, request line, user agent, status,
//! body bytes sent, duration and upstream time (seconds, µs resolution), then route,
//! decision, reason, tier, queue wait (seconds) and the limit at the decision; `-` when a
//! field does not apply. JSON has the same fields by name (`null` when they do not apply).
//!
//! Escaping: in text, a client's value is quoted, and every byte outside printable ASCII,
//! `"` and `\` is written `\xHH` (`\"`, `\\` for the two), as nginx does; in JSON, those
//! bytes are written `\u00HH` (the byte's value, so bytes that are not UTF-8 survive as
//! their value). No client byte can end a line or a quoted value. Values longer than
//! [`MAX_FIELD`] bytes are cut and marked with `...`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Notes, RequestFields};
use crate::config::AccessLogFormat;

/// The most bytes of one client value (target, user agent, method) written to a line.
pub(crate) const MAX_FIELD: usize = 2048;

/// Writes the client's fields of a line.
pub(super) fn begin(
    line: &mut String,
    format: AccessLogFormat,
    time: SystemTime,
    req: &RequestFields<'_>,
) {
    match format {
        AccessLogFormat::Text => {
            rfc3339(line, time);
            let _ = write!(line, " {} \"", req.peer);
            text_escape(line, req.method);
            line.push(' ');
            text_escape(line, req.target);
            line.push(' ');
            line.push_str(req.protocol);
            line.push_str("\" ");
            match req.user_agent {
                Some(ua) => {
                    line.push('"');
                    text_escape(line, ua);
                    line.push('"');
                }
                None => line.push('-'),
            }
        }
        AccessLogFormat::Json => {
            line.push_str("{\"time\":\"");
            rfc3339(line, time);
            let _ = write!(line, "\",\"client\":\"{}\",\"method\":", req.peer);
            json_string(line, req.method);
            line.push_str(",\"target\":");
            json_string(line, req.target);
            line.push_str(",\"protocol\":\"");
            line.push_str(req.protocol);
            line.push_str("\",\"user_agent\":");
            match req.user_agent {
                Some(ua) => json_string(line, ua),
                None => line.push_str("null"),
            }
        }
    }
}

/// Writes the proxy's fields and ends the line (with its newline).
pub(super) fn finish(
    line: &mut String,
    format: AccessLogFormat,
    status: u16,
    notes: &Notes,
    duration: Duration,
) {
    let tier = notes.tier.map(|t| t.as_str());
    match format {
        AccessLogFormat::Text => {
            let _ = write!(line, " {status} {} ", notes.bytes);
            secs(line, Some(duration), "-");
            line.push(' ');
            secs(line, notes.upstream, "-");
            line.push_str(" route=");
            match &notes.route {
                Some(r) => {
                    line.push('"');
                    text_escape(line, r.as_bytes());
                    line.push('"');
                }
                None => line.push('-'),
            }
            line.push_str(" decision=");
            line.push_str(notes.decision.unwrap_or("refused"));
            line.push_str(" reason=");
            line.push_str(if notes.reason.is_empty() {
                "-"
            } else {
                notes.reason
            });
            line.push_str(" tier=");
            line.push_str(tier.unwrap_or("-"));
            line.push_str(" queue_wait=");
            secs(line, notes.queue_wait, "-");
            line.push_str(" limit=");
            match notes.limit {
                Some(l) => {
                    let _ = write!(line, "{l}");
                }
                None => line.push('-'),
            }
            line.push('\n');
        }
        AccessLogFormat::Json => {
            let _ = write!(
                line,
                ",\"status\":{status},\"bytes\":{},\"duration\":",
                notes.bytes
            );
            secs(line, Some(duration), "null");
            line.push_str(",\"upstream_time\":");
            secs(line, notes.upstream, "null");
            line.push_str(",\"route\":");
            match &notes.route {
                Some(r) => json_string(line, r.as_bytes()),
                None => line.push_str("null"),
            }
            line.push_str(",\"decision\":\"");
            line.push_str(notes.decision.unwrap_or("refused"));
            line.push_str("\",\"reason\":");
            if notes.reason.is_empty() {
                line.push_str("null");
            } else {
                json_string(line, notes.reason.as_bytes());
            }
            line.push_str(",\"tier\":");
            match tier {
                Some(t) => json_string(line, t.as_bytes()),
                None => line.push_str("null"),
            }
            line.push_str(",\"queue_wait\":");
            secs(line, notes.queue_wait, "null");
            line.push_str(",\"limit\":");
            match notes.limit {
                Some(l) => {
                    let _ = write!(line, "{l}");
                }
                None => line.push_str("null"),
            }
            line.push_str("}\n");
        }
    }
}

/// Seconds with microseconds, or `none`.
fn secs(line: &mut String, d: Option<Duration>, none: &str) {
    match d {
        Some(d) => {
            let _ = write!(line, "{}.{:06}", d.as_secs(), d.subsec_micros());
        }
        None => line.push_str(none),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `raw` for a quoted text value: printable ASCII as is, `"` and `\` backslashed, any
/// other byte `\xHH`; cut at [`MAX_FIELD`].
pub(crate) fn text_escape(line: &mut String, raw: &[u8]) {
    let (raw, cut) = capped(raw);
    for &b in raw {
        match b {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            0x20..=0x7e => line.push(char::from(b)),
            _ => {
                line.push_str("\\x");
                line.push(char::from(HEX[usize::from(b >> 4)]));
                line.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    if cut {
        line.push_str("...");
    }
}

/// `raw` as a JSON string: printable ASCII as is, `"` and `\` backslashed, any other byte
/// `\u00HH`; cut at [`MAX_FIELD`].
pub(crate) fn json_string(line: &mut String, raw: &[u8]) {
    let (raw, cut) = capped(raw);
    line.push('"');
    for &b in raw {
        match b {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            0x20..=0x7e => line.push(char::from(b)),
            _ => {
                line.push_str("\\u00");
                line.push(char::from(HEX[usize::from(b >> 4)]));
                line.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    if cut {
        line.push_str("...");
    }
    line.push('"');
}

fn capped(raw: &[u8]) -> (&[u8], bool) {
    if raw.len() > MAX_FIELD {
        (&raw[..MAX_FIELD], true)
    } else {
        (raw, false)
    }
}

/// `time` as RFC 3339 in UTC with milliseconds (`2026-12-02T18:16:07.123Z`).
pub(crate) fn rfc3339(line: &mut String, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let _ = write!(
        line,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    );
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The status of a response head at the start of `buf` (`HTTP/1.1 200 ...`).
pub(super) fn status_of(buf: &[u8]) -> Option<u16> {
    let digits = buf.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The length of the response head at the start of `buf`, blank line included.
pub(super) fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}
