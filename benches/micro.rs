//! Micro-benchmarks of grove's hot paths (criterion), then the probes behind the
//! scaling model in `benches/SCALING.md` (plain timed runs printed as tables).
//!
//! # Criterion groups (one iteration = one operation; criterion reports ns/iteration)
//! * `switch/yield_alone`: one greenlet `yield_now`s on a one-worker runtime: a
//!   greenlet → hub → greenlet round trip with nothing else runnable.
//!   `switch/yield_pair`: two greenlets yield to each other (one iteration = one
//!   yield of one of them).
//! * `spawn/spawn_join`: spawn an empty greenlet and join it, one at a time, on a
//!   warm one-worker runtime (stacks come from the pool). `spawn/batch_64`: spawn 64,
//!   then join the 64 (one iteration = one greenlet).
//! * `park_unpark/same_worker`, `park_unpark/cross_worker`: two greenlets hand a turn
//!   back and forth with `grove::greenlet::park` and each other's `current_waker`; one iteration
//!   is one hand-off (a store, a `wake_by_ref`, the other's resume). `cross_worker`
//!   forces the two onto different workers of a two-worker runtime the way
//!   `ping_pong_2w` does (both spin until both have started), so every wake goes
//!   through the home worker's inbox and, when it sleeps, its parker.
//! * `timer/reactor_add_cancel`: `grove_reactor::Handle::add_timer` of a far deadline
//!   then `cancel_timer`, on a reactor of its own (`/10k_pending`: with 10,000 other
//!   timers in the heap). `timer/with_timeout`: `grove::with_timeout(60 s, ..)`
//!   around a body that does not block: the cost of a `Timeout` scope (timer insert,
//!   interrupt word, cancel).
//!
//! # Probes (`benches/micro/probes.rs`)
//! Run after the criterion groups under `cargo bench` (not `cargo test --benches`),
//! each only if a filter argument is a substring of its name, or there is none:
//! `probe/latency` (reactor wake latency: median, p99), `probe/reactor_io`,
//! `probe/reactor_timers` (reactor saturation, from `reactor_metrics()` and the reactor
//! thread's CPU time), `probe/inbox` (N threads waking greenlets of one worker),
//! `probe/steal` (chained_spawn and skynet on 1 and 2 workers, with steal counts).
//! `GROVE_MICRO_PROBES=0` skips them.
//!
//! ```text
//! cargo bench --bench micro                 # everything, ~1.5 min on 2 cores
//! cargo bench --bench micro -- park_unpark  # one criterion group (and no probe)
//! cargo bench --bench micro -- probe/       # only the probes
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};

#[path = "micro/probes.rs"]
mod probes;

/// Greenlets per batch in `spawn/batch_64`.
const BATCH: u64 = 64;

/// A far deadline for timers that are cancelled, never fired.
const FAR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------- switch

fn switch(c: &mut Criterion, rt1: &grove::Runtime) {
    let mut g = c.benchmark_group("switch");
    g.throughput(Throughput::Elements(1));
    g.bench_function("yield_alone", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    grove::yield_now();
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("yield_pair", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(move || {
                // Each of the two yields half the iterations; the main greenlet joins
                // (parked), so the two alternate.
                let half = iters.div_ceil(2);
                let start = Instant::now();
                let hs: Vec<_> = (0..2)
                    .map(|_| {
                        grove::spawn(move || {
                            for _ in 0..half {
                                grove::yield_now();
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

// ---------------------------------------------------------------- spawn

fn spawn(c: &mut Criterion, rt1: &grove::Runtime) {
    let mut g = c.benchmark_group("spawn");
    g.throughput(Throughput::Elements(1));
    g.bench_function("spawn_join", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    grove::spawn(|| {}).join().unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.bench_function(BenchmarkId::new("batch", BATCH), |b| {
        b.iter_custom(|iters| {
            rt1.block_on(move || {
                let mut hs = Vec::with_capacity(BATCH as usize);
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let k = left.min(BATCH);
                    hs.extend((0..k).map(|_| grove::spawn(|| {})));
                    for h in hs.drain(..) {
                        h.join().unwrap();
                    }
                    left -= k;
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

// ---------------------------------------------------------------- park/unpark

/// Two greenlets pass a turn back and forth `handoffs` times with `park` and wakers;
/// returns side 0's time for the exchange. With `apart`, both spin until both have
/// started, which forces them onto different workers (asserted).
fn park_handoffs(rt: &grove::Runtime, handoffs: u64, apart: bool) -> Duration {
    rt.block_on(move || {
        let turn = Arc::new(AtomicU64::new(0));
        let wakers: Arc<[OnceLock<Waker>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
        let arrived = Arc::new(AtomicUsize::new(0));
        let side = |me: u64| {
            let (turn, wakers, arrived) = (turn.clone(), wakers.clone(), arrived.clone());
            grove::spawn(move || {
                wakers[me as usize]
                    .set(grove::greenlet::current_waker())
                    .expect("one waker per side");
                arrived.fetch_add(1, Ordering::SeqCst);
                while arrived.load(Ordering::SeqCst) < 2 {
                    if apart {
                        std::hint::spin_loop(); // holds the worker: the peer is stolen
                    } else {
                        grove::yield_now();
                    }
                }
                let other = wakers[1 - me as usize].get().unwrap().clone();
                let start = Instant::now();
                // Side `me` moves on turns `me, me + 2, ...`.
                for t in (me..handoffs).step_by(2) {
                    while turn.load(Ordering::Acquire) != t {
                        grove::greenlet::park(); // wakes may be spurious: re-check
                    }
                    turn.store(t + 1, Ordering::Release);
                    other.wake_by_ref();
                }
                (start.elapsed(), grove::greenlet::worker_index())
            })
        };
        let (a, b) = (side(0), side(1));
        let ((elapsed, wa), (_, wb)) = (a.join().unwrap(), b.join().unwrap());
        assert!(
            !apart || wa != wb,
            "cross_worker: both sides on worker {wa:?}"
        );
        elapsed
    })
}

fn park_unpark(c: &mut Criterion, rt1: &grove::Runtime, rt2: &grove::Runtime) {
    let mut g = c.benchmark_group("park_unpark");
    g.throughput(Throughput::Elements(1));
    g.bench_function("same_worker", |b| {
        b.iter_custom(|iters| park_handoffs(rt1, iters.max(2), false))
    });
    g.bench_function("cross_worker", |b| {
        b.iter_custom(|iters| park_handoffs(rt2, iters.max(2), true))
    });
    g.finish();
}

// ---------------------------------------------------------------- timers

fn timers(c: &mut Criterion, rt1: &grove::Runtime) {
    let reactor = grove::raw::reactor::Reactor::start().expect("reactor");
    let handle = reactor.handle();
    let mut g = c.benchmark_group("timer");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("reactor_add_cancel", "empty"), |b| {
        let far = Instant::now() + FAR;
        b.iter(|| {
            let key = handle.add_timer(far, Waker::noop().clone());
            black_box(handle.cancel_timer(key))
        })
    });
    // 10,000 live timers (later than ours, as a server's idle timeouts would be), so
    // the insert sifts through a deep heap.
    let base = Instant::now() + FAR;
    let pending: Vec<_> = (0..10_000u32)
        .map(|i| {
            handle.add_timer(
                base + Duration::from_micros(u64::from(i)),
                Waker::noop().clone(),
            )
        })
        .collect();
    g.bench_function(BenchmarkId::new("reactor_add_cancel", "10k_pending"), |b| {
        let far = Instant::now() + FAR / 2;
        b.iter(|| {
            let key = handle.add_timer(far, Waker::noop().clone());
            black_box(handle.cancel_timer(key))
        })
    });
    for key in pending {
        handle.cancel_timer(key);
    }
    g.bench_function("with_timeout", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(move || {
                let start = Instant::now();
                for i in 0..iters {
                    let r = grove::with_timeout(Duration::from_secs(60), || black_box(i));
                    black_box(r.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    reactor.shutdown();
}

// ---------------------------------------------------------------- main

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt1 = grove::Runtime::builder()
        .workers(1)
        .build()
        .expect("grove runtime");
    let rt2 = grove::Runtime::builder()
        .workers(2)
        .build()
        .expect("grove runtime");

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .without_plots()
        .configure_from_args();
    switch(&mut c, &rt1);
    spawn(&mut c, &rt1);
    park_unpark(&mut c, &rt1, &rt2);
    timers(&mut c, &rt1);
    c.final_summary();
    drop((rt1, rt2));

    // As in `core`: `cargo bench` passes `--bench`; a test run does not pay for probes.
    let benching = args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a == "--profile-time");
    let wanted = std::env::var("GROVE_MICRO_PROBES").map_or(true, |v| v != "0");
    if benching && wanted {
        // Criterion's filter is the first free argument; probes take the same.
        let filters: Vec<&str> = args
            .iter()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .map(String::as_str)
            .collect();
        probes::run(&filters);
    }
}
