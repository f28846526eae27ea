//! `[[cell]]`: a route's requests spread over cells by a stable key (see `crate::route::cell`).

use serde::Deserialize;

use super::{LimitConfig, QueueSettings, RateLimitConfig, Upstreams};

/// Where a request's cell key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellKey {
    /// The value of a request header (`header:x-tenant`); requests without it share the
    /// empty key, so they all land in one cell.
    Header(http::HeaderName),
    /// The N-th non-empty segment of the normalised path, from 1 (`path:2` of
    /// `/t/acme/orders` is `acme`); a shorter path gives the empty key.
    PathSegment(usize),
    /// The client's IP address (`client_ip`; the connection's peer, not a forwarded header).
    ClientIp,
}

impl<'de> Deserialize<'de> for CellKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "client_ip" {
            return Ok(CellKey::ClientIp);
        }
        if let Some(name) = s.strip_prefix("header:") {
            return http::HeaderName::from_bytes(name.trim().as_bytes())
                .map(CellKey::Header)
                .map_err(|_| serde::de::Error::custom(format!("invalid header name `{name}`")));
        }
        if let Some(n) = s.strip_prefix("path:") {
            return match n.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(CellKey::PathSegment(n)),
                _ => Err(serde::de::Error::custom(format!(
                    "`path:{n}`: the segment is a number from 1"
                ))),
            };
        }
        Err(serde::de::Error::custom(format!(
            "unknown cell key `{s}` (expected header:<name>, path:<N> or client_ip)"
        )))
    }
}

/// One cell of a route (`[[cell]]`): the route named by `route` sends each request to one
/// of its cells, chosen from the request's `key` by weighted rendezvous hashing
/// (tailwater-core's `cell::CellMap`), so a key always lands in the same cell while the
/// cells do not change. Each cell has its **own** upstream(s), limiter, queue and rate
/// limits (metrics and `/status` under the route name `ROUTE:CELL`): a dead backend or a
/// noisy tenant fills only its own cell. Everything not set here is taken from the route.
/// For example `route = "api"`, `name = "a"`, `key = "header:x-tenant"`,
/// `upstream = "http://10.0.0.1:8080"`, and a `[cell.limit]` table of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellConfig {
    /// The name of the `[[route]]` whose requests this cell serves.
    pub route: String,
    /// The cell's name, unique within its route (it seeds the hash: renaming a cell moves
    /// its keys).
    pub name: String,
    /// The request's key: `header:<name>`, `path:<N>` or `client_ip`; the same for every
    /// cell of a route.
    pub key: CellKey,
    /// The cell's share of the keys, relative to the other cells of its route (default 1).
    #[serde(default = "one")]
    pub weight: f64,
    /// The share of this cell's keys sent to their next cell, in [0, 1] (default 0): raise
    /// it in steps to drain a cell; the same keys move at every step.
    #[serde(default)]
    pub drain: f64,
    /// The cell's upstream, or an array of them to balance over (the route's `balance`).
    pub upstream: Upstreams,
    /// The cell's limit (default: the route's settings, in a limiter of the cell's own).
    #[serde(default)]
    pub limit: Option<LimitConfig>,
    /// The cell's queue (default: the route's settings, in a queue of the cell's own).
    #[serde(default)]
    pub queue: Option<QueueSettings>,
    /// The cell's rate limits (default: the route's, with buckets of the cell's own).
    #[serde(default)]
    pub rate_limit: Option<Vec<RateLimitConfig>>,
}

fn one() -> f64 {
    1.0
}
