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
//! * The **hub** thread runs the production hub loop, `Hub::run` (`scheduler/src/hub.rs`),
//!   on a one-worker production `Core`, with a token for the greenlet. Running it is the
//!   model's closure, `Local::run_task`'s steps (`scheduler/src/worker/mod.rs`):
//!   `start_running`, "resume" (the greenlet body is inlined: it registers its waker, which
//!   here means spawning the waker thread, and asks to park), then `complete_park` and, if
//!   that fails, `Hub::push_ready`. Between parks the real loop finds the greenlet again
//!   (`next_task`: `ready`, then the inbox) or sleeps on the worker's `Parker` (`sleep`).
//!   When the greenlet returns, the closure closes the core (`Core::close`), which ends the
//!   loop.
//! * A **waker** thread is `Task::wake` (`scheduler/src/task.rs`) on another thread (the
//!   reactor, another worker, a plain thread): `State::unpark`, and on `Unpark::Schedule`
//!   the runtime's `Schedule` for a wake from another thread, `Core::push_remote`: push to
//!   the home worker's inbox, then unpark the home worker's `Parker`.
//! * A **stale** waker is one left over from an earlier wait: it may fire at any time,
//!   including before `start_running` and after `complete`.
//!
//! The state word, the hub loop, its queues and the parker are the runtime's own; the
//! coroutine switch itself is not (it cannot run under loom), and only `run_task`'s state
//! steps around it are written here.
//!
//! # Properties asserted
//! * Exactly one queue insertion per park: the hub's failed `complete_park` or one
//!   waker's `Schedule`, never both, never neither (never neither also shows up as a
//!   loom deadlock: the hub would sleep forever).
//! * The greenlet is only ever taken off a queue in `SCHEDULED`, and no queue holds it
//!   once it is `DONE`.
//! * What a waker writes before waking is visible to the greenlet once resumed (the
//!   `AcqRel` of `unpark` and `complete_park`), checked with a `Relaxed` mailbox so that
//!   only the protocol's own edges can make it visible; also when the wake found the
//!   greenlet already scheduled (`a_wake_of_a_scheduled_greenlet_is_seen_when_it_runs`).
//! * `complete_yield` absorbs a wake that landed while the greenlet ran, and a wake
//!   racing a yield never queues it a second time; a wake after `complete` does nothing.
//!
//! Earlier versions of these models (around a copy of the hub loop) were checked to fail
//! when the protocol is broken on purpose: `unpark`
//! of a running greenlet not setting `NOTIFIED` or scheduling it, `complete_park`
//! ignoring `NOTIFIED`, `Relaxed` instead of `AcqRel`/`Acquire` on either CAS, or the
//! hub's `Parker` losing its lock hand-off or `notify_one`. On the production loop
//! (`Hub::run`), checked again: `Core::push_remote` without its `Parker::unpark`
//! deadlocks `wake_races_park_resumes_once`, `two_wakers_race_park_queue_once`,
//! `stale_wake_anywhere_resumes_once` and `second_park_after_wake_resumes_once`.
//!
//! # A loom limitation
//! `complete` is a plain store that may race an unparker's CAS (`RUNNING → RUNNING |
//! NOTIFIED`); `complete_yield` and the failure path of `complete_park` were too, before
//! they became swaps (`state`, "Every wake publishes"). On real
//! hardware a CAS is atomic, so the store lands before or after it. loom 0.7.3 does not
//! enforce RMW atomicity against a plain store the RMW did not observe
//! (tokio-rs/loom#254 and #389, fix pending in tokio-rs/loom#391), and can end such an
//! execution in `RUNNING | NOTIFIED`. Where a wake *races* one of those stores, the
//! models therefore check what callers rely on (nothing queued twice, a later wake
//! does nothing) rather than the exact state value; where the wake is ordered with the
//! store, they check the exact value.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use grove_scheduler::__loom::{
    Core, Hub, Job, State, Unpark, DONE, NOTIFIED, PARKED, RUNNING, SCHEDULED,
};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread::{self, JoinHandle};

/// Mailbox value meaning "nothing written yet".
const EMPTY_MAIL: usize = usize::MAX;

/// The greenlet as the hub core sees it; the number names who queued it.
#[derive(Debug)]
struct Greenlet(usize);

impl Job for Greenlet {
    /// Started: it only ever goes to its home worker's `ready` and inbox.
    fn is_started(&self) -> bool {
        true
    }
}

/// One greenlet and its home worker's shared core.
struct Home {
    /// The greenlet's state word (`Header::state`).
    state: State,
    /// The production core of a one-worker runtime (its inbox and parker are what other
    /// threads touch), shared with the hub as the runtime shares it.
    core: std::sync::Arc<Core<Greenlet, ()>>,
    /// One slot per park: what that park's waker publishes before waking. `Relaxed`
    /// on both sides, so only the protocol's synchronization can make it visible.
    mail: Vec<AtomicUsize>,
}

impl Home {
    /// The greenlet, and the hub of its home worker.
    fn new(rounds: usize) -> (Home, Hub<Greenlet, ()>) {
        let (core, mut fresh) = Core::new(1, |_| ());
        let core = std::sync::Arc::new(core);
        let hub = Hub::new(0, core.clone(), fresh.pop().unwrap());
        let home = Home {
            state: State::new(),
            core,
            mail: (0..rounds).map(|_| AtomicUsize::new(EMPTY_MAIL)).collect(),
        };
        (home, hub)
    }

    /// `Task::wake` from a thread that is not the home worker. Returns `true` if
    /// this wake queued the greenlet.
    fn wake(&self, id: usize) -> bool {
        match self.state.unpark() {
            Unpark::Schedule => {
                // The runtime's `Schedule` from another thread: `Core::push_remote`.
                self.core.push_remote(0, Greenlet(id));
                true
            }
            Unpark::Nothing => false,
        }
    }

    /// Number of greenlet entries still sitting in the inbox.
    fn inbox_len(&self) -> usize {
        self.core.workers[0].inbox.len()
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

/// The hub's side: the production loop runs the greenlet through `rounds` parks, then to
/// completion. Returns how many times the hub itself re-queued the greenlet (failed
/// `complete_park`) and the handles of every waker it started.
fn hub(home: &Arc<Home>, hub: Hub<Greenlet, ()>, sc: Scenario) -> (usize, Vec<JoinHandle<bool>>) {
    let round = Cell::new(0);
    let requeued = Cell::new(0);
    let wakers = RefCell::new(Vec::new());
    // Queued by its spawn.
    hub.push_ready(Greenlet(usize::MAX));
    hub.run(&(), |g| {
        let round_now = round.get();
        assert!(
            g.0 == usize::MAX || g.0 < sc.rounds * sc.wakers,
            "queued by someone other than its spawn and its wakers"
        );
        // Taken off a run queue, so it must be SCHEDULED.
        assert_eq!(
            home.state.load(),
            SCHEDULED,
            "run_task: greenlet not scheduled"
        );
        home.state.start_running();

        // Resumed after park `round - 1`: that park's waker's write must be visible.
        // Only checked with a single waker per park and no stale waker, where that
        // waker is the only thing that can have resumed us.
        if round_now > 0 && sc.wakers == 1 && !sc.stale {
            let got = home.mail[round_now - 1].load(Ordering::Relaxed);
            assert_eq!(
                got,
                round_now - 1,
                "woken greenlet missed its waker's write"
            );
        }

        if round_now == sc.rounds {
            // The body returns; nothing is left to run.
            home.state.complete();
            home.core
                .close(|g| panic!("{g:?} queued outside the home worker"));
            return;
        }

        // Greenlet body: register a waker for this park (the waker thread starts once
        // it can see the registration), then switch to the hub asking to park.
        for w in 0..sc.wakers {
            let home = home.clone();
            let publish = sc.wakers == 1 && !sc.stale;
            wakers.borrow_mut().push(thread::spawn(move || {
                if publish {
                    home.mail[round_now].store(round_now, Ordering::Relaxed);
                }
                home.wake(round_now * sc.wakers + w)
            }));
        }

        // Hub, off the greenlet's stack.
        if !home.state.complete_park() {
            requeued.set(requeued.get() + 1);
            hub.push_ready(g);
        }
        round.set(round_now + 1);
    });
    assert!(
        hub.next_in_shutdown().is_none(),
        "greenlet queued on the hub after it finished"
    );
    (requeued.get(), wakers.into_inner())
}

/// Runs one scenario and checks the exactly-once accounting.
fn check(sc: Scenario) {
    let (home, home_hub) = Home::new(sc.rounds);
    let home = Arc::new(home);

    let stale = sc.stale.then(|| {
        let home = home.clone();
        thread::spawn(move || home.wake(usize::MAX))
    });

    let hub_home = home.clone();
    let (requeued, wakers) = thread::spawn(move || hub(&hub_home, home_hub, sc))
        .join()
        .unwrap();

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
        let home = Arc::new(Home::new(0).0);

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
        let home = Arc::new(Home::new(0).0);
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
        let home = Arc::new(Home::new(0).0);
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
        let home = Arc::new(Home::new(0).0);
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
        let home = Arc::new(Home::new(0).0);
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

/// Every wake publishes (`state`'s "Every wake publishes"): two wakers each set a flag
/// (`Relaxed`, so only the state word can make it visible) and wake the greenlet, whose
/// wait loop, like a wait list's, parks again until it sees both flags. The second wake
/// may find the greenlet already `SCHEDULED` (or `RUNNING | NOTIFIED`) by the first: it
/// must still be seen when the greenlet next runs, or the greenlet parks for good (loom
/// then reports the hub asleep with nobody left to wake it).
///
/// Fails on the old protocol (an `unpark` that only loaded the word and did nothing in
/// `SCHEDULED`, and a `start_running` that was a relaxed store): that is the lost wake
/// behind a consumer stuck in `Queue::get` after `close`.
#[test]
fn a_wake_of_a_scheduled_greenlet_is_seen_when_it_runs() {
    loom::model(|| {
        let (home, home_hub) = Home::new(2);
        let home = Arc::new(home);
        let hub_home = home.clone();
        let wakers = thread::spawn(move || {
            let home = hub_home;
            let wakers = RefCell::new(Vec::new());
            home_hub.push_ready(Greenlet(usize::MAX));
            home_hub.run(&(), |g| {
                assert_eq!(home.state.load(), SCHEDULED);
                home.state.start_running();
                if wakers.borrow().is_empty() {
                    // First run: the greenlet registers its waker; both wakers start.
                    for i in 0..2 {
                        let home = home.clone();
                        wakers.borrow_mut().push(thread::spawn(move || {
                            home.mail[i].store(1, Ordering::Relaxed);
                            home.wake(i);
                        }));
                    }
                }
                if home.mail.iter().all(|m| m.load(Ordering::Relaxed) == 1) {
                    home.state.complete();
                    home.core
                        .close(|g| panic!("{g:?} queued outside the home worker"));
                    return;
                }
                if !home.state.complete_park() {
                    home_hub.push_ready(g);
                }
            });
            wakers.into_inner()
        })
        .join()
        .unwrap();
        for w in wakers {
            w.join().unwrap();
        }
        assert_eq!(
            home.inbox_len(),
            0,
            "greenlet left queued after it finished"
        );
    });
}
