//! Loom models of who blocks in the kernel (`grove_reactor`'s `watch` module), on the
//! production [`Watch`]: workers that harvest the shared poll and go to sleep, the reactor thread
//! choosing between sleeping aside (its thread parker) and in `epoll_wait`, and notifications
//! (an earlier timer, shutdown) racing both.
//!
//! The kernel is modelled by [`Kernel`]: a count of events in the epoll ready list and an
//! eventfd flag under a mutex, a condvar for a thread blocked in `epoll_wait` (woken by an
//! event or by the eventfd), and a non-blocking harvest for workers. The aside sleep is
//! `loom::thread::park` *without* the production timeout: the models show that no event and no
//! notification depends on the stale-watch timeout to be noticed.
//!
//! * `last_watcher_leaving_never_strands_an_event`: an event arrives while the last watcher
//!   harvests and leaves; someone harvests it (a stranded event leaves the main thread waiting
//!   forever for it, with the reactor parked aside: loom reports the deadlock).
//! * `woken_worker_lets_the_reactor_stay_aside`: step R1': the reactor has just woken a worker
//!   (not yet counted) and sleeps aside; an event that worker does not take still reaches a
//!   harvester.
//! * `notify_interrupts_either_sleep`: a notification races a watcher leaving; the reactor
//!   wakes whether it sleeps aside or in the kernel.
//!
//! Each model was checked to fail with the protocol broken on purpose: `watcher_leaves` not
//! setting `NOTIFIED` on a running reactor (only unparking an aside one) fails the first two
//! (deadlock: the reactor parks aside with the event stranded); `watcher_leaves` setting
//! `NOTIFIED` on a reactor in the kernel fails the third (the notification finds the bit set,
//! sends nothing, and the reactor sleeps in `epoll_wait` forever); `prepare_sleep` storing its
//! mode instead of compare-and-swapping it fails the first.
//!
//! Run with:
//! `RUSTFLAGS="--cfg grove_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p grove-loom-tests --release --test watch`
#![cfg(grove_loom)]

use grove_reactor::__loom::{Rouse, Sleep, Watch};
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread::{self, Thread};

/// The epoll instance, as far as the protocol sees it.
#[derive(Default)]
struct Kernel {
    state: Mutex<KernelState>,
    /// Wakes a thread blocked in `epoll_wait`.
    cv: Condvar,
    /// Events harvested so far, by anyone; the main thread waits on it.
    harvested: Mutex<usize>,
    harvested_cv: Condvar,
}

#[derive(Default)]
struct KernelState {
    /// Events in the ready list.
    ready: usize,
    /// The reactor's eventfd was written.
    interrupted: bool,
}

impl Kernel {
    /// A socket becomes ready: the event joins the ready list and wakes a blocked waiter.
    fn event(&self) {
        self.state.lock().unwrap().ready += 1;
        self.cv.notify_all();
    }

    /// The reactor's eventfd write.
    fn interrupt(&self) {
        self.state.lock().unwrap().interrupted = true;
        self.cv.notify_all();
    }

    /// A zero-timeout `epoll_wait`: takes what is ready.
    fn harvest(&self) -> usize {
        let n = std::mem::take(&mut self.state.lock().unwrap().ready);
        self.count(n);
        n
    }

    /// The reactor's blocking `epoll_wait` on its outer poll (the shared poll's readiness and
    /// its eventfd), then its harvest of the shared poll.
    fn block(&self) {
        let mut st = self.state.lock().unwrap();
        while st.ready == 0 && !st.interrupted {
            st = self.cv.wait(st).unwrap();
        }
        st.interrupted = false;
        let n = std::mem::take(&mut st.ready);
        drop(st);
        self.count(n);
    }

    fn count(&self, n: usize) {
        if n > 0 {
            *self.harvested.lock().unwrap() += n;
            self.harvested_cv.notify_all();
        }
    }

    /// Waits until `n` events were harvested (forever, if one is stranded).
    fn wait_harvested(&self, n: usize) {
        let mut h = self.harvested.lock().unwrap();
        while *h < n {
            h = self.harvested_cv.wait(h).unwrap();
        }
    }
}

/// What the production `Shared::rouse` does.
fn rouse(rouse: Rouse, kernel: &Kernel, reactor: &Thread) {
    match rouse {
        Rouse::Nothing => {}
        Rouse::Unpark => reactor.unpark(),
        Rouse::Interrupt => kernel.interrupt(),
    }
}

/// The reactor loop (`driver::run`) without timers: sleep as the protocol says, harvest after a
/// kernel sleep, until `stop`. `expect_first`: its first sleep follows a batch of wakes that
/// unparked a worker (step R1').
fn reactor(watch: Arc<Watch>, kernel: Arc<Kernel>, stop: Arc<AtomicBool>, expect_first: bool) {
    let mut expect = expect_first;
    while !stop.load(SeqCst) {
        let Some(sleep) = watch.prepare_sleep(std::mem::take(&mut expect)) else {
            continue;
        };
        match sleep {
            Sleep::Aside => {
                thread::park();
                watch.woke();
            }
            Sleep::Kernel => {
                kernel.block();
                watch.woke();
            }
        }
    }
}

/// Starts the reactor thread; returns it and what stops it.
fn start_reactor(
    watch: &Arc<Watch>,
    kernel: &Arc<Kernel>,
    expect_first: bool,
) -> (thread::JoinHandle<()>, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (watch, kernel, stop) = (watch.clone(), kernel.clone(), stop.clone());
        thread::spawn(move || reactor(watch, kernel, stop, expect_first))
    };
    (handle, stop)
}

/// Shutdown (step N): raise the flag, notify, join.
fn stop_reactor(
    watch: &Watch,
    kernel: &Kernel,
    reactor: thread::JoinHandle<()>,
    stop: &AtomicBool,
) {
    stop.store(true, SeqCst);
    rouse(watch.notify(), kernel, reactor.thread());
    reactor.join().unwrap();
}

#[test]
fn last_watcher_leaving_never_strands_an_event() {
    loom::model(|| {
        let watch = Arc::new(Watch::new());
        let kernel = Arc::new(Kernel::default());
        watch.watcher_arrives(); // the worker is awake from the start
        let (reactor, stop) = start_reactor(&watch, &kernel, false);

        // The last watcher: harvests once (finds nothing or the event), then sleeps.
        let worker = {
            let (watch, kernel, r) = (watch.clone(), kernel.clone(), reactor.thread().clone());
            thread::spawn(move || {
                kernel.harvest();
                rouse(watch.watcher_leaves(), &kernel, &r);
            })
        };
        // A socket becomes ready at any point of that.
        kernel.event();

        worker.join().unwrap();
        kernel.wait_harvested(1);
        stop_reactor(&watch, &kernel, reactor, &stop);
        assert_eq!(watch.watchers(), 0);
    });
}

#[test]
fn woken_worker_lets_the_reactor_stay_aside() {
    loom::model(|| {
        let watch = Arc::new(Watch::new());
        let kernel = Arc::new(Kernel::default());
        // The reactor has just unparked a sleeping worker (R1'): it sleeps aside although the
        // worker has not counted itself yet.
        let (reactor, stop) = start_reactor(&watch, &kernel, true);
        let worker = {
            let (watch, kernel, r) = (watch.clone(), kernel.clone(), reactor.thread().clone());
            thread::spawn(move || {
                watch.watcher_arrives();
                kernel.harvest();
                rouse(watch.watcher_leaves(), &kernel, &r);
            })
        };
        kernel.event();

        worker.join().unwrap();
        kernel.wait_harvested(1);
        stop_reactor(&watch, &kernel, reactor, &stop);
    });
}

#[test]
fn notify_interrupts_either_sleep() {
    loom::model(|| {
        let watch = Arc::new(Watch::new());
        let kernel = Arc::new(Kernel::default());
        watch.watcher_arrives();
        let (reactor, stop) = start_reactor(&watch, &kernel, false);
        // The last watcher leaves while an earlier timer (here: the stop request) is notified.
        let worker = {
            let (watch, kernel, r) = (watch.clone(), kernel.clone(), reactor.thread().clone());
            thread::spawn(move || rouse(watch.watcher_leaves(), &kernel, &r))
        };
        // `stop_reactor` joins: a reactor that never sees the notification hangs the model.
        stop_reactor(&watch, &kernel, reactor, &stop);
        worker.join().unwrap();
    });
}
