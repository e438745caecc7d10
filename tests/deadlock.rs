//! Deadlock detection (gevent's `LoopExit`; follows gevent's test__hub.py / test__event.py
//! "wait forever raises LoopExit" cases, and Go's "all goroutines are asleep").
//!
//! This file has its own `main` (`harness = false` in Cargo.toml): libtest's main thread
//! waits for the test thread with a *timed* wait, and a thread in a timed wait may wake up and
//! set an `Event`, so grove rightly refuses to call anything a deadlock while it exists. Here
//! the thread blocked in `block_on` is the process's main thread, as in a real program. The
//! `main` speaks the small part of libtest's command line that cargo-nextest uses
//! (`--list --format terse [--ignored]`, `<name> --exact`); under `cargo test` it runs every
//! case in turn.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use grove::{
    queue::Queue,
    sync::{Event, Lock},
    JoinError, Runtime,
};

/// Far above the detector's back-off (first check at 10 ms, then at most 1 s apart).
const BOUND: Duration = Duration::from_secs(20);

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

fn expect_deadlock<T: std::fmt::Debug>(r: Result<T, JoinError>, started: Instant) {
    let err = r.expect_err("the main greenlet can never be woken: expected a deadlock error");
    assert!(err.is_deadlock(), "expected a deadlock, got {err:?}");
    assert!(err.to_string().contains("would block forever"), "{err}");
    assert!(
        started.elapsed() < BOUND,
        "reported after {:?}",
        started.elapsed()
    );
}

/// gevent: `Event().wait()` in the main greenlet with nothing else alive raises LoopExit.
fn event_nobody_sets() {
    let rt = runtime();
    let t = Instant::now();
    expect_deadlock(rt.try_block_on(|| Event::new().wait()), t);
}

/// Greenlets waiting for each other across workers: main joins A, A waits on a queue that
/// only main would fill.
fn greenlets_wait_for_each_other() {
    let rt = runtime();
    let t = Instant::now();
    expect_deadlock(
        rt.try_block_on(|| {
            let q: Queue<u32> = Queue::new();
            let q2 = q.clone();
            let a = grove::spawn(move || q2.get());
            let got = a.join();
            let _ = q.put(1); // never reached
            got
        }),
        t,
    );
}

/// The classic lock-order inversion: two greenlets each hold one lock and want the other.
fn lock_order_inversion() {
    let rt = runtime();
    let t = Instant::now();
    expect_deadlock(
        rt.try_block_on(|| {
            let (l1, l2) = (Lock::new(), Lock::new());
            let (ready_a, ready_b) = (Event::new(), Event::new());
            let a = {
                let (l1, l2, ready_a, ready_b) =
                    (l1.clone(), l2.clone(), ready_a.clone(), ready_b.clone());
                grove::spawn(move || {
                    let _g1 = l1.lock();
                    ready_a.set();
                    ready_b.wait();
                    let _g2 = l2.lock();
                })
            };
            let b = grove::spawn(move || {
                let _g2 = l2.lock();
                ready_b.set();
                ready_a.wait();
                let _g1 = l1.lock();
            });
            (a.join().is_ok(), b.join().is_ok())
        }),
        t,
    );
}

/// `grove::run` turns the deadlock into a panic whose message says what happened, and the
/// main greenlet's destructors ran on the way out.
fn run_panics_with_a_clear_message() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let err = panic::catch_unwind(AssertUnwindSafe(|| {
        grove::run(move || {
            let _guard = SetOnDrop(d);
            Event::new().wait();
        })
    }))
    .expect_err("grove::run must not return from a deadlocked main greenlet");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("would block forever"),
        "panic message: {msg:?}"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "main greenlet's destructors ran"
    );
}

/// The runtime stays usable after reporting a deadlock.
fn runtime_usable_afterwards() {
    let rt = runtime();
    let t = Instant::now();
    expect_deadlock(rt.try_block_on(|| Event::new().wait()), t);
    assert_eq!(rt.block_on(|| grove::spawn(|| 6 * 7).join().unwrap()), 42);
}

/// A plain thread that will set the event later (it sleeps first, so the kernel shows it in
/// a timed sleep): not a deadlock, however long main waits.
fn thread_that_sleeps_then_sets() {
    let rt = runtime();
    let ev = Event::new();
    let ev2 = ev.clone();
    let setter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(400));
        ev2.set();
    });
    rt.try_block_on(move || ev.wait())
        .expect("a sleeping thread may still set the event");
    setter.join().unwrap();
}

/// A plain thread in a *timed* wait (`recv_timeout`) that sets the event when it times out.
fn thread_in_timed_wait_then_sets() {
    let rt = runtime();
    let ev = Event::new();
    let ev2 = ev.clone();
    let (_tx, rx) = mpsc::channel::<()>();
    let setter = thread::spawn(move || {
        let _ = rx.recv_timeout(Duration::from_millis(400));
        ev2.set();
    });
    rt.try_block_on(move || ev.wait())
        .expect("a thread in a timed wait may still set the event");
    setter.join().unwrap();
}

/// A plain thread blocked *forever* (an untimed channel receive whose sender the main
/// greenlet holds) is part of the deadlock, not an escape from it: detected.
fn outside_thread_blocked_forever_is_part_of_the_deadlock() {
    let rt = runtime();
    let ev = Event::new();
    let ev2 = ev.clone();
    let (tx, rx) = mpsc::channel::<()>();
    let setter = thread::spawn(move || {
        if rx.recv().is_ok() {
            ev2.set();
        }
    });
    let t = Instant::now();
    expect_deadlock(
        rt.try_block_on(move || {
            let _tx = tx; // would unblock the thread, but main never sends
            ev.wait()
        }),
        t,
    );
    // Main unwound and dropped the sender: the thread's receive ended.
    setter.join().unwrap();
}

/// Idle blocking-pool threads (in their timed keep-alive wait) wake nobody: a deadlock after
/// a blocking call is still reported.
fn idle_blocking_threads_do_not_hide_a_deadlock() {
    let rt = runtime();
    let t = Instant::now();
    expect_deadlock(
        rt.try_block_on(|| {
            assert_eq!(
                grove::blocking::spawn_blocking(|| 6 * 7).join().unwrap(),
                42
            );
            Event::new().wait()
        }),
        t,
    );
}

/// A blocking-pool job still running may wake the main greenlet: not a deadlock.
fn running_blocking_job_is_not_a_deadlock() {
    let rt = runtime();
    rt.try_block_on(|| {
        let ev = Event::new();
        let ev2 = ev.clone();
        let job = grove::blocking::spawn_blocking(move || {
            thread::sleep(Duration::from_millis(300));
            ev2.set();
        });
        ev.wait();
        job.join().unwrap();
    })
    .expect("a running blocking job can still set the event");
}

/// A greenlet waiting for I/O may be woken by another process: not a deadlock. (The peer
/// here is a child process that connects after a pause; this process's threads are all
/// asleep meanwhile.)
fn io_waiter_is_not_a_deadlock() {
    let rt = runtime();
    rt.try_block_on(|| {
        let listener = grove::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut peer = spawn_child(&format!("connect:{port}"));
        let (_conn, _) = listener.accept().unwrap();
        assert!(peer.wait().unwrap().success());
    })
    .expect("an accept can be satisfied from outside the process");
}

/// Timers keep the program alive: main sleeps, a greenlet sets the event after sleeping.
fn timers_are_not_deadlocks() {
    let rt = runtime();
    rt.try_block_on(|| {
        let ev = Event::new();
        let ev2 = ev.clone();
        grove::spawn(move || {
            grove::sleep(Duration::from_millis(300));
            ev2.set();
        });
        ev.wait();
        grove::sleep(Duration::from_millis(100));
    })
    .expect("pending timers can wake the main greenlet");
}

/// A greenlet computing (its worker runs) is not a deadlock.
fn busy_greenlet_is_not_a_deadlock() {
    let rt = runtime();
    rt.try_block_on(|| {
        let ev = Event::new();
        let ev2 = ev.clone();
        grove::spawn(move || {
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(300) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            ev2.set();
        });
        ev.wait();
    })
    .expect("a running greenlet can still wake the main one");
}

/// The child programs: `on`/`off`, a `main` like a user's whose only greenlet waits
/// forever, with detection on or off; `connect:<port>`, a peer that connects to `port`
/// after a pause.
fn child_main(mode: &str) {
    if let Some(port) = mode.strip_prefix("connect:") {
        thread::sleep(Duration::from_millis(500));
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        return;
    }
    let rt = Runtime::builder()
        .detect_deadlock(mode == "on")
        .build()
        .unwrap();
    rt.block_on(|| Event::new().wait());
    println!("block_on returned");
}

fn spawn_child(mode: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .env("GROVE_DEADLOCK_CHILD", mode)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A real program (the block_on caller is the process's main thread): it dies with the
/// deadlock message and a failure status instead of hanging.
fn program_exits_with_the_message() {
    let out = spawn_child("on").wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "deadlocked program exited successfully"
    );
    assert!(stderr.contains("would block forever"), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "block_on must not return");
}

/// Detection off: the same program keeps waiting (we give it well over the detector's
/// first checks, then kill it).
fn detection_can_be_turned_off() {
    let mut child = spawn_child("off");
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("with detection off the program must hang, but it exited: {status}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

const CASES: &[(&str, fn())] = &[
    ("event_nobody_sets", event_nobody_sets),
    (
        "greenlets_wait_for_each_other",
        greenlets_wait_for_each_other,
    ),
    ("lock_order_inversion", lock_order_inversion),
    (
        "run_panics_with_a_clear_message",
        run_panics_with_a_clear_message,
    ),
    ("runtime_usable_afterwards", runtime_usable_afterwards),
    ("thread_that_sleeps_then_sets", thread_that_sleeps_then_sets),
    (
        "thread_in_timed_wait_then_sets",
        thread_in_timed_wait_then_sets,
    ),
    (
        "outside_thread_blocked_forever_is_part_of_the_deadlock",
        outside_thread_blocked_forever_is_part_of_the_deadlock,
    ),
    (
        "idle_blocking_threads_do_not_hide_a_deadlock",
        idle_blocking_threads_do_not_hide_a_deadlock,
    ),
    (
        "running_blocking_job_is_not_a_deadlock",
        running_blocking_job_is_not_a_deadlock,
    ),
    ("io_waiter_is_not_a_deadlock", io_waiter_is_not_a_deadlock),
    ("timers_are_not_deadlocks", timers_are_not_deadlocks),
    (
        "busy_greenlet_is_not_a_deadlock",
        busy_greenlet_is_not_a_deadlock,
    ),
    (
        "program_exits_with_the_message",
        program_exits_with_the_message,
    ),
    ("detection_can_be_turned_off", detection_can_be_turned_off),
];

fn main() {
    if let Ok(mode) = std::env::var("GROVE_DEADLOCK_CHILD") {
        return child_main(&mode);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        if !has("--ignored") {
            for (name, _) in CASES {
                println!("{name}: test");
            }
        }
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with("--"));
    let exact = has("--exact");
    let selected: Vec<_> = CASES
        .iter()
        .filter(|(name, _)| match filter {
            None => true,
            Some(f) if exact => name == f,
            Some(f) => name.contains(f.as_str()),
        })
        .collect();
    for (name, case) in &selected {
        eprint!("test {name} ... ");
        case();
        eprintln!("ok");
    }
    eprintln!("{} passed", selected.len());
}
