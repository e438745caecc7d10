//! Helpers shared by grove-monkey's tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc;
use std::time::Duration;

/// A runtime with `workers` workers, the hooks linked in.
pub fn rt(workers: usize) -> grove::Runtime {
    grove_monkey::link();
    grove::Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime")
}

/// Runs `f` on a fresh thread and fails the test if it does not return within `limit`
/// (a hooked call that blocked its worker would otherwise hang the test).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: no result within {limit:?} (a worker thread blocked?)"),
    }
}

/// A connected pair of std streams (accepted side, connecting side), made inside a
/// greenlet: the connect runs in a greenlet of its own while this one accepts.
pub fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let c = grove::spawn(move || std::net::TcpStream::connect(addr).unwrap());
    let (s, _) = l.accept().unwrap();
    (s, c.join().unwrap())
}

/// The errno of an io::Error.
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Path of a program on PATH, if any.
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

/// Makes sure `program` is installed, installing Debian's `package` if it is not
/// (`apt-get update`, then `apt-get install -y`), under a file lock so parallel tests
/// do not race. Panics with a clear message if it cannot be installed: nothing is
/// skipped silently.
pub fn ensure_installed(program: &str, package: &str) -> std::path::PathBuf {
    if let Some(p) = which(program) {
        return p;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("grove-monkey-apt.lock"))
        .expect("open the apt lock file");
    // SAFETY: flock on an open fd we own; released when `lock` is dropped.
    let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock the apt lock file");
    if let Some(p) = which(program) {
        return p;
    }
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
    };
    let update = apt(&["update"]);
    let install = apt(&["install", "-y", "--no-install-recommends", package]);
    which(program).unwrap_or_else(|| {
        panic!(
            "{program} is not installed and `apt-get install -y {package}` did not install it \
             (this test needs it; install it by hand). apt-get update: {update:?}; install: {install:?}"
        )
    })
}

/// A `redis-server` child process on a free port of 127.0.0.1, killed on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
}

impl RedisServer {
    /// Installs redis-server if needed, starts it and waits until it accepts.
    pub fn start() -> RedisServer {
        let bin = ensure_installed("redis-server", "redis-server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--daemonize",
                "no",
                "--maxclients",
                "10000",
                "--protected-mode",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = RedisServer { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny keep-alive HTTP/1.1 server on grove's own `StreamServer` (grove::net, no
/// hooks involved): every GET is answered with `hello <path>`.
pub fn http_server() -> grove::server::StreamServer {
    use std::io::{Read, Write};
    let server = grove::server::StreamServer::bind("127.0.0.1:0", |mut s, _| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let body = format!("hello {path}");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    })
    .unwrap();
    server.start().unwrap();
    server
}
