//! `[route.upgrade]`: which `Upgrade` requests a route tunnels and how (`crate::tunnel`).

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration};

/// Whether the route's admission permit is held for a tunnel's whole life or only while
/// the upgrade is set up (see the module docs for why `setup` is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PermitPolicy {
    /// Released when the upstream answers the upgrade, with the handshake's latency as
    /// the sample.
    #[default]
    Setup,
    /// Held until the tunnel closes, then released without a sample.
    Tunnel,
}

/// `[route.upgrade]`: tunnel HTTP/1.1 `Upgrade` requests of this route (WebSocket).
///
/// ```toml
/// [route.upgrade]
/// protocols = ["websocket"]   # the Upgrade protocols tunnelled (case-insensitive)
/// idle_timeout = "60s"        # no byte either way, or an upstream that accepts none
/// max_duration = "1h"         # a tunnel's whole life
/// buffer_bytes = 8192         # per direction
/// permit = "setup"            # or "tunnel"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeSettings {
    /// Protocol names (`Upgrade` values without a version) that may be tunnelled.
    pub protocols: Vec<String>,
    /// A tunnel that moves no byte for this long, or whose upstream accepts no byte for
    /// this long, is closed (a client that accepts none is cut after
    /// `server.send_timeout`). Default 60 s.
    #[serde(deserialize_with = "duration::de")]
    pub idle_timeout: Duration,
    /// Longest life of a tunnel. Default 1 h.
    #[serde(deserialize_with = "duration::de")]
    pub max_duration: Duration,
    /// Copy buffer per direction, bytes (1 KiB to 1 MiB). Default 8 KiB.
    pub buffer_bytes: usize,
    /// When the admission permit is released. Default `setup`.
    pub permit: PermitPolicy,
}

impl Default for UpgradeSettings {
    fn default() -> Self {
        Self {
            protocols: vec!["websocket".to_owned()],
            idle_timeout: Duration::from_secs(60),
            max_duration: Duration::from_secs(3600),
            buffer_bytes: 8 * 1024,
            permit: PermitPolicy::Setup,
        }
    }
}

/// Longest `max_duration` (a week) and `idle_timeout` (an hour).
const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);
const MAX_IDLE: Duration = Duration::from_secs(3600);
/// `buffer_bytes` bounds.
const MIN_BUFFER: usize = 1024;
const MAX_BUFFER: usize = 1024 * 1024;

impl UpgradeSettings {
    /// Checks the settings of route `prefix` (`route[i]`) whose upstream speaks `http1`.
    pub(crate) fn validate(&self, prefix: &str, http1: bool) -> Result<(), ConfigError> {
        let field = |f: &str| format!("{prefix}.upgrade.{f}");
        if !http1 {
            return Err(ConfigError::new(
                format!("{prefix}.upgrade"),
                "needs an HTTP/1.1 upstream (`protocol = \"http1\"`): HTTP/2 has no Upgrade",
            ));
        }
        if self.protocols.is_empty() {
            return Err(ConfigError::new(field("protocols"), "must not be empty"));
        }
        for p in &self.protocols {
            if p.is_empty() || p.len() > 64 || !p.bytes().all(is_token_byte) {
                return Err(ConfigError::new(
                    field("protocols"),
                    format!("`{p}` is not a protocol name (a token, at most 64 bytes)"),
                ));
            }
        }
        for (name, v, hi) in [
            ("idle_timeout", self.idle_timeout, MAX_IDLE),
            ("max_duration", self.max_duration, MAX_DURATION),
        ] {
            if v < Duration::from_millis(1) || v > hi {
                return Err(ConfigError::new(
                    field(name),
                    format!(
                        "must be within [1ms, {}], got {}",
                        duration::format(hi),
                        duration::format(v)
                    ),
                ));
            }
        }
        if !(MIN_BUFFER..=MAX_BUFFER).contains(&self.buffer_bytes) {
            return Err(ConfigError::new(
                field("buffer_bytes"),
                format!(
                    "must be within [{MIN_BUFFER}, {MAX_BUFFER}], got {}",
                    self.buffer_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
