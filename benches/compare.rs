//! The comparison harness: grove beside tokio, may and OS threads on every workload,
//! in one run, with one table, one CSV and one chart.
//!
//! ```text
//! cargo bench --bench compare                       # everything, ~6-9 min on 2 cores
//! cargo bench --bench compare -- --quick            # a ~1 min pass: smaller sizes, 3 reps
//! cargo bench --bench compare -- --workload echo,skynet --runtime grove,tokio
//! cargo bench --bench compare -- --reps 9 --workers 2
//! ```
//!
//! Flags (after `--`): `--quick`; `--reps N` (default 5, 3 under `--quick`);
//! `--workload W[,W..]` (each a regex, so a plain substring works: `echo` selects
//! `echo_c100` and `echo_c1000`); `--runtime R[,R..]` (grove, tokio, may, threads);
//! `--workers N` (workers of every runtime, default: the number of CPUs);
//! `--client-threads N` (the load generator's threads, default 1). Output: a table on
//! stdout, `target/compare/results.csv` and `target/compare/chart.svg`.
//! `--harvest-probe [F]` instead measures what one I/O event costs the reactor thread and a
//! worker harvesting the poll itself (`benches/SCALING.md`, "The new path").
//! `GROVE_COMPARE_METRICS=1` prints, after each grove repetition of a network bench, who
//! harvested the events and what each thread's CPU came to.
//!
//! # Method
//! * **Interleaving.** For each workload, repetition 1 of every runtime runs, then
//!   repetition 2, and so on, so a slow phase of the (shared, noisy) machine hits
//!   every runtime alike rather than one of them.
//! * **Medians.** Each runtime's cell is the median over the repetitions (min and max
//!   go to the CSV). Ratios are grove's median over the peer's, **in the same run**.
//!   The memory benches run at most 3 repetitions (1 under `--quick`): a repetition
//!   is a child process per runtime and their results vary by a few percent.
//! * **Runtimes.** Built once per run and reused: grove (`--workers` workers), tokio
//!   multi-thread (`--workers` workers; current-thread for `ping_pong_1w`), may
//!   (`--workers` workers, process-global), OS threads (std). Peers run smaller sizes
//!   where they must; every in-process metric is per element, so sizes differ but the
//!   cells compare (the `size` column says which size ran).
//! * **Children for memory.** `idle_mem` and `idle_connections` run each runtime in a
//!   fresh child process (this binary re-executed with `GROVE_COMPARE_CHILD` set), so
//!   one runtime's heap, stack pool or freed-but-kept pages never count against
//!   another. The child builds only its own runtime, samples `VmRSS` from
//!   `/proc/self/status` before and after, and prints the delta per task.
//! * **The machine.** 2 cores, shared by every runtime's workers and, for `echo`, by
//!   the load generator: client and server compete for the same cores, as in the
//!   numbers quoted in issue 5. Expect ±20% between runs.
//!
//! # Workloads
//! In-process, from `benches/workloads/mod.rs` (shared with `benches/core.rs`);
//! metric: time per element, lower is better. Sizes full / `--quick`:
//! * `spawn_join`: one task spawns N empty tasks, then joins them (grove, tokio 1M /
//!   100k; may 20k / 5k, threads 10k / 2k).
//! * `yield_many`: 1,000 tasks × 1,000 yields (quick 200 × 500; threads 100 / 20).
//! * `chained_spawn`: each task spawns the next (1M / 100k; may 20k / 5k; threads
//!   1,000 / 300).
//! * `skynet`: 10-ary spawn/join tree (1M / 100k leaves; may 10k; no thread row).
//! * `ping_pong_1w`, `ping_pong_2w`: round trips over two queues, on one worker, and
//!   across two threads: grove's two greenlets forced onto two workers, tokio's echo
//!   task on a current-thread runtime of its own thread (a multi-thread runtime would
//!   keep both tasks on one worker) (1M / 100k; threads 10k / 2k).
//! * `mutex_contention`: 100 tasks × 10,000 lock/unlock (quick 50 × 2,000).
//!
//! Timers (issue 6):
//! * `sleepers`: N tasks each sleep a random 1-100 ms (xorshift64, fixed seed, the
//!   same durations for every runtime); metrics: wall time from the first spawn to
//!   the last join, and the mean and p99 *lateness* (time slept minus time asked, per
//!   task), all lower is better. N = 100,000 for grove and tokio, 20,000 for may (its
//!   guarded stacks cap it near 32k live coroutines), 2,000 OS threads.
//! * `sleepers_burn`: the same, with two CPU-burning processes (this binary re-executed
//!   with `GROVE_COMPARE_BURN` set) running beside each repetition: how late timers fire on
//!   a machine that is busy with something else.
//!
//! Memory (issue 6), one child per runtime and repetition:
//! * `idle_mem`: N tasks spawned (handles kept) and each blocked on an event (grove
//!   `Event`, tokio/may/std `Barrier`); metric: RSS growth per task, lower is better.
//!   N = 1,000,000 for grove and tokio (100,000 under `--quick`), 20,000 for may (it
//!   fails above ~32k), 5,000 OS threads.
//!
//! Network (issue 5), loopback, the server in this process on `127.0.0.1:0`:
//! * `echo_c100`, `echo_c1000`: C connections of one shared **load generator** (not
//!   part of any server: `mio`, `--client-threads` threads, default 1) each doing
//!   write 64 bytes → read exactly 64 bytes back, for 5 s (1 s under `--quick`) after
//!   a warm-up of a tenth of that; metrics: round trips/s (higher is better), p50 and
//!   p99 round-trip latency (lower is better) from a log-linear histogram (16
//!   sub-buckets per power of two: ≤ 6% error). Servers: one task per connection,
//!   plain read → write-all loop, 1 KiB read buffer, `TCP_NODELAY`: tokio
//!   (`tokio::net`), may (`may::net`), a thread per connection (std), grove
//!   (`grove::net`: an accept-loop greenlet spawning a greenlet per connection). Each server starts once per run (at its first
//!   repetition) and keeps listening; every repetition opens fresh connections and
//!   closes them at its end, which ends their handlers.
//! * `http_hello`: as echo at C = 100, but each request is a 31-byte HTTP/1.1 GET and
//!   the server answers each complete request (`\r\n\r\n`) with a fixed keep-alive
//!   "Hello, World!" response; the same minimal responder in every runtime (not
//!   grove's `examples/http_hello.rs`, which can be pointed at with `wrk` by hand).
//! * `redis_c1000` (`compare/redis.rs`): 1,000 clients loop SET/GET against one local
//!   `redis-server` (installed with apt-get if missing): grove greenlets with the
//!   unmodified **sync** `redis` client (needs `--features monkey`), a thread per client
//!   with the same client, tokio tasks with the crate's async client; commands/s, and
//!   the client's and the server's CPU time per command.
//! * `idle_connections_10k`, `idle_connections_100k`: a child process runs the server;
//!   this process opens N client connections to it and leaves them idle; the child
//!   reports its RSS growth per connection once N handlers are blocked in `read`
//!   (lower is better). 100k needs ~100k fds a side: the harness raises
//!   `RLIMIT_NOFILE` to its hard limit at start, and above it where it may (root);
//!   sizes the limit cannot hold are skipped with the reason, as are may and threads
//!   at 100k (the 65,530-mapping limit). Clients spread over 127.0.0.1-4 as source
//!   addresses (28k ephemeral ports each). `--quick` runs 10k only.

use std::collections::BTreeMap;
use std::time::Instant;

#[path = "workloads/mod.rs"]
mod workloads;

#[path = "compare/harvest.rs"]
mod harvest;
#[path = "compare/loadgen.rs"]
mod loadgen;
#[path = "compare/memory.rs"]
mod memory;
#[path = "compare/net.rs"]
mod net;
#[path = "compare/redis.rs"]
mod redis_load;
#[path = "compare/report.rs"]
mod report;
#[path = "compare/timers.rs"]
mod timers;

use workloads::{Runtimes, Sizes};

/// The runtimes, in table order.
const RUNTIMES: [&str; 4] = ["grove", "tokio", "may", "threads"];

/// Which direction of a metric is good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Better {
    Lower,
    Higher,
}

/// One number a workload reports, in a base unit (`ns`, `B`, `1/s`).
#[derive(Clone, Copy, Debug)]
struct Metric {
    name: &'static str,
    unit: &'static str,
    better: Better,
}

/// Time per element, the metric of every in-process workload.
const NS_PER_ELEMENT: Metric = Metric {
    name: "time/element",
    unit: "ns",
    better: Better::Lower,
};

/// One repetition of one runtime's case: the values of the bench's metrics, in
/// order, or why it failed.
type RunFn<'a> = Box<dyn FnMut() -> Result<Vec<f64>, String> + 'a>;

/// One runtime's version of a bench.
struct Runner<'a> {
    runtime: &'static str,
    size: u64,
    run: RunFn<'a>,
}

/// A workload as the harness runs it: its metrics, a runner per runtime, and the
/// runtimes it skips, with the reason.
struct Bench<'a> {
    name: String,
    metrics: Vec<Metric>,
    runners: Vec<Runner<'a>>,
    skipped: Vec<(&'static str, String)>,
    /// At most this many repetitions (the memory benches: their results barely vary,
    /// and each repetition is a child process per runtime).
    max_reps: Option<usize>,
}

impl<'a> Bench<'a> {
    fn new(name: impl Into<String>, metrics: &[Metric]) -> Self {
        Bench {
            name: name.into(),
            metrics: metrics.to_vec(),
            runners: Vec::new(),
            skipped: Vec::new(),
            max_reps: None,
        }
    }

    fn max_reps(mut self, reps: usize) -> Self {
        self.max_reps = Some(reps);
        self
    }

    fn runner(
        mut self,
        runtime: &'static str,
        size: u64,
        run: impl FnMut() -> Result<Vec<f64>, String> + 'a,
    ) -> Self {
        self.runners.push(Runner {
            runtime,
            size,
            run: Box::new(run),
        });
        self
    }

    fn skip(mut self, runtime: &'static str, why: impl Into<String>) -> Self {
        self.skipped.push((runtime, why.into()));
        self
    }

    /// One of the shared in-process workloads, timed per element.
    fn from_workload(w: workloads::Workload<'a>) -> Self {
        let mut b = Bench::new(w.name, &[NS_PER_ELEMENT]);
        for case in w.cases {
            let elements = case.elements;
            let run = case.run;
            b = b.runner(case.runtime, elements, move || {
                let start = Instant::now();
                run();
                Ok(vec![start.elapsed().as_nanos() as f64 / elements as f64])
            });
        }
        b
    }
}

/// The command line, as `--help` prints it.
const USAGE: &str = "compare [--quick] [--reps N] [--workload RE,..] \
                     [--runtime grove,tokio,may,threads] [--workers N] [--client-threads N]";

/// The command line.
#[derive(Debug)]
struct Options {
    quick: bool,
    reps: usize,
    workloads: Vec<regex::Regex>,
    runtimes: Vec<String>,
    workers: usize,
    client_threads: usize,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut o = Options {
            quick: false,
            reps: 0,
            workloads: Vec::new(),
            runtimes: RUNTIMES.iter().map(|r| r.to_string()).collect(),
            workers: num_cpus::get(),
            client_threads: 1,
        };
        let mut args = std::env::args().skip(1);
        let number = |flag: &str, v: Option<String>| -> Result<usize, String> {
            v.as_deref()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{flag} takes a positive number"))
        };
        while let Some(a) = args.next() {
            match a.as_str() {
                // cargo passes `--bench`; criterion-style filters are not ours.
                "--bench" => {}
                "--quick" => o.quick = true,
                "--reps" => o.reps = number("--reps", args.next())?,
                "--workers" => o.workers = number("--workers", args.next())?,
                "--client-threads" => o.client_threads = number("--client-threads", args.next())?,
                "--workload" => {
                    let v = args.next().ok_or("--workload takes a list")?;
                    for w in v.split(',').filter(|w| !w.is_empty()) {
                        o.workloads.push(
                            regex::Regex::new(w).map_err(|e| format!("--workload {w}: {e}"))?,
                        );
                    }
                }
                "--runtime" => {
                    let v = args.next().ok_or("--runtime takes a list")?;
                    o.runtimes = v.split(',').map(str::to_string).collect();
                    if let Some(bad) = o.runtimes.iter().find(|r| !RUNTIMES.contains(&r.as_str())) {
                        return Err(format!("unknown runtime {bad:?} (known: {RUNTIMES:?})"));
                    }
                }
                "-h" | "--help" => {
                    // Asked for: usage on stdout and success, as any command-line tool.
                    println!("usage: {USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\nusage: {USAGE}")),
            }
        }
        if o.reps == 0 {
            o.reps = if o.quick { 3 } else { 5 };
        }
        Ok(o)
    }

    fn wants_workload(&self, name: &str) -> bool {
        self.workloads.is_empty() || self.workloads.iter().any(|re| re.is_match(name))
    }

    fn wants_runtime(&self, runtime: &str) -> bool {
        self.runtimes.iter().any(|r| r == runtime)
    }
}

/// Every bench, in table order, for the options' sizes.
fn benches<'a>(rt: &'a Runtimes, servers: &'a net::Servers<'a>, o: &Options) -> Vec<Bench<'a>> {
    let s = if o.quick { Sizes::QUICK } else { Sizes::FULL };
    let mut v: Vec<Bench<'a>> = [
        workloads::spawn_join(rt, s),
        workloads::yield_many(rt, s),
        workloads::chained_spawn(rt, s),
        workloads::skynet(rt, s),
        workloads::ping_pong(rt, s, false),
        workloads::ping_pong(rt, s, true),
        workloads::mutex_contention(rt, s),
    ]
    .into_iter()
    // Two greenlets forced onto two workers need two workers (they would wait forever).
    .filter(|w| o.workers >= 2 || w.name != "ping_pong_2w")
    .map(Bench::from_workload)
    .collect();
    v.extend(timers::sleepers_benches(rt));
    v.push(memory::idle_mem(o.quick, o.workers));
    v.extend(net::echo_benches(servers, o.quick, o.client_threads));
    v.push(redis_load::redis_bench(rt, o.quick));
    v.extend(memory::idle_connections(o.quick, o.workers));
    v
}

/// Runs every selected bench, interleaving runtimes within each repetition.
fn run(benches: Vec<Bench<'_>>, o: &Options) -> Vec<report::Row> {
    let mut rows = Vec::new();
    for mut b in benches {
        if !o.wants_workload(&b.name) {
            continue;
        }
        b.runners.retain(|r| o.wants_runtime(r.runtime));
        b.skipped.retain(|(r, _)| o.wants_runtime(r));
        let started = Instant::now();
        eprint!("{:<22}", b.name);
        // samples[runner][metric] = one value per repetition; a failure ends a runner.
        let mut samples: Vec<Vec<Vec<f64>>> =
            vec![vec![Vec::new(); b.metrics.len()]; b.runners.len()];
        let mut failed: BTreeMap<usize, String> = BTreeMap::new();
        let reps = b.max_reps.map_or(o.reps, |m| m.min(o.reps));
        for _ in 0..reps {
            for (i, r) in b.runners.iter_mut().enumerate() {
                if failed.contains_key(&i) {
                    continue;
                }
                match (r.run)() {
                    Ok(values) => {
                        assert_eq!(values.len(), b.metrics.len(), "{}: metric count", b.name);
                        for (m, v) in values.into_iter().enumerate() {
                            samples[i][m].push(v);
                        }
                    }
                    Err(e) => {
                        failed.insert(i, e);
                    }
                }
            }
            eprint!(".");
        }
        eprintln!(" {:.1?}", started.elapsed());
        for (i, r) in b.runners.iter().enumerate() {
            for (m, metric) in b.metrics.iter().enumerate() {
                let outcome = match (failed.get(&i), samples[i][m].is_empty()) {
                    (Some(e), true) => Err(format!("failed: {e}")),
                    (e, _) => {
                        if let Some(e) = e {
                            eprintln!(
                                "  {} {}: failed after some repetitions: {e}",
                                b.name, r.runtime
                            );
                        }
                        Ok(report::Stats::of(&samples[i][m]))
                    }
                };
                rows.push(report::Row {
                    workload: b.name.clone(),
                    metric: *metric,
                    runtime: r.runtime,
                    size: r.size,
                    outcome,
                });
            }
        }
        for (runtime, why) in &b.skipped {
            for metric in &b.metrics {
                rows.push(report::Row {
                    workload: b.name.clone(),
                    metric: *metric,
                    runtime,
                    size: 0,
                    outcome: Err(format!("skipped: {why}")),
                });
            }
        }
    }
    rows
}

fn main() {
    if std::env::var_os(timers::BURN_ENV).is_some() {
        timers::burn_main();
    }
    if let Ok(spec) = std::env::var(memory::CHILD_ENV) {
        memory::child_main(&spec);
    }
    // `--harvest-probe [F]`: the reactor's and a polling worker's cost per event (SCALING.md).
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--harvest-probe") {
        let fds = args.get(i + 1).and_then(|f| f.parse().ok()).unwrap_or(256);
        for f in [64, fds] {
            if let Err(e) = harvest::probe(f) {
                eprintln!("compare: harvest probe: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // `cargo test --benches` runs bench binaries without arguments (`cargo bench`
    // passes `--bench`): a smoke check, not a several-minute measurement.
    if std::env::args().len() == 1 {
        eprintln!(
            "compare: no arguments, so not run (try `cargo bench --bench compare -- --quick`)"
        );
        return;
    }
    let o = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(2);
        }
    };
    let nofile = match memory::raise_nofile(None) {
        Ok(n) => n.to_string(),
        Err(e) => format!("unchanged ({e})"),
    };
    let started = Instant::now();
    let rt = Runtimes::new(o.workers);
    let servers = net::Servers::new(&rt);
    let benches = benches(&rt, &servers, &o);
    eprintln!(
        "compare: {} reps, {} workers, {} load-generator thread(s), RLIMIT_NOFILE {nofile}{}",
        o.reps,
        rt.workers,
        o.client_threads,
        if o.quick { ", --quick sizes" } else { "" }
    );
    let rows = run(benches, &o);
    report::print_table(&rows, &o);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/compare");
    match report::write_files(&rows, &o, &dir) {
        Ok((csv, svg)) => println!("\nwrote {}\nwrote {}", csv.display(), svg.display()),
        Err(e) => eprintln!("compare: writing {}: {e}", dir.display()),
    }
    println!("(harness took {:.1?})", started.elapsed());
    // The servers' accept loops and parked handlers end with the process.
    std::process::exit(0);
}
