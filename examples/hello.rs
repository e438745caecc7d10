//! gevent's "printing workers" demo, on every core.
//!
//! ```text
//! cargo run --release --example hello
//! ```
//!
//! Each worker greenlet sleeps a random time, prints a row of stars (and which
//! worker thread it ran on), and returns its number. The main greenlet joins them
//! all; results come back in spawn order whatever order the workers finished in.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A tiny xorshift generator: the demo needs no crate for randomness.
fn random_millis(seed: u64) -> u64 {
    let mut x = seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % 1000
}

fn worker(n: u64, seed: u64) -> u64 {
    let ms = random_millis(seed);
    grove::sleep(Duration::from_millis(ms));
    println!(
        "{:<12} worker {n} slept {ms:>3} ms on hub {}",
        "*".repeat(n as usize * 2),
        grove::worker_index().unwrap_or(0)
    );
    n
}

fn main() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(42);
    let start = Instant::now();
    let results: Vec<u64> = grove::run(move || {
        let jobs: Vec<_> = (1..=5)
            .map(|n| grove::spawn(move || worker(n, seed.wrapping_mul(n * 7919))))
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    println!("results, in spawn order: {results:?}");

    // The same model at scale: 10,000 greenlets each sleeping 100 ms finish in about
    // 100 ms, not 1,000 seconds, because a sleeping greenlet costs no thread.
    let t = Instant::now();
    let n = grove::run(|| {
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
