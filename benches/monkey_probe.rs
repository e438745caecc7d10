//! What the `monkey` hooks add to one socket call on echo's path, measured in CPU time of
//! the calling thread (so a busy machine slows it down without changing the result).
//!
//! One greenlet on a one-worker runtime owns both ends of C loopback TCP connections (C = 1
//! by default), made non-blocking as `grove::net` makes its sockets, and repeats, one
//! connection after the other, what an echo round trip asks of the sockets: the client writes 64 bytes, the server reads them, writes them back and
//! reads again (`EAGAIN`: the read that ends its loop), the client reads the reply. Five
//! calls, all inside a greenlet, so with the feature on every one takes the hooks' green
//! path (table lookup, `MSG_DONTWAIT` call, `EAGAIN` handed back for a socket the user made
//! non-blocking). Prints the thread CPU nanoseconds per iteration.
//!
//! Built twice and run alternately by `benches/monkey_cost.py --probe`, which reports the
//! difference per call; alone: `cargo bench --bench monkey_probe [--features
//! grove-bench/monkey] -- ITERATIONS [C]` (C = 1,000 spreads the hooks' per-fd state over
//! as many table slots as echo_c1000 does).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One echo round trip's socket calls; panics if the kernel does not behave as loopback
/// does (data written is readable at once).
fn round(mut client: &TcpStream, mut server: &TcpStream, buf: &mut [u8; 1024]) {
    const MSG: [u8; 64] = [7; 64];
    client.write_all(&MSG).expect("client write");
    let n = server.read(buf).expect("server read");
    assert_eq!(n, 64, "loopback delivers a small write at once");
    server.write_all(&buf[..n]).expect("server write");
    match server.read(buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("server's second read: expected WouldBlock, got {other:?}"),
    }
    assert_eq!(client.read(buf).expect("client read"), 64);
}

fn main() {
    // `cargo test --benches` runs bench binaries without arguments (`cargo bench` passes
    // `--bench`): nothing to measure then.
    if std::env::args().len() == 1 {
        eprintln!("monkey_probe: no arguments, so not run (see benches/monkey_cost.py --probe)");
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let number = |i: usize, default: usize| match args.get(i).map(|a| a.parse()) {
        None => default,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: monkey_probe [ITERATIONS [CONNECTIONS]]");
            std::process::exit(2);
        }
    };
    let (iters, conns) = (number(0, 200_000), number(1, 1));
    raise_nofile(2 * conns + 64);
    // Connected outside the runtime, so that no hook ever waits on these sockets (a wait
    // would register them with the reactor's epoll, which the hooks never do for
    // `grove::net`'s own sockets): inside the greenlet they are what echo's server sockets
    // are.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let pairs: Vec<(TcpStream, TcpStream)> = (0..conns)
        .map(|_| {
            let client = TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            for s in [&client, &server] {
                s.set_nonblocking(true).expect("O_NONBLOCK");
                s.set_nodelay(true).expect("TCP_NODELAY");
            }
            (client, server)
        })
        .collect();
    let rt = grove::Runtime::builder()
        .workers(1)
        .build()
        .expect("runtime");
    let per_iter = rt.block_on(move || {
        let mut buf = [0u8; 1024];
        for (client, server) in pairs.iter().cycle().take(iters / 10 + conns) {
            round(client, server, &mut buf);
        }
        let start = thread_cpu_ns();
        for (client, server) in pairs.iter().cycle().take(iters) {
            round(client, server, &mut buf);
        }
        (thread_cpu_ns() - start) as f64 / iters as f64
    });
    let monkey = if cfg!(feature = "monkey") {
        "on"
    } else {
        "off"
    };
    println!(
        "{per_iter:.1} ns per iteration (5 socket calls, {conns} connections), monkey {monkey}"
    );
}

/// Raises the soft `RLIMIT_NOFILE` to at least `n` (up to the hard limit).
fn raise_nofile(n: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let want = (n as libc::rlim_t).min(lim.rlim_max);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: as above; a refused raise only means fewer fds, which `connect` reports.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}
