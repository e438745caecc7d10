//! The measured inputs of the scaling model in `benches/SCALING.md`: plain timed runs,
//! printed as tables (criterion's per-iteration means are the wrong shape for a latency
//! distribution or a saturation rate).
//!
//! * `probe/latency`: reactor wake latency, from the event to the woken greenlet
//!   running, by timestamps: a timer due 1 µs after it is added (a deadline already
//!   past is woken inline by `add_timer` and never reaches the reactor), and a Unix
//!   socket made readable by a write from a plain thread. The greenlet is alone on an
//!   idle one-worker runtime, so the path includes both futex wake-ups (reactor and
//!   worker), as an idle server's would. Median, p99, p99.9.
//! * `probe/reactor_io`: P socket pairs, each a pinger greenlet (write 1 byte, read 1
//!   byte) and a ponger (read, write back), for 1 s. From `reactor_metrics()`: events
//!   dispatched/s, wakes/s, events per poll; from `/proc/self/task/<tid>/schedstat`:
//!   the reactor thread's CPU time, hence CPU ns per event and the reactor's capacity
//!   (events per second of reactor CPU), which is what a saturated reactor would reach.
//! * `probe/reactor_fanout`: the reactor with full batches. One socket's fd is
//!   `dup`ed F times and each duplicate registered (edge-triggered, readable) and
//!   awaited by its own greenlet (`Registration::poll_ready` through `grove::block_on`,
//!   no read), so one 1-byte write by a plain thread makes F registrations ready at
//!   once: the reactor gets batches of up to 1,024 events per poll, as it would under a
//!   saturating server, while the writer costs one syscall per F events. The writer
//!   writes (and drains) every 100 µs. Same columns as `reactor_io`.
//! * `probe/reactor_timers`: G greenlets each in a `sleep(200 µs)` loop, for 1 s:
//!   timers fired/s and reactor CPU ns per timer fired.
//! * `probe/inbox`: N plain threads wake the 256 greenlets of one worker as fast as
//!   they can, each greenlet raising a flag just before it parks and a pusher waking
//!   only flagged ones: wake calls/s, effective wakes/s (those that found the greenlet
//!   parked and pushed it to the inbox: `remote_wakes`), resumes/s, and pusher CPU ns
//!   per call and per effective wake.
//! * `probe/timer_lock`: T plain threads each `add_timer` + `cancel_timer` in a loop
//!   on one reactor (the timer queue is one mutex; every worker's timeouts take it):
//!   pairs/s in all, and CPU ns per pair, for T = 1, 2.
//! * `probe/steal`: chained_spawn and skynet at `--quick` sizes on 1 and 2 workers:
//!   time per element and, per worker, greenlets run and steals.
//!
//! Every table line carries the load average read just before it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, OnceLock};
use std::task::Waker;
use std::thread;
use std::time::{Duration, Instant};

/// Worker thread name prefix of the probes' runtimes (`/proc/self/task/*/comm`).
const WORKER_PREFIX: &str = "gprobe";
/// Name of the inbox probe's pusher threads.
const PUSHER_NAME: &str = "gpusher";
/// Samples per latency probe.
const LATENCY_SAMPLES: usize = 2_000;
/// Measured interval of each saturation run, after `WARM_UP`.
const WINDOW: Duration = Duration::from_secs(1);
const WARM_UP: Duration = Duration::from_millis(200);

/// Runs the probes whose name contains one of `filters` (all if there is none).
pub(crate) fn run(filters: &[&str]) {
    let want = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));
    const PROBES: [&str; 7] = [
        "probe/latency",
        "probe/reactor_io",
        "probe/reactor_fanout",
        "probe/reactor_timers",
        "probe/inbox",
        "probe/timer_lock",
        "probe/steal",
    ];
    if !PROBES.iter().any(|p| want(p)) {
        return;
    }
    let started = Instant::now();
    if want("probe/latency") {
        latency();
    }
    if want("probe/reactor_io") {
        reactor_io();
    }
    if want("probe/reactor_fanout") {
        reactor_fanout();
    }
    if want("probe/reactor_timers") {
        reactor_timers();
    }
    if want("probe/inbox") {
        inbox();
    }
    if want("probe/timer_lock") {
        timer_lock();
    }
    if want("probe/steal") {
        steal();
    }
    println!("(probes took {:.1?})", started.elapsed());
}

// ---------------------------------------------------------------- helpers

/// The 1-minute load average (`/proc/loadavg`), for the record beside each number.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// CPU time a thread of this process has run, in ns (`schedstat`'s first field).
fn thread_cpu_ns(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// CPU time of every thread of this process whose name starts with `prefix`, in ns.
fn threads_cpu_ns(prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|c| c.starts_with(prefix))
        })
        .map(thread_cpu_ns)
        .sum()
}

/// A runtime of `workers` workers whose threads the probes can find by name.
fn runtime(workers: usize) -> grove::Runtime {
    grove::Runtime::builder()
        .workers(workers)
        .thread_name(WORKER_PREFIX)
        .build()
        .expect("grove runtime")
}

/// The OS thread id of `rt`'s reactor (published once its thread has started).
fn reactor_tid(rt: &grove::Runtime) -> u32 {
    let handle = rt
        .block_on(|| {
            grove::raw::scheduler::with_extension(|e| {
                e.and_then(|e| e.downcast_ref::<grove::raw::reactor::Handle>())
                    .cloned()
            })
        })
        .expect("the runtime's reactor handle");
    let start = Instant::now();
    loop {
        if let Some(tid) = handle.os_thread_id() {
            return tid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "reactor thread id"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// `p` (0-100) percentile of sorted `v`.
fn pct(v: &[u64], p: f64) -> u64 {
    v[((v.len() as f64 * p / 100.0) as usize).min(v.len() - 1)]
}

/// Counters at one instant of a saturation run.
struct Snap {
    at: Instant,
    reactor: grove::raw::reactor::ReactorMetrics,
    reactor_cpu: u64,
    workers_cpu: u64,
    ops: u64,
}

impl Snap {
    fn take(rt: &grove::Runtime, reactor_tid: u32, ops: &AtomicU64) -> Snap {
        let m = rt.metrics();
        Snap {
            at: Instant::now(),
            reactor: m.reactor,
            reactor_cpu: thread_cpu_ns(reactor_tid),
            workers_cpu: threads_cpu_ns(WORKER_PREFIX),
            ops: ops.load(Ordering::Relaxed),
        }
    }
}

/// One saturation run's rates per second of wall time; CPU shares are fractions of
/// one core.
struct Rates {
    secs: f64,
    ops: f64,
    events: f64,
    wakes: f64,
    timers: f64,
    polls: f64,
    reactor_util: f64,
    workers_util: f64,
    reactor_cpu_s: f64,
}

fn rates(a: &Snap, b: &Snap) -> Rates {
    let secs = (b.at - a.at).as_secs_f64();
    let d = |x: u64, y: u64| (y - x) as f64;
    Rates {
        secs,
        ops: d(a.ops, b.ops) / secs,
        events: d(a.reactor.events_dispatched, b.reactor.events_dispatched) / secs,
        wakes: d(a.reactor.wakes, b.reactor.wakes) / secs,
        timers: d(a.reactor.timers_fired, b.reactor.timers_fired) / secs,
        polls: d(a.reactor.polls, b.reactor.polls) / secs,
        reactor_util: d(a.reactor_cpu, b.reactor_cpu) / 1e9 / secs,
        workers_util: d(a.workers_cpu, b.workers_cpu) / 1e9 / secs,
        reactor_cpu_s: d(a.reactor_cpu, b.reactor_cpu) / 1e9,
    }
}

fn mega(x: f64) -> String {
    format!("{:.3}M", x / 1e6)
}

// ---------------------------------------------------------------- latency

fn latency() {
    let rt = runtime(1);
    println!("\n## probe/latency: event -> woken greenlet running, idle 1-worker runtime, {LATENCY_SAMPLES} samples (load {})", load());
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "source", "median", "p90", "p99", "p99.9", "max"
    );
    let print = |name: &str, mut v: Vec<u64>| {
        v.sort_unstable();
        let us = |ns: u64| format!("{:.1}us", ns as f64 / 1e3);
        println!(
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name,
            us(pct(&v, 50.0)),
            us(pct(&v, 90.0)),
            us(pct(&v, 99.0)),
            us(pct(&v, 99.9)),
            us(*v.last().unwrap())
        );
        let over_ms = v.iter().filter(|&&x| x > 1_000_000).count();
        if over_ms > 0 {
            println!("  ({over_ms} of {} over 1 ms)", v.len());
        }
    };

    // A timer 1 µs ahead: `add_timer` queues it and notifies the reactor, which
    // finds it due when it wakes. Latency: greenlet running again minus deadline.
    let timer = rt.block_on(|| {
        (0..LATENCY_SAMPLES)
            .map(|_| {
                let deadline = Instant::now() + Duration::from_micros(1);
                grove::sleep_until(deadline);
                Instant::now()
                    .saturating_duration_since(deadline)
                    .as_nanos() as u64
            })
            .collect::<Vec<_>>()
    });
    print("timer (due +1us)", timer);

    // A socket made readable by a plain thread's write. The writer waits until the
    // reader is about to read, sleeps 50 µs so it is parked (and its worker asleep),
    // then writes its clock reading.
    let epoch = Instant::now();
    let (a, mut b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let armed = Arc::new(AtomicU64::new(0));
    let armed2 = armed.clone();
    let writer = thread::spawn(move || {
        for i in 1..=LATENCY_SAMPLES as u64 {
            while armed2.load(Ordering::Acquire) < i {
                thread::yield_now();
            }
            thread::sleep(Duration::from_micros(50));
            let t0 = epoch.elapsed().as_nanos() as u64;
            b.write_all(&t0.to_le_bytes()).unwrap();
        }
    });
    let socket = rt.block_on(move || {
        let a = grove::net::UnixStream::from_std(a).expect("register");
        (1..=LATENCY_SAMPLES as u64)
            .map(|i| {
                let mut buf = [0u8; 8];
                armed.store(i, Ordering::Release);
                (&a).read_exact(&mut buf).unwrap();
                let t1 = epoch.elapsed().as_nanos() as u64;
                t1.saturating_sub(u64::from_le_bytes(buf))
            })
            .collect::<Vec<_>>()
    });
    writer.join().unwrap();
    print("socket readable", socket);
}

// ---------------------------------------------------------------- reactor saturation

/// Prints one saturation row.
fn saturation_row(label: &str, r: &Rates, load: &str) {
    let per_event = |n: f64| {
        if n > 0.0 {
            format!("{:.0}", r.reactor_cpu_s * 1e9 / (n * r.secs))
        } else {
            "-".into()
        }
    };
    let capacity = |n: f64| {
        if r.reactor_cpu_s > 0.0 {
            mega(n * r.secs / r.reactor_cpu_s)
        } else {
            "-".into()
        }
    };
    let primary = if r.events > 0.0 { r.events } else { r.timers };
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>8.1} {:>7.0}% {:>7.0}% {:>9} {:>10} {:>10}  {load}",
        label,
        mega(r.ops),
        mega(r.events),
        mega(r.timers),
        mega(r.wakes),
        if r.polls > 0.0 {
            (r.events + r.timers) / r.polls
        } else {
            0.0
        },
        r.reactor_util * 100.0,
        r.workers_util * 100.0,
        per_event(primary),
        capacity(primary),
        capacity(r.wakes),
    );
}

fn saturation_header(title: &str) {
    println!("\n## {title}");
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10}  load",
        "config",
        "ops/s",
        "events/s",
        "timers/s",
        "wakes/s",
        "per poll",
        "reactor",
        "workers",
        "ns/event",
        "cap ev/s",
        "cap wk/s",
    );
}

fn reactor_io() {
    saturation_header(
        "probe/reactor_io: P socket pairs ping-ponging 1 byte (ops = round trips); \
         reactor/workers = CPU share (100% = one core); ns/event = reactor CPU per event; \
         cap = events (wakes) per second of reactor CPU",
    );
    for (workers, pairs) in [(2, 1), (2, 100), (2, 1000), (1, 100)] {
        let load = load();
        let rt = runtime(workers);
        let tid = reactor_tid(&rt);
        let stop = Arc::new(AtomicBool::new(false));
        let trips = Arc::new(AtomicU64::new(0));
        let pingers: Vec<_> = (0..pairs)
            .map(|_| {
                let (stop, trips) = (stop.clone(), trips.clone());
                rt.spawn(move || {
                    let (a, b) = grove::net::UnixStream::pair().expect("socketpair");
                    let ponger = grove::spawn(move || {
                        let mut buf = [0u8; 1];
                        while (&b).read(&mut buf).unwrap() == 1 {
                            (&b).write_all(&buf).unwrap();
                        }
                    });
                    let mut buf = [0u8; 1];
                    while !stop.load(Ordering::Relaxed) {
                        (&a).write_all(&buf).unwrap();
                        (&a).read_exact(&mut buf).unwrap();
                        trips.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(a); // the ponger reads EOF and returns
                    ponger.join().unwrap();
                })
            })
            .collect();
        thread::sleep(WARM_UP);
        let a = Snap::take(&rt, tid, &trips);
        thread::sleep(WINDOW);
        let b = Snap::take(&rt, tid, &trips);
        stop.store(true, Ordering::Relaxed);
        for p in pingers {
            p.join().unwrap();
        }
        saturation_row(&format!("{workers}w {pairs} pairs"), &rates(&a, &b), &load);
    }
}

fn reactor_fanout() {
    use std::os::fd::AsRawFd;

    use grove::raw::reactor::{Direction, Handle};

    saturation_header(
        "probe/reactor_fanout: F dup'ed fds of one socket, a greenlet awaiting each; one \
         write every 100us readies all F (ops = greenlet wake-ups)",
    );
    for (workers, fds) in [(2, 100), (2, 1000), (1, 1000)] {
        let load = load();
        let rt = runtime(workers);
        let tid = reactor_tid(&rt);
        let (a, mut b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let stop = Arc::new(AtomicBool::new(false));
        let wakeups = Arc::new(AtomicU64::new(0));
        let armed = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..fds)
            .map(|_| {
                let fd = a.try_clone().expect("dup");
                let (stop, wakeups, armed) = (stop.clone(), wakeups.clone(), armed.clone());
                rt.spawn(move || {
                    let handle = grove::raw::scheduler::with_extension(|e| {
                        e.and_then(|e| e.downcast_ref::<Handle>()).cloned()
                    })
                    .expect("reactor handle");
                    let raw = fd.as_raw_fd();
                    let mut source = mio::unix::SourceFd(&raw);
                    let reg = handle
                        .register(&mut source, mio::Interest::READABLE)
                        .expect("register");
                    armed.fetch_add(1, Ordering::Relaxed);
                    while !stop.load(Ordering::Relaxed) {
                        grove::block_on(std::future::poll_fn(|cx| {
                            reg.poll_ready(Direction::Read, cx)
                        }))
                        .expect("poll_ready");
                        reg.clear_readiness(Direction::Read);
                        wakeups.fetch_add(1, Ordering::Relaxed);
                    }
                    reg.deregister(&mut source).expect("deregister");
                    drop(fd);
                })
            })
            .collect();
        while armed.load(Ordering::Relaxed) < fds {
            thread::sleep(Duration::from_millis(1));
        }
        let writer_stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, mut a) = (writer_stop.clone(), a.try_clone().expect("dup"));
            thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    b.write_all(&[1]).unwrap();
                    // Drain through an unregistered fd: reading raises no event.
                    let _ = a.read(&mut buf).unwrap();
                    thread::sleep(Duration::from_micros(100));
                }
                b
            })
        };
        thread::sleep(WARM_UP);
        let s0 = Snap::take(&rt, tid, &wakeups);
        thread::sleep(WINDOW);
        let s1 = Snap::take(&rt, tid, &wakeups);
        stop.store(true, Ordering::Relaxed);
        writer_stop.store(true, Ordering::Relaxed);
        let mut b = writer.join().unwrap();
        // One more edge for greenlets that have not seen `stop` yet.
        b.write_all(&[1]).unwrap();
        for h in hs {
            h.join().unwrap();
        }
        saturation_row(&format!("{workers}w {fds} fds"), &rates(&s0, &s1), &load);
    }
}

fn reactor_timers() {
    saturation_header(
        "probe/reactor_timers: G greenlets each looping sleep(200us) (ops = sleeps); \
         ns/event = reactor CPU per timer fired",
    );
    for (workers, sleepers) in [(2, 1_000), (2, 10_000), (1, 10_000)] {
        let load = load();
        let rt = runtime(workers);
        let tid = reactor_tid(&rt);
        let stop = Arc::new(AtomicBool::new(false));
        let sleeps = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..sleepers)
            .map(|_| {
                let (stop, sleeps) = (stop.clone(), sleeps.clone());
                rt.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        grove::sleep(Duration::from_micros(200));
                        sleeps.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        thread::sleep(WARM_UP);
        let a = Snap::take(&rt, tid, &sleeps);
        thread::sleep(WINDOW);
        let b = Snap::take(&rt, tid, &sleeps);
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        saturation_row(&format!("{workers}w {sleepers} slp"), &rates(&a, &b), &load);
    }
}

// ---------------------------------------------------------------- inbox contention

/// Greenlets parked on the one worker, woken by the pushers.
const INBOX_GREENLETS: usize = 256;

fn inbox() {
    println!(
        "\n## probe/inbox: N plain threads wake {INBOX_GREENLETS} greenlets of one worker as each is about to park, {WINDOW:?}"
    );
    println!(
        "{:<10} {:>11} {:>11} {:>11} {:>9} {:>9} {:>12} {:>12}  load",
        "pushers",
        "calls/s",
        "eff wakes/s",
        "resumes/s",
        "push CPU",
        "worker",
        "ns CPU/call",
        "ns CPU/eff"
    );
    for pushers in [1usize, 2, 4] {
        let load = load();
        let rt = runtime(1);
        let stop = Arc::new(AtomicBool::new(false));
        let resumes = Arc::new(AtomicU64::new(0));
        let wakers: Arc<Vec<OnceLock<Waker>>> =
            Arc::new((0..INBOX_GREENLETS).map(|_| OnceLock::new()).collect());
        let waiting: Arc<Vec<AtomicBool>> = Arc::new(
            (0..INBOX_GREENLETS)
                .map(|_| AtomicBool::new(false))
                .collect(),
        );
        let hs: Vec<_> = (0..INBOX_GREENLETS)
            .map(|i| {
                let (stop, resumes, wakers, waiting) = (
                    stop.clone(),
                    resumes.clone(),
                    wakers.clone(),
                    waiting.clone(),
                );
                rt.spawn(move || {
                    wakers[i].set(grove::greenlet::current_waker()).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        // Raised just before parking: a wake may still land before the
                        // park (then it only marks the greenlet notified, no inbox push).
                        waiting[i].store(true, Ordering::Release);
                        grove::greenlet::park();
                        resumes.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        while wakers.iter().any(|w| w.get().is_none()) {
            thread::yield_now();
        }
        let calls = Arc::new(AtomicU64::new(0));
        let go = Arc::new(Barrier::new(pushers + 1));
        let threads: Vec<_> = (0..pushers)
            .map(|k| {
                let (stop, calls, wakers, waiting, go) = (
                    stop.clone(),
                    calls.clone(),
                    wakers.clone(),
                    waiting.clone(),
                    go.clone(),
                );
                thread::Builder::new()
                    .name(PUSHER_NAME.into())
                    .spawn(move || {
                        go.wait();
                        let mine: Vec<(&AtomicBool, Waker)> = (k..INBOX_GREENLETS)
                            .step_by(pushers)
                            .map(|i| (&waiting[i], wakers[i].get().unwrap().clone()))
                            .collect();
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            // Wake only greenlets that said they are about to park.
                            for (flag, w) in &mine {
                                if flag.load(Ordering::Relaxed)
                                    && flag.swap(false, Ordering::AcqRel)
                                {
                                    w.wake_by_ref();
                                    n += 1;
                                }
                            }
                            if n >= 4096 {
                                calls.fetch_add(n, Ordering::Relaxed);
                                n = 0;
                            }
                        }
                        calls.fetch_add(n, Ordering::Relaxed);
                    })
                    .unwrap()
            })
            .collect();
        go.wait(); // start every pusher at once
        thread::sleep(WARM_UP);
        let snap = || {
            let m = rt.metrics();
            (
                Instant::now(),
                calls.load(Ordering::Relaxed),
                m.workers[0].remote_wakes,
                resumes.load(Ordering::Relaxed),
                threads_cpu_ns(PUSHER_NAME),
                threads_cpu_ns(WORKER_PREFIX),
            )
        };
        let a = snap();
        thread::sleep(WINDOW);
        let b = snap();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        for w in wakers.iter() {
            w.get().unwrap().wake_by_ref();
        }
        for h in hs {
            h.join().unwrap();
        }
        let secs = (b.0 - a.0).as_secs_f64();
        let (calls, eff, res) = ((b.1 - a.1) as f64, (b.2 - a.2) as f64, (b.3 - a.3) as f64);
        let (push_cpu, worker_cpu) = ((b.4 - a.4) as f64, (b.5 - a.5) as f64);
        println!(
            "{:<10} {:>11} {:>11} {:>11} {:>8.0}% {:>8.0}% {:>12.1} {:>12.1}  {load}",
            pushers,
            mega(calls / secs),
            mega(eff / secs),
            mega(res / secs),
            push_cpu / 1e9 / secs * 100.0,
            worker_cpu / 1e9 / secs * 100.0,
            push_cpu / calls.max(1.0),
            push_cpu / eff.max(1.0),
        );
    }
}

fn timer_lock() {
    println!(
        "\n## probe/timer_lock: T threads each add_timer + cancel_timer (a far deadline) on one reactor, {WINDOW:?}"
    );
    println!(
        "{:<8} {:>12} {:>14} {:>9} {:>14}  load",
        "threads", "pairs/s", "pairs/s/thread", "CPU", "ns CPU/pair"
    );
    const NAME: &str = "gtimerlk";
    for threads in [1usize, 2] {
        let load = load();
        let reactor = grove::raw::reactor::Reactor::start().expect("reactor");
        let stop = Arc::new(AtomicBool::new(false));
        let pairs = Arc::new(AtomicU64::new(0));
        let go = Arc::new(Barrier::new(threads + 1));
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (handle, stop, pairs, go) =
                    (reactor.handle(), stop.clone(), pairs.clone(), go.clone());
                thread::Builder::new()
                    .name(NAME.into())
                    .spawn(move || {
                        go.wait();
                        let far = Instant::now() + Duration::from_secs(3600);
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..256 {
                                let key = handle.add_timer(far, Waker::noop().clone());
                                handle.cancel_timer(key);
                            }
                            n += 256;
                        }
                        pairs.fetch_add(n, Ordering::Relaxed);
                    })
                    .unwrap()
            })
            .collect();
        go.wait();
        let (t0, c0) = (Instant::now(), threads_cpu_ns(NAME));
        thread::sleep(WINDOW);
        let c1 = threads_cpu_ns(NAME);
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        let secs = t0.elapsed().as_secs_f64();
        let n = pairs.load(Ordering::Relaxed) as f64;
        println!(
            "{:<8} {:>12} {:>14} {:>8.0}% {:>14.1}  {load}",
            threads,
            mega(n / secs),
            mega(n / secs / threads as f64),
            (c1 - c0) as f64 / 1e9 / secs * 100.0,
            (c1 - c0) as f64 / n
        );
        reactor.shutdown();
    }
}

// ---------------------------------------------------------------- stealing

fn chain(left: u64, done: mpsc::SyncSender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        drop(grove::spawn(move || chain(left - 1, done)));
    }
}

fn skynet(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let child = size / 10;
    let hs: Vec<_> = (0..10)
        .map(|i| grove::spawn(move || skynet(num + i * child, child)))
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

fn steal() {
    const N: u64 = 100_000;
    const REPS: usize = 5;
    println!(
        "\n## probe/steal: {N} elements, median of {REPS}; per worker: greenlets run (share), steal batches"
    );
    println!(
        "{:<15} {:>8} {:>10}  {:<40}  load",
        "workload", "workers", "ns/elem", "per worker: runs% / steals"
    );
    for workers in [1usize, 2] {
        let rt = runtime(workers);
        for name in ["chained_spawn", "skynet"] {
            let load = load();
            let before = rt.metrics().workers;
            let mut times: Vec<f64> = (0..REPS)
                .map(|_| {
                    let start = Instant::now();
                    if name == "chained_spawn" {
                        let (tx, rx) = mpsc::sync_channel(1);
                        drop(rt.spawn(move || chain(N, tx)));
                        rx.recv().unwrap();
                    } else {
                        assert_eq!(rt.block_on(|| skynet(0, N)), N * (N - 1) / 2);
                    }
                    start.elapsed().as_nanos() as f64 / N as f64
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let after = rt.metrics().workers;
            let runs: Vec<u64> = after
                .iter()
                .zip(&before)
                .map(|(a, b)| a.runs - b.runs)
                .collect();
            let total = runs.iter().sum::<u64>().max(1) as f64;
            let per: Vec<String> = after
                .iter()
                .zip(&before)
                .zip(&runs)
                .enumerate()
                .map(|(i, ((a, b), r))| {
                    format!(
                        "w{i}: {:.0}% / {}",
                        *r as f64 / total * 100.0,
                        a.stolen - b.stolen
                    )
                })
                .collect();
            println!(
                "{:<15} {:>8} {:>10.1}  {:<40}  {load}",
                name,
                workers,
                times[REPS / 2],
                per.join(", ")
            );
        }
    }
}
