//! The splice relay mode (`"relay": "splice"`): bodies arrive intact, truncated bodies stay
//! truncated, a client abort closes the upstream, and chunked bodies still take the copy path.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DRIVERS, Driver, Origin, RawOrigin, Ringway, config_for, connect, pattern_bytes, pattern_ok,
    read_request, read_response,
};
use serde_json::json;

fn splice_proxy(upstream: std::net::SocketAddr, driver: Driver) -> Ringway {
    let mut config = config_for(upstream, driver);
    config["relay"] = json!("splice");
    Ringway::start(&config)
}

fn get(stream: &mut std::net::TcpStream, target: &str, version: &str) {
    let request = format!("GET {target} HTTP/{version}\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write request");
}

#[test]
fn splice_relays_bodies_intact() {
    const BYTES: usize = 48 << 20;
    let origin = Origin::start();
    for driver in DRIVERS {
        let proxy = splice_proxy(origin.addr, driver);
        let mut stream = connect(proxy.addr);
        // Content-Length, twice on one connection, so the pipe is reused after a transfer.
        for round in 0..2 {
            get(&mut stream, &format!("/bytes/{BYTES}"), "1.1");
            let response = read_response(&mut stream, false).expect("read response");
            assert_eq!(response.status, 200, "{driver:?} round {round}");
            assert!(response.complete, "{driver:?} round {round}");
            assert_eq!(response.body.len(), BYTES, "{driver:?} round {round}");
            assert!(
                pattern_ok(&response.body, 0),
                "{driver:?} round {round}: corrupted body"
            );
        }
        // Close-delimited to an HTTP/1.0 client stays close-delimited (RFC 9112 section 6.3).
        let mut stream = connect(proxy.addr);
        get(&mut stream, "/close/1000000", "1.0");
        let response = read_response(&mut stream, false).expect("read response");
        assert!(response.complete, "{driver:?}: close-delimited body");
        assert_eq!(response.body, pattern_bytes(0, 1_000_000), "{driver:?}");
        // Chunked takes the copy path and is re-encoded.
        let mut stream = connect(proxy.addr);
        get(&mut stream, "/chunked/300000", "1.1");
        let response = read_response(&mut stream, false).expect("read response");
        assert!(
            response.chunked && response.complete,
            "{driver:?}: chunked body"
        );
        assert_eq!(response.body, pattern_bytes(0, 300_000), "{driver:?}");
    }
}

#[test]
fn splice_keeps_truncation_visible() {
    // RFC 9112 section 8: a message cut short must not look complete.
    let origin = RawOrigin::start(|mut stream, _| {
        if read_request(&mut stream).is_ok() {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
            let _ = stream.write_all(&pattern_bytes(0, 300_000));
        }
    });
    for driver in DRIVERS {
        let proxy = splice_proxy(origin.addr, driver);
        let mut stream = connect(proxy.addr);
        get(&mut stream, "/cut", "1.1");
        let response = read_response(&mut stream, false).expect("read response");
        assert_eq!(response.status, 200, "{driver:?}");
        assert!(!response.complete, "{driver:?}: a cut body looked complete");
        assert_eq!(response.body, pattern_bytes(0, 300_000), "{driver:?}");
    }
}

#[test]
fn splice_client_abort_closes_upstream() {
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<Instant>();
    let closed_tx = std::sync::Mutex::new(closed_tx);
    let origin = RawOrigin::start(move |mut stream, _| {
        if read_request(&mut stream).is_err() {
            return;
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n");
        let piece = pattern_bytes(0, 64 * 1024);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if stream.write_all(&piece).is_err() {
                let _ = closed_tx.lock().expect("lock").send(Instant::now());
                return;
            }
        }
    });
    for driver in DRIVERS {
        let proxy = splice_proxy(origin.addr, driver);
        let mut stream = connect(proxy.addr);
        get(&mut stream, "/endless", "1.1");
        let mut seen = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while seen < 4 << 20 {
            let n = std::io::Read::read(&mut stream, &mut buf).expect("read body");
            assert!(n > 0, "{driver:?}: ringway closed early");
            seen += n;
        }
        let closed_at = Instant::now();
        drop(stream);
        let upstream_closed = closed_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("upstream write failed in time");
        assert!(
            upstream_closed.duration_since(closed_at) < Duration::from_secs(3),
            "{driver:?}: upstream kept streaming after the client left"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
