//! Producers and a consumer over a bounded `Queue`, with a `Pool(2)` of workers —
//! gevent's producer/consumer pattern, on every core.
//!
//! ```text
//! cargo run --release --example producer_consumer
//! ```
//!
//! Three producers put jobs into a queue that holds at most 4. One consumer takes them
//! in order and hands each to a pool of 2 workers. Backpressure chains all the way
//! back: while both workers are busy the consumer waits in `Pool::spawn`, the queue
//! fills up, and the producers wait in `Queue::put` — all of them parked greenlets,
//! no thread blocked. When every producer is done the queue is closed; the consumer
//! drains it, waits for the pool and prints the totals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRODUCERS: usize = 3;
const JOBS_EACH: usize = 6;
const QUEUE_CAPACITY: usize = 4;
const WORKERS: usize = 2;

/// A unit of work: who made it and its number.
#[derive(Debug)]
struct Job {
    producer: usize,
    n: usize,
}

fn main() {
    let start = Instant::now();
    let (done, most_at_once) = grove::run(move || {
        let queue: grove::queue::Queue<Job> = grove::queue::Queue::bounded(QUEUE_CAPACITY);
        let pool = grove::pool::Pool::new(WORKERS);
        println!(
            "{PRODUCERS} producers x {JOBS_EACH} jobs -> queue (capacity {QUEUE_CAPACITY}) \
             -> consumer -> pool of {WORKERS} workers"
        );

        // Producers: put jobs, waiting while the queue is full.
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = queue.clone();
                grove::spawn(move || {
                    for n in 0..JOBS_EACH {
                        let t = Instant::now();
                        q.put(Job { producer: p, n }).expect("queue closed early");
                        let waited = t.elapsed();
                        if waited > Duration::from_millis(5) {
                            println!(
                                "  producer {p} waited {waited:>9.2?} to put job {n} (queue full)"
                            );
                        }
                        grove::sleep(Duration::from_millis(2));
                    }
                    println!("  producer {p} done");
                })
            })
            .collect();

        // Close the queue once every producer is done, so the consumer's loop ends.
        let closer = {
            let q = queue.clone();
            grove::spawn(move || {
                grove::joinall(&producers);
                q.close();
                println!("  all producers done: queue closed");
            })
        };

        // The consumer: each job goes to the pool, waiting while both workers are busy.
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        for job in queue.iter() {
            let (running, most, done) = (running.clone(), most.clone(), done.clone());
            pool.spawn(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Simulated work.
                grove::sleep(Duration::from_millis(20 + 5 * (job.n as u64 % 3)));
                println!(
                    "    worker on hub {} finished job {}/{}",
                    grove::greenlet::worker_index().unwrap_or(0),
                    job.producer,
                    job.n,
                );
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        pool.join();
        closer.join().unwrap();
        (done.load(Ordering::SeqCst), most.load(Ordering::SeqCst))
    });
    println!(
        "total: {done} of {} jobs done, at most {most_at_once} at once (pool of {WORKERS}), in {:.0?}",
        PRODUCERS * JOBS_EACH,
        start.elapsed()
    );
    assert_eq!(done, PRODUCERS * JOBS_EACH);
    assert!(most_at_once <= WORKERS);
}
