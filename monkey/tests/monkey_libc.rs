//! The hooked libc calls made directly, as C code (or Rust code through `libc`) makes
//! them rather than through std: the sleep family and the `dup` family.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{errno, pair, rt, within};

/// Runs `sleep` in `n` greenlets of one worker and returns how long they all took.
fn concurrently(n: usize, sleep: fn()) -> Duration {
    let rt = rt(1);
    rt.block_on(move || {
        let t = Instant::now();
        let hs: Vec<_> = (0..n).map(|_| grove::spawn(sleep)).collect();
        for h in hs {
            h.join().unwrap();
        }
        t.elapsed()
    })
}

#[test]
fn usleep_nanosleep_clock_nanosleep_and_sleep_go_green() {
    within(Duration::from_secs(60), "libc sleeps", || {
        // 50 greenlets of one worker each sleeping 200 ms: together about 200 ms when
        // green, 10 s when each holds the worker.
        let calls: [(&str, fn()); 3] = [
            ("usleep", || {
                // SAFETY: no pointers.
                assert_eq!(unsafe { libc::usleep(200_000) }, 0);
            }),
            ("nanosleep", || {
                let req = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 200_000_000,
                };
                let mut rem = libc::timespec {
                    tv_sec: 7,
                    tv_nsec: 7,
                };
                // SAFETY: both pointers are to live timespecs.
                assert_eq!(unsafe { libc::nanosleep(&req, &mut rem) }, 0);
            }),
            ("clock_nanosleep", || {
                let req = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 200_000_000,
                };
                // SAFETY: `req` is a live timespec; `rem` may be null.
                let r = unsafe {
                    libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &req, std::ptr::null_mut())
                };
                assert_eq!(r, 0);
            }),
        ];
        for (name, call) in calls {
            let took = concurrently(50, call);
            assert!(took >= Duration::from_millis(200), "{name}: {took:?}");
            assert!(
                took < Duration::from_secs(5),
                "{name}: 50 sleeps took {took:?}"
            );
        }
        // `sleep` counts whole seconds: 10 greenlets of 1 s, 10 s if blocking.
        let took = concurrently(10, || {
            // SAFETY: no pointers.
            assert_eq!(unsafe { libc::sleep(1) }, 0);
        });
        assert!(took >= Duration::from_secs(1), "sleep: {took:?}");
        assert!(
            took < Duration::from_secs(6),
            "sleep: 10 sleeps took {took:?}"
        );
    });
}

#[test]
fn an_absolute_clock_nanosleep_in_the_past_returns_at_once() {
    within(Duration::from_secs(30), "TIMER_ABSTIME", || {
        rt(1).block_on(|| {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a live timespec.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
            let t = Instant::now();
            // SAFETY: `now` is a live timespec; `rem` may be null.
            let r = unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &now,
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(r, 0);
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        });
    });
}

/// Yields until greenlet `id` is parked in a hooked call whose wait reason is `what`
/// (as run-info dumps show it).
fn until_parked_in(id: u64, what: &str) {
    loop {
        let info = grove::monitor::run_info().unwrap();
        let parked = info
            .greenlets
            .iter()
            .any(|g| g.id == id && g.waiting_on.is_some_and(|w| w.as_str() == what));
        if parked {
            return;
        }
        grove::yield_now();
    }
}

#[test]
fn dup2_onto_a_socket_a_greenlet_reads_wakes_it_with_ebadf() {
    within(Duration::from_secs(30), "dup2 over a waited fd", || {
        rt(2).block_on(|| {
            let (a, _a_peer) = pair();
            let (b, mut b_peer) = pair();
            let fd = a.as_raw_fd();
            let reader = grove::spawn(move || {
                let mut a = a;
                let mut buf = [0u8; 8];
                let r = a.read(&mut buf);
                // The number now names `b`'s socket: keep it open for the checks below.
                std::mem::forget(a);
                r
            });
            until_parked_in(reader.id(), "grove-monkey: recv");
            // SAFETY: both are open fds; `fd`'s owner forgets it, so nobody closes it twice.
            assert_eq!(unsafe { libc::dup2(b.as_raw_fd(), fd) }, fd);
            let err = reader.join().unwrap().unwrap_err();
            assert_eq!(errno(&err), libc::EBADF, "{err}");
            // `fd` is now `b`: green reads on it see what `b`'s peer writes.
            b_peer.write_all(b"via dup2").unwrap();
            // SAFETY: `fd` is open (a copy of `b`) and owned by this stream from here on.
            let mut dup: TcpStream = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
            let mut got = [0u8; 8];
            dup.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"via dup2");
        });
    });
}

#[test]
fn a_failed_dup2_leaves_the_target_and_its_waiters_alone() {
    within(Duration::from_secs(30), "dup2 with a bad fd", || {
        rt(2).block_on(|| {
            let (a, mut a_peer) = pair();
            let fd = a.as_raw_fd();
            let reader = grove::spawn(move || {
                let mut a = a;
                let mut buf = [0u8; 6];
                a.read_exact(&mut buf).map(|()| buf)
            });
            until_parked_in(reader.id(), "grove-monkey: recv");
            // A closed source: dup2 fails with EBADF and must not close or reset `fd`.
            let closed = {
                let (x, _y) = pair();
                x.as_raw_fd()
            };
            // SAFETY: no pointers; `closed` is not open, which is the point.
            assert_eq!(unsafe { libc::dup2(closed, fd) }, -1);
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EBADF)
            );
            // The waiter still waits, and still gets its data.
            a_peer.write_all(b"intact").unwrap();
            assert_eq!(&reader.join().unwrap().unwrap(), b"intact");
        });
    });
}

#[test]
fn a_dup_of_a_socket_reads_green_beside_the_original() {
    within(Duration::from_secs(30), "dup", || {
        rt(2).block_on(|| {
            let (s, mut peer) = pair();
            // SAFETY: `s` is open; the copy is owned by `copy` from here on.
            let copy_fd = unsafe { libc::dup(s.as_raw_fd()) };
            assert!(copy_fd >= 0);
            // SAFETY: `copy_fd` is a fresh open fd owned by nobody else.
            let mut copy: TcpStream = unsafe { std::os::fd::FromRawFd::from_raw_fd(copy_fd) };
            let reader = grove::spawn(move || {
                let mut buf = [0u8; 4];
                copy.read_exact(&mut buf).map(|()| buf)
            });
            until_parked_in(reader.id(), "grove-monkey: recv");
            peer.write_all(b"dup!").unwrap();
            assert_eq!(&reader.join().unwrap().unwrap(), b"dup!");
            drop(s);
        });
    });
}
