//! A route's endpoints (`upstream = "http://a:1"` or `upstream = ["http://a:1", ...]`) and
//! how requests are spread over them (`[route.balance]`), and the client deadline header.

use std::fmt;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};
use tailwater_core::balance::{BalanceConfig, Outlier, Policy, SlowStart};

use super::admission::de_name;
use super::duration;

/// The upstream endpoints of a route: one `http://host:port`, or several to balance over
/// (in TOML a string or an array of strings). Never empty once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams(Vec<Uri>);

impl Upstreams {
    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[Uri] {
        &self.0
    }
}

impl From<Uri> for Upstreams {
    fn from(uri: Uri) -> Self {
        Self(vec![uri])
    }
}

impl From<Vec<Uri>> for Upstreams {
    fn from(uris: Vec<Uri>) -> Self {
        Self(uris)
    }
}

impl<'de> Deserialize<'de> for Upstreams {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Upstreams;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an http://host:port string or an array of them")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Upstreams, E> {
                super::parse_upstream(s)
                    .map(Upstreams::from)
                    .map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Upstreams, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    let uri = super::parse_upstream(&s).map_err(de::Error::custom)?;
                    if out.contains(&uri) {
                        return Err(de::Error::custom(format!("upstream `{s}` is listed twice")));
                    }
                    out.push(uri);
                }
                Ok(Upstreams(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// How a route with several endpoints spreads requests over them (`[route.balance]`).
/// Ignored for a route with one endpoint. Defaults: Linkerd's P2C over PeakEWMA (decay
/// 10 s, default RTT 30 ms); Envoy's outlier detection (5 consecutive 5xx or gateway
/// errors eject for 30 s × times ejected, at most 300 s, at most 10 % of endpoints but
/// always one); a 10 s linear slow start for an endpoint back from ejection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceSettings {
    /// `peak-ewma` (default), `least-request` or `round-robin`.
    #[serde(deserialize_with = "de_name")]
    pub policy: Policy,
    /// PeakEWMA decay.
    #[serde(deserialize_with = "duration::de")]
    pub decay: Duration,
    /// Latency assumed for an endpoint not measured yet.
    #[serde(deserialize_with = "duration::de")]
    pub default_rtt: Duration,
    /// Consecutive 5xx (gateway errors included) that eject an endpoint; 0: never.
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (502/503/504, failed connects, resets, timeouts) that
    /// eject an endpoint; 0: never.
    pub consecutive_gateway_errors: u32,
    /// First ejection's length; the n-th in a row lasts n times as long.
    #[serde(deserialize_with = "duration::de")]
    pub base_ejection_time: Duration,
    /// Longest ejection.
    #[serde(deserialize_with = "duration::de")]
    pub max_ejection_time: Duration,
    /// Most endpoints ejected at once, percent (one may always be).
    pub max_ejection_percent: u32,
    /// Slow start of an endpoint back from ejection: its weight grows linearly from 10 %
    /// to 100 % over this window; `0s` turns it off.
    #[serde(deserialize_with = "duration::de")]
    pub slow_start_window: Duration,
}

impl Default for BalanceSettings {
    fn default() -> Self {
        let core = BalanceConfig::default();
        Self {
            policy: core.policy,
            decay: core.decay,
            default_rtt: core.default_rtt,
            consecutive_5xx: core.outlier.consecutive_5xx,
            consecutive_gateway_errors: core.outlier.consecutive_gateway_errors,
            base_ejection_time: core.outlier.base_ejection,
            max_ejection_time: core.outlier.max_ejection,
            max_ejection_percent: core.outlier.max_ejection_percent,
            slow_start_window: core.slow_start.window,
        }
    }
}

impl BalanceSettings {
    /// The core balancer's settings.
    pub fn to_core(&self) -> BalanceConfig {
        let core = BalanceConfig::default();
        BalanceConfig {
            policy: self.policy,
            decay: self.decay,
            default_rtt: self.default_rtt,
            outlier: Outlier {
                consecutive_5xx: self.consecutive_5xx,
                consecutive_gateway_errors: self.consecutive_gateway_errors,
                base_ejection: self.base_ejection_time,
                max_ejection: self.max_ejection_time,
                max_ejection_percent: self.max_ejection_percent,
                ..core.outlier
            },
            slow_start: SlowStart {
                window: self.slow_start_window,
                ..core.slow_start
            },
            seed: core.seed,
        }
    }
}
