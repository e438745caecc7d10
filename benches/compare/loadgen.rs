//! The load generator every network server is measured with: not part of any
//! server, the same code and thread count for all of them.
//!
//! `threads` OS threads (default 1, so that on 2 cores the server keeps at least one),
//! each owning a share of the C connections in one `mio::Poll`. A connection is a
//! closed loop: write the request, read until the whole reply is back, record the
//! round trip's latency, write again. Nothing is pipelined, so throughput is C over
//! the round-trip time. The first tenth of the duration is a warm-up whose round
//! trips are not counted. Connections close with a reset (`SO_LINGER` 0).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// A log-linear latency histogram: 16 linear sub-buckets per power of two, so a
/// bucket's width is at most 1/16 of its value (percentiles within ~6%).
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            counts: vec![0; (64 - SUB_BITS as usize + 1) * SUB as usize],
            total: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= SUB_BITS
        let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
        ((e - SUB_BITS + 1) as u64 * SUB + sub) as usize
    }

    /// The smallest value of bucket `i`.
    fn lower(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let e = i / SUB + SUB_BITS as u64 - 1;
        (SUB + i % SUB) << (e - SUB_BITS as u64)
    }

    pub(crate) fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `q` quantile (0..=1): the middle of the bucket holding it.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total.max(1));
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (Self::lower(i) + Self::lower(i + 1)) as f64 / 2.0;
            }
        }
        0.0
    }
}

/// What the load generator sends, and how long each reply is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exchange {
    pub(crate) request: &'static [u8],
    pub(crate) reply_len: usize,
}

/// One load run's outcome.
#[derive(Debug)]
pub(crate) struct Load {
    pub(crate) round_trips: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency_ns: Histogram,
}

/// One client connection's state.
struct Conn {
    stream: TcpStream,
    /// Bytes of the request written so far (`< request.len()` while writing).
    written: usize,
    /// Bytes of the reply read so far.
    read: usize,
    sent_at: Instant,
}

/// Opens `conns` connections to `addr` and runs closed-loop round trips on them for
/// `duration` (plus a warm-up of a tenth of it), from `threads` threads.
pub(crate) fn run(
    addr: SocketAddr,
    conns: usize,
    threads: usize,
    duration: Duration,
    ex: Exchange,
) -> io::Result<Load> {
    let threads = threads.clamp(1, conns.max(1));
    let warmup = duration / 10;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let share = conns / threads + usize::from(t < conns % threads);
            thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || client(addr, share, warmup, duration, ex))
        })
        .collect::<io::Result<_>>()?;
    let mut load = Load {
        round_trips: 0,
        elapsed: Duration::ZERO,
        latency_ns: Histogram::new(),
    };
    for h in handles {
        let (n, elapsed, hist) = h
            .join()
            .map_err(|_| io::Error::other("load generator panicked"))??;
        load.round_trips += n;
        load.elapsed = load.elapsed.max(elapsed);
        load.latency_ns.merge(&hist);
    }
    Ok(load)
}

/// One load thread: `n` connections, returns (round trips, measured time, latencies).
fn client(
    addr: SocketAddr,
    n: usize,
    warmup: Duration,
    duration: Duration,
    ex: Exchange,
) -> io::Result<(u64, Duration, Histogram)> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let s = std::net::TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        // Closing resets the connection, leaving no TIME_WAIT: a run opens thousands
        // of connections, and a loopback full of TIME_WAIT makes `connect` crawl
        // through the ephemeral ports.
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        let mut stream = TcpStream::from_std(s);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            written: 0,
            read: 0,
            sent_at: Instant::now(),
        });
    }
    let mut hist = Histogram::new();
    let mut count = 0u64;
    let mut buf = vec![0u8; ex.reply_len.max(4096)];
    let start = Instant::now();
    let (measure_from, end) = (start + warmup, start + warmup + duration);
    for c in &mut conns {
        c.sent_at = Instant::now();
        drive(c, ex, &mut buf, measure_from, &mut hist, &mut count)?;
    }
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        match poll.poll(&mut events, Some(end - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            drive(
                &mut conns[ev.token().0],
                ex,
                &mut buf,
                measure_from,
                &mut hist,
                &mut count,
            )?;
        }
    }
    Ok((count, duration, hist))
}

/// Advances one connection as far as it goes without blocking (edge-triggered: until
/// `WouldBlock`), recording each round trip completed after `measure_from`.
fn drive(
    c: &mut Conn,
    ex: Exchange,
    buf: &mut [u8],
    measure_from: Instant,
    hist: &mut Histogram,
    count: &mut u64,
) -> io::Result<()> {
    loop {
        if c.written < ex.request.len() {
            match c.stream.write(&ex.request[c.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => c.written += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        match c.stream.read(&mut buf[..ex.reply_len - c.read]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed",
                ))
            }
            Ok(k) => {
                c.read += k;
                if c.read == ex.reply_len {
                    let now = Instant::now();
                    if now >= measure_from {
                        hist.record((now - c.sent_at).as_nanos() as u64);
                        *count += 1;
                    }
                    c.read = 0;
                    c.written = 0;
                    c.sent_at = now;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
