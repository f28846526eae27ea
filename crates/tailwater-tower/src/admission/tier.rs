//! The tier step: what a request claims (`x-criticality`), capped at the route's ceiling
//! unless the client is a trusted source.
//!
//! Anyone can send `x-criticality: critical_plus`. A [`TierPolicy`] with a ceiling lowers
//! every claim above it to the ceiling, except from the client addresses it trusts
//! ([`SourceNet`]: the peer of the connection, never a forwarded header, which a client
//! can forge). The proxy's two engines and [`CriticalityLayer`](crate::CriticalityLayer)
//! apply the same rule through [`TierPolicy::cap`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use tailwater_core::Criticality;

use super::{RequestView, tier_of};

/// A network of client addresses: `10.0.0.0/8`, `2001:db8::/32`, or one address
/// (`127.0.0.1`, a /32 or /128). An IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`) is matched
/// as its IPv4 address.
///
/// ```
/// use tailwater_tower::admission::SourceNet;
/// let net: SourceNet = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.9.8.7".parse().unwrap()));
/// assert!(net.contains("::ffff:10.9.8.7".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.1/33".parse::<SourceNet>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceNet {
    addr: IpAddr,
    bits: u8,
}

/// Why a [`SourceNet`] did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSourceNet(pub String);

impl fmt::Display for InvalidSourceNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an address or a network (`10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1`)",
            self.0
        )
    }
}

impl std::error::Error for InvalidSourceNet {}

impl SourceNet {
    /// The network of the first `bits` bits of `addr` (at most 32 for IPv4, 128 for
    /// IPv6). The bits after the prefix are ignored.
    pub fn new(addr: IpAddr, bits: u8) -> Result<Self, InvalidSourceNet> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(InvalidSourceNet(format!("{addr}/{bits}")));
        }
        Ok(match addr {
            // A mapped IPv4 network is kept as the IPv4 network it maps.
            IpAddr::V6(v6) if bits >= 96 && v6.to_ipv4_mapped().is_some() => Self {
                addr: unmap(addr),
                bits: bits - 96,
            },
            _ => Self { addr, bits },
        })
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self.addr {
            IpAddr::V4(net) => match unmap(ip) {
                IpAddr::V4(ip) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                    u32::from(net) & mask == u32::from(ip) & mask
                }
                IpAddr::V6(_) => false,
            },
            IpAddr::V6(net) => {
                let ip = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
        }
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; any other as is.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for SourceNet {
    type Err = InvalidSourceNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidSourceNet(s.to_owned());
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let bits = match bits {
            Some(b) => b.parse::<u8>().map_err(|_| bad())?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, bits).map_err(|_| bad())
    }
}

impl fmt::Display for SourceNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// The tier step of admission: the highest tier a request may have (the **ceiling**), and
/// the client networks trusted to claim above it.
///
/// The tier is the request's claim ([`tier_of`]: `x-criticality`, `Critical` without
/// one), lowered to the ceiling unless the connection's peer is in a trusted network. The
/// default policy has no ceiling (`CriticalPlus`): every claim stands, as before a ceiling
/// existed.
///
/// ```
/// use tailwater_core::Criticality;
/// use tailwater_tower::admission::TierPolicy;
/// let policy = TierPolicy::new()
///     .ceiling(Criticality::Critical)
///     .trust(["10.0.0.0/8".parse().unwrap()]);
/// let claim = http::Request::builder().header("x-criticality", "critical_plus").body(()).unwrap();
/// // An outside client is lowered to the ceiling; a trusted one keeps its claim.
/// assert_eq!(policy.tier(&claim, Some("203.0.113.9".parse().unwrap())), Criticality::Critical);
/// assert_eq!(policy.tier(&claim, Some("10.1.1.1".parse().unwrap())), Criticality::CriticalPlus);
/// // No peer known: not trusted.
/// assert_eq!(policy.tier(&claim, None), Criticality::Critical);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierPolicy {
    ceiling: Criticality,
    trusted: Arc<[SourceNet]>,
}

impl Default for TierPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl TierPolicy {
    /// No ceiling, nobody singled out: every claim stands.
    pub fn new() -> Self {
        Self {
            ceiling: Criticality::CriticalPlus,
            trusted: Arc::from([]),
        }
    }

    /// The highest tier a request from an untrusted client gets; higher claims are
    /// lowered to it.
    pub fn ceiling(mut self, tier: Criticality) -> Self {
        self.ceiling = tier;
        self
    }

    /// Trusts the clients in `nets` to claim any tier (they are not capped).
    pub fn trust(mut self, nets: impl IntoIterator<Item = SourceNet>) -> Self {
        self.trusted = self.trusted.iter().copied().chain(nets).collect();
        self
    }

    /// The ceiling (`CriticalPlus`: none).
    pub fn get_ceiling(&self) -> Criticality {
        self.ceiling
    }

    /// The trusted networks.
    pub fn trusted(&self) -> &[SourceNet] {
        &self.trusted
    }

    /// `claimed`, lowered to the ceiling unless `peer` is trusted (an unknown peer is not).
    #[inline]
    pub fn cap(&self, claimed: Criticality, peer: Option<IpAddr>) -> Criticality {
        // More important compares greater.
        if claimed <= self.ceiling
            || peer.is_some_and(|p| self.trusted.iter().any(|n| n.contains(p)))
        {
            claimed
        } else {
            self.ceiling
        }
    }

    /// The tier of `req` from a client at `peer`: its claim ([`tier_of`]) capped by
    /// [`cap`](Self::cap).
    #[inline]
    pub fn tier(&self, req: &impl RequestView, peer: Option<IpAddr>) -> Criticality {
        self.cap(tier_of(req), peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_their_prefix_only() {
        let v6: SourceNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let one: SourceNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: SourceNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("198.51.100.1".parse().unwrap()));
        let mapped: SourceNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains("10.200.0.1".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/",
            "10/8",
            "::/129",
            "example.com",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<SourceNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_at_or_below_the_ceiling_stand() {
        let p = TierPolicy::new().ceiling(Criticality::SheddablePlus);
        let outside = Some("192.0.2.1".parse().unwrap());
        assert_eq!(
            p.cap(Criticality::Sheddable, outside),
            Criticality::Sheddable
        );
        assert_eq!(
            p.cap(Criticality::SheddablePlus, outside),
            Criticality::SheddablePlus
        );
        assert_eq!(
            p.cap(Criticality::Critical, outside),
            Criticality::SheddablePlus
        );
        assert_eq!(
            TierPolicy::new().cap(Criticality::CriticalPlus, None),
            Criticality::CriticalPlus
        );
    }
}
