//! Soak: a bounded chaos run mixing everything across two workers, then an audit.
//!
//! For `GROVE_SOAK_SECS` seconds (default 20, sized for CI next to everything else;
//! `GROVE_SOAK_SECS=600` for a long run) the main greenlet starts rounds, four at a
//! time, each a greenlet running one scenario picked by a seeded xorshift PRNG
//! (`GROVE_SOAK_SEED` to replay another mix):
//!
//! - spawn/join bursts that yield;
//! - kills of greenlets blocked on an event, a queue get, a lock, a TCP read or a sleep;
//! - `with_timeout` around sleeps and queue gets, some expiring, some not;
//! - `Queue` (bounded) and `Channel` producers and consumers;
//! - `Lock` and `Semaphore` contention, checking mutual exclusion and the permit count;
//! - green TCP echo over loopback against a `StreamServer`;
//! - `blocking::spawn_blocking` calls;
//! - a `Pool` with backpressure, checking it never runs more than its size;
//! - faults (issue 15): `on_finish` callbacks and detached greenlets panicking with
//!   payloads whose own `Drop` panics, loops that catch kills a few times before letting
//!   one through, destructors that block (a sleep, a contended lock, a `with_timeout`)
//!   while a kill unwinds them, and a second runtime dropped from one of its own
//!   greenlets with greenlets parked and queued on it.
//!
//! The child runs with stderr a closed pipe (`prog 2>&1 | head`): grove's reports must
//! not take a worker down (the child's own panics go to stdout). After the audit,
//! greenlets parked with destructors that block are left for the runtime's drop, which
//! must run them all, well within the grace period.
//!
//! Then it asserts: every greenlet it spawned is accounted for (returned or killed, and
//! the runtime's `live_greenlets` is 0); stacks are back (none live once the runtime
//! idles); the blocking pool holds no job; no file descriptor leaked; RSS grew by less
//! than 512 MiB; and the blocking monitor, on with a 1 s threshold, reported no stall
//! (a deadlock would also end `block_on` with gevent's `LoopExit` panic). A round that
//! never ends fails the child after `GROVE_SOAK_SECS + 60` s with the reactor's counters
//! and a run-info dump (each round is named after its scenario), before the parent's own
//! watchdog: that is how the lost wake-up fixed in `scheduler/src/state.rs` was found.
//! Scenarios check their own results; timing only ever appears in generous bounds.
//!
//! Runs in a child process so that fd and RSS counts see no other test.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove::net::TcpStream;
use grove::server::StreamServer;
use grove::{
    pool::Pool,
    queue::{Channel, Queue},
    sync::{Event, Lock, Semaphore},
    JoinHandle,
};

mod common;

use common::Rng;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/echo.rs"]
mod echo;

/// Generous bound for anything that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);
/// Rounds running at once.
const IN_FLIGHT: usize = 4;
const MAX_RSS_GROWTH: usize = 512 << 20;

/// What happened to every greenlet the soak spawned, and to its operations.
#[derive(Default)]
struct Stats {
    spawned: AtomicU64,
    returned: AtomicU64,
    killed: AtomicU64,
    /// `with_timeout` scopes that expired / completed.
    timed_out: AtomicU64,
    in_time: AtomicU64,
    items: AtomicU64,
    echoes: AtomicU64,
    blocking_calls: AtomicU64,
    /// Greenlets left detached on purpose (they fail unjoined).
    detached: AtomicU64,
    /// Kills caught (and survived) by catch loops.
    caught: AtomicU64,
    rounds: [AtomicU64; SCENARIOS.len()],
}

impl Stats {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Spawns a counted greenlet.
fn spawn<T: Send + 'static>(
    st: &Arc<Stats>,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    spawn_named(st, None, f)
}

/// [`spawn`], with a name that run-info dumps show.
fn spawn_named<T: Send + 'static>(
    st: &Arc<Stats>,
    name: Option<String>,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    Stats::bump(&st.spawned);
    match name {
        Some(name) => grove::greenlet::GreenletBuilder::new().name(name).spawn(f),
        None => grove::spawn(f),
    }
}

/// Joins a counted greenlet: `Some(value)` if it returned, `None` if it was killed.
/// Any other ending (a panic: a failed check inside) fails the soak.
fn join<T: Send + 'static>(st: &Stats, h: JoinHandle<T>) -> Option<T> {
    match h.join() {
        Ok(v) => {
            Stats::bump(&st.returned);
            Some(v)
        }
        Err(e) if e.is_killed() => {
            Stats::bump(&st.killed);
            None
        }
        Err(e) => panic!("soak greenlet failed: {e}"),
    }
}

type Scenario = fn(&Arc<Stats>, &mut Rng, SocketAddr);

const SCENARIOS: [(&str, Scenario); 9] = [
    ("spawn/join", spawn_join),
    ("kill", kill),
    ("timeouts", timeouts),
    ("queues", queues),
    ("locks", locks),
    ("tcp echo", tcp_echo),
    ("spawn_blocking", blocking),
    ("pool", pool),
    ("faults", faults),
];

fn spawn_join(st: &Arc<Stats>, rng: &mut Rng, _: SocketAddr) {
    let n = rng.range(1, 200);
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let yields = i % 4;
            spawn(st, move || {
                for _ in 0..yields {
                    grove::yield_now();
                }
                i * 3
            })
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(join(st, h), Some(i as u64 * 3));
    }
}

/// Victims block in every way a greenlet can; about half are killed, the rest are
/// released and must return.
fn kill(st: &Arc<Stats>, rng: &mut Rng, addr: SocketAddr) {
    let event = Arc::new(Event::new());
    let queue: Arc<Queue<u64>> = Arc::new(Queue::new());
    let lock = Arc::new(Lock::new());
    let held = lock.lock();
    let n = rng.range(2, 24);
    let mut victims = Vec::new();
    for i in 0..n {
        let kind = rng.range(0, 4);
        let (event, queue, lock) = (event.clone(), queue.clone(), lock.clone());
        let h = spawn(st, move || match kind {
            0 => {
                event.wait();
            }
            1 => {
                queue.get().unwrap();
            }
            2 => {
                drop(lock.lock());
            }
            3 => {
                // Blocked reading a connection the echo server never answers (we
                // never write): ends by kill, or by the release's shutdown below.
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut buf = [0u8; 1];
                event.wait();
                let _ = s.read(&mut buf);
            }
            _ => grove::sleep(Duration::from_millis(1) * (i as u32 % 3)),
        });
        victims.push((kind, h));
    }
    // Let them block, then kill a random half.
    grove::sleep(rng.ms(0, 3));
    let mut survivors = Vec::new();
    for (kind, h) in victims {
        if rng.chance(2) {
            h.kill();
            let _ = join(st, h); // usually killed; a quick one may have returned
        } else {
            survivors.push((kind, h));
        }
    }
    // Release the rest: every way of blocking gets its wake-up.
    drop(held);
    event.set();
    for _ in 0..n {
        let _ = queue.put(0);
    }
    for (kind, h) in survivors {
        if kind == 3 {
            // Its read is never answered: the kill ends it (the stream closes as it
            // unwinds, and the server's handler sees the end of the connection).
            h.kill();
            let _ = join(st, h);
        } else {
            assert!(h.wait_timeout(PATIENCE), "a released waiter did not wake");
            assert_eq!(join(st, h), Some(()));
        }
    }
    assert!(!lock.is_locked(), "a killed waiter left the lock held");
}

/// `with_timeout` around sleeps and queue gets: some expire, some complete.
fn timeouts(st: &Arc<Stats>, rng: &mut Rng, _: SocketAddr) {
    let queue: Arc<Queue<u64>> = Arc::new(Queue::bounded(4));
    let n = rng.range(1, 30);
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let (limit, work, get) = (rng.ms(0, 6), rng.ms(0, 6), rng.chance(2));
            let (st2, queue) = (st.clone(), queue.clone());
            spawn(st, move || {
                let r = if get {
                    grove::with_timeout(limit, || queue.get().unwrap())
                } else {
                    grove::with_timeout(limit, || {
                        grove::sleep(work);
                        0
                    })
                };
                match r {
                    Ok(_) => Stats::bump(&st2.in_time),
                    Err(_) => Stats::bump(&st2.timed_out),
                }
            })
        })
        .collect();
    // Feed some of the getters; the rest time out.
    for _ in 0..n / 2 {
        if queue.put_timeout(1, Duration::from_millis(2)).is_err() {
            break;
        }
    }
    for h in hs {
        assert_eq!(join(st, h), Some(()));
    }
}

/// Bounded-queue and channel producers and consumers: every item arrives once.
fn queues(st: &Arc<Stats>, rng: &mut Rng, _: SocketAddr) {
    let producers = rng.range(1, 4);
    let consumers = rng.range(1, 4);
    let per = rng.range(1, 200);
    let channel = rng.chance(2);
    let q: Arc<Queue<u64>> = Arc::new(Queue::bounded(rng.range(1, 8) as usize));
    let ch: Arc<Channel<u64>> = Arc::new(Channel::new());
    let ps: Vec<_> = (0..producers)
        .map(|p| {
            let (q, ch) = (q.clone(), ch.clone());
            spawn(st, move || {
                for i in 0..per {
                    let v = p * 1_000_000 + i;
                    if channel {
                        ch.put(v).unwrap();
                    } else {
                        q.put(v).unwrap();
                    }
                }
            })
        })
        .collect();
    let cs: Vec<_> = (0..consumers)
        .map(|_| {
            let (q, ch) = (q.clone(), ch.clone());
            spawn(st, move || {
                let mut sum = 0u64;
                let mut count = 0u64;
                loop {
                    let got = if channel { ch.get() } else { q.get() };
                    match got {
                        Ok(v) => {
                            sum += v;
                            count += 1;
                        }
                        Err(_) => return (sum, count),
                    }
                }
            })
        })
        .collect();
    for p in ps {
        assert_eq!(join(st, p), Some(()));
    }
    q.close();
    ch.close();
    let (mut sum, mut count) = (0, 0);
    for c in cs {
        let (s, n) = join(st, c).unwrap();
        sum += s;
        count += n;
    }
    let expect: u64 = (0..producers)
        .map(|p| (0..per).map(|i| p * 1_000_000 + i).sum::<u64>())
        .sum();
    assert_eq!(
        (count, sum),
        (producers * per, expect),
        "items lost or doubled"
    );
    st.items.fetch_add(count, Ordering::Relaxed);
}

/// Lock: mutual exclusion across a yield inside the critical section. Semaphore: never
/// more holders than permits.
fn locks(st: &Arc<Stats>, rng: &mut Rng, _: SocketAddr) {
    let lock = Arc::new(Lock::new());
    let counter = Arc::new(AtomicU64::new(0));
    let permits = rng.range(1, 4) as usize;
    let sem = Arc::new(Semaphore::new(permits));
    let inside = Arc::new(AtomicUsize::new(0));
    let n = rng.range(2, 16);
    let rounds = rng.range(1, 30);
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let (lock, counter, sem, inside) =
                (lock.clone(), counter.clone(), sem.clone(), inside.clone());
            spawn(st, move || {
                for r in 0..rounds {
                    {
                        let _g = lock.lock();
                        // Not an atomic increment: a second holder would lose updates.
                        let v = counter.load(Ordering::Relaxed);
                        if r % 2 == 0 {
                            grove::yield_now();
                        }
                        counter.store(v + 1, Ordering::Relaxed);
                    }
                    let _p = sem.acquire();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= permits, "{now} holders of {permits} permits");
                    grove::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for h in hs {
        assert_eq!(join(st, h), Some(()));
    }
    assert_eq!(counter.load(Ordering::Relaxed), n * rounds);
    assert_eq!(sem.available(), permits);
    assert!(!lock.is_locked());
}

/// Green TCP clients against the echo server: every byte comes back.
fn tcp_echo(st: &Arc<Stats>, rng: &mut Rng, addr: SocketAddr) {
    let clients = rng.range(1, 8);
    let hs: Vec<_> = (0..clients)
        .map(|c| {
            let messages = rng.range(1, 20);
            let len = rng.range(1, 2048) as usize;
            spawn(st, move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut back = vec![0u8; len];
                for m in 0..messages {
                    let msg = vec![(c * 31 + m) as u8; len];
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg);
                }
                messages
            })
        })
        .collect();
    for h in hs {
        let m = join(st, h).unwrap();
        st.echoes.fetch_add(m, Ordering::Relaxed);
    }
}

/// Calls that would hold a worker run on the blocking pool; the greenlet parks.
fn blocking(st: &Arc<Stats>, rng: &mut Rng, _: SocketAddr) {
    let n = rng.range(1, 12);
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let nap = rng.ms(0, 2);
            spawn(st, move || {
                grove::blocking::spawn_blocking(move || {
                    std::thread::sleep(nap);
                    i * 2
                })
                .join()
                .unwrap()
            })
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(join(st, h), Some(i as u64 * 2));
    }
    Stats::bump(&st.blocking_calls);
}

/// A pool of a few: `spawn` blocks while it is full; never more than its size at once.
fn pool(st: &Arc<Stats>, rng: &mut Rng, _: SocketAddr) {
    let size = rng.range(1, 4) as usize;
    let pool = Pool::new(size);
    let running = Arc::new(AtomicUsize::new(0));
    let jobs = rng.range(1, 24);
    let mut hs = Vec::new();
    for _ in 0..jobs {
        let running = running.clone();
        let nap = rng.ms(0, 2);
        Stats::bump(&st.spawned);
        hs.push(pool.spawn(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(now <= size, "{now} running in a pool of {size}");
            grove::sleep(nap);
            running.fetch_sub(1, Ordering::SeqCst);
        }));
        assert!(pool.len() <= size);
    }
    for h in hs {
        assert_eq!(join(st, h), Some(()));
    }
    assert!(pool.join_timeout(PATIENCE));
}

/// A panic payload whose own `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("soak: a panic payload's drop panics");
    }
}

/// Blocks in its destructor, whatever unwinds its greenlet.
struct BlockingDrop {
    lock: Arc<Lock>,
    done: Arc<AtomicU64>,
}

impl Drop for BlockingDrop {
    fn drop(&mut self) {
        grove::sleep(Duration::from_millis(1));
        drop(self.lock.lock());
        let r = grove::with_timeout(Duration::from_millis(1), || Event::new().wait());
        assert!(r.is_err(), "a timeout inside a destructor fires");
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

fn faults(st: &Arc<Stats>, rng: &mut Rng, _: SocketAddr) {
    // Payloads whose Drop panics: a callback's, and a detached greenlet's.
    let h = spawn(st, || 1u64);
    let fired = Event::new();
    let f2 = fired.clone();
    h.on_finish(move || {
        f2.set();
        panic::panic_any(Bomb);
    });
    assert_eq!(join(st, h), Some(1));
    fired.wait();
    let d = spawn(st, || panic::panic_any::<Bomb>(Bomb));
    let g = d.greenlet();
    drop(d);
    g.wait();
    Stats::bump(&st.detached);

    // A loop that catches `k` kills, then lets the next one through.
    let k = rng.range(1, 3);
    let caught = Arc::new(AtomicU64::new(0));
    let c2 = caught.clone();
    let catcher = spawn(st, move || {
        while c2.load(Ordering::SeqCst) < k {
            if panic::catch_unwind(AssertUnwindSafe(|| grove::sleep(PATIENCE))).is_err() {
                c2.fetch_add(1, Ordering::SeqCst);
            }
        }
        grove::sleep(PATIENCE); // the kill lands here
    });
    grove::sleep(rng.ms(0, 2));
    catcher.kill();
    assert_eq!(join(st, catcher), None);
    let n = caught.load(Ordering::SeqCst);
    assert!(
        n == k || n == 0,
        "caught {n} of {k} (0: killed before it started)"
    );
    st.caught.fetch_add(n, Ordering::Relaxed);

    // Destructors that block while a kill unwinds their greenlet.
    let lock = Arc::new(Lock::new());
    let done = Arc::new(AtomicU64::new(0));
    let held = lock.lock();
    let started = Arc::new(AtomicU64::new(0));
    let victims: Vec<_> = (0..rng.range(1, 4))
        .map(|_| {
            let d = BlockingDrop {
                lock: lock.clone(),
                done: done.clone(),
            };
            let started = started.clone();
            spawn(st, move || {
                let _d = d;
                started.fetch_add(1, Ordering::SeqCst);
                Event::new().wait();
            })
        })
        .collect();
    // Started, so that their destructors run on their own stacks (a greenlet killed
    // before it starts has its closure dropped unrun, off any greenlet).
    while started.load(Ordering::SeqCst) < victims.len() as u64 {
        grove::yield_now();
    }
    grove::sleep(rng.ms(0, 2));
    for v in &victims {
        v.kill_nowait();
    }
    grove::sleep(rng.ms(0, 2));
    drop(held);
    let n = victims.len() as u64;
    for v in victims {
        assert_eq!(join(st, v), None);
    }
    assert_eq!(done.load(Ordering::SeqCst), n);

    // A runtime dropped from one of its own greenlets.
    if rng.chance(4) {
        let inner = grove::Runtime::builder()
            .workers(1)
            .monitor(None)
            .build()
            .unwrap();
        let parked: Vec<_> = (0..3)
            .map(|_| inner.spawn(|| Event::new().wait()))
            .collect();
        let slot = Arc::new(Mutex::new(None::<grove::Runtime>));
        let go = Event::new();
        let (s2, g2) = (slot.clone(), go.clone());
        let dropper = inner.spawn(move || {
            g2.wait();
            drop(s2.lock().unwrap().take());
        });
        let queued: Vec<_> = (0..3).map(|i| inner.spawn(move || i)).collect();
        *slot.lock().unwrap() = Some(inner);
        go.set();
        dropper.join().unwrap();
        for h in parked {
            assert!(h.join().unwrap_err().is_shutdown());
        }
        for h in queued {
            // Queued before the drop: ran, or was cancelled by it.
            if let Err(e) = h.join() {
                assert!(e.is_shutdown(), "{e}");
            }
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
        .unwrap_or(default)
}

#[test]
fn soak() {
    let secs = env_u64("GROVE_SOAK_SECS", 20);
    if !common::is_child() {
        // stderr closed: see the module docs. A hang fails after a generous watchdog.
        let limit = Duration::from_secs(secs * 2 + 100);
        let out = common::run_child_watched("soak", &[], true, limit);
        eprintln!("{}", out.stdout);
        assert!(out.success, "soak child failed");
        assert!(out.stdout.contains("SOAK OK"));
        return;
    }
    // The child's own failures go to stdout: its stderr is a closed pipe.
    panic::set_hook(Box::new(|info| println!("soak child: {info}")));
    let seed = env_u64("GROVE_SOAK_SEED", 0x5EED_6A0E);
    println!("soak: {secs} s, seed {seed:#x}");

    let stalls = Arc::new(Mutex::new(Vec::new()));
    let rt = {
        let stalls = stalls.clone();
        grove::Runtime::builder()
            .workers(2)
            .monitor(Some(Duration::from_secs(1)))
            .on_stall(move |r| stalls.lock().unwrap().push(r.to_string()))
            .build()
            .map(Arc::new)
            .unwrap()
    };
    // Warm up the blocking pool, the reactor and the stack pools before the baselines.
    rt.block_on(|| {
        grove::blocking::spawn_blocking(|| ()).join().unwrap();
        grove::sleep(Duration::from_millis(1));
    });
    let fds_before = open_fds();
    let rss_before = rss();

    // A hang prints what every greenlet waits for before the parent's watchdog kills us.
    let done = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let watchdog = {
        let (done, rt) = (done.clone(), rt.clone());
        std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(secs + 60);
            let mut finished = done.0.lock().unwrap();
            while !*finished {
                let left = limit.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    println!(
                        "soak child: no end after {} s; {:?}\n{}",
                        secs + 60,
                        rt.reactor_metrics(),
                        rt.dump()
                    );
                    std::process::exit(3);
                }
                finished = done.1.wait_timeout(finished, left).unwrap().0;
            }
        })
    };

    let st = Arc::new(Stats::default());
    let start = Instant::now();
    let rounds = {
        let st = st.clone();
        rt.block_on(move || {
            let server = StreamServer::bind("127.0.0.1:0", echo::handle)
                .unwrap()
                .pool(256);
            server.start().unwrap();
            let addr = server.local_addr();
            let mut master = Rng::new(seed);
            let deadline = Instant::now() + Duration::from_secs(secs);
            let mut rounds = 0u64;
            while Instant::now() < deadline {
                let batch: Vec<_> = (0..IN_FLIGHT)
                    .map(|_| {
                        let mut rng = Rng::new(master.next());
                        let which = (rng.next() % SCENARIOS.len() as u64) as usize;
                        let st2 = st.clone();
                        // Named, so that a dump says which scenario a round runs.
                        let name = format!("soak round: {}", SCENARIOS[which].0);
                        spawn_named(&st, Some(name), move || {
                            SCENARIOS[which].1(&st2, &mut rng, addr);
                            Stats::bump(&st2.rounds[which]);
                        })
                    })
                    .collect();
                for h in batch {
                    assert_eq!(join(&st, h), Some(()));
                    rounds += 1;
                }
            }
            assert!(server.stop(PATIENCE), "echo handlers did not finish");
            rounds
        })
    };
    let elapsed = start.elapsed();
    *done.0.lock().unwrap() = true;
    done.1.notify_one();
    watchdog.join().unwrap();

    // Audit.
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let spawned = get(&st.spawned);
    let (returned, killed) = (get(&st.returned), get(&st.killed));
    let per_scenario: Vec<String> = SCENARIOS
        .iter()
        .zip(&st.rounds)
        .map(|((name, _), n)| format!("{name} {}", get(n)))
        .collect();
    println!(
        "{rounds} rounds in {elapsed:.1?} ({}); greenlets: {spawned} spawned = {returned} \
         returned + {killed} killed; timeouts: {} expired, {} in time; {} queue items, {} \
         echoes, {} blocking rounds",
        per_scenario.join(", "),
        get(&st.timed_out),
        get(&st.in_time),
        get(&st.items),
        get(&st.echoes),
        get(&st.blocking_calls),
    );
    let detached = get(&st.detached);
    println!(
        "faults: {detached} detached failures, {} kills caught by catch loops",
        get(&st.caught)
    );
    assert_eq!(
        spawned,
        returned + killed + detached,
        "every greenlet accounted for"
    );
    assert!(killed > 0 && get(&st.timed_out) > 0 && get(&st.in_time) > 0);
    assert!(st.rounds.iter().all(|n| get(n) > 0), "every scenario ran");

    let m = rt.metrics();
    let finished: u64 = m.workers.iter().map(|w| w.finished).sum();
    println!(
        "metrics: {} live, {finished} finished on workers, {} stolen, {} remote wakes; \
         reactor: {} events, {} timers fired",
        m.live_greenlets,
        m.workers.iter().map(|w| w.stolen).sum::<u64>(),
        m.workers.iter().map(|w| w.remote_wakes).sum::<u64>(),
        m.reactor.events_dispatched,
        m.reactor.timers_fired,
    );
    assert_eq!(m.live_greenlets, 0, "greenlets still live");
    assert!(
        finished >= spawned,
        "{finished} finished < {spawned} spawned"
    );

    // Stacks: none live once the runtime idles (the main greenlet's comes back last).
    let t = Instant::now();
    let stacks = loop {
        let s = rt.handle().stack_metrics();
        if s.live == 0 || t.elapsed() > PATIENCE {
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("stacks: {stacks:?}");
    assert_eq!(stacks.live, 0, "{stacks:?}");

    // The blocking pool holds no job.
    let bp = grove::blocking::global();
    assert_eq!(bp.queued(), 0);
    let t = Instant::now();
    while bp.idle_threads() < bp.threads() && t.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        bp.idle_threads(),
        bp.threads(),
        "a blocking job is still running"
    );

    // No fd leaked: every socket of the soak is closed (the server's listener too).
    let fds_after = open_fds();
    let rss_after = rss();
    println!(
        "fds {fds_before} -> {fds_after}; RSS {} -> {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );
    assert!(
        fds_after <= fds_before,
        "fds leaked: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after < rss_before + MAX_RSS_GROWTH,
        "RSS grew by {} MiB",
        (rss_after - rss_before) >> 20
    );

    // No stall: no greenlet held a worker for a second.
    let reports = stalls.lock().unwrap().clone();
    assert!(
        reports.is_empty(),
        "stalls reported:\n{}",
        reports.join("\n")
    );
    assert_eq!(rt.metrics().stalls, Some(0));

    // Destructors that block at shutdown: parked greenlets whose drops sleep, contend
    // for a lock and time out; the runtime's drop runs every one of them.
    let lock = Arc::new(Lock::new());
    let done = Arc::new(AtomicU64::new(0));
    let parked = Arc::new(AtomicU64::new(0));
    const AT_SHUTDOWN: u64 = 16;
    for _ in 0..AT_SHUTDOWN {
        let d = BlockingDrop {
            lock: lock.clone(),
            done: done.clone(),
        };
        let parked = parked.clone();
        drop(rt.spawn(move || {
            let _d = d;
            parked.fetch_add(1, Ordering::SeqCst);
            Event::new().wait();
        }));
    }
    while parked.load(Ordering::SeqCst) < AT_SHUTDOWN {
        std::thread::yield_now();
    }
    let t = Instant::now();
    drop(Arc::into_inner(rt).expect("the watchdog has let go of the runtime"));
    let took = t.elapsed();
    println!("shutdown with {AT_SHUTDOWN} blocking destructors: {took:.1?}");
    assert_eq!(done.load(Ordering::SeqCst), AT_SHUTDOWN);
    assert!(took < grove::runtime::DEFAULT_SHUTDOWN_GRACE, "{took:?}");
    println!("SOAK OK");
}
