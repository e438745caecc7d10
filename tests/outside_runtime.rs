//! Greenlet-only functions called outside any runtime fail with a clear panic that
//! names the function, not a crash.

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).unwrap_err();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap()
}

#[test]
fn sleep_outside_a_runtime_names_the_function() {
    let msg = panic_message(|| grove::sleep(std::time::Duration::from_millis(1)));
    assert!(msg.contains("grove::sleep"), "{msg}");
    assert!(msg.contains("inside a grove runtime"), "{msg}");
}

#[test]
fn spawn_and_current_outside_a_runtime_name_the_function() {
    let msg = panic_message(|| drop(grove::spawn(|| ())));
    assert!(msg.contains("grove::spawn"), "{msg}");
    let msg = panic_message(|| drop(grove::current()));
    assert!(msg.contains("grove::current"), "{msg}");
    assert!(grove::greenlet::try_current().is_none());
    assert!(!grove::greenlet::in_greenlet());
    assert_eq!(grove::greenlet::worker_index(), None);
}

#[test]
fn yield_now_outside_a_greenlet_is_harmless() {
    grove::yield_now();
}

/// Every primitive that needs a runtime says so in the same words, naming the call and how
/// to start one: sleeps and pools panic, sockets and servers return the error.
#[test]
fn primitives_outside_a_runtime_say_so_the_same_way() {
    const SAID: &str = "must be called from a greenlet inside a grove runtime \
                        (use grove::run, Runtime::block_on or Runtime::spawn to start one)";
    let sleep = panic_message(|| grove::sleep(std::time::Duration::from_millis(1)));
    let pool = panic_message(|| drop(grove::pool::Pool::new(1).spawn(|| ())));
    let socket = grove::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_err()
        .to_string();
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let server = rt
        .block_on(|| grove::server::StreamServer::bind("127.0.0.1:0", |_, _| {}))
        .unwrap();
    let start = server.start().unwrap_err().to_string();
    for (msg, call) in [
        (sleep, "grove::sleep"),
        (pool, "grove::pool::Pool::spawn"),
        (socket, "grove::net::TcpListener::bind"),
        (start, "StreamServer::start"),
    ] {
        assert!(msg.contains(&format!("{call} {SAID}")), "{msg}");
    }
}
