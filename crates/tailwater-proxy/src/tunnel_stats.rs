//! The tunnels' counters: how many are open (against `server.max_tunnels`), the memory
//! their buffers hold, and how they ended (`crate::tunnel`); below the connection state
//! and the metrics that hold them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Both directions ended (each end closed its side), or one end reset.
    Closed,
    /// No byte moved either way for `idle`.
    Idle,
    /// The client accepted no byte for `client_stall` while bytes waited for it.
    ClientStalled,
    /// The upstream accepted no byte for `idle` while bytes waited for it.
    UpstreamStalled,
    /// `max_duration` passed.
    MaxDuration,
    /// An I/O error, or the upgrade never completed.
    Error,
}

impl End {
    /// Every reason, in the order of [`End::index`].
    pub(crate) const ALL: [End; 6] = [
        End::Closed,
        End::Idle,
        End::ClientStalled,
        End::UpstreamStalled,
        End::MaxDuration,
        End::Error,
    ];

    /// The `reason` label of `tailwater_tunnels_closed_total`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Idle => "idle",
            End::ClientStalled => "client_stalled",
            End::UpstreamStalled => "upstream_stalled",
            End::MaxDuration => "max_duration",
            End::Error => "error",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            End::Closed => 0,
            End::Idle => 1,
            End::ClientStalled => 2,
            End::UpstreamStalled => 3,
            End::MaxDuration => 4,
            End::Error => 5,
        }
    }
}

/// Lock-free tunnel counters, rendered as `tailwater_tunnel*` metrics.
#[derive(Debug, Default)]
pub(crate) struct TunnelStats {
    /// Places taken under `server.max_tunnels`: upgrades being set up and tunnels open.
    reserved: AtomicU64,
    /// Tunnels copying bytes now.
    open: AtomicU64,
    /// Bytes of copy buffers held by the open tunnels.
    buffer_bytes: AtomicU64,
    /// Tunnels started.
    started: AtomicU64,
    /// Upgrade requests refused because `server.max_tunnels` were taken.
    refused: AtomicU64,
    /// Tunnels ended, by [`End`].
    ended: [AtomicU64; End::ALL.len()],
}

/// An open tunnel's share of the gauges, given back on drop.
#[derive(Debug)]
pub(crate) struct Opened<'a> {
    stats: &'a TunnelStats,
    bytes: u64,
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        self.stats
            .buffer_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl TunnelStats {
    /// Takes a place if fewer than `cap` are taken (counting a refusal otherwise).
    pub(crate) fn reserve(&self, cap: usize) -> bool {
        let cap = cap as u64;
        let taken = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            });
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken.is_ok()
    }

    /// Gives a place back.
    pub(crate) fn release(&self) {
        self.reserved.fetch_sub(1, Ordering::AcqRel);
    }

    /// A tunnel with two buffers of `buffer` bytes starts copying.
    pub(crate) fn opened(&self, buffer: usize) -> Opened<'_> {
        let bytes = 2 * buffer as u64;
        self.started.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        self.buffer_bytes.fetch_add(bytes, Ordering::Relaxed);
        Opened { stats: self, bytes }
    }

    /// Counts a tunnel's end.
    pub(crate) fn ended(&self, end: End) {
        self.ended[end.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Tunnels copying now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Bytes of copy buffer the open tunnels hold.
    #[cfg(test)]
    pub(crate) fn buffer_bytes(&self) -> u64 {
        self.buffer_bytes.load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text of the counters to `out` (names from the one vocabulary,
    /// `tailwater_core::vocabulary`).
    pub(crate) fn render(&self, out: &mut String) {
        use tailwater_core::vocabulary as v;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (metric, value) in [
            (v::TUNNELS_OPEN, &self.open),
            (v::TUNNEL_BUFFER_BYTES, &self.buffer_bytes),
            (v::TUNNELS, &self.started),
            (v::TUNNELS_REFUSED, &self.refused),
        ] {
            metric.write_header(out);
            let _ = writeln!(out, "{} {}", metric.name, g(value));
        }
        v::TUNNELS_CLOSED.write_header(out);
        for end in End::ALL {
            let _ = writeln!(
                out,
                "{}{{reason=\"{}\"}} {}",
                v::TUNNELS_CLOSED.name,
                end.as_str(),
                g(&self.ended[end.index()])
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_and_buffers_accounted() {
        let s = TunnelStats::default();
        assert!(s.reserve(2));
        assert!(s.reserve(2));
        assert!(!s.reserve(2), "the cap");
        s.release();
        assert!(s.reserve(2), "a place given back is free again");
        let a = s.opened(8192);
        let b = s.opened(8192);
        assert_eq!((s.open(), s.buffer_bytes()), (2, 4 * 8192));
        drop(a);
        assert_eq!((s.open(), s.buffer_bytes()), (1, 2 * 8192));
        drop(b);
        s.ended(End::Idle);
        let mut text = String::new();
        s.render(&mut text);
        assert!(text.contains("tailwater_tunnels_refused_total 1"), "{text}");
        assert!(text.contains("tailwater_tunnels_closed_total{reason=\"idle\"} 1"));
        assert!(text.contains("tailwater_tunnel_buffer_bytes 0"));
    }
}
