//! The chat example's bounds (issue 11): an endless line is refused after `MAX_LINE`
//! bytes with the server's memory bounded (it took 5.2 GB in 15 s before); a burst
//! reaches a reader who keeps up in full and in order (43% arrived before), while a
//! reader who stops reading is disconnected after the slow-reader timeout.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat.rs"]
mod chat;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Generous bound for "does not hang" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// A plain blocking client that has joined as `name`.
fn join(addr: SocketAddr, name: &str) -> BufReader<TcpStream> {
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut r = BufReader::new(c);
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    assert_eq!(l, chat::PROMPT);
    r.get_mut()
        .write_all(format!("{name}\n").as_bytes())
        .unwrap();
    l.clear();
    r.read_line(&mut l).unwrap();
    assert!(l.starts_with(&format!("Welcome, {name}!")), "{l}");
    r
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    l
}

#[test]
fn an_endless_line_is_refused_with_memory_bounded() {
    const FLOOD: usize = 256 << 20;
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let room = chat::Room::new();
    let server = {
        let room = room.clone();
        rt.block_on(move || {
            let s = chat::bind("127.0.0.1:0", room).unwrap();
            s.start().unwrap();
            s
        })
    };
    let addr = server.local_addr();
    let mut bob = join(addr, "bob");
    let mut eve = join(addr, "eve");
    assert_eq!(line(&mut bob), "* eve joined\n");
    let before = rss_bytes();
    // 256 MiB without a newline, until the server closes on eve.
    let chunk = vec![b'a'; 64 << 10];
    let mut sent = 0;
    while sent < FLOOD {
        match eve.get_mut().write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < FLOOD, "the server read {sent} bytes of one line");
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 32 << 20, "RSS grew by {grown} bytes");
    // Eve was told, then disconnected; bob saw her leave and nothing of her line.
    let mut rest = Vec::new();
    let _ = eve.read_to_end(&mut rest);
    assert!(
        String::from_utf8_lossy(&rest).contains("Line too long"),
        "{}",
        String::from_utf8_lossy(&rest[..rest.len().min(200)])
    );
    assert_eq!(line(&mut bob), "* eve left\n");
    drop(bob);
    assert!(rt.block_on(move || server.stop(PATIENCE)));
}

#[test]
fn a_burst_reaches_a_fast_reader_in_full_and_a_slow_reader_is_disconnected() {
    const LINES: usize = 5000;
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    // Long enough that bob, who reads all the time, is never mistaken for a slow
    // reader on a loaded machine.
    let room = chat::Room::with_slow_reader(Duration::from_secs(2));
    let server = {
        let room = room.clone();
        rt.block_on(move || {
            let s = chat::bind("127.0.0.1:0", room).unwrap();
            s.start().unwrap();
            s
        })
    };
    let addr = server.local_addr();
    let mut alice = join(addr, "alice"); // never reads again
    let mut bob = join(addr, "bob");
    let mut carol = join(addr, "carol");
    assert_eq!(line(&mut bob), "* carol joined\n");
    // Bob reads everything, in a thread of his own.
    let reader = std::thread::spawn(move || {
        let mut next = 0;
        let mut others = Vec::new();
        while next < LINES {
            let l = line(&mut bob);
            assert!(!l.is_empty(), "bob was disconnected after {next} lines");
            match l.strip_prefix("[carol] ") {
                Some(text) => {
                    let i: usize = text.split(' ').next().unwrap().parse().unwrap();
                    assert_eq!(i, next, "out of order or lost");
                    next += 1;
                }
                None => others.push(l),
            }
        }
        // Alice's leaving may come after carol's last line.
        while !others.iter().any(|l| l == "* alice left\n") {
            let l = line(&mut bob);
            assert!(!l.is_empty(), "bob was disconnected");
            others.push(l);
        }
        (others, bob)
    });
    // 5000 lines of ~4 KB: 20 MB, far beyond what alice's socket buffers hold.
    let pad = "x".repeat(4000);
    let sender = std::thread::spawn(move || {
        for i in 0..LINES {
            carol
                .get_mut()
                .write_all(format!("{i} {pad}\n").as_bytes())
                .unwrap();
        }
        carol
    });
    let (others, _bob) = reader.join().unwrap();
    let _carol = sender.join().unwrap();
    assert!(others.contains(&"* alice left\n".to_string()), "{others:?}");
    assert_eq!(room.names(), ["bob", "carol"]);
    // Alice's connection was closed: reading what was queued for her ends.
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match alice.get_mut().read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(start.elapsed() < PATIENCE, "alice still connected"),
        }
    }
    drop(_carol);
    drop(_bob);
    let report = rt.block_on(move || server.drain(PATIENCE));
    assert!(report.graceful(), "{report}");
}
