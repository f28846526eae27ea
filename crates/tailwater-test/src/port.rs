//! Loopback ports that stay refused: the dead endpoint of a test.
//!
//! A test that binds a listener, reads its port and drops it, then uses that port as "a
//! port nobody listens on", races every other test running at the same time: the kernel
//! hands a freed port to the next `bind(0)` soon and often (measured here: the `balance`
//! tests' dead endpoint answered as another test's backend in 2 of 90 runs under load).
//! [`RefusedPort`] keeps the port bound, without listening, for as long as it lives, so a
//! connect to it is refused (RST) and no other socket can take it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use socket2::{Domain, SockAddr, Socket, Type};

/// A loopback port that is bound but not listening: every connect to [`addr`](Self::addr)
/// is refused until this is dropped, and `bind(0)` never hands the port to anyone else.
#[derive(Debug)]
pub struct RefusedPort {
    _socket: Socket,
    addr: SocketAddr,
}

impl RefusedPort {
    /// Holds a fresh loopback port.
    ///
    /// # Errors
    ///
    /// Fails only if the system is out of sockets or loopback ports.
    pub fn new() -> io::Result<Self> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), false)
    }

    /// The address to point a client at: connects to it are refused.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&SockAddr::from(addr))?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound socket has no inet address"))?;
        Ok(Self {
            _socket: socket,
            addr,
        })
    }
}

/// A loopback listener (blocking; call `set_nonblocking(true)` before handing it to an
/// async runtime) whose port outlives it: once the listener is dropped, connects to its
/// address are refused while the returned [`RefusedPort`] lives. For a backend a test
/// kills mid-run and must then stay dead.
///
/// # Errors
///
/// Fails only if the system is out of sockets or loopback ports.
pub fn listener_with_held_port() -> io::Result<(TcpListener, RefusedPort)> {
    // Both sockets set SO_REUSEPORT before binding, so the second may share the port; it
    // never listens, so it takes no connection while the listener lives.
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    listener.set_reuse_port(true)?;
    listener.bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))?;
    listener.listen(1024)?;
    let listener: TcpListener = listener.into();
    let hold = RefusedPort::bind(listener.local_addr()?, true)?;
    Ok((listener, hold))
}
