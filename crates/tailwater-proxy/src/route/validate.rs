//! [`Config::validate`]: the semantic checks, which build what the configuration describes
//! (the listener's TLS acceptor, every route with its limiter, rate limits and pools) and
//! drop it. Here, above the configuration, so that the configuration types depend on
//! nothing they configure.

use super::RouteTable;
use crate::config::{Config, ConfigError};

impl Config {
    /// Semantic validation: everything deserialisation cannot check (ranges, limits, the
    /// core builders' own checks). The error names the field as a path such as
    /// `route[1].limit.min_limit`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.server.tls {
            crate::tls::acceptor(tls)?;
        }
        self.check_access_log()?;
        RouteTable::build(self).map(|_| ())
    }
}
