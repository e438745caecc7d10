//! The blocking monitor's state and reports: what the runtime keeps (`Shared::monitor`)
//! and hands out (`Handle::stall_reports`), apart from the thread that samples the workers
//! (the parent module).

use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::loom::lock;
use crate::signal::dispose_payload;

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
    pub(super) threshold: Duration,
    hook: Option<StallHook>,
    reports: Mutex<VecDeque<StallReport>>,
    total: AtomicU64,
    pub(super) wake: Mutex<()>,
    pub(super) wake_cv: Condvar,
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
        lock(&self.reports).iter().cloned().collect()
    }

    /// Step 1 of "Shutdown": wakes the monitor so it sees the flag.
    pub(crate) fn wake(&self) {
        let _g = lock(&self.wake);
        self.wake_cv.notify_all();
    }

    pub(super) fn record(&self, r: StallReport) {
        self.total.fetch_add(1, Ordering::Relaxed);
        {
            let mut kept = lock(&self.reports);
            if kept.len() == KEPT_REPORTS {
                kept.pop_front();
            }
            kept.push_back(r.clone());
        }
        match &self.hook {
            Some(hook) => {
                if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&r)))
                {
                    dispose_payload(p);
                    report!("grove: the on_stall hook panicked; report was: {r}");
                }
            }
            None => report!("{r}"),
        }
    }
}
