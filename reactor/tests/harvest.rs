//! Harvesting from other threads (`Handle::poll_now`) and who sleeps in the kernel
//! (`begin_watching` / `end_watching`): events reach a watching thread without the reactor, and
//! reach the reactor again once the last watcher leaves.

mod common;

use std::io::Write;
use std::net;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use common::{Flag, PATIENCE};
use grove_reactor::{Direction, Handle, Reactor, Registration};
use mio::net::TcpStream;
use mio::Interest;

/// A registered server end (waiting for reads with `flag`'s waker) and its client.
fn waiting_pair(handle: &Handle, flag: &Arc<Flag>) -> (Registration, TcpStream, net::TcpStream) {
    let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let mut server = TcpStream::from_std(server);
    let reg = handle
        .register(&mut server, Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    // Consume the registration's first events (writable), then wait for a read.
    let waker = flag.waker();
    let give_up = Instant::now() + PATIENCE;
    while reg
        .poll_ready(Direction::Read, &mut Context::from_waker(&waker))
        .is_ready()
    {
        reg.clear_readiness(Direction::Read);
        assert!(Instant::now() < give_up);
    }
    (reg, server, client)
}

/// Makes the reactor choose again how to sleep (a notification: an earlier timer), until it has
/// slept aside once more than before (the caller watches, so it will).
fn reactor_goes_aside(handle: &Handle) {
    let before = handle.metrics().sleeps_aside;
    let give_up = Instant::now() + PATIENCE;
    while handle.metrics().sleeps_aside == before {
        assert!(Instant::now() < give_up, "the reactor never slept aside");
        let _ = handle.add_timer(
            Instant::now() + Duration::from_micros(200),
            Flag::new().waker(),
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// Waits with `flag`'s waker until `reg` is pending for reads again, consuming what is there.
fn rearm(reg: &Registration, server: &mut TcpStream, flag: &Arc<Flag>) {
    let waker = flag.waker();
    let mut buf = [0u8; 16];
    while reg
        .poll_ready(Direction::Read, &mut Context::from_waker(&waker))
        .is_ready()
    {
        while std::io::Read::read(server, &mut buf).is_ok() {}
        reg.clear_readiness(Direction::Read);
    }
}

#[test]
fn a_watcher_harvests_events_on_its_own_thread() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let flag = Flag::new();
    let (reg, mut server, mut client) = waiting_pair(&handle, &flag);
    let before = handle.metrics();

    let stop = Arc::new(AtomicBool::new(false));
    let watching = Arc::new(AtomicBool::new(false));
    let harvester = thread::Builder::new()
        .name("harvester".into())
        .spawn({
            let (handle, stop, watching) = (handle.clone(), stop.clone(), watching.clone());
            move || {
                handle.begin_watching();
                watching.store(true, Ordering::SeqCst);
                while !stop.load(Ordering::SeqCst) {
                    handle.poll_now();
                    thread::yield_now();
                }
                handle.end_watching();
            }
        })
        .unwrap();
    common::eventually("the harvester watches", || watching.load(Ordering::SeqCst));
    reactor_goes_aside(&handle);
    // The reactor harvests itself only if the watcher has not for a millisecond, which a
    // loaded machine can cause now and then: of several events, the watcher takes some.
    let mut by_harvester = 0;
    for i in 1..=20 {
        client.write_all(b"x").unwrap();
        assert!(flag.wait_for(i, PATIENCE), "event {i} never came");
        if flag.woken_by().as_deref() == Some("harvester") {
            by_harvester += 1;
        }
        rearm(&reg, &mut server, &flag);
    }
    stop.store(true, Ordering::SeqCst);
    harvester.join().unwrap();

    assert!(by_harvester > 0, "the watcher never harvested");
    let after = handle.metrics();
    assert!(after.events_by_workers - before.events_by_workers >= by_harvester);
    reactor.shutdown();
}

#[test]
fn the_last_watcher_leaving_hands_events_back_to_the_reactor() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let flag = Flag::new();
    let (_reg, _server, mut client) = waiting_pair(&handle, &flag);

    handle.begin_watching();
    reactor_goes_aside(&handle);
    // The only watcher goes to sleep without harvesting again: from now on only the reactor
    // can notice the event, and it must (it sleeps aside, and the stale-watch check does not
    // apply without watchers).
    handle.end_watching();
    client.write_all(b"x").unwrap();
    assert!(flag.wait_for(1, PATIENCE), "event stranded: nobody watched");
    assert_eq!(flag.woken_by().as_deref(), Some("grove-reactor"));
    reactor.shutdown();
}

#[test]
fn a_due_timer_fires_once_whoever_harvests_it() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    handle.begin_watching();
    let flag = Flag::new();
    let deadline = Instant::now() + Duration::from_millis(5);
    let _ = handle.add_timer(deadline, flag.waker());
    assert!(!flag.wait_for(1, Duration::ZERO), "fired early");
    while Instant::now() < deadline {
        thread::yield_now();
    }
    // The reactor and this thread race for it.
    let by_us = handle.poll_now();
    assert!(flag.wait_for(1, PATIENCE), "the timer never fired");
    assert_eq!(flag.wakes(), 1);
    let m = handle.metrics();
    assert_eq!(m.timers_fired, 1);
    assert_eq!(m.timers_by_workers as usize, by_us);
    if by_us == 1 {
        assert_eq!(flag.woken_by(), thread::current().name().map(str::to_owned));
    }
    handle.end_watching();
    reactor.shutdown();
}

#[test]
fn poll_now_without_anything_ready_wakes_nobody() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    let flag = Flag::new();
    let (reg, _server, _client) = waiting_pair(&handle, &flag);
    assert_eq!(handle.poll_now(), 0);
    assert_eq!(flag.wakes(), 0);
    let waker = flag.waker();
    assert!(matches!(
        reg.poll_ready(Direction::Read, &mut Context::from_waker(&waker)),
        Poll::Pending
    ));
    reactor.shutdown();
}

/// While a thread watches, the watchers fire timers as they harvest, so the reactor does not
/// wake for every deadline (it used to: one wake-up per timer tick under dense timers, a
/// context switch each). Sixty timers 300 µs apart, harvested by a watcher: the reactor wakes
/// about once per stale-watch interval (1 ms) over their 18 ms, not sixty times.
#[test]
fn the_reactor_leaves_timers_to_watchers() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    handle.begin_watching();
    reactor_goes_aside(&handle);
    let flags: Vec<_> = (0..60).map(|_| Flag::new()).collect();
    let start = Instant::now() + Duration::from_millis(2);
    for (i, f) in flags.iter().enumerate() {
        let _ = handle.add_timer(start + Duration::from_micros(300 * i as u64), f.waker());
    }
    let before = handle.metrics();
    let give_up = Instant::now() + PATIENCE;
    while !flags.iter().all(|f| f.wakes() == 1) {
        assert!(Instant::now() < give_up, "timers never fired");
        handle.poll_now();
        thread::yield_now();
    }
    let after = handle.metrics();
    handle.end_watching();
    let polls = after.polls - before.polls;
    assert!(
        polls < 40,
        "the reactor woke {polls} times for 60 timers over 18 ms that a watcher harvested"
    );
    // (`reactor_goes_aside`'s probe timers may fire in the window too.)
    assert!(after.timers_fired - before.timers_fired >= 60);
    reactor.shutdown();
}

/// A watcher that never harvests (a worker stuck in a greenlet that does not yield) does not
/// strand a timer: the reactor, aside, fires it at its next stale-watch wake-up.
#[test]
fn a_watcher_that_never_harvests_does_not_strand_a_timer() {
    let reactor = Reactor::start().unwrap();
    let handle = reactor.handle();
    handle.begin_watching();
    reactor_goes_aside(&handle);
    let flag = Flag::new();
    let deadline = Instant::now() + Duration::from_millis(5);
    let _ = handle.add_timer(deadline, flag.waker());
    assert!(flag.wait_for(1, PATIENCE), "the timer was slept through");
    assert!(Instant::now() >= deadline, "fired early");
    assert_eq!(flag.woken_by().as_deref(), Some("grove-reactor"));
    handle.end_watching();
    reactor.shutdown();
}
