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

use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::runtime::Shared;
use crate::task::{read_pinned, Header};
use crate::worker::lock_registry;

/// Threshold used when the monitor is switched on without one (`GROVE_MONITOR=1`).
pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(100);
/// The environment variable read by [`RuntimeBuilder::build`](crate::RuntimeBuilder::build)
/// when the builder did not configure the monitor.
pub const ENV_VAR: &str = "GROVE_MONITOR";
/// How many reports [`Handle::stall_reports`](crate::Handle::stall_reports) keeps.
pub const KEPT_REPORTS: usize = 64;
/// Shortest threshold accepted (shorter ones are raised to it).
pub const MIN_THRESHOLD: Duration = Duration::from_millis(1);

/// The hook type of [`RuntimeBuilder::on_stall`](crate::RuntimeBuilder::on_stall).
pub(crate) type StallHook = Arc<dyn Fn(&StallReport) + Send + Sync + 'static>;

/// One stall: a greenlet that held its worker longer than the threshold.
///
/// `Display` gives the line the monitor prints to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StallReport {
    /// Index of the stalled worker.
    pub worker: usize,
    /// The greenlet's id.
    pub id: u64,
    /// The greenlet's name, if it was given one.
    pub name: Option<String>,
    /// Where the greenlet was spawned.
    pub spawned_at: &'static Location<'static>,
    /// How long it had held the worker when reported (a lower bound, accurate to a
    /// quarter of the threshold). The stall may go on after the report.
    pub held_for: Duration,
    /// The threshold it exceeded.
    pub threshold: Duration,
    /// Started greenlets homed on the worker that were runnable and waiting for it.
    pub runnable_homed: usize,
    /// Started greenlets homed on the worker that were parked (they will wait for it
    /// too once woken).
    pub parked_homed: usize,
    /// Unstarted greenlets queued on the worker; other workers can steal these.
    pub queued_unstarted: usize,
}

impl StallReport {
    /// The greenlet's name for messages: its own, or `greenlet-<id>`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("greenlet-{}", self.id),
        }
    }
}

impl fmt::Display for StallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "grove: greenlet '{}' (id {}, spawned at {}) has held worker {} for {:?} \
             (threshold {:?}) without yielding. Started greenlets never migrate: the {} \
             runnable and {} parked greenlets homed on worker {} wait for it; the {} \
             unstarted greenlets queued there can be stolen by other workers. Yield in long \
             loops (grove::yield_now) or move blocking calls to grove::blocking.",
            self.display_name(),
            self.id,
            self.spawned_at,
            self.worker,
            self.held_for,
            self.threshold,
            self.runnable_homed,
            self.parked_homed,
            self.worker,
            self.queued_unstarted,
        )
    }
}

/// Why a `GROVE_MONITOR` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseThresholdError {
    value: String,
}

impl fmt::Display for ParseThresholdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {ENV_VAR} value {:?}: expected 0/off, 1/on, or a threshold such as \
             250, 250ms, 1.5s or 500us",
            self.value
        )
    }
}

impl std::error::Error for ParseThresholdError {}

/// Parses a `GROVE_MONITOR` value. Case-insensitive, surrounding spaces ignored.
///
/// | value | meaning |
/// |---|---|
/// | empty, `0`, `off`, `false`, `no` | monitor off (`Ok(None)`) |
/// | `1`, `on`, `true`, `yes` | on, [`DEFAULT_THRESHOLD`] (100 ms) |
/// | `N` (an integer ≥ 2) | on, threshold `N` milliseconds |
/// | `Nms`, `Ns`, `Nus` (`N` may have a fraction: `1.5s`) | on, that threshold |
///
/// Thresholds below [`MIN_THRESHOLD`] are raised to it. `1` means "on", not 1 ms: write
/// `1ms` for that.
///
/// ```
/// use std::time::Duration;
/// use grove::monitor::parse_threshold;
///
/// assert_eq!(parse_threshold("1"), Ok(Some(Duration::from_millis(100))));
/// assert_eq!(parse_threshold("250"), Ok(Some(Duration::from_millis(250))));
/// assert_eq!(parse_threshold("1.5s"), Ok(Some(Duration::from_millis(1500))));
/// assert_eq!(parse_threshold("off"), Ok(None));
/// assert!(parse_threshold("soon").is_err());
/// ```
pub fn parse_threshold(value: &str) -> Result<Option<Duration>, ParseThresholdError> {
    let v = value.trim().to_ascii_lowercase();
    let err = || ParseThresholdError {
        value: value.to_string(),
    };
    match v.as_str() {
        "" | "0" | "off" | "false" | "no" => return Ok(None),
        "1" | "on" | "true" | "yes" => return Ok(Some(DEFAULT_THRESHOLD)),
        _ => {}
    }
    let (num, unit_ns) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e6)
    } else if let Some(n) = v.strip_suffix("us") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e9)
    } else {
        (v.as_str(), 1e6)
    };
    let n: f64 = num.trim().parse().map_err(|_| err())?;
    if !n.is_finite() || n < 0.0 {
        return Err(err());
    }
    let ns = n * unit_ns;
    if ns >= u64::MAX as f64 {
        return Err(err());
    }
    if ns == 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_nanos(ns as u64).max(MIN_THRESHOLD)))
}

/// Reads [`ENV_VAR`]. An invalid value is reported on stderr and ignored (monitor off).
pub(crate) fn threshold_from_env() -> Option<Duration> {
    let v = std::env::var(ENV_VAR).ok()?;
    match parse_threshold(&v) {
        Ok(t) => t,
        Err(e) => {
            report!("grove: {e}; blocking monitor left off");
            None
        }
    }
}

/// The monitor's shared state: configuration, kept reports, and its stop signal.
pub(crate) struct Monitor {
    threshold: Duration,
    hook: Option<StallHook>,
    reports: Mutex<VecDeque<StallReport>>,
    total: AtomicU64,
    wake: Mutex<()>,
    wake_cv: Condvar,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("threshold", &self.threshold)
            .field("stalls", &self.total.load(Ordering::Relaxed))
            .finish()
    }
}

impl Monitor {
    pub(crate) fn new(threshold: Duration, hook: Option<StallHook>) -> Monitor {
        Monitor {
            threshold: threshold.max(MIN_THRESHOLD),
            hook,
            reports: Mutex::new(VecDeque::new()),
            total: AtomicU64::new(0),
            wake: Mutex::new(()),
            wake_cv: Condvar::new(),
        }
    }

    pub(crate) fn threshold(&self) -> Duration {
        self.threshold
    }

    /// Stalls reported since the runtime started.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The last [`KEPT_REPORTS`] reports, oldest first.
    pub(crate) fn reports(&self) -> Vec<StallReport> {
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Step 1 of "Shutdown": wakes the monitor so it sees the flag.
    pub(crate) fn wake(&self) {
        let _g = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake_cv.notify_all();
    }

    fn record(&self, r: StallReport) {
        self.total.fetch_add(1, Ordering::Relaxed);
        {
            let mut kept = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() == KEPT_REPORTS {
                kept.pop_front();
            }
            kept.push_back(r.clone());
        }
        match &self.hook {
            Some(hook) => {
                if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&r)))
                {
                    crate::task::dispose_payload(p);
                    report!("grove: the on_stall hook panicked; report was: {r}");
                }
            }
            None => report!("{r}"),
        }
    }
}

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
    let mut seen: Vec<Option<Seen>> = vec![None; shared.workers.len()];
    loop {
        {
            let g = mon.wake.lock().unwrap_or_else(PoisonError::into_inner);
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
            let c = &shared.workers[i].counters;
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
) -> Option<StallReport> {
    let w = &shared.workers[i];
    let (id, name, spawned_at) = {
        let _readers = shared.lock_readers();
        let pinned = w.counters.spot.pin()?;
        if !std::ptr::eq(pinned.addr(), addr) || w.counters.run.load(Ordering::Relaxed) != run {
            return None; // It switched meanwhile: the stall is over.
        }
        read_pinned(&pinned, |h| {
            (h.id, h.name.as_deref().map(str::to_owned), h.spawned_at)
        })
    };
    let (mut runnable_homed, mut parked_homed) = (0, 0);
    for (t, _) in lock_registry(&w.registry).iter() {
        let h = t.header();
        if std::ptr::eq(h, addr) {
            continue;
        }
        match h.state.load() {
            crate::state::SCHEDULED => runnable_homed += 1,
            crate::state::PARKED => parked_homed += 1,
            _ => {}
        }
    }
    Some(StallReport {
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
