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

/// `writev`/`readv` (std's vectored I/O), a blocking send of far more than the socket
/// buffers hold (the hook continues from the middle of an iovec), and UDP, all green on
/// one worker.
#[test]
fn vectored_io_and_udp_go_green() {
    use std::io::{IoSlice, IoSliceMut};
    within(Duration::from_secs(60), "vectored", || {
        let rt = rt(1);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let c = grove::spawn(move || TcpStream::connect(addr).unwrap());
            let (mut s, _) = listener.accept().unwrap();
            let mut c = c.join().unwrap();
            let a: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
            let b: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7) as u8).collect();
            let (a2, b2) = (a.clone(), b.clone());
            let writer = grove::spawn(move || {
                // One writev call: a blocking socket sends it all (the hook loops).
                let n = c
                    .write_vectored(&[IoSlice::new(&a2), IoSlice::new(&b2)])
                    .unwrap();
                assert_eq!(n, a2.len() + b2.len(), "a blocking writev sends everything");
                c
            });
            let mut got_a = vec![0u8; a.len()];
            let mut got_b = vec![0u8; b.len()];
            let mut done = 0;
            while done < a.len() + b.len() {
                let (x, y) = if done < a.len() {
                    let (_, rest_a) = got_a.split_at_mut(done);
                    (rest_a, &mut got_b[..])
                } else {
                    (&mut got_a[a.len()..], &mut got_b[done - a.len()..])
                };
                let n = s
                    .read_vectored(&mut [IoSliceMut::new(x), IoSliceMut::new(y)])
                    .unwrap();
                assert!(n > 0);
                done += n;
            }
            assert!(got_a == a && got_b == b, "vectored data differs");
            let _c = writer.join().unwrap();

            let u1 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let u2 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = u1.local_addr().unwrap();
            let sender = grove::spawn(move || {
                grove::sleep(Duration::from_millis(5));
                u2.send_to(b"datagram", to).unwrap();
            });
            let mut buf = [0u8; 64];
            let (n, _) = u1.recv_from(&mut buf).unwrap(); // waits green for the sender
            assert_eq!(&buf[..n], b"datagram");
            sender.join().unwrap();
        });
    });
}

/// Unix sockets: std's `UnixStream` (read/write), and an fd passed with SCM_RIGHTS
/// through `sendmsg`/`recvmsg`, then used green.
#[test]
fn unix_sockets_and_passed_fds_go_green() {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::net::UnixStream;
    within(Duration::from_secs(30), "unix", || {
        let rt = rt(1);
        rt.block_on(|| {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            let w = grove::spawn(move || {
                grove::sleep(Duration::from_millis(5));
                b.write_all(b"over unix").unwrap();
                b
            });
            let mut got = [0u8; 9];
            a.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"over unix");
            let b = w.join().unwrap();

            // Pass one end of a fresh pair through `a` -> `b`.
            let (mine, theirs) = UnixStream::pair().unwrap();
            let fd = theirs.as_raw_fd();
            let mut byte = [1u8];
            let mut iov = libc::iovec {
                iov_base: byte.as_mut_ptr() as *mut libc::c_void,
                iov_len: 1,
            };
            let mut cbuf = [0u8; 64];
            // SAFETY: a zeroed msghdr is valid; the fields are set to live locals below.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            // SAFETY: CMSG_SPACE is a pure computation.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
            // SAFETY: `msg` has room for one fd's control message.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
                (libc::CMSG_DATA(c) as *mut i32).write_unaligned(fd);
            }
            // SAFETY: a valid message.
            assert_eq!(unsafe { libc::sendmsg(a.as_raw_fd(), &msg, 0) }, 1);
            drop(theirs);
            let receiver = grove::spawn(move || {
                let mut byte = [0u8];
                let mut iov = libc::iovec {
                    iov_base: byte.as_mut_ptr() as *mut libc::c_void,
                    iov_len: 1,
                };
                let mut cbuf = [0u8; 64];
                // SAFETY: as above, for receiving.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
                msg.msg_controllen = cbuf.len();
                // SAFETY: a valid message.
                assert_eq!(unsafe { libc::recvmsg(b.as_raw_fd(), &mut msg, 0) }, 1);
                // SAFETY: the kernel filled one SCM_RIGHTS message.
                let fd = unsafe {
                    (libc::CMSG_DATA(libc::CMSG_FIRSTHDR(&msg)) as *const i32).read_unaligned()
                };
                // SAFETY: the fd the kernel just gave us, owned from here on.
                let mut passed = unsafe { UnixStream::from_raw_fd(fd) };
                let mut got = [0u8; 6];
                passed.read_exact(&mut got).unwrap(); // waits green for the writer below
                got
            });
            let mut mine = mine;
            grove::sleep(Duration::from_millis(5));
            mine.write_all(b"passed").unwrap();
            assert_eq!(&receiver.join().unwrap(), b"passed");
        });
    });
}

/// `getaddrinfo` inside a greenlet runs on a thread of its own and gives libc's answer:
/// std connects by name ("localhost") from greenlets of one worker.
#[test]
fn getaddrinfo_in_greenlets_gives_libcs_answer() {
    use std::net::ToSocketAddrs;
    within(Duration::from_secs(60), "getaddrinfo", || {
        let outside: Vec<_> = ("localhost", 80).to_socket_addrs().unwrap().collect();
        let rt = rt(1);
        rt.block_on(move || {
            let inside: Vec<_> = ("localhost", 80).to_socket_addrs().unwrap().collect();
            assert_eq!(inside, outside);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let acceptor = grove::spawn(move || {
                for _ in 0..20 {
                    listener.accept().unwrap();
                }
            });
            let hs: Vec<_> = (0..20)
                .map(|_| grove::spawn(move || TcpStream::connect(("localhost", port)).unwrap()))
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            acceptor.join().unwrap();
        });
    });
}

/// After a short read of a blocking std socket, the hooked `read` waits for readiness
/// before its next syscall (tokio's rule); data that arrived in between, its event
/// already dispatched, must still be read at once, not wait for an event that came.
/// The peer is a plain thread, and the whole thing runs on one worker. Seen failing (the
/// read waits out its 20 s timeout) with the wait's readiness clear made unconditional.
#[test]
fn data_arriving_after_a_short_read_is_not_stranded() {
    within(Duration::from_secs(60), "short-read hint", || {
        let rt = rt(1);
        rt.block_on(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let client = std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                // Give the server's first read time to find nothing and wait: the read
                // that ends that wait is short, which arms the hint under test. (If this
                // thread is late, the test checks less, never fails falsely.)
                std::thread::sleep(Duration::from_millis(50));
                s.write_all(b"hello").unwrap();
                go_rx.recv().unwrap();
                s.write_all(b"world").unwrap();
                sent_tx.send(()).unwrap();
                let mut end = [0u8; 1];
                let _ = s.read(&mut end);
            });
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut buf = [0u8; 64];
            // A first read that waits (EAGAIN, then a green wait) and comes back short.
            let mut got = 0;
            while got < 5 {
                got += conn.read(&mut buf[got..]).unwrap();
            }
            assert_eq!(&buf[..5], b"hello");
            go_tx.send(()).unwrap();
            while sent_rx.try_recv().is_err() {
                grove::sleep(Duration::from_millis(1));
            }
            // Let the worker go idle, so the bytes' event is harvested before we read.
            grove::sleep(Duration::from_millis(20));
            let t = Instant::now();
            let n = conn.read(&mut buf).unwrap();
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "data sent after a short read waited {:?} (for the read timeout)",
                t.elapsed()
            );
            assert_eq!(&buf[..n], &b"world"[..n]);
            drop(conn);
            client.join().unwrap();
        });
    });
}
