// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the per-greenlet park/unpark protocol (`scheduler/src/state.rs`).
//!
//! # What is modelled
//! A greenlet parks in two halves: on its own stack it registers its waker and switches
//! to the hub, still `RUNNING`; the hub, now off that stack, calls
//! [`State::complete_park`]. A wake may arrive from any thread at any point of that
//! sequence, and must neither be lost nor resume the greenlet twice.
//!
//! # Who each thread stands for
//! * The **hub** thread is `Local::run_task` (`scheduler/src/worker.rs`): it takes the
//!   greenlet off a run queue, calls `start_running`, "resumes" it (the greenlet body is
//!   inlined: it registers its waker, which here means spawning the waker thread, and
//!   asks to park), then calls `complete_park` and, if that fails, pushes the greenlet
//!   back on its `ready` queue. Between parks it finds the greenlet again the way
//!   `Local::next_task` does (`ready`, then the inbox) and, finding nothing, sleeps on
//!   its `Parker` as `Local::sleep` does.
//! * A **waker** thread is `Task::wake` (`impl Wake for Task`, `scheduler/src/task.rs`) on another
//!   thread (the reactor, another worker, a plain thread): `State::unpark`, and on
//!   `Unpark::Schedule` `schedule_woken` → `Shared::push_remote`
//!   (`scheduler/src/runtime.rs`), i.e. push to the home worker's inbox, then unpark
//!   the home worker's `Parker`.
//! * A **stale** waker is one left over from an earlier wait: it may fire at any time,
//!   including before `start_running` and after `complete`.
//!
//! The state word, inbox and parker are the runtime's own; the hub's side is a copy of
//! `Local::run_task`'s steps (see `idle.rs`, "What is not the production code", for
//! why, and what would lift it: issue 13).
//!
//! # Properties asserted
//! * Exactly one queue insertion per park: the hub's failed `complete_park` or one
//!   waker's `Schedule`, never both, never neither (never neither also shows up as a
//!   loom deadlock: the hub would sleep forever).
//! * The greenlet is only ever taken off a queue in `SCHEDULED`, and no queue holds it
//!   once it is `DONE`.
//! * What a waker writes before waking is visible to the greenlet once resumed (the
//!   `AcqRel` of `unpark` and `complete_park`), checked with a `Relaxed` mailbox so that
//!   only the protocol's own edges can make it visible.
//! * `complete_yield` absorbs a wake that landed while the greenlet ran, and a wake
//!   racing a yield never queues it a second time; a wake after `complete` does nothing.
//!
//! Each model was checked to fail when the protocol is broken on purpose: `unpark`
//! of a running greenlet not setting `NOTIFIED` or scheduling it, `complete_park`
//! ignoring `NOTIFIED`, `Relaxed` instead of `AcqRel`/`Acquire` on either CAS, or the
//! hub's `Parker` losing its lock hand-off or `notify_one`.
//!
//! # A loom limitation
//! `complete`, `complete_yield` and the failure path of `complete_park` are plain
//! stores that may race an unparker's CAS (`RUNNING → RUNNING | NOTIFIED`). On real
//! hardware a CAS is atomic, so the store lands before or after it. loom 0.7.3 does not
//! enforce RMW atomicity against a plain store the RMW did not observe
//! (tokio-rs/loom#254 and #389, fix pending in tokio-rs/loom#391), and can end such an
//! execution in `RUNNING | NOTIFIED`. Where a wake *races* one of those stores, the
//! models therefore check what callers rely on (nothing queued twice, a later wake
//! does nothing) rather than the exact state value; where the wake is ordered with the
//! store, they check the exact value.

use std::collections::VecDeque;

use grove_scheduler::__loom::{
    Injector, Parker, State, Steal, Unpark, DONE, NOTIFIED, PARKED, RUNNING, SCHEDULED,
};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread::{self, JoinHandle};

/// Mailbox value meaning "nothing written yet".
const EMPTY_MAIL: usize = usize::MAX;

/// One greenlet and what its home worker exposes to other threads.
struct Home {
    /// The greenlet's state word (`Header::state`).
    state: State,
    /// `Remote::inbox`: greenlets woken from other threads. Items name the waker.
    inbox: Injector<usize>,
    /// `Remote::parker`: the home worker sleeps here.
    parker: Parker,
    /// One slot per park: what that park's waker publishes before waking. `Relaxed`
    /// on both sides, so only the protocol's synchronization can make it visible.
    mail: Vec<AtomicUsize>,
}

impl Home {
    fn new(rounds: usize) -> Home {
        Home {
            state: State::new(),
            inbox: Injector::new(),
            parker: Parker::new(),
            mail: (0..rounds).map(|_| AtomicUsize::new(EMPTY_MAIL)).collect(),
        }
    }

    /// `Task::wake` from a thread that is not the home worker. Returns `true` if
    /// this wake queued the greenlet.
    fn wake(&self, id: usize) -> bool {
        match self.state.unpark() {
            Unpark::Schedule => {
                // Shared::push_remote: inbox first, then the parker.
                self.inbox.push(id);
                self.parker.unpark();
                true
            }
            Unpark::Nothing => false,
        }
    }

    /// Number of greenlet entries still sitting in the inbox.
    fn inbox_len(&self) -> usize {
        self.inbox.len()
    }
}

/// How the wakes of each park are arranged.
#[derive(Clone, Copy)]
struct Scenario {
    /// Parks the greenlet performs before it finishes.
    rounds: usize,
    /// Wakers per park, each spawned once the greenlet has registered for that park.
    wakers: usize,
    /// An extra waker from an earlier wait, started before the greenlet first runs.
    stale: bool,
}

/// The hub's side: runs the greenlet through `rounds` parks, then to completion.
/// Returns how many times the hub itself re-queued the greenlet (failed
/// `complete_park`) and the handles of every waker it started.
fn hub(home: &Arc<Home>, sc: Scenario) -> (usize, Vec<JoinHandle<bool>>) {
    let mut ready: VecDeque<()> = VecDeque::new();
    let mut requeued = 0;
    let mut wakers = Vec::new();

    for round in 0..=sc.rounds {
        // Taken off a run queue (initially: the spawn), so it must be SCHEDULED.
        assert_eq!(
            home.state.load(),
            SCHEDULED,
            "run_task: greenlet not scheduled"
        );
        home.state.start_running();

        // Resumed after park `round - 1`: that park's waker's write must be visible.
        // Only checked with a single waker per park and no stale waker, where that
        // waker is the only thing that can have resumed us.
        if round > 0 && sc.wakers == 1 && !sc.stale {
            let got = home.mail[round - 1].load(Ordering::Relaxed);
            assert_eq!(got, round - 1, "woken greenlet missed its waker's write");
        }

        if round == sc.rounds {
            // The body returns.
            home.state.complete();
            break;
        }

        // Greenlet body: register a waker for this park (the waker thread starts once
        // it can see the registration), then switch to the hub asking to park.
        for w in 0..sc.wakers {
            let home = home.clone();
            let publish = sc.wakers == 1 && !sc.stale;
            wakers.push(thread::spawn(move || {
                if publish {
                    home.mail[round].store(round, Ordering::Relaxed);
                }
                home.wake(round * sc.wakers + w)
            }));
        }

        // Hub, off the greenlet's stack.
        if !home.state.complete_park() {
            requeued += 1;
            ready.push_back(());
        }

        // Local::next_task / Local::sleep until the greenlet is runnable again.
        loop {
            if ready.pop_front().is_some() {
                break;
            }
            if let Steal::Success(_) = home.inbox.steal() {
                break;
            }
            home.parker.park();
        }
    }
    assert!(
        ready.is_empty(),
        "greenlet queued on the hub after it finished"
    );
    (requeued, wakers)
}

/// Runs one scenario and checks the exactly-once accounting.
fn check(sc: Scenario) {
    let home = Arc::new(Home::new(sc.rounds));

    let stale = sc.stale.then(|| {
        let home = home.clone();
        thread::spawn(move || home.wake(usize::MAX))
    });

    let hub_home = home.clone();
    let (requeued, wakers) = thread::spawn(move || hub(&hub_home, sc)).join().unwrap();

    let mut scheduled = 0;
    for w in wakers {
        scheduled += usize::from(w.join().unwrap());
    }
    if let Some(s) = stale {
        scheduled += usize::from(s.join().unwrap());
    }

    // Each park was followed by exactly one queue insertion, and each was consumed.
    assert_eq!(
        requeued + scheduled,
        sc.rounds,
        "a park was not resumed exactly once"
    );
    // With one waker per park, each waker is done with the state word before the
    // resume it caused, so none races `complete`.
    assert_finished(&home, sc.wakers > 1 || sc.stale);
}

/// Checks a finished greenlet: not queued anywhere, and a wake now does nothing.
/// If a wake may have raced `complete`, the exact state value is not checked (see
/// "A loom limitation" above).
fn assert_finished(home: &Home, raced: bool) {
    assert_eq!(
        home.inbox_len(),
        0,
        "greenlet left queued after it finished"
    );
    if !raced {
        assert_eq!(home.state.load(), DONE);
    }
    assert!(
        !home.wake(usize::MAX),
        "unpark of a finished greenlet queued it"
    );
    assert_eq!(home.inbox_len(), 0);
}

/// One park, one waker racing the whole park sequence: the wake can land before the
/// switch (`RUNNING`: the hub re-queues), during it, or after `complete_park` (`PARKED`:
/// the waker queues). Also checks the waker's write is visible after the resume.
#[test]
fn wake_races_park_resumes_once() {
    loom::model(|| {
        check(Scenario {
            rounds: 1,
            wakers: 1,
            stale: false,
        })
    });
}

/// Two wakers race each other and the park: still exactly one queue insertion.
#[test]
fn two_wakers_race_park_queue_once() {
    loom::model(|| {
        check(Scenario {
            rounds: 1,
            wakers: 2,
            stale: false,
        })
    });
}

/// A stale waker from an earlier wait fires at any point: before `start_running`
/// (ignored: `SCHEDULED`), while running (a spurious re-queue), after the park
/// (a spurious resume) or after `complete` (ignored: `DONE`). Together with the real
/// waker, every park is still resumed exactly once.
#[test]
fn stale_wake_anywhere_resumes_once() {
    loom::model(|| {
        check(Scenario {
            rounds: 1,
            wakers: 1,
            stale: true,
        })
    });
}

/// The woken greenlet is resumed, parks a second time and is woken again: the state
/// word returns to `SCHEDULED`/`RUNNING` correctly between the two parks, and each
/// park's waker's write is visible after its resume.
#[test]
fn second_park_after_wake_resumes_once() {
    loom::model(|| {
        check(Scenario {
            rounds: 2,
            wakers: 1,
            stale: false,
        })
    });
}

/// The orders loom cannot be asked for by name, forced by `join`: a wake before
/// `start_running` leaves no trace (the park completes), and two wakes after the park
/// completed race for `PARKED → SCHEDULED` with exactly one winner.
#[test]
fn wake_before_start_and_after_park() {
    loom::model(|| {
        let home = Arc::new(Home::new(0));

        // Before start_running: a queued, not yet running greenlet ignores wakes.
        assert!(!home.wake(0));
        assert_eq!(home.state.load(), SCHEDULED);

        let h = home.clone();
        thread::spawn(move || {
            h.state.start_running();
            assert_eq!(h.state.load(), RUNNING, "stale wake left a notification");
            assert!(h.state.complete_park(), "stale wake re-queued the greenlet");
        })
        .join()
        .unwrap();
        assert_eq!(home.state.load(), PARKED);

        // After complete_park: two concurrent wakes, one winner.
        let wakers: Vec<_> = (0..2)
            .map(|id| {
                let h = home.clone();
                thread::spawn(move || h.wake(id))
            })
            .collect();
        let scheduled: usize = wakers
            .into_iter()
            .map(|w| usize::from(w.join().unwrap()))
            .sum();
        assert_eq!(
            scheduled, 1,
            "a parked greenlet was queued {scheduled} times"
        );
        assert_eq!(home.inbox_len(), 1);
        assert_eq!(home.state.load(), SCHEDULED);
    });
}

/// A wake racing the greenlet's return may mark the running greenlet notified, but
/// nothing is ever queued; a wake ordered after `complete` sees `DONE` and does nothing.
#[test]
fn wake_after_done_is_nothing() {
    loom::model(|| {
        let home = Arc::new(Home::new(0));
        let h = home.clone();
        let hub = thread::spawn(move || {
            h.state.start_running();
            let h2 = h.clone();
            let waker = thread::spawn(move || h2.wake(0));
            h.state.complete();
            waker
        });
        let waker = hub.join().unwrap();
        assert!(!waker.join().unwrap(), "a finished greenlet was queued");
        assert_finished(&home, true);

        // Ordered after `complete`: exactly DONE, and it stays so.
        let home = Arc::new(Home::new(0));
        let h = home.clone();
        thread::spawn(move || {
            h.state.start_running();
            h.state.complete();
        })
        .join()
        .unwrap();
        let h = home.clone();
        assert!(!thread::spawn(move || h.wake(0)).join().unwrap());
        assert_finished(&home, false);
    });
}

/// A greenlet yields while a wake races in. The hub re-queues it once
/// (`complete_yield`) and the wake never queues it a second time; after its next run it
/// is finished with nothing queued.
#[test]
fn yield_races_wake_queues_once() {
    loom::model(|| {
        let home = Arc::new(Home::new(0));
        let h = home.clone();
        let hub = thread::spawn(move || {
            let mut ready = VecDeque::new();
            h.state.start_running();
            let h2 = h.clone();
            let waker = thread::spawn(move || h2.wake(0));
            // Suspend::Yield.
            h.state.complete_yield();
            ready.push_back(());

            assert!(ready.pop_front().is_some());
            h.state.start_running();
            h.state.complete();
            assert!(ready.is_empty(), "yielded greenlet queued twice");
            waker
        });
        let waker = hub.join().unwrap();
        assert!(
            !waker.join().unwrap(),
            "a wake queued a yielded greenlet again"
        );
        assert_finished(&home, true);
    });
}

/// A wake that lands while the greenlet runs (`RUNNING | NOTIFIED`), then a yield:
/// `complete_yield` absorbs the notification, so the greenlet comes off the queue
/// `SCHEDULED` and its next park is a real one (`complete_park` succeeds).
#[test]
fn yield_absorbs_notification() {
    loom::model(|| {
        let home = Arc::new(Home::new(0));
        let h = home.clone();
        thread::spawn(move || {
            h.state.start_running();
            let h2 = h.clone();
            assert!(!thread::spawn(move || h2.wake(0)).join().unwrap());
            assert_eq!(h.state.load(), RUNNING | NOTIFIED);
            h.state.complete_yield();
            assert_eq!(h.state.load(), SCHEDULED, "yield kept the notification");
            h.state.start_running();
            assert!(
                h.state.complete_park(),
                "absorbed wake re-queued the greenlet"
            );
        })
        .join()
        .unwrap();
        assert_eq!(home.state.load(), PARKED);
        assert_eq!(home.inbox_len(), 0);
    });
}
