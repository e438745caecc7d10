//! `--harvest-probe [F]`: what one event costs the reactor thread and what it costs a worker
//! that harvests the shared poll itself (`Handle::poll_now`), in full batches.
//!
//! F `dup`s of one socket's read end are registered, so one 1-byte write readies all F at
//! once, as a saturated server's poll would be. Every registration waits with a counting
//! waker (so the numbers exclude what waking a greenlet costs). Two phases of 2 s: nobody
//! watching (the reactor thread blocks in `epoll_wait` and harvests), then this thread
//! watching and calling `poll_now` in a loop (the reactor sleeps aside). CPU times come from
//! `/proc/self/task/*/schedstat`. Used for `benches/SCALING.md`, "The new path".

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use grove::raw::reactor::{Direction, Reactor, Registration};
use mio::unix::SourceFd;
use mio::Interest;

struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// CPU time (ns) of the threads named `name`, or of this thread if `name` is `None`.
fn cpu_ns(name: Option<&str>) -> u64 {
    let read = |p: &std::path::Path| -> u64 {
        std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let Some(name) = name else {
        return read(std::path::Path::new("/proc/thread-self"));
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| read(&t.path()))
        .sum()
}

/// Runs the probe with `fds` registrations and prints one line per phase.
pub(crate) fn probe(fds: usize) -> std::io::Result<()> {
    let reactor = Reactor::start()?;
    let h = reactor.handle();
    let (mut tx, mut rx) = UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    let mut dups = Vec::with_capacity(fds);
    for _ in 0..fds {
        // SAFETY: `dup` of a descriptor we own; a failure (-1) is checked before wrapping.
        let fd = unsafe { libc::dup(rx.as_raw_fd()) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        dups.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let regs = dups
        .iter()
        .map(|fd| {
            let raw: RawFd = fd.as_raw_fd();
            h.register(&mut SourceFd(&raw), Interest::READABLE)
        })
        .collect::<std::io::Result<Vec<Registration>>>()?;
    let arm = || {
        for r in &regs {
            while r
                .poll_ready(Direction::Read, &mut Context::from_waker(&waker))
                .is_ready()
            {
                r.clear_readiness(Direction::Read);
            }
        }
    };
    for watching in [false, true] {
        if watching {
            h.begin_watching();
            // A notification makes the reactor choose again: aside, now that we watch.
            let _ = h.add_timer(
                Instant::now() + Duration::from_micros(100),
                Waker::from(Arc::new(Count(AtomicUsize::new(0)))),
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let m0 = h.metrics();
        let (reactor0, t0) = (cpu_ns(Some("grove-reactor")), Instant::now());
        let mut harvest_ns = 0;
        while t0.elapsed() < Duration::from_secs(2) {
            arm();
            let target = count.0.load(Ordering::Relaxed) + fds;
            tx.write_all(b"x")?;
            if watching {
                let c0 = cpu_ns(None);
                while count.0.load(Ordering::Relaxed) < target {
                    h.poll_now();
                }
                harvest_ns += cpu_ns(None) - c0;
            } else {
                while count.0.load(Ordering::Relaxed) < target {
                    std::hint::spin_loop();
                }
            }
            let mut b = [0u8; 64];
            let _ = rx.read(&mut b);
        }
        let m1 = h.metrics();
        let secs = t0.elapsed().as_secs_f64();
        let reactor_ns = cpu_ns(Some("grove-reactor")) - reactor0;
        let by_workers = m1.events_by_workers - m0.events_by_workers;
        let by_reactor = (m1.events_dispatched - m0.events_dispatched) - by_workers;
        if watching {
            println!(
                "worker harvests, {fds} fds: {:.0} events/s; {:.0} ns of the worker's CPU per \
                 event -> {:.2}M events/s per core (reactor meanwhile: {:.1}% CPU, {by_reactor} events)",
                by_workers as f64 / secs,
                harvest_ns as f64 / by_workers.max(1) as f64,
                by_workers as f64 / (harvest_ns.max(1) as f64 / 1e9) / 1e6,
                reactor_ns as f64 / 1e7 / secs,
            );
            h.end_watching();
        } else {
            println!(
                "reactor harvests, {fds} fds: {:.0} events/s; {:.0} ns of the reactor's CPU per \
                 event -> {:.2}M events/s per core",
                by_reactor as f64 / secs,
                reactor_ns as f64 / by_reactor.max(1) as f64,
                by_reactor as f64 / (reactor_ns.max(1) as f64 / 1e9) / 1e6,
            );
        }
    }
    drop(regs);
    reactor.shutdown();
    Ok(())
}
