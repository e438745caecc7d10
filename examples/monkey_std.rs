//! Unmodified blocking std code made green by the `monkey` feature: a `std::net` echo
//! server with a greenlet per connection, 1,000 `std::net` clients and 10,000
//! `std::thread::sleep`s, all on two worker threads.
//!
//! ```text
//! cargo run --release --features monkey --example monkey_std
//! ```
//!
//! Nothing here is grove-aware except `grove::spawn`: without the feature each blocking
//! call would hold a worker thread, and the program would take over 1,000 seconds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn main() {
    let rt = grove::Runtime::builder()
        .workers(2)
        .build()
        .expect("runtime");
    rt.block_on(|| {
        let t = Instant::now();
        let sleepers: Vec<_> = (0..10_000)
            .map(|_| grove::spawn(|| std::thread::sleep(Duration::from_millis(200))))
            .collect();
        sleepers.into_iter().for_each(|h| h.join().unwrap());
        println!("10,000 std::thread::sleep(200 ms) took {:?}", t.elapsed());

        // A plain std::net server: accept, then a greenlet per connection.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        grove::spawn(move || loop {
            let (mut s, _) = listener.accept().unwrap();
            grove::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        });

        let t = Instant::now();
        let clients: Vec<_> = (0..1_000)
            .map(|i| {
                grove::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    for j in 0..10 {
                        let msg = format!("client {i} message {j}");
                        c.write_all(msg.as_bytes()).unwrap();
                        let mut got = vec![0u8; msg.len()];
                        c.read_exact(&mut got).unwrap();
                        assert_eq!(got, msg.as_bytes());
                    }
                })
            })
            .collect();
        clients.into_iter().for_each(|h| h.join().unwrap());
        println!("1,000 std::net clients x 10 echoes took {:?}", t.elapsed());
    });
    // The accept loop is still waiting; shutting the runtime down ends it.
    rt.shutdown_timeout(Duration::from_secs(5));
}
