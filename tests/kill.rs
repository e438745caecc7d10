//! Killing greenlets. Follows the kill cases of gevent's `test__greenlet.py`
//! (TestKill, test_kill_unstarted, kill with timeout), plus cross-worker and
//! OS-thread kills.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::Latch;

struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn rt(workers: usize) -> grove::Runtime {
    grove::Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn kill_unwinds_a_sleeping_greenlet_and_runs_its_destructors() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d2 = drops.clone();
    rt(2).block_on(move || {
        let started = Latch::new();
        let s2 = started.clone();
        let h = grove::spawn(move || {
            let _g = CountOnDrop(d2);
            s2.set();
            grove::sleep(Duration::from_secs(3600));
            "not reached"
        });
        while !started.is_set() {
            grove::yield_now();
        }
        h.kill();
        assert!(h.is_finished());
        let err = h.join().unwrap_err();
        assert!(err.is_killed(), "{err}");
    });
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn killed_before_starting_it_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    let (r2, d2) = (ran.clone(), drops.clone());
    rt(1).block_on(move || {
        let guard = CountOnDrop(d2);
        let h = grove::spawn(move || {
            let _g = guard;
            r2.store(true, Ordering::SeqCst);
        });
        // We have not yielded since spawning: it cannot have started.
        h.kill();
        assert!(h.join().unwrap_err().is_killed());
    });
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(drops.load(Ordering::SeqCst), 1, "its closure is dropped");
}

#[test]
fn kill_from_another_worker_and_from_an_os_thread() {
    let rt = rt(2);
    for from_thread in [false, true] {
        let parked = Latch::new();
        let p2 = parked.clone();
        let h = rt.spawn(move || {
            p2.set();
            loop {
                grove::greenlet::park();
            }
        });
        parked.wait();
        let h = if from_thread {
            std::thread::spawn(move || {
                h.kill();
                h
            })
            .join()
            .unwrap()
        } else {
            rt.block_on(move || {
                h.kill();
                h
            })
        };
        assert!(h.join().unwrap_err().is_killed());
    }
}

#[test]
fn kill_timeout_gives_up_on_a_greenlet_that_never_blocks() {
    let rt = rt(2);
    let release = Arc::new(AtomicBool::new(false));
    let spinning = Latch::new();
    let (r2, s2) = (release.clone(), spinning.clone());
    let h = rt.spawn(move || {
        s2.set();
        while !r2.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        grove::yield_now(); // the first blocking point: the kill lands here
        "survived"
    });
    spinning.wait();
    // From this OS thread: kill_timeout cannot interrupt a spinning greenlet.
    assert!(!h.kill_timeout(Duration::from_millis(50)));
    assert!(!h.is_finished());
    release.store(true, Ordering::SeqCst);
    assert!(h.kill_timeout(Duration::from_secs(30)));
    assert!(h.join().unwrap_err().is_killed());
}

#[test]
fn kill_after_finish_is_a_no_op() {
    let v = rt(1).block_on(|| {
        let h = grove::spawn(|| 5);
        while !h.is_finished() {
            grove::yield_now();
        }
        h.kill();
        h.join().unwrap()
    });
    assert_eq!(v, 5);
}

#[test]
fn a_greenlet_can_kill_itself() {
    let (tx, rx) = std::sync::mpsc::channel::<grove::JoinHandle<()>>();
    let after = Arc::new(AtomicBool::new(false));
    let a2 = after.clone();
    let rt = rt(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<bool>();
    let h = rt.spawn(move || {
        let me = rx.recv().unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            me.kill();
            a2.store(true, Ordering::SeqCst);
        }));
        // The kill unwound us at once; report, then let it continue to the root.
        done_tx.send(outcome.is_err()).unwrap();
        if let Err(p) = outcome {
            std::panic::resume_unwind(p);
        }
    });
    tx.send(h).unwrap();
    assert!(done_rx.recv().unwrap());
    assert!(!after.load(Ordering::SeqCst));
}

/// A destructor that blocks while a kill unwinds its greenlet runs to completion
/// (no second interrupt while unwinding, which would abort the process).
#[test]
fn destructors_may_block_while_a_kill_unwinds() {
    struct SleepOnDrop(Arc<AtomicBool>);
    impl Drop for SleepOnDrop {
        fn drop(&mut self) {
            grove::sleep(Duration::from_millis(5));
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let slept = Arc::new(AtomicBool::new(false));
    let s2 = slept.clone();
    rt(1).block_on(move || {
        let h = grove::spawn(move || {
            let _g = SleepOnDrop(s2);
            grove::sleep(Duration::from_secs(3600));
        });
        grove::yield_now();
        h.kill();
        assert!(h.join().unwrap_err().is_killed());
    });
    assert!(slept.load(Ordering::SeqCst));
}

#[test]
fn a_kill_caught_by_the_target_lands_again_at_its_next_blocking_point() {
    rt(1).block_on(|| {
        let h = grove::spawn(|| {
            let first = std::panic::catch_unwind(|| grove::sleep(Duration::from_secs(3600)));
            assert!(first.is_err());
            grove::sleep(Duration::from_secs(3600)); // killed again here
            "escaped"
        });
        grove::yield_now();
        h.kill();
        assert!(h.join().unwrap_err().is_killed());
    });
}

/// Runs `test` in a watched child (a regression hangs) and returns its stderr.
fn watched(test: &str) -> String {
    let out = common::run_child_watched(test, &[], false, Duration::from_secs(60));
    assert!(
        out.success && out.stdout.contains("CHILD OK"),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    out.stderr
}

/// A `with_timeout` armed inside a destructor that runs while a kill unwinds the
/// greenlet fires as usual (its scope catches it inside the destructor). It used to be
/// ignored (nothing was raised while the thread was panicking), so the destructor's
/// wait never ended and `kill` never returned.
#[test]
fn a_timeout_inside_a_destructor_fires_during_a_kill() {
    if !common::is_child() {
        watched("a_timeout_inside_a_destructor_fires_during_a_kill");
        return;
    }
    struct TimedDrop(Arc<std::sync::Mutex<Option<bool>>>);
    impl Drop for TimedDrop {
        fn drop(&mut self) {
            let r = grove::with_timeout(Duration::from_millis(20), || {
                grove::sync::Event::new().wait()
            });
            *self.0.lock().unwrap() = Some(r.is_err());
        }
    }
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let elapsed = Arc::new(std::sync::Mutex::new(None));
    let started = Latch::new();
    let (e2, s2) = (elapsed.clone(), started.clone());
    let h = rt.spawn(move || {
        let _d = TimedDrop(e2);
        s2.set();
        grove::sync::Event::new().wait();
    });
    started.wait();
    assert!(h.greenlet().kill_timeout(Duration::from_secs(30)));
    assert_eq!(*elapsed.lock().unwrap(), Some(true), "the timeout fired");
    assert!(h.join().unwrap_err().is_killed());
    println!("CHILD OK");
}

/// A greenlet-local whose destructor blocks, in a killed greenlet, runs to completion:
/// the kill is not raised again once the greenlet's body has ended (it used to cut the
/// destructor short and report "panicked: <non-string panic payload>").
#[test]
fn a_blocking_local_destructor_completes_in_a_killed_greenlet() {
    if !common::is_child() {
        let stderr = watched("a_blocking_local_destructor_completes_in_a_killed_greenlet");
        assert!(!stderr.contains("panicked"), "{stderr}");
        return;
    }
    static DONE: AtomicBool = AtomicBool::new(false);
    struct SlowDrop;
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            grove::sleep(Duration::from_millis(20));
            DONE.store(true, Ordering::SeqCst);
        }
    }
    grove::greenlet_local! {
        static SLOW: SlowDrop = SlowDrop;
    }
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let started = Latch::new();
    let s2 = started.clone();
    let h = rt.spawn(move || {
        SLOW.with(|_| ());
        s2.set();
        grove::sync::Event::new().wait();
    });
    started.wait();
    assert!(h.greenlet().kill_timeout(Duration::from_secs(30)));
    assert!(DONE.load(Ordering::SeqCst), "the destructor ran to its end");
    assert!(h.join().unwrap_err().is_killed());
    println!("CHILD OK");
}
