// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the wait list every blocking primitive is built on
//! (`primitives/src/waitlist.rs`, protocol steps 1–4).
//!
//! # Who each thread stands for
//! * A **waiter** is a greenlet blocked in a primitive: under the primitive's mutex it
//!   finds nothing to take and links a node (step 1), then runs
//!   [`wait_with`] (step 2, and step 4 on the way out). Its waker sets its park token,
//!   as a greenlet's waker reschedules it; parking on the token is the scheduler's
//!   `park`.
//! * A **notifier** is `Queue::put`, `Semaphore::release`, `Event::set`…: under the
//!   mutex it hands a value to the first waiter (step 3), or, if nobody waits, keeps
//!   it in the primitive.
//! * A **canceller** is the timer of a deadline, or a `kill`/`Timeout`: it flags the
//!   waiter and unparks it. The waiter's `park` then either reports the deadline (the
//!   wait gives up and returns what it was handed, if anything) or unwinds (the wait
//!   passes a handed value on before the unwind continues).
//!
//! The primitive in models (a)–(c) is a minimal queue: a `VecDeque` of items and a
//! `WaitList`, whose `pass_on` hands a returned item to the next waiter, else back to
//! the items — what `Queue` does. Model (d) is `Event` (flag and `notify_all` under the
//! mutex) and `AsyncResult` (outcome published before the mutex is taken).
//!
//! # Properties asserted
//! * Exactly once: every value put ends in exactly one place — a waiter's result or
//!   the primitive's items — never lost (also a loom deadlock: a waiter would park
//!   forever), never duplicated.
//! * FIFO: a notifier hands its value to the earliest waiter still queued.
//! * No lost wake-up: a waiter that pushed before a `set`/`put` is woken (otherwise
//!   loom reports a deadlock); a waiter that gave up leaves no node behind.
//!
//! Each model was checked to fail with the protocol broken on purpose: `cancel`
//! dropping a value it was handed instead of returning it, and `notify_one` raising
//! `notified` before storing the value (loom reports the waiter's racing read).

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex as StdMutex;
use std::task::{Wake, Waker};

use grove_primitives::__loom::{lock, wait_with, WaitList};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

/// A waiter's park/unpark token: what a greenlet's state word gives it (a wake before
/// the park is kept, and the park returns at once). `loom::thread::park` would be the
/// obvious stand-in, but loom 0.7's `Thread::unpark` also makes runnable a thread that
/// is blocked on a loom `Mutex`, which loom then rejects; a mutex and condvar do not
/// have that problem.
#[derive(Default)]
struct Token {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl Token {
    /// The scheduler's `park`: sleeps until woken, consuming the wake.
    fn park(&self) {
        let mut woken = lock(&self.woken);
        while !*woken {
            woken = self.cv.wait(woken).unwrap();
        }
        *woken = false;
    }

    /// The waker's `wake`.
    fn unpark(&self) {
        *lock(&self.woken) = true;
        self.cv.notify_one();
    }
}

/// A waker that unparks a waiter's token and logs, for the FIFO check, whom it woke.
struct Unparker {
    id: usize,
    token: Arc<Token>,
    log: Log,
}

/// Waiter ids in the order they were woken.
type Log = std::sync::Arc<StdMutex<Vec<usize>>>;

impl Wake for Unparker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        // Wakes happen inside `notify_one`, under the primitive's mutex, so the log is
        // in hand-off order. Only one loom thread runs at a time: the std mutex is
        // never contended.
        self.log.lock().unwrap().push(self.id);
        self.token.unpark();
    }
}

/// The waker of waiter `id`, unparking `token` and logging to `log`.
fn waker(id: usize, token: &Arc<Token>, log: &Log) -> Waker {
    Waker::from(std::sync::Arc::new(Unparker {
        id,
        token: token.clone(),
        log: log.clone(),
    }))
}

/// A minimal queue primitive.
#[derive(Default)]
struct Q {
    items: VecDeque<u32>,
    list: WaitList<u32>,
    /// Waiter ids in the order they linked their nodes.
    pushed: Vec<usize>,
}

/// `pass_on` of a queue: the next waiter, else back to the items (at the front: it
/// was the oldest item).
fn pass_on(q: &mut Q, v: u32) {
    if let Err(v) = q.list.notify_one(v) {
        q.items.push_front(v);
    }
}

/// How a waiter's wait ends if it gives up.
#[derive(Clone, Copy, Debug, PartialEq)]
enum GiveUp {
    /// Its deadline passes: `park` returns `false`.
    Deadline,
    /// It is killed in `park` (kill, Timeout): `park` unwinds.
    Unwind,
}

/// The payload a killed waiter unwinds with (`resume_unwind`: no panic hook, no noise).
struct Killed;

/// How a waiter's wait ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Got this value (by hand-off, or from the items without waiting).
    Got(u32),
    /// Gave up at its deadline with nothing handed over.
    TimedOut,
    /// Unwound (anything handed over was passed on).
    Killed,
}

impl Outcome {
    fn value(&self) -> Option<u32> {
        match *self {
            Outcome::Got(v) => Some(v),
            Outcome::TimedOut | Outcome::Killed => None,
        }
    }
}

/// `Queue::get` for waiter `id`: takes an item, else links a node and waits. If
/// `give_up` is set, the wait gives up the way `how` says once `stop` is raised (or at
/// once, when `stop` is `None`: a deadline that passes right after the push).
fn get(
    q: &Mutex<Q>,
    id: usize,
    token: &Arc<Token>,
    log: &Log,
    give_up: Option<(GiveUp, Option<&AtomicBool>)>,
) -> Outcome {
    let mut s = lock(q);
    if let Some(v) = s.items.pop_front() {
        return Outcome::Got(v);
    }
    s.pushed.push(id);
    let park = || {
        if let Some((how, stop)) = give_up {
            if stop.is_none_or(|s| s.load(Ordering::Acquire)) {
                match how {
                    GiveUp::Deadline => return false,
                    GiveUp::Unwind => panic::resume_unwind(Box::new(Killed)),
                }
            }
        }
        token.park();
        true
    };
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        wait_with(s, q, |s| &mut s.list, waker(id, token, log), pass_on, park)
    }));
    match r {
        Ok(Some(v)) => Outcome::Got(v),
        Ok(None) => Outcome::TimedOut,
        Err(payload) => {
            assert!(payload.is::<Killed>(), "unexpected panic in wait_with");
            Outcome::Killed
        }
    }
}

/// `Queue::put`: hands `v` to the first waiter, else keeps it. Returns the id of the
/// waiter it handed `v` to, after checking that it was the earliest still queued.
fn put(q: &Mutex<Q>, v: u32, log: &Log) -> Option<usize> {
    let mut s = lock(q);
    let queued = s.list.len();
    let before = log.lock().unwrap().len();
    match s.list.notify_one(v) {
        Ok(()) => {
            let woken = log.lock().unwrap()[before];
            check_fifo(&s.pushed, queued, woken);
            Some(woken)
        }
        Err(v) => {
            s.items.push_back(v);
            None
        }
    }
}

/// FIFO: with `queued` nodes left of those `pushed` (in push order), the one handed
/// the value must be the earliest of them. Only waiter 0 can have left the queue
/// early (it is the one that gives up), so the earliest still queued is known.
fn check_fifo(pushed: &[usize], queued: usize, woken: usize) {
    let still: Vec<usize> = if queued == pushed.len() {
        pushed.to_vec()
    } else {
        assert_eq!(queued + 1, pushed.len(), "more than one node left early");
        pushed.iter().copied().filter(|&id| id != 0).collect()
    };
    assert_eq!(
        woken, still[0],
        "hand-off not FIFO: pushed {pushed:?}, {queued} queued"
    );
}

/// (a) One waiter, one `put`: the waiter gets the value exactly once and nothing is
/// left behind, whether the put comes before or after the push.
#[test]
fn wait_vs_notify() {
    loom::model(|| {
        let q = Arc::new(Mutex::new(Q::default()));
        let log = std::sync::Arc::new(StdMutex::new(Vec::new()));
        let token = Arc::new(Token::default());
        let w = {
            let (q, token, log) = (q.clone(), token.clone(), log.clone());
            thread::spawn(move || get(&q, 0, &token, &log, None))
        };
        put(&q, 7, &log);
        assert_eq!(w.join().unwrap(), Outcome::Got(7));
        let s = lock(&q);
        assert!(s.items.is_empty(), "value duplicated");
        assert_eq!(s.list.len(), 0, "node left behind");
    });
}

/// (b) One waiter, one `put`, one canceller (deadline timer or killer), racing. The
/// value ends either with the waiter or back in the queue, exactly once; a waiter that
/// timed out or was killed leaves no node behind.
fn wait_vs_notify_vs_cancel(how: GiveUp) {
    loom::model(move || {
        let q = Arc::new(Mutex::new(Q::default()));
        let log = std::sync::Arc::new(StdMutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let token = Arc::new(Token::default());
        let w = {
            let (q, token, log, stop) = (q.clone(), token.clone(), log.clone(), stop.clone());
            thread::spawn(move || get(&q, 0, &token, &log, Some((how, Some(&stop)))))
        };
        let canceller = {
            let stop = stop.clone();
            thread::spawn(move || {
                stop.store(true, Ordering::Release);
                token.unpark();
            })
        };
        put(&q, 7, &log);
        let outcome = w.join().unwrap();
        canceller.join().unwrap();
        let s = lock(&q);
        let places = usize::from(outcome.value() == Some(7)) + s.items.len();
        assert_eq!(
            places, 1,
            "value lost or duplicated: {outcome:?}, {:?}",
            s.items
        );
        assert_eq!(s.list.len(), 0, "node left behind");
        if how == GiveUp::Deadline {
            assert_ne!(outcome, Outcome::Killed);
        }
    });
}

/// (b), deadline path.
#[test]
fn wait_vs_notify_vs_deadline() {
    wait_vs_notify_vs_cancel(GiveUp::Deadline);
}

/// (b), unwind path.
#[test]
fn wait_vs_notify_vs_kill() {
    wait_vs_notify_vs_cancel(GiveUp::Unwind);
}

/// (c) Two waiters, one `put`, and waiter 0 giving up (at once after its push) by
/// deadline or unwind. The put hands its value to the earliest waiter still queued
/// (FIFO); a value handed to the quitter is kept (deadline) or passed on to the other
/// waiter (unwind); exactly once throughout. A second put, once the first waiter is
/// done, releases the other waiter, and both values must be accounted for.
fn two_waiters(how: GiveUp) {
    loom::model(move || {
        let q = Arc::new(Mutex::new(Q::default()));
        let log = std::sync::Arc::new(StdMutex::new(Vec::new()));
        let w0 = {
            let (q, log) = (q.clone(), log.clone());
            let token = Arc::new(Token::default());
            thread::spawn(move || get(&q, 0, &token, &log, Some((how, None))))
        };
        let w1 = {
            let (q, log) = (q.clone(), log.clone());
            let token = Arc::new(Token::default());
            thread::spawn(move || get(&q, 1, &token, &log, None))
        };
        put(&q, 1, &log);
        let o0 = w0.join().unwrap();
        put(&q, 2, &log);
        let o1 = w1.join().unwrap();
        let s = lock(&q);
        let mut all: Vec<u32> = [o0.value(), o1.value()].into_iter().flatten().collect();
        all.extend(s.items.iter().copied());
        all.sort_unstable();
        assert_eq!(
            all,
            [1, 2],
            "values lost or duplicated: {o0:?} {o1:?} {:?}",
            s.items
        );
        assert_eq!(s.list.len(), 0, "node left behind");
        assert!(o1.value().is_some(), "waiter 1 never gives up");
    });
}

/// (c), deadline path.
#[test]
fn two_waiters_one_times_out() {
    two_waiters(GiveUp::Deadline);
}

/// (c), unwind path.
#[test]
fn two_waiters_one_killed() {
    two_waiters(GiveUp::Unwind);
}

/// `Event`'s state: the flag and its waiters under one mutex.
#[derive(Default)]
struct Ev {
    set: bool,
    list: WaitList<()>,
}

/// (d) `Event::set` racing two `Event::wait`s: every waiter returns (a lost wake-up
/// is a loom deadlock), and none is left queued.
#[test]
fn event_set_vs_wait() {
    loom::model(|| {
        let ev = Arc::new(Mutex::new(Ev::default()));
        let log = std::sync::Arc::new(StdMutex::new(Vec::new()));
        let waiters: Vec<_> = (0..2)
            .map(|id| {
                let (ev, log) = (ev.clone(), log.clone());
                let token = Arc::new(Token::default());
                thread::spawn(move || {
                    let s = lock(&ev);
                    if s.set {
                        return;
                    }
                    let got = wait_with(
                        s,
                        &ev,
                        |s| &mut s.list,
                        waker(id, &token, &log),
                        |_, ()| {},
                        || {
                            token.park();
                            true
                        },
                    );
                    assert_eq!(got, Some(()));
                })
            })
            .collect();
        {
            let mut s = lock(&ev);
            s.set = true;
            s.list.notify_all(|| ());
        }
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(lock(&ev).list.len(), 0, "waiter left queued after set");
    });
}

/// (d) `AsyncResult::set` racing `AsyncResult::wait`: the outcome is published before
/// the mutex is taken (a `OnceLock`, here a Release store), and the waiter checks it
/// once without and once under the mutex. The waiter returns and sees the outcome.
#[test]
fn async_result_set_vs_wait() {
    loom::model(|| {
        let outcome = Arc::new(AtomicBool::new(false));
        let waiters = Arc::new(Mutex::new(WaitList::<()>::default()));
        let log = std::sync::Arc::new(StdMutex::new(Vec::new()));
        let w = {
            let (outcome, waiters, log) = (outcome.clone(), waiters.clone(), log.clone());
            let token = Arc::new(Token::default());
            thread::spawn(move || {
                if outcome.load(Ordering::Acquire) {
                    return;
                }
                let list = lock(&waiters);
                if outcome.load(Ordering::Acquire) {
                    return;
                }
                wait_with(
                    list,
                    &waiters,
                    |w| w,
                    waker(0, &token, &log),
                    |_, ()| {},
                    || {
                        token.park();
                        true
                    },
                );
                assert!(outcome.load(Ordering::Acquire), "woken before the outcome");
            })
        };
        outcome.store(true, Ordering::Release);
        lock(&waiters).notify_all(|| ());
        w.join().unwrap();
        assert_eq!(lock(&waiters).len(), 0, "waiter left queued after set");
    });
}
