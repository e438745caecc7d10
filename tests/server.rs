//! `grove::server`: echo round trips over `StreamServer` across many clients, the chat
//! example's broadcast among three users, pool backpressure (none lost), graceful and
//! forced stop, accept-error backoff at `EMFILE` (no spinning, serves again), and a
//! `DatagramServer` echo. gevent's counterpart is `src/gevent/tests/test__server.py`.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat.rs"]
mod chat;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/echo.rs"]
mod echo;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove::net::{TcpStream, UdpSocket};
use grove::server::{DatagramServer, StreamServer};

/// Generous bound for "does not hang" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(10);

fn runtime() -> grove::Runtime {
    grove::Runtime::builder().workers(2).build().unwrap()
}

#[test]
fn echo_round_trips_many_concurrent_clients() {
    const CLIENTS: usize = 100;
    const MESSAGES: usize = 20;
    runtime().block_on(|| {
        let server = StreamServer::bind("127.0.0.1:0", echo::handle).unwrap();
        server.start().unwrap();
        let addr = server.local_addr();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                grove::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(PATIENCE)).unwrap();
                    let mut buf = [0u8; 32];
                    for m in 0..MESSAGES {
                        let msg = [(c * 7 + m) as u8; 32];
                        s.write_all(&msg).unwrap();
                        s.read_exact(&mut buf).unwrap();
                        assert_eq!(buf, msg);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        // Every client closed: the handlers return by themselves.
        assert!(server.stop(PATIENCE));
        assert_eq!(server.active_handlers(), 0);
    });
}

/// A line-oriented client of the chat example.
struct ChatClient {
    conn: TcpStream,
    lines: BufReader<TcpStream>,
}

impl ChatClient {
    fn connect(addr: SocketAddr) -> ChatClient {
        let conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let lines = BufReader::new(conn.clone());
        let mut c = ChatClient { conn, lines };
        assert_eq!(c.line(), chat::PROMPT);
        c
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.lines.read_line(&mut l).unwrap();
        l
    }

    fn say(&mut self, text: &str) {
        self.conn.write_all(format!("{text}\n").as_bytes()).unwrap();
    }

    fn join(addr: SocketAddr, name: &str) -> ChatClient {
        let mut c = ChatClient::connect(addr);
        c.say(name);
        assert!(c.line().starts_with(&format!("Welcome, {name}!")));
        c
    }
}

#[test]
fn chat_example_broadcasts_among_three_users() {
    runtime().block_on(|| {
        let room = chat::Room::new();
        let server = StreamServer::bind("127.0.0.1:0", chat::handler(room.clone())).unwrap();
        server.start().unwrap();
        let addr = server.local_addr();

        let mut alice = ChatClient::join(addr, "alice");
        let mut bob = ChatClient::join(addr, "bob");
        assert_eq!(alice.line(), "* bob joined\n");
        let mut carol = ChatClient::join(addr, "carol");
        assert_eq!(alice.line(), "* carol joined\n");
        assert_eq!(bob.line(), "* carol joined\n");
        assert_eq!(room.names(), ["alice", "bob", "carol"]);

        // A taken name is refused and the prompt repeated.
        let mut impostor = ChatClient::connect(addr);
        impostor.say("alice");
        assert_eq!(impostor.line(), "Sorry, the name 'alice' is taken.\n");
        assert_eq!(impostor.line(), chat::PROMPT);
        drop(impostor);

        // A line from one user reaches the two others, in order. (Bob answers once he has
        // Alice's line: two users' lines sent at the same moment are read by handlers that
        // may run on different workers, and the room promises no order between them.)
        alice.say("hello all");
        assert_eq!(bob.line(), "[alice] hello all\n");
        bob.say("hi alice");
        assert_eq!(carol.line(), "[alice] hello all\n");
        assert_eq!(carol.line(), "[bob] hi alice\n");
        assert_eq!(alice.line(), "[bob] hi alice\n");

        // Leaving: /quit is answered, the connection closed, the others told.
        carol.say("/quit");
        assert_eq!(carol.line(), "Bye!\n");
        assert_eq!(carol.line(), "", "the server closes the connection");
        assert_eq!(alice.line(), "* carol left\n");
        assert_eq!(bob.line(), "* carol left\n");
        // Closing the connection leaves too.
        drop(bob);
        assert_eq!(alice.line(), "* bob left\n");
        assert_eq!(room.names(), ["alice"]);

        drop(alice);
        assert!(server.stop(PATIENCE));
        assert!(room.names().is_empty());
    });
}

#[test]
fn full_pool_stops_accepting_and_loses_no_client() {
    runtime().block_on(|| {
        let started = Arc::new(AtomicUsize::new(0));
        let go = grove::sync::Event::new();
        let server = {
            let (started, go) = (started.clone(), go.clone());
            StreamServer::bind("127.0.0.1:0", move |mut conn: TcpStream, _| {
                started.fetch_add(1, Ordering::SeqCst);
                go.wait();
                let _ = conn.write_all(b"served");
            })
            .unwrap()
            .pool(2)
        };
        server.start().unwrap();
        let addr = server.local_addr();
        let clients: Vec<_> = (0..4)
            .map(|_| {
                grove::spawn(move || {
                    // Connecting succeeds for all four: the kernel completes the
                    // handshake and queues the connection in the backlog.
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(PATIENCE)).unwrap();
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).unwrap();
                    got
                })
            })
            .collect();
        while started.load(Ordering::SeqCst) < 2 {
            grove::sleep(Duration::from_millis(1));
        }
        // Give a wrongly eager accept loop ample time to start a third handler.
        grove::sleep(Duration::from_millis(200));
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert_eq!(server.active_handlers(), 2);

        go.set();
        for c in clients {
            assert_eq!(c.join().unwrap(), b"served");
        }
        assert_eq!(started.load(Ordering::SeqCst), 4);
        assert!(server.stop(PATIENCE));
    });
}

#[test]
fn stop_waits_for_handlers_that_finish() {
    runtime().block_on(|| {
        let done = Arc::new(AtomicUsize::new(0));
        let server = {
            let done = done.clone();
            StreamServer::bind("127.0.0.1:0", move |conn: TcpStream, _| {
                grove::sleep(Duration::from_millis(50));
                let _ = (&conn).write_all(b"bye");
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        };
        server.start().unwrap();
        let addr = server.local_addr();
        let conns: Vec<_> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        while server.active_handlers() < 3 {
            grove::sleep(Duration::from_millis(1));
        }
        assert!(
            server.stop(PATIENCE),
            "handlers finishing in time: graceful"
        );
        assert_eq!(done.load(Ordering::SeqCst), 3);
        // Each connection got its reply, then was closed by the server.
        for mut c in conns {
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"bye");
        }
        // The listener is closed.
        assert!(TcpStream::connect(addr).is_err());
        assert!(server.start().is_err(), "a stopped server does not restart");
    });
}

#[test]
fn stop_kills_handlers_that_do_not_finish() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    runtime().block_on(|| {
        let unwound = Arc::new(AtomicBool::new(false));
        let server = {
            let unwound = unwound.clone();
            StreamServer::bind("127.0.0.1:0", move |_conn: TcpStream, _| {
                let _guard = SetOnDrop(unwound.clone());
                grove::sync::Event::new().wait(); // never returns by itself
            })
            .unwrap()
        };
        // serve_forever in a greenlet of its own; it returns Ok once stopped.
        let runner = server.clone();
        let serving = grove::spawn(move || runner.serve_forever());
        let mut conn = TcpStream::connect(server.local_addr()).unwrap();
        while server.active_handlers() < 1 {
            grove::sleep(Duration::from_millis(1));
        }
        assert!(
            !server.stop(Duration::from_millis(50)),
            "a straggler was killed"
        );
        assert!(unwound.load(Ordering::SeqCst), "its destructors ran");
        assert_eq!(server.active_handlers(), 0);
        serving.join().unwrap().unwrap();
        // The killed handler's connection was closed.
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        assert_eq!(conn.read_to_end(&mut got).unwrap_or(0), 0);
    });
}

/// This process's user + system CPU time, from `/proc/self/stat` (clock ticks), read
/// through a file opened beforehand (no descriptor to spare at `EMFILE`).
fn cpu_ticks(stat_file: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let n = stat_file.read_at(&mut buf, 0).unwrap();
    let stat = String::from_utf8_lossy(&buf[..n]);
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The lowest descriptor number not in use.
fn lowest_free_fd() -> libc::rlim_t {
    let used: std::collections::HashSet<libc::rlim_t> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap()
}

fn set_nofile(soft: libc::rlim_t, hard: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid, initialised rlimit that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

fn nofile() -> (libc::rlim_t, libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill in.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0);
    (lim.rlim_cur, lim.rlim_max)
}

#[test]
fn emfile_is_waited_out_without_spinning() {
    if !common::is_child() {
        let out = common::run_child("emfile_is_waited_out_without_spinning", &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("EMFILE-CHILD-OK"), "{stdout}\n{stderr}");
        // One log line per burst of failures, one when accepting works again.
        let failed = stderr.matches("grove::server: accept on").count();
        assert_eq!(
            failed, 2,
            "expected one failure and one recovery line:\n{stderr}"
        );
        assert!(stderr.contains("Too many open files"), "{stderr}");
        return;
    }
    let rt = runtime();
    let server = rt.block_on(|| {
        let s = StreamServer::bind("127.0.0.1:0", echo::handle).unwrap();
        s.start().unwrap();
        s
    });
    let addr = server.local_addr();
    // Client sockets are made before the limit drops (connecting needs no new fd).
    let clients: Vec<socket2::Socket> = (0..3)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    let stat_file = std::fs::File::open("/proc/self/stat").unwrap();
    let (soft, hard) = nofile();
    set_nofile(lowest_free_fd(), hard);
    for c in &clients {
        c.connect(&addr.into()).unwrap(); // queued in the backlog: accept hits EMFILE
    }
    let (t0, c0) = (Instant::now(), cpu_ticks(&stat_file));
    std::thread::sleep(Duration::from_secs(1));
    let (spent, elapsed) = (cpu_ticks(&stat_file) - c0, t0.elapsed());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let cpu = Duration::from_millis(spent * 1000 / hz);
    // A spinning accept loop burns a whole core (~1 s here); backoff sleeps.
    assert!(
        cpu < elapsed / 4,
        "server used {cpu:?} CPU in {elapsed:?} while accept failed"
    );

    // Descriptors free up: the queued clients are served.
    set_nofile(soft, hard);
    for c in clients {
        let mut s: std::net::TcpStream = c.into();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"again").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"again");
    }
    assert!(rt.block_on(move || server.stop(PATIENCE)));
    println!("EMFILE-CHILD-OK");
}

#[test]
fn datagram_server_echoes() {
    runtime().block_on(|| {
        let server = DatagramServer::bind("127.0.0.1:0", |data, peer, socket| {
            let _ = socket.send_to(data, peer);
        })
        .unwrap()
        .pool(4);
        let runner = server.clone();
        let serving = grove::spawn(move || runner.serve_forever());
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();
        for i in 0..20u8 {
            client.send_to(&[i; 100], server.local_addr()).unwrap();
            let mut buf = [0u8; 200];
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, server.local_addr());
            got.push(buf[..n].to_vec());
        }
        assert!(got.iter().enumerate().all(|(i, d)| d == &[i as u8; 100]));
        assert!(server.stop(PATIENCE));
        serving.join().unwrap().unwrap();
    });
}
