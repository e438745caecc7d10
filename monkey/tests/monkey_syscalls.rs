//! What the green path costs in syscalls. A file of its own: the hooks' counters are
//! process-wide, and nothing else may run hooked calls while the test reads them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{rt, within};

/// A request/response client in a greenlet (as the sync redis client is) against a plain
/// thread's server: once under way, each exchange waits once for its reply and makes no
/// read that fails with `EAGAIN` (the previous reply's short read says the queue is empty,
/// and the wait that ended in that reply's event must not count as readiness for the next).
#[test]
fn a_request_response_loop_wastes_no_reads() {
    const EXCHANGES: u64 = 200;
    within(Duration::from_secs(60), "request/response", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            for line in BufReader::new(s).lines() {
                let line = line.unwrap();
                w.write_all(format!("+{line}\r\n").as_bytes()).unwrap();
            }
        });
        let rt = rt(1);
        let (waits, wasted) = rt.block_on(move || {
            let s = TcpStream::connect(addr).unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut exchange = |i: u64| {
                w.write_all(format!("ping {i}\n").as_bytes()).unwrap();
                let mut reply = String::new();
                r.read_line(&mut reply).unwrap();
                assert_eq!(reply, format!("+ping {i}\r\n"));
            };
            // Under way: the first exchanges set up registration and the read hint.
            for i in 0..3 {
                exchange(i);
            }
            let before = grove_monkey::stats();
            for i in 0..EXCHANGES {
                exchange(i);
            }
            let after = grove_monkey::stats();
            (
                after.green_waits - before.green_waits,
                after.would_block - before.would_block,
            )
        });
        drop(rt);
        server.join().unwrap();
        // A reply that is already there when the client reads costs no wait; one that is
        // not costs one. Either way no read should find the queue empty, save a rare
        // reply split in two segments.
        assert!(waits <= EXCHANGES + EXCHANGES / 10, "{waits} waits");
        assert!(
            wasted <= EXCHANGES / 10,
            "{wasted} of {EXCHANGES} exchanges made a read that failed with EAGAIN"
        );
    });
}
