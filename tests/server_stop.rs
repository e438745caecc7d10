//! A server's stop keeps its word (issue 11): `serve_forever` returns only once the stop
//! has finished, so a request in flight when another OS thread calls `stop` gets its
//! whole response; `stop` may be called from anywhere any number of times and reports
//! truthfully what finished and what was killed; per-connection limits
//! (`read_timeout`, `first_bytes_timeout`) hold without the handler's help and report
//! `TimedOut`; the handlers' spawn site is the user's `bind`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove::net::TcpStream;
use grove::server::{StopReport, StreamServer};
use grove::sync::Event;

/// Generous bound for "does not hang" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(10);

fn runtime() -> grove::Runtime {
    grove::Runtime::builder().workers(2).build().unwrap()
}

/// Waits until the server's stop has begun. (Not by probing with connects: a probe
/// accepted just before the listener closes would be one more handler to drain.)
fn wait_closed(server: &StreamServer) {
    let start = Instant::now();
    while !server.is_closed() {
        assert!(start.elapsed() < PATIENCE, "the stop never began");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Connects a plain client and waits until its handler has read `hello\n` (counted in
/// `arrived`), so the handler is running for sure.
fn client_in_handler(addr: SocketAddr, arrived: &AtomicUsize, n: usize) -> std::net::TcpStream {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"hello\n").unwrap();
    let start = Instant::now();
    while arrived.load(Ordering::SeqCst) < n {
        assert!(start.elapsed() < PATIENCE, "the handler never ran");
        std::thread::yield_now();
    }
    c
}

/// The race from issue 11: the main greenlet is in `serve_forever`; another OS thread
/// calls `stop(5 s)` while a handler is mid-request. Before the fix `serve_forever`
/// returned at once, `block_on` returned, the runtime went down and the client got EOF
/// with no response, while `stop` reported a graceful stop.
#[test]
fn serve_forever_returns_after_the_stop_has_drained_a_request_in_flight() {
    let rt = runtime();
    let arrived = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel::<StreamServer>();
    let main = {
        let arrived = arrived.clone();
        std::thread::spawn(move || {
            rt.block_on(move || {
                let server = StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
                    let mut r = BufReader::new(&conn);
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap(); // "hello"
                    arrived.fetch_add(1, Ordering::SeqCst);
                    line.clear();
                    r.read_line(&mut line).unwrap(); // the rest of the request
                    (&conn)
                        .write_all(format!("full response to {line}").as_bytes())
                        .unwrap();
                })
                .unwrap();
                tx.send(server.clone()).unwrap();
                server.serve_forever().unwrap();
                server.stop_report()
            })
        })
    };
    let server = rx.recv().unwrap();
    let addr = server.local_addr();
    let mut client = client_in_handler(addr, &arrived, 1);
    let stopper = {
        let server = server.clone();
        std::thread::spawn(move || server.drain(Duration::from_secs(5)))
    };
    wait_closed(&server);
    // The stop has begun and the request is still in flight: finish it.
    client.write_all(b"the request\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "full response to the request\n");
    let report = stopper.join().unwrap();
    assert_eq!((report.finished, report.killed), (1, 0), "{report:?}");
    assert!(report.graceful());
    // `serve_forever` returned only after that stop: it saw the report.
    assert_eq!(main.join().unwrap(), Some(report));
}

/// `stop` from two OS threads and a greenlet at once, and again later: one stop runs,
/// every caller gets its report, and the report counts what really happened.
#[test]
fn stop_from_anywhere_any_number_of_times_reports_truthfully() {
    let rt = runtime();
    let arrived = Arc::new(AtomicUsize::new(0));
    let server = {
        let arrived = arrived.clone();
        rt.block_on(move || {
            let s = StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
                let mut r = BufReader::new(&conn);
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                arrived.fetch_add(1, Ordering::SeqCst);
                // Until the client closes (or this handler is killed).
                let _ = r.read_to_end(&mut Vec::new());
            })
            .unwrap();
            s.start().unwrap();
            s
        })
    };
    let addr = server.local_addr();
    let clients: Vec<_> = (1..=3)
        .map(|n| client_in_handler(addr, &arrived, n))
        .collect();
    let timeout = Duration::from_secs(2);
    let first = {
        let s = server.clone();
        std::thread::spawn(move || s.drain(timeout))
    };
    wait_closed(&server);
    let second = {
        let s = server.clone();
        std::thread::spawn(move || s.drain(Duration::ZERO))
    };
    let s = server.clone();
    let from_greenlet = rt.spawn(move || s.stop(Duration::ZERO));
    // Two clients hang up: their handlers finish; the third is killed at the timeout.
    let mut clients = clients.into_iter();
    drop(clients.next());
    drop(clients.next());
    let started = Instant::now();
    let report = first.join().unwrap();
    assert!(started.elapsed() < PATIENCE);
    let expected = StopReport {
        finished: 2,
        killed: 1,
        ..StopReport::default()
    };
    assert_eq!(report, expected);
    assert_eq!(second.join().unwrap(), expected);
    assert!(!from_greenlet.join().unwrap());
    assert_eq!(
        server.drain(timeout),
        expected,
        "a later call returns the same report"
    );
    assert_eq!(server.stop_report(), Some(expected));
    assert_eq!(
        report.to_string(),
        "drained 3 handler(s): 2 finished, 1 killed"
    );
    assert_eq!(server.active_handlers(), 0);
}

/// A handler that stops its own server is among those drained (and killed at the
/// timeout); the stop still finishes and `serve_forever` returns.
#[test]
fn stop_from_a_handler_finishes() {
    runtime().block_on(|| {
        let cell: Arc<Mutex<Option<StreamServer>>> = Arc::default();
        let c2 = cell.clone();
        let server = StreamServer::bind("127.0.0.1:0", move |_conn: TcpStream, _| {
            let s = c2.lock().unwrap().clone().unwrap();
            s.stop(Duration::from_millis(50));
            unreachable!("the handler is killed by its own stop");
        })
        .unwrap();
        *cell.lock().unwrap() = Some(server.clone());
        let runner = server.clone();
        let serving = grove::spawn(move || runner.serve_forever());
        let _client = TcpStream::connect(server.local_addr()).unwrap();
        serving.join().unwrap().unwrap();
        let report = server.stop_report().unwrap();
        assert_eq!((report.finished, report.killed), (0, 1));
    });
}

/// `read_timeout`: the handler's read fails with `TimedOut` (not `WouldBlock`) without
/// the handler setting anything.
#[test]
fn read_timeout_is_applied_and_reports_timed_out() {
    runtime().block_on(|| {
        let kinds = Arc::new(Mutex::new(Vec::new()));
        let k2 = kinds.clone();
        let server = StreamServer::bind("127.0.0.1:0", move |mut conn: TcpStream, _| {
            let e = conn.read(&mut [0u8; 8]).unwrap_err();
            k2.lock().unwrap().push(e.kind());
        })
        .unwrap()
        .read_timeout(Duration::from_millis(50));
        server.start().unwrap();
        // Timed from before the connect: the handler's read starts after it.
        let started = Instant::now();
        let mut client = TcpStream::connect(server.local_addr()).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        // The handler returns after its timeout, which closes the connection.
        assert_eq!(client.read(&mut [0u8; 8]).unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(server.stop(PATIENCE));
        assert_eq!(*kinds.lock().unwrap(), vec![std::io::ErrorKind::TimedOut]);
    });
}

/// `first_bytes_timeout`: a silent connection is closed without running the handler; one
/// that speaks in time is handled.
#[test]
fn first_bytes_timeout_closes_silent_connections_unhandled() {
    runtime().block_on(|| {
        let handled = Arc::new(AtomicUsize::new(0));
        let h2 = handled.clone();
        let server = StreamServer::bind("127.0.0.1:0", move |mut conn: TcpStream, _| {
            h2.fetch_add(1, Ordering::SeqCst);
            let mut b = [0u8; 5];
            conn.read_exact(&mut b).unwrap();
            conn.write_all(&b).unwrap();
        })
        .unwrap()
        .first_bytes_timeout(Duration::from_millis(100));
        server.start().unwrap();
        let addr = server.local_addr();
        let mut silent = TcpStream::connect(addr).unwrap();
        silent.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut talker = TcpStream::connect(addr).unwrap();
        talker.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        talker.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");
        let started = Instant::now();
        assert_eq!(silent.read(&mut b).unwrap(), 0, "closed, no reply");
        assert!(started.elapsed() < PATIENCE);
        assert!(server.stop(PATIENCE));
        assert_eq!(handled.load(Ordering::SeqCst), 1);
    });
}

/// The monitor and run-info name the user's `bind` as a handler's spawn site, not
/// grove's server.rs.
#[test]
fn handlers_are_spawned_at_the_users_bind() {
    let rt = runtime();
    let parked = Arc::new(Event::new());
    let p2 = parked.clone();
    let (server, bind_line) = rt.block_on(move || {
        let line = line!() + 1;
        let s = StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
            p2.set();
            let _ = (&conn).read(&mut [0u8; 1]);
        })
        .unwrap();
        s.start().unwrap();
        (s, line)
    });
    let _client = std::net::TcpStream::connect(server.local_addr()).unwrap();
    assert!(parked.wait_timeout(PATIENCE));
    let start = Instant::now();
    let handler = loop {
        let info = rt.dump();
        if let Some(g) = info.greenlets.iter().find(|g| {
            g.waiting_on == Some(grove::greenlet::WaitReason::SOCKET_READ)
                && g.spawned_at.line() == bind_line
        }) {
            break g.clone();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no handler spawned at line {bind_line}: {info}"
        );
        std::thread::yield_now();
    };
    assert!(handler.spawned_at.file().ends_with("server_stop.rs"));
    rt.block_on(move || assert!(!server.stop(Duration::from_millis(10))));
}

/// The monitor names the user's `bind` as the spawn site of a handler that holds its
/// worker, not grove's server.rs (issue 11).
#[test]
fn the_monitor_names_the_users_bind_for_a_stalling_handler() {
    let (tx, rx) = std::sync::mpsc::channel();
    let reported = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r2 = reported.clone();
    let rt = grove::Runtime::builder()
        .workers(2)
        .monitor(Some(Duration::from_millis(20)))
        .on_stall(move |r| {
            let _ = tx.send((r.spawned_at.file(), r.spawned_at.line()));
            r2.store(true, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let (server, bind_line) = rt.block_on(move || {
        let line = line!() + 1;
        let s = StreamServer::bind("127.0.0.1:0", move |_conn: TcpStream, _| {
            // Holds its worker, never blocking, until the monitor has reported it.
            let start = Instant::now();
            while !reported.load(Ordering::SeqCst) && start.elapsed() < PATIENCE {
                std::hint::spin_loop();
            }
        })
        .unwrap();
        s.start().unwrap();
        (s, line)
    });
    let _client = std::net::TcpStream::connect(server.local_addr()).unwrap();
    let (file, line) = rx.recv_timeout(PATIENCE).expect("no stall reported");
    assert!(file.ends_with("server_stop.rs"), "{file}:{line}");
    assert_eq!(line, bind_line);
    rt.block_on(move || server.stop(PATIENCE));
}

/// A stop after the runtime is gone (its stopping greenlet cannot run) still returns,
/// from any thread, and reports the handlers the shutdown killed.
#[test]
fn stop_after_the_runtime_shut_down_returns() {
    let rt = runtime();
    let arrived = Arc::new(AtomicUsize::new(0));
    let server = {
        let arrived = arrived.clone();
        rt.block_on(move || {
            let s = StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                arrived.fetch_add(1, Ordering::SeqCst);
                let _ = (&conn).read(&mut [0u8; 1]);
            })
            .unwrap();
            s.start().unwrap();
            s
        })
    };
    let _client = client_in_handler(server.local_addr(), &arrived, 1);
    drop(rt);
    let (tx, rx) = std::sync::mpsc::channel();
    let s = server.clone();
    std::thread::spawn(move || tx.send(s.drain(Duration::from_secs(1))).unwrap());
    let report = rx.recv_timeout(PATIENCE).expect("stop hung after shutdown");
    assert_eq!(report.finished, 0, "{report:?}");
    assert!(server.is_closed());
    assert_eq!(server.stop_report(), Some(report));
}
