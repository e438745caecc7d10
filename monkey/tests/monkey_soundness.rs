//! Interrupts, close while waiting, fd reuse, fork, exec, signals and the monitor,
//! with the hooks on.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{errno, pair, rt, within};

#[test]
fn kill_returns_ecanceled_then_unwinds_at_the_next_blocking_point() {
    within(Duration::from_secs(30), "kill", || {
        let rt = rt(1);
        rt.block_on(|| {
            let (mut s, _c) = pair();
            let seen = Arc::new(Mutex::new(None));
            let seen2 = seen.clone();
            let started = grove::sync::Event::new();
            let st = started.clone();
            let reader = grove::spawn(move || {
                st.set();
                let mut b = [0u8; 8];
                let r = s.read(&mut b);
                *seen2.lock().unwrap() = Some(r.map_err(|e| errno(&e)));
                // While the kill is pending, hooked calls that would wait fail at once.
                let again = s.read(&mut b).map_err(|e| errno(&e));
                assert_eq!(again, Err(grove_monkey::INTERRUPTED));
                grove::sleep(Duration::from_secs(60)); // the kill unwinds here
                unreachable!("the kill was not delivered");
            });
            started.wait();
            grove::sleep(Duration::from_millis(20)); // let it park in read
            reader.kill();
            assert!(reader.join().unwrap_err().is_killed());
            assert_eq!(*seen.lock().unwrap(), Some(Err(libc::ECANCELED)));
        });
    });
}

#[test]
fn timeout_interrupts_std_read_and_std_sleep() {
    within(Duration::from_secs(30), "timeout", || {
        let rt = rt(1);
        rt.block_on(|| {
            let (mut s, _c) = pair();
            let t = Instant::now();
            let r = grove::with_timeout(Duration::from_millis(50), || {
                let mut b = [0u8; 8];
                let e = s.read(&mut b).unwrap_err();
                assert!(grove_monkey::is_interrupted(&e), "{e}");
                grove::yield_now(); // delivered here
                unreachable!()
            });
            assert!(r.is_err());
            // std::thread::sleep ends early (EINTR, nothing left), then the next
            // blocking point raises.
            let r = grove::with_timeout(Duration::from_millis(50), || {
                std::thread::sleep(Duration::from_secs(60));
                grove::yield_now();
            });
            assert!(r.is_err());
            assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        });
    });
}

#[test]
fn close_wakes_a_greenlet_waiting_on_the_fd_with_ebadf() {
    within(Duration::from_secs(30), "close", || {
        let rt = rt(2);
        rt.block_on(|| {
            let (s, _c) = pair();
            let fd = s.into_raw_fd();
            let parked = grove::sync::Event::new();
            let p2 = parked.clone();
            let reader = grove::spawn(move || {
                // SAFETY: `fd` is an open socket this greenlet borrows; it is closed by
                // the main greenlet and the stream is forgotten, never closed twice.
                let mut s = unsafe { TcpStream::from_raw_fd(fd) };
                p2.set();
                let r = s.read(&mut [0u8; 8]).map_err(|e| errno(&e));
                std::mem::forget(s);
                r
            });
            parked.wait();
            grove::sleep(Duration::from_millis(20));
            // SAFETY: closing an fd number; the reader forgets its stream.
            assert_eq!(unsafe { libc::close(fd) }, 0);
            assert_eq!(reader.join().unwrap(), Err(libc::EBADF));
        });
    });
}

/// A number reused after close gets fresh state: the new socket's mode and
/// registration, not the old one's.
#[test]
fn fd_number_reuse_sees_fresh_state() {
    within(Duration::from_secs(30), "reuse", || {
        let rt = rt(1);
        rt.block_on(|| {
            for round in 0..50 {
                let (mut a, b) = pair();
                if round % 2 == 0 {
                    a.set_nonblocking(true).unwrap();
                    let _ = a.read(&mut [0u8; 1]); // EAGAIN: a table entry exists
                } else {
                    let mut b2 = b.try_clone().unwrap();
                    let w = grove::spawn(move || b2.write_all(b"x").unwrap());
                    a.read_exact(&mut [0u8; 1]).unwrap(); // may wait: registered
                    w.join().unwrap();
                }
                let old = a.as_raw_fd();
                drop(a);
                drop(b);
                // New pair: likely the same numbers, blocking, so a read must wait for
                // the writer instead of failing with EAGAIN or hanging on a stale
                // registration.
                let (mut c, d) = pair();
                let _ = old;
                let mut d2 = d.try_clone().unwrap();
                let w = grove::spawn(move || {
                    grove::sleep(Duration::from_millis(2));
                    d2.write_all(b"yz").unwrap();
                });
                let mut got = [0u8; 2];
                c.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"yz", "round {round}");
                w.join().unwrap();
            }
        });
    });
}

/// A greenlet's accept on a blocking listener leaves it blocking (F_GETFL), so a
/// child process inheriting a socket sees the mode its user set.
#[test]
fn exec_child_inherits_a_blocking_socket() {
    within(Duration::from_secs(30), "exec", || {
        let rt = rt(1);
        rt.block_on(|| {
            let (mut s, c) = pair();
            // The greenlet waits on `c` once, so it has a table entry and a registration.
            let mut s2 = s.try_clone().unwrap();
            let w = grove::spawn(move || {
                grove::sleep(Duration::from_millis(5));
                s2.write_all(b"ping").unwrap();
            });
            let mut c_read = c.try_clone().unwrap();
            let mut got = [0u8; 4];
            c_read.read_exact(&mut got).unwrap();
            w.join().unwrap();
            // SAFETY: F_GETFL on an open fd.
            let fl = unsafe { libc::fcntl(c.as_raw_fd(), libc::F_GETFL) };
            assert_eq!(fl & libc::O_NONBLOCK, 0, "the kernel mode changed");
            // `cat` reads the socket as its stdin: a non-blocking one would make it
            // fail with EAGAIN.
            let child = std::process::Command::new("cat")
                .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(c)))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            grove::sleep(Duration::from_millis(50));
            s.write_all(b"hello from the parent").unwrap();
            drop(s);
            drop(c_read);
            let out = grove::blocking::spawn_blocking(move || child.wait_with_output())
                .join()
                .unwrap();
            let out = out.unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(out.stdout, b"hello from the parent");
        });
    });
}

/// A fork child uses and closes a socket the parent's greenlet is registered on; the
/// parent's registration survives (the child never touches the shared epoll).
#[test]
fn fork_child_closing_a_shared_socket_leaves_the_parent_registered() {
    within(Duration::from_secs(30), "fork", || {
        let rt = rt(1);
        rt.block_on(|| {
            let (mut s, mut c) = pair();
            // Register `s` with the reactor through a first green wait.
            let mut c2 = c.try_clone().unwrap();
            let w = grove::spawn(move || {
                grove::sleep(Duration::from_millis(2));
                c2.write_all(b"1").unwrap();
            });
            s.read_exact(&mut [0u8; 1]).unwrap();
            w.join().unwrap();
            // SAFETY: the child only makes raw syscalls (through the hooks, outside any
            // greenlet) and `_exit`s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let fd = s.as_raw_fd();
                // SAFETY: closing our copy of the fd, then leaving without unwinding.
                unsafe {
                    libc::close(fd);
                    libc::_exit(0);
                }
            }
            let mut status = 0;
            let waited = grove::blocking::spawn_blocking(move || {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                let r = unsafe { libc::waitpid(pid, &mut st, 0) };
                (r, st)
            })
            .join()
            .unwrap();
            assert_eq!(waited.0, pid);
            status += waited.1;
            assert_eq!(status, 0);
            // The parent's greenlet still wakes for data on `s`.
            let w = grove::spawn(move || {
                grove::sleep(Duration::from_millis(5));
                c.write_all(b"2").unwrap();
            });
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"2");
            w.join().unwrap();
        });
    });
}

/// The write end of a non-blocking socket pair the handler writes to (a self-pipe, as
/// `grove::signal` does): the hooked `write` then runs inside a signal handler.
static SELF_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_sigusr1(_: libc::c_int) {
    let fd = SELF_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: one byte from a local to an open non-blocking socket; `write` is
        // async-signal-safe, and so must the hook be.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Signals delivered to the workers (a handler without SA_RESTART) while greenlets
/// sleep and do std::net I/O never surface as EINTR or cut a wait short.
#[test]
fn signals_do_not_break_green_calls() {
    within(Duration::from_secs(60), "signals", || {
        // SAFETY: installing a handler that does nothing, without SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigusr1 as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
        let rt = rt(2);
        let (pipe_rd, pipe_wr) = std::os::unix::net::UnixStream::pair().unwrap();
        pipe_wr.set_nonblocking(true).unwrap();
        pipe_rd.set_nonblocking(true).unwrap();
        SELF_PIPE.store(pipe_wr.as_raw_fd(), Ordering::Relaxed);
        let drainer = {
            let mut rd = pipe_rd;
            let stop = Arc::new(AtomicUsize::new(0));
            let s = stop.clone();
            let h = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut n = 0usize;
                while s.load(Ordering::SeqCst) == 0 {
                    if let Ok(k) = rd.read(&mut buf) {
                        n += k;
                    } else {
                        std::thread::yield_now();
                    }
                }
                n
            });
            (stop, h)
        };
        let threads = Arc::new(Mutex::new(Vec::<libc::pthread_t>::new()));
        let stop = Arc::new(AtomicUsize::new(0));
        let (t2, s2) = (threads.clone(), stop.clone());
        let signaller = std::thread::spawn(move || {
            let mut sent = 0u64;
            while s2.load(Ordering::SeqCst) == 0 {
                for &t in t2.lock().unwrap().iter() {
                    // SAFETY: the worker threads live until the runtime is dropped, after
                    // `stop` is set and this thread joined.
                    unsafe { libc::pthread_kill(t, libc::SIGUSR1) };
                    sent += 1;
                }
                std::thread::yield_now();
            }
            sent
        });
        rt.block_on(move || {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let threads = threads.clone();
                    grove::spawn(move || {
                        // SAFETY: pthread_self has no preconditions.
                        threads
                            .lock()
                            .unwrap()
                            .push(unsafe { libc::pthread_self() });
                        let t = Instant::now();
                        std::thread::sleep(Duration::from_millis(100));
                        assert!(t.elapsed() >= Duration::from_millis(100), "sleep cut short");
                        // Green polls with nothing ready (a zero-timeout real poll
                        // underneath, where a pending signal used to surface as EINTR).
                        let (rd, _wr) = std::io::pipe().unwrap();
                        for _ in 0..1000 {
                            let mut p = libc::pollfd {
                                fd: rd.as_raw_fd(),
                                events: libc::POLLIN,
                                revents: 0,
                            };
                            // SAFETY: one valid pollfd.
                            let n = unsafe { libc::poll(&mut p, 1, 1) };
                            let e = std::io::Error::last_os_error();
                            assert_eq!(n, 0, "poll: {e}");
                        }
                        let (mut a, mut b) = pair();
                        let msg = vec![i as u8; 200_000];
                        let m2 = msg.clone();
                        let w = grove::spawn(move || b.write_all(&m2).unwrap());
                        let mut got = vec![0u8; msg.len()];
                        a.read_exact(&mut got).unwrap();
                        w.join().unwrap();
                        assert!(got == msg);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        stop.store(1, Ordering::SeqCst);
        let sent = signaller.join().unwrap();
        assert!(sent > 0, "no signal was sent");
        SELF_PIPE.store(-1, Ordering::Relaxed);
        drainer.0.store(1, Ordering::SeqCst);
        assert!(
            drainer.1.join().unwrap() > 0,
            "the handler's writes never arrived"
        );
        drop(pipe_wr);
    });
}

/// A greenlet blocked in a pass-through call (a pipe read) holds its worker; the
/// monitor reports it.
#[test]
fn monitor_reports_a_greenlet_blocked_in_a_pipe_read() {
    within(Duration::from_secs(30), "monitor", || {
        grove_monkey::link();
        let reported = grove::sync::Event::new();
        let r2 = reported.clone();
        let rt = grove::Runtime::builder()
            .workers(1)
            .monitor(Some(Duration::from_millis(50)))
            .on_stall(move |_| r2.set())
            .build()
            .unwrap();
        let (rd, wr) = std::io::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            reported.wait(); // a plain thread: waits for the report, then unblocks
            let mut wr = wr;
            wr.write_all(b"!").unwrap();
        });
        rt.block_on(move || {
            let mut rd = rd;
            let mut b = [0u8; 1];
            rd.read_exact(&mut b).unwrap();
        });
        writer.join().unwrap();
        assert!(!rt.stall_reports().is_empty());
    });
}

/// `poll` on a pipe (not a socket) inside a greenlet waits green.
#[test]
fn poll_on_a_pipe_goes_green() {
    within(Duration::from_secs(30), "poll pipe", || {
        let rt = rt(1);
        rt.block_on(|| {
            let (rd, mut wr) = std::io::pipe().unwrap();
            let w = grove::spawn(move || {
                grove::sleep(Duration::from_millis(10));
                wr.write_all(b"x").unwrap();
                wr // kept open: a closed write end would make the pipe ready (POLLHUP)
            });
            let mut p = libc::pollfd {
                fd: rd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, 10_000) };
            assert_eq!(n, 1);
            assert!(p.revents & libc::POLLIN != 0);
            let _wr = w.join().unwrap();
            // A timeout with nothing ready returns 0 after about the timeout.
            let t = Instant::now();
            let mut p2 = libc::pollfd {
                fd: rd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let mut b = [0u8; 1];
            (&rd).read_exact(&mut b).unwrap();
            // SAFETY: one valid pollfd.
            assert_eq!(unsafe { libc::poll(&mut p2, 1, 30) }, 0);
            assert!(t.elapsed() >= Duration::from_millis(30));
        });
    });
}

/// A runtime shut down while a greenlet waits in a hooked call (an accept loop that
/// retries on every error, a common server shape) finishes: the stack under the C
/// frame is leaked, never unwound through it and never resumed into a retry loop.
#[test]
fn shutdown_with_a_greenlet_parked_in_a_hooked_accept_loop_finishes() {
    within(Duration::from_secs(30), "shutdown", || {
        let rt = rt(1);
        let parked = grove::sync::Event::new();
        let p2 = parked.clone();
        rt.spawn(move || {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            p2.set();
            loop {
                // Retries on any error, forever.
                let _ = l.accept();
            }
        });
        parked.wait();
        std::thread::sleep(Duration::from_millis(20)); // let it park in accept
        assert!(rt.shutdown_timeout(Duration::from_secs(10)));
    });
}
