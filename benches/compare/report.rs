//! The harness's output: the table on stdout, `results.csv` and `chart.svg`.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::{Better, Metric, Options, RUNTIMES};

/// Median, min and max of one runtime's repetitions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) reps: usize,
}

impl Stats {
    /// The statistics of a non-empty sample (the median of an even count is the
    /// upper middle value, as in `core`).
    pub(crate) fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Stats {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
            reps: v.len(),
        }
    }
}

/// One (workload, metric, runtime) result.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) workload: String,
    pub(crate) metric: Metric,
    pub(crate) runtime: &'static str,
    /// Elements, tasks or connections of this runtime's case (0 when skipped).
    pub(crate) size: u64,
    /// The statistics, or why there are none ("failed: ..." / "skipped: ...").
    pub(crate) outcome: Result<Stats, String>,
}

/// The (workload, metric) pairs in first-seen order, with their rows.
fn groups(rows: &[Row]) -> Vec<(&str, Metric, Vec<&Row>)> {
    let mut out: Vec<(&str, Metric, Vec<&Row>)> = Vec::new();
    for r in rows {
        match out
            .iter_mut()
            .find(|(w, m, _)| *w == r.workload && m.name == r.metric.name)
        {
            Some((_, _, v)) => v.push(r),
            None => out.push((&r.workload, r.metric, vec![r])),
        }
    }
    out
}

fn median_of(rows: &[&Row], runtime: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.runtime == runtime)
        .and_then(|r| r.outcome.as_ref().ok())
        .map(|s| s.median)
}

/// A value in its base unit, human-scaled: `ns` → ns/µs/ms/s, `B` → B/KiB/MiB,
/// `1/s` → /s, k/s, M/s.
pub(crate) fn human(v: f64, unit: &str) -> String {
    let scaled = |steps: &[(f64, &str)]| {
        let (div, suffix) = steps
            .iter()
            .rev()
            .find(|(d, _)| v.abs() >= *d)
            .copied()
            .unwrap_or(steps[0]);
        let x = v / div;
        let digits = if x.abs() >= 100.0 {
            0
        } else if x.abs() >= 10.0 {
            1
        } else {
            2
        };
        format!("{x:.digits$} {suffix}")
    };
    match unit {
        "ns" => scaled(&[(1.0, "ns"), (1e3, "µs"), (1e6, "ms"), (1e9, "s")]),
        "B" => scaled(&[(1.0, "B"), (1024.0, "KiB"), (1024.0 * 1024.0, "MiB")]),
        "1/s" => scaled(&[(1.0, "/s"), (1e3, "k/s"), (1e6, "M/s")]),
        _ => format!("{v:.3} {unit}"),
    }
}

/// 1,000,000 → "1M", 20,000 → "20k".
fn short(n: u64) -> String {
    match n {
        0 => "-".into(),
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Whether `grove` beats `peer` on this metric.
fn grove_better(metric: Metric, grove: f64, peer: f64) -> bool {
    match metric.better {
        Better::Lower => grove < peer,
        Better::Higher => grove > peer,
    }
}

/// Prints the table: per workload and metric, each runtime's median and grove's
/// ratio to each peer; then the failures and skips.
pub(crate) fn print_table(rows: &[Row], o: &Options) {
    let runtimes: Vec<&str> = RUNTIMES
        .iter()
        .copied()
        .filter(|r| o.wants_runtime(r))
        .collect();
    let peers: Vec<&str> = runtimes.iter().copied().filter(|r| *r != "grove").collect();
    println!();
    println!(
        "grove compare: median of {} interleaved repetitions, {} workers{}",
        o.reps,
        o.workers,
        if o.quick { ", --quick sizes" } else { "" }
    );
    println!("ratio = grove / peer, same run; `*` marks where grove is better (the `better` column says which way).");
    let mut head = format!("{:<22} {:<13} {:<6}", "workload", "metric", "better");
    for r in &runtimes {
        let _ = write!(head, " {r:>10}");
    }
    for p in &peers {
        let _ = write!(head, " {:>10}", format!("g/{p}"));
    }
    let _ = write!(head, "  sizes ({})", runtimes.join("/"));
    println!("{head}");
    println!("{}", "-".repeat(head.chars().count()));
    let mut notes = Vec::new();
    for (workload, metric, rs) in groups(rows) {
        let mut line = format!(
            "{:<22} {:<13} {:<6}",
            workload,
            metric.name,
            if metric.better == Better::Lower {
                "lower"
            } else {
                "higher"
            }
        );
        for r in &runtimes {
            let cell = match rs.iter().find(|x| x.runtime == *r).map(|x| &x.outcome) {
                Some(Ok(s)) => human(s.median, metric.unit),
                Some(Err(e)) if e.starts_with("skipped") => "skip".into(),
                Some(Err(_)) => "FAIL".into(),
                None => "-".into(),
            };
            let _ = write!(line, " {cell:>10}");
        }
        let grove = median_of(&rs, "grove");
        for p in &peers {
            let cell = match (grove, median_of(&rs, p)) {
                (Some(g), Some(v)) if v != 0.0 => format!(
                    "{:.2}x{}",
                    g / v,
                    if grove_better(metric, g, v) { "*" } else { " " }
                ),
                _ => "-".into(),
            };
            let _ = write!(line, " {cell:>10}");
        }
        let sizes: Vec<String> = runtimes
            .iter()
            .map(|r| {
                rs.iter()
                    .find(|x| x.runtime == *r)
                    .map_or("-".into(), |x| short(x.size))
            })
            .collect();
        let _ = write!(line, "  {}", sizes.join("/"));
        println!("{line}");
        for r in &rs {
            if let Err(e) = &r.outcome {
                let note = format!("{workload} {}: {e}", r.runtime);
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("  {n}");
        }
    }
}

/// Writes `results.csv` and `chart.svg` into `dir`; returns their paths.
pub(crate) fn write_files(rows: &[Row], o: &Options, dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let csv = dir.join("results.csv");
    let mut s = String::from("workload,runtime,metric,unit,better,median,min,max,reps,size,note\n");
    for r in rows {
        let better = if r.metric.better == Better::Lower {
            "lower"
        } else {
            "higher"
        };
        let (stats, note) = match &r.outcome {
            Ok(st) => (
                format!("{},{},{},{}", st.median, st.min, st.max, st.reps),
                String::new(),
            ),
            Err(e) => (",,,0".to_string(), e.replace([',', '\n', '"'], ";")),
        };
        let _ = writeln!(
            s,
            "{},{},{},{},{better},{stats},{},{note}",
            r.workload, r.runtime, r.metric.name, r.metric.unit, r.size
        );
    }
    std::fs::write(&csv, s)?;
    let svg = dir.join("chart.svg");
    std::fs::write(&svg, chart(rows, o))?;
    Ok((csv, svg))
}

/// One group of bars: its label, the runtime it is normalised to, and per runtime
/// (relative value, human-readable raw value).
type ChartGroup<'a> = (String, &'a str, Vec<(&'a str, f64, String)>);

/// A runtime's bar colour.
fn colour(runtime: &str) -> &'static str {
    match runtime {
        "grove" => "#2e7d32",
        "tokio" => "#1565c0",
        "may" => "#ef6c00",
        _ => "#757575",
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart: a group of bars per (workload, metric), one bar per runtime, showing
/// performance relative to grove (grove = 1; above 1 the peer does better, below 1
/// grove does), on a log scale, since the runtimes differ by orders of magnitude.
/// A group without a grove result is normalised to its first runtime instead, and
/// says so under its label.
fn chart(rows: &[Row], o: &Options) -> String {
    let runtimes: Vec<&str> = RUNTIMES
        .iter()
        .copied()
        .filter(|r| o.wants_runtime(r))
        .collect();
    let mut groups_rel: Vec<ChartGroup<'_>> = Vec::new();
    for (workload, metric, rs) in groups(rows) {
        let Some(base_rt) = runtimes
            .iter()
            .copied()
            .find(|r| median_of(&rs, r).is_some())
        else {
            continue;
        };
        let base = median_of(&rs, base_rt).unwrap_or(1.0);
        let bars = runtimes
            .iter()
            .filter_map(|r| {
                let v = median_of(&rs, r)?;
                let rel = match metric.better {
                    Better::Lower => base / v,
                    Better::Higher => v / base,
                };
                (rel.is_finite() && rel > 0.0).then(|| (*r, rel, human(v, metric.unit)))
            })
            .collect();
        groups_rel.push((format!("{workload} {}", metric.name), base_rt, bars));
    }
    let (mut lo, mut hi) = (0.5f64, 2.0f64);
    for (_, _, bars) in &groups_rel {
        for (_, rel, _) in bars {
            lo = lo.min(*rel);
            hi = hi.max(*rel);
        }
    }
    let (lo_exp, hi_exp) = (
        lo.log10().floor().max(-4.0) as i32,
        hi.log10().ceil().min(4.0) as i32,
    );
    let bar_w = 14.0;
    let group_w = bar_w * runtimes.len() as f64 + 18.0;
    let (left, top, plot_h, label_h) = (70.0, 70.0, 320.0, 190.0);
    // Room on the right for the last rotated label.
    let width = left + group_w * groups_rel.len().max(1) as f64 + 160.0;
    let height = top + plot_h + label_h;
    let y = |rel: f64| {
        let e = rel.log10().clamp(lo_exp as f64, hi_exp as f64);
        top + plot_h * (hi_exp as f64 - e) / (hi_exp - lo_exp) as f64
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">grove vs tokio, may and OS threads: performance relative to grove (grove = 1, higher is better, log scale)</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#444">median of {} interleaved repetitions, {} workers{}; time, latency and bytes inverted so that taller is better; hover a bar for its value</text>"##,
        o.reps,
        o.workers,
        if o.quick { ", --quick sizes" } else { "" }
    );
    // Legend.
    for (i, r) in runtimes.iter().enumerate() {
        let x = left + 90.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="50" width="12" height="12" fill="{}"/><text x="{}" y="60">{r}</text>"#,
            colour(r),
            x + 16.0
        );
    }
    // Grid: a line per power of ten, the 1x line darker.
    for e in lo_exp..=hi_exp {
        let yy = y(10f64.powi(e));
        let (stroke, w) = if e == 0 { ("#000", 1.2) } else { ("#ccc", 0.6) };
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}" stroke-width="{w}"/>"#,
            width - 20.0
        );
        let label = format!("{}x", 10f64.powi(e));
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 6.0,
            yy + 4.0
        );
    }
    let bottom = y(10f64.powi(lo_exp));
    for (g, (label, base_rt, bars)) in groups_rel.iter().enumerate() {
        let gx = left + 10.0 + group_w * g as f64;
        for (i, r) in runtimes.iter().enumerate() {
            let Some((_, rel, raw)) = bars.iter().find(|(br, _, _)| br == r) else {
                continue;
            };
            let x = gx + bar_w * i as f64;
            let yy = y(*rel);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {r}: {} ({rel:.2}x)</title></rect>"#,
                bar_w - 2.0,
                (bottom - yy).max(0.5),
                colour(r),
                xml_escape(label),
                xml_escape(raw)
            );
        }
        let lx = gx + group_w / 2.0 - 6.0;
        let ly = bottom + 10.0;
        let mut text = xml_escape(label);
        if *base_rt != "grove" {
            let _ = write!(text, " (vs {base_rt}: no grove)");
        }
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" transform="rotate(45 {lx:.1} {ly:.1})">{text}</text>"#
        );
    }
    s.push_str("</svg>\n");
    s
}
