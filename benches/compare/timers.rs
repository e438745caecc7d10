//! `sleepers`: many tasks each sleeping a random 1-100 ms; wall time and lateness. And
//! `sleepers_burn`: the same with two CPU-burning processes running beside it (each
//! repetition starts them just before and kills them just after), so the runtime's threads
//! compete for the 2 cores as they would on a busy machine: a runtime that stalls or sleeps
//! through due timers shows it in the tail.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::workloads::{may_go, Runtimes};
use crate::{Bench, Better, Metric};

/// Sleepers for grove and tokio (issue 6's size).
const SLEEPERS: u64 = 100_000;
/// Sleepers for may: its guarded stacks cap it near 32k live coroutines.
const MAY_SLEEPERS: u64 = 20_000;
/// Sleeping OS threads.
const THREAD_SLEEPERS: u64 = 2_000;
/// The PRNG seed: every runtime and repetition sleeps the same durations.
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

const METRICS: [Metric; 4] = [
    Metric {
        name: "wall",
        unit: "ns",
        better: Better::Lower,
    },
    Metric {
        name: "mean late",
        unit: "ns",
        better: Better::Lower,
    },
    Metric {
        name: "p99 late",
        unit: "ns",
        better: Better::Lower,
    },
    Metric {
        name: "all started",
        unit: "ns",
        better: Better::Lower,
    },
];

/// Marsaglia's xorshift64 (13, 7, 17): tiny, fast and reproducible.
#[derive(Debug)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// `n` durations of 1-100 ms (whole milliseconds) from the fixed seed.
fn durations(n: u64) -> Arc<Vec<Duration>> {
    let mut rng = XorShift::new(SEED);
    Arc::new(
        (0..n)
            .map(|_| Duration::from_millis(1 + rng.next_u64() % 100))
            .collect(),
    )
}

/// What one sleeper reports, in ns: how late its sleep woke (time slept minus time asked,
/// never negative), and when it started running, counted from the first spawn.
fn sample(first_spawn: Instant, started: Instant, asked: Duration) -> (u64, u64) {
    let late = started.elapsed().saturating_sub(asked).as_nanos() as u64;
    (late, started.duration_since(first_spawn).as_nanos() as u64)
}

/// Wall time, the mean and p99 of the per-task lateness, and when the last task started
/// (how fast the runtime spawns and first runs tasks: the wall time is about that plus the
/// longest sleep), as the bench's metrics.
fn metrics(wall: Duration, samples: Vec<(u64, u64)>) -> Result<Vec<f64>, String> {
    if samples.is_empty() {
        return Err("no sleeper finished".into());
    }
    let last_start = samples.iter().map(|&(_, s)| s).max().unwrap_or(0) as f64;
    let mut late: Vec<u64> = samples.into_iter().map(|(l, _)| l).collect();
    late.sort_unstable();
    let mean = late.iter().sum::<u64>() as f64 / late.len() as f64;
    let p99 = late[(late.len() * 99 / 100).min(late.len() - 1)] as f64;
    Ok(vec![wall.as_nanos() as f64, mean, p99, last_start])
}

/// Set in a child process that only burns CPU (see [`Burners`]).
pub(crate) const BURN_ENV: &str = "GROVE_COMPARE_BURN";

/// In a burner child: spin until killed.
pub(crate) fn burn_main() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Two CPU-burning child processes (this binary re-executed with [`BURN_ENV`]), killed and
/// reaped on drop.
struct Burners(Vec<std::process::Child>);

impl Burners {
    fn start(n: usize) -> Result<Burners, String> {
        let exe = std::env::current_exe().map_err(|e| format!("burners: {e}"))?;
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            let child = std::process::Command::new(&exe)
                .env(BURN_ENV, "1")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("burners: {e}"))?;
            children.push(child);
        }
        // Let them get going (and the scheduler notice them) before the measurement.
        thread::sleep(Duration::from_millis(50));
        Ok(Burners(children))
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `f` with `burners` CPU-burning processes beside it (none if 0).
fn beside<T>(burners: usize, f: impl FnOnce() -> T) -> Result<T, String> {
    let _burners = if burners > 0 {
        Some(Burners::start(burners)?)
    } else {
        None
    };
    Ok(f())
}

/// `sleepers`, and `sleepers_burn` with two burners beside it.
pub(crate) fn sleepers_benches(rt: &Runtimes) -> Vec<Bench<'_>> {
    vec![
        sleepers(rt, "sleepers", 0),
        sleepers(rt, "sleepers_burn", 2),
    ]
}

fn sleepers<'a>(rt: &'a Runtimes, name: &str, burn: usize) -> Bench<'a> {
    let (d, may_d, thread_d) = (
        durations(SLEEPERS),
        durations(MAY_SLEEPERS),
        durations(THREAD_SLEEPERS),
    );
    Bench::new(name, &METRICS)
        .runner("grove", SLEEPERS, move || {
            let d = d.clone();
            beside(burn, || {
                let start = Instant::now();
                let late = rt.grove.block_on(move || {
                    let hs: Vec<_> = (0..d.len())
                        .map(|i| {
                            let d = d.clone();
                            grove::spawn(move || {
                                let t = Instant::now();
                                grove::sleep(d[i]);
                                sample(start, t, d[i])
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).collect()
                });
                metrics(start.elapsed(), late)
            })?
        })
        .runner("tokio", SLEEPERS, {
            let d = durations(SLEEPERS);
            move || {
                let d = d.clone();
                beside(burn, || {
                    let start = Instant::now();
                    let late = rt
                        .tokio
                        .block_on(rt.tokio.spawn(async move {
                            let hs: Vec<_> = (0..d.len())
                                .map(|i| {
                                    let d = d.clone();
                                    tokio::spawn(async move {
                                        let t = Instant::now();
                                        tokio::time::sleep(d[i]).await;
                                        sample(start, t, d[i])
                                    })
                                })
                                .collect();
                            let mut late = Vec::with_capacity(hs.len());
                            for h in hs {
                                late.push(h.await.unwrap());
                            }
                            late
                        }))
                        .unwrap();
                    metrics(start.elapsed(), late)
                })?
            }
        })
        .runner("may", MAY_SLEEPERS, move || {
            let d = may_d.clone();
            beside(burn, || {
                let start = Instant::now();
                let late = may_go(move || {
                    let hs: Vec<_> = (0..d.len())
                        .map(|i| {
                            let d = d.clone();
                            may_go(move || {
                                let t = Instant::now();
                                may::coroutine::sleep(d[i]);
                                sample(start, t, d[i])
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).collect()
                })
                .join()
                .map_err(|_| "may sleepers panicked".to_string())?;
                metrics(start.elapsed(), late)
            })?
        })
        .runner("threads", THREAD_SLEEPERS, move || {
            let thread_d = thread_d.clone();
            beside(burn, move || {
                let start = Instant::now();
                let hs: Vec<_> = (0..thread_d.len())
                    .map(|i| {
                        let d = thread_d.clone();
                        thread::spawn(move || {
                            let t = Instant::now();
                            thread::sleep(d[i]);
                            sample(start, t, d[i])
                        })
                    })
                    .collect();
                let late = hs.into_iter().map(|h| h.join().unwrap()).collect();
                metrics(start.elapsed(), late)
            })?
        })
}
