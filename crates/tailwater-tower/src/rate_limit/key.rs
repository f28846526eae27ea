use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderName;
use http::request::Parts;

/// Extracts the rate-limit key of a request. `None`: the request has no key (see
/// [`MissingKey`](super::MissingKey)).
///
/// Implemented by [`PeerIp`], [`HeaderKey`], [`PathKey`], and closures
/// `Fn(&http::request::Parts) -> Option<String>`.
pub trait KeyExtractor: Clone + Send + Sync + 'static {
    /// The key of `request`.
    fn extract(&self, request: &Parts) -> Option<String>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&Parts) -> Option<String> + Clone + Send + Sync + 'static,
{
    fn extract(&self, request: &Parts) -> Option<String> {
        self(request)
    }
}

/// The peer's address, as a request extension. Servers built on hyper insert it themselves
/// (`req.extensions_mut().insert(PeerAddr(remote))`); [`PeerIp`] also finds a bare
/// `SocketAddr` extension and, with the `axum` feature, axum's `ConnectInfo<SocketAddr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// Keys by the peer's IP address (from the connection, never from `X-Forwarded-For`, which a
/// client can forge; behind a trusted proxy use a closure over the header instead).
///
/// IPv6 clients usually own a whole /64: [`ipv6_prefix`](Self::ipv6_prefix) keys them by
/// prefix so that rotating addresses does not multiply their quota.
///
/// ```
/// use std::net::SocketAddr;
/// use tailwater_tower::rate_limit::{KeyExtractor, PeerAddr, PeerIp};
/// let (mut parts, _) = http::Request::new(()).into_parts();
/// parts.extensions.insert(PeerAddr("[2001:db8::1:2]:443".parse::<SocketAddr>().unwrap()));
/// assert_eq!(PeerIp::new().extract(&parts).as_deref(), Some("2001:db8::1:2"));
/// assert_eq!(PeerIp::new().ipv6_prefix(64).extract(&parts).as_deref(), Some("2001:db8::"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PeerIp {
    ipv6_prefix: u8,
}

impl PeerIp {
    /// Keys by the full address.
    pub const fn new() -> Self {
        Self { ipv6_prefix: 128 }
    }

    /// Keys IPv6 peers by their first `bits` bits (clamped to 1..=128).
    pub const fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = if bits == 0 {
            1
        } else if bits > 128 {
            128
        } else {
            bits
        };
        self
    }

    fn peer(parts: &Parts) -> Option<SocketAddr> {
        peer_addr(parts)
    }
}

/// The peer's address from the request extensions: [`PeerAddr`], a bare `SocketAddr`, or
/// (with the `axum` feature) axum's `ConnectInfo<SocketAddr>`.
pub(crate) fn peer_addr(parts: &Parts) -> Option<SocketAddr> {
    if let Some(PeerAddr(addr)) = parts.extensions.get::<PeerAddr>() {
        return Some(*addr);
    }
    if let Some(addr) = parts.extensions.get::<SocketAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0);
    }
    None
}

impl Default for PeerIp {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyExtractor for PeerIp {
    fn extract(&self, request: &Parts) -> Option<String> {
        let ip = match Self::peer(request)?.ip() {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => IpAddr::V4(v6.to_ipv4_mapped()?),
            IpAddr::V6(v6) if self.ipv6_prefix < 128 => {
                let mask = u128::MAX << (128 - u32::from(self.ipv6_prefix));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
            ip => ip,
        };
        Some(ip.to_string())
    }
}

/// Keys by the value of a header (an API key, a tenant id). A missing or non-UTF-8 value is
/// no key.
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys by header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl KeyExtractor for HeaderKey {
    fn extract(&self, request: &Parts) -> Option<String> {
        let v = request.headers.get(&self.name)?.to_str().ok()?;
        Some(v.to_owned())
    }
}

/// Keys by the request path (one budget per route). For path templates rather than raw
/// paths (`/users/{id}`), use a closure over your router's matched-path extension.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathKey;

impl KeyExtractor for PathKey {
    fn extract(&self, request: &Parts) -> Option<String> {
        Some(request.uri.path().to_owned())
    }
}
