// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the interrupt word (`scheduler/src/irq.rs`), on the production
//! `Word` and `Scope`: kill, deadlock, shutdown and timeouts.
//!
//! # Who each thread stands for
//! * The **greenlet** is `worker::switch::checkpoint` (its take of a pending timeout,
//!   `Word::take_scope`) and `Timeout::drop` (`Scope::end`).
//! * The **timer** is `Fire::wake_by_ref` on the reactor thread (`Scope::fire`).
//! * **Interrupters** are `worker::switch::kill`, `worker::switch::deadlock` (the `block_on`
//!   thread) and `worker::switch::shutdown` (a hub).
//!
//! # Properties asserted
//! * Rule 2 (issue 15 item 8): once `Scope::end` has returned, the greenlet never sees
//!   its scope's id in the word, whatever the timer does meanwhile; and a timeout the
//!   greenlet took inside the scope was taken once.
//! * Rule 1: `SHUTDOWN` wins over everything, `KILL` over `DEADLOCK`, and a final
//!   interrupt never blocks or erases a timeout (a timeout armed inside a destructor
//!   during a kill still fires).
//!
//! # Shown to fail when broken
//! * `timeout_never_lands_after_its_scope_ended` fails at once on the protocol grove
//!   had before (checked): `Scope::fire` reading `active`, filling the word, then
//!   re-reading `active` to take its id back, each step under its own short lock
//!   instead of one critical section; the greenlet then reads its id after `end`.
//! * `finals_keep_their_precedence` fails if `Word::kill` overwrites a shutdown
//!   (`set_final(KILL, |_| true)`) or `Word::deadlock` overwrites a kill.
//! * `a_pending_kill_does_not_block_a_timeout` fails with the old single-part word
//!   (a timeout only filled an empty word, so a pending kill blocked it forever).
//!
//! # Bounds
//! Two or three threads, a handful of operations each: exhaustive under the CI's
//! `LOOM_MAX_PREEMPTIONS=3`, in about a second (measured on the two-core CI machine).

use grove_scheduler::__loom::{final_of, scope_of, Scope, Word, DEADLOCK, KILL, SHUTDOWN};
use loom::sync::Arc;
use loom::thread;

const ID: u64 = 7;

#[test]
fn timeout_never_lands_after_its_scope_ended() {
    loom::model(|| {
        let shared = Arc::new((Word::new(), Scope::new(ID)));
        let timer = {
            let shared = shared.clone();
            thread::spawn(move || {
                let (word, scope) = &*shared;
                scope.fire(word)
            })
        };
        let (word, scope) = &*shared;
        // A blocking point inside the scope: may take the timeout.
        let mut taken = 0;
        if scope_of(word.load()) == ID && word.take_scope(ID) {
            taken += 1;
        }
        scope.end(word);
        // Every later blocking point: the id is never there again.
        assert_ne!(
            scope_of(word.load()),
            ID,
            "a timeout landed after its scope"
        );
        let fired = timer.join().unwrap();
        assert_ne!(
            scope_of(word.load()),
            ID,
            "a timeout landed after its scope"
        );
        assert!(taken <= usize::from(fired));
    });
}

#[test]
fn finals_keep_their_precedence() {
    loom::model(|| {
        let word = Arc::new(Word::new());
        let ts: Vec<_> = [KILL, DEADLOCK, SHUTDOWN]
            .into_iter()
            .map(|f| {
                let word = word.clone();
                thread::spawn(move || match f {
                    KILL => word.kill(),
                    DEADLOCK => word.deadlock(),
                    _ => word.shutdown(),
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(final_of(word.load()), SHUTDOWN);
    });
    loom::model(|| {
        let word = Arc::new(Word::new());
        let w2 = word.clone();
        let killer = thread::spawn(move || assert!(w2.kill()));
        let deadlocked = word.deadlock();
        killer.join().unwrap();
        // A kill replaces a deadlock; a deadlock never replaces a kill.
        assert_eq!(final_of(word.load()), KILL);
        let _ = deadlocked;
        assert!(!word.deadlock());
        assert!(word.shutdown());
        assert!(!word.kill(), "a kill never replaces a shutdown");
        assert_eq!(final_of(word.load()), SHUTDOWN);
    });
}

#[test]
fn a_pending_kill_does_not_block_a_timeout() {
    loom::model(|| {
        let shared = Arc::new((Word::new(), Scope::new(ID)));
        let killer = {
            let shared = shared.clone();
            thread::spawn(move || shared.0.kill())
        };
        let timer = {
            let shared = shared.clone();
            thread::spawn(move || shared.1.fire(&shared.0))
        };
        assert!(killer.join().unwrap());
        assert!(
            timer.join().unwrap(),
            "the timer always finds the timeout part free"
        );
        let (word, scope) = &*shared;
        let w = word.load();
        assert_eq!((final_of(w), scope_of(w)), (KILL, ID));
        // The greenlet (in a destructor during the kill) takes the timeout; the kill
        // stays pending.
        assert!(word.take_scope(ID));
        scope.end(word);
        let w = word.load();
        assert_eq!((final_of(w), scope_of(w)), (KILL, 0));
    });
}
