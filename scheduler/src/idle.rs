//! Idle workers: who searches for work, who sleeps, and how a sleeper is woken.
//!
//! # The problem
//! Workers with nothing to run must not spin (an idle runtime uses ~0% CPU), yet
//! work published anywhere must never sit in a queue while every worker sleeps.
//! Waking a sleeper costs a syscall, so publishers must not wake one on every push.
//!
//! # The approach (Go's `runtime/proc.go` and tokio's `idle.rs`)
//! One word counts *unparked* workers and, of those, *searching* ones (looking for
//! work to steal). A publisher wakes a sleeper only when nobody is searching: a
//! searcher is bound to find the new work, so one more would only contend.
//! At most half the workers search at once.
//!
//! 1. Publisher: push the work, then [`Idle::worker_to_notify`]: a `SeqCst` fence
//!    (the StoreLoad point: the push must be visible before we read the counters),
//!    then if `searching == 0 && unparked < workers`, pop a sleeper, count it as
//!    unparked *and searching*, and unpark its [`Parker`].
//! 2. A worker that runs out of local work calls [`Idle::transition_worker_to_searching`];
//!    if it finds work it calls [`Idle::transition_worker_from_searching`], and if it
//!    was the last searcher it wakes another worker (step 1), because more work may
//!    be queued behind what it found.
//! 3. A worker that found nothing calls [`Idle::transition_worker_to_parked`] (a
//!    `SeqCst` RMW, the other StoreLoad point). If it was the last searcher it must
//!    re-check every shared queue *after* that RMW: either the publisher's read in step
//!    1 saw our decrement and woke someone, or our re-check sees its push. Then it
//!    sleeps on its [`Parker`].
//! 4. Wakes aimed at one worker (a started greenlet can only run on its home worker)
//!    bypass the counters: push to that worker's inbox, then unpark its parker. The
//!    parker's `NOTIFIED` state makes an unpark that comes before the park count.
//! 5. A woken worker calls [`Idle::unpark_worker_by_id`]: if it is still listed as a
//!    sleeper it was woken directly (step 4) or spuriously and is now unparked but not
//!    searching; otherwise step 1 already counted it as searching.

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

#[cfg(not(grove_loom))]
use crate::loom::lock;
use crate::loom::{fence, AtomicUsize, Condvar, Mutex, Ordering};

const SEARCH_MASK: usize = 0xFFFF;
const UNPARK_SHIFT: usize = 16;
const UNPARK_ONE: usize = 1 << UNPARK_SHIFT;

/// The shared sleep/search bookkeeping of one runtime's workers.
#[derive(Debug)]
pub struct Idle {
    /// `unparked << 16 | searching`.
    state: AtomicUsize,
    /// Indices of sleeping workers, most recent last.
    sleepers: Mutex<Vec<usize>>,
    num_workers: usize,
}

fn searching(state: usize) -> usize {
    state & SEARCH_MASK
}

fn unparked(state: usize) -> usize {
    state >> UNPARK_SHIFT
}

impl Idle {
    /// All `num_workers` start unparked and not searching.
    pub fn new(num_workers: usize) -> Idle {
        assert!(
            (1..SEARCH_MASK).contains(&num_workers),
            "grove: worker count {num_workers} out of range"
        );
        Idle {
            state: AtomicUsize::new(num_workers << UNPARK_SHIFT),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    /// Step 1: after publishing work, returns the sleeper to unpark, if one should be.
    pub fn worker_to_notify(&self) -> Option<usize> {
        if !self.notify_should_wakeup() {
            return None;
        }
        let mut sleepers = self.sleepers.lock().unwrap();
        // Re-check under the lock: another publisher may have woken someone meanwhile.
        if !self.notify_should_wakeup() {
            return None;
        }
        let idx = sleepers.pop()?;
        // Counted as searching on its behalf, so concurrent publishers see a searcher
        // and do not wake a second worker for the same work.
        self.state.fetch_add(UNPARK_ONE | 1, Ordering::SeqCst);
        Some(idx)
    }

    fn notify_should_wakeup(&self) -> bool {
        fence(Ordering::SeqCst);
        let state = self.state.load(Ordering::SeqCst);
        searching(state) == 0 && unparked(state) < self.num_workers
    }

    /// Step 2: may this worker start searching? At most half of them search at once.
    pub fn transition_worker_to_searching(&self) -> bool {
        let state = self.state.load(Ordering::SeqCst);
        if 2 * searching(state) >= self.num_workers {
            return false;
        }
        self.state.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Step 2: a searcher found work. Returns `true` if it was the last searcher, in
    /// which case the caller must wake another worker (`worker_to_notify`).
    pub fn transition_worker_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(
            searching(prev) > 0,
            "transition_worker_from_searching: no searcher"
        );
        searching(prev) == 1
    }

    /// Step 3: the worker is about to sleep. Returns `true` if it was the last
    /// searcher, in which case it must re-check every shared queue before sleeping.
    pub fn transition_worker_to_parked(&self, idx: usize, is_searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap();
        let dec = UNPARK_ONE | usize::from(is_searching);
        let prev = self.state.fetch_sub(dec, Ordering::SeqCst);
        sleepers.push(idx);
        is_searching && searching(prev) == 1
    }

    /// Step 5: returns `true` if `idx` was still listed as a sleeper (so it is now
    /// unparked and *not* searching), `false` if a notifier already took it off the
    /// list (it is unparked and counted as searching).
    pub fn unpark_worker_by_id(&self, idx: usize) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap();
        match sleepers.iter().position(|&i| i == idx) {
            Some(pos) => {
                sleepers.swap_remove(pos);
                self.state.fetch_add(UNPARK_ONE, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// `(unparked, searching)`, for the loom tests.
    #[cfg(grove_loom)]
    pub fn counts(&self) -> (usize, usize) {
        let state = self.state.load(Ordering::SeqCst);
        (unparked(state), searching(state))
    }
}

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

/// A one-slot sleep/wake latch for one worker thread: an `unpark` that happens
/// before `park` is remembered, so it is never lost.
///
/// * `EMPTY`: nothing pending. `park` moves it to `PARKED` and waits.
/// * `PARKED`: the owner sleeps on the condvar. `unpark` sets `NOTIFIED` and signals.
/// * `NOTIFIED`: a wake is pending; the next `park` consumes it and returns at once.
#[derive(Debug)]
pub struct Parker {
    state: AtomicUsize,
    lock: Mutex<()>,
    cvar: Condvar,
}

impl Default for Parker {
    fn default() -> Self {
        Parker::new()
    }
}

impl Parker {
    /// A parker with no pending wake.
    pub fn new() -> Parker {
        Parker {
            state: AtomicUsize::new(EMPTY),
            lock: Mutex::new(()),
            cvar: Condvar::new(),
        }
    }

    /// Sleeps until [`unpark`](Self::unpark) is called (or returns at once if it
    /// already was since the last `park`). Only the owning worker calls this.
    pub fn park(&self) {
        // Fast path: a wake is already pending.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = self.lock.lock().unwrap();
        match self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // The wake arrived between the fast path and taking the lock. Consume it
                // with a swap, not a store: another `unpark` may have found NOTIFIED
                // since our CAS read it, and only by reading its write do we synchronize
                // with it and see what it published before unparking. A store would
                // erase that wake unread (as std's parker notes at the same point).
                let prev = self.state.swap(EMPTY, Ordering::SeqCst);
                debug_assert_eq!(prev, NOTIFIED, "Parker::park: bad state");
                return;
            }
            Err(actual) => panic!("Parker::park: bad state {actual}"),
        }
        loop {
            guard = self.cvar.wait(guard).unwrap();
            // Condvars wake spuriously: only a NOTIFIED state ends the sleep.
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Like [`park`](Self::park), but returns at `deadline` at the latest (a shutting-down
    /// hub waiting for greenlets parked mid-unwind, up to its grace deadline).
    #[cfg(not(grove_loom))]
    pub fn park_until(&self, deadline: std::time::Instant) {
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = lock(&self.lock);
        match self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {}
            Err(_) => {
                // NOTIFIED: consumed with a swap, as in `park`.
                self.state.swap(EMPTY, Ordering::SeqCst);
                return;
            }
        }
        loop {
            let now = std::time::Instant::now();
            if now >= deadline {
                // Give up PARKED; a wake that raced in is kept for the next park.
                let _ =
                    self.state
                        .compare_exchange(PARKED, EMPTY, Ordering::SeqCst, Ordering::SeqCst);
                return;
            }
            guard = self
                .cvar
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return;
            }
        }
    }

    /// True if a wake is pending (the next `park` would return at once). Lets the owner
    /// spin briefly on its own parker before sleeping.
    pub fn is_notified(&self) -> bool {
        self.state.load(Ordering::Acquire) == NOTIFIED
    }

    /// Wakes the owner, now or at its next `park`. Callable from any thread.
    pub fn unpark(&self) {
        match self.state.swap(NOTIFIED, Ordering::SeqCst) {
            EMPTY | NOTIFIED => {}
            PARKED => {
                // Taking the lock orders us after the owner's switch to PARKED and its
                // entry into `wait`, so the notification cannot fall in between.
                drop(self.lock.lock().unwrap());
                self.cvar.notify_one();
            }
            actual => panic!("Parker::unpark: bad state {actual}"),
        }
    }
}
