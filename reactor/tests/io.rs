//! I/O readiness through a real `mio` poll: a TCP listener and stream pair on 127.0.0.1.

mod common;

use std::io::{self, Read, Write};
use std::net::{self, SocketAddr};
use std::task::{Context, Poll};

use common::{eventually_metrics, wait_ready, Flag, PATIENCE};
use grove_reactor::{Direction, Reactor};
use mio::net::{TcpListener, TcpStream};
use mio::Interest;

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A connected pair: the server end non-blocking for mio, the client end a blocking std socket.
fn pair() -> (TcpStream, net::TcpStream) {
    let listener = net::TcpListener::bind(localhost()).unwrap();
    let client = net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    (TcpStream::from_std(server), client)
}

/// Reads until `WouldBlock`, as an edge-triggered caller must; returns what it read.
fn drain(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

#[test]
fn listener_becomes_readable_and_wakes_from_the_reactor_thread() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let mut listener = TcpListener::bind(localhost()).unwrap();
    let reg = handle.register(&mut listener, Interest::READABLE).unwrap();
    let flag = Flag::new();
    let waker = flag.waker();
    let mut cx = Context::from_waker(&waker);

    // Nothing to accept yet: the waker is stored.
    assert!(reg.poll_ready(Direction::Read, &mut cx).is_pending());
    let _client = net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert!(
        flag.wait_for(1, PATIENCE),
        "connection did not wake the acceptor"
    );
    assert_eq!(flag.woken_by().as_deref(), Some("grove-reactor"));
    assert!(matches!(
        reg.poll_ready(Direction::Read, &mut cx),
        Poll::Ready(Ok(()))
    ));
    listener.accept().unwrap();

    // Edge-triggered: accept until WouldBlock, clear, and the next poll waits again.
    let err = listener.accept().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    reg.clear_readiness(Direction::Read);
    assert!(reg.poll_ready(Direction::Read, &mut cx).is_pending());
    assert_eq!(handle.metrics().registrations, 1);
    reg.deregister(&mut listener).unwrap();
    assert_eq!(handle.metrics().registrations, 0);
}

#[test]
fn clear_after_would_block_then_new_data_rearms() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let (mut server, mut client) = pair();
    let reg = handle
        .register(&mut server, Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    let flag = Flag::new();
    let waker = flag.waker();
    let mut cx = Context::from_waker(&waker);

    for (round, msg) in [&b"hello"[..], b"again", b"third"].into_iter().enumerate() {
        // Not readable: park the reader (a writable event must not wake it).
        assert!(reg.poll_ready(Direction::Read, &mut cx).is_pending());
        client.write_all(msg).unwrap();
        assert!(
            flag.wait_for(round + 1, PATIENCE),
            "round {round}: data did not wake"
        );
        let mut got = Vec::new();
        while got.len() < msg.len() {
            assert!(wait_ready(&reg, Direction::Read).is_ok());
            got.extend(drain(&mut server));
            // The last read returned WouldBlock.
            reg.clear_readiness(Direction::Read);
        }
        assert_eq!(got, msg);
    }
}

#[test]
fn an_event_between_would_block_and_clear_is_not_lost() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let (mut server, mut client) = pair();
    let reg = handle.register(&mut server, Interest::READABLE).unwrap();

    client.write_all(b"a").unwrap();
    wait_ready(&reg, Direction::Read).unwrap();
    assert_eq!(drain(&mut server), b"a"); // ends in WouldBlock

    // Before the reader clears, new data arrives and the reactor dispatches its event.
    let dispatched = handle.metrics().events_dispatched;
    client.write_all(b"b").unwrap();
    eventually_metrics(&handle, "the second event", |m| {
        m.events_dispatched > dispatched
    });
    reg.clear_readiness(Direction::Read);

    // The clear must not have erased that event: ready at once, no waker needed.
    let flag = Flag::new();
    let waker = flag.waker();
    let mut cx = Context::from_waker(&waker);
    assert!(
        reg.poll_ready(Direction::Read, &mut cx).is_ready(),
        "event lost by clear_readiness"
    );
    let mut got = drain(&mut server);
    while got.is_empty() {
        // A stray earlier event could have been the one counted; then wait for the real one.
        reg.clear_readiness(Direction::Read);
        wait_ready(&reg, Direction::Read).unwrap();
        got = drain(&mut server);
    }
    assert_eq!(got, b"b");
}

#[test]
fn writable_then_read_closed_on_peer_close() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let (mut server, client) = pair();
    let reg = handle
        .register(&mut server, Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    wait_ready(&reg, Direction::Write).unwrap();
    server.write_all(b"ping").unwrap();

    drop(client);
    wait_ready(&reg, Direction::Read).unwrap();
    let mut buf = [0; 8];
    // EOF (or a reset, since we sent data the peer never read); either way not WouldBlock.
    match server.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_ne!(e.kind(), io::ErrorKind::WouldBlock),
    }
    // Closed is final: clearing does not make the reader wait forever.
    reg.clear_readiness(Direction::Read);
    wait_ready(&reg, Direction::Read).unwrap();
}

#[test]
fn registrations_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<grove_reactor::Registration>();
    assert_send_sync::<grove_reactor::Handle>();
    assert_send_sync::<grove_reactor::Reactor>();
}
