//! `[server.tls]`: the listener's certificates (built into an acceptor by `crate::tls`).

use std::path::PathBuf;

use serde::Deserialize;

/// `[server.tls]`: serve TLS on the listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first) for clients that send no server name, or one no
    /// `[[server.tls.sni]]` entry names.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// Certificates per server name.
    #[serde(default)]
    pub sni: Vec<SniCert>,
    /// PEM CA certificates: when set, clients must present a certificate they signed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// One `[[server.tls.sni]]` entry: the certificate for one server name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// The DNS name clients send in SNI (exact match, case-insensitive).
    pub name: String,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[route.tls]`: how the proxy verifies and authenticates to the route's `https://`
/// upstreams.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsSettings {
    /// PEM CA certificates trusted for the upstream (besides the system's roots when
    /// `system_roots` is true).
    pub ca: Option<PathBuf>,
    /// Trust the system's roots (default true). With false, `ca` is required.
    pub system_roots: bool,
    /// The name sent in SNI and verified in the upstream's certificate (default: the
    /// upstream URI's host).
    pub server_name: Option<String>,
    /// PEM client certificate chain (leaf first) presented to the upstream.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

impl Default for UpstreamTlsSettings {
    fn default() -> Self {
        Self {
            ca: None,
            system_roots: true,
            server_name: None,
            cert: None,
            key: None,
        }
    }
}
