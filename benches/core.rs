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
//! of magnitude (sizes in `Sizes::FULL` in `workloads/mod.rs`; the summary's footer repeats them).
//! The workloads but `switch` live in `benches/workloads/mod.rs`, shared with the
//! comparison harness `benches/compare.rs`.
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

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

#[path = "workloads/mod.rs"]
mod workloads;

use workloads::{
    chained_spawn, env_usize, may_go, mutex_contention, ping_pong, skynet, spawn_join, yield_many,
    Runtimes, Sizes, Workload,
};

/// `switch`: yields (or resume + suspend pairs) per iteration.
const SWITCH_N: u64 = 100_000;

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
    let s = Sizes::FULL;
    eprintln!(
        "(may: spawn_join at {}, chained_spawn at {}, skynet at {} leaves; threads: \
         spawn_join/chained_spawn at {}/{}, yield_many as {}x{}; summary took {:.1?})",
        s.may_spawn,
        s.may_chain,
        s.may_skynet,
        s.thread_spawn,
        s.thread_chain,
        s.yield_threads,
        s.yields,
        started.elapsed()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workers = env_usize("GROVE_BENCH_WORKERS").unwrap_or_else(num_cpus::get);
    let rt = Runtimes::new(workers);
    let s = Sizes::FULL;
    let workloads: Vec<_> = [
        spawn_join(&rt, s),
        yield_many(&rt, s),
        chained_spawn(&rt, s),
        skynet(&rt, s),
        switch(&rt),
        ping_pong(&rt, s, false),
        ping_pong(&rt, s, true),
        mutex_contention(&rt, s),
    ]
    .into_iter()
    // Two greenlets forced onto two workers need two workers (they would wait forever).
    .filter(|w| workers >= 2 || w.name != "ping_pong_2w")
    .collect();

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
