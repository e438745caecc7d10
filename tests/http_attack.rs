//! Attacks on the `http_hello` example over raw sockets (issue 11): every request
//! smuggling pattern gets its status *and a closed connection* (nothing after it is read
//! as a request); slowloris connections are answered 408 and closed while normal clients
//! keep being served, and the descriptors come back; 100 pipelined requests; clients
//! killed mid-request; HTTP/1.0 keep-alive answered with the header.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/http_hello.rs"]
mod http_hello;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use grove::server::StreamServer;
use http_hello::Limits;

/// Generous bound for "does not hang" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(10);

/// Short limits, so the slow-client tests take a fraction of a second.
const SHORT: Limits = Limits {
    header_timeout: Duration::from_millis(300),
    body_timeout: Duration::from_millis(300),
    idle_timeout: Duration::from_secs(2),
};

fn with_server(limits: Limits, client: impl FnOnce(SocketAddr, &StreamServer)) {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let server = rt.block_on(move || {
        let s = http_hello::server_with("127.0.0.1:0", limits).unwrap();
        s.start().unwrap();
        s
    });
    client(server.local_addr(), &server);
    let report = rt.block_on(move || server.drain(PATIENCE));
    assert!(report.graceful(), "{report}");
}

/// Sends `request` and reads until the server closes; the server must close.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(request).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got)
        .expect("the server closes the connection");
    String::from_utf8(got).unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Each smuggling pattern of issue 11, followed by a second request that must never be
/// answered: one response, the refusal, then end-of-file.
#[test]
fn smuggling_patterns_are_refused_and_the_connection_closed() {
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: &[(&str, &str)] = &[
        ("Content-Length: -5\r\n", "400 Bad Request"),
        ("Content-Length: +5\r\n", "400 Bad Request"),
        ("Content-Length: 1e3\r\n", "400 Bad Request"),
        ("Content-Length: 2^70\r\n", "400 Bad Request"),
        ("Content-Length: 0x10\r\n", "400 Bad Request"),
        ("Content-Length: \r\n", "400 Bad Request"),
        ("Content-Length: 5 5\r\n", "400 Bad Request"),
        ("Content-Length: 5, 5\r\n", "400 Bad Request"),
        (
            "Content-Length: 0\r\nContent-Length: 5\r\n",
            "400 Bad Request",
        ),
        (
            "Content-Length: 5\r\nContent-Length: 0\r\n",
            "400 Bad Request",
        ),
        (
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "400 Bad Request",
        ),
        ("Transfer-Encoding: chunked\r\n", "501 Not Implemented"),
        // 2^70 and 1e18 written out: syntactically numbers, too large to accept.
        (
            "Content-Length: 1180591620717411303424\r\n",
            "413 Content Too Large",
        ),
        (
            "Content-Length: 1000000000000000000\r\n",
            "413 Content Too Large",
        ),
        ("Content-Length: 2000000\r\n", "413 Content Too Large"),
    ];
    with_server(Limits::DEFAULT, |addr, _| {
        for (headers, status) in cases {
            let req = format!("POST / HTTP/1.1\r\nHost: x\r\n{headers}\r\nabc{smuggled}");
            let got = exchange(addr, req.as_bytes());
            assert!(
                got.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{headers:?}: {got}"
            );
            assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "{headers:?}: {got}");
            assert!(got.contains("Connection: close\r\n"), "{headers:?}: {got}");
        }
    });
}

#[test]
fn versions_hosts_and_sizes_get_their_status() {
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(http_hello::MAX_HEAD)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: b\r\n".repeat(100)
    );
    let cases: Vec<(String, &str)> = vec![
        (
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n".into(),
            "505 HTTP Version Not Supported",
        ),
        (
            "GET / HTTP/3.0\r\nHost: x\r\n\r\n".into(),
            "505 HTTP Version Not Supported",
        ),
        ("GET / HTTP/1.1\r\n\r\n".into(), "400 Bad Request"),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            "400 Bad Request",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".into(), "400 Bad Request"),
        (big_head, "431 Request Header Fields Too Large"),
        (many_headers, "431 Request Header Fields Too Large"),
    ];
    with_server(Limits::DEFAULT, |addr, _| {
        for (req, status) in &cases {
            let got = exchange(addr, req.as_bytes());
            assert!(
                got.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{}: {got}",
                &req[..req.len().min(40)]
            );
        }
        // A body of exactly the announced length is accepted and skipped.
        let got = exchange(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    });
}

/// `ab -k` hung: HTTP/1.0 with `Connection: keep-alive` must be answered with the header
/// (and kept open); without it, HTTP/1.0 closes.
#[test]
fn http_1_0_keep_alive_is_announced() {
    with_server(Limits::DEFAULT, |addr, _| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        for _ in 0..2 {
            c.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            while !got.ends_with(b"Hello, World!") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            let got = String::from_utf8(got).unwrap();
            assert!(got.contains("Connection: keep-alive\r\n"), "{got}");
        }
        let got = exchange(addr, b"GET / HTTP/1.0\r\n\r\n");
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("Connection: close"));
    });
}

#[test]
fn a_hundred_pipelined_requests_are_answered_in_order() {
    with_server(Limits::DEFAULT, |addr, _| {
        let mut all = String::new();
        for i in 0..99 {
            all.push_str(&format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n"));
        }
        all.push_str("GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let got = exchange(addr, all.as_bytes());
        assert_eq!(got.matches("HTTP/1.1 200 OK\r\n").count(), 100);
        assert_eq!(got.matches("Hello, World!").count(), 100);
        assert!(got.ends_with("Connection: close\r\n\r\nHello, World!"));
    });
}

/// Slowloris: connections trickling a request one byte at a time are answered 408 and
/// closed once the header timeout passes, while normal clients keep being served; after
/// the attack the process has exactly the descriptors it had before.
#[test]
fn slowloris_is_cut_off_while_others_are_served_and_fds_come_back() {
    const ATTACKERS: usize = 200;
    let baseline = open_fds();
    with_server(SHORT, |addr, server| {
        let baseline_serving = open_fds();
        // The attackers, on a runtime of their own: each sends a byte every 20 ms and
        // polls for the server's answer with a 20 ms read timeout (`TimedOut`).
        let attack_rt = grove::Runtime::builder().workers(1).build().unwrap();
        let attackers: Vec<_> = (0..ATTACKERS)
            .map(|_| {
                attack_rt.spawn(move || {
                    let started = Instant::now();
                    let mut c = grove::net::TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                    let mut sent = 0;
                    let mut got = Vec::new();
                    loop {
                        let byte = head.get(sent).copied().unwrap_or(b'a');
                        if c.write_all(&[byte]).is_err() {
                            break;
                        }
                        sent += 1;
                        let mut buf = [0u8; 512];
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                        assert!(started.elapsed() < PATIENCE, "never cut off");
                    }
                    String::from_utf8(got).unwrap()
                })
            })
            .collect();
        // Meanwhile, normal clients are served, one after another.
        let mut served = 0;
        while attackers.iter().any(|a| !a.is_finished()) || served < 20 {
            let started = Instant::now();
            let got = exchange(
                addr,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert!(got.ends_with("Hello, World!"), "{got}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "a client waited"
            );
            served += 1;
        }
        for a in attackers {
            let got = a.join().unwrap();
            assert!(
                got.is_empty() || got.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
                "{got}"
            );
        }
        drop(attack_rt);
        let start = Instant::now();
        while server.active_handlers() > 0 || open_fds() > baseline_serving {
            assert!(
                start.elapsed() < PATIENCE,
                "{} handlers, {} fds (baseline {baseline_serving})",
                server.active_handlers(),
                open_fds()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    // The server's runtime is gone too: back to where the test began.
    let start = Instant::now();
    while open_fds() > baseline {
        assert!(
            start.elapsed() < PATIENCE,
            "{} fds, baseline {baseline}",
            open_fds()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A connection that says nothing is closed after the header timeout without an answer
/// (the server's `first_bytes_timeout`); a keep-alive connection idle after a response
/// is closed after the idle timeout; a body trickled too slowly gets 408.
#[test]
fn silent_idle_and_slow_body_connections_are_closed() {
    with_server(SHORT, |addr, _| {
        let started = Instant::now();
        assert_eq!(exchange(addr, b""), "");
        assert!(started.elapsed() < PATIENCE);

        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap(); // the response, then the idle close
        assert!(String::from_utf8(got).unwrap().ends_with("Hello, World!"));

        let got = exchange(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        );
        assert!(got.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
    });
}

/// Clients that vanish mid-request (a reset, or a plain close after half a head or half
/// a body) end their handlers: nothing stays behind.
#[test]
fn clients_killed_mid_request_leave_nothing_behind() {
    with_server(Limits::DEFAULT, |addr, server| {
        let fds = open_fds();
        for i in 0..50 {
            let mut c = TcpStream::connect(addr).unwrap();
            let part: &[u8] = if i % 2 == 0 {
                b"GET / HTTP/1.1\r\nHo"
            } else {
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"
            };
            c.write_all(part).unwrap();
            if i % 3 == 0 {
                // A reset rather than a FIN: linger 0.
                socket2::SockRef::from(&c)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(c);
        }
        let start = Instant::now();
        while server.active_handlers() > 0 || open_fds() > fds {
            assert!(
                start.elapsed() < PATIENCE,
                "{} handlers left, {} fds (had {fds})",
                server.active_handlers(),
                open_fds()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // And the server still serves.
        let got = exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(got.ends_with("Hello, World!"));
    });
}
