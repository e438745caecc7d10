//! `redis_c1000` (issue 14): 1,000 clients, each looping SET then GET of its own key
//! against one local `redis-server`, for 3 s (1 s under `--quick`) after connecting.
//! Metrics: commands/s (higher is better); and what each command cost in CPU time on
//! either side, so that a row the server bounds still shows how efficient its clients
//! are: **client CPU/cmd**, this process's CPU time (user + system, every thread, from
//! `/proc/self/stat`) over the timed window divided by the commands done, and **server
//! CPU/cmd**, the same for the `redis-server` process (both lower is better).
//!
//! After each repetition one line on stderr says what bounded it: the server's CPU as a
//! share of one core (it runs its commands on one thread; near 100% it is the bound),
//! the clients' CPU in cores, and the load average (other processes on the machine).
//!
//! * grove: 1,000 greenlets, each with the **unmodified synchronous** `redis` client
//!   (`redis::Connection`), made green by the `monkey` feature. Without the feature the
//!   row is skipped (the sync client would hold the workers).
//! * threads: a thread per client, the same synchronous client.
//! * tokio: a task per client, each with its own connection of the `redis` crate's async
//!   client (`MultiplexedConnection`).
//! * may: skipped (no redis client written for may's sockets).
//!
//! The server is Debian's `redis-server` (installed with `apt-get` if missing, under a
//! file lock), started once on a free port as a child process and killed at exit. The
//! same server, with the same configuration, serves every row. `GROVE_REDIS_IO_THREADS=N`
//! starts it with `--io-threads N --io-threads-do-reads yes` (redis's own threaded I/O;
//! default: one thread, redis's default).

use std::cell::OnceCell;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Bench, Better, Metric};

const CLIENTS: usize = 1_000;

const METRICS: [Metric; 3] = [
    Metric {
        name: "commands/s",
        unit: "1/s",
        better: Better::Higher,
    },
    Metric {
        name: "client CPU/cmd",
        unit: "ns",
        better: Better::Lower,
    },
    Metric {
        name: "server CPU/cmd",
        unit: "ns",
        better: Better::Lower,
    },
];

/// Environment variable: redis-server's `--io-threads` (see the module docs).
const IO_THREADS_ENV: &str = "GROVE_REDIS_IO_THREADS";

/// The redis-server child, killed on drop.
struct Server {
    child: Child,
    pid: u32,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(prog: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

/// Finds or installs `redis-server` (Debian's package), then starts it.
fn start_server() -> Result<Server, String> {
    let bin = match which("redis-server") {
        Some(b) => b,
        None => {
            // `flock` through the shell's util-linux, so parallel runs do not race apt.
            let status = Command::new("flock")
                .args(["/tmp/grove-monkey-apt.lock", "sh", "-c"])
                .arg("command -v redis-server || { apt-get update && apt-get install -y --no-install-recommends redis-server; }")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("installing redis-server: {e}"))?;
            which("redis-server").ok_or(format!(
                "redis-server missing and apt-get could not install it ({status})"
            ))?
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--maxclients", "10000", "--daemonize", "no"]);
    if let Some(n) = std::env::var(IO_THREADS_ENV).ok().filter(|v| !v.is_empty()) {
        let n: u32 = n
            .parse()
            .map_err(|_| format!("{IO_THREADS_ENV}={n:?}: not a number"))?;
        cmd.args([
            "--io-threads",
            &n.to_string(),
            "--io-threads-do-reads",
            "yes",
        ]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting redis-server: {e}"))?;
    let server = Server {
        pid: child.id(),
        child,
        url: format!("redis://127.0.0.1:{port}/"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start listening".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

type Shared = Rc<OnceCell<Result<Server, String>>>;

/// The server's URL and process id, starting it on first use.
fn url(server: &Shared) -> Result<(String, u32), String> {
    match server.get_or_init(start_server) {
        Ok(s) => Ok((s.url.clone(), s.pid)),
        Err(e) => Err(e.clone()),
    }
}

/// CPU time (user + system, all threads, exited ones included) of process `pid` so far,
/// in ns, from `/proc/<pid>/stat` (clock-tick resolution: 10 ms at the usual 100 Hz).
fn cpu_ns(pid: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name, which sits in parentheses and may hold spaces:
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = field(14)
        .zip(field(15))
        .map(|(u, s)| u + s)
        .ok_or_else(|| format!("{path}: no utime/stime"))?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Ok(ticks * 1_000_000_000 / hz)
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The timed part of one repetition: wall time and both processes' CPU time.
struct Window {
    server_pid: u32,
    start: Instant,
    client_cpu: u64,
    server_cpu: u64,
}

impl Window {
    /// Opens the window once the clients are connected.
    fn open(server_pid: u32) -> Result<Window, String> {
        Ok(Window {
            server_pid,
            client_cpu: cpu_ns("self")?,
            server_cpu: cpu_ns(&server_pid.to_string())?,
            start: Instant::now(),
        })
    }

    /// Closes it after `commands` commands: the metrics, and one line on stderr saying
    /// what bounded the repetition.
    fn close(self, runtime: &str, commands: Result<u64, String>) -> Result<Vec<f64>, String> {
        let elapsed = self.start.elapsed();
        let client = cpu_ns("self")?.saturating_sub(self.client_cpu);
        let server = cpu_ns(&self.server_pid.to_string())?.saturating_sub(self.server_cpu);
        let n = commands?;
        if n == 0 {
            return Err("no command completed".into());
        }
        let secs = elapsed.as_secs_f64();
        eprint!(
            "\n  redis_c1000 {runtime}: {:.1}k commands/s; redis-server {:.0}% of a core \
             ({:.1} µs/cmd), clients {:.2} cores ({:.1} µs/cmd); load average {}",
            n as f64 / secs / 1e3,
            server as f64 / 1e7 / secs,
            server as f64 / n as f64 / 1e3,
            client as f64 / 1e9 / secs,
            client as f64 / n as f64 / 1e3,
            loadavg(),
        );
        Ok(vec![
            n as f64 / secs,
            client as f64 / n as f64,
            server as f64 / n as f64,
        ])
    }
}

/// One synchronous client's loop: SET, GET, until `stop`; returns commands done.
/// The `CLIENTS` connections of a sync row, opened by the caller (a greenlet for grove's row,
/// so the hooks see the sockets from their first call).
fn connect_all(client: &redis::Client) -> Result<Vec<redis::Connection>, String> {
    (0..CLIENTS)
        .map(|_| client.get_connection().map_err(|e| e.to_string()))
        .collect()
}

fn sync_loop(mut con: redis::Connection, i: usize, stop: &AtomicBool) -> Result<u64, String> {
    let key = format!("grove-bench:{i}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        redis::cmd("SET")
            .arg(&key)
            .arg(n)
            .query::<()>(&mut con)
            .map_err(|e| e.to_string())?;
        let v: u64 = redis::cmd("GET")
            .arg(&key)
            .query(&mut con)
            .map_err(|e| e.to_string())?;
        if v != n {
            return Err(format!("client {i}: GET returned {v}, expected {n}"));
        }
        n += 2;
    }
    Ok(n)
}

/// `redis_c1000`.
pub(crate) fn redis_bench<'a>(rt: &'a crate::workloads::Runtimes, quick: bool) -> Bench<'a> {
    let duration = Duration::from_millis(if quick { 1_000 } else { 3_000 });
    let server: Shared = Rc::new(OnceCell::new());
    let mut b = Bench::new("redis_c1000", &METRICS);

    #[cfg(feature = "monkey")]
    {
        let server = server.clone();
        b = b.runner("grove", CLIENTS as u64, move || {
            let (url, pid) = url(&server)?;
            let client = redis::Client::open(url).map_err(|e| e.to_string())?;
            rt.grove.block_on(move || {
                let stop = Arc::new(AtomicBool::new(false));
                let cons = connect_all(&client)?;
                let window = Window::open(pid)?;
                let hs: Vec<_> = cons
                    .into_iter()
                    .enumerate()
                    .map(|(i, con)| {
                        let stop = stop.clone();
                        grove::spawn(move || sync_loop(con, i, &stop))
                    })
                    .collect();
                grove::sleep(duration);
                stop.store(true, Ordering::Relaxed);
                let total = hs.into_iter().try_fold(0, |total, h| {
                    Ok::<_, String>(total + h.join().map_err(|e| e.to_string())??)
                });
                window.close("grove", total)
            })
        });
    }
    #[cfg(not(feature = "monkey"))]
    {
        b = b.skip(
            "grove",
            "the sync client needs the `monkey` feature (cargo bench --features monkey)",
        );
    }

    {
        let server = server.clone();
        b = b.runner("tokio", CLIENTS as u64, move || {
            let (url, pid) = url(&server)?;
            let client = redis::Client::open(url).map_err(|e| e.to_string())?;
            rt.tokio.block_on(async move {
                let stop = Arc::new(AtomicBool::new(false));
                let mut cons = Vec::with_capacity(CLIENTS);
                for _ in 0..CLIENTS {
                    cons.push(
                        client
                            .get_multiplexed_async_connection()
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                let window = Window::open(pid)?;
                let hs: Vec<_> = cons
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut con)| {
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            let key = format!("grove-bench:{i}");
                            let mut n = 0u64;
                            while !stop.load(Ordering::Relaxed) {
                                redis::cmd("SET")
                                    .arg(&key)
                                    .arg(n)
                                    .query_async::<()>(&mut con)
                                    .await
                                    .map_err(|e| e.to_string())?;
                                let v: u64 = redis::cmd("GET")
                                    .arg(&key)
                                    .query_async(&mut con)
                                    .await
                                    .map_err(|e| e.to_string())?;
                                if v != n {
                                    return Err(format!("client {i}: GET {v}, expected {n}"));
                                }
                                n += 2;
                            }
                            Ok::<u64, String>(n)
                        })
                    })
                    .collect();
                tokio::time::sleep(duration).await;
                stop.store(true, Ordering::Relaxed);
                let mut total = Ok(0);
                for h in hs {
                    total = match (total, h.await.map_err(|e| e.to_string())) {
                        (Ok(t), Ok(Ok(n))) => Ok(t + n),
                        (Err(e), _) | (_, Err(e)) | (_, Ok(Err(e))) => Err(e),
                    };
                }
                window.close("tokio", total)
            })
        });
    }

    b = b.skip("may", "no redis client for may's sockets");

    b.runner("threads", CLIENTS as u64, move || {
        let (url, pid) = url(&server)?;
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let cons = connect_all(&client)?;
        let window = Window::open(pid)?;
        let hs: Vec<_> = cons
            .into_iter()
            .enumerate()
            .map(|(i, con)| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || sync_loop(con, i, &stop))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let total = hs.into_iter().try_fold(0, |total, h| {
            Ok::<_, String>(
                total
                    + h.join()
                        .map_err(|_| "client thread panicked".to_string())??,
            )
        });
        window.close("threads", total)
    })
}
