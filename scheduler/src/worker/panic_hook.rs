//! The panic hook that names the greenlet: a panic on a worker thread says which
//! greenlet (name, id, spawn site) failed, not just `grove-worker-0`.

use std::panic;

use super::with_local;
use crate::signal::payload_text;

/// Payload text of the panic Rust raises when a panic escapes a destructor while the
/// thread is already unwinding; the process aborts right after the hook runs.
const PANIC_IN_CLEANUP: &str = "panic in a destructor during cleanup";

/// Installs, once per process, a panic hook in front of the existing one. A panic in a
/// greenlet is reported as Rust's default hook would, but naming the greenlet (name, id,
/// spawn site) instead of the worker thread; the hook installed before is not called for
/// those (a hook installed after the runtime is built sees every panic). Panics outside
/// greenlets go to the previous hook. It also names the greenlet when Rust is about to
/// abort the process because a destructor panicked while the greenlet was unwinding
/// (from a kill, a `Timeout`, a panic or a shutdown).
///
/// Such a panic escapes from a frame of the user's own stack, so no `catch_unwind` of
/// grove's can contain it: Rust aborts (`panic in a destructor during cleanup`) and the
/// worker goes down with the process. What grove can do is say which greenlet it was. The
/// drops grove performs itself are contained instead (`task::drop_contained`). Other panics
/// pass through to the previous hook untouched.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let who = with_local(|l| {
                l.and_then(|l| {
                    l.with_current(|h| h.map(|h| (h.display_name(), h.id, h.spawned_at)))
                })
            });
            let text = payload_text(info.payload());
            if text != PANIC_IN_CLEANUP {
                match who {
                    Some((name, id, at)) => report_greenlet_panic(info, &name, id, at, &text),
                    None => prev(info),
                }
                return;
            }
            prev(info);
            if let Some((name, id, at)) = who {
                report!(
                    "grove: greenlet '{name}' (id {id}, spawned at {at}) panicked in a \
                     destructor while it was unwinding (killed, timed out, panicking or shut \
                     down); Rust aborts the process when a panic escapes a destructor during \
                     unwinding, so grove cannot contain it: catch panics inside such \
                     destructors (std::panic::catch_unwind) or do not panic in Drop"
                );
            }
        }));
    });
}

/// What Rust's default hook prints, but naming the greenlet rather than the worker
/// thread ("thread 'grove-worker-0' panicked" says nothing about which code failed).
fn report_greenlet_panic(
    info: &panic::PanicHookInfo<'_>,
    name: &str,
    id: u64,
    at: &std::panic::Location<'_>,
    text: &str,
) {
    let place = info
        .location()
        .map_or_else(String::new, |l| format!(" at {l}"));
    let bt = std::backtrace::Backtrace::capture();
    let trace = match bt.status() {
        std::backtrace::BacktraceStatus::Captured => format!("\nstack backtrace:\n{bt}"),
        _ => "\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
            .to_string(),
    };
    // Never `eprintln!`: a panic inside a panic hook aborts, and stderr may be closed.
    report!("greenlet '{name}' (id {id}, spawned at {at}) panicked{place}:\n{text}{trace}");
}
