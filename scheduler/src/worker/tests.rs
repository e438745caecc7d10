//! Unit tests of the hub's failure path.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::{with_local, FAIL_HUB};
use crate::greenlet::park;
use crate::runtime::Runtime;

/// Item 1 of issue 15: a hub that fails (here: an injected panic standing in for a
/// grove bug) shuts the runtime down, unwinds its parked greenlets (their destructors
/// run, their joins report a shutdown), clears its `LOCAL` (a thread-local destructor
/// on the worker thread sees no hub), and the runtime's drop still joins its threads.
/// Run on a helper thread with a deadline, so a regression fails instead of hanging.
#[test]
fn a_failed_hub_leaves_nothing_dangling() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        struct AtExit(Arc<AtomicBool>);
        impl Drop for AtExit {
            fn drop(&mut self) {
                // Reads `LOCAL`: it must be null, not a pointer into a dead frame.
                let no_hub = with_local(|l| l.is_none());
                self.0.store(no_hub, Ordering::SeqCst);
            }
        }
        thread_local! {
            static AT_EXIT: std::cell::RefCell<Option<AtExit>> =
                const { std::cell::RefCell::new(None) };
        }
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let rt = Runtime::builder().workers(1).build().unwrap();
        let cleared = Arc::new(AtomicBool::new(false));
        let drops = Arc::new(AtomicUsize::new(0));
        let c2 = cleared.clone();
        rt.block_on(move || AT_EXIT.with(|a| *a.borrow_mut() = Some(AtExit(c2))));
        let d2 = drops.clone();
        let parked = rt.spawn(move || {
            let _c = Count(d2);
            loop {
                park();
            }
        });
        // Fail the hub at its next tick.
        rt.block_on(|| FAIL_HUB.with(|f| f.set(true)));
        let err = parked.join().unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let err = rt.spawn(|| 1).join().unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        drop(rt);
        assert!(cleared.load(Ordering::SeqCst), "LOCAL outlived its hub");
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the scenario hung or panicked");
}
