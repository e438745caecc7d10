//! Steps 2–6 of the hub's "Shutdown" (see the parent module): unwind what is homed here,
//! cancel what never started, abandon what outlives the grace period, and exit.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{switch, Local};
use crate::error::JoinError;
use crate::loom::lock;
use crate::task::{report_unjoined, TaskRef};

impl Local {
    /// Steps 2–5 of "Shutdown".
    pub(super) fn shutdown(&self) {
        // Out of the loop for good: leave the searching state (step 2 of `idle`).
        self.hub.end_search();
        let deadline = self.shared.shutdown_deadline();
        loop {
            // Step 3: tell every registered greenlet (again after each round: destructors
            // may have woken greenlets that registered meanwhile).
            let started: Vec<TaskRef> = lock(&self.remote().data.registry)
                .iter()
                .map(|(t, _)| t.clone())
                .collect();
            for t in started.iter() {
                if t.header().in_foreign.load(Ordering::Relaxed) {
                    // Parked under a foreign (`extern "C"`) frame (`park_nounwind`): an
                    // unwind may not cross it, so its stack is leaked instead.
                    self.abandon(t.clone(), "parked under a foreign (extern \"C\") frame");
                } else {
                    switch::shutdown(t);
                }
            }
            drop(started);
            // Steps 2 and 4: cancel the unstarted, run the started (a greenlet that
            // catches every unwind stays runnable: the deadline is checked here too).
            let mut turns = 0u32;
            while let Some(t) = self.hub.next_in_shutdown() {
                turns = turns.wrapping_add(1);
                if turns % 64 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                    self.hub.push_front_ready(t);
                    self.abandon_all();
                    return;
                }
                // SAFETY: we took it off one of our queues: this hub owns it.
                if unsafe { t.header().coroutine_mut() }.is_none() {
                    if !t.header().is_done() {
                        self.shared.cancel_unstarted(Some(self.index), t);
                    }
                } else {
                    self.run_task(t);
                }
            }
            if lock(&self.remote().data.registry).iter().next().is_none() {
                return;
            }
            // Step 4: some are parked mid-unwind; their wakes unpark us.
            let me = self.remote();
            match deadline {
                Some(d) if Instant::now() >= d => {
                    self.abandon_all();
                    return;
                }
                Some(d) => me.parker.park_until(d),
                None => me.parker.park(),
            }
        }
    }

    /// Step 5: abandons every greenlet still registered or queued here.
    pub(super) fn abandon_all(&self) {
        loop {
            let mut rest = lock(&self.remote().data.registry).drain();
            self.hub.take_all(&mut rest);
            if rest.is_empty() {
                return;
            }
            for t in rest {
                // SAFETY: off every queue, on its home thread, and no hub runs it.
                if unsafe { t.header().coroutine_mut() }.is_some() {
                    self.abandon(t, "still blocked when the shutdown grace period ended");
                } else if !t.header().is_done() {
                    self.shared.cancel_unstarted(Some(self.index), t);
                }
            }
        }
    }

    /// Step 5 for one started greenlet: leak its stack (it is never resumed, and its
    /// memory stays mapped, so whatever its frames point into stays valid), resolve its
    /// join. No user code of the greenlet runs.
    pub(super) fn abandon(&self, task: TaskRef, why: &str) {
        let h = task.header();
        if h.is_done() {
            return;
        }
        // Step 2 of `spotlight`: it may have been published before it was suspended.
        self.counters.spot.release(h);
        let slot = h.slot.swap(usize::MAX, Ordering::Relaxed);
        if slot != usize::MAX {
            drop(lock(&self.remote().data.registry).remove(slot));
        }
        // SAFETY: on the home thread, and the greenlet is not running (the caller took
        // it off `current` or a queue, or out of the registry).
        if let Some(co) = unsafe { h.coroutine_mut() }.take() {
            std::mem::forget(co);
        }
        report!(
            "grove: greenlet '{}' (id {}, spawned at {}) was abandoned: {why}{}; its stack \
             is leaked and the rest of its destructors do not run",
            h.display_name(),
            h.id,
            h.spawned_at,
            h.waiting_on()
                .map_or(String::new(), |w| format!(" (waiting on {w})")),
        );
        task.set_failed(JoinError::shutdown(h.display_name()));
        self.shared.count_finished(Some(self.index));
        if h.complete() {
            report_unjoined(&*task);
        }
    }

    /// Step 6: from now on wakes for our greenlets are dropped by their senders.
    pub(super) fn exit(&self) {
        self.hub.exit();
    }
}
