//! Exchanges that real proxies have got wrong, each replayed through the real `ringway`
//! binary with a scripted origin, under io_uring and epoll. Each test covers the whole
//! kind of fault, not only the bytes of the reported exchange.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use common::{
    DRIVERS, Origin, RawOrigin, RecordingOrigin, Reply, Ringway, TIMEOUT, assert_error_response,
    config_for, connect, pattern_bytes, pattern_ok, read_request, read_request_head, read_response,
    read_response_streaming, reply_with_target, send, wait_for_close,
};

/// Bound for ringway to close a connection once the exchange on it is over.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Bound between one side's close and ringway closing the other side's connection.
const PROPAGATED_CLOSE_MAX: Duration = Duration::from_secs(1);

/// `timeouts.upstream_head_ms` in the response-timeout test.
const UPSTREAM_HEAD_MS: u64 = 1500;

/// How far after `UPSTREAM_HEAD_MS` the 504 may arrive: timer granularity, scheduling on a
/// loaded two-core machine, and the time to write the response.
const TIMEOUT_SLACK: Duration = Duration::from_millis(1000);

/// How much earlier than `UPSTREAM_HEAD_MS` the 504 may arrive: the runtime's timer wheel
/// fires on millisecond ticks.
const TIMEOUT_EARLY: Duration = Duration::from_millis(20);

/// Bound for a 502 when nothing listens on the upstream port: a refused connect on
/// loopback fails at once, so anything near a timeout means ringway waited.
const REFUSED_MAX: Duration = Duration::from_millis(500);

/// Interval between the pieces of the trickling origin.
const TRICKLE_INTERVAL_MS: u64 = 300;

/// Pieces the trickling origin sends, one every `TRICKLE_INTERVAL_MS`.
const TRICKLE_PIECES: u64 = 5;

/// Bytes per piece of the trickling origin.
const TRICKLE_PIECE_BYTES: u64 = 16;

/// How late a trickled piece may reach the client after the origin sent it: "well under
/// a second", with room for scheduling on a loaded machine.
const TRICKLE_LATENESS_MAX: Duration = Duration::from_millis(600);

/// Aborted downloads in the client-abort test.
const ABORTS: usize = 50;

/// Bytes the aborting client reads before it closes.
const ABORT_AFTER_BYTES: usize = 1 << 20;

/// Size of the pieces an endless origin writes: a whole number of pattern periods, so
/// that the same piece written again continues the pattern.
const ENDLESS_PIECE_BYTES: usize = 251 * 256;

/// Slack over ringway's idle resident memory once aborted downloads are over: freed
/// buffers stay in the pool and the allocator keeps some pages.
const SETTLED_SLACK_KIB: u64 = 4 * 1024;

/// Returns a GET request for `target` with `Host: gw.test`.
fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
}

/// Returns an address on loopback where nothing listens.
fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a probe listener");
    listener
        .local_addr()
        .expect("failed to read the probe address")
}

// RFC 9112 section 6.3 item 7: a request with neither Content-Length nor
// Transfer-Encoding has no body, so none is forwarded and no framing header is added.
// A known length stays a length, with exactly that many bytes, even when the body
// arrives in slow pieces.
#[test]
fn bodiless_request_stays_bodiless() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        for method in ["GET", "DELETE", "POST", "HEAD"] {
            let context = format!("{driver:?} {method} without a body");
            let request = format!("{method} /api/orders HTTP/1.1\r\nHost: gw.test\r\n\r\n");
            send(&mut stream, request.as_bytes());
            let response = read_response(&mut stream, method == "HEAD")
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: status");

            let seen = origin.next_request();
            assert_eq!(
                seen.request.method, method,
                "{context}: method at the origin"
            );
            assert_eq!(
                seen.request.header("Content-Length"),
                None,
                "{context}: Content-Length"
            );
            assert_eq!(
                seen.request.header("Transfer-Encoding"),
                None,
                "{context}: Transfer-Encoding"
            );
            assert!(
                seen.request.body_raw.is_empty(),
                "{context}: body at the origin"
            );
        }

        let context = format!("{driver:?} POST with Content-Length sent in pieces");
        send(
            &mut stream,
            b"POST /api/orders HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 30\r\n\r\n",
        );
        for piece in [b"0123456789", b"abcdefghij", b"ABCDEFGHIJ"] {
            std::thread::sleep(Duration::from_millis(100));
            send(&mut stream, piece);
        }
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        let seen = origin.next_request();
        assert_eq!(
            seen.request.headers_named("Content-Length"),
            vec!["30"],
            "{context}: Content-Length"
        );
        assert_eq!(
            seen.request.header("Transfer-Encoding"),
            None,
            "{context}: Transfer-Encoding"
        );
        assert_eq!(
            seen.request.body_raw, b"0123456789abcdefghijABCDEFGHIJ",
            "{context}: body"
        );

        // The next request on the same upstream connection starts right after those 30 bytes.
        send(&mut stream, get("/after").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response to the next GET: {error}"));
        assert_eq!(response.body_text(), "/after", "{driver:?}: next response");
        let seen = origin.next_request();
        assert_eq!(
            seen.request.target, "/after",
            "{driver:?}: next request at the origin"
        );
        assert!(
            seen.request.body_raw.is_empty(),
            "{driver:?}: next request body"
        );
        assert_eq!(origin.connections(), 1, "{driver:?}: upstream connections");
    }
}

// RFC 9112 sections 6.1, 6.3 and 11.2: a request whose framing two parsers could read
// differently is rejected with 400 and the connection closed, so a request hidden in
// its body never reaches the origin. Valid framing is forwarded as ringway's own
// framing header, never as the client's bytes.
#[test]
fn cl_te_smuggling_rejected() {
    let smuggled = "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: internal\r\n\r\n";
    let ambiguous = [
        (
            "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding",
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 44\r\n",
            "Transfer-Encoding",
        ),
        (
            "Content-Length: 44\r\nContent-Length: 45\r\n",
            "Content-Length",
        ),
        ("Content-Length: 44, 45\r\n", "Content-Length"),
        ("Content-Length: 4a\r\n", "Content-Length"),
        ("Content-Length: +44\r\n", "Content-Length"),
        ("Content-Length: -1\r\n", "Content-Length"),
        ("Content-Length: 0x2c\r\n", "Content-Length"),
        ("Transfer-Encoding: chunked, identity\r\n", "chunked"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            "chunked",
        ),
        ("Transfer-Encoding: chunked, chunked\r\n", "chunked"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "chunked",
        ),
    ];
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        for (framing, about) in ambiguous {
            let context = format!("{driver:?} {framing:?}");
            let mut stream = connect(proxy.addr);
            let request =
                format!("POST /submit HTTP/1.1\r\nHost: gw.test\r\n{framing}\r\n{smuggled}");
            send(&mut stream, request.as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_error_response(&response, 400, about, &context);
            let rest = wait_for_close(&mut stream, CLOSE_WAIT)
                .unwrap_or_else(|| panic!("{context}: connection open after the 400"));
            assert!(
                rest.is_empty(),
                "{context}: bytes after the 400, the hidden request was answered: {:?}",
                String::from_utf8_lossy(&rest)
            );
        }
        assert_eq!(
            origin.connections(),
            0,
            "{driver:?}: ringway connected upstream"
        );

        // Framing ringway accepts goes upstream in ringway's own words.
        let accepted = [
            (
                "transfer-encoding: CHUNKED\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
                "Transfer-Encoding",
                "chunked",
            ),
            ("Content-Length: 005\r\n", "hello", "Content-Length", "5"),
            ("Content-Length: 5, 5\r\n", "hello", "Content-Length", "5"),
        ];
        let mut stream = connect(proxy.addr);
        for (framing, body, name, forwarded) in accepted {
            let context = format!("{driver:?} {framing:?}");
            let request = format!("POST /submit HTTP/1.1\r\nHost: gw.test\r\n{framing}\r\n{body}");
            send(&mut stream, request.as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: status");
            let seen = origin.next_request().request;
            let framing_lines: Vec<(&str, &str)> = seen
                .headers
                .iter()
                .filter(|(field, _)| {
                    field.eq_ignore_ascii_case("Content-Length")
                        || field.eq_ignore_ascii_case("Transfer-Encoding")
                })
                .map(|(field, value)| (field.as_str(), value.as_str()))
                .collect();
            assert_eq!(
                framing_lines,
                vec![(name, forwarded)],
                "{context}: framing at the origin"
            );
            assert_eq!(seen.body, b"hello", "{context}: body at the origin");
        }
    }
}

// RFC 9110 section 8.6 and RFC 9112 section 6.3: a response head goes to the client as
// soon as it arrives and the body streams after it, whatever its declared length. A
// length up to 2^64 - 1 parses, and a larger one is an invalid response (502), not a
// wrapped number.
#[test]
fn huge_content_length_streams() {
    const FIRST_BYTES: u64 = 1 << 20;
    const TOTAL_BYTES: u64 = 4 << 20;
    for driver in DRIVERS {
        let (go_on, proceed) = mpsc::channel::<()>();
        let proceed = Arc::new(Mutex::new(proceed));
        let origin = RawOrigin::start(move |mut stream, _| {
            let Ok(request) = read_request(&mut stream) else {
                return;
            };
            let length = request.target.trim_start_matches("/length/").to_owned();
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&pattern_bytes(0, FIRST_BYTES as usize));
            if length == "5368709120" {
                // The rest comes only once the client has the head and the first piece,
                // so a proxy that waits for the whole body before relaying gets nowhere.
                let waited = proceed.lock().map(|proceed| proceed.recv_timeout(TIMEOUT));
                if !matches!(waited, Ok(Ok(()))) {
                    return;
                }
                let rest = pattern_bytes(FIRST_BYTES, (TOTAL_BYTES - FIRST_BYTES) as usize);
                let _ = stream.write_all(&rest);
            }
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));

        let context = format!("{driver:?} Content-Length 5 GiB");
        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/length/5368709120").as_bytes());
        let mut received = 0;
        let mut intact = true;
        let mut signalled = false;
        let response = read_response_streaming(&mut stream, false, &mut |piece| {
            intact &= pattern_ok(piece, received);
            received += piece.len() as u64;
            if received >= FIRST_BYTES && !signalled {
                signalled = true;
                let _ = go_on.send(());
            }
        })
        .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        assert_eq!(
            response.header("Content-Length"),
            Some("5368709120"),
            "{context}: Content-Length"
        );
        assert_eq!(
            received, TOTAL_BYTES,
            "{context}: bytes before the origin closed"
        );
        assert!(intact, "{context}: body bytes differ");
        assert!(
            !response.complete,
            "{context}: a cut body must not look complete"
        );

        for length in ["9223372036854775807", "18446744073709551615"] {
            let context = format!("{driver:?} Content-Length {length}");
            let mut stream = connect(proxy.addr);
            send(&mut stream, get(&format!("/length/{length}")).as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: status");
            assert_eq!(
                response.header("Content-Length"),
                Some(length),
                "{context}: Content-Length"
            );
            assert_eq!(
                response.body_len, FIRST_BYTES,
                "{context}: bytes before the origin closed"
            );
            assert!(
                !response.complete,
                "{context}: a cut body must not look complete"
            );
        }

        let context = format!("{driver:?} Content-Length over 2^64 - 1");
        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/length/18446744073709551616").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_error_response(&response, 502, "Content-Length", &context);
    }
}

// A chunked body that trickles in never waits in ringway for a buffer to fill: each
// chunk reaches the client soon after the origin sent it.
#[test]
fn trickled_chunks_flushed() {
    for driver in DRIVERS {
        let origin = Origin::start();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        let total = TRICKLE_PIECES * TRICKLE_PIECE_BYTES;
        let target = format!(
            "/trickle/{total}?interval_ms={TRICKLE_INTERVAL_MS}&piece={TRICKLE_PIECE_BYTES}"
        );
        let sent_at = Instant::now();
        send(&mut stream, get(&target).as_bytes());
        let mut arrivals = Vec::new();
        let mut received = 0;
        let response = read_response_streaming(&mut stream, false, &mut |piece| {
            received += piece.len() as u64;
            arrivals.push((received, sent_at.elapsed()));
        })
        .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");
        assert!(response.chunked, "{driver:?}: response is not chunked");
        assert!(response.complete, "{driver:?}: body incomplete");
        assert_eq!(received, total, "{driver:?}: body length");

        // The origin sends piece k at about k intervals after the request.
        for piece in 0..TRICKLE_PIECES {
            let needed = (piece + 1) * TRICKLE_PIECE_BYTES;
            let arrived = arrivals
                .iter()
                .find(|(bytes, _)| *bytes >= needed)
                .map(|(_, at)| *at)
                .expect("the body is complete, so every piece arrived");
            let due = Duration::from_millis(piece * TRICKLE_INTERVAL_MS) + TRICKLE_LATENESS_MAX;
            assert!(
                arrived <= due,
                "{driver:?}: piece {piece} arrived {arrived:?} after the request, due by {due:?}; arrivals {arrivals:?}"
            );
        }
    }
}

// RFC 9110 section 5.3 and RFC 6265 section 3: each Set-Cookie line is forwarded on its
// own, in order, because Set-Cookie values cannot be joined with commas. Other repeated
// fields keep their order and count too. ringway keeps no cookie state.
#[test]
fn set_cookie_lines_kept() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(|request| {
            if request.target == "/login" {
                Reply::keep_open(
                    b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Rep: 1\r\n\
                      Set-Cookie: b=2; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT\r\n\
                      X-Rep: 2\r\nContent-Length: 0\r\n\r\n"
                        .to_vec(),
                )
            } else {
                reply_with_target(request)
            }
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/login").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");
        let repeated: Vec<(&str, &str)> = response
            .headers
            .iter()
            .filter(|(name, _)| name == "Set-Cookie" || name == "X-Rep")
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            repeated,
            vec![
                ("Set-Cookie", "a=1; Path=/"),
                ("X-Rep", "1"),
                (
                    "Set-Cookie",
                    "b=2; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT"
                ),
                ("X-Rep", "2"),
            ],
            "{driver:?}: repeated fields at the client"
        );
        assert_eq!(
            origin.next_request().request.target,
            "/login",
            "{driver:?}: first request"
        );

        send(&mut stream, get("/account").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no second response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: second status");
        assert_eq!(
            response.header("Set-Cookie"),
            None,
            "{driver:?}: Set-Cookie replayed"
        );
        let seen = origin.next_request().request;
        assert_eq!(
            seen.header("Cookie"),
            None,
            "{driver:?}: ringway added a Cookie"
        );
    }
}

// RFC 9110 section 7.2: every forwarded request has exactly one Host, the client's. The
// client address is appended to X-Forwarded-For, X-Forwarded-Proto and
// X-Forwarded-Host are ringway's own, and ringway adds itself to Via (section 7.6.3) in
// both directions. A client's Forwarded (RFC 7239) gets ringway's element appended, so
// its last element is the hop ringway saw.
#[test]
fn host_and_forwarding_headers() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);

        let context = format!("{driver:?} one X-Forwarded-For");
        send(
            &mut stream,
            b"GET /users HTTP/1.1\r\nHost: api.example.test\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        assert_eq!(
            response.headers_named("Via"),
            vec!["1.1 ringway"],
            "{context}: response Via"
        );
        let seen = origin.next_request().request;
        assert_eq!(
            seen.headers_named("Host"),
            vec!["api.example.test"],
            "{context}: Host"
        );
        assert_eq!(
            seen.headers_named("X-Forwarded-For"),
            vec!["203.0.113.7, 127.0.0.1"],
            "{context}: X-Forwarded-For"
        );
        assert_eq!(
            seen.headers_named("X-Forwarded-Proto"),
            vec!["http"],
            "{context}: X-Forwarded-Proto"
        );
        assert_eq!(
            seen.headers_named("X-Forwarded-Host"),
            vec!["api.example.test"],
            "{context}: X-Forwarded-Host"
        );
        assert_eq!(
            seen.headers_named("Via"),
            vec!["1.1 ringway"],
            "{context}: Via"
        );

        let context = format!("{driver:?} forwarding headers from the client");
        send(
            &mut stream,
            b"GET /users HTTP/1.1\r\nHost: api.example.test\r\nX-Forwarded-For: 198.51.100.1\r\n\
              X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nVia: 1.0 edge\r\n\
              X-Forwarded-For: 203.0.113.7\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        let seen = origin.next_request().request;
        assert_eq!(
            seen.headers_named("X-Forwarded-For"),
            vec!["198.51.100.1, 203.0.113.7, 127.0.0.1"],
            "{context}: X-Forwarded-For"
        );
        assert_eq!(
            seen.headers_named("X-Forwarded-Proto"),
            vec!["http"],
            "{context}: X-Forwarded-Proto"
        );
        assert_eq!(
            seen.headers_named("X-Forwarded-Host"),
            vec!["api.example.test"],
            "{context}: X-Forwarded-Host"
        );
        assert_eq!(
            seen.headers_named("Via"),
            vec!["1.0 edge, 1.1 ringway"],
            "{context}: Via"
        );

        assert_eq!(
            seen.header("Forwarded"),
            None,
            "{context}: Forwarded added without a client's"
        );

        let context = format!("{driver:?} Forwarded from the client");
        send(
            &mut stream,
            b"GET /users HTTP/1.1\r\nHost: api.example.test:8443\r\n\
              Forwarded: for=198.51.100.1;proto=https\r\nForwarded: for=\"[2001:db8::7]\"\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        let seen = origin.next_request().request;
        assert_eq!(
            seen.headers_named("Forwarded"),
            vec![
                "for=198.51.100.1;proto=https, for=\"[2001:db8::7]\", \
                 for=127.0.0.1;proto=http;host=\"api.example.test:8443\""
            ],
            "{context}: Forwarded"
        );

        let context = format!("{driver:?} HTTP/1.0 without Host");
        let mut stream = connect(proxy.addr);
        send(&mut stream, b"GET /users HTTP/1.0\r\n\r\n");
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        let seen = origin.next_request().request;
        assert_eq!(seen.version, 1, "{context}: forwarded as HTTP/1.1");
        assert_eq!(
            seen.headers_named("Host"),
            vec![origin.addr.to_string()],
            "{context}: Host"
        );
        assert_eq!(
            seen.header("X-Forwarded-Host"),
            None,
            "{context}: X-Forwarded-Host"
        );
        assert_eq!(
            seen.headers_named("Via"),
            vec!["1.0 ringway"],
            "{context}: Via"
        );
    }
}

// RFC 9110 sections 15.6.3 and 15.6.5: an upstream that sends no response in time gives
// 504 after the configured timeout, an unreachable or invalid upstream gives 502 at once,
// and the failed upstream connection is closed, not pooled. ringway sends no other
// status (499, 503) in their place.
#[test]
fn upstream_status_mapping() {
    let invalid_replies: [(&str, &str); 8] = [
        ("HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", "status"),
        ("HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n", "status"),
        ("HTTP/9.9 200 OK\r\nContent-Length: 0\r\n\r\n", "version"),
        ("ICY 200 OK\r\nContent-Length: 0\r\n\r\n", "response"),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            "Content-Length",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "Content-Length",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            "Content-Length",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            "Content-Length",
        ),
    ];
    for driver in DRIVERS {
        // The origin sends reply N to /invalid/N and nothing to /slow, and reports when
        // ringway closes each connection.
        let (closed_tx, closed) = mpsc::channel::<(String, Instant)>();
        let closed_tx = Mutex::new(closed_tx);
        let origin = RawOrigin::start(move |mut stream, _| {
            let Ok(request) = read_request(&mut stream) else {
                return;
            };
            if let Some(index) = request.target.strip_prefix("/invalid/") {
                let index: usize = index.parse().expect("the test sends a valid index");
                let _ = stream.write_all(invalid_replies[index].0.as_bytes());
            }
            let _ = stream.set_read_timeout(Some(TIMEOUT));
            let mut rest = [0; 1024];
            while matches!(stream.read(&mut rest), Ok(read) if read > 0) {}
            if let Ok(closed_tx) = closed_tx.lock() {
                let _ = closed_tx.send((request.target, Instant::now()));
            }
        });
        let mut config = config_for(origin.addr, driver);
        config["timeouts"] = json!({ "upstream_head_ms": UPSTREAM_HEAD_MS });
        // Passive health ejects a server after five failures by default, and this test makes
        // nine, so it raises the count to keep ringway's own 503 out of the 502 and 504 checks.
        config["upstreams"]["origin"]["health"] = json!({ "passive": { "max_failures": 1000 } });
        let proxy = Ringway::start(&config);

        // Closes the client side and checks that the origin saw its connection closed too.
        let check_upstream_closed = |stream: TcpStream, target: &str, context: &str| {
            drop(stream);
            let client_closed = Instant::now();
            let (seen_target, at) = closed
                .recv_timeout(CLOSE_WAIT)
                .unwrap_or_else(|_| panic!("{context}: the upstream connection stayed open"));
            assert_eq!(seen_target, target, "{context}: connection closed");
            let delay = at.saturating_duration_since(client_closed);
            assert!(
                delay <= PROPAGATED_CLOSE_MAX,
                "{context}: upstream connection closed {delay:?} after the client's"
            );
        };

        let context = format!("{driver:?} no response head");
        let mut stream = connect(proxy.addr);
        let started = Instant::now();
        send(&mut stream, get("/slow").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        let elapsed = started.elapsed();
        assert_ne!(response.status, 499, "{context}: 499 on the wire");
        assert_error_response(&response, 504, "upstream_head_ms", &context);
        let configured = Duration::from_millis(UPSTREAM_HEAD_MS);
        assert!(
            elapsed + TIMEOUT_EARLY >= configured && elapsed <= configured + TIMEOUT_SLACK,
            "{context}: 504 after {elapsed:?}, configured {configured:?}"
        );
        check_upstream_closed(stream, "/slow", &context);

        for (index, (reply, about)) in invalid_replies.iter().enumerate() {
            let context = format!("{driver:?} upstream reply {reply:?}");
            let target = format!("/invalid/{index}");
            let mut stream = connect(proxy.addr);
            send(&mut stream, get(&target).as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_ne!(response.status, 499, "{context}: 499 on the wire");
            assert_error_response(&response, 502, about, &context);
            check_upstream_closed(stream, &target, &context);
        }
        drop(proxy);

        let context = format!("{driver:?} nothing listening upstream");
        let proxy = Ringway::start(&config_for(refused_addr(), driver));
        let mut stream = connect(proxy.addr);
        let started = Instant::now();
        send(&mut stream, get("/").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        let elapsed = started.elapsed();
        assert_error_response(&response, 502, "connect", &context);
        assert!(elapsed <= REFUSED_MAX, "{context}: 502 after {elapsed:?}");
    }
}

// RFC 9110 sections 10.1.1 and 15.2: the client that sent Expect: 100-continue receives
// exactly one 100 Continue and then the origin's own final status. An HTTP/1.0 client
// receives no interim response at all.
#[test]
fn expect_continue_single_interim() {
    const BODY_BYTES: usize = 2048;
    for driver in DRIVERS {
        let (heads_tx, heads) = mpsc::channel::<(Vec<u8>, Vec<u8>)>();
        let heads_tx = Mutex::new(heads_tx);
        let origin = RawOrigin::start(move |mut stream, _| {
            let Ok(head) = read_request_head(&mut stream) else {
                return;
            };
            let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            let mut body = vec![0; BODY_BYTES];
            if stream.read_exact(&mut body).is_err() {
                return;
            }
            if let Ok(heads_tx) = heads_tx.lock() {
                let _ = heads_tx.send((head, body));
            }
            // A second 100 is allowed (any number of 1xx may precede the final response),
            // and must not reach the client twice. The 401 carries Connection: close
            // because the origin closes after it, so ringway does not pool the connection.
            let _ = stream.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\n\
                  WWW-Authenticate: Basic realm=\"gw\"\r\nConnection: close\r\n\
                  Content-Length: 0\r\n\r\n",
            );
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let body = pattern_bytes(0, BODY_BYTES);

        let context = format!("{driver:?} HTTP/1.1 with Expect");
        let mut stream = connect(proxy.addr);
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {BODY_BYTES}\r\nExpect: 100-continue\r\n\r\n"
        );
        send(&mut stream, head.as_bytes());
        // The body goes out only after the 100, as a client that waits for it does.
        let interim = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no interim response: {error}"));
        assert_eq!(interim.status, 100, "{context}: first response");
        send(&mut stream, &body);
        let fin = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no final response: {error}"));
        assert_eq!(
            fin.status, 401,
            "{context}: second response is the final one"
        );
        assert_eq!(
            fin.header("WWW-Authenticate"),
            Some("Basic realm=\"gw\""),
            "{context}: challenge"
        );
        assert_eq!(
            fin.header("Content-Length"),
            Some("0"),
            "{context}: Content-Length"
        );
        let (origin_head, origin_body) = heads
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{context}: the origin got no body"));
        let origin_head = String::from_utf8_lossy(&origin_head).to_ascii_lowercase();
        assert!(
            origin_head.contains("\r\nexpect: 100-continue\r\n"),
            "{context}: Expect not forwarded: {origin_head:?}"
        );
        assert!(origin_body == body, "{context}: body at the origin differs");

        let context = format!("{driver:?} HTTP/1.0 with Expect");
        let mut stream = connect(proxy.addr);
        let head = format!(
            "POST /upload HTTP/1.0\r\nHost: gw.test\r\nContent-Length: {BODY_BYTES}\r\nExpect: 100-continue\r\n\r\n"
        );
        send(&mut stream, head.as_bytes());
        send(&mut stream, &body);
        let fin = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(fin.status, 401, "{context}: first response");
        let (_, origin_body) = heads
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{context}: the origin got no body"));
        assert!(origin_body == body, "{context}: body at the origin differs");
    }
}

// RFC 9112 section 6.3 item 1: a response to HEAD and any 204 or 304 response ends at
// the empty line whatever framing headers it has. Content-Length stays on HEAD and 304
// responses, which describe the selected representation (RFC 9110 section 8.6), and both
// the client and the upstream connection carry on.
#[test]
fn bodiless_responses_end_at_head() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(|request| {
            let reply: &[u8] = match (request.method.as_str(), request.target.as_str()) {
                ("HEAD", "/big.iso") => b"HTTP/1.1 200 OK\r\nContent-Length: 4700000000\r\n\r\n",
                ("DELETE", "/x") => b"HTTP/1.1 204 No Content\r\nContent-Length: 11\r\n\r\n",
                ("GET", "/cond") => {
                    b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\nContent-Length: 5\r\n\r\n"
                }
                ("HEAD", "/stream") => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                _ => return reply_with_target(request),
            };
            Reply::keep_open(reply)
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        // A proxy that waits for a body here never sends the response to the next request.
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("failed to set the read timeout");
        let cases = [
            ("HEAD /big.iso", "", 200, Some("4700000000"), None),
            ("DELETE /x", "", 204, None, None),
            (
                "GET /cond",
                "If-None-Match: \"a\"\r\n",
                304,
                Some("5"),
                Some("\"a\""),
            ),
            ("HEAD /stream", "", 200, None, None),
        ];
        for (request_line, extra, status, content_length, etag) in cases {
            let context = format!("{driver:?} {request_line}");
            let request = format!("{request_line} HTTP/1.1\r\nHost: gw.test\r\n{extra}\r\n");
            send(&mut stream, request.as_bytes());
            let response = read_response(&mut stream, request_line.starts_with("HEAD"))
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, status, "{context}: status");
            assert_eq!(
                response.header("Content-Length"),
                content_length,
                "{context}: Content-Length"
            );
            assert_eq!(response.header("ETag"), etag, "{context}: ETag");
            assert_eq!(response.header("Connection"), None, "{context}: Connection");

            send(&mut stream, get("/next").as_bytes());
            let next = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response to the next GET: {error}"));
            assert_eq!(next.status, 200, "{context}: status of the next GET");
            assert_eq!(next.body, b"/next", "{context}: body of the next GET");
        }
        for _ in 0..cases.len() * 2 {
            let seen = origin.next_request();
            assert_eq!(
                seen.connection, 0,
                "{driver:?}: {} {} came on a new upstream connection",
                seen.request.method, seen.request.target
            );
        }
    }
}

// RFC 9112 sections 6.3 and 8: a body cut short by the upstream must not look complete
// to the client. With a length or chunked framing ringway closes the client connection
// without the missing bytes or a last chunk. A close-delimited body is complete at the
// close and is relayed whole.
#[test]
fn upstream_closes_early() {
    const CUT_LENGTH_SENT: usize = 300_000;
    const CUT_CHUNK_BYTES: usize = 16_384;
    const CUT_CHUNKS: usize = 3;
    const CLOSE_DELIMITED_BYTES: usize = 3_000_000;
    for driver in DRIVERS {
        let origin = RawOrigin::start(|mut stream, _| {
            let Ok(request) = read_request(&mut stream) else {
                return;
            };
            let mut reply = Vec::new();
            match request.target.as_str() {
                "/length" => {
                    reply.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
                    reply.extend_from_slice(&pattern_bytes(0, CUT_LENGTH_SENT));
                }
                "/chunks" => {
                    reply.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    );
                    for index in 0..CUT_CHUNKS {
                        let offset = (index * CUT_CHUNK_BYTES) as u64;
                        reply.extend_from_slice(format!("{CUT_CHUNK_BYTES:x}\r\n").as_bytes());
                        reply.extend_from_slice(&pattern_bytes(offset, CUT_CHUNK_BYTES));
                        reply.extend_from_slice(b"\r\n");
                    }
                }
                "/mid-chunk" => {
                    reply.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    );
                    reply.extend_from_slice(b"4000\r\n");
                    reply.extend_from_slice(&pattern_bytes(0, 100));
                }
                _ => {
                    reply.extend_from_slice(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                    reply.extend_from_slice(&pattern_bytes(0, CLOSE_DELIMITED_BYTES));
                }
            }
            let _ = stream.write_all(&reply);
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));

        let cut = [
            ("/length", CUT_LENGTH_SENT, false),
            ("/chunks", CUT_CHUNK_BYTES * CUT_CHUNKS, true),
            ("/mid-chunk", 100, true),
        ];
        for (target, sent, chunked) in cut {
            let context = format!("{driver:?} upstream cut {target}");
            let mut stream = connect(proxy.addr);
            send(&mut stream, get(target).as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: status");
            assert_eq!(response.chunked, chunked, "{context}: chunked framing");
            if !chunked {
                assert_eq!(
                    response.header("Content-Length"),
                    Some("1000000"),
                    "{context}: Content-Length"
                );
            }
            assert!(
                !response.complete,
                "{context}: a cut body looks complete to the client"
            );
            assert_eq!(response.body.len(), sent, "{context}: bytes relayed");
            assert!(
                pattern_ok(&response.body, 0),
                "{context}: body bytes differ"
            );
            assert!(
                wait_for_close(&mut stream, CLOSE_WAIT).is_some(),
                "{context}: client connection left open"
            );
        }

        let context = format!("{driver:?} close-delimited body to HTTP/1.1");
        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/close").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        assert!(response.chunked, "{context}: not re-framed as chunked");
        assert!(response.complete, "{context}: no last chunk");
        assert_eq!(
            response.body.len(),
            CLOSE_DELIMITED_BYTES,
            "{context}: bytes relayed"
        );
        assert!(
            pattern_ok(&response.body, 0),
            "{context}: body bytes differ"
        );

        let context = format!("{driver:?} close-delimited body to HTTP/1.0");
        let mut stream = connect(proxy.addr);
        send(&mut stream, b"GET /close HTTP/1.0\r\nHost: gw.test\r\n\r\n");
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        assert_eq!(
            response.header("Transfer-Encoding"),
            None,
            "{context}: Transfer-Encoding"
        );
        assert_eq!(
            response.header("Content-Length"),
            None,
            "{context}: Content-Length"
        );
        assert_eq!(
            response.body.len(),
            CLOSE_DELIMITED_BYTES,
            "{context}: bytes relayed"
        );
        assert!(
            pattern_ok(&response.body, 0),
            "{context}: body bytes differ"
        );
    }
}

// A client that goes away in the middle of a download makes ringway close the upstream
// connection at once, because a half-read body cannot be reused. Repeated aborts leave
// no descriptors or memory behind, and each is logged once.
#[test]
fn client_abort_closes_upstream() {
    let endless_piece = pattern_bytes(0, ENDLESS_PIECE_BYTES);
    for driver in DRIVERS {
        // The origin streams a 10 GB body until a write fails, then reports when.
        let (failed_tx, failed) = mpsc::channel::<(Instant, String)>();
        let failed_tx = Mutex::new(failed_tx);
        let piece = endless_piece.clone();
        let origin = RawOrigin::start(move |mut stream, _| {
            if read_request(&mut stream).is_err() {
                return;
            }
            let head =
                b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 10000000000\r\n\r\n";
            let mut result = stream.write_all(head);
            let mut sent: u64 = 0;
            while result.is_ok() && sent < 10_000_000_000 {
                result = stream.write_all(&piece);
                sent += piece.len() as u64;
            }
            let error = result
                .err()
                .map_or("no error".to_owned(), |error| error.kind().to_string());
            if let Ok(failed_tx) = failed_tx.lock() {
                let _ = failed_tx.send((Instant::now(), error));
            }
        });
        let mut config = config_for(origin.addr, driver);
        config["log"] = json!({ "level": "debug" });
        let proxy = Ringway::start(&config);

        let abort_download = |round: usize| {
            let context = format!("{driver:?} abort {round}");
            let mut stream = connect(proxy.addr);
            send(&mut stream, get("/export.csv").as_bytes());
            let mut received = Vec::with_capacity(ABORT_AFTER_BYTES + ENDLESS_PIECE_BYTES);
            let mut piece = vec![0; ENDLESS_PIECE_BYTES];
            while received.len() < ABORT_AFTER_BYTES {
                match stream.read(&mut piece) {
                    Ok(0) => panic!("{context}: ringway closed after {} bytes", received.len()),
                    Ok(read) => received.extend_from_slice(&piece[..read]),
                    Err(error) => panic!(
                        "{context}: read failed after {} bytes: {error}",
                        received.len()
                    ),
                }
            }
            assert!(
                received.starts_with(b"HTTP/1.1 200 OK\r\n"),
                "{context}: status line"
            );
            drop(stream);
            let closed_at = Instant::now();
            let (failed_at, error) = failed
                .recv_timeout(PROPAGATED_CLOSE_MAX + CLOSE_WAIT)
                .unwrap_or_else(|_| panic!("{context}: the origin is still streaming"));
            let delay = failed_at.saturating_duration_since(closed_at);
            assert!(
                delay <= PROPAGATED_CLOSE_MAX,
                "{context}: upstream write failed ({error}) {delay:?} after the client closed"
            );
        };

        // The first abort builds whatever ringway creates lazily, so the idle level is
        // measured after it.
        abort_download(0);
        let idle_fds = proxy.open_fds();
        let idle_rss = proxy.vm_rss_kib();
        for round in 1..=ABORTS {
            abort_download(round);
        }

        let deadline = Instant::now() + CLOSE_WAIT;
        while proxy.open_fds() > idle_fds && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let fds = proxy.open_fds();
        assert!(
            fds <= idle_fds,
            "{driver:?}: {fds} open descriptors after {ABORTS} aborts, {idle_fds} before"
        );
        let rss = proxy.vm_rss_kib();
        assert!(
            rss <= idle_rss + SETTLED_SLACK_KIB,
            "{driver:?}: resident memory {rss} KiB after {ABORTS} aborts, {idle_rss} KiB before"
        );
        // The harness reads ringway's stderr on a thread of its own, so the last lines may
        // arrive a moment after the descriptors closed.
        let count_logged = || {
            proxy
                .logs()
                .lines()
                .filter(|line| line.contains("client closed"))
                .count()
        };
        let deadline = Instant::now() + CLOSE_WAIT;
        while count_logged() < ABORTS + 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let logged = count_logged();
        assert_eq!(
            logged,
            ABORTS + 1,
            "{driver:?}: log lines about the client closing:\n{}",
            proxy.logs()
        );
    }
}
