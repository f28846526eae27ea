//! Port ownership: one `tailwater proxy` per listening address, unless sharing is asked for.
//!
//! Why: the workers' sockets use `SO_REUSEPORT`, which also lets a second process of the
//! same user bind the same address; the kernel then spreads connections over both, doubling
//! the effective concurrency limit without a word (issue 11, item 6). Before its sockets
//! bind, [`PortLock::take`] makes sure nobody else owns the address:
//!
//! 1. **A lock that dies with the process** (Linux): an abstract Unix socket named after
//!    the address (`@tailwater-proxy/127.0.0.1:8080`). Its bind is atomic, so two proxies
//!    starting at once cannot both win; it lives in the network namespace, as the port
//!    does; and the kernel releases it when the process exits, so no stale lock file.
//! 2. **A probe** for any other listener (another program, or a proxy without the lock):
//!    a plain bind without `SO_REUSEPORT` (with `SO_REUSEADDR`, so connections of an
//!    earlier run in `TIME_WAIT` do not count) fails if any socket listens on the address.
//!
//! `server.reuse_port_shared = true` skips both, for a deliberate hand-over (nginx-style
//! binary upgrade).

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpSocket;

/// Held for as long as the proxy listens on the address.
#[derive(Debug)]
pub(crate) struct PortLock {
    #[cfg(target_os = "linux")]
    _lock: std::os::unix::net::UnixListener,
}

fn in_use(addr: SocketAddr, who: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "{addr} is already served by {who}; a second proxy would silently share its \
             traffic (SO_REUSEPORT). Stop the other one, or set server.reuse_port_shared = \
             true to share on purpose"
        ),
    )
}

impl PortLock {
    /// Takes the address for this process: an error of kind `AddrInUse` if another
    /// tailwater proxy holds it or any socket listens on it.
    pub(crate) fn take(addr: SocketAddr) -> io::Result<Self> {
        let lock = Self::take_unprobed(addr)?;
        probe(addr)?;
        Ok(lock)
    }

    /// Takes the lock only: for an address this process itself listens on already.
    pub(crate) fn take_unprobed(addr: SocketAddr) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        let lock = {
            use std::os::linux::net::SocketAddrExt;
            use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
            let name = format!("tailwater-proxy/{addr}");
            let unix = UnixAddr::from_abstract_name(name.as_bytes())?;
            match UnixListener::bind_addr(&unix) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    return Err(in_use(addr, "another tailwater proxy"));
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Self {
            #[cfg(target_os = "linux")]
            _lock: lock,
        })
    }
}

/// Fails with `AddrInUse` if any socket listens on `addr`.
fn probe(addr: SocketAddr) -> io::Result<()> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    match socket.bind(addr) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(in_use(addr, "another process")),
        Err(e) => Err(e),
    }
}
