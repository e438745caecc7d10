//! Core scheduler benchmarks: grove against tokio, may and OS threads, in one run.
//!
//! # Workloads
//! * `spawn_join`: one task spawns N empty tasks, then joins them all.
//! * `yield_many`: 1,000 tasks each yield 1,000 times.
//! * `chained_spawn`: each task spawns the next and returns without waiting; the
//!   last one signals the driver thread.
//! * `skynet`: a 10-ary tree of tasks with 1,000,000 leaves; each node spawns its
//!   children, joins them and sums.
//! * `switch`: one task yields N times alone, next to a raw `corosensei` resume +
//!   suspend loop: the floor a greenlet yield is measured against.
//! * `ping_pong_1w` / `ping_pong_2w`: two tasks exchange a number over two queues
//!   (grove `Queue`, tokio unbounded mpsc, may mpsc, std mpsc), one round trip per
//!   element; `_1w` on a one-worker runtime (tokio: current-thread), `_2w` on the
//!   multi-worker one, where grove's two greenlets are forced onto different workers
//!   (they rendezvous spinning before the exchange). tokio tasks migrate, so its `_2w`
//!   placement is tokio's choice; may's worker count is process-global (same in both).
//! * `mutex_contention`: N tasks each lock and unlock a shared mutex M times,
//!   incrementing a counter inside (grove `Lock`, tokio and may `Mutex`, std `Mutex`).
//!
//! Every group reports `Throughput::Elements` (tasks, yields, chain links or leaves),
//! so criterion's per-element times compare across runtimes even where a peer runs a
//! smaller size: may's guarded stacks are two mappings each, so it cannot hold 1M
//! coroutines under `vm.max_map_count` (65,530), and OS threads are slower by orders
//! of magnitude (sizes in the constants below; the summary's footer repeats them).
//!
//! Each runtime is built once, before the first group, and reused by every iteration.
//! Worker count: `GROVE_BENCH_WORKERS`, else `num_cpus::get()`. grove's stack size:
//! `GROVE_BENCH_STACK` (bytes), else grove's default; peers keep their defaults.
//!
//! After the criterion groups (only under `cargo bench`, not `cargo test`), a summary
//! table goes to stderr: per workload, the median ns/element of a few repetitions
//! interleaved across runtimes, and grove's ratio to tokio and may. It covers the
//! workloads of which criterion's filter argument selected at least one case (all
//! runtimes of each, for the ratios); `GROVE_BENCH_SUMMARY=0` skips it and
//! `GROVE_BENCH_REPS` sets its repetitions (default 5).
//!
//! ```text
//! cargo bench --bench core              # everything, ~3-5 min on 2 cores
//! cargo bench --bench core -- skynet    # one workload
//! ```

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// `spawn_join` size for grove and tokio.
const SPAWN_N: u64 = 1_000_000;
/// `spawn_join` size for may: 1M live guarded stacks exceed `vm.max_map_count`.
const MAY_SPAWN_N: u64 = 20_000;
/// `spawn_join` size for OS threads.
const THREAD_SPAWN_N: u64 = 10_000;

/// `yield_many`: tasks, and yields per task.
const YIELD_TASKS: u64 = 1_000;
const YIELDS: u64 = 1_000;
/// `yield_many` threads for the OS-thread row (each yields `YIELDS` times).
const YIELD_THREADS: u64 = 100;

/// `chained_spawn` depth for grove and tokio.
const CHAIN_N: u64 = 1_000_000;
/// `chained_spawn` depth for may: it takes ~30 us a link on 2 cores (perf: mostly
/// the kernel waking and parking its idle worker), so 1M would take 30 s.
const MAY_CHAIN_N: u64 = 20_000;
/// `chained_spawn` depth for OS threads (50-850 us a link on 2 cores).
const THREAD_CHAIN_N: u64 = 1_000;

/// `skynet` leaves for grove and tokio, and the expected sum `0 + 1 + ... + n-1`.
const SKYNET_N: u64 = 1_000_000;
/// `skynet` leaves for may. may runs the tree breadth-first, so nearly every node is
/// live at once, each with a guarded stack (two mappings): 100,000 leaves (111,111
/// nodes) fails with ENOMEM from `mmap` under `vm.max_map_count` (65,530); 10,000
/// leaves (11,111 nodes) fits.
const MAY_SKYNET_N: u64 = 10_000;
/// Children per `skynet` node.
const SKYNET_DIV: u64 = 10;

/// `switch`: yields (or resume + suspend pairs) per iteration.
const SWITCH_N: u64 = 100_000;

/// `ping_pong` round trips for grove, tokio and may, and for OS threads.
const PING_N: u64 = 1_000_000;
const THREAD_PING_N: u64 = 10_000;

/// `mutex_contention`: tasks, and lock/unlock pairs per task.
const MUTEX_TASKS: u64 = 100;
const MUTEX_OPS: u64 = 10_000;

/// The targets the summary reports against: grove's time over this runtime's, same
/// run, at most this much.
const TARGETS: &[(&str, &str, f64)] = &[
    ("spawn_join", "tokio", 0.25),
    ("yield_many", "tokio", 0.6),
    ("chained_spawn", "tokio", 0.6),
    ("skynet", "tokio", 0.8),
    ("switch", "corosensei", 10.0),
    ("ping_pong_1w", "tokio", 0.7),
    ("ping_pong_2w", "tokio", 0.7),
];

/// One runtime's version of a workload: how many elements one run handles, and the
/// run itself.
struct Case<'a> {
    runtime: &'static str,
    elements: u64,
    run: Box<dyn Fn() + 'a>,
    /// Set when criterion ran this case, i.e. it passed the filter argument.
    selected: Cell<bool>,
}

/// A workload: a criterion group and a row of the summary.
struct Workload<'a> {
    name: &'static str,
    cases: Vec<Case<'a>>,
}

impl<'a> Workload<'a> {
    fn new(name: &'static str) -> Self {
        Workload {
            name,
            cases: Vec::new(),
        }
    }

    fn case(mut self, runtime: &'static str, elements: u64, run: impl Fn() + 'a) -> Self {
        self.cases.push(Case {
            runtime,
            elements,
            run: Box::new(run),
            selected: Cell::new(false),
        });
        self
    }
}

/// The runtimes under test, each built once. may's runtime is global and configured
/// in [`Runtimes::new`] before its first spawn.
struct Runtimes {
    grove: grove::Runtime,
    tokio: tokio::runtime::Runtime,
    /// One-worker runtimes, for the same-worker ping-pong.
    grove1: grove::Runtime,
    tokio1: tokio::runtime::Runtime,
    workers: usize,
}

impl Runtimes {
    fn new(workers: usize) -> Self {
        let mut grove = grove::Runtime::builder().workers(workers);
        if let Some(bytes) = env_usize("GROVE_BENCH_STACK") {
            grove = grove.stack_size(bytes);
        }
        let grove = grove.build().expect("grove runtime");
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("tokio runtime");
        may::config().set_workers(workers);
        let grove1 = grove::Runtime::builder()
            .workers(1)
            .build()
            .expect("grove runtime");
        let tokio1 = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Runtimes {
            grove,
            tokio,
            grove1,
            tokio1,
            workers,
        }
    }
}

/// A numeric environment variable; unset or empty is `None`, not a number panics.
fn env_usize(name: &str) -> Option<usize> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Spawns a may coroutine.
fn may_go<F, T>(f: F) -> may::coroutine::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: may's `spawn` is unsafe because a coroutine may migrate between worker
    // threads at a yield, so a thread-local borrowed across a yield would dangle, and
    // its stack is small. The bench closures touch no thread-locals across yields
    // (they only spawn, join, yield and send) and recurse a few frames deep.
    unsafe { may::coroutine::spawn(f) }
}

// ---------------------------------------------------------------- spawn_join

fn spawn_join(rt: &Runtimes) -> Workload<'_> {
    Workload::new("spawn_join")
        .case("grove", SPAWN_N, move || {
            rt.grove.block_on(|| {
                let hs: Vec<_> = (0..SPAWN_N).map(|_| grove::spawn(|| {})).collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
        })
        .case("tokio", SPAWN_N, move || {
            // Spawned from a task on a worker, like grove's `block_on` greenlet, so the
            // spawns go to the local queue rather than the injector.
            rt.tokio
                .block_on(rt.tokio.spawn(async {
                    let hs: Vec<_> = (0..SPAWN_N).map(|_| tokio::spawn(async {})).collect();
                    for h in hs {
                        h.await.unwrap();
                    }
                }))
                .unwrap()
        })
        .case("may", MAY_SPAWN_N, || {
            may_go(|| {
                let hs: Vec<_> = (0..MAY_SPAWN_N).map(|_| may_go(|| {})).collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
            .join()
            .unwrap()
        })
        .case("threads", THREAD_SPAWN_N, || {
            let hs: Vec<_> = (0..THREAD_SPAWN_N).map(|_| thread::spawn(|| {})).collect();
            for h in hs {
                h.join().unwrap();
            }
        })
}

// ---------------------------------------------------------------- yield_many

fn yield_many(rt: &Runtimes) -> Workload<'_> {
    Workload::new("yield_many")
        .case("grove", YIELD_TASKS * YIELDS, move || {
            rt.grove.block_on(|| {
                let hs: Vec<_> = (0..YIELD_TASKS)
                    .map(|_| {
                        grove::spawn(|| {
                            for _ in 0..YIELDS {
                                grove::yield_now();
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
        })
        .case("tokio", YIELD_TASKS * YIELDS, move || {
            rt.tokio
                .block_on(rt.tokio.spawn(async {
                    let hs: Vec<_> = (0..YIELD_TASKS)
                        .map(|_| {
                            tokio::spawn(async {
                                for _ in 0..YIELDS {
                                    tokio::task::yield_now().await;
                                }
                            })
                        })
                        .collect();
                    for h in hs {
                        h.await.unwrap();
                    }
                }))
                .unwrap()
        })
        .case("may", YIELD_TASKS * YIELDS, || {
            may_go(|| {
                let hs: Vec<_> = (0..YIELD_TASKS)
                    .map(|_| {
                        may_go(|| {
                            for _ in 0..YIELDS {
                                may::coroutine::yield_now();
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
            .join()
            .unwrap()
        })
        .case("threads", YIELD_THREADS * YIELDS, || {
            let hs: Vec<_> = (0..YIELD_THREADS)
                .map(|_| {
                    thread::spawn(|| {
                        for _ in 0..YIELDS {
                            thread::yield_now();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        })
}

// ---------------------------------------------------------------- chained_spawn

fn chain_grove(left: u64, done: mpsc::SyncSender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        // Dropping the handle detaches the greenlet.
        drop(grove::spawn(move || chain_grove(left - 1, done)));
    }
}

fn chain_tokio(left: u64, done: tokio::sync::oneshot::Sender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        drop(tokio::spawn(async move { chain_tokio(left - 1, done) }));
    }
}

fn chain_may(left: u64, done: may::sync::mpsc::Sender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        drop(may_go(move || chain_may(left - 1, done)));
    }
}

fn chain_thread(left: u64, done: mpsc::SyncSender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        drop(thread::spawn(move || chain_thread(left - 1, done)));
    }
}

fn chained_spawn(rt: &Runtimes) -> Workload<'_> {
    // The driver is the bench thread, outside every runtime; the first link is
    // spawned from it, the rest from inside.
    Workload::new("chained_spawn")
        .case("grove", CHAIN_N, move || {
            let (tx, rx) = mpsc::sync_channel(1);
            drop(rt.grove.spawn(move || chain_grove(CHAIN_N, tx)));
            rx.recv().unwrap();
        })
        .case("tokio", CHAIN_N, move || {
            let (tx, rx) = tokio::sync::oneshot::channel();
            drop(rt.tokio.spawn(async move { chain_tokio(CHAIN_N, tx) }));
            rx.blocking_recv().unwrap();
        })
        .case("may", MAY_CHAIN_N, || {
            let (tx, rx) = may::sync::mpsc::channel();
            drop(may_go(move || chain_may(MAY_CHAIN_N, tx)));
            rx.recv().unwrap();
        })
        .case("threads", THREAD_CHAIN_N, || {
            let (tx, rx) = mpsc::sync_channel(1);
            drop(thread::spawn(move || chain_thread(THREAD_CHAIN_N, tx)));
            rx.recv().unwrap();
        })
}

// ---------------------------------------------------------------- skynet

fn skynet_grove(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let child = size / SKYNET_DIV;
    let hs: Vec<_> = (0..SKYNET_DIV)
        .map(|i| grove::spawn(move || skynet_grove(num + i * child, child)))
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

fn skynet_tokio(num: u64, size: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let child = size / SKYNET_DIV;
        let hs: Vec<_> = (0..SKYNET_DIV)
            .map(|i| tokio::spawn(skynet_tokio(num + i * child, child)))
            .collect();
        let mut sum = 0;
        for h in hs {
            sum += h.await.unwrap();
        }
        sum
    })
}

fn skynet_may(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let child = size / SKYNET_DIV;
    let hs: Vec<_> = (0..SKYNET_DIV)
        .map(|i| may_go(move || skynet_may(num + i * child, child)))
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// `0 + 1 + ... + (leaves - 1)`.
fn skynet_sum(leaves: u64) -> u64 {
    leaves * (leaves - 1) / 2
}

// No OS-thread row: every inner node blocks a thread in `join`, so the 1M-leaf tree
// needs ~1.1M live threads, far beyond the thread and mapping limits (a guarded
// stack is two mappings); a tree small enough to fit (~30,000 nodes) would only
// measure thread creation again, which `spawn_join` already does.
fn skynet(rt: &Runtimes) -> Workload<'_> {
    Workload::new("skynet")
        .case("grove", SKYNET_N, move || {
            let sum = rt.grove.block_on(|| skynet_grove(0, SKYNET_N));
            assert_eq!(sum, skynet_sum(SKYNET_N));
        })
        .case("tokio", SKYNET_N, move || {
            let sum = rt
                .tokio
                .block_on(rt.tokio.spawn(skynet_tokio(0, SKYNET_N)))
                .unwrap();
            assert_eq!(sum, skynet_sum(SKYNET_N));
        })
        .case("may", MAY_SKYNET_N, || {
            let sum = may_go(|| skynet_may(0, MAY_SKYNET_N)).join().unwrap();
            assert_eq!(sum, skynet_sum(MAY_SKYNET_N));
        })
}

// ---------------------------------------------------------------- switch

fn switch(rt: &Runtimes) -> Workload<'_> {
    // A coroutine that suspends forever: one iteration is SWITCH_N resume + suspend
    // pairs, the cheapest possible stack switch round trip.
    let co: RefCell<Coroutine<(), (), ()>> = RefCell::new(Coroutine::new(|y, ()| loop {
        y.suspend(());
    }));
    Workload::new("switch")
        .case("corosensei", SWITCH_N, move || {
            let mut co = co.borrow_mut();
            for _ in 0..SWITCH_N {
                let r = black_box(co.resume(()));
                debug_assert!(matches!(r, CoroutineResult::Yield(())));
            }
        })
        .case("grove", SWITCH_N, move || {
            rt.grove.block_on(|| {
                for _ in 0..SWITCH_N {
                    grove::yield_now();
                }
            })
        })
        .case("tokio", SWITCH_N, move || {
            rt.tokio
                .block_on(rt.tokio.spawn(async {
                    for _ in 0..SWITCH_N {
                        tokio::task::yield_now().await;
                    }
                }))
                .unwrap()
        })
        .case("may", SWITCH_N, || {
            may_go(|| {
                for _ in 0..SWITCH_N {
                    may::coroutine::yield_now();
                }
            })
            .join()
            .unwrap()
        })
}

// ---------------------------------------------------------------- driver

fn run_criterion(c: &mut Criterion, w: &Workload<'_>) {
    let mut g = c.benchmark_group(w.name);
    // Flat: every sample runs the same (small) number of iterations; linear sampling
    // would run 55 iterations of a ~100 ms workload.
    g.sampling_mode(SamplingMode::Flat);
    for case in &w.cases {
        g.throughput(Throughput::Elements(case.elements));
        // Criterion calls this only for ids that pass its filter.
        g.bench_function(BenchmarkId::from_parameter(case.runtime), |b| {
            case.selected.set(true);
            b.iter(|| (case.run)())
        });
    }
    g.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times every case `reps` times, interleaved across runtimes, and prints the median
/// ns/element and grove's ratios, for each workload criterion ran at least one case
/// of (so the filter argument applies).
fn summary(workloads: &[Workload<'_>], reps: usize, workers: usize) {
    let started = Instant::now();
    let mut rows = Vec::new();
    for w in workloads
        .iter()
        .filter(|w| w.cases.iter().any(|c| c.selected.get()))
    {
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(reps); w.cases.len()];
        for _ in 0..reps {
            for (case, t) in w.cases.iter().zip(&mut times) {
                let start = Instant::now();
                (case.run)();
                t.push(start.elapsed().as_nanos() as f64 / case.elements as f64);
            }
        }
        let ns: Vec<(&str, f64)> = w
            .cases
            .iter()
            .zip(&mut times)
            .map(|(c, t)| (c.runtime, median(t)))
            .collect();
        rows.push((w.name, ns));
    }
    if rows.is_empty() {
        return;
    }

    let get = |ns: &[(&str, f64)], rt: &str| ns.iter().find(|(r, _)| *r == rt).map(|&(_, v)| v);
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    };
    eprintln!();
    eprintln!(
        "grove core summary: ns/element, median of {reps} interleaved runs, {workers} workers"
    );
    eprintln!(
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>11} {:>10} {:>10}  target",
        "workload", "grove", "tokio", "may", "threads", "corosensei", "grove/tok", "grove/may",
    );
    for (name, ns) in &rows {
        let grove = get(ns, "grove");
        let target = TARGETS.iter().find(|(w, _, _)| w == name).map_or_else(
            String::new,
            |&(_, base, max)| match grove.zip(get(ns, base)).map(|(g, b)| g / b) {
                Some(r) => format!(
                    "{} {r:.2}x {base} (<= {max}x)",
                    if r <= max { "ok" } else { "MISS" }
                ),
                None => "-".to_string(),
            },
        );
        eprintln!(
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>11} {:>10} {:>10}  {}",
            name,
            cell(grove),
            cell(get(ns, "tokio")),
            cell(get(ns, "may")),
            cell(get(ns, "threads")),
            cell(get(ns, "corosensei")),
            ratio(grove, get(ns, "tokio")),
            ratio(grove, get(ns, "may")),
            target
        );
    }
    eprintln!(
        "(may: spawn_join at {MAY_SPAWN_N}, chained_spawn at {MAY_CHAIN_N}, skynet at \
         {MAY_SKYNET_N} leaves; threads: \
         spawn_join/chained_spawn at {THREAD_SPAWN_N}/{THREAD_CHAIN_N}, yield_many as \
         {YIELD_THREADS}x{YIELDS}; summary took {:.1?})",
        started.elapsed()
    );
}

/// grove ping-pong over two queues. With `apart`, the two greenlets first spin until
/// both have started, which puts them on different workers (neither yields).
fn grove_ping_pong(rt: &grove::Runtime, n: u64, apart: bool) {
    rt.block_on(move || {
        let (ping, pong) = (grove::Queue::new(), grove::Queue::new());
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (ping2, pong2, started2) = (ping.clone(), pong.clone(), started.clone());
        let echo = grove::spawn(move || {
            if apart {
                rendezvous(&started2);
            }
            for _ in 0..n {
                let v: u64 = ping2.get().unwrap();
                pong2.put(v + 1).unwrap();
            }
            grove::worker_index()
        });
        let driver = grove::spawn(move || {
            if apart {
                rendezvous(&started);
            }
            for i in 0..n {
                ping.put(i).unwrap();
                let v = pong.get().unwrap();
                debug_assert_eq!(v, i + 1);
            }
            grove::worker_index()
        });
        let (a, b) = (driver.join().unwrap(), echo.join().unwrap());
        assert!(
            !apart || a != b,
            "ping_pong_2w: both greenlets on worker {a:?}"
        );
    })
}

/// Spins until two parties have arrived.
fn rendezvous(arrived: &std::sync::atomic::AtomicUsize) {
    use std::sync::atomic::Ordering::SeqCst;
    arrived.fetch_add(1, SeqCst);
    while arrived.load(SeqCst) < 2 {
        std::hint::spin_loop();
    }
}

async fn tokio_ping_pong(n: u64) {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let echo = tokio::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            pong_tx.send(v + 1).unwrap();
        }
    });
    for i in 0..n {
        ping_tx.send(i).unwrap();
        let v = pong_rx.recv().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
    drop(ping_tx);
    echo.await.unwrap();
}

fn may_ping_pong(n: u64) {
    let (ping_tx, ping_rx) = may::sync::mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = may::sync::mpsc::channel::<u64>();
    let echo = may_go(move || {
        while let Ok(v) = ping_rx.recv() {
            pong_tx.send(v + 1).unwrap();
        }
    });
    may_go(move || {
        for i in 0..n {
            ping_tx.send(i).unwrap();
            let v = pong_rx.recv().unwrap();
            debug_assert_eq!(v, i + 1);
        }
    })
    .join()
    .unwrap();
    echo.join().unwrap();
}

fn thread_ping_pong(n: u64) {
    let (ping_tx, ping_rx) = mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = mpsc::channel::<u64>();
    let echo = thread::spawn(move || {
        while let Ok(v) = ping_rx.recv() {
            pong_tx.send(v + 1).unwrap();
        }
    });
    for i in 0..n {
        ping_tx.send(i).unwrap();
        let v = pong_rx.recv().unwrap();
        debug_assert_eq!(v, i + 1);
    }
    drop(ping_tx);
    echo.join().unwrap();
}

fn ping_pong(rt: &Runtimes, apart: bool) -> Workload<'_> {
    let name = if apart {
        "ping_pong_2w"
    } else {
        "ping_pong_1w"
    };
    let (grove_rt, tokio_rt) = if apart {
        (&rt.grove, &rt.tokio)
    } else {
        (&rt.grove1, &rt.tokio1)
    };
    Workload::new(name)
        .case("grove", PING_N, move || {
            grove_ping_pong(grove_rt, PING_N, apart)
        })
        .case("tokio", PING_N, move || {
            tokio_rt
                .block_on(tokio_rt.spawn(tokio_ping_pong(PING_N)))
                .unwrap()
        })
        .case("may", PING_N, || may_ping_pong(PING_N))
        .case("threads", THREAD_PING_N, || thread_ping_pong(THREAD_PING_N))
}

fn mutex_contention(rt: &Runtimes) -> Workload<'_> {
    let total = MUTEX_TASKS * MUTEX_OPS;
    Workload::new("mutex_contention")
        .case("grove", total, move || {
            rt.grove.block_on(move || {
                let lock = grove::Lock::new();
                let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                let hs: Vec<_> = (0..MUTEX_TASKS)
                    .map(|_| {
                        let (lock, count) = (lock.clone(), count.clone());
                        grove::spawn(move || {
                            use std::sync::atomic::Ordering::Relaxed;
                            for _ in 0..MUTEX_OPS {
                                let _g = lock.lock();
                                // A non-atomic increment: only the lock makes it exact.
                                count.store(count.load(Relaxed) + 1, Relaxed);
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), total);
            })
        })
        .case("tokio", total, move || {
            rt.tokio.block_on(async move {
                let m = std::sync::Arc::new(tokio::sync::Mutex::new(0u64));
                let hs: Vec<_> = (0..MUTEX_TASKS)
                    .map(|_| {
                        let m = m.clone();
                        tokio::spawn(async move {
                            for _ in 0..MUTEX_OPS {
                                *m.lock().await += 1;
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.await.unwrap();
                }
                assert_eq!(*m.lock().await, total);
            })
        })
        .case("may", total, move || {
            let m = std::sync::Arc::new(may::sync::Mutex::new(0u64));
            let hs: Vec<_> = (0..MUTEX_TASKS)
                .map(|_| {
                    let m = m.clone();
                    may_go(move || {
                        for _ in 0..MUTEX_OPS {
                            *m.lock().unwrap() += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(*m.lock().unwrap(), total);
        })
        .case("threads", total, move || {
            let m = std::sync::Arc::new(std::sync::Mutex::new(0u64));
            let hs: Vec<_> = (0..MUTEX_TASKS)
                .map(|_| {
                    let m = m.clone();
                    thread::spawn(move || {
                        for _ in 0..MUTEX_OPS {
                            *m.lock().unwrap() += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(*m.lock().unwrap(), total);
        })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workers = env_usize("GROVE_BENCH_WORKERS").unwrap_or_else(num_cpus::get);
    let rt = Runtimes::new(workers);
    let workloads = [
        spawn_join(&rt),
        yield_many(&rt),
        chained_spawn(&rt),
        skynet(&rt),
        switch(&rt),
        ping_pong(&rt, false),
        ping_pong(&rt, true),
        mutex_contention(&rt),
    ];

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
        .configure_from_args();
    for w in &workloads {
        run_criterion(&mut c, w);
    }
    c.final_summary();

    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`, or
    // `cargo bench -- --test`) runs each case once and should not pay for the summary.
    let benching = args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a == "--profile-time");
    let wanted = std::env::var("GROVE_BENCH_SUMMARY").map_or(true, |v| v != "0");
    if benching && wanted {
        let reps = env_usize("GROVE_BENCH_REPS").unwrap_or(5).max(1);
        summary(&workloads, reps, rt.workers);
    }
}
