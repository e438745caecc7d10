//! `grove::signal` (issue 11): a real signal sent to the process wakes a greenlet in
//! `Signals::wait` (never user code in the handler); `signal_handler` runs a closure in a
//! greenlet per arrival; the disposition is put back when the last listener goes; and
//! `serve_until_signal` in a child process drains a request in flight on SIGTERM, then
//! exits cleanly and says what it drained.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove::net::TcpStream;
use grove::server::StreamServer;
use grove::signal::{signal_handler, Signal, Signals};

/// Generous bound for "does not hang" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(10);

fn send(sig: Signal, pid: u32) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill(2) with a valid signal number; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, sig.number()) }, 0);
}

/// The disposition of `sig` now: the handler address (`SIG_DFL` is 0).
fn disposition(sig: Signal) -> libc::sighandler_t {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null `act` only queries.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::sigaction(sig.number(), std::ptr::null(), &mut old) };
    assert_eq!(r, 0);
    old.sa_sigaction
}

#[test]
fn a_signal_wakes_the_waiting_greenlet_and_the_default_comes_back() {
    assert_eq!(disposition(Signal::User1), libc::SIG_DFL);
    grove::run(|| {
        let signals = Signals::new(&[Signal::User1, Signal::User2]).unwrap();
        assert_ne!(disposition(Signal::User1), libc::SIG_DFL);
        let first = grove::sync::Event::new();
        let waiter = grove::spawn({
            let first = first.clone();
            move || {
                let a = signals.wait().unwrap();
                first.set();
                let b = signals.wait().unwrap();
                (a, b)
            }
        });
        // One at a time: two standard signals pending together are delivered in signal
        // number order, not in the order they were sent (the kernel picks a thread to run
        // the handler, and on a loaded machine it may run only after the second `kill`).
        send(Signal::User2, std::process::id());
        assert!(first.wait_timeout(PATIENCE), "SIGUSR2 never arrived");
        send(Signal::User1, std::process::id());
        assert_eq!(waiter.join().unwrap(), (Signal::User2, Signal::User1));
        // The listener was dropped with its greenlet.
        assert_eq!(disposition(Signal::User1), libc::SIG_DFL);
        assert_eq!(disposition(Signal::User2), libc::SIG_DFL);
    });
}

#[test]
fn every_listener_hears_a_signal_and_a_waiter_can_be_killed() {
    grove::run(|| {
        let a = Signals::new(&[Signal::Hangup]).unwrap();
        let b = Signals::new(&[Signal::Hangup]).unwrap();
        send(Signal::Hangup, std::process::id());
        assert_eq!(a.wait().unwrap(), Signal::Hangup);
        assert_eq!(b.wait().unwrap(), Signal::Hangup);
        let parked = grove::spawn(move || a.wait());
        grove::sleep(Duration::from_millis(10));
        parked.kill();
        assert!(parked.join().unwrap_err().is_killed());
        drop(b);
        assert_eq!(disposition(Signal::Hangup), libc::SIG_DFL);
        assert!(Signals::new(&[]).is_err());
    });
    assert!(
        Signals::new(&[Signal::Hangup]).is_err(),
        "outside a runtime"
    );
}

#[test]
fn signal_handler_runs_the_closure_in_a_greenlet_per_arrival() {
    grove::run(|| {
        let seen = Arc::new(AtomicUsize::new(0));
        let done = grove::sync::Event::new();
        let (s2, d2) = (seen.clone(), done.clone());
        let h = signal_handler(&[Signal::User2], move |sig| {
            assert_eq!(sig, Signal::User2);
            // Greenlet context: blocking calls are fine here.
            grove::sleep(Duration::from_millis(1));
            assert!(grove::greenlet::try_current().is_some());
            if s2.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
                d2.set();
            }
        })
        .unwrap();
        for _ in 0..3 {
            send(Signal::User2, std::process::id());
            // One at a time: the kernel coalesces a signal sent while one is pending.
            let before = seen.load(Ordering::SeqCst);
            let start = Instant::now();
            while seen.load(Ordering::SeqCst) == before {
                assert!(start.elapsed() < PATIENCE);
                grove::sleep(Duration::from_millis(1));
            }
        }
        assert!(done.wait_timeout(PATIENCE));
        h.cancel();
        assert_eq!(disposition(Signal::User2), libc::SIG_DFL);
    });
}

/// The child: a server whose handler answers a request in two parts, served with
/// `serve_until_signal`; prints its address, then the report.
fn child_server() {
    grove::run(|| {
        let me: Arc<std::sync::OnceLock<StreamServer>> = Arc::default();
        let me2 = me.clone();
        let server = StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
            let mut r = BufReader::new(&conn);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            (&conn).write_all(b"got the first part\n").unwrap();
            // Tell the client once the stop is under way (the request is in flight).
            let start = Instant::now();
            while !me2.get().unwrap().is_closed() {
                assert!(start.elapsed() < PATIENCE, "no stop");
                grove::sleep(Duration::from_millis(1));
            }
            (&conn).write_all(b"stopping\n").unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            (&conn)
                .write_all(format!("full response to {line}").as_bytes())
                .unwrap();
        })
        .unwrap();
        me.set(server.clone()).unwrap();
        println!("listening {}", server.local_addr());
        let report = server.serve_until_signal(Duration::from_secs(5)).unwrap();
        println!("report {report}");
    });
}

/// Kills the child if the test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_until_signal_drains_a_request_in_flight_on_sigterm() {
    if common::is_child() {
        child_server();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "--exact",
            "serve_until_signal_drains_a_request_in_flight_on_sigterm",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GROVE_TEST_CHILD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Watchdog: a hang fails the test (the reads below end once the child is gone).
    let pid = child.id();
    let finished = Arc::new(AtomicUsize::new(0));
    let watchdog = {
        let finished = finished.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while finished.load(Ordering::SeqCst) == 0 {
                if start.elapsed() > 3 * PATIENCE {
                    send_kill(pid);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut child = Reap(child);
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    let addr: SocketAddr = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
        // The harness prints "test <name> ... " on the same line.
        if let Some((_, a)) = line.trim().split_once("listening ") {
            break a.parse().unwrap();
        }
    };
    // A request in flight: the handler has answered its first part.
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"first part\n").unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut got = String::new();
    r.read_line(&mut got).unwrap();
    assert_eq!(got, "got the first part\n");
    send(Signal::Terminate, child.0.id());
    // The handler says when the drain is under way; then finish the request. (Not
    // probing with connects: a probe accepted just before the listener closes would be
    // one more handler to drain.)
    got.clear();
    r.read_line(&mut got).unwrap();
    assert_eq!(got, "stopping\n");
    c.write_all(b"second part\n").unwrap();
    got.clear();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, "full response to second part\n");
    // The child reports and exits 0.
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("report SIGTERM: drained 1 handler(s): 1 finished, 0 killed"),
        "{rest}"
    );
    let status = child.0.wait().unwrap();
    finished.store(1, Ordering::SeqCst);
    watchdog.join().unwrap();
    assert!(status.success(), "{status}");
}

fn send_kill(pid: u32) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill(2) with a valid signal number; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}
