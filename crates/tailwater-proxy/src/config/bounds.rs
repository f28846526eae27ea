//! Every configuration value within a sane range, and the checks across entries (no two
//! routes for the same host and prefix, no two rate limits of a route with one name, route
//! hosts that a request's `Host` can equal).
//!
//! Why: a value config accepts is a value an operator (or a template with a typo) will
//! set. `max_headers = 100000000` made one request allocate 3.2 GB; a timeout of 10 years
//! is no timeout. Each bound is wide enough for any real deployment and is named with the
//! field in the error (which `Config::from_toml` places at file:line).

use std::fmt::Display;
use std::net::IpAddr;
use std::time::Duration;

use super::duration::format as fmt_duration;
use super::{Config, ConfigError, LimitConfig, QueueSettings, RateLimitConfig, RouteConfig};

/// Shortest timeout or wait (a zero timeout would fire at once).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// Longest timeout or wait: anything longer is, for a proxy, no deadline at all.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest concurrency limit, queue or connection count.
const MAX_COUNT: usize = 1_000_000;
/// Largest header-related buffer (head bytes, HTTP/2 header list, pre-read bodies).
const MAX_BUFFER: usize = 1024 * 1024;
/// Most request header fields: hyper and httparse allocate a slot per allowed field.
const MAX_HEADERS: usize = 1024;
/// Largest request body cap (1 TiB).
const MAX_BODY: u64 = 1 << 40;
/// Longest rate-limit period (a day).
const MAX_PERIOD: Duration = Duration::from_secs(86_400);
/// Longest route name and path prefix, bytes.
const MAX_NAME: usize = 128;
const MAX_PREFIX: usize = 1024;

fn within<T: PartialOrd + Display>(field: &str, v: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            field,
            format!("must be within [{lo}, {hi}], got {v}"),
        ));
    }
    Ok(())
}

fn time(field: &str, v: Duration, lo: Duration) -> Result<(), ConfigError> {
    if v < lo || v > MAX_TIMEOUT {
        return Err(ConfigError::new(
            field,
            format!(
                "must be within [{}, {}], got {}",
                fmt_duration(lo),
                fmt_duration(MAX_TIMEOUT),
                fmt_duration(v)
            ),
        ));
    }
    Ok(())
}

/// A route's endpoints (1 to 64) and its balancer's settings.
fn check_balance(p: &str, rc: &RouteConfig) -> Result<(), ConfigError> {
    let n = rc.upstream.endpoints().len();
    let max = tailwater_core::balance::MAX_ENDPOINTS;
    if n == 0 || n > max {
        return Err(ConfigError::new(
            format!("{p}.upstream"),
            format!("must name 1 to {max} upstreams, got {n}"),
        ));
    }
    let b = &rc.balance;
    let bp = format!("{p}.balance");
    time(&format!("{bp}.decay"), b.decay, MIN_TIMEOUT)?;
    time(&format!("{bp}.default_rtt"), b.default_rtt, MIN_TIMEOUT)?;
    time(
        &format!("{bp}.base_ejection_time"),
        b.base_ejection_time,
        MIN_TIMEOUT,
    )?;
    time(
        &format!("{bp}.max_ejection_time"),
        b.max_ejection_time,
        b.base_ejection_time,
    )?;
    time(
        &format!("{bp}.slow_start_window"),
        b.slow_start_window,
        Duration::ZERO,
    )?;
    within(
        &format!("{bp}.max_ejection_percent"),
        b.max_ejection_percent,
        0,
        100,
    )?;
    within(
        &format!("{bp}.consecutive_5xx"),
        b.consecutive_5xx as usize,
        0,
        MAX_COUNT,
    )?;
    within(
        &format!("{bp}.consecutive_gateway_errors"),
        b.consecutive_gateway_errors as usize,
        0,
        MAX_COUNT,
    )
}

/// Checks every bound of `config`, and the rules within one route.
pub(crate) fn check(config: &Config) -> Result<(), ConfigError> {
    check_server(config)?;
    check_upstream(config)?;
    if config.routes.is_empty() {
        return Err(ConfigError::new(
            "route",
            "at least one [[route]] is required",
        ));
    }
    for (i, rc) in config.routes.iter().enumerate() {
        check_route(&format!("route[{i}]"), rc)?;
    }
    Ok(())
}

/// No two routes for the same host and path prefix (the second could never be chosen).
/// Checked after every route's own values, so an error there is reported first.
pub(crate) fn check_overlaps(config: &Config) -> Result<(), ConfigError> {
    for (i, rc) in config.routes.iter().enumerate() {
        if let Some(j) = config.routes[..i].iter().position(|o| same_match(o, rc)) {
            return Err(ConfigError::new(
                format!("route[{i}].path_prefix"),
                format!(
                    "route[{j}] already matches host {:?} and path_prefix `{}`: this route could never be chosen",
                    rc.host.as_deref().unwrap_or("(any)"),
                    rc.path_prefix
                ),
            ));
        }
    }
    Ok(())
}

fn same_match(a: &RouteConfig, b: &RouteConfig) -> bool {
    let host = match (&a.host, &b.host) {
        (None, None) => true,
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    };
    host && a.path_prefix == b.path_prefix
}

fn check_server(config: &Config) -> Result<(), ConfigError> {
    let s = &config.server;
    within("server.max_connections", s.max_connections, 1, MAX_COUNT)?;
    within("server.max_tunnels", s.max_tunnels, 0, MAX_COUNT)?;
    if s.max_header_bytes < 8192 {
        return Err(ConfigError::new(
            "server.max_header_bytes",
            format!(
                "must be at least 8192 (hyper's minimum buffer), got {}",
                s.max_header_bytes
            ),
        ));
    }
    within(
        "server.max_header_bytes",
        s.max_header_bytes,
        8192,
        MAX_BUFFER,
    )?;
    within("server.max_headers", s.max_headers, 1, MAX_HEADERS)?;
    if s.max_body_bytes == Some(0) {
        return Err(ConfigError::new(
            "server.max_body_bytes",
            "must be at least 1 (omit it for no limit)",
        ));
    }
    if let Some(max) = s.max_body_bytes {
        within("server.max_body_bytes", max, 1, MAX_BODY)?;
    }
    within(
        "server.body_buffer_bytes",
        s.body_buffer_bytes,
        0,
        MAX_BUFFER,
    )?;
    time(
        "server.header_read_timeout",
        s.header_read_timeout,
        MIN_TIMEOUT,
    )?;
    time(
        "server.keep_alive_timeout",
        s.keep_alive_timeout,
        MIN_TIMEOUT,
    )?;
    time("server.send_timeout", s.send_timeout, MIN_TIMEOUT)?;
    time("server.body_timeout", s.body_timeout, MIN_TIMEOUT)?;
    time("server.drain_timeout", s.drain_timeout, Duration::ZERO)?;
    if let Some(w) = s.workers {
        within("server.workers", w.get(), 1, 1024)?;
    }
    let h2 = &s.http2;
    within(
        "server.http2.max_concurrent_streams",
        h2.max_concurrent_streams,
        1,
        10_000,
    )?;
    // RFC 9113 §6.5.2: windows are at most 2^31 - 1 and hyper needs at least the default 65535.
    within(
        "server.http2.initial_stream_window",
        h2.initial_stream_window,
        65_535,
        i32::MAX as u32,
    )?;
    within(
        "server.http2.initial_connection_window",
        h2.initial_connection_window,
        65_535,
        i32::MAX as u32,
    )?;
    within(
        "server.http2.max_header_list_size",
        h2.max_header_list_size,
        1024,
        MAX_BUFFER as u32,
    )?;
    let a = &config.admin;
    within("admin.max_connections", a.max_connections, 1, 10_000)?;
    time(
        "admin.header_read_timeout",
        a.header_read_timeout,
        MIN_TIMEOUT,
    )?;
    Ok(())
}

fn check_upstream(config: &Config) -> Result<(), ConfigError> {
    let u = &config.upstream;
    time("upstream.connect_timeout", u.connect_timeout, MIN_TIMEOUT)?;
    time("upstream.request_timeout", u.request_timeout, MIN_TIMEOUT)?;
    time(
        "upstream.body_idle_timeout",
        u.body_idle_timeout,
        MIN_TIMEOUT,
    )?;
    time(
        "upstream.pool_idle_timeout",
        u.pool_idle_timeout,
        MIN_TIMEOUT,
    )?;
    within(
        "upstream.pool_max_idle_per_host",
        u.pool_max_idle_per_host,
        0,
        100_000,
    )
}

fn check_route(p: &str, rc: &RouteConfig) -> Result<(), ConfigError> {
    within(&format!("{p}.name"), rc.name.len(), 1, MAX_NAME)?;
    check_balance(p, rc)?;
    within(
        &format!("{p}.path_prefix"),
        rc.path_prefix.len(),
        1,
        MAX_PREFIX,
    )?;
    if let Some(host) = &rc.host
        && !valid_host(host)
    {
        return Err(ConfigError::new(
            format!("{p}.host"),
            format!("`{host}` is not a host name or IP address (no port, scheme, path or spaces)"),
        ));
    }
    time(&format!("{p}.retry_after"), rc.retry_after, MIN_TIMEOUT)?;
    check_limit(&format!("{p}.limit"), &rc.limit)?;
    if let Some(q) = &rc.queue {
        check_queue(&format!("{p}.queue"), q)?;
    }
    for (j, rl) in rc.rate_limit.iter().enumerate() {
        let rp = format!("{p}.rate_limit[{j}]");
        check_rate(&rp, rl)?;
        if rc.rate_limit[..j].iter().any(|o| o.name == rl.name) {
            return Err(ConfigError::new(
                format!("{rp}.name"),
                format!(
                    "duplicate rate limit name `{}` in this route (names label the RateLimit-Policy header and metrics)",
                    rl.name
                ),
            ));
        }
    }
    Ok(())
}

fn check_limit(lp: &str, l: &LimitConfig) -> Result<(), ConfigError> {
    let l = l.params();
    for (field, v) in [
        ("limit", l.limit),
        ("initial_limit", l.initial_limit),
        ("min_limit", l.min_limit),
        ("max_limit", l.max_limit),
    ] {
        if let Some(v) = v {
            // Zero is left to the core builders, whose message says why.
            within(&format!("{lp}.{field}"), v, 0, MAX_COUNT)?;
        }
    }
    if let Some(t) = l.timeout {
        time(&format!("{lp}.timeout"), t, MIN_TIMEOUT)?;
    }
    Ok(())
}

fn check_queue(qp: &str, q: &QueueSettings) -> Result<(), ConfigError> {
    within(&format!("{qp}.capacity"), q.capacity, 0, MAX_COUNT)?;
    for (field, v) in [
        ("max_wait", q.max_wait),
        ("target", q.target),
        ("interval", q.interval),
        ("standing_after", q.standing_after),
    ] {
        time(&format!("{qp}.{field}"), v, Duration::ZERO)?;
    }
    Ok(())
}

fn check_rate(rp: &str, rl: &RateLimitConfig) -> Result<(), ConfigError> {
    within(&format!("{rp}.rate"), rl.rate, 0, 1_000_000_000)?;
    if let Some(b) = rl.burst {
        within(&format!("{rp}.burst"), b, 0, 1_000_000_000)?;
    }
    if rl.period < MIN_TIMEOUT || rl.period > MAX_PERIOD {
        return Err(ConfigError::new(
            format!("{rp}.period"),
            format!("must be within [1ms, 1d], got {}", fmt_duration(rl.period)),
        ));
    }
    within(&format!("{rp}.name"), rl.name.len(), 1, MAX_NAME)
}

/// A host a request's `Host` (without port) can equal: an IP address, or a DNS name of
/// letters, digits, `-`, `_` and `.` (RFC 1123, with the underscore some names carry).
pub(crate) fn valid_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts() {
        for ok in [
            "example.com",
            "api.internal",
            "127.0.0.1",
            "::1",
            "a_b.c",
            "x",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "a b/c", "", "a..b", "host:80", "http://x", "[::1]", "a/b", "é.com",
        ] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
