//! `Event`: a flag greenlets wait for (gevent's `gevent.event.Event`).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::waitlist::{lock, wait, WaitList};

struct State {
    set: bool,
    waiters: WaitList<()>,
}

/// A flag that greenlets (or threads) wait for: [`set`](Event::set) wakes every
/// waiter; [`clear`](Event::clear) resets it.
///
/// Cheap to clone: clones share one flag. Waiting parks a greenlet (its worker runs
/// others) or blocks a plain thread; `set` may be called from anywhere, including a
/// plain OS thread. A waiter woken by `set` returns (from `wait_timeout`: `true`) even if
/// the flag was cleared again before it ran (as in gevent).
///
/// ```
/// use grove::sync::Event;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let ev = Event::new();
/// let ev2 = ev.clone();
/// let waiter = rt.spawn(move || ev2.wait());
/// rt.block_on(move || ev.set());
/// waiter.join().unwrap(); // its `wait` returned: the flag was set
/// ```
#[derive(Clone)]
pub struct Event {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("Event")
            .field("set", &s.set)
            .field("waiters", &s.waiters.len())
            .finish()
    }
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl Event {
    /// A new, unset event.
    pub fn new() -> Event {
        Event {
            state: Arc::new(Mutex::new(State {
                set: false,
                waiters: WaitList::default(),
            })),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut s = lock(&self.state);
        s.set = true;
        s.waiters.notify_all(|| ());
    }

    /// Resets the flag; later `wait`s block until the next `set`.
    pub fn clear(&self) {
        lock(&self.state).set = false;
    }

    /// True if the flag is set.
    pub fn is_set(&self) -> bool {
        lock(&self.state).set
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Waits at most `timeout`; returns whether the flag was set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        let s = lock(&self.state);
        if s.set {
            return true;
        }
        // `set` wakes everyone, so a wake-up consumed by a cancelled waiter is owed to
        // nobody: nothing to pass on.
        match wait(
            grove_scheduler::WaitReason::EVENT_WAIT,
            s,
            &self.state,
            |s| &mut s.waiters,
            deadline,
            |_, ()| {},
        ) {
            Some(()) => true,
            None => self.is_set(),
        }
    }
}
