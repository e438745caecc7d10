//! The in-process workloads shared by `benches/core.rs` (criterion) and
//! `benches/compare.rs` (the comparison harness), each as one case per runtime.
//!
//! Both benches include this file with `#[path = "workloads/mod.rs"] mod workloads;`.
//! Sizes come in as a [`Sizes`]; `core` always runs [`Sizes::FULL`], `compare`
//! shrinks them under `--quick`. Peers run smaller sizes where they must (the
//! constants below say why); every case reports its element count, so times per
//! element compare across runtimes.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::thread;

/// Every workload's sizes. The peers' smaller sizes are per runtime because of hard
/// limits, not speed alone: may's guarded stacks are two mappings each, so it cannot
/// hold 1M coroutines under `vm.max_map_count` (65,530), and OS threads are slower by
/// orders of magnitude.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// `spawn_join`: tasks for grove and tokio, may, OS threads.
    pub(crate) spawn: u64,
    pub(crate) may_spawn: u64,
    pub(crate) thread_spawn: u64,
    /// `yield_many`: tasks, yields per task, and threads for the OS-thread row.
    pub(crate) yield_tasks: u64,
    pub(crate) yields: u64,
    pub(crate) yield_threads: u64,
    /// `chained_spawn` depth for grove and tokio; may takes ~30 us a link on 2 cores
    /// (perf: mostly the kernel waking and parking its idle worker), OS threads
    /// 50-850 us.
    pub(crate) chain: u64,
    pub(crate) may_chain: u64,
    pub(crate) thread_chain: u64,
    /// `skynet` leaves for grove and tokio; for may, which runs the tree breadth-first
    /// so nearly every node is live at once with a guarded stack: 100,000 leaves
    /// (111,111 nodes) fails with ENOMEM from `mmap`, 10,000 fits.
    pub(crate) skynet: u64,
    pub(crate) may_skynet: u64,
    /// `ping_pong` round trips for grove, tokio and may, and for OS threads.
    pub(crate) ping: u64,
    pub(crate) thread_ping: u64,
    /// `mutex_contention`: tasks, and lock/unlock pairs per task.
    pub(crate) mutex_tasks: u64,
    pub(crate) mutex_ops: u64,
}

impl Sizes {
    /// The sizes of `cargo bench --bench core` and of a default `compare` run.
    pub(crate) const FULL: Sizes = Sizes {
        spawn: 1_000_000,
        may_spawn: 20_000,
        thread_spawn: 10_000,
        yield_tasks: 1_000,
        yields: 1_000,
        yield_threads: 100,
        chain: 1_000_000,
        may_chain: 20_000,
        thread_chain: 1_000,
        skynet: 1_000_000,
        may_skynet: 10_000,
        ping: 1_000_000,
        thread_ping: 10_000,
        mutex_tasks: 100,
        mutex_ops: 10_000,
    };

    /// About a tenth of [`Sizes::FULL`] (skynet keeps a power of ten), for `--quick`.
    #[allow(dead_code)] // compare only
    pub(crate) const QUICK: Sizes = Sizes {
        spawn: 100_000,
        may_spawn: 5_000,
        thread_spawn: 2_000,
        yield_tasks: 200,
        yields: 500,
        yield_threads: 20,
        chain: 100_000,
        may_chain: 5_000,
        thread_chain: 300,
        skynet: 100_000,
        may_skynet: 10_000,
        ping: 100_000,
        thread_ping: 2_000,
        mutex_tasks: 50,
        mutex_ops: 2_000,
    };
}

/// Children per `skynet` node.
const SKYNET_DIV: u64 = 10;

/// One runtime's version of a workload: how many elements one run handles, and the
/// run itself.
pub(crate) struct Case<'a> {
    pub(crate) runtime: &'static str,
    pub(crate) elements: u64,
    pub(crate) run: Box<dyn Fn() + 'a>,
    /// Set when the bench's filter selected this case (criterion's filter argument;
    /// `core` only).
    #[allow(dead_code)] // read by core only
    pub(crate) selected: Cell<bool>,
}

/// A workload: one case per runtime (a criterion group in `core`, a row of each
/// bench's summary).
pub(crate) struct Workload<'a> {
    pub(crate) name: &'static str,
    pub(crate) cases: Vec<Case<'a>>,
}

impl<'a> Workload<'a> {
    pub(crate) fn new(name: &'static str) -> Self {
        Workload {
            name,
            cases: Vec::new(),
        }
    }

    pub(crate) fn case(
        mut self,
        runtime: &'static str,
        elements: u64,
        run: impl Fn() + 'a,
    ) -> Self {
        self.cases.push(Case {
            runtime,
            elements,
            run: Box::new(run),
            selected: Cell::new(false),
        });
        self
    }
}

/// The runtimes under test, each built once. may's runtime is global and configured
/// in [`Runtimes::new`] before its first spawn.
pub(crate) struct Runtimes {
    pub(crate) grove: grove::Runtime,
    pub(crate) tokio: tokio::runtime::Runtime,
    /// One-worker runtimes, for the same-worker ping-pong.
    pub(crate) grove1: grove::Runtime,
    pub(crate) tokio1: tokio::runtime::Runtime,
    pub(crate) workers: usize,
}

impl Runtimes {
    pub(crate) fn new(workers: usize) -> Self {
        let mut grove = grove::Runtime::builder().workers(workers);
        if let Some(bytes) = env_usize("GROVE_BENCH_STACK") {
            grove = grove.stack_size(bytes);
        }
        let grove = grove.build().expect("grove runtime");
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("tokio runtime");
        may::config().set_workers(workers);
        let grove1 = grove::Runtime::builder()
            .workers(1)
            .build()
            .expect("grove runtime");
        let tokio1 = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Runtimes {
            grove,
            tokio,
            grove1,
            tokio1,
            workers,
        }
    }
}

/// A numeric environment variable; unset or empty is `None`, not a number panics.
pub(crate) fn env_usize(name: &str) -> Option<usize> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// Spawns a may coroutine.
pub(crate) fn may_go<F, T>(f: F) -> may::coroutine::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: may's `spawn` is unsafe because a coroutine may migrate between worker
    // threads at a yield, so a thread-local borrowed across a yield would dangle, and
    // its stack is small. The bench closures touch no thread-locals across yields
    // (they only spawn, join, yield and send) and recurse a few frames deep.
    unsafe { may::coroutine::spawn(f) }
}

// ---------------------------------------------------------------- spawn_join

pub(crate) fn spawn_join(rt: &Runtimes, s: Sizes) -> Workload<'_> {
    Workload::new("spawn_join")
        .case("grove", s.spawn, move || {
            rt.grove.block_on(move || {
                let hs: Vec<_> = (0..s.spawn).map(|_| grove::spawn(move || {})).collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
        })
        .case("tokio", s.spawn, move || {
            // Spawned from a task on a worker, like grove's `block_on` greenlet, so the
            // spawns go to the local queue rather than the injector.
            rt.tokio
                .block_on(rt.tokio.spawn(async move {
                    let hs: Vec<_> = (0..s.spawn).map(|_| tokio::spawn(async move {})).collect();
                    for h in hs {
                        h.await.unwrap();
                    }
                }))
                .unwrap()
        })
        .case("may", s.may_spawn, move || {
            may_go(move || {
                let hs: Vec<_> = (0..s.may_spawn).map(|_| may_go(move || {})).collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
            .join()
            .unwrap()
        })
        .case("threads", s.thread_spawn, move || {
            let hs: Vec<_> = (0..s.thread_spawn)
                .map(|_| thread::spawn(move || {}))
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        })
}

// ---------------------------------------------------------------- yield_many

pub(crate) fn yield_many(rt: &Runtimes, s: Sizes) -> Workload<'_> {
    Workload::new("yield_many")
        .case("grove", s.yield_tasks * s.yields, move || {
            rt.grove.block_on(move || {
                let hs: Vec<_> = (0..s.yield_tasks)
                    .map(|_| {
                        grove::spawn(move || {
                            for _ in 0..s.yields {
                                grove::yield_now();
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
        })
        .case("tokio", s.yield_tasks * s.yields, move || {
            rt.tokio
                .block_on(rt.tokio.spawn(async move {
                    let hs: Vec<_> = (0..s.yield_tasks)
                        .map(|_| {
                            tokio::spawn(async move {
                                for _ in 0..s.yields {
                                    tokio::task::yield_now().await;
                                }
                            })
                        })
                        .collect();
                    for h in hs {
                        h.await.unwrap();
                    }
                }))
                .unwrap()
        })
        .case("may", s.yield_tasks * s.yields, move || {
            may_go(move || {
                let hs: Vec<_> = (0..s.yield_tasks)
                    .map(|_| {
                        may_go(move || {
                            for _ in 0..s.yields {
                                may::coroutine::yield_now();
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
            .join()
            .unwrap()
        })
        .case("threads", s.yield_threads * s.yields, move || {
            let hs: Vec<_> = (0..s.yield_threads)
                .map(|_| {
                    thread::spawn(move || {
                        for _ in 0..s.yields {
                            thread::yield_now();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        })
}

// ---------------------------------------------------------------- chained_spawn

fn chain_grove(left: u64, done: mpsc::SyncSender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        // Dropping the handle detaches the greenlet.
        drop(grove::spawn(move || chain_grove(left - 1, done)));
    }
}

fn chain_tokio(left: u64, done: tokio::sync::oneshot::Sender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        drop(tokio::spawn(async move { chain_tokio(left - 1, done) }));
    }
}

fn chain_may(left: u64, done: may::sync::mpsc::Sender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        drop(may_go(move || chain_may(left - 1, done)));
    }
}

fn chain_thread(left: u64, done: mpsc::SyncSender<()>) {
    if left == 0 {
        done.send(()).unwrap();
    } else {
        drop(thread::spawn(move || chain_thread(left - 1, done)));
    }
}

pub(crate) fn chained_spawn(rt: &Runtimes, s: Sizes) -> Workload<'_> {
    // The driver is the bench thread, outside every runtime; the first link is
    // spawned from it, the rest from inside.
    Workload::new("chained_spawn")
        .case("grove", s.chain, move || {
            let (tx, rx) = mpsc::sync_channel(1);
            drop(rt.grove.spawn(move || chain_grove(s.chain, tx)));
            rx.recv().unwrap();
        })
        .case("tokio", s.chain, move || {
            let (tx, rx) = tokio::sync::oneshot::channel();
            drop(rt.tokio.spawn(async move { chain_tokio(s.chain, tx) }));
            rx.blocking_recv().unwrap();
        })
        .case("may", s.may_chain, move || {
            let (tx, rx) = may::sync::mpsc::channel();
            drop(may_go(move || chain_may(s.may_chain, tx)));
            rx.recv().unwrap();
        })
        .case("threads", s.thread_chain, move || {
            let (tx, rx) = mpsc::sync_channel(1);
            drop(thread::spawn(move || chain_thread(s.thread_chain, tx)));
            rx.recv().unwrap();
        })
}

// ---------------------------------------------------------------- skynet

fn skynet_grove(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let child = size / SKYNET_DIV;
    let hs: Vec<_> = (0..SKYNET_DIV)
        .map(|i| grove::spawn(move || skynet_grove(num + i * child, child)))
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

fn skynet_tokio(num: u64, size: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let child = size / SKYNET_DIV;
        let hs: Vec<_> = (0..SKYNET_DIV)
            .map(|i| tokio::spawn(skynet_tokio(num + i * child, child)))
            .collect();
        let mut sum = 0;
        for h in hs {
            sum += h.await.unwrap();
        }
        sum
    })
}

fn skynet_may(num: u64, size: u64) -> u64 {
    if size == 1 {
        return num;
    }
    let child = size / SKYNET_DIV;
    let hs: Vec<_> = (0..SKYNET_DIV)
        .map(|i| may_go(move || skynet_may(num + i * child, child)))
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// `0 + 1 + ... + (leaves - 1)`.
fn skynet_sum(leaves: u64) -> u64 {
    leaves * (leaves - 1) / 2
}

// No OS-thread row: every inner node blocks a thread in `join`, so the 1M-leaf tree
// needs ~1.1M live threads, far beyond the thread and mapping limits (a guarded
// stack is two mappings); a tree small enough to fit (~30,000 nodes) would only
// measure thread creation again, which `spawn_join` already does.
pub(crate) fn skynet(rt: &Runtimes, s: Sizes) -> Workload<'_> {
    Workload::new("skynet")
        .case("grove", s.skynet, move || {
            let sum = rt.grove.block_on(move || skynet_grove(0, s.skynet));
            assert_eq!(sum, skynet_sum(s.skynet));
        })
        .case("tokio", s.skynet, move || {
            let sum = rt
                .tokio
                .block_on(rt.tokio.spawn(skynet_tokio(0, s.skynet)))
                .unwrap();
            assert_eq!(sum, skynet_sum(s.skynet));
        })
        .case("may", s.may_skynet, move || {
            let sum = may_go(move || skynet_may(0, s.may_skynet)).join().unwrap();
            assert_eq!(sum, skynet_sum(s.may_skynet));
        })
}

/// grove ping-pong over two queues. With `apart`, the two greenlets first spin until
/// both have started, which puts them on different workers (neither yields).
fn grove_ping_pong(rt: &grove::Runtime, n: u64, apart: bool) {
    rt.block_on(move || {
        let (ping, pong) = (grove::queue::Queue::new(), grove::queue::Queue::new());
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (ping2, pong2, started2) = (ping.clone(), pong.clone(), started.clone());
        let echo = grove::spawn(move || {
            if apart {
                rendezvous(&started2);
            }
            for _ in 0..n {
                let v: u64 = ping2.get().unwrap();
                pong2.put(v + 1).unwrap();
            }
            grove::greenlet::worker_index()
        });
        let driver = grove::spawn(move || {
            if apart {
                rendezvous(&started);
            }
            for i in 0..n {
                ping.put(i).unwrap();
                let v = pong.get().unwrap();
                debug_assert_eq!(v, i + 1);
            }
            grove::greenlet::worker_index()
        });
        let (a, b) = (driver.join().unwrap(), echo.join().unwrap());
        assert!(
            !apart || a != b,
            "ping_pong_2w: both greenlets on worker {a:?}"
        );
    })
}

/// Spins until two parties have arrived.
fn rendezvous(arrived: &std::sync::atomic::AtomicUsize) {
    use std::sync::atomic::Ordering::SeqCst;
    arrived.fetch_add(1, SeqCst);
    while arrived.load(SeqCst) < 2 {
        std::hint::spin_loop();
    }
}

async fn tokio_ping_pong(n: u64) {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let echo = tokio::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            pong_tx.send(v + 1).unwrap();
        }
    });
    for i in 0..n {
        ping_tx.send(i).unwrap();
        let v = pong_rx.recv().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
    drop(ping_tx);
    echo.await.unwrap();
}

/// `ping_pong_2w` for tokio: the echo task on a current-thread runtime of its own thread,
/// the driver on the multi-thread runtime, so every round trip crosses threads as grove's
/// does. (A multi-thread runtime alone would keep both tasks on one worker: a spawned
/// task and the tasks it wakes take that worker's LIFO slot, and tokio lets tasks move;
/// grove's started greenlets never do, so that pairing measured co-location against a
/// cross-thread hand-off.)
async fn tokio_ping_pong_apart(n: u64) {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let echo = thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async move {
                while let Some(v) = ping_rx.recv().await {
                    pong_tx.send(v + 1).unwrap();
                }
            })
    });
    for i in 0..n {
        ping_tx.send(i).unwrap();
        let v = pong_rx.recv().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
    drop(ping_tx);
    echo.join().unwrap();
}

fn may_ping_pong(n: u64) {
    let (ping_tx, ping_rx) = may::sync::mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = may::sync::mpsc::channel::<u64>();
    let echo = may_go(move || {
        while let Ok(v) = ping_rx.recv() {
            pong_tx.send(v + 1).unwrap();
        }
    });
    may_go(move || {
        for i in 0..n {
            ping_tx.send(i).unwrap();
            let v = pong_rx.recv().unwrap();
            debug_assert_eq!(v, i + 1);
        }
    })
    .join()
    .unwrap();
    echo.join().unwrap();
}

fn thread_ping_pong(n: u64) {
    let (ping_tx, ping_rx) = mpsc::channel::<u64>();
    let (pong_tx, pong_rx) = mpsc::channel::<u64>();
    let echo = thread::spawn(move || {
        while let Ok(v) = ping_rx.recv() {
            pong_tx.send(v + 1).unwrap();
        }
    });
    for i in 0..n {
        ping_tx.send(i).unwrap();
        let v = pong_rx.recv().unwrap();
        debug_assert_eq!(v, i + 1);
    }
    drop(ping_tx);
    echo.join().unwrap();
}

pub(crate) fn ping_pong(rt: &Runtimes, s: Sizes, apart: bool) -> Workload<'_> {
    let name = if apart {
        "ping_pong_2w"
    } else {
        "ping_pong_1w"
    };
    let (grove_rt, tokio_rt) = if apart {
        (&rt.grove, &rt.tokio)
    } else {
        (&rt.grove1, &rt.tokio1)
    };
    Workload::new(name)
        .case("grove", s.ping, move || {
            grove_ping_pong(grove_rt, s.ping, apart)
        })
        .case("tokio", s.ping, move || {
            if apart {
                tokio_rt
                    .block_on(tokio_rt.spawn(tokio_ping_pong_apart(s.ping)))
                    .unwrap()
            } else {
                tokio_rt
                    .block_on(tokio_rt.spawn(tokio_ping_pong(s.ping)))
                    .unwrap()
            }
        })
        .case("may", s.ping, move || may_ping_pong(s.ping))
        .case("threads", s.thread_ping, move || {
            thread_ping_pong(s.thread_ping)
        })
}

pub(crate) fn mutex_contention(rt: &Runtimes, s: Sizes) -> Workload<'_> {
    let total = s.mutex_tasks * s.mutex_ops;
    Workload::new("mutex_contention")
        .case("grove", total, move || {
            rt.grove.block_on(move || {
                let lock = grove::sync::Lock::new();
                let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                let hs: Vec<_> = (0..s.mutex_tasks)
                    .map(|_| {
                        let (lock, count) = (lock.clone(), count.clone());
                        grove::spawn(move || {
                            use std::sync::atomic::Ordering::Relaxed;
                            for _ in 0..s.mutex_ops {
                                let _g = lock.lock();
                                // A non-atomic increment: only the lock makes it exact.
                                count.store(count.load(Relaxed) + 1, Relaxed);
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), total);
            })
        })
        .case("tokio", total, move || {
            rt.tokio.block_on(async move {
                let m = std::sync::Arc::new(tokio::sync::Mutex::new(0u64));
                let hs: Vec<_> = (0..s.mutex_tasks)
                    .map(|_| {
                        let m = m.clone();
                        tokio::spawn(async move {
                            for _ in 0..s.mutex_ops {
                                *m.lock().await += 1;
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.await.unwrap();
                }
                assert_eq!(*m.lock().await, total);
            })
        })
        .case("may", total, move || {
            let m = std::sync::Arc::new(may::sync::Mutex::new(0u64));
            let hs: Vec<_> = (0..s.mutex_tasks)
                .map(|_| {
                    let m = m.clone();
                    may_go(move || {
                        for _ in 0..s.mutex_ops {
                            *m.lock().unwrap() += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(*m.lock().unwrap(), total);
        })
        .case("threads", total, move || {
            let m = std::sync::Arc::new(std::sync::Mutex::new(0u64));
            let hs: Vec<_> = (0..s.mutex_tasks)
                .map(|_| {
                    let m = m.clone();
                    thread::spawn(move || {
                        for _ in 0..s.mutex_ops {
                            *m.lock().unwrap() += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(*m.lock().unwrap(), total);
        })
}
