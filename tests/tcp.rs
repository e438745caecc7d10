//! Green TCP: echo across many clients and workers, full duplex on one `&TcpStream`,
//! line protocols over `BufReader`, half-close and reset, interrupts (kill, Timeout) of
//! read/accept/connect, timeouts, std interop, name resolution.

mod common;

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove::net::{TcpListener, TcpStream};

/// Generous bound for "does not hang" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// An echo server: one greenlet per connection copying input back until EOF.
fn echo_server() -> (SocketAddr, grove::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let h = grove::spawn(move || loop {
        let (conn, _) = listener.accept().unwrap();
        grove::spawn(move || {
            let _ = io::copy(&mut &conn, &mut &conn);
        });
    });
    (addr, h)
}

#[test]
fn echo_round_trips_many_clients_across_workers() {
    const CLIENTS: usize = 200;
    const MESSAGES: usize = 100;
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let workers_used = rt.block_on(|| {
        let (addr, server) = echo_server();
        let used = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let used = used.clone();
                grove::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut buf = [0u8; 64];
                    for m in 0..MESSAGES {
                        let msg = [(c * 31 + m) as u8; 64];
                        s.write_all(&msg).unwrap();
                        s.read_exact(&mut buf).unwrap();
                        assert_eq!(buf, msg);
                    }
                    if let Some(w) = grove::greenlet::worker_index() {
                        used[w.min(1)].fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        server.kill();
        [
            used[0].load(Ordering::Relaxed),
            used[1].load(Ordering::Relaxed),
        ]
    });
    assert_eq!(workers_used[0] + workers_used[1], CLIENTS);
    assert!(
        workers_used.iter().all(|&n| n > 0),
        "clients ran on one worker only: {workers_used:?}"
    );
}

#[test]
fn reader_and_writer_greenlets_share_one_stream() {
    // 4 MiB through an echo server: far more than the socket buffers, so the writer
    // parks on a full buffer while the reader drains the echo on the same socket.
    const TOTAL: usize = 4 << 20;
    grove::run(|| {
        let (addr, server) = echo_server();
        let conn = TcpStream::connect(addr).unwrap();
        let writer_conn = conn.clone();
        let writer = grove::spawn(move || {
            let chunk: Vec<u8> = (0..8192).map(|i| (i % 251) as u8).collect();
            let mut sent = 0;
            while sent < TOTAL {
                (&writer_conn).write_all(&chunk).unwrap();
                sent += chunk.len();
            }
            writer_conn.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = 0usize;
        let mut buf = vec![0u8; 16384];
        loop {
            let n = (&conn).read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, ((got + i) % 8192 % 251) as u8);
            }
            got += n;
        }
        assert_eq!(got, TOTAL);
        writer.join().unwrap();
        server.kill();
    });
}

#[test]
fn two_readers_on_one_stream_are_served_one_after_the_other() {
    grove::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let got = grove::queue::Queue::new();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (conn, got) = (conn.clone(), got.clone());
                grove::spawn(move || {
                    let mut b = [0u8; 1];
                    let n = (&conn).read(&mut b).unwrap();
                    got.put((n, b[0])).unwrap();
                })
            })
            .collect();
        // Let both park (one in the reactor, one on the read gate).
        for _ in 0..10 {
            grove::yield_now();
        }
        client.write_all(b"a").unwrap();
        let first = got.get().unwrap();
        client.write_all(b"b").unwrap();
        let second = got.get().unwrap();
        let mut bytes = [first.1, second.1];
        bytes.sort();
        assert_eq!((first.0, second.0, bytes), (1, 1, *b"ab"));
        readers.into_iter().for_each(|h| h.join().unwrap());
    });
}

#[test]
fn bufreader_line_protocol() {
    grove::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = grove::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut out = BufWriter::new(&conn);
            for line in BufReader::new(&conn).lines() {
                let line = line.unwrap();
                writeln!(out, "{}", line.len()).unwrap();
                out.flush().unwrap();
            }
        });
        let conn = TcpStream::connect(addr).unwrap();
        let mut reader = BufReader::new(&conn);
        for word in ["a", "hello", "grove greenlets"] {
            writeln!(&conn, "{word}").unwrap();
            let mut reply = String::new();
            reader.read_line(&mut reply).unwrap();
            assert_eq!(reply.trim().parse::<usize>().unwrap(), word.len());
        }
        conn.shutdown(Shutdown::Write).unwrap();
        server.join().unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "");
    });
}

#[test]
fn half_close_peer_reads_eof_and_can_still_write_back() {
    grove::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = grove::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            conn.read_to_end(&mut req).unwrap(); // EOF after the client's shutdown
            conn.write_all(&req.repeat(2)).unwrap();
        });
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(b"abc").unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"abcabc");
        server.join().unwrap();
    });
}

#[test]
fn peer_reset_is_an_error_not_a_hang() {
    grove::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"unread").unwrap();
        // Closing a socket with unread input sends RST instead of FIN.
        let mut b = [0u8; 1];
        assert_eq!(server.peek(&mut b).unwrap(), 1);
        drop(server);
        let start = Instant::now();
        let mut buf = [0u8; 16];
        // The reset shows up as an error (reads), or a write fails (EPIPE/ECONNRESET).
        let err = loop {
            match client.read(&mut buf) {
                Err(e) => break e,
                Ok(0) => match client.write(b"x") {
                    Err(e) => break e,
                    Ok(_) => grove::sleep(Duration::from_millis(1)),
                },
                Ok(n) => panic!("read {n} bytes from a reset connection"),
            }
        };
        assert!(start.elapsed() < PATIENCE);
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{err:?}"
        );
    });
}

/// A connected pair inside a runtime.
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[test]
fn kill_interrupts_a_read_and_the_stream_still_works() {
    grove::run(|| {
        let (mut client, server) = pair();
        let s = server.clone();
        let started = grove::sync::Event::new();
        let st = started.clone();
        let reader = grove::spawn(move || {
            st.set();
            let mut b = [0u8; 8];
            (&s).read(&mut b)
        });
        started.wait();
        grove::yield_now();
        reader.kill();
        assert!(reader.join().unwrap_err().is_killed());
        // Nothing was consumed by the killed read; a fresh read gets the data.
        client.write_all(b"after").unwrap();
        let mut b = [0u8; 5];
        (&server).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"after");
    });
}

#[test]
fn timeout_interrupts_a_read_and_the_stream_still_works() {
    grove::run(|| {
        let (mut client, server) = pair();
        let mut b = [0u8; 4];
        let r = grove::with_timeout(Duration::from_millis(20), || (&server).read(&mut b));
        assert!(r.is_err(), "read finished: {r:?}");
        client.write_all(b"late").unwrap();
        (&server).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"late");
    });
}

#[test]
fn kill_and_timeout_interrupt_accept_and_no_connection_is_lost() {
    grove::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let r = grove::with_timeout(Duration::from_millis(20), || listener.accept());
        assert!(r.is_err());
        let l = listener.clone();
        let acceptor = grove::spawn(move || l.accept().map(|_| ()));
        grove::yield_now();
        acceptor.kill();
        assert!(acceptor.join().unwrap_err().is_killed());
        // A connection made now is accepted by a fresh accept.
        let client = TcpStream::connect(addr).unwrap();
        let (conn, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop(conn);
    });
}

/// A loopback listener whose accept queue is full: further SYNs are dropped, so a
/// connect to it stays in progress (retransmitting) until interrupted. Returns the
/// listener and the connection that fills the queue.
fn full_listener() -> (std::net::TcpListener, Vec<TcpStream>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: `l` owns this descriptor for the call; listen() on a listening socket only
    // changes its backlog (0: one queued connection on Linux).
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().unwrap();
    let mut fill = Vec::new();
    // Fill the queue: connects succeed until it is full, then one stays in progress.
    loop {
        match grove::with_timeout(Duration::from_millis(200), || TcpStream::connect(addr)) {
            Ok(c) => fill.push(c.unwrap()),
            Err(_) => return (l, fill),
        }
        assert!(fill.len() < 16, "accept queue never filled");
    }
}

#[test]
fn timeout_and_kill_interrupt_a_connect_and_the_next_connect_works() {
    grove::run(|| {
        let (l, fill) = full_listener();
        let addr = l.local_addr().unwrap();
        assert!(!fill.is_empty());
        // Timeout: `full_listener` ended on one. Kill:
        let c = grove::spawn(move || TcpStream::connect(addr).map(drop));
        grove::yield_now();
        c.kill();
        assert!(c.join().unwrap_err().is_killed());
        // Drain the queue; a fresh connect then completes and is accepted.
        let l = TcpListener::from_std(l).unwrap();
        for _ in &fill {
            l.accept().unwrap();
        }
        let c = TcpStream::connect(addr).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        drop((c, fill));
    });
}

#[test]
fn connect_timeout_times_out_on_a_full_listener() {
    grove::run(|| {
        let (l, _fill) = full_listener();
        let addr = l.local_addr().unwrap();
        let start = Instant::now();
        let e = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e:?}");
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(start.elapsed() < PATIENCE);
        let zero = TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err();
        assert_eq!(zero.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn connect_timeout_to_an_unroutable_address_never_hangs() {
    grove::run(|| {
        let addr: SocketAddr = "10.255.255.1:80".parse().unwrap();
        let start = Instant::now();
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                assert!(start.elapsed() >= Duration::from_millis(100))
            }
            Err(e) => eprintln!("note: connect failed at once (no route here): {e}"),
            // Some sandboxes answer every SYN through a transparent proxy.
            Ok(s) => eprintln!("note: this network accepted a connection to {addr}: {s:?}"),
        }
        assert!(start.elapsed() < PATIENCE);
    });
}

#[test]
fn read_timeout_returns_timed_out_and_the_stream_still_works() {
    grove::run(|| {
        let (mut client, server) = pair();
        server
            .set_read_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        assert_eq!(
            server.read_timeout().unwrap(),
            Some(Duration::from_millis(30))
        );
        let start = Instant::now();
        let mut b = [0u8; 4];
        let e = (&server).read(&mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(30));
        client.write_all(b"data").unwrap();
        (&server).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"data");
        let zero = server.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(zero.kind(), io::ErrorKind::InvalidInput);
        server.set_read_timeout(None).unwrap();
        assert_eq!(server.read_timeout().unwrap(), None);
    });
}

#[test]
fn connect_refused() {
    grove::run(|| {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    });
}

#[test]
fn from_and_into_std() {
    grove::run(|| {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = TcpListener::try_from(std_listener).unwrap();
        let server = grove::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            // Back to std: a blocking socket again.
            let mut std_conn = conn.into_std().unwrap();
            let mut b = [0u8; 3];
            std_conn.read_exact(&mut b).unwrap();
            std_conn.write_all(&b).unwrap();
            listener.into_std().unwrap()
        });
        // A std stream connected to loopback, made green.
        let std_client = std::net::TcpStream::connect(addr).unwrap();
        let mut client = TcpStream::from_std(std_client).unwrap();
        client.write_all(b"std").unwrap();
        let mut b = [0u8; 3];
        client.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"std");
        let std_listener = server.join().unwrap();
        assert_eq!(std_listener.local_addr().unwrap(), addr);
    });
}

#[test]
fn localhost_names_are_resolved() {
    grove::run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let a = grove::spawn(move || listener.accept().unwrap().1);
        // "localhost" may resolve to ::1 first; connect tries each address in turn.
        let conn = TcpStream::connect(format!("localhost:{port}")).unwrap();
        assert_eq!(a.join().unwrap(), conn.local_addr().unwrap());
        let listener = TcpListener::bind(("localhost", 0)).unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
    });
}

#[test]
fn constructors_outside_a_runtime_return_an_error() {
    let e = TcpListener::bind("127.0.0.1:0").unwrap_err();
    assert!(e.to_string().contains("TcpListener::bind"), "{e}");
    let e = TcpStream::connect("127.0.0.1:1").unwrap_err();
    assert!(e.to_string().contains("grove runtime"), "{e}");
}

#[test]
fn a_stream_made_in_a_greenlet_works_from_a_plain_thread() {
    let rt = grove::Runtime::new().unwrap();
    let (client, server) = rt.block_on(pair);
    let t = std::thread::spawn(move || {
        let mut b = [0u8; 5];
        (&server).read_exact(&mut b).unwrap(); // blocks this thread until data arrives
        b
    });
    rt.block_on(move || (&client).write_all(b"plain").unwrap());
    assert_eq!(&t.join().unwrap(), b"plain");
}

/// Raises the soft `RLIMIT_NOFILE` to at least `needed` (up to the hard limit); false if
/// the hard limit is too low.
fn raise_fd_limit(needed: libc::rlim_t) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, which lives for the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_max < needed {
        eprintln!(
            "skipping: RLIMIT_NOFILE hard limit {} < {needed} needed",
            lim.rlim_max
        );
        return false;
    }
    if lim.rlim_cur < needed {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the
        // hard limit is always allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
    true
}

/// 10,000 connections open at once on loopback (issue 5). The client ends live in a child
/// process so each process needs ~10k descriptors, not 20k.
#[test]
fn ten_thousand_concurrent_connections() {
    const N: usize = 10_000;
    if common::is_child() {
        assert!(raise_fd_limit(N as libc::rlim_t + 500));
        let addr: SocketAddr = std::env::var("GROVE_TEST_ADDR").unwrap().parse().unwrap();
        grove::run(move || {
            // Connect in waves of 500 (the listener's backlog is 1024: an overflow would
            // cost a one-second SYN retransmit).
            let mut clients = Vec::with_capacity(N);
            for _ in 0..N / 500 {
                let hs: Vec<_> = (0..500)
                    .map(|_| grove::spawn(move || TcpStream::connect(addr).unwrap()))
                    .collect();
                clients.extend(hs.into_iter().map(|h| h.join().unwrap()));
            }
            // All N open at once: each does one round trip, and all stay open until the end.
            let hs: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    grove::spawn(move || {
                        (&c).write_all(&[i as u8]).unwrap();
                        let mut b = [0u8; 1];
                        (&c).read_exact(&mut b).unwrap();
                        assert_eq!(b[0], i as u8);
                        c
                    })
                })
                .collect();
            let clients: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(clients.len(), N);
            // Say goodbye and let the server close first, so TIME_WAIT lands on the
            // server's side and repeated runs do not use up the client's ephemeral ports.
            let hs: Vec<_> = clients
                .into_iter()
                .map(|c| {
                    grove::spawn(move || {
                        (&c).write_all(b"x").unwrap();
                        let mut rest = Vec::new();
                        (&c).read_to_end(&mut rest).unwrap();
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        });
        return;
    }
    if !raise_fd_limit(N as libc::rlim_t + 500) {
        return;
    }
    let start = Instant::now();
    let rt = grove::Runtime::new().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (open2, peak2) = (open.clone(), peak.clone());
    let (addr, server) = rt.block_on(move || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = grove::spawn(move || {
            let conns: Vec<_> = (0..N)
                .map(|_| {
                    let (conn, _) = listener.accept().unwrap();
                    let now = open2.fetch_add(1, Ordering::SeqCst) + 1;
                    peak2.fetch_max(now, Ordering::SeqCst);
                    let open = open2.clone();
                    grove::spawn(move || {
                        // Echo one byte, then close when the client says goodbye.
                        let mut b = [0u8; 1];
                        (&conn).read_exact(&mut b).unwrap();
                        (&conn).write_all(&b).unwrap();
                        (&conn).read_exact(&mut b).unwrap();
                        open.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for c in conns {
                c.join().unwrap();
            }
        });
        (addr, server)
    });
    let out = common::run_child(
        "ten_thousand_concurrent_connections",
        &[("GROVE_TEST_ADDR", &addr.to_string())],
    );
    assert!(
        out.status.success(),
        "client process failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    rt.block_on(move || server.join().unwrap());
    assert_eq!(peak.load(Ordering::SeqCst), N);
    assert_eq!(open.load(Ordering::SeqCst), 0);
    eprintln!("10,000 concurrent connections: {:?}", start.elapsed());
}

/// After a short read (the receive queue drained), the next read skips its syscall and
/// waits, like tokio's; data that arrived in between, its event already dispatched, must
/// still be read at once rather than wait for an event that already came. Likewise a
/// short write (the send queue full) waits for room and then completes.
#[test]
fn data_arriving_after_a_short_transfer_is_not_stranded() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"hello").unwrap();
            go_rx.recv().unwrap();
            s.write_all(b"world").unwrap();
            sent_tx.send(()).unwrap();
            // Read until the server's big write is all here, then answer.
            let mut total = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while total < 8 * 1024 * 1024 {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "server closed early");
                total += n;
            }
            s.write_all(b"!").unwrap();
        });
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn.set_write_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < 5 {
            got += (&conn).read(&mut buf[got..]).unwrap();
        }
        assert_eq!(&buf[..5], b"hello");
        go_tx.send(()).unwrap();
        // The bytes are in the kernel; let the worker go idle so that their readiness
        // event is harvested and dispatched before the next read looks.
        while sent_rx.try_recv().is_err() {
            grove::sleep(Duration::from_millis(1));
        }
        grove::sleep(Duration::from_millis(20));
        let n = (&conn)
            .read(&mut buf)
            .expect("data sent after a short read was stranded");
        assert_eq!(&buf[..n], &b"world"[..n]);
        // A write much larger than the send queue: short writes, then waits for room.
        let big = vec![7u8; 8 * 1024 * 1024];
        (&conn)
            .write_all(&big)
            .expect("a write after a short write stalled");
        let mut one = [0u8; 1];
        (&conn).read_exact(&mut one).unwrap();
        assert_eq!(&one, b"!");
        client.join().unwrap();
    });
}
