//! Memory per parked task (`idle_mem`) and per idle connection
//! (`idle_connections_*`), each runtime measured in a child process of its own.
//!
//! # The child protocol
//! 1. The parent runs this binary again with [`CHILD_ENV`] set to
//!    `"<bench> <runtime> <n> <workers>"`, stdout piped, stderr to
//!    `target/compare/child-<bench>-<runtime>.log`.
//! 2. The child builds only its runtime, warms it, and samples `VmRSS`.
//! 3. `idle_mem`: it spawns `n` tasks that each count themselves and block on an event.
//!    `idle_conn`: it starts its echo server, prints `port <addr>`, and the parent
//!    opens `n` connections to it and leaves them idle.
//! 4. Once `n` tasks (handlers) have counted themselves, it waits 300 ms for the last
//!    to park, samples `VmRSS` again, prints `result <bytes per task>` and exits
//!    without tearing down (teardown is not what is measured).
//!
//! A child that dies or says `error <why>` fails that runtime's repetition.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::net::{self, Host, Proto};
use crate::workloads::may_go;
use crate::{Bench, Better, Metric};

/// Set in a child's environment: what it measures.
pub(crate) const CHILD_ENV: &str = "GROVE_COMPARE_CHILD";

/// How long a child may take before it gives up (and the parent with it).
const CHILD_DEADLINE: Duration = Duration::from_secs(180);

/// How long the last task gets to park after counting itself.
const SETTLE: Duration = Duration::from_millis(300);

const PER_TASK: Metric = Metric {
    name: "RSS/task",
    unit: "B",
    better: Better::Lower,
};

const PER_CONN: Metric = Metric {
    name: "RSS/conn",
    unit: "B",
    better: Better::Lower,
};

/// Ephemeral ports per source address (`ip_local_port_range` is 32768-60999 here):
/// above this many connections to one server, clients spread over 127.0.0.2, .3, ...
const PORTS_PER_SOURCE: usize = 25_000;

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit and, if `need` is above
/// that, both limits to `need` (which works only with `CAP_SYS_RESOURCE`, e.g. as
/// root, up to `fs.nr_open`). Returns the soft limit now in force, or why `need`
/// cannot be had.
pub(crate) fn raise_nofile(need: Option<u64>) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    let want = need.unwrap_or(0);
    let mut new = lim;
    new.rlim_cur = lim.rlim_max.max(want);
    new.rlim_max = lim.rlim_max.max(want);
    if new.rlim_cur != lim.rlim_cur || new.rlim_max != lim.rlim_max {
        // SAFETY: `new` is a valid `rlimit`; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            let e = io::Error::last_os_error();
            // Raising the hard limit failed: keep the soft limit at the old hard one.
            new = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) };
            if want > lim.rlim_max {
                return Err(format!(
                    "needs {want} fds, hard RLIMIT_NOFILE is {} and cannot be raised ({e})",
                    lim.rlim_max
                ));
            }
        }
    }
    Ok(new.rlim_cur)
}

/// This process's resident set, from `VmRSS` in `/proc/self/status`.
fn rss_bytes() -> io::Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/self/status"))
}

/// Sleeps (with `sleep`, the caller's kind) until `ready` reaches `n`, then `SETTLE`.
fn wait_ready(ready: &AtomicUsize, n: usize, sleep: impl Fn(Duration)) -> Result<(), String> {
    let start = Instant::now();
    while ready.load(Ordering::Relaxed) < n {
        if start.elapsed() > CHILD_DEADLINE {
            return Err(format!(
                "only {} of {n} tasks started",
                ready.load(Ordering::Relaxed)
            ));
        }
        sleep(Duration::from_millis(10));
    }
    sleep(SETTLE);
    Ok(())
}

/// RSS growth per task since `rss0`, once `ready` reaches `n`.
fn per_task(
    rss0: u64,
    ready: &AtomicUsize,
    n: usize,
    sleep: impl Fn(Duration),
) -> Result<f64, String> {
    wait_ready(ready, n, sleep)?;
    let rss1 = rss_bytes().map_err(|e| e.to_string())?;
    Ok(rss1.saturating_sub(rss0) as f64 / n as f64)
}

/// The child's entry point: runs the measurement `spec` names, prints the result
/// line, and exits.
pub(crate) fn child_main(spec: &str) -> ! {
    thread::spawn(|| {
        thread::sleep(CHILD_DEADLINE);
        println!("error child deadline passed");
        std::process::exit(3);
    });
    let result = child(spec);
    match result {
        Ok(v) => println!("result {v}"),
        Err(e) => println!("error {e}"),
    }
    let _ = io::stdout().flush();
    std::process::exit(0)
}

fn child(spec: &str) -> Result<f64, String> {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [bench, runtime, n, workers] = parts[..] else {
        return Err(format!("bad {CHILD_ENV}={spec:?}"));
    };
    let n: usize = n.parse().map_err(|_| format!("bad size {n:?}"))?;
    let workers: usize = workers
        .parse()
        .map_err(|_| format!("bad workers {workers:?}"))?;
    raise_nofile(None)?;
    let grove = (runtime == "grove")
        .then(|| grove::Runtime::builder().workers(workers).build())
        .transpose()
        .map_err(|e| format!("grove runtime: {e}"))?;
    let tokio = (runtime == "tokio")
        .then(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        })
        .transpose()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    if runtime == "may" {
        may::config().set_workers(workers);
    }
    let host = Host {
        grove: grove.as_ref(),
        tokio: tokio.as_ref(),
    };
    match bench {
        "idle_mem" => idle_mem_child(runtime, host, n),
        "idle_conn" => idle_conn_child(runtime, host, n),
        other => Err(format!("unknown child bench {other:?}")),
    }
}

/// `n` tasks each blocked on an event; RSS growth per task (handles included).
fn idle_mem_child(runtime: &str, host: Host<'_>, n: usize) -> Result<f64, String> {
    let ready = Arc::new(AtomicUsize::new(0));
    match runtime {
        "grove" => {
            let rt = host.grove.ok_or("no grove runtime")?;
            rt.block_on(|| grove::spawn(|| {}).join())
                .map_err(|e| e.to_string())?;
            let rss0 = rss_bytes().map_err(|e| e.to_string())?;
            rt.block_on(move || {
                let ev = grove::sync::Event::new();
                let hs: Vec<_> = (0..n)
                    .map(|_| {
                        let (ev, ready) = (ev.clone(), ready.clone());
                        grove::spawn(move || {
                            ready.fetch_add(1, Ordering::Relaxed);
                            ev.wait();
                        })
                    })
                    .collect();
                let r = per_task(rss0, &ready, n, grove::sleep);
                ev.set();
                for h in hs {
                    h.join().map_err(|e| e.to_string())?;
                }
                r
            })
        }
        "tokio" => {
            let rt = host.tokio.ok_or("no tokio runtime")?;
            rt.block_on(async { tokio::spawn(async {}).await })
                .map_err(|e| e.to_string())?;
            let rss0 = rss_bytes().map_err(|e| e.to_string())?;
            let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    let (b, ready) = (barrier.clone(), ready.clone());
                    rt.spawn(async move {
                        ready.fetch_add(1, Ordering::Relaxed);
                        b.wait().await;
                    })
                })
                .collect();
            let r = per_task(rss0, &ready, n, thread::sleep);
            rt.block_on(async move {
                barrier.wait().await;
                for h in hs {
                    h.await.map_err(|e| e.to_string())?;
                }
                r
            })
        }
        "may" => {
            may_go(|| {}).join().map_err(|_| "may warm-up panicked")?;
            let rss0 = rss_bytes().map_err(|e| e.to_string())?;
            let barrier = Arc::new(may::sync::Barrier::new(n + 1));
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    let (b, ready) = (barrier.clone(), ready.clone());
                    may_go(move || {
                        ready.fetch_add(1, Ordering::Relaxed);
                        b.wait();
                    })
                })
                .collect();
            let r = per_task(rss0, &ready, n, thread::sleep);
            barrier.wait();
            for h in hs {
                h.join().map_err(|_| "may task panicked")?;
            }
            r
        }
        "threads" => {
            thread::spawn(|| {})
                .join()
                .map_err(|_| "thread warm-up panicked")?;
            let rss0 = rss_bytes().map_err(|e| e.to_string())?;
            let barrier = Arc::new(std::sync::Barrier::new(n + 1));
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    let (b, ready) = (barrier.clone(), ready.clone());
                    thread::Builder::new().spawn(move || {
                        ready.fetch_add(1, Ordering::Relaxed);
                        b.wait();
                    })
                })
                .collect::<io::Result<_>>()
                .map_err(|e| format!("spawning thread: {e}"))?;
            let r = per_task(rss0, &ready, n, thread::sleep);
            barrier.wait();
            for h in hs {
                h.join().map_err(|_| "thread panicked")?;
            }
            r
        }
        other => Err(format!("no {other} runtime")),
    }
}

/// The echo server with `n` idle connections; RSS growth per connection. Prints
/// `ready <count>` as handlers start, so the parent can pace its connects to the
/// accept rate (a full accept queue drops SYNs, costing a 1 s retransmit each).
fn idle_conn_child(runtime: &str, host: Host<'_>, n: usize) -> Result<f64, String> {
    let ready = Arc::new(AtomicUsize::new(0));
    let rss0 = rss_bytes().map_err(|e| e.to_string())?;
    let addr = net::start(runtime, host, Proto::Echo, ready.clone())
        .map_err(|e| format!("server: {e}"))?;
    println!("port {addr}");
    let (start, mut told) = (Instant::now(), usize::MAX);
    loop {
        let now = ready.load(Ordering::Relaxed);
        if now != told {
            println!("ready {now}");
            let _ = io::stdout().flush();
            told = now;
        }
        if now >= n {
            break;
        }
        if start.elapsed() > CHILD_DEADLINE {
            return Err(format!("only {now} of {n} connections accepted"));
        }
        thread::sleep(Duration::from_millis(2));
    }
    per_task(rss0, &ready, n, thread::sleep)
}

/// Opens client connection `i` of `n` to `addr`, spreading over source addresses
/// 127.0.0.1, .2, ... every [`PORTS_PER_SOURCE`].
fn connect_one(addr: SocketAddr, i: usize, n: usize) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if n > PORTS_PER_SOURCE {
        let src = SocketAddr::from(([127, 0, 0, 1 + (i / PORTS_PER_SOURCE) as u8], 0));
        s.bind(&src.into())?;
    }
    s.connect(&addr.into())?;
    // Closing resets the connection: no TIME_WAIT left to slow later connects.
    s.set_linger(Some(Duration::ZERO))?;
    Ok(s)
}

/// Connections the client may run ahead of the server's accepted count: below
/// every listen backlog (std and may: 128), since an overflow costs a 1 s SYN retry.
const CONNECT_WINDOW: usize = 64;

/// Runs one child and returns its result; for `idle_conn`, holds `n` connections
/// open to the port it announces until it answers.
fn run_child(bench: &str, runtime: &str, n: usize, workers: usize) -> Result<Vec<f64>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/compare");
    let _ = std::fs::create_dir_all(&log_dir);
    let log = std::fs::File::create(log_dir.join(format!("child-{bench}-{runtime}.log")))
        .map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .env(CHILD_ENV, format!("{bench} {runtime} {n} {workers}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawning child: {e}"))?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut clients = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    let mut next_line = || -> Result<String, String> {
        match lines.next() {
            Some(l) => l.map_err(|e| e.to_string()),
            None => Err("child exited without a result".into()),
        }
    };
    let outcome = (|| loop {
        let line = next_line()?;
        if let Some(addr) = line.strip_prefix("port ") {
            let addr: SocketAddr = addr.parse().map_err(|_| format!("bad line {line:?}"))?;
            let mut ready = 0;
            for i in 0..n {
                // Stay within CONNECT_WINDOW of the accepted count.
                while i >= ready + CONNECT_WINDOW {
                    let l = next_line()?;
                    match l.strip_prefix("ready ") {
                        Some(r) => ready = r.parse().map_err(|_| format!("bad line {l:?}"))?,
                        None => return Err(l.strip_prefix("error ").unwrap_or(&l).to_string()),
                    }
                }
                let c = connect_one(addr, i, n)
                    .map_err(|e| format!("connecting client {i} of {n}: {e}"))?;
                clients.push(c);
            }
        } else if let Some(v) = line.strip_prefix("result ") {
            return v
                .parse::<f64>()
                .map(|v| vec![v])
                .map_err(|_| format!("bad line {line:?}"));
        } else if let Some(e) = line.strip_prefix("error ") {
            return Err(e.to_string());
        }
    })();
    drop(clients);
    let _ = child.kill();
    let status = child.wait().map_err(|e| e.to_string())?;
    outcome.map_err(|e| {
        format!("{e} (child {status}; see target/compare/child-{bench}-{runtime}.log)")
    })
}

/// `idle_mem`: per runtime, a child with N tasks blocked on an event.
pub(crate) fn idle_mem<'a>(quick: bool, workers: usize) -> Bench<'a> {
    let big = if quick { 100_000 } else { 1_000_000 };
    let sizes = [
        ("grove", big),
        ("tokio", big),
        ("may", 20_000),
        ("threads", 5_000),
    ];
    let mut b = Bench::new("idle_mem", &[PER_TASK]).max_reps(if quick { 1 } else { 3 });
    for (runtime, n) in sizes {
        b = b.runner(runtime, n as u64, move || {
            run_child("idle_mem", runtime, n, workers)
        });
    }
    b
}

/// `idle_connections_10k` and (without `--quick`) `idle_connections_100k`.
pub(crate) fn idle_connections<'a>(quick: bool, workers: usize) -> Vec<Bench<'a>> {
    let sizes: &[usize] = if quick { &[10_000] } else { &[10_000, 100_000] };
    sizes
        .iter()
        .map(|&n| {
            let mut b = Bench::new(format!("idle_connections_{}k", n / 1000), &[PER_CONN])
                .max_reps(if quick { 1 } else { 3 });
            // A side holds n sockets, plus the harness's own (servers, load, logs).
            let fd_limit = raise_nofile(Some(n as u64 + 4_096)).err();
            for runtime in crate::RUNTIMES {
                if let Some(why) = &fd_limit {
                    b = b.skip(runtime, why.clone());
                } else if n > 30_000 && runtime == "may" {
                    b = b.skip(runtime, "may holds ~32k coroutines (two mappings per guarded stack, vm.max_map_count 65,530)");
                } else if n > 30_000 && runtime == "threads" {
                    b = b.skip(runtime, "a thread per connection needs two mappings each, over vm.max_map_count (65,530)");
                } else {
                    b = b.runner(runtime, n as u64, move || run_child("idle_conn", runtime, n, workers));
                }
            }
            b
        })
        .collect()
}
