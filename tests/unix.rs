//! Green Unix-domain sockets: echo over a listener, pairs, full duplex, interrupts.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::Duration;

use grove::net::{UnixListener, UnixStream};

/// A fresh socket path, removed when dropped.
struct SockPath(PathBuf);

impl SockPath {
    fn new(tag: &str) -> SockPath {
        let p = std::env::temp_dir().join(format!("grove-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        SockPath(p)
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn echo_many_clients() {
    let path = SockPath::new("echo");
    let p = path.0.clone();
    grove::run(move || {
        let listener = UnixListener::bind(&p).unwrap();
        let server = grove::spawn(move || {
            for conn in listener.incoming() {
                let conn = conn.unwrap();
                grove::spawn(move || {
                    let _ = io::copy(&mut &conn, &mut &conn);
                });
            }
        });
        let clients: Vec<_> = (0..50)
            .map(|c| {
                let p = p.clone();
                grove::spawn(move || {
                    let conn = UnixStream::connect(&p).unwrap();
                    let mut reader = BufReader::new(&conn);
                    for m in 0..50 {
                        writeln!(&conn, "client {c} message {m}").unwrap();
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        assert_eq!(line, format!("client {c} message {m}\n"));
                    }
                })
            })
            .collect();
        clients.into_iter().for_each(|h| h.join().unwrap());
        server.kill();
    });
}

#[test]
fn pair_half_close_and_full_duplex() {
    grove::run(|| {
        let (a, b) = UnixStream::pair().unwrap();
        // Writer greenlet and reader (this one) on `a`; `b` echoes.
        let echo = grove::spawn(move || io::copy(&mut &b, &mut &b).unwrap());
        let a2 = a.clone();
        let writer = grove::spawn(move || {
            for _ in 0..256 {
                (&a2).write_all(&[7u8; 4096]).unwrap();
            }
            a2.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        (&a).read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 256 * 4096);
        assert!(got.iter().all(|&b| b == 7));
        writer.join().unwrap();
        assert_eq!(echo.join().unwrap(), 256 * 4096);
    });
}

#[test]
fn kill_and_timeout_interrupt_read_and_accept() {
    let path = SockPath::new("interrupt");
    let p = path.0.clone();
    grove::run(move || {
        let listener = UnixListener::bind(&p).unwrap();
        assert!(grove::with_timeout(Duration::from_millis(20), || listener.accept()).is_err());
        let (mut a, b) = UnixStream::pair().unwrap();
        let b2 = b.clone();
        let reader = grove::spawn(move || {
            let mut buf = [0u8; 4];
            (&b2).read(&mut buf)
        });
        grove::yield_now();
        reader.kill();
        assert!(reader.join().unwrap_err().is_killed());
        a.write_all(b"kept").unwrap();
        let mut buf = [0u8; 4];
        (&b).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"kept");
        // The listener still accepts.
        let c = UnixStream::connect(&p).unwrap();
        let (s, _) = listener.accept().unwrap();
        drop((c, s));
    });
}

#[test]
fn from_and_into_std() {
    grove::run(|| {
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut x = UnixStream::try_from(x).unwrap();
        x.write_all(b"hi").unwrap();
        let mut y = y;
        let mut buf = [0u8; 2];
        y.read_exact(&mut buf).unwrap();
        let mut x = x.into_std().unwrap();
        y.write_all(b"yo").unwrap();
        x.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"yo");
    });
}

#[test]
fn outside_a_runtime_is_an_error() {
    let e = UnixStream::pair().unwrap_err();
    assert!(e.to_string().contains("grove runtime"), "{e}");
}
