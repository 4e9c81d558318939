//! Upstream failures through the real `ringway` binary: refused, silent, reset, closed
//! and invalid upstreams, missing routes, stale pooled connections and client aborts.
//! Every scenario runs under io_uring and epoll.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{
    DRIVERS, RawOrigin, RecordingOrigin, Ringway, TIMEOUT, assert_error_response, config_for,
    connect, ok_with_body, read_request, read_response, reply_with_target, send, wait_for_close,
};

/// Bound for ringway to close a connection once the exchange on it is over.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Bound for a 502 that needs no waiting: a refused connect, a reset or an invalid
/// response on loopback is seen at once, so anything near a timeout means ringway waited.
const FAST_FAILURE_MAX: Duration = Duration::from_millis(500);

/// `timeouts.upstream_head_ms` in the silent-upstream test.
const UPSTREAM_HEAD_MS: u64 = 1000;

/// How far after `UPSTREAM_HEAD_MS` the 504 may arrive: timer granularity, scheduling on a
/// loaded two-core machine, and the time to write the response.
const TIMEOUT_SLACK: Duration = Duration::from_millis(1000);

/// How much earlier than `UPSTREAM_HEAD_MS` the 504 may arrive: the runtime's timer wheel
/// fires on millisecond ticks.
const TIMEOUT_EARLY: Duration = Duration::from_millis(20);

/// `limits.max_response_head_bytes` in the oversized-head test.
const MAX_RESPONSE_HEAD_BYTES: usize = 1024;

/// Bound between the client's close and ringway closing the upstream connection.
const PROPAGATED_CLOSE_MAX: Duration = Duration::from_secs(1);

/// How long a test waits to be sure that ringway opens no further upstream connection.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
}

/// Sends GET `target` on a new connection and returns the response, the time it took,
/// and the stream.
fn timed_get(
    proxy: &Ringway,
    target: &str,
    context: &str,
) -> (common::Response, Duration, TcpStream) {
    let mut stream = connect(proxy.addr);
    let started = Instant::now();
    send(&mut stream, get(target).as_bytes());
    let response = read_response(&mut stream, false)
        .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
    (response, started.elapsed(), stream)
}

/// Checks that ringway closes `stream` after an error response, with nothing after it.
fn assert_closed_after(stream: &mut TcpStream, context: &str) {
    let rest = wait_for_close(stream, CLOSE_WAIT)
        .unwrap_or_else(|| panic!("{context}: connection open after the error response"));
    assert!(
        rest.is_empty(),
        "{context}: bytes after the error response: {rest:?}"
    );
}

/// Starts an origin that reads one request on each connection and then writes `reply`
/// and closes.
fn replying_origin(reply: &'static [u8]) -> RawOrigin {
    RawOrigin::start(move |mut stream, _| {
        if read_request(&mut stream).is_ok() {
            let _ = stream.write_all(reply);
        }
    })
}

/// Returns an address on loopback where nothing listens.
fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a probe listener");
    listener
        .local_addr()
        .expect("failed to read the probe address")
}

// RFC 9110 section 15.6.3: a refused connection to the upstream gives 502 at once.
#[test]
fn connect_refused_502() {
    for driver in DRIVERS {
        let context = format!("{driver:?} refused");
        let proxy = Ringway::start(&config_for(refused_addr(), driver));
        let (response, elapsed, mut stream) = timed_get(&proxy, "/", &context);
        assert_error_response(&response, 502, "connect", &context);
        assert!(
            elapsed <= FAST_FAILURE_MAX,
            "{context}: 502 after {elapsed:?}"
        );
        assert_closed_after(&mut stream, &context);
    }
}

// RFC 9110 section 15.6.5: an upstream that accepts the request and never sends a
// response gives 504 once timeouts.upstream_head_ms has passed, and not before.
#[test]
fn silent_upstream_504() {
    for driver in DRIVERS {
        let origin = RawOrigin::start(|mut stream, _| {
            let mut sink = [0; 1024];
            while matches!(stream.read(&mut sink), Ok(read) if read > 0) {}
        });
        let mut config = config_for(origin.addr, driver);
        config["timeouts"] = json!({ "upstream_head_ms": UPSTREAM_HEAD_MS });
        let proxy = Ringway::start(&config);
        let context = format!("{driver:?} silent upstream");
        let (response, elapsed, mut stream) = timed_get(&proxy, "/", &context);
        assert_error_response(&response, 504, "upstream_head_ms", &context);
        let configured = Duration::from_millis(UPSTREAM_HEAD_MS);
        assert!(
            elapsed + TIMEOUT_EARLY >= configured,
            "{context}: 504 after {elapsed:?}, before the configured {configured:?}"
        );
        assert!(
            elapsed <= configured + TIMEOUT_SLACK,
            "{context}: 504 after {elapsed:?}, configured {configured:?}"
        );
        assert_closed_after(&mut stream, &context);
    }
}

// RFC 9110 section 15.6.3: an upstream that resets the connection before sending a
// response head gives 502.
#[test]
fn reset_before_head_502() {
    for driver in DRIVERS {
        // Closing a socket with unread input makes the kernel send a reset instead of a
        // FIN (RFC 2525 section 2.17), so the origin waits for the request and closes
        // without reading it.
        let origin = RawOrigin::start(|stream, _| {
            let mut first = [0; 1];
            let _ = stream.peek(&mut first);
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let context = format!("{driver:?} reset");
        let (response, elapsed, mut stream) = timed_get(&proxy, "/", &context);
        assert_error_response(&response, 502, "response", &context);
        assert!(
            elapsed <= FAST_FAILURE_MAX,
            "{context}: 502 after {elapsed:?}"
        );
        assert_closed_after(&mut stream, &context);
    }
}

// RFC 9112 section 8: a response head cut short by the upstream's close is incomplete,
// so it gives 502 and none of it reaches the client.
#[test]
fn partial_head_502() {
    for driver in DRIVERS {
        let origin = replying_origin(b"HTTP/1.1 200 OK\r\nContent-Le");
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let context = format!("{driver:?} partial head");
        let (response, elapsed, mut stream) = timed_get(&proxy, "/", &context);
        assert_error_response(&response, 502, "response head", &context);
        assert!(
            elapsed <= FAST_FAILURE_MAX,
            "{context}: 502 after {elapsed:?}"
        );
        assert_closed_after(&mut stream, &context);
    }
}

// RFC 9112 section 4: bytes that are not a status line are an invalid response, 502.
#[test]
fn garbage_response_502() {
    let replies: [&'static [u8]; 3] = [
        b"\x00\x01\x02\x03 garbage\r\n\r\n",
        b"<html>not http</html>\r\n\r\n",
        b"garbage without an end",
    ];
    for driver in DRIVERS {
        for reply in replies {
            let context = format!("{driver:?} reply {:?}", String::from_utf8_lossy(reply));
            let origin = replying_origin(reply);
            let proxy = Ringway::start(&config_for(origin.addr, driver));
            let (response, elapsed, mut stream) = timed_get(&proxy, "/", &context);
            assert_error_response(&response, 502, "response head", &context);
            assert!(
                elapsed <= FAST_FAILURE_MAX,
                "{context}: 502 after {elapsed:?}"
            );
            assert_closed_after(&mut stream, &context);
        }
    }
}

/// Start and end of the response head that `response_with_head_len` pads. The origin
/// closes after one response, so the head carries Connection: close.
const PADDED_HEAD_START: &str =
    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\nX-Pad: ";
const PADDED_HEAD_END: &str = "\r\n\r\n";

/// Returns the X-Pad value length that makes the padded head `head_len` bytes long.
fn pad_len(head_len: usize) -> usize {
    head_len - PADDED_HEAD_START.len() - PADDED_HEAD_END.len()
}

/// Returns a response whose head is exactly `head_len` bytes, padded with an X-Pad
/// field, followed by the body "ok".
fn response_with_head_len(head_len: usize) -> Vec<u8> {
    let pad = "p".repeat(pad_len(head_len));
    format!("{PADDED_HEAD_START}{pad}{PADDED_HEAD_END}ok").into_bytes()
}

// A response head over limits.max_response_head_bytes gives 502, and one exactly at the
// limit passes.
#[test]
fn oversized_response_head_502() {
    for driver in DRIVERS {
        let origin = RawOrigin::start(|mut stream, _| {
            let Ok(request) = read_request(&mut stream) else {
                return;
            };
            let len = if request.target == "/at-limit" {
                MAX_RESPONSE_HEAD_BYTES
            } else {
                MAX_RESPONSE_HEAD_BYTES + 1
            };
            let _ = stream.write_all(&response_with_head_len(len));
        });
        let mut config = config_for(origin.addr, driver);
        config["limits"] = json!({ "max_response_head_bytes": MAX_RESPONSE_HEAD_BYTES });
        let proxy = Ringway::start(&config);

        let context = format!("{driver:?} head of {MAX_RESPONSE_HEAD_BYTES} bytes");
        let (response, _, _) = timed_get(&proxy, "/at-limit", &context);
        assert_eq!(response.status, 200, "{context}: status");
        assert_eq!(
            response.header("X-Pad").map(str::len),
            Some(pad_len(MAX_RESPONSE_HEAD_BYTES)),
            "{context}: X-Pad length"
        );
        assert_eq!(response.body, b"ok", "{context}: body");

        let context = format!("{driver:?} head of {} bytes", MAX_RESPONSE_HEAD_BYTES + 1);
        let (response, _, mut stream) = timed_get(&proxy, "/over-limit", &context);
        assert_error_response(&response, 502, "max_response_head_bytes", &context);
        assert_closed_after(&mut stream, &context);
    }
}

// RFC 9110 section 15.2.2: a server sends 101 only in response to an Upgrade request, so
// a 101 to a plain request is an invalid response, 502.
#[test]
fn unrequested_upgrade_502() {
    for driver in DRIVERS {
        let origin = replying_origin(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let context = format!("{driver:?} unrequested 101");
        let (response, _, mut stream) = timed_get(&proxy, "/", &context);
        assert_error_response(&response, 502, "101", &context);
        assert_closed_after(&mut stream, &context);
    }
}

// RFC 9112 section 6.3 item 3: a response with both Content-Length and
// Transfer-Encoding may be an attempt at response splitting, and ringway treats it as
// invalid, 502, in either order.
#[test]
fn response_cl_and_te_502() {
    let replies: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for driver in DRIVERS {
        for reply in replies {
            let context = format!("{driver:?} reply {:?}", String::from_utf8_lossy(reply));
            let origin = replying_origin(reply);
            let proxy = Ringway::start(&config_for(origin.addr, driver));
            let (response, _, mut stream) = timed_get(&proxy, "/", &context);
            assert_error_response(&response, 502, "Transfer-Encoding", &context);
            assert_closed_after(&mut stream, &context);
        }
    }
}

// A request that no route matches gets 404 from ringway and never reaches an upstream.
#[test]
fn no_route_404() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let mut config = config_for(origin.addr, driver);
        config["routes"] = json!([{ "path_prefix": "/api", "upstream": "origin" }]);
        let proxy = Ringway::start(&config);

        let context = format!("{driver:?} GET /other");
        let (response, _, mut stream) = timed_get(&proxy, "/other", &context);
        assert_error_response(&response, 404, "route", &context);
        assert_closed_after(&mut stream, &context);

        let context = format!("{driver:?} GET /api/orders");
        let (response, _, _) = timed_get(&proxy, "/api/orders", &context);
        assert_eq!(response.status, 200, "{context}: status");
        assert_eq!(response.body, b"/api/orders", "{context}: body");
        let seen = origin.next_request();
        assert_eq!(
            seen.request.target, "/api/orders",
            "{driver:?}: first request at the origin"
        );
        assert_eq!(origin.connections(), 1, "{driver:?}: upstream connections");
    }
}

// A pooled upstream connection that the origin closed while it was idle is replaced by a
// new one for an idempotent bodiless request, and the client never notices (RFC 9112
// section 9.3.1 allows retrying such a request).
#[test]
fn stale_pooled_connection_replaced() {
    const REQUESTS: usize = 5;
    for driver in DRIVERS {
        let answered = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&answered);
        // Responds to one request per connection, without Connection: close, then closes.
        let origin = RawOrigin::start(move |mut stream, _| {
            let Ok(request) = read_request(&mut stream) else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(&ok_with_body(request.target.as_bytes()));
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        for index in 0..REQUESTS {
            let context = format!("{driver:?} request {index}");
            let target = format!("/item/{index}");
            send(&mut stream, get(&target).as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(
                response.status,
                200,
                "{context}: status (body {:?})",
                response.body_text()
            );
            assert_eq!(response.body_text(), target, "{context}: body");
            // Let the origin's close reach ringway while the connection sits in its pool.
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            answered.load(Ordering::SeqCst),
            REQUESTS,
            "{driver:?}: requests answered"
        );
        assert_eq!(
            origin.connections(),
            REQUESTS,
            "{driver:?}: upstream connections"
        );
    }
}

// RFC 9110 section 9.2.2: a POST is not idempotent, so once its body went to an upstream
// connection that then failed, ringway responds with 502 instead of sending it again,
// whether the connection was pooled or new.
#[test]
fn post_not_resent() {
    for driver in DRIVERS {
        let (posts_tx, posts) = mpsc::channel::<(usize, Vec<u8>)>();
        let posts_tx = Mutex::new(posts_tx);
        // Responds to /warm and keeps the connection. Reads a POST to /order and closes
        // without a response.
        let origin = RawOrigin::start(move |mut stream, connection| {
            while let Ok(request) = read_request(&mut stream) {
                if request.method == "POST" {
                    if let Ok(posts_tx) = posts_tx.lock() {
                        let _ = posts_tx.send((connection, request.body));
                    }
                    return;
                }
                if stream.write_all(&ok_with_body(b"warm")).is_err() {
                    return;
                }
            }
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let post = b"POST /order HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 10\r\n\r\n0123456789";

        let context = format!("{driver:?} POST on a pooled connection");
        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/warm").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response to /warm: {error}"));
        assert_eq!(response.status, 200, "{context}: status of /warm");
        send(&mut stream, post);
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response to the POST: {error}"));
        assert_error_response(&response, 502, "response", &context);
        let (connection, body) = posts
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{context}: the origin got no POST"));
        assert_eq!(
            (connection, body.as_slice()),
            (0, b"0123456789".as_slice()),
            "{context}: POST at the origin"
        );
        thread::sleep(QUIET_PERIOD);
        assert_eq!(origin.connections(), 1, "{context}: upstream connections");
        assert!(
            posts.try_recv().is_err(),
            "{context}: the POST was sent again"
        );

        let context = format!("{driver:?} POST on a new connection");
        let mut stream = connect(proxy.addr);
        send(&mut stream, post);
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response to the POST: {error}"));
        assert_error_response(&response, 502, "response", &context);
        let (connection, _) = posts
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{context}: the origin got no POST"));
        assert_eq!(connection, 1, "{context}: upstream connection of the POST");
        thread::sleep(QUIET_PERIOD);
        assert_eq!(origin.connections(), 2, "{context}: upstream connections");
        assert!(
            posts.try_recv().is_err(),
            "{context}: the POST was sent again"
        );
    }
}

// A client that goes away in the middle of a request body makes ringway close the
// upstream connection at once, so the origin reads an incomplete body, not a hang.
#[test]
fn upload_abort_closes_upstream() {
    const DECLARED_BYTES: usize = 10_000_000;
    const SENT_BYTES: usize = 1 << 20;
    for driver in DRIVERS {
        let (ended_tx, ended) = mpsc::channel::<(Instant, bool, usize)>();
        let ended_tx = Mutex::new(ended_tx);
        let origin = RawOrigin::start(move |mut stream, _| {
            let outcome = read_request(&mut stream);
            let at = Instant::now();
            if let (Ok(request), Ok(ended_tx)) = (outcome, ended_tx.lock()) {
                let _ = ended_tx.send((at, request.complete, request.body.len()));
            }
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let context = format!("{driver:?} upload abort");
        let mut stream = connect(proxy.addr);
        let head = format!(
            "PUT /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {DECLARED_BYTES}\r\n\r\n"
        );
        send(&mut stream, head.as_bytes());
        send(&mut stream, &vec![b'u'; SENT_BYTES]);
        // Give ringway time to pass the piece on, so the origin is mid-body when the
        // client goes away.
        thread::sleep(Duration::from_millis(100));
        drop(stream);
        let closed_at = Instant::now();
        let (ended_at, complete, received) = ended
            .recv_timeout(PROPAGATED_CLOSE_MAX + CLOSE_WAIT)
            .unwrap_or_else(|_| panic!("{context}: the upstream connection stayed open"));
        assert!(!complete, "{context}: the origin saw a complete body");
        assert!(
            received <= SENT_BYTES,
            "{context}: the origin got {received} bytes"
        );
        let delay = ended_at.saturating_duration_since(closed_at);
        assert!(
            delay <= PROPAGATED_CLOSE_MAX,
            "{context}: upstream connection closed {delay:?} after the client's"
        );
    }
}
