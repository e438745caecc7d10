//! Greenlet-local storage, following gevent's `test__local.py`: each greenlet sees its
//! own value, created on first use; values are dropped when the greenlet ends (also
//! when it is killed); plain threads get their own value too.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use grove::greenlet::GreenletBuilder;

mod common;

grove::greenlet_local! {
    static COUNTER: Cell<u64> = Cell::new(0);
    static NAME: RefCell<String> = RefCell::new(String::from("unset"));
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct Tracked;

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

grove::greenlet_local! {
    static TRACKED: RefCell<Option<Tracked>> = RefCell::new(None);
}

#[test]
fn each_greenlet_sees_its_own_value_across_yields() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let ok = rt.block_on(|| {
        let hs: Vec<_> = (0..200u64)
            .map(|i| {
                grove::spawn(move || {
                    NAME.with(|n| *n.borrow_mut() = format!("g{i}"));
                    for _ in 0..i % 7 {
                        COUNTER.with(|c| c.set(c.get() + 1));
                        grove::yield_now();
                    }
                    let count = COUNTER.with(Cell::get);
                    let name = NAME.with(|n| n.borrow().clone());
                    count == i % 7 && name == format!("g{i}")
                })
            })
            .collect();
        hs.into_iter().all(|h| h.join().unwrap())
    });
    assert!(ok);
}

#[test]
fn values_start_fresh_in_every_greenlet() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let (first, second) = rt.block_on(|| {
        let a = grove::spawn(|| {
            COUNTER.with(|c| c.set(41));
            COUNTER.with(Cell::get)
        });
        let b = grove::spawn(|| COUNTER.with(Cell::get));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!((first, second), (41, 0));
}

#[test]
fn values_are_dropped_when_the_greenlet_ends_or_is_killed() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let before = DROPPED.load(Ordering::SeqCst);
    let parked = Arc::new(grove::sync::Event::new());
    let p2 = parked.clone();
    rt.block_on(move || {
        let finishing = grove::spawn(|| TRACKED.with(|t| *t.borrow_mut() = Some(Tracked)));
        finishing.join().unwrap();
        let killed = grove::spawn(move || {
            TRACKED.with(|t| *t.borrow_mut() = Some(Tracked));
            p2.set();
            grove::sleep(std::time::Duration::from_secs(3600));
        });
        parked.wait();
        killed.kill();
        assert!(killed.join().unwrap_err().is_killed());
    });
    assert_eq!(DROPPED.load(Ordering::SeqCst) - before, 2);
}

#[test]
fn plain_threads_have_their_own_value() {
    COUNTER.with(|c| c.set(7));
    let other = std::thread::spawn(|| COUNTER.with(Cell::get))
        .join()
        .unwrap();
    assert_eq!(other, 0);
    assert_eq!(COUNTER.with(Cell::get), 7);
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    assert_eq!(rt.block_on(|| COUNTER.with(Cell::get)), 0);
}

/// A greenlet-local whose destructor uses the same local: the second use is refused
/// (like std's `thread_local!`), the panic is contained and reported naming the
/// greenlet, and the greenlet finishes. It used to re-create the value at every drop,
/// looping forever on the worker (hence the child process with a watchdog).
#[test]
fn a_local_used_by_its_own_destructor_is_refused_not_recreated() {
    const NAME: &str = "a_local_used_by_its_own_destructor_is_refused_not_recreated";
    if !common::is_child() {
        let out = common::run_child_watched(NAME, &[], false, std::time::Duration::from_secs(60));
        assert!(
            out.success && out.stdout.contains("CHILD OK"),
            "stdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(
            out.stderr
                .matches("panicked: grove: a greenlet-local was used after")
                .count(),
            1,
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("'selfish'"), "{}", out.stderr);
        return;
    }
    struct Selfish;
    impl Drop for Selfish {
        fn drop(&mut self) {
            SELFISH.with(|_| ());
        }
    }
    grove::greenlet_local! {
        static SELFISH: Selfish = Selfish;
    }
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let h = GreenletBuilder::new()
        .name("selfish")
        .spawn_on(rt.handle(), || SELFISH.with(|_| 7));
    assert_eq!(h.join().unwrap(), 7);
    println!("CHILD OK");
}
