//! Run-info: every live greenlet and every worker's counters, on demand
//! (gevent's `gevent.util.print_run_info`, Go's `SIGQUIT` goroutine dump).
//!
//! # Vocabulary
//! * **listed** greenlet: one a dump can name. A greenlet is listed once it has
//!   started and either suspended at least once (it is in its home worker's
//!   *registry*) or is running right now (it is in its worker's *spotlight*).
//! * **unlisted** greenlet: live but not listed: unstarted greenlets waiting in a
//!   queue (or for a `spawn_later` delay), and greenlets caught between a queue and
//!   their first suspension while the dump looks. Reported as a count.
//!
//! # The problem
//! Listing every greenlet needs a set of them that another thread can walk. Keeping
//! one per spawn (a lock, or an atomic insert into a shared list, and the same at
//! finish) would tax the hottest path the runtime has: spawn/join costs ~180 ns, and
//! two uncontended lock round trips are a measurable share of it.
//!
//! # Rejected approaches
//! * *A registry entry per spawn* (a sharded mutex or an intrusive list): see above.
//! * *Asking each hub to describe itself* (a flag checked in the hub loop, a snapshot
//!   handed back): a stalled hub — the very case a dump is for — never answers, and a
//!   dump from a greenlet would wait for its own hub.
//! * *Draining the queues to look inside* (crossbeam's deques cannot be iterated):
//!   a diagnostic must not reorder the work it observes.
//!
//! # The approach
//! The scheduler already keeps, per worker, a registry of started greenlets that have
//! suspended (so that shutdown can unwind them). It now sits behind a per-worker
//! mutex that the hub takes only at a greenlet's first suspension and at the finish of
//! a greenlet that had suspended, so it costs nothing per switch and nothing for a
//! greenlet that runs to completion in one go. The greenlet running on each worker is
//! read through the spotlight. Unstarted greenlets have no state beyond their closure;
//! they are counted (per worker queue, and in total as live minus listed).
//!
//! # The protocol
//! 1. Take the runtime's reader lock (one spotlight reader at a time).
//! 2. For each worker: pin its spotlight (`spotlight`, step 3) and copy the running
//!    greenlet; then, under its registry lock, copy each registered greenlet with the
//!    state its state word shows (`RUNNING` → running, `SCHEDULED` → runnable,
//!    `PARKED` → parked; one finishing meanwhile is skipped). The pinned one, if also
//!    registered, is listed once.
//! 3. Read the counters and the live count; `unlisted = live − listed`.
//!
//! A dump is not an atomic snapshot: greenlets keep running while it looks, so a
//! greenlet may be seen runnable on one line and its waker's effect not yet at all.
//! In a quiescent runtime (or a controlled test) it is exact.

use std::fmt;
use std::panic::Location;
use std::time::Duration;

use crate::loom::lock;
use crate::shared::{Shared, WorkerMetrics};
use crate::state::{NOTIFIED, PARKED, RUNNING, SCHEDULED};
use crate::task::read_pinned;
use crate::wait_reason::WaitReason;
use crate::worker::with_local;

/// What a listed greenlet was doing when the dump looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GreenletState {
    /// On its worker's thread right now (for a dump from a greenlet: at least the
    /// caller itself).
    Running,
    /// Started, and waiting in its home worker's run queue for its turn.
    Runnable,
    /// Started, and waiting for a wake (an event, a lock, a timer, I/O, a join...).
    Parked,
}

impl fmt::Display for GreenletState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GreenletState::Running => "running",
            GreenletState::Runnable => "runnable",
            GreenletState::Parked => "parked",
        })
    }
}

/// One live greenlet, as a [`RunInfo`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GreenletInfo {
    /// Process-unique id.
    pub id: u64,
    /// Name given at spawn, if any.
    pub name: Option<String>,
    /// What it was doing.
    pub state: GreenletState,
    /// Home worker (listed greenlets have all started, so they have one).
    pub worker: usize,
    /// What it waits for, when parked in a primitive that says so
    /// ([`WaitReason::EVENT_WAIT`], [`WaitReason::QUEUE_GET`], [`WaitReason::SLEEP`]...;
    /// see [`park_on`](crate::park_on)).
    pub waiting_on: Option<WaitReason>,
    /// Where it was spawned.
    pub spawned_at: &'static Location<'static>,
    /// Time since it first suspended (parked or yielded), when it entered its worker's
    /// registry, to within a few milliseconds (a coarse clock: a precise read at every
    /// first suspension was a measurable share of a short greenlet's cost); `None` for a
    /// greenlet in its first run. Spawn times are not recorded: a clock read per spawn
    /// would cost about a tenth of a spawn.
    pub age: Option<Duration>,
}

impl GreenletInfo {
    /// The name for messages: its own, or `greenlet-<id>`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("greenlet-{}", self.id),
        }
    }
}

/// One worker, as a [`RunInfo`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Worker index.
    pub index: usize,
    /// Id of the greenlet it was running, if any.
    pub running: Option<u64>,
    /// Unstarted greenlets in its stealable queue (not counting its LIFO slot).
    pub queued_unstarted: usize,
    /// Its counters since the runtime started.
    pub metrics: WorkerMetrics,
}

/// Every live greenlet of a runtime and its workers' counters: what
/// [`Handle::dump`](crate::Handle::dump) and [`run_info`] return. `Display` prints a
/// table (gevent's `print_run_info`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunInfo {
    /// The listed greenlets, by id.
    pub greenlets: Vec<GreenletInfo>,
    /// The workers, by index.
    pub workers: Vec<WorkerInfo>,
    /// Live greenlets (spawned, not finished) when the dump was taken.
    pub live: usize,
    /// Live greenlets not listed: unstarted (queued, or waiting out a `spawn_later`
    /// delay) or between a queue and their first suspension.
    pub unlisted: usize,
    /// Unstarted greenlets in the global queue (spawned from outside the workers).
    pub queued_global: usize,
    /// Stalls the blocking monitor has reported; `None` if it is off.
    pub stalls: Option<u64>,
}

impl RunInfo {
    /// The listed greenlets in `state`.
    pub fn count(&self, state: GreenletState) -> usize {
        self.greenlets.iter().filter(|g| g.state == state).count()
    }

    /// The listed greenlet with this id.
    pub fn greenlet(&self, id: u64) -> Option<&GreenletInfo> {
        self.greenlets.iter().find(|g| g.id == id)
    }
}

impl fmt::Display for RunInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "grove run info: {} live greenlets ({} listed: {} running, {} runnable, {} parked; \
             {} unlisted: unstarted or starting), {} workers{}",
            self.live,
            self.greenlets.len(),
            self.count(GreenletState::Running),
            self.count(GreenletState::Runnable),
            self.count(GreenletState::Parked),
            self.unlisted,
            self.workers.len(),
            match self.stalls {
                Some(n) => format!(", {n} stalls reported"),
                None => String::new(),
            }
        )?;
        writeln!(
            f,
            "{:>6} {:>9} {:>10} {:>10} {:>8} {:>10} {:>12} {:>10} {:>9}",
            "worker",
            "running",
            "spawned",
            "runs",
            "stolen",
            "parks",
            "remote_wakes",
            "finished",
            "unstarted"
        )?;
        for w in &self.workers {
            let m = &w.metrics;
            writeln!(
                f,
                "{:>6} {:>9} {:>10} {:>10} {:>8} {:>10} {:>12} {:>10} {:>9}",
                w.index,
                w.running.map_or("-".to_string(), |id| id.to_string()),
                m.spawned,
                m.runs,
                m.stolen,
                m.parks,
                m.remote_wakes,
                m.finished,
                w.queued_unstarted
            )?;
        }
        writeln!(f, "global queue: {} unstarted", self.queued_global)?;
        writeln!(
            f,
            "{:>8} {:<9} {:>6} {:>10}  {:<24} {:<22} spawned at",
            "id", "state", "worker", "age", "name", "waiting on"
        )?;
        for g in &self.greenlets {
            writeln!(
                f,
                "{:>8} {:<9} {:>6} {:>10}  {:<24} {:<22} {}",
                g.id,
                g.state.to_string(),
                g.worker,
                g.age.map_or("-".to_string(), |a| format!("{:.1?}", a)),
                g.display_name(),
                g.waiting_on.map_or("-", WaitReason::as_str),
                g.spawned_at
            )?;
        }
        Ok(())
    }
}

/// Takes a dump of `shared` (see the module docs).
pub(crate) fn dump(shared: &Shared) -> RunInfo {
    let coarse_now = crate::shared::coarse_nanos();
    let mut greenlets = Vec::new();
    let mut workers = Vec::with_capacity(shared.workers().len());
    let metrics = shared.worker_metrics();
    {
        // Step 1.
        let _readers = shared.lock_readers();
        for (i, w) in shared.workers().iter().enumerate() {
            // Step 2: the running greenlet, then the registry.
            let pinned = w.data.counters.spot.pin();
            let running_addr = pinned.as_ref().map(|p| p.addr());
            let running = pinned.as_ref().map(|p| {
                read_pinned(p, |h| GreenletInfo {
                    id: h.id,
                    name: h.name.as_deref().map(str::to_owned),
                    state: GreenletState::Running,
                    worker: i,
                    waiting_on: None,
                    spawned_at: h.spawned_at,
                    age: None,
                })
            });
            drop(pinned);
            let mut running_age = None;
            for (t, since) in lock(&w.data.registry).iter() {
                let h = t.header();
                let age = Some(Duration::from_nanos(coarse_now.saturating_sub(*since)));
                if running_addr.is_some_and(|a| std::ptr::eq(a, h)) {
                    running_age = age;
                    continue;
                }
                let st = h.state.load();
                let state = match st & !NOTIFIED {
                    RUNNING => GreenletState::Running,
                    SCHEDULED => GreenletState::Runnable,
                    PARKED => GreenletState::Parked,
                    _ => continue,
                };
                greenlets.push(GreenletInfo {
                    id: h.id,
                    name: h.name.as_deref().map(str::to_owned),
                    state,
                    worker: i,
                    waiting_on: if state == GreenletState::Parked {
                        h.waiting_on()
                    } else {
                        None
                    },
                    spawned_at: h.spawned_at,
                    age,
                });
            }
            let running_id = running.as_ref().map(|g| g.id);
            if let Some(mut g) = running {
                g.age = running_age;
                greenlets.push(g);
            }
            workers.push(WorkerInfo {
                index: i,
                running: running_id,
                queued_unstarted: w.stealer.len(),
                metrics: metrics[i],
            });
        }
    }
    // Step 3.
    greenlets.sort_by_key(|g| g.id);
    let live = shared.live();
    RunInfo {
        unlisted: live.saturating_sub(greenlets.len()),
        live,
        greenlets,
        workers,
        queued_global: shared.core.injector.len(),
        stalls: shared.monitor.as_ref().map(|m| m.total()),
    }
}

/// A dump of the runtime running the calling greenlet (or worker), or `None` when
/// called outside a runtime. See [`Handle::dump`](crate::Handle::dump).
///
/// ```
/// let rt = grove::Runtime::builder().workers(1).build().unwrap();
/// let info = rt.block_on(|| grove::monitor::run_info().unwrap());
/// assert_eq!(info.count(grove::monitor::GreenletState::Running), 1);
/// println!("{info}");
/// ```
pub fn run_info() -> Option<RunInfo> {
    with_local(|l| l.map(|l| dump(&l.shared)))
}
