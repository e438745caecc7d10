#!/usr/bin/env python3
"""What the `monkey` feature costs on echo: the compare harness built twice, run A/B/A/B.

    python3 benches/monkey_cost.py                  # 30 pairs of 1 s echo_c100 runs, ~2 min
    python3 benches/monkey_cost.py --pairs 60 --workload echo_c1000
    python3 benches/monkey_cost.py --full           # 5 s runs instead of 1 s
    python3 benches/monkey_cost.py --probe          # the hooks' cost per socket call
    python3 benches/monkey_cost.py --probe --conns 1000   # ... with per-fd state out of cache

Why this shape: on a small shared machine one echo run varies by ±20% with whatever
else runs, so two separate `cargo bench` runs (feature off, then on) cannot resolve a
5% difference. Here the two builds of `benches/compare.rs` (`compare-off`, and
`compare-on` with `--features grove-bench/monkey`) run alternately, one grove
repetition per process, in the order off/on, on/off, off/on, ... so drift in the
machine's load hits both alike. Each adjacent pair gives one ratio (on / off); the
report is the median of the ratios, their interquartile range, and a bootstrap 95%
interval of that median. Two metrics:

* round trips/s (the harness's metric; higher is better): what a user sees, and the
  noisiest, since it depends on how much CPU the process got;
* grove workers' CPU time per round trip (from `GROVE_COMPARE_METRICS=1`; lower is
  better): what the hooks add on the server's path, far less sensitive to load,
  because a starved process does fewer round trips *and* uses less CPU.

`--probe` instead alternates the two builds of `benches/monkey_probe.rs`: one greenlet
repeating an echo round trip's five socket calls on a loopback pair, timed in thread CPU
time. It isolates the hooks from everything else echo does, so its difference per call,
set against the worker CPU per round trip above, bounds what the feature can cost.

The load average is sampled before every pair and printed beside the results: quote
it with any number.
"""

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV = os.path.join(ROOT, "target", "compare", "results.csv")
WORKERS_RE = re.compile(r"workers (\d+)% \((\d+) ns per round trip\)")


def build(features, bench="compare"):
    """Builds `bench` (with `features`) and returns its executable."""
    cmd = ["cargo", "bench", "--bench", bench, "--no-run", "--message-format=json"]
    if features:
        cmd += ["--features", features]
    out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and \
                msg["target"]["name"] == bench:
            return msg["executable"]
    sys.exit(f"monkey_cost: no {bench} executable in `{' '.join(cmd)}`")


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_once(exe, workload, full):
    """One process, one grove repetition: (round trips/s, worker ns per round trip)."""
    cmd = [exe, "--workload", f"^{workload}$", "--runtime", "grove", "--reps", "1"]
    if not full:
        cmd.append("--quick")
    env = dict(os.environ, GROVE_COMPARE_METRICS="1")
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    if p.returncode != 0:
        sys.exit(f"monkey_cost: {' '.join(cmd)} failed:\n{p.stderr}")
    m = WORKERS_RE.search(p.stderr)
    if not m:
        sys.exit(f"monkey_cost: no worker CPU line in:\n{p.stderr}")
    with open(CSV) as f:
        for row in f.read().splitlines()[1:]:
            w, runtime, metric, _unit, _better, median = row.split(",")[:6]
            if w == workload and runtime == "grove" and metric == "round trips":
                return float(median), int(m.group(2))
    sys.exit(f"monkey_cost: no grove round-trips row for {workload} in {CSV}")


def probe_once(exe, iters, conns):
    """One process of monkey_probe: thread CPU ns per iteration (five socket calls)."""
    p = subprocess.run([exe, str(iters), str(conns)], cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    if p.returncode != 0:
        sys.exit(f"monkey_cost: {exe} failed:\n{p.stderr}")
    return float(p.stdout.split()[0])


def probe(pairs, iters, conns):
    print("building monkey_probe (feature off, then on)...", flush=True)
    exes = {"off": build(None, "monkey_probe"), "on": build("grove-bench/monkey", "monkey_probe")}
    rows = []
    for i in range(pairs):
        load = loadavg()
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        got = {k: probe_once(exes[k], iters, conns) for k in order}
        rows.append((load, got["off"], got["on"]))
        print(f"pair {i + 1:>3} load {load:5.2f}  off {got['off']:7.1f} ns  on {got['on']:7.1f} ns"
              f"  ratio {got['on'] / got['off']:.3f}", flush=True)
    loads = [r[0] for r in rows]
    deltas = sorted((on - off) / 5 for _, off, on in rows)
    q = statistics.quantiles(deltas, n=4)
    print(f"\nmonkey_probe, {conns} connection(s), {pairs} pairs of {iters} iterations, "
          f"load average "
          f"{min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f}), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"  per iteration (5 calls): off {statistics.median(r[1] for r in rows):.0f} ns, "
          f"on {statistics.median(r[2] for r in rows):.0f} ns (medians)")
    summary("on / off, per iteration", [on / off for _, off, on in rows], "lower is better")
    print(f"  added per socket call: median {statistics.median(deltas):.0f} ns, "
          f"IQR {q[0]:.0f}-{q[2]:.0f} ns")


def summary(name, ratios, better):
    """Median, IQR and a bootstrap 95% interval of the median of `ratios`."""
    rs = sorted(ratios)
    q = statistics.quantiles(rs, n=4)
    rng = random.Random(1)
    boots = sorted(statistics.median(rng.choices(rs, k=len(rs))) for _ in range(2000))
    lo, hi = boots[50], boots[1949]
    print(f"  {name:<28} median {statistics.median(rs):.3f}  IQR {q[0]:.3f}-{q[2]:.3f}  "
          f"95% CI of median {lo:.3f}-{hi:.3f}  (min {rs[0]:.3f}, max {rs[-1]:.3f}; "
          f"{better})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--workload", default="echo_c100")
    ap.add_argument("--full", action="store_true", help="5 s runs (default: 1 s, --quick)")
    ap.add_argument("--probe", action="store_true",
                    help="alternate the two builds of monkey_probe instead of echo")
    ap.add_argument("--iters", type=int, default=200_000, help="monkey_probe's iterations")
    ap.add_argument("--conns", type=int, default=1, help="monkey_probe's connections")
    a = ap.parse_args()
    if a.probe:
        return probe(a.pairs, a.iters, a.conns)
    print("building compare (feature off, then on)...", flush=True)
    exes = {"off": build(None), "on": build("grove-bench/monkey")}
    rows = []
    for i in range(a.pairs):
        load = loadavg()
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        got = {k: run_once(exes[k], a.workload, a.full) for k in order}
        rows.append((load, got["off"], got["on"]))
        print(f"pair {i + 1:>3} load {load:5.2f}  off {got['off'][0] / 1e3:7.1f} k/s "
              f"{got['off'][1]:>6} ns/rt   on {got['on'][0] / 1e3:7.1f} k/s "
              f"{got['on'][1]:>6} ns/rt   ratio {got['on'][0] / got['off'][0]:.3f} "
              f"/ {got['on'][1] / got['off'][1]:.3f}", flush=True)
    loads = [r[0] for r in rows]
    print(f"\n{a.workload}, {a.pairs} pairs, {'5' if a.full else '1'} s each, load average "
          f"{min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f}), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("feature on / feature off, per adjacent pair:")
    summary("round trips/s", [on[0] / off[0] for _, off, on in rows], "higher is better")
    summary("worker CPU per round trip", [on[1] / off[1] for _, off, on in rows],
            "lower is better")


if __name__ == "__main__":
    main()
