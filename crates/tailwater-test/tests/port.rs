//! `tailwater_test::port` over real loopback sockets. In a test binary of its own: the
//! launcher tests beside the library spawn servers, and a process spawned while a listener
//! is dropped holds a copy of it from its fork until its exec (one more connect would be
//! accepted there, then reset). Nothing here spawns, so the refusal is immediate.

use std::io;
use std::net::{TcpListener, TcpStream};

use tailwater_test::port::{RefusedPort, listener_with_held_port};

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
    let err = TcpStream::connect(held.addr()).expect_err("dead now");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    assert!(
        TcpListener::bind(held.addr()).is_err(),
        "the port stays held"
    );
}
