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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn a_refused_port_refuses_and_is_not_handed_out_again() {
        let held = RefusedPort::new().expect("hold");
        let err = TcpStream::connect(held.addr()).expect_err("nothing listens");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // While held, binding its port exactly fails (so does bind(0) returning it).
        assert!(TcpListener::bind(held.addr()).is_err());
    }

    #[test]
    fn a_held_listener_serves_then_refuses_after_it_is_dropped() {
        let (listener, held) = listener_with_held_port().expect("listener");
        assert_eq!(listener.local_addr().expect("addr"), held.addr());
        let client = TcpStream::connect(held.addr()).expect("listening");
        let (_served, _) = listener.accept().expect("accept");
        drop(client);
        drop(listener);
        // A process another test spawns at this moment holds a copy of the listening
        // socket from its fork until its exec (close-on-exec), and a connect in that
        // window is accepted, then reset: poll for the refusal, within a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let err = loop {
            match TcpStream::connect(held.addr()) {
                Err(e) => break e,
                Ok(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Ok(s) => panic!("still accepting after 5 s: {s:?}"),
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(
            TcpListener::bind(held.addr()).is_err(),
            "the port stays held"
        );
    }
}
