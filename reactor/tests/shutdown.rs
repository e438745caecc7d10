//! Shutdown wakes everyone and turns later calls into immediate wakes or errors.

mod common;

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use common::{Flag, PATIENCE};
use grove_reactor::{Direction, Reactor};
use mio::net::TcpListener;
use mio::Interest;

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap()
}

fn assert_shutdown_error(err: &io::Error) {
    assert_eq!(err.kind(), io::ErrorKind::Other);
    assert_eq!(err.to_string(), "grove reactor is shut down");
}

#[test]
fn shutdown_wakes_pending_timers_and_joins_the_thread() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let flags: Vec<_> = (0..3).map(|_| Flag::new()).collect();
    let far = Instant::now() + Duration::from_secs(3600);
    let keys: Vec<_> = flags
        .iter()
        .map(|flag| handle.add_timer(far, flag.waker()))
        .collect();
    assert!(!handle.is_shutdown());
    reactor.shutdown();
    // Joined: the reactor thread woke them on its way out, before `shutdown` returned.
    for flag in &flags {
        assert_eq!(flag.wakes(), 1);
        assert_eq!(flag.woken_by().as_deref(), Some("grove-reactor"));
    }
    assert!(handle.is_shutdown());
    // They count as fired, not cancelled.
    assert!(keys.into_iter().all(|key| !handle.cancel_timer(key)));
    assert_eq!(handle.metrics().timers_pending, 0);
}

#[test]
fn add_timer_after_shutdown_wakes_at_once() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    drop(reactor); // Drop shuts down too.
    assert!(handle.is_shutdown());
    let flag = Flag::new();
    let key = handle.add_timer(Instant::now() + Duration::from_secs(3600), flag.waker());
    assert_eq!(flag.wakes(), 1);
    assert!(!handle.cancel_timer(key));
}

#[test]
fn register_after_shutdown_fails() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    reactor.shutdown();
    let err = handle
        .register(&mut listener(), Interest::READABLE)
        .unwrap_err();
    assert_shutdown_error(&err);
}

#[test]
fn waiting_registration_is_woken_with_the_shutdown_error() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let mut source = listener();
    let reg = handle.register(&mut source, Interest::READABLE).unwrap();
    let flag = Flag::new();
    let waker = flag.waker();
    let mut cx = Context::from_waker(&waker);
    assert!(reg.poll_ready(Direction::Read, &mut cx).is_pending());

    // Shut down from another thread while this one waits.
    let stopper = thread::spawn(move || reactor.shutdown());
    assert!(flag.wait_for(1, PATIENCE), "waiter not woken by shutdown");
    stopper.join().unwrap();
    match reg.poll_ready(Direction::Read, &mut cx) {
        Poll::Ready(Err(err)) => assert_shutdown_error(&err),
        other => panic!("expected the shutdown error, got {other:?}"),
    }
    match reg.poll_ready(Direction::Write, &mut cx) {
        Poll::Ready(Err(err)) => assert_shutdown_error(&err),
        other => panic!("expected the shutdown error, got {other:?}"),
    }
    // The registry outlives the reactor: deregistering still works.
    reg.deregister(&mut source).unwrap();
}

#[test]
fn racing_adds_and_registers_during_shutdown_never_hang() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let handle = handle.clone();
            thread::spawn(move || {
                let far = Instant::now() + Duration::from_secs(3600);
                let flags: Vec<_> = (0..200)
                    .map(|_| {
                        let flag = Flag::new();
                        handle.add_timer(far, flag.waker());
                        flag
                    })
                    .collect();
                let mut sources = Vec::new();
                for _ in 0..50 {
                    let mut source = listener();
                    if let Ok(reg) = handle.register(&mut source, Interest::READABLE) {
                        sources.push((source, reg));
                    }
                }
                (flags, sources)
            })
        })
        .collect();
    reactor.shutdown();
    for racer in racers {
        let (flags, sources) = racer.join().unwrap();
        // Every timer, whether drained by shutdown or added after it, was woken.
        for flag in flags {
            assert!(flag.wait_for(1, PATIENCE), "a timer hung across shutdown");
        }
        // Every registration that succeeded reports the shutdown.
        for (_, reg) in sources {
            let flag = Flag::new();
            let waker = flag.waker();
            match reg.poll_ready(Direction::Read, &mut Context::from_waker(&waker)) {
                Poll::Ready(Err(err)) => assert_shutdown_error(&err),
                other => panic!("registration survived shutdown: {other:?}"),
            }
        }
    }
}
