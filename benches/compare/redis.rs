//! `redis_c1000` (issue 14): 1,000 clients, each looping SET then GET of its own key
//! against one local `redis-server`, for 3 s (1 s under `--quick`) after connecting;
//! metric: commands/s (higher is better).
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
//! file lock), started once on a free port as a child process and killed at exit.

use std::cell::OnceCell;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Bench, Better, Metric};

const CLIENTS: usize = 1_000;

const METRICS: [Metric; 1] = [Metric {
    name: "commands/s",
    unit: "1/s",
    better: Better::Higher,
}];

/// The redis-server child, killed on drop.
struct Server {
    child: Child,
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
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--maxclients", "10000", "--daemonize", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting redis-server: {e}"))?;
    let server = Server {
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

fn url(server: &Shared) -> Result<String, String> {
    match server.get_or_init(start_server) {
        Ok(s) => Ok(s.url.clone()),
        Err(e) => Err(e.clone()),
    }
}

/// One synchronous client's loop: SET, GET, until `stop`; returns commands done.
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

fn rate(total: Result<u64, String>, elapsed: Duration) -> Result<Vec<f64>, String> {
    let total = total?;
    if total == 0 {
        return Err("no command completed".into());
    }
    Ok(vec![total as f64 / elapsed.as_secs_f64()])
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
            let client = redis::Client::open(url(&server)?).map_err(|e| e.to_string())?;
            let (total, elapsed) = rt.grove.block_on(move || {
                let stop = Arc::new(AtomicBool::new(false));
                let mut cons = Vec::with_capacity(CLIENTS);
                for _ in 0..CLIENTS {
                    cons.push(client.get_connection().map_err(|e| e.to_string())?);
                }
                let start = Instant::now();
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
                let mut total = 0;
                for h in hs {
                    total += h.join().map_err(|e| e.to_string())??;
                }
                Ok::<_, String>((total, start.elapsed()))
            })?;
            rate(Ok(total), elapsed)
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
            let client = redis::Client::open(url(&server)?).map_err(|e| e.to_string())?;
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
                let start = Instant::now();
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
                let mut total = 0;
                for h in hs {
                    total += h.await.map_err(|e| e.to_string())??;
                }
                rate(Ok(total), start.elapsed())
            })
        });
    }

    b = b.skip("may", "no redis client for may's sockets");

    b.runner("threads", CLIENTS as u64, move || {
        let client = redis::Client::open(url(&server)?).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut cons = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            cons.push(client.get_connection().map_err(|e| e.to_string())?);
        }
        let start = Instant::now();
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
        let mut total = 0;
        for h in hs {
            total += h
                .join()
                .map_err(|_| "client thread panicked".to_string())??;
        }
        rate(Ok(total), start.elapsed())
    })
}
