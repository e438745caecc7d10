//! The network servers (`echo`, `http_hello`) of every runtime, and their benches.
//!
//! Every server is the same program: one task (greenlet, future, coroutine, thread)
//! per accepted connection, looping read (1 KiB buffer) → [`Responder`] → write-all
//! until EOF. Only the spelling differs per runtime. A server is started at its
//! first repetition and listens until the process ends.
//! grove's server is `grove::net` (green `TcpListener`/`TcpStream`): the accept loop
//! is a greenlet, each connection another, in plain blocking style.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::loadgen::{self, Exchange};
use crate::workloads::{may_go, Runtimes};
use crate::{Bench, Better, Metric};

/// The read buffer of every server's handler.
const BUF: usize = 1024;

/// The echo message.
const ECHO_MSG: &[u8; 64] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";

/// The `http_hello` request (keep-alive is HTTP/1.1's default) and the one reply.
const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
const HTTP_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// What a server does with the bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Proto {
    /// Write them back.
    Echo,
    /// Answer each complete request (headers ending in `\r\n\r\n`) with
    /// [`HTTP_REPLY`].
    Http,
}

impl Proto {
    fn exchange(self) -> Exchange {
        match self {
            Proto::Echo => Exchange {
                request: ECHO_MSG,
                reply_len: ECHO_MSG.len(),
            },
            Proto::Http => Exchange {
                request: HTTP_REQUEST,
                reply_len: HTTP_REPLY.len(),
            },
        }
    }
}

/// A connection's protocol state: the reply to each chunk read.
#[derive(Debug)]
pub(crate) struct Responder {
    proto: Proto,
    /// How much of `\r\n\r\n` the bytes read so far end with.
    matched: usize,
    out: Vec<u8>,
}

impl Responder {
    pub(crate) fn new(proto: Proto) -> Self {
        Responder {
            proto,
            matched: 0,
            out: Vec::new(),
        }
    }

    /// The bytes to write back for `input`.
    pub(crate) fn respond<'b>(&'b mut self, input: &'b [u8]) -> &'b [u8] {
        if self.proto == Proto::Echo {
            return input;
        }
        const END: &[u8] = b"\r\n\r\n";
        self.out.clear();
        for &b in input {
            self.matched = if b == END[self.matched] {
                self.matched + 1
            } else {
                usize::from(b == END[0])
            };
            if self.matched == END.len() {
                self.out.extend_from_slice(HTTP_REPLY);
                self.matched = 0;
            }
        }
        &self.out
    }
}

/// A blocking-style connection handler (threads, may, grove): counts itself in
/// `ready`, then serves until EOF or an error.
pub(crate) fn serve_blocking<S: Read + Write>(mut s: S, proto: Proto, ready: &AtomicUsize) {
    ready.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; BUF];
    let mut r = Responder::new(proto);
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(r.respond(&buf[..n])).is_err() {
            return;
        }
    }
}

/// The async handler, for tokio.
async fn serve_tokio(mut s: tokio::net::TcpStream, proto: Proto, ready: Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ready.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; BUF];
    let mut r = Responder::new(proto);
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(r.respond(&buf[..n])).await.is_err() {
            return;
        }
    }
}

/// Where a server's runtime comes from: the harness's shared runtimes, or (in a
/// memory child) the one runtime the child built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Host<'a> {
    pub(crate) grove: Option<&'a grove::Runtime>,
    pub(crate) tokio: Option<&'a tokio::runtime::Runtime>,
}

/// Starts `runtime`'s server for `proto` on `127.0.0.1:0`; each handler adds one to
/// `ready` as it starts. Returns the address it listens on.
pub(crate) fn start(
    runtime: &str,
    host: Host<'_>,
    proto: Proto,
    ready: Arc<AtomicUsize>,
) -> io::Result<SocketAddr> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    match runtime {
        "tokio" => {
            let rt = host
                .tokio
                .ok_or_else(|| io::Error::other("no tokio runtime"))?;
            let l = rt.block_on(tokio::net::TcpListener::bind(loopback))?;
            let addr = l.local_addr()?;
            rt.spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    tokio::spawn(serve_tokio(s, proto, ready.clone()));
                }
            });
            Ok(addr)
        }
        "may" => {
            let l = may::net::TcpListener::bind(loopback)?;
            let addr = l.local_addr()?;
            drop(may_go(move || loop {
                let Ok((s, _)) = l.accept() else { continue };
                let _ = s.set_nodelay(true);
                let ready = ready.clone();
                drop(may_go(move || serve_blocking(s, proto, &ready)));
            }));
            Ok(addr)
        }
        "threads" => {
            let l = std::net::TcpListener::bind(loopback)?;
            let addr = l.local_addr()?;
            thread::spawn(move || loop {
                let Ok((s, _)) = l.accept() else { continue };
                let _ = s.set_nodelay(true);
                let ready = ready.clone();
                thread::spawn(move || serve_blocking(s, proto, &ready));
            });
            Ok(addr)
        }
        "grove" => {
            let rt = host
                .grove
                .ok_or_else(|| io::Error::other("no grove runtime"))?;
            // Green sockets bind inside a runtime (they register with its reactor).
            let l = rt.block_on(move || grove::net::TcpListener::bind(loopback))?;
            let addr = l.local_addr()?;
            drop(rt.spawn(move || loop {
                let Ok((s, _)) = l.accept() else { continue };
                let _ = s.set_nodelay(true);
                let ready = ready.clone();
                drop(grove::spawn(move || serve_blocking(s, proto, &ready)));
            }));
            Ok(addr)
        }
        other => Err(io::Error::other(format!("no {other} server"))),
    }
}

/// The harness's servers, each started at its first use and kept for the run.
pub(crate) struct Servers<'a> {
    pub(crate) rt: &'a Runtimes,
    started: RefCell<HashMap<(&'static str, Proto), SocketAddr>>,
}

impl<'a> Servers<'a> {
    pub(crate) fn new(rt: &'a Runtimes) -> Self {
        Servers {
            rt,
            started: RefCell::new(HashMap::new()),
        }
    }

    fn addr(&self, runtime: &'static str, proto: Proto) -> io::Result<SocketAddr> {
        if let Some(&a) = self.started.borrow().get(&(runtime, proto)) {
            return Ok(a);
        }
        let host = Host {
            grove: Some(&self.rt.grove),
            tokio: Some(&self.rt.tokio),
        };
        let a = start(runtime, host, proto, Arc::new(AtomicUsize::new(0)))?;
        self.started.borrow_mut().insert((runtime, proto), a);
        Ok(a)
    }
}

const NET_METRICS: [Metric; 3] = [
    Metric {
        name: "round trips",
        unit: "1/s",
        better: Better::Higher,
    },
    Metric {
        name: "p50 latency",
        unit: "ns",
        better: Better::Lower,
    },
    Metric {
        name: "p99 latency",
        unit: "ns",
        better: Better::Lower,
    },
];

/// `GROVE_COMPARE_METRICS=1`: after each grove repetition of a network bench, print how the
/// reactor and the workers shared the events and wakes (to stderr).
fn show_metrics() -> bool {
    std::env::var_os("GROVE_COMPARE_METRICS").is_some_and(|v| v == "1")
}

/// CPU time so far (ns) of the reactor thread and of all grove worker threads together, from
/// `/proc/self/task/*/{comm,schedstat}`.
fn thread_cpu() -> (u64, u64) {
    let (mut reactor, mut workers) = (0, 0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    for t in tasks.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if comm.starts_with("grove-reactor") {
            reactor += ns;
        } else if comm.starts_with("grove-worker") {
            workers += ns;
        }
    }
    (reactor, workers)
}

fn print_grove_metrics(
    a: &grove::runtime::Metrics,
    b: &grove::runtime::Metrics,
    round_trips: u64,
    cpu_a: (u64, u64),
    cpu_b: (u64, u64),
    elapsed: Duration,
) {
    let (ra, rb) = (&a.reactor, &b.reactor);
    let per = |x: u64| x as f64 / round_trips.max(1) as f64;
    let remote: u64 = b.workers.iter().map(|w| w.remote_wakes).sum::<u64>()
        - a.workers.iter().map(|w| w.remote_wakes).sum::<u64>();
    let runs: Vec<u64> = b
        .workers
        .iter()
        .zip(&a.workers)
        .map(|(b, a)| b.runs - a.runs)
        .collect();
    let events = rb.events_dispatched - ra.events_dispatched;
    let by_workers = rb.events_by_workers - ra.events_by_workers;
    let by_reactor = events - by_workers;
    let (reactor_cpu, worker_cpu) = (cpu_b.0 - cpu_a.0, cpu_b.1 - cpu_a.1);
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "\n  grove per round trip: events {:.2} (by workers {:.2}), reactor loops {:.3} \
         (aside {:.3}, stale harvests {:.4}), notifications {:.3}, remote wakes {:.2}; \
         runs per worker {runs:?}\n  events/s: reactor {:.0}, workers {:.0}; CPU: reactor \
         {:.0}% ({:.0} ns per event it harvested), workers {:.0}% ({:.0} ns per round trip)",
        per(events),
        per(by_workers),
        per(rb.polls - ra.polls),
        per(rb.sleeps_aside - ra.sleeps_aside),
        per(rb.stale_harvests - ra.stale_harvests),
        per(rb.notifications - ra.notifications),
        per(remote),
        by_reactor as f64 / secs,
        by_workers as f64 / secs,
        reactor_cpu as f64 / 1e7 / secs,
        reactor_cpu as f64 / by_reactor.max(1) as f64,
        worker_cpu as f64 / 1e7 / secs,
        worker_cpu as f64 / round_trips.max(1) as f64,
    );
}

/// One network bench: `conns` closed-loop connections against each runtime's server.
fn net_bench<'a>(
    name: &str,
    servers: &'a Servers<'a>,
    proto: Proto,
    conns: usize,
    duration: Duration,
    client_threads: usize,
) -> Bench<'a> {
    let mut b = Bench::new(name, &NET_METRICS);
    for runtime in crate::RUNTIMES {
        b = b.runner(runtime, conns as u64, move || {
            let addr = servers
                .addr(runtime, proto)
                .map_err(|e| format!("server: {e}"))?;
            let before = (runtime == "grove" && show_metrics())
                .then(|| (servers.rt.grove.metrics(), thread_cpu()));
            let load = loadgen::run(addr, conns, client_threads, duration, proto.exchange())
                .map_err(|e| format!("load generator: {e}"))?;
            if let Some((before, cpu)) = before {
                let after = (servers.rt.grove.metrics(), thread_cpu());
                print_grove_metrics(
                    &before,
                    &after.0,
                    load.round_trips,
                    cpu,
                    after.1,
                    load.elapsed,
                );
            }
            if load.round_trips == 0 {
                return Err("no round trip completed".into());
            }
            Ok(vec![
                load.round_trips as f64 / load.elapsed.as_secs_f64(),
                load.latency_ns.quantile(0.50),
                load.latency_ns.quantile(0.99),
            ])
        });
    }
    b
}

/// `echo_c100`, `echo_c1000` and `http_hello`.
pub(crate) fn echo_benches<'a>(
    servers: &'a Servers<'a>,
    quick: bool,
    client_threads: usize,
) -> Vec<Bench<'a>> {
    let duration = Duration::from_millis(if quick { 1_000 } else { 5_000 });
    vec![
        net_bench(
            "echo_c100",
            servers,
            Proto::Echo,
            100,
            duration,
            client_threads,
        ),
        net_bench(
            "echo_c1000",
            servers,
            Proto::Echo,
            1_000,
            duration,
            client_threads,
        ),
        net_bench(
            "http_hello",
            servers,
            Proto::Http,
            100,
            duration,
            client_threads,
        ),
    ]
}
