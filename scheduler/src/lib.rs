//! grove's scheduler: stackful greenlets on per-core hubs with work stealing.
//!
//! # Vocabulary
//! * **greenlet**: a stackful coroutine (corosensei) running user code that blocks
//!   cooperatively: it *parks* instead of blocking its thread.
//! * **worker**: an OS thread; one per core by default. Each runs a **hub**, the
//!   scheduling loop on the thread's native stack that resumes greenlets.
//! * **home**: the worker a greenlet first ran on. It stays there for life.
//!
//! # The problem
//! gevent multiplexes greenlets on one thread. To use every core we run a hub per
//! core and balance work between them, but a greenlet that has started must not move
//! to another thread: LLVM may cache a thread-local's address across the call that
//! switches stacks, and a `thread_local!` can smuggle a `!Send` value onto the stack.
//! `may` answers by making `spawn` unsafe and pushing the problem onto users.
//!
//! # The approach: sound by construction
//! A greenlet that has not started is only its `Send + 'static` closure, so idle
//! workers may steal it. Once it runs, it is pinned to its home worker, and wakes from
//! anywhere (the reactor, other workers, plain threads) are routed to the home
//! worker's inbox. Balance comes from stealing *new* greenlets, which is where
//! servers (a greenlet per connection) and fork/join code create their work. The
//! consequence, stated plainly: a started greenlet whose home worker is busy waits for
//! it; long CPU-bound loops should `yield_now` or run on a blocking pool.
//!
//! # Modules, bottom to top
//! Each layer uses only the layers below it (`python3 tools/modcycles.py scheduler/src`
//! shows the graph and fails on a cycle).
//!
//! 1. **Protocols**, each loom-checked on the production type and built under loom:
//!    `state` (a greenlet's park/unpark state machine), `idle` (which workers search and
//!    sleep, the `Parker`), `queue` (crossbeam-deque, or a stand-in under loom), `irq` (the
//!    interrupt word), `completion` (the joiner's waker slot, links, detach vs complete),
//!    `delayed` (`spawn_later`'s timer/kill/shutdown hand-off), `gate` (the shutdown
//!    drains' push/close handshake), `spotlight` (which greenlet a worker runs, read from
//!    other threads); `loom` (the std/loom switch, and `lock`, which ignores poison);
//!    `timers` and `wait_reason` (the owner's timer hook and its opaque keys; what a parked
//!    greenlet waits on).
//! 2. **Memory**: `stack` (guarded stacks and their pools; `stack::overflow`, the
//!    overflow reporter).
//! 3. **The greenlet object**: `task` (header, closure, output and coroutine in one
//!    allocation; its greenlet-locals map; the `Schedule` seam, its only way to
//!    the scheduler), `error` (`JoinError`, `SpawnError`), `signal` (grove's panic
//!    payloads: kill, deadlock, shutdown, timeout).
//! 4. **The cores**: `hub` (the hub core: the queues all workers share and the
//!    search/steal/park loop, generic over an opaque runnable, which the loom models
//!    drive); `shared` (the runtime's shared state around it: stacks, hooks, counters,
//!    registries, the `Handle` type); `batch` (wake batching); `driver` (the owner's
//!    worker-side poll hook).
//! 5. **The worker** (`worker`): the coroutine part. A greenlet resumed on its stack
//!    (`worker`), its switches and the interrupts delivered there (`worker::switch`),
//!    shutdown (`worker::shutdown`), the driver hooks (`worker::driver`), where a
//!    detached greenlet first runs (`worker::placement`), the panic hook.
//! 6. **The public face**: `runtime` (`Builder`, `Runtime`, `Handle`'s spawning side),
//!    `greenlet` (`park`, `handle`, `spawn`), `interrupt` (`Timeout`), `local`
//!    (greenlet-locals), `control` (`joinall`, `iwait`, `killall`); and **diagnostics**:
//!    `monitor` (blocking detection; `monitor::stall`, its state, sits in layer 4's
//!    reach), `run_info` (dumps), `deadlock` (`block_on`'s deadlock proof).
//!
//! `unsafe` lives in `stack` (mappings, guard pages, the `corosensei` stack contract,
//! the overflow handler), `task` (the `!Send` coroutine and cells in a shared header,
//! the cache prefetch hint),
//! `worker` (`worker`, `worker::switch`, `worker::shutdown`: the resume, the switch
//! away, a header read through the thread's current pointer, abandoning a coroutine),
//! `local` (a greenlet-local's value behind a pointer), `greenlet::handle` (taking a
//! finished greenlet's output) and `shared` (`getpid`, `pthread_atfork`, the coarse
//! clock, the registry's write into a free slot). Every
//! block has a `// SAFETY:` comment; every `unsafe fn` a `# Safety` section.
//!
//! The scheduler knows nothing of I/O or timers: it wakes and is woken through
//! `std::task::Waker`, which is how the reactor (and any future) reaches it.
//!
//! ```
//! let rt = grove::Runtime::builder().workers(2).build().unwrap();
//! let sum: u64 = rt.block_on(|| {
//!     let hs: Vec<_> = (1..=10u64).map(|i| grove::spawn(move || i * i)).collect();
//!     hs.into_iter().map(|h| h.join().unwrap()).sum()
//! });
//! assert_eq!(sum, 385);
//! ```

#![cfg_attr(grove_loom, allow(dead_code, unreachable_pub))]

/// Writes one diagnostic line to stderr and never panics: a closed or broken stderr
/// (`prog 2>&1 | head`) loses the line instead of failing the hub that writes it
/// (`eprintln!` panics on `EPIPE`). Every message grove prints goes through this.
#[cfg(not(grove_loom))]
macro_rules! report {
    ($($arg:tt)*) => {
        $crate::write_report(format_args!($($arg)*))
    };
}

#[cfg(not(grove_loom))]
pub(crate) fn write_report(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

// Layer 1, protocols (each loom-checked, each built under loom too).
mod completion;
mod delayed;
mod gate;
mod idle;
mod irq;
mod loom;
mod queue;
mod spotlight;
mod state;
mod wait_reason;

// Layer 2, memory (`stack::overflow` included).
#[cfg(not(grove_loom))]
mod stack;

// Layer 3, the greenlet object.
#[cfg(not(grove_loom))]
mod error;
#[cfg(not(grove_loom))]
mod signal;
#[cfg(not(grove_loom))]
mod task;

// Layer 4, the shared core and the hub core (the hub core is built under loom).
#[cfg(not(grove_loom))]
mod batch;
#[cfg(not(grove_loom))]
mod driver;
mod hub;
#[cfg(not(grove_loom))]
mod shared;
mod timers;

// Layer 5, the worker.
#[cfg(not(grove_loom))]
mod worker;

// Layer 6, the public face and diagnostics.
#[cfg(not(grove_loom))]
mod control;
#[cfg(not(grove_loom))]
pub mod deadlock;
#[cfg(not(grove_loom))]
mod greenlet;
#[cfg(not(grove_loom))]
mod interrupt;
#[cfg(not(grove_loom))]
mod local;
#[cfg(not(grove_loom))]
pub mod monitor;
#[cfg(not(grove_loom))]
mod run_info;
#[cfg(not(grove_loom))]
mod runtime;

#[cfg(not(grove_loom))]
pub use crate::batch::{batch_wakes, batch_wakes_to_workers};
#[cfg(not(grove_loom))]
pub use crate::control::{
    iwait, iwait_timeout, iwait_until, joinall, joinall_count, joinall_timeout, killall,
    killall_timeout, wait_any, Iwait,
};
#[cfg(not(grove_loom))]
pub use crate::driver::Driver;
#[cfg(not(grove_loom))]
pub use crate::error::{JoinError, SpawnError};
#[cfg(not(grove_loom))]
pub use crate::greenlet::{
    block_on, current, current_waker, in_greenlet, park, park_on, park_timeout, park_timeout_on,
    park_until, park_until_on, spawn, spawn_later, try_current, try_spawn, with_extension,
    worker_index, yield_now, Greenlet, GreenletBuilder, JoinHandle, LinkId,
};
#[cfg(not(grove_loom))]
pub use crate::greenlet::{in_greenlet_signal_safe, interrupt_pending, park_nounwind, ParkStatus};
#[cfg(not(grove_loom))]
pub use crate::interrupt::{with_timeout, Elapsed, Timeout};
#[cfg(not(grove_loom))]
pub use crate::local::GreenletLocal;
#[cfg(not(grove_loom))]
pub use crate::monitor::StallReport;
#[cfg(not(grove_loom))]
pub use crate::run_info::{run_info, GreenletInfo, GreenletState, RunInfo, WorkerInfo};
#[cfg(not(grove_loom))]
pub use crate::runtime::{
    Builder as RuntimeBuilder, Handle, Runtime, StackMetrics, WorkerMetrics,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_STACK_SIZE, EXIT_MARGIN, MAX_STACK_SIZE, MIN_STACK_SIZE,
};
pub use crate::timers::{TimerKey, Timers};
pub use crate::wait_reason::WaitReason;
#[cfg(not(grove_loom))]
pub use crate::worker::{not_in_runtime, not_in_runtime_message};

/// Protocol internals exposed to `loom-tests` only (built with `--cfg grove_loom`).
#[cfg(grove_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::completion::{Completed, Completion};
    pub use crate::delayed::{DelayedSlot, Taken};
    pub use crate::gate::Gate;
    pub use crate::hub::{Core, Hooks, Hub, Job, Remote, LIFO_BUDGET};
    pub use crate::idle::{Idle, Parker};
    pub use crate::irq::{
        final_of, scope_of, Scope, Word, DEADLOCK, FIRST_SCOPE, IN_CLEANUP, KILL, SHUTDOWN,
    };
    pub use crate::queue::{Injector, Steal, Stealer, Worker};
    pub use crate::spotlight::{Pinned, Spotlight};
    pub use crate::state::{State, Unpark, DONE, NOTIFIED, PARKED, RUNNING, SCHEDULED};
}
