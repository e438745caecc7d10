//! Placement of long-lived connection greenlets: a `StreamServer`'s handlers spread over the
//! workers instead of staying on the acceptor's worker (a started greenlet never moves, so
//! where it first runs is where it serves its connection for life).

use std::io::Read;
use std::net::TcpStream as StdStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove::server::StreamServer;

/// Generous bound for "does not hang" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// Connects `n` clients one after another (the slow-arrival case: each handler can start
/// before the next connection exists) to a server whose handlers record their worker and
/// then wait for EOF; returns how many handlers landed on each of the 2 workers.
fn spread(n: usize, burst: bool) -> [usize; 2] {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let per_worker: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let started = Arc::new(AtomicUsize::new(0));
    let server = rt.block_on({
        let (per_worker, started) = (per_worker.clone(), started.clone());
        move || {
            let server = StreamServer::bind("127.0.0.1:0", move |mut conn, _| {
                let w = grove::greenlet::worker_index().expect("a handler runs on a worker");
                per_worker[w].fetch_add(1, Ordering::SeqCst);
                started.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 16];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            })
            .unwrap();
            server.start().unwrap();
            server
        }
    });
    let addr = server.local_addr();
    let mut clients = Vec::with_capacity(n);
    let deadline = Instant::now() + PATIENCE;
    for i in 0..n {
        clients.push(StdStream::connect(addr).unwrap());
        if !burst {
            // Wait for this connection's handler before opening the next.
            while started.load(Ordering::SeqCst) <= i {
                assert!(Instant::now() < deadline, "handler {i} never started");
                std::thread::yield_now();
            }
        }
    }
    while started.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "not every handler started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let counts = [
        per_worker[0].load(Ordering::SeqCst),
        per_worker[1].load(Ordering::SeqCst),
    ];
    drop(clients);
    assert!(server.stop(PATIENCE));
    counts
}

fn assert_no_worse_than_60_40(counts: [usize; 2], n: usize) {
    assert_eq!(counts[0] + counts[1], n);
    let most = counts[0].max(counts[1]);
    assert!(
        most * 10 <= n * 6,
        "handlers per worker {counts:?}: worse than 60/40"
    );
}

#[test]
fn one_thousand_connections_arriving_one_by_one_land_no_worse_than_60_40() {
    let counts = spread(1000, false);
    eprintln!("one by one: {counts:?}");
    assert_no_worse_than_60_40(counts, 1000);
}

#[test]
fn one_thousand_connections_in_a_burst_land_no_worse_than_60_40() {
    let counts = spread(1000, true);
    eprintln!("burst: {counts:?}");
    assert_no_worse_than_60_40(counts, 1000);
}
