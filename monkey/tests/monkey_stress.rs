//! Everything at once, for a few seconds (`GROVE_MONKEY_STRESS_SECS`, default 3) on two
//! workers: std::net echo through a listener shared by acceptor greenlets on both
//! workers and a plain thread, clients killed and timed out mid-read, fds closed under
//! waiting greenlets, fd numbers churned, std sleeps, green `poll` on pipes, signals
//! at the workers, and fork children that close every fd. Then an audit: every echo
//! verified, every kind of event happened, no fd leaked, the runtime shuts down.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{errno, rt, within};

#[derive(Default)]
struct Counts {
    echoes: AtomicU64,
    plain_accepts: AtomicU64,
    kills: AtomicU64,
    timeouts: AtomicU64,
    closed_waits: AtomicU64,
    sleeps: AtomicU64,
    polls: AtomicU64,
    forks: AtomicU64,
    signals: AtomicU64,
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

extern "C" fn on_signal(_: libc::c_int) {}

fn echo_handler(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn client(addr: std::net::SocketAddr, seed: u64, c: &Counts) {
    let mut seed = seed | 1;
    let mut s = TcpStream::connect(addr).unwrap();
    let len = (rng(&mut seed) % 100_000) as usize + 1;
    let msg: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let m2 = msg.clone();
    let writer = grove::spawn(move || w.write_all(&m2).unwrap());
    let mut got = vec![0u8; len];
    s.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == msg, "echo mismatch");
    c.echoes.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn stress_everything_at_once() {
    let secs: u64 = std::env::var("GROVE_MONKEY_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    within(Duration::from_secs(secs * 10 + 60), "stress", move || {
        // SAFETY: installing a handler that does nothing, without SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
        }
        let fds_before = open_fds();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = Arc::new(Mutex::new(Vec::<libc::pthread_t>::new()));
        let rt = rt(2);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A plain thread shares the listener with the acceptor greenlets.
        let plain_listener = listener.try_clone().unwrap();
        let (c2, s2) = (counts.clone(), stop.clone());
        let plain = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                if let Ok((s, _)) = plain_listener.accept() {
                    c2.plain_accepts.fetch_add(1, Ordering::Relaxed);
                    std::thread::spawn(move || echo_handler(s));
                }
            }
        });
        let (t2, s3, c3) = (threads.clone(), stop.clone(), counts.clone());
        let signaller = std::thread::spawn(move || {
            while !s3.load(Ordering::SeqCst) {
                for &t in t2.lock().unwrap().iter() {
                    // SAFETY: worker threads outlive this thread (joined before drop).
                    unsafe { libc::pthread_kill(t, libc::SIGUSR2) };
                    c3.signals.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        });

        let (c, st, th) = (counts.clone(), stop.clone(), threads.clone());
        rt.block_on(move || {
            let listener = Arc::new(listener);
            let mut acceptors = Vec::new();
            for _ in 0..4 {
                let (l, st, th) = (listener.clone(), st.clone(), th.clone());
                acceptors.push(grove::spawn(move || {
                    // SAFETY: pthread_self has no preconditions.
                    th.lock().unwrap().push(unsafe { libc::pthread_self() });
                    while !st.load(Ordering::SeqCst) {
                        if let Ok((s, _)) = l.accept() {
                            grove::spawn(move || echo_handler(s));
                        }
                    }
                }));
            }
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            let mut live = Vec::new();
            while Instant::now() < deadline {
                let c = c.clone();
                let s = rng(&mut seed);
                let h = match s % 7 {
                    0 | 1 => grove::spawn(move || client(addr, s, &c)),
                    2 => grove::spawn(move || {
                        // Killed while waiting in read.
                        let (mut a, _b) = (TcpStream::connect(addr).unwrap(), ());
                        let me = grove::current();
                        let killer = grove::spawn(move || {
                            grove::sleep(Duration::from_millis(1));
                            me.kill_nowait();
                        });
                        let r = a.read(&mut [0u8; 1]);
                        killer.join().unwrap();
                        assert_eq!(r.map_err(|e| errno(&e)).err(), Some(libc::ECANCELED));
                        c.kills.fetch_add(1, Ordering::Relaxed);
                        grove::yield_now(); // the kill unwinds here
                        unreachable!();
                    }),
                    3 => grove::spawn(move || {
                        let mut a = TcpStream::connect(addr).unwrap();
                        let r = grove::with_timeout(Duration::from_millis(2), || {
                            let _ = a.read(&mut [0u8; 1]);
                            grove::yield_now();
                        });
                        assert!(r.is_err());
                        c.timeouts.fetch_add(1, Ordering::Relaxed);
                    }),
                    4 => grove::spawn(move || {
                        // Closed under a waiting greenlet (the peer never writes).
                        let fd = TcpStream::connect(addr).unwrap().into_raw_fd();
                        let reader = grove::spawn(move || {
                            // SAFETY: borrowed; forgotten, never closed here.
                            let mut s = unsafe { TcpStream::from_raw_fd(fd) };
                            let r = s.read(&mut [0u8; 1]).map_err(|e| errno(&e));
                            std::mem::forget(s);
                            r
                        });
                        grove::sleep(Duration::from_millis(1));
                        // SAFETY: closing the number the reader borrowed.
                        unsafe { libc::close(fd) };
                        assert_eq!(reader.join().unwrap(), Err(libc::EBADF));
                        c.closed_waits.fetch_add(1, Ordering::Relaxed);
                    }),
                    5 => grove::spawn(move || {
                        std::thread::sleep(Duration::from_millis(s % 5));
                        let (rd, mut wr) = std::io::pipe().unwrap();
                        let w = grove::spawn(move || {
                            wr.write_all(b"p").unwrap();
                            wr
                        });
                        let mut p = libc::pollfd {
                            fd: rd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd.
                        let n = unsafe { libc::poll(&mut p, 1, 10_000) };
                        let e = std::io::Error::last_os_error();
                        assert_eq!(n, 1, "poll: {e}");
                        drop(w.join().unwrap());
                        c.sleeps.fetch_add(1, Ordering::Relaxed);
                        c.polls.fetch_add(1, Ordering::Relaxed);
                    }),
                    _ => grove::spawn(move || {
                        if s % 50 != 0 {
                            return client(addr, s, &c);
                        }
                        // SAFETY: the child closes fds with raw syscalls and `_exit`s.
                        let pid = unsafe { libc::fork() };
                        if pid == 0 {
                            for fd in 3..1024 {
                                // SAFETY: closing numbers in the child only.
                                unsafe { libc::close(fd) };
                            }
                            // SAFETY: leaving the child without unwinding.
                            unsafe { libc::_exit(0) };
                        }
                        assert!(pid > 0);
                        let st = grove::blocking::spawn_blocking(move || {
                            let mut st = 0;
                            // SAFETY: our own child.
                            unsafe { libc::waitpid(pid, &mut st, 0) };
                            st
                        })
                        .join()
                        .unwrap();
                        assert_eq!(st, 0);
                        c.forks.fetch_add(1, Ordering::Relaxed);
                    }),
                };
                live.push((s % 7, h));
                if live.len() >= 64 {
                    for (kind, h) in live.drain(..) {
                        match (kind, h.join()) {
                            (2, Err(e)) => assert!(e.is_killed(), "{e}"),
                            (_, r) => r.unwrap(),
                        }
                    }
                }
            }
            for (kind, h) in live {
                match (kind, h.join()) {
                    (2, Err(e)) => assert!(e.is_killed(), "{e}"),
                    (_, r) => r.unwrap(),
                }
            }
            st.store(true, Ordering::SeqCst);
            // Wake the acceptors (and the plain thread) with one connection each.
            for _ in 0..8 {
                let _ = TcpStream::connect(addr);
            }
            for a in acceptors {
                a.join().unwrap();
            }
        });
        stop.store(true, Ordering::SeqCst);
        signaller.join().unwrap();
        let _ = TcpStream::connect(addr);
        plain.join().unwrap();
        assert!(rt.shutdown_timeout(Duration::from_secs(10)), "shutdown");
        let c = &counts;
        let all = [
            ("echoes", c.echoes.load(Ordering::Relaxed)),
            ("kills", c.kills.load(Ordering::Relaxed)),
            ("timeouts", c.timeouts.load(Ordering::Relaxed)),
            ("closed_waits", c.closed_waits.load(Ordering::Relaxed)),
            ("sleeps", c.sleeps.load(Ordering::Relaxed)),
            ("polls", c.polls.load(Ordering::Relaxed)),
            ("forks", c.forks.load(Ordering::Relaxed)),
            ("signals", c.signals.load(Ordering::Relaxed)),
        ];
        eprintln!(
            "stress: {all:?}, plain accepts {}",
            c.plain_accepts.load(Ordering::Relaxed)
        );
        for (what, n) in all {
            assert!(n > 0, "no {what} happened: {all:?}");
        }
        // Handler threads of the plain acceptor may still be closing their sockets.
        let deadline = Instant::now() + Duration::from_secs(10);
        while open_fds() > fds_before + 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            open_fds() <= fds_before + 4,
            "fds leaked: {} -> {}",
            fds_before,
            open_fds()
        );
    });
}
