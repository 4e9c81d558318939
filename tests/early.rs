//! Ending an exchange early: garbage gets its 400 at once, and a client that leaves while the
//! upstream works on its request makes ringway close the upstream connection right away.

mod common;

use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{DRIVERS, RawOrigin, Ringway, config_for, connect, read_request, read_response};
use serde_json::json;

/// Time allowed for ringway to react; far below the timeouts the tests configure, so a pass
/// cannot come from a timeout.
const REACTION_BOUND: Duration = Duration::from_secs(2);

#[test]
fn garbage_head_rejected_at_once() {
    // RFC 9112 section 3: an invalid request line gets 400. The start of a TLS ClientHello is
    // invalid from its first byte, so ringway need not wait for an empty line.
    let origin = RawOrigin::start(|_, _| {});
    for driver in DRIVERS {
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        let started = Instant::now();
        stream
            .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .expect("write bytes");
        let response = read_response(&mut stream, false).expect("read response");
        assert_eq!(response.status, 400, "{driver:?}");
        assert!(
            started.elapsed() < REACTION_BOUND,
            "{driver:?}: 400 took {:?}",
            started.elapsed()
        );
        assert_eq!(
            origin.connections(),
            0,
            "{driver:?}: garbage reached the upstream"
        );
    }
}

#[test]
fn client_leaving_closes_upstream() {
    let (closed_tx, closed_rx) = mpsc::channel::<Instant>();
    let closed_tx = Mutex::new(closed_tx);
    // An upstream that reads the request and never responds, and records when ringway closes.
    let origin = RawOrigin::start(move |mut stream, _| {
        if read_request(&mut stream).is_err() {
            return;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let mut byte = [0u8; 1];
        if let Ok(0) = stream.read(&mut byte) {
            let _ = closed_tx.lock().expect("lock").send(Instant::now());
        }
    });
    for driver in DRIVERS {
        let mut config = config_for(origin.addr, driver);
        config["timeouts"] = json!({ "upstream_head_ms": 30_000 });
        let proxy = Ringway::start(&config);
        let mut stream = connect(proxy.addr);
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("write request");
        std::thread::sleep(Duration::from_millis(200));
        let left_at = Instant::now();
        drop(stream);
        let closed_at = closed_rx
            .recv_timeout(REACTION_BOUND * 2)
            .expect("upstream connection closed");
        assert!(
            closed_at.duration_since(left_at) < REACTION_BOUND,
            "{driver:?}: the upstream connection stayed open {:?} after the client left",
            closed_at.duration_since(left_at)
        );
        // A 504 would show as `status=504` in an error line and as `" 504 ` after the request
        // line of the access log. A bare "504" is not enough: timestamps and request ids may
        // contain those digits.
        let logs = proxy.logs();
        assert!(
            !logs.contains("status=504"),
            "{driver:?}: a client that left was logged as a 504 error: {logs}"
        );
        assert!(
            !logs.contains("\" 504 "),
            "{driver:?}: a client that left got a 504 in the access log: {logs}"
        );
    }
}
