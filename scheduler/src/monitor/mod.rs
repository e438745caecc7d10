//! Blocking detection: gevent's monitor thread (`gevent.config.monitor_thread`,
//! `max_blocking_time`).
//!
//! # Vocabulary
//! * **stall**: one greenlet holding its worker — running without switching back to
//!   the hub — for longer than the **threshold** (default [`DEFAULT_THRESHOLD`]).
//! * **monitor**: an optional thread per runtime that samples every worker's
//!   spotlight (`spotlight`) and run counter a few times per threshold and reports
//!   stalls.
//! * **homed**: a started greenlet belongs to one worker for life (crate docs). While
//!   that worker stalls, its started greenlets wait; unstarted ones queued there can be
//!   stolen by other workers.
//!
//! # The problem
//! A greenlet that calls a blocking std function or loops without yielding holds its
//! worker thread, and every greenlet homed there waits. Nothing fails; latency just
//! grows. gevent's answer is a monitor thread that notices the hub has not switched for
//! a while and prints the offending greenlet. We want the same, at no cost when nothing
//! stalls.
//!
//! # Rejected approaches
//! * *A timestamp per switch* (`Instant::now()` in the hub): a clock read (~20 ns) on a
//!   ~50 ns switch.
//! * *A heartbeat the hub bumps on a timer*: the hub is exactly what is stuck.
//! * *Reporting when the greenlet finally switches back*: a greenlet in an endless loop
//!   would never be reported.
//!
//! # The protocol
//! The hub already publishes, per resume, two words readable from other threads: the
//! running greenlet's address in its spotlight (null between greenlets and while the
//! hub sleeps) and its `run` counter (bumped once per resume). The monitor adds
//! nothing to the hub's hot path.
//! 1. Every `threshold / 4` (at least 1 ms), for each worker, load `(address, run)`
//!    (`Relaxed`: these are samples; any value a load may return was really there).
//! 2. A null address means the worker is idle or between greenlets: forget the worker.
//!    A pair different from the previous sample means the worker switched: remember the
//!    new pair and the time it was first seen.
//! 3. The same non-null pair for at least `threshold` since first seen is a stall,
//!    unless already reported: the same pair is one uninterrupted resume of one
//!    greenlet (a greenlet that yields gets a new run count each time). Report it once.
//! 4. To name the greenlet, pin the spotlight (`spotlight`, step 3), check the run
//!    counter is still the sampled one, copy id, name and spawn location, unpin. Then
//!    count, under the worker's registry lock, the started greenlets homed there that
//!    wait (runnable) or are parked, and read the length of its queue of unstarted
//!    greenlets.
//! 5. Keep the report (the last [`KEPT_REPORTS`] are retrievable with
//!    [`Handle::stall_reports`](crate::Handle::stall_reports)) and print it to stderr,
//!    or hand it to the [`on_stall`](crate::RuntimeBuilder::on_stall) hook instead.
//!
//! A hub stuck *between* greenlets (an `on_finish` callback that blocks, a destructor
//! run by the hub) is not reported: the spotlight is null there. The duration reported
//! is a lower bound, accurate to one sampling interval.
//!
//! # Configuration
//! [`RuntimeBuilder::monitor`](crate::RuntimeBuilder::monitor), or the environment
//! variable `GROVE_MONITOR` ([`ENV_VAR`]) when the builder did not decide; see
//! [`parse_threshold`] for its syntax.
//!
//! # Shutdown
//! 1. `Runtime::stop` sets the shutdown flag and wakes the monitor's condvar.
//! 2. The monitor sees the flag at its next wake and exits; `stop` joins it.
//!
//! Hubs unwinding greenlets meanwhile may meet a pin; they wait for it (step 2 of
//! `spotlight`), and the monitor never blocks while holding one.

pub(crate) mod stall;

pub use self::stall::{
    parse_threshold, ParseThresholdError, StallReport, DEFAULT_THRESHOLD, ENV_VAR, KEPT_REPORTS,
    MIN_THRESHOLD,
};

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use self::stall::StallReport as Report;
use crate::loom::lock;
use crate::shared::Shared;
use crate::state::{PARKED, SCHEDULED};
use crate::task::{read_pinned, Header};

/// What the monitor remembers of one worker between samples.
#[derive(Clone, Copy)]
struct Seen {
    addr: *const Header,
    run: u64,
    since: Instant,
    reported: bool,
}

/// Starts the monitor thread of `shared` (whose `monitor` is set).
pub(crate) fn start(shared: Arc<Shared>, name: String) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(name)
        .spawn(move || run(&shared))
}

fn run(shared: &Shared) {
    let Some(mon) = shared.monitor.as_deref() else {
        return;
    };
    let interval = (mon.threshold / 4).max(Duration::from_millis(1));
    let mut seen: Vec<Option<Seen>> = vec![None; shared.workers().len()];
    loop {
        {
            let g = lock(&mon.wake);
            if shared.is_shutdown() {
                return;
            }
            drop(
                mon.wake_cv
                    .wait_timeout(g, interval)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
        if shared.is_shutdown() {
            return;
        }
        let now = Instant::now();
        for (i, slot) in seen.iter_mut().enumerate() {
            // Step 1.
            let c = &shared.workers()[i].data.counters;
            let addr = c.spot.current();
            let run = c.run.load(Ordering::Relaxed);
            // Step 2.
            if addr.is_null() {
                *slot = None;
                continue;
            }
            let s = match slot {
                Some(s) if std::ptr::eq(s.addr, addr) && s.run == run => s,
                _ => {
                    *slot = Some(Seen {
                        addr,
                        run,
                        since: now,
                        reported: false,
                    });
                    continue;
                }
            };
            // Step 3.
            let held = now.duration_since(s.since);
            if s.reported || held < mon.threshold {
                continue;
            }
            // Steps 4–5.
            if let Some(r) = describe(shared, i, s.addr, s.run, held, mon.threshold) {
                s.reported = true;
                mon.record(r);
            }
        }
    }
}

/// Step 4: names the greenlet still running at `addr` in resume `run` of worker `i`.
fn describe(
    shared: &Shared,
    i: usize,
    addr: *const Header,
    run: u64,
    held_for: Duration,
    threshold: Duration,
) -> Option<Report> {
    let w = &shared.workers()[i];
    let (id, name, spawned_at) = {
        let _readers = shared.lock_readers();
        let c = &w.data.counters;
        let pinned = c.spot.pin()?;
        if !std::ptr::eq(pinned.addr(), addr) || c.run.load(Ordering::Relaxed) != run {
            return None; // It switched meanwhile: the stall is over.
        }
        read_pinned(&pinned, |h| {
            (h.id, h.name.as_deref().map(str::to_owned), h.spawned_at)
        })
    };
    let (mut runnable_homed, mut parked_homed) = (0, 0);
    for (t, _) in lock(&w.data.registry).iter() {
        let h = t.header();
        if std::ptr::eq(h, addr) {
            continue;
        }
        match h.state.load() {
            SCHEDULED => runnable_homed += 1,
            PARKED => parked_homed += 1,
            _ => {}
        }
    }
    Some(Report {
        worker: i,
        id,
        name,
        spawned_at,
        held_for,
        threshold,
        runnable_homed,
        parked_homed,
        queued_unstarted: w.stealer.len(),
    })
}
