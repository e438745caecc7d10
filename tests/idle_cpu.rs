//! An idle runtime sleeps: its worker and reactor threads use ~0% CPU.

use std::time::{Duration, Instant};

/// CPU time (user + system, in clock ticks) of this process's threads whose name
/// starts with `prefix`.
fn cpu_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = entry.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        total += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    total
}

#[test]
fn idle_runtime_uses_no_cpu() {
    let rt = grove::Runtime::builder()
        .workers(2)
        .thread_name("idlecheck")
        .build()
        .unwrap();
    // Do some work first so every worker has run and gone back to sleep.
    rt.block_on(|| {
        let hs: Vec<_> = (0..1000).map(|i| grove::spawn(move || i)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<i32>()
    });
    let before = cpu_ticks("idlecheck") + cpu_ticks("grove-reactor");
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let after = cpu_ticks("idlecheck") + cpu_ticks("grove-reactor");
    let wall_ticks = start.elapsed().as_millis() as u64 / 10; // 100 ticks per second
                                                              // Spinning workers would burn ~2 × wall_ticks; allow 5% of one core.
    assert!(
        after - before <= wall_ticks / 20 + 1,
        "idle runtime burned {} ticks in {} ticks of wall time",
        after - before,
        wall_ticks
    );
}
