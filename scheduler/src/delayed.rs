//! `spawn_later`'s hand-off between its timer, a kill and a shutdown (loom-checked).
//!
//! A greenlet waiting out its delay is queued nowhere: its slot holds it.
//! 0. `arm` stores the greenlet and the id of its kill hook ([`store`](DelayedSlot::store)),
//!    adds the timer, then records the timer's key
//!    ([`timer_added`](DelayedSlot::timer_added)); if the greenlet is already gone (the
//!    timer fired at once), the caller cancels the timer.
//! 1. The timer fires: [`take`](DelayedSlot::take) by the timer; the caller unlinks the
//!    kill hook and queues the greenlet as an ordinary spawn.
//! 2. A kill runs the hook: `take` by the kill; the caller cancels the timer (if its key
//!    is known yet; otherwise step 0 cancels it) and queues the greenlet, which the hub
//!    then cancels as killed before it ever runs.
//! 3. Whichever of 1 and 2 takes the greenlet first wins; the other finds nothing.
//! 4. If the timer service drops the timer without firing it (a runtime's shutdown),
//!    [`leftover`](DelayedSlot::leftover) hands the greenlet to the caller, which cancels
//!    it as shut down, so no join hangs.
//!
//! The runtime's side (`greenlet::Delayed`) adds the timers and the queueing;
//! `loom-tests/tests/delayed.rs` drives this slot with a timer, a killer and a drop.

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

use crate::loom::{lock, Mutex, MutexGuard};
use crate::timers::TimerKey;

/// What a [`take`](DelayedSlot::take) leaves its caller to do.
#[derive(Debug)]
pub struct Taken<T> {
    /// The greenlet, to queue now.
    pub task: T,
    /// The timer to cancel (taken by a kill, once the key is known).
    pub cancel_timer: Option<TimerKey>,
    /// The kill hook to unlink (taken by the timer).
    pub unlink_hook: Option<u64>,
}

#[derive(Debug)]
struct Inner<T> {
    task: Option<T>,
    timer: Option<TimerKey>,
    hook: u64,
}

/// One delayed greenlet's slot.
#[derive(Debug)]
pub struct DelayedSlot<T> {
    inner: Mutex<Inner<T>>,
}

impl<T> Default for DelayedSlot<T> {
    fn default() -> Self {
        DelayedSlot::new()
    }
}

impl<T> DelayedSlot<T> {
    /// An empty slot.
    pub fn new() -> DelayedSlot<T> {
        DelayedSlot {
            inner: Mutex::new(Inner {
                task: None,
                timer: None,
                hook: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        lock(&self.inner)
    }

    /// Step 0: the greenlet and its kill hook's id, before the timer is added.
    pub fn store(&self, task: T, hook: u64) {
        let mut st = self.lock();
        st.task = Some(task);
        st.hook = hook;
    }

    /// Step 0: the timer was added under `key`. False if the greenlet is already gone,
    /// in which case the caller cancels the timer.
    pub fn timer_added(&self, key: TimerKey) -> bool {
        let mut st = self.lock();
        if st.task.is_some() {
            st.timer = Some(key);
            true
        } else {
            false
        }
    }

    /// Steps 1–3: takes the greenlet to queue it now, `by_kill` or by the timer; `None`
    /// if the other came first.
    pub fn take(&self, by_kill: bool) -> Option<Taken<T>> {
        let mut st = self.lock();
        let task = st.task.take()?;
        let timer = st.timer.take();
        Some(Taken {
            task,
            cancel_timer: if by_kill { timer } else { None },
            unlink_hook: (!by_kill).then_some(st.hook),
        })
    }

    /// Step 4: the greenlet, if neither the timer nor a kill took it.
    pub fn leftover(&self) -> Option<T> {
        self.lock().task.take()
    }
}
