//! Unmodified std code inside greenlets: `std::thread::sleep`, `std::net` servers and
//! clients, on few workers, never holding a worker thread.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{rt, within};

#[test]
fn std_sleep_in_10k_greenlets_on_2_workers_takes_about_one_sleep() {
    let elapsed = within(Duration::from_secs(120), "10k sleepers", || {
        let rt = rt(2);
        rt.block_on(|| {
            let t = Instant::now();
            let hs: Vec<_> = (0..10_000)
                .map(|_| grove::spawn(|| std::thread::sleep(Duration::from_millis(200))))
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            t.elapsed()
        })
    });
    // Blocking the threads would take 10,000 × 200 ms / 2 = 1,000 s.
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(10),
        "10k sleeps of 200 ms took {elapsed:?}"
    );
}

#[test]
fn std_sleep_outside_greenlets_still_sleeps_the_thread() {
    let _rt = rt(1);
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(50));
    assert!(t.elapsed() >= Duration::from_millis(50));
}

/// Echo over std::net, server and 50 clients all greenlets of ONE worker: any blocking
/// call would deadlock it.
#[test]
fn std_net_server_and_clients_on_one_worker() {
    within(Duration::from_secs(60), "std::net echo", || {
        let rt = rt(1);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = grove::spawn(move || {
                let mut handlers = Vec::new();
                for _ in 0..50 {
                    let (mut s, _) = listener.accept().unwrap();
                    handlers.push(grove::spawn(move || {
                        let mut buf = [0u8; 1024];
                        loop {
                            let n = s.read(&mut buf).unwrap();
                            if n == 0 {
                                break;
                            }
                            s.write_all(&buf[..n]).unwrap();
                        }
                    }));
                }
                for h in handlers {
                    h.join().unwrap();
                }
            });
            let clients: Vec<_> = (0..50u32)
                .map(|i| {
                    grove::spawn(move || {
                        let mut c = TcpStream::connect(addr).unwrap();
                        // Larger than the socket buffers: write_all must wait for the
                        // echo to be read, which needs the other greenlets to run.
                        let msg: Vec<u8> = (0..300_000u32).map(|j| (i + j) as u8).collect();
                        let mut w = c.try_clone().unwrap();
                        let m2 = msg.clone();
                        let writer = grove::spawn(move || w.write_all(&m2).unwrap());
                        let mut got = vec![0u8; msg.len()];
                        c.read_exact(&mut got).unwrap();
                        writer.join().unwrap();
                        assert!(got == msg, "client {i}: echo differs");
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            server.join().unwrap();
        });
    });
}

#[test]
fn user_nonblocking_socket_still_sees_would_block() {
    within(Duration::from_secs(30), "nonblocking", || {
        let rt = rt(1);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let c = grove::spawn(move || TcpStream::connect(addr).unwrap());
            let (mut s, _) = listener.accept().unwrap();
            let _c = c.join().unwrap();
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
            listener.set_nonblocking(true).unwrap();
            assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
            // And back: blocking again, the read waits (here: for a greenlet's write).
            s.set_nonblocking(false).unwrap();
            let mut w = _c.try_clone().unwrap();
            let writer = grove::spawn(move || w.write_all(b"late").unwrap());
            let mut got = [0u8; 4];
            s.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"late");
            writer.join().unwrap();
        });
    });
}

#[test]
fn so_rcvtimeo_is_a_green_timeout() {
    within(Duration::from_secs(30), "rcvtimeo", || {
        let rt = rt(1);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let c = grove::spawn(move || TcpStream::connect(addr).unwrap());
            let (mut s, _) = listener.accept().unwrap();
            let _c = c.join().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            // The worker stays free while the read waits: a ticker runs meanwhile.
            let ticks = Arc::new(AtomicUsize::new(0));
            let t2 = ticks.clone();
            let ticker = grove::spawn(move || {
                for _ in 0..5 {
                    grove::sleep(Duration::from_millis(10));
                    t2.fetch_add(1, Ordering::SeqCst);
                }
            });
            let t = Instant::now();
            let mut buf = [0u8; 8];
            let e = s.read(&mut buf).unwrap_err();
            let waited = t.elapsed();
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
            assert!(waited >= Duration::from_millis(190), "{waited:?}");
            assert!(waited < Duration::from_secs(10), "{waited:?}");
            assert_eq!(ticks.load(Ordering::SeqCst), 5, "the worker was blocked");
            ticker.join().unwrap();
        });
    });
}

/// std's `connect_timeout` switches to non-blocking, connects and waits in `poll`.
#[test]
fn connect_timeout_and_poll_go_green() {
    within(Duration::from_secs(30), "connect_timeout", || {
        let rt = rt(1);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let c = grove::spawn(move || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap()
            });
            let (_s, _) = listener.accept().unwrap();
            let c = c.join().unwrap();
            // connect_timeout leaves the stream blocking, as the user expects.
            let mut c2 = c.try_clone().unwrap();
            let reader = grove::spawn(move || {
                let mut b = [0u8; 1];
                c2.read(&mut b)
            });
            drop(_s);
            assert_eq!(reader.join().unwrap().unwrap(), 0);
        });
    });
}

#[test]
fn so_sndtimeo_is_a_green_timeout() {
    within(Duration::from_secs(30), "sndtimeo", || {
        let rt = rt(1);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let c = grove::spawn(move || TcpStream::connect(addr).unwrap());
            let (_peer, _) = listener.accept().unwrap(); // never reads
            let mut c = c.join().unwrap();
            c.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let ticks = Arc::new(AtomicUsize::new(0));
            let t2 = ticks.clone();
            let ticker = grove::spawn(move || {
                for _ in 0..5 {
                    grove::sleep(Duration::from_millis(10));
                    t2.fetch_add(1, Ordering::SeqCst);
                }
            });
            let t = Instant::now();
            let big = vec![7u8; 64 << 20]; // far more than the socket buffers hold
            let e = c.write_all(&big).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");
            assert!(
                t.elapsed() >= Duration::from_millis(190),
                "{:?}",
                t.elapsed()
            );
            assert_eq!(ticks.load(Ordering::SeqCst), 5, "the worker was blocked");
            ticker.join().unwrap();
        });
    });
}

/// `select` (C code's older wait) inside a greenlet waits green.
#[test]
fn select_goes_green() {
    use std::os::fd::AsRawFd;
    within(Duration::from_secs(30), "select", || {
        let rt = rt(1);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let c = grove::spawn(move || TcpStream::connect(addr).unwrap());
            let (s, _) = listener.accept().unwrap();
            let mut c = c.join().unwrap();
            let w = grove::spawn(move || {
                grove::sleep(Duration::from_millis(10));
                c.write_all(b"x").unwrap();
                c
            });
            let fd = s.as_raw_fd();
            // SAFETY: a zeroed fd_set is empty.
            let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
            // SAFETY: `fd` is below FD_SETSIZE in a fresh test process.
            unsafe { libc::FD_SET(fd, &mut set) };
            let mut tv = libc::timeval {
                tv_sec: 10,
                tv_usec: 0,
            };
            // SAFETY: valid sets and timeval.
            let n = unsafe {
                libc::select(
                    fd + 1,
                    &mut set,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    &mut tv,
                )
            };
            assert_eq!(n, 1);
            // SAFETY: the set select filled.
            assert!(unsafe { libc::FD_ISSET(fd, &set) });
            let _c = w.join().unwrap();
        });
    });
}

/// Outside greenlets the hooks are the kernel's calls: `ppoll` with a signal mask and
/// `select` with a timeout behave as libc's (the mask's size is the kernel's, and the
/// `timeval` reports the time not slept).
#[test]
fn ppoll_with_a_mask_and_select_outside_greenlets_behave_as_libc() {
    let _rt = rt(1);
    let (rd, _wr) = std::io::pipe().unwrap();
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: rd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 10_000_000,
    };
    // SAFETY: an empty signal set, initialized by sigemptyset.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut mask) };
    // SAFETY: one valid pollfd, a valid timeout and mask.
    let n = unsafe { libc::ppoll(&mut p, 1, &ts, &mask) };
    assert_eq!(n, 0, "ppoll: {}", std::io::Error::last_os_error());
    let fd = rd.as_raw_fd();
    // SAFETY: a zeroed fd_set is empty.
    let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is below FD_SETSIZE in a fresh test process.
    unsafe { libc::FD_SET(fd, &mut set) };
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 20_000,
    };
    // SAFETY: valid sets and timeval.
    let n = unsafe {
        libc::select(
            fd + 1,
            &mut set,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        )
    };
    assert_eq!(n, 0);
    assert_eq!(
        (tv.tv_sec, tv.tv_usec),
        (0, 0),
        "select reports no time left"
    );
}
