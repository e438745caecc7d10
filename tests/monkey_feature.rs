//! The `monkey` feature as a user turns it on: `grove = { features = ["monkey"] }` and
//! nothing else; building a runtime links the hooks. (Run with `--features monkey`;
//! grove-monkey's own tests cover the hooks in depth.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[test]
fn std_sleep_and_std_net_go_green_with_the_feature() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = rt.block_on(|| {
            // 200 sleeps of 100 ms on one worker: about one sleep, not 20 s.
            let t = Instant::now();
            let hs: Vec<_> = (0..200)
                .map(|_| grove::spawn(|| std::thread::sleep(Duration::from_millis(100))))
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            let slept = t.elapsed();
            // A std::net server and client greenlet on that one worker.
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let server = grove::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut b = [0u8; 4];
                s.read_exact(&mut b).unwrap();
                s.write_all(&b).unwrap();
            });
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"ping").unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).unwrap();
            server.join().unwrap();
            (slept, b)
        });
        let _ = tx.send(r);
    });
    let (slept, echoed) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no result in 60 s: a std call blocked the only worker");
    assert!(slept < Duration::from_secs(10), "{slept:?}");
    assert_eq!(&echoed, b"ping");
    assert_eq!(
        grove::monkey::INTERRUPTED,
        libc::ECANCELED,
        "the documented interrupt errno"
    );
}
