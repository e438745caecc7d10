//! Fan-out with a bounded pool and a deadline per job: `Pool::imap_unordered` and
//! `grove::with_timeout` (gevent's `pool.imap_unordered` with a `Timeout` per job).
//!
//! ```text
//! cargo run --release --example fanout
//! ```
//!
//! Forty jobs of varying length (simulated with `grove::sleep`) run at most eight at
//! a time. Each job has a 150 ms deadline: one that needs longer is interrupted at its
//! blocking point and reports that it timed out. Outcomes are printed as they come
//! in — in completion order, not job order — followed by a total.

use std::time::{Duration, Instant};

const JOBS: u64 = 40;
const POOL: usize = 8;
const DEADLINE: Duration = Duration::from_millis(150);

/// How long job `n` needs, in a fixed scrambled pattern: about two in three are quick
/// (10..=100 ms), the rest need 250..=340 ms — well clear of the deadline either way.
fn work_for(n: u64) -> Duration {
    let k = n * 37 % 30;
    if k % 3 == 0 {
        Duration::from_millis(250 + k * 3)
    } else {
        Duration::from_millis(10 + k * 3)
    }
}

fn main() {
    let start = Instant::now();
    let (finished, timed_out, failed) = grove::run(|| {
        let pool = grove::pool::Pool::new(POOL);
        println!("{JOBS} jobs, at most {POOL} at a time, {DEADLINE:?} deadline each");
        let outcomes = pool.imap_unordered(0..JOBS, |n| {
            let work = work_for(n);
            let result = grove::with_timeout(DEADLINE, || grove::sleep(work));
            (n, work, result.is_ok())
        });
        let (mut finished, mut timed_out, mut failed) = (Vec::new(), Vec::new(), 0);
        for outcome in outcomes {
            match outcome {
                Ok((n, work, true)) => {
                    println!("  job {n:>2} finished  ({work:>6.0?} of work)");
                    finished.push(n);
                }
                Ok((n, work, false)) => {
                    println!("  job {n:>2} timed out (needed {work:.0?})");
                    timed_out.push(n);
                }
                Err(e) => {
                    println!("  a job failed: {e}");
                    failed += 1;
                }
            }
        }
        (finished, timed_out, failed)
    });
    let needed_longer = (0..JOBS).filter(|&n| work_for(n) > DEADLINE).count();
    println!(
        "total: {} finished, {} timed out ({needed_longer} needed longer than the deadline), \
         {failed} failed, of {JOBS} jobs in {:.0?}",
        finished.len(),
        timed_out.len(),
        start.elapsed()
    );
    assert_eq!(finished.len() + timed_out.len(), JOBS as usize);
}
