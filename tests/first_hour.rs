//! The first hour with grove (issue 11): the hello demo shows work on every hub; a panic
//! in a greenlet is reported naming the greenlet, not the worker thread; the README's
//! table lists every environment variable grove, its tests and benches read.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/hello.rs"]
mod hello;

use std::collections::BTreeSet;
use std::path::Path;

use grove::greenlet::GreenletBuilder;

#[test]
fn the_hello_demo_runs_on_every_hub() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let results = hello::printing_workers(&rt, 8, 42);
    let order: Vec<u64> = results.iter().map(|(n, _)| *n).collect();
    assert_eq!(order, (1..=8).collect::<Vec<_>>());
    let hubs: BTreeSet<usize> = results.iter().map(|(_, h)| *h).collect();
    assert_eq!(hubs, BTreeSet::from([0, 1]), "{results:?}");
}

#[test]
fn a_greenlet_panic_names_the_greenlet() {
    if common::is_child() {
        grove::run(|| {
            let h = GreenletBuilder::new()
                .name("conn-7")
                .spawn(|| panic!("boom in a handler"));
            assert!(h.join().is_err());
        });
        // Outside any greenlet, the previous hook reports as usual.
        let _ = std::panic::catch_unwind(|| panic!("boom outside"));
        return;
    }
    let out = common::run_child("a_greenlet_panic_names_the_greenlet", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("greenlet 'conn-7' (id ")
            && err.contains("spawned at tests/first_hour.rs:")
            && err.contains(") panicked at tests/first_hour.rs:")
            && err.contains("boom in a handler"),
        "{err}"
    );
    assert!(!err.contains("thread 'grove-worker"), "{err}");
    assert!(
        err.contains("panicked at") && err.contains("boom outside"),
        "{err}"
    );
}

/// Every `"GROVE_..."` string literal in the sources names a variable the README's
/// environment table lists.
#[test]
fn the_readme_lists_every_environment_variable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let needle = format!("\"{}_", "GROVE");
    let mut names = BTreeSet::new();
    let mut stack: Vec<_> = [
        "src",
        "scheduler/src",
        "reactor/src",
        "primitives/src",
        "tests",
        "benches",
        "examples",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices(&needle) {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if text[i + 1 + name.len()..].starts_with('"') {
                        names.insert(name);
                    }
                }
            }
        }
    }
    assert!(names.contains("GROVE_MONITOR") && names.contains("GROVE_BLOCKING_THREADS"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let table: Vec<&str> = readme.lines().filter(|l| l.starts_with('|')).collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !table.iter().any(|l| l.contains(&format!("`{n}`"))))
        .collect();
    assert!(missing.is_empty(), "not in the README's table: {missing:?}");
}
