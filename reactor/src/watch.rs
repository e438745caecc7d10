//! Who blocks in the kernel: the reactor thread, or nobody, because a worker is watching.
//!
//! # The problem
//!
//! Every readiness event used to travel kernel → reactor thread → the woken greenlet's worker:
//! two wake-ups, and on a small machine a third thread competing with the workers for cores.
//! Workers can harvest events themselves (a zero-timeout `epoll_wait` on the shared poll, when
//! they run out of work and every few dozen ticks while busy), waking their own greenlets with a
//! local push. But then the reactor thread must *not* also sleep in `epoll_wait`: the kernel
//! would wake it for every event the workers were about to take. And when every worker sleeps,
//! someone must sleep in `epoll_wait`, or an event would wait forever.
//!
//! # Vocabulary
//!
//! * **watcher**: a worker that is awake. It promises to harvest events when it runs dry and
//!   every few ticks while busy, and to say so ([`Watch::watcher_leaves`]) before it sleeps.
//! * **aside**: the reactor thread sleeps on its thread parker, not in the kernel, until a
//!   notification or a stale-watch check (a watcher stuck in a long greenlet). Watchers fire
//!   due timers when they harvest, so the next deadline does not end this sleep.
//! * **kernel**: the reactor thread blocks in `epoll_wait` (on an outer poll holding the shared
//!   poll's descriptor and its own eventfd), so an event wakes it.
//! * **rouse**: what a thread must do to make the reactor look again: unpark it (aside), write
//!   its eventfd (kernel), or nothing (it is running and will see the flag before it sleeps).
//!
//! # Rejected approaches
//!
//! * *The reactor always in `epoll_wait`, workers polling too*: the reactor wakes for every
//!   event it then finds taken; the extra hop's cost stays.
//! * *The last worker to sleep blocks in `epoll_wait` itself* (tokio parks a worker in the
//!   driver): no reactor wake at all, but then timers need a second owner and a sleeping worker
//!   owns the poll; grove keeps one reactor thread as the owner of the poll and the timers.
//! * *The eventfd in the shared poll*: a worker's harvest could swallow the notification meant
//!   to interrupt the reactor's sleep. The reactor's eventfd lives in an outer poll of its own.
//!
//! # The protocol
//!
//! One word of watchers and one word of reactor state (`RUNNING`, `ASIDE` or `KERNEL`, plus a
//! `NOTIFIED` bit); every access is `SeqCst`, so all of them fall in one total order.
//!
//! * **R1** (reactor, before sleeping): read the watcher count, choose `ASIDE` if it is
//!   non-zero, else `KERNEL`, and compare-and-swap the state `RUNNING → mode`. If the swap fails,
//!   `NOTIFIED` was set: clear it and start the loop again (fire timers, choose again).
//! * **R1'** The reactor also chooses `ASIDE` when its last batch of wakes unparked a worker (the
//!   wake scope says so). That worker has not counted itself yet, but it will: it wakes, increments
//!   the count (W1), and before it sleeps again decrements it (W2), which rouses an `ASIDE` reactor
//!   if it was the last. Without R1' the reactor, having just woken the worker that is about to
//!   watch, would go back to the kernel and be woken by the very events that worker was going to
//!   harvest: the extra hop again, on every event batch of a lightly loaded server. (A wake that
//!   lands on another runtime's worker, whose W2 rouses another reactor, costs at most one
//!   stale-watch interval before this reactor chooses again.)
//! * **R2** (reactor, after waking): swap the state to `RUNNING`, clearing `NOTIFIED`.
//! * **W1** (worker waking): increment the watcher count.
//! * **W2** (worker about to sleep, after its last harvest found nothing): decrement the watcher
//!   count. If it fell to zero, rouse an `ASIDE` or `RUNNING` reactor: set `NOTIFIED` unless it
//!   is set already or the reactor is in the kernel (it will see the event there), and unpark
//!   the thread if it was `ASIDE`.
//! * **N** (anyone, for an earlier timer or shutdown): set `NOTIFIED` (unless already set) and
//!   rouse the reactor according to the mode found: unpark if `ASIDE`, eventfd if `KERNEL`.
//!
//! *No event waits while everyone sleeps.* An event arriving after the last watcher's final
//! harvest stays in the epoll ready list. That watcher's W2 brought the count to zero. If R1's
//! read of the count came after W2's decrement, the reactor chose `KERNEL` and its `epoll_wait`
//! returns the event. If it came before, R1's compare-and-swap and W2's rouse are ordered on the
//! state word: either the rouse came first and R1's swap fails (the reactor loops and reads the
//! count again), or R1 came first and the rouse finds `ASIDE` and unparks it. (Loom model
//! `last_watcher_leaving_never_strands_an_event`.)
//!
//! *No timer is slept through.* The `KERNEL` sleep is bounded by the next deadline, and N
//! interrupts it. The `ASIDE` sleep is bounded by the stale-watch interval instead: while it
//! lasts, watchers fire due timers in their harvests, and the reactor fires what they left
//! when it wakes; N unparks it too. `NOTIFIED` is only ever set by a rouse that will be
//! seen: W2 never sets it on a reactor in the kernel, where it would make a later N believe the
//! reactor had already been interrupted. (Loom model `notify_interrupts_either_sleep`.)
//!
//! *No watcher is needed for liveness.* A watcher that does not harvest (a greenlet that never
//! yields) delays events by at most the reactor's stale-watch interval: an `ASIDE` sleep is
//! bounded by it, and a reactor that wakes to find no harvest since it went to sleep harvests
//! itself (Go's `sysmon` plays this role).

use crate::loom::{AtomicUsize, Ordering::SeqCst};

/// The reactor is awake: firing timers, dispatching, deciding how to sleep.
const RUNNING: usize = 0;
/// The reactor sleeps on its thread parker; watchers harvest the events.
const ASIDE: usize = 1;
/// The reactor blocks in `epoll_wait`.
const KERNEL: usize = 2;
const MODE: usize = 3;
/// A rouse is on its way (or the reactor will see this bit before it sleeps).
const NOTIFIED: usize = 4;

/// How the reactor sleeps, as chosen by [`Watch::prepare_sleep`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sleep {
    /// On its thread parker: workers are watching.
    Aside,
    /// In `epoll_wait`: nobody else is.
    Kernel,
}

/// What the caller of [`Watch::notify`] or [`Watch::watcher_leaves`] must do to rouse the
/// reactor.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rouse {
    /// Nothing: the reactor is awake, already roused, or (for a leaving watcher) in the kernel.
    Nothing,
    /// Unpark the reactor thread.
    Unpark,
    /// Write the reactor's eventfd (interrupt its `epoll_wait`).
    Interrupt,
}

/// The watcher count and the reactor's sleep state; see the module documentation. On cache
/// lines of its own: every worker's sleep and wake write it.
#[derive(Debug)]
#[repr(align(128))]
pub struct Watch {
    watchers: AtomicUsize,
    state: AtomicUsize,
}

impl Watch {
    /// No watcher; the reactor running.
    pub fn new() -> Watch {
        Watch {
            watchers: AtomicUsize::new(0),
            state: AtomicUsize::new(RUNNING),
        }
    }

    /// W1: a worker woke up and watches.
    pub fn watcher_arrives(&self) {
        self.watchers.fetch_add(1, SeqCst);
    }

    /// W2: a worker is about to sleep; its last harvest came before this call.
    pub fn watcher_leaves(&self) -> Rouse {
        let prev = self.watchers.fetch_sub(1, SeqCst);
        debug_assert!(prev > 0, "Watch::watcher_leaves: no watcher");
        if prev != 1 {
            return Rouse::Nothing;
        }
        let mut state = self.state.load(SeqCst);
        loop {
            if state & NOTIFIED != 0 || state & MODE == KERNEL {
                return Rouse::Nothing;
            }
            match self
                .state
                .compare_exchange(state, state | NOTIFIED, SeqCst, SeqCst)
            {
                Ok(_) if state & MODE == ASIDE => return Rouse::Unpark,
                Ok(_) => return Rouse::Nothing,
                Err(actual) => state = actual,
            }
        }
    }

    /// N: the reactor must look again (an earlier timer, shutdown), however it sleeps.
    pub fn notify(&self) -> Rouse {
        let prev = self.state.fetch_or(NOTIFIED, SeqCst);
        if prev & NOTIFIED != 0 {
            return Rouse::Nothing;
        }
        match prev & MODE {
            ASIDE => Rouse::Unpark,
            KERNEL => Rouse::Interrupt,
            _ => Rouse::Nothing,
        }
    }

    /// R1: how the reactor should sleep, or `None` if it was notified meanwhile (it must loop:
    /// fire timers, then ask again). `expect_watcher`: the reactor has just unparked a worker
    /// (R1', see the module docs), which counts as a watcher on its way.
    pub fn prepare_sleep(&self, expect_watcher: bool) -> Option<Sleep> {
        let (mode, sleep) = if expect_watcher || self.watchers.load(SeqCst) > 0 {
            (ASIDE, Sleep::Aside)
        } else {
            (KERNEL, Sleep::Kernel)
        };
        match self.state.compare_exchange(RUNNING, mode, SeqCst, SeqCst) {
            Ok(_) => Some(sleep),
            Err(_) => {
                // NOTIFIED: consume it; the caller looks again before sleeping.
                self.state.swap(RUNNING, SeqCst);
                None
            }
        }
    }

    /// R2: the reactor woke up (for any reason).
    pub fn woke(&self) {
        self.state.swap(RUNNING, SeqCst);
    }

    /// Workers watching now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(SeqCst)
    }
}

impl Default for Watch {
    fn default() -> Watch {
        Watch::new()
    }
}

#[cfg(all(test, not(grove_loom)))]
mod tests {
    use super::*;

    #[test]
    fn last_watcher_rouses_an_aside_reactor_only() {
        let w = Watch::new();
        w.watcher_arrives();
        w.watcher_arrives();
        assert_eq!(w.prepare_sleep(false), Some(Sleep::Aside));
        assert_eq!(w.watcher_leaves(), Rouse::Nothing, "not the last");
        assert_eq!(w.watcher_leaves(), Rouse::Unpark);
        // Already roused: a notify need not unpark again.
        assert_eq!(w.notify(), Rouse::Nothing);
        w.woke();
        assert_eq!(w.prepare_sleep(false), Some(Sleep::Kernel));
        w.watcher_arrives();
        assert_eq!(w.watcher_leaves(), Rouse::Nothing, "in the kernel already");
        assert_eq!(w.notify(), Rouse::Interrupt);
        w.woke();
    }

    #[test]
    fn a_rouse_before_the_sleep_cancels_it() {
        let w = Watch::new();
        w.watcher_arrives();
        assert_eq!(w.watcher_leaves(), Rouse::Nothing);
        assert_eq!(w.prepare_sleep(false), None, "the rouse was lost");
        assert_eq!(w.notify(), Rouse::Nothing);
        assert_eq!(w.prepare_sleep(false), None, "the notify was lost");
        assert_eq!(
            w.prepare_sleep(true),
            Some(Sleep::Aside),
            "a worker on its way"
        );
        w.woke();
        assert_eq!(w.prepare_sleep(false), Some(Sleep::Kernel));
    }
}
