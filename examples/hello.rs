//! gevent's "printing workers" demo, on every core.
//!
//! ```text
//! cargo run --release --example hello
//! ```
//!
//! Each worker greenlet first computes for a while (about 20 ms of CPU), then sleeps a
//! random time, prints a row of stars with the hub (worker thread) it ran on, and returns
//! its number. The main greenlet joins them all; results come back in spawn order
//! whatever order they finished in. At the end the demo counts the greenlets per hub.
//!
//! Why the computing: a greenlet runs on the hub that *starts* it and stays there (only
//! greenlets not yet started are stolen). The main greenlet spawns them all onto its own
//! hub's queue; while that hub computes the first one, the idle hubs steal the others.
//! Without the work, one hub can start all of them before another wakes up to steal,
//! and the demo honestly shows a single hub.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A tiny xorshift generator: the demo needs no crate for randomness.
fn xorshift(mut x: u64) -> u64 {
    x |= 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// About `d` of pure computation (no blocking call: it holds its hub).
fn compute(d: Duration, seed: u64) -> u64 {
    let start = Instant::now();
    let mut x = seed;
    while start.elapsed() < d {
        for _ in 0..1000 {
            x = black_box(xorshift(x));
        }
    }
    x
}

/// Returns the worker's number and the hub it ran on.
pub fn worker(n: u64, seed: u64) -> (u64, usize) {
    let hub = grove::greenlet::worker_index().unwrap_or(0);
    compute(Duration::from_millis(20), seed);
    let ms = xorshift(seed) % 500;
    grove::sleep(Duration::from_millis(ms));
    println!(
        "{:<24} worker {n:>2} computed 20 ms, slept {ms:>3} ms, on hub {hub}",
        "*".repeat(n as usize * 2),
    );
    (n, hub)
}

/// Spawns `count` workers from the main greenlet and joins them, in spawn order.
pub fn printing_workers(rt: &grove::Runtime, count: u64, seed: u64) -> Vec<(u64, usize)> {
    rt.block_on(move || {
        let jobs: Vec<_> = (1..=count)
            .map(|n| grove::spawn(move || worker(n, seed.wrapping_mul(n * 7919))))
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

fn main() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(42);
    let start = Instant::now();
    let rt = grove::Runtime::new().expect("cannot start the grove runtime");
    let hubs = rt.workers();
    let count = (2 * hubs).clamp(8, 12) as u64;
    println!("{hubs} hubs (one per CPU); {count} worker greenlets");
    let results = printing_workers(&rt, count, seed);
    let order: Vec<u64> = results.iter().map(|(n, _)| *n).collect();
    println!("results, in spawn order: {order:?}");
    let mut per_hub: BTreeMap<usize, usize> = (0..hubs).map(|h| (h, 0)).collect();
    for (_, hub) in &results {
        *per_hub.entry(*hub).or_default() += 1;
    }
    let busy = per_hub.values().filter(|&&c| c > 0).count();
    let counts: Vec<String> = per_hub
        .iter()
        .map(|(h, c)| format!("hub {h}: {c}"))
        .collect();
    println!(
        "greenlets per hub: {} ({busy} of {hubs} hubs did work)",
        counts.join(", ")
    );

    // The same model at scale: 10,000 greenlets each sleeping 100 ms finish in about
    // 100 ms, not 1,000 seconds, because a sleeping greenlet costs no thread.
    let t = Instant::now();
    let n = rt.block_on(|| {
        let hs: Vec<_> = (0..10_000)
            .map(|_| grove::spawn(|| grove::sleep(Duration::from_millis(100))))
            .collect();
        let n = hs.len();
        for h in hs {
            h.join().unwrap();
        }
        n
    });
    println!(
        "{n} greenlets slept 100 ms each in {:?} total; whole demo took {:?}",
        t.elapsed(),
        start.elapsed()
    );
}
