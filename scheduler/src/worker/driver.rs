//! The hub's side of the owner's driver (see the `driver` module for the protocol): harvests
//! of I/O events and due timers, the spin before sleeping, and giving pooled stacks back
//! between greenlets. These are the runtime's [`Hooks`] into the hub core's loop.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};
use std::time::Instant;

use super::Local;
use crate::batch;
use crate::driver::{IDLE_POLLS, POLL_MASK, SPIN_BEFORE_PARK, SPIN_YIELD_EVERY, TRIM_MASK};
use crate::hub::Hooks;
use crate::idle::Parker;
use crate::shared::{Counters, Shared};
use crate::stack::{DEFER_LIMIT, TRIM_TIMER_MARGIN};

impl Local {
    /// Steps 1 and 2: harvests through the driver, if there is one. True if it woke anything.
    fn poll_driver(&self) -> bool {
        let Some(d) = &self.shared.driver else {
            return false;
        };
        batch::harvest(|| d.poll()) > 0
    }

    /// Before sleeping, with nothing to run: watches its own parker for a few microseconds,
    /// offering its core to other threads every [`SPIN_YIELD_EVERY`] turns, and harvests the
    /// driver [`IDLE_POLLS`] times meanwhile (Go's spinning `M`, which polls
    /// the network before it sleeps): on a busy server the next event usually arrives within
    /// that window, and taking it here saves the reactor's wake-up and a futex wake of this
    /// worker. Returns `true` if a harvest woke something (do not sleep).
    fn spin_before_park(&self) -> bool {
        let me = self.hub.remote();
        let polls = if self.shared.driver.is_some() {
            IDLE_POLLS
        } else {
            0
        };
        for round in 0..=polls {
            for i in 1..=SPIN_BEFORE_PARK / (polls + 1) {
                if me.parker.is_notified() {
                    return false;
                }
                if i % SPIN_YIELD_EVERY == 0 {
                    // Hand the core to any thread waiting for it (see `SPIN_YIELD_EVERY`).
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            if round < polls && self.poll_driver() {
                return true;
            }
        }
        false
    }

    /// An idle worker gives back pooled stacks, one run at a time, until none wait, a wake is
    /// pending for this worker, or a timer is about to be due. Before the burst's decay has
    /// passed it gives back nothing and, if the runtime has timers, arranges for a worker to
    /// come back when it has (one timer at a time).
    fn idle_trim(&self) {
        let shared = &*self.shared;
        let me = self.hub.remote();
        let Some(at) = shared.stacks.decommit_after() else {
            return;
        };
        if at > Instant::now() {
            if let Some(timers) = &shared.timers {
                if !shared.stacks.decay_armed.swap(true, Ordering::AcqRel) {
                    let waker = Waker::from(Arc::new(DecayOver(Arc::downgrade(&self.shared))));
                    timers.add(at, waker);
                }
                return;
            }
        }
        while shared.stacks.needs_trim() && !me.parker.is_notified() {
            if let Some(next) = shared.driver.as_ref().and_then(|d| d.next_deadline()) {
                if next.saturating_duration_since(Instant::now()) < TRIM_TIMER_MARGIN {
                    return;
                }
            }
            if shared.stacks.trim_slice() == 0 {
                return;
            }
        }
    }
}

/// The timer that ends a burst's decay: wakes an idle worker, which then gives the stacks back.
struct DecayOver(Weak<Shared>);

impl Wake for DecayOver {
    fn wake(self: Arc<Self>) {
        if let Some(shared) = self.0.upgrade() {
            shared.stacks.decay_armed.store(false, Ordering::Release);
            shared.core.notify_parked();
        }
    }
}

/// The hub core's hooks, as the runtime fills them (`hub`, steps 1, 7 and 8 of the search).
impl Hooks for Local {
    /// The periodic work of a busy hub, on `tick`: a harvest (step 2), and a slice of stack
    /// trimming when very many stacks wait.
    #[inline]
    fn maintain(&self, tick: u32) {
        #[cfg(test)]
        if super::FAIL_HUB.with(|f| f.replace(false)) {
            panic!("injected hub failure");
        }
        if tick & POLL_MASK == 37 {
            self.poll_driver();
        }
        if tick & TRIM_MASK == 141 && self.shared.stacks.trim_pending() > DEFER_LIMIT {
            let stacks = &self.shared.stacks;
            if stacks
                .decommit_after()
                .is_some_and(|at| at <= Instant::now())
            {
                stacks.trim_slice();
            }
        }
    }

    fn stolen(&self) {
        Counters::bump(&self.counters.stolen);
    }

    fn before_park(&self, _parker: &Parker) -> bool {
        // Idle time is when pooled stacks beyond the watermark are given back to the kernel
        // (`stack` module, step 4), a run at a time, stopping as soon as work or a timer is due.
        self.idle_trim();
        // Before the futex sleep, spin a few microseconds on our *own* parker: a greenlet
        // of ours waiting on a peer's reply (ping-pong across workers) is typically woken
        // within a microsecond, and sleeping would put two futex calls on every round trip
        // (measured: a cross-worker Channel round trip cost ~27 us). Unlike a spinning
        // thief this reads only our own lines, so the busy peer is not slowed.
        self.spin_before_park()
    }

    /// Step 3, before the park.
    fn end_watching(&self) {
        if let Some(d) = &self.shared.driver {
            d.end_watching();
        }
    }

    /// Step 3, on waking (and when the hub starts).
    fn begin_watching(&self) {
        if let Some(d) = &self.shared.driver {
            d.begin_watching();
        }
    }
}
