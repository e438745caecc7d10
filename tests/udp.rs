//! Green UDP: send_to/recv_from, connected sockets, receive interrupted by kill and Timeout,
//! receive timeouts, many greenlets exchanging datagrams.

use std::io;
use std::time::{Duration, Instant};

use grove::net::UdpSocket;

#[test]
fn send_to_and_recv_from() {
    grove::run(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let receiver = grove::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = b.recv_from(&mut buf).unwrap();
            b.send_to(&buf[..n].to_ascii_uppercase(), from).unwrap();
            from
        });
        a.send_to(b"ping", b_addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"PING"[..], b_addr));
        assert_eq!(receiver.join().unwrap(), a.local_addr().unwrap());
    });
}

#[test]
fn connected_send_recv_and_peek() {
    grove::run(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
        a.send(b"one").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(b.peek(&mut buf).unwrap(), 3);
        assert_eq!(b.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
    });
}

#[test]
fn send_to_a_host_name_resolves_it() {
    grove::run(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = b.local_addr().unwrap().port();
        // ("127.0.0.1", port) takes the literal fast path; "localhost" goes to the pool
        // (and may resolve to ::1 first, which this IPv4 socket cannot reach).
        a.send_to(b"lit", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(b.recv_from(&mut buf).unwrap().0, 3);
        let e = a.send_to(b"x", "no-such-host.invalid:9").unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::WouldBlock);
    });
}

#[test]
fn kill_and_timeout_interrupt_a_receive_and_nothing_is_lost() {
    grove::run(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 8];
        let r = grove::with_timeout(Duration::from_millis(20), || b.recv_from(&mut buf));
        assert!(r.is_err());
        let b2 = b.clone();
        let receiver = grove::spawn(move || {
            let mut buf = [0u8; 8];
            b2.recv_from(&mut buf).map(|(n, _)| n)
        });
        grove::yield_now();
        receiver.kill();
        assert!(receiver.join().unwrap_err().is_killed());
        a.send_to(b"kept", b.local_addr().unwrap()).unwrap();
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"kept");
    });
}

#[test]
fn read_timeout() {
    grove::run(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let e = s.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(20));
    });
}

#[test]
fn many_greenlets_exchange_datagrams() {
    const PEERS: usize = 50;
    const ROUNDS: usize = 20;
    grove::run(|| {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let echo = grove::spawn(move || loop {
            let mut buf = [0u8; 64];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            server.send_to(&buf[..n], from).unwrap();
        });
        let peers: Vec<_> = (0..PEERS)
            .map(|p| {
                grove::spawn(move || {
                    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                    s.connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    let mut ok = 0;
                    for r in 0..ROUNDS {
                        let msg = format!("{p}:{r}");
                        s.send(msg.as_bytes()).unwrap();
                        let mut buf = [0u8; 64];
                        // Loopback UDP can drop under pressure: a timeout is a loss, not a hang.
                        if let Ok(n) = s.recv(&mut buf) {
                            assert_eq!(&buf[..n], msg.as_bytes());
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        let ok: usize = peers.into_iter().map(|h| h.join().unwrap()).sum();
        echo.kill();
        assert!(ok > PEERS * ROUNDS * 9 / 10, "{ok} round trips");
    });
}

#[test]
fn from_and_into_std() {
    grove::run(|| {
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = UdpSocket::try_from(std_sock).unwrap();
        let addr = s.local_addr().unwrap();
        let back = s.into_std().unwrap();
        assert_eq!(back.local_addr().unwrap(), addr);
        back.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let mut buf = [0u8; 1];
        // Blocking again: std's own timeout applies.
        assert!(back.recv_from(&mut buf).is_err());
    });
}
