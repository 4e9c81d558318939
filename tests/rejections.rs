//! Requests that ringway must reject itself, end to end through the real binary under
//! io_uring and epoll. Each gets its status with `Connection: close` and a one-line
//! plain-text body naming the problem. The origin never receives it, and ringway goes on
//! serving new connections afterwards.

mod common;

use std::time::Duration;

use serde_json::json;

use common::{
    DRIVERS, Driver, RawRequest, RecordingOrigin, Ringway, assert_error_response, config_for,
    connect, read_response, reply_with_target, send, wait_for_close,
};

/// `limits.max_header_count` in these tests: small, so that a short request reaches it.
const MAX_HEADER_COUNT: usize = 10;

/// `limits.max_request_head_bytes` in these tests.
const MAX_REQUEST_HEAD_BYTES: usize = 1024;

/// `limits.max_request_body_bytes` in these tests.
const MAX_REQUEST_BODY_BYTES: usize = 1000;

/// Bound for ringway to close a connection after an error response.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How long a test waits for stray requests at the origin before it concludes there
/// are none.
const QUIET_PERIOD: Duration = Duration::from_millis(300);

/// A ringway with small limits in front of a recording origin, and one upstream
/// connection already pooled, so that every later request the origin receives should
/// arrive on that connection.
struct Rejecter {
    driver: Driver,
    origin: RecordingOrigin,
    proxy: Ringway,
    follow_ups: usize,
}

impl Rejecter {
    fn start(driver: Driver) -> Rejecter {
        let origin = RecordingOrigin::start(reply_with_target);
        let mut config = config_for(origin.addr, driver);
        config["limits"] = json!({
            "max_header_count": MAX_HEADER_COUNT,
            "max_request_head_bytes": MAX_REQUEST_HEAD_BYTES,
            "max_request_body_bytes": MAX_REQUEST_BODY_BYTES,
        });
        let proxy = Ringway::start(&config);
        let mut rejecter = Rejecter {
            driver,
            origin,
            proxy,
            follow_ups: 0,
        };
        rejecter.follow_up(&format!("{driver:?} warm-up"));
        rejecter
    }

    /// Sends `request` on a new connection and checks ringway's error response, that
    /// ringway closes the connection after it, and that a new connection still works
    /// while the origin has received nothing but that follow-up request.
    fn expect_rejected(&mut self, request: &[u8], status: u16, about: &str) {
        let context = format!("{:?} {:?}", self.driver, shown(request));
        let mut stream = connect(self.proxy.addr);
        send(&mut stream, request);
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_error_response(&response, status, about, &context);
        let rest = wait_for_close(&mut stream, CLOSE_WAIT)
            .unwrap_or_else(|| panic!("{context}: connection open after the {status} response"));
        assert!(
            rest.is_empty(),
            "{context}: bytes after the {status} response: {rest:?}"
        );
        drop(stream);
        self.follow_up(&context);
    }

    /// Like `expect_rejected`, for a request whose head is valid and whose body is not.
    /// ringway may already have forwarded the head, so it may respond with `status` or
    /// close the connection without a response. The origin may receive the request, but
    /// never with a complete body.
    fn expect_rejected_mid_body(&mut self, request: &[u8], status: u16, about: &str) {
        let context = format!("{:?} {:?}", self.driver, shown(request));
        let mut stream = connect(self.proxy.addr);
        send(&mut stream, request);
        match read_response(&mut stream, false) {
            Ok(response) => assert_error_response(&response, status, about, &context),
            Err(error) => assert_eq!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "{context}: neither a response nor a close: {error}"
            ),
        }
        let rest = wait_for_close(&mut stream, CLOSE_WAIT)
            .unwrap_or_else(|| panic!("{context}: connection open after the rejection"));
        assert!(
            rest.is_empty(),
            "{context}: bytes after the rejection: {rest:?}"
        );
        drop(stream);

        let target = self.next_follow_up_target();
        self.send_follow_up(&target, &context);
        let deadline = std::time::Instant::now() + common::TIMEOUT;
        let mut follow_up_seen = false;
        while !follow_up_seen {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let seen = self
                .origin
                .next_request_within(remaining)
                .unwrap_or_else(|| panic!("{context}: the origin did not receive {target}"));
            follow_up_seen = seen.request.target == target;
            if !follow_up_seen {
                assert_incomplete(&seen.request, &context);
            }
        }
        // The origin notices the closed connection of the rejected request on its own
        // schedule, possibly after the follow-up.
        while let Some(seen) = self.origin.next_request_within(QUIET_PERIOD) {
            assert_incomplete(&seen.request, &context);
        }
    }

    /// Sends `request`, which ringway must forward, and returns it as the origin saw it.
    fn expect_forwarded(&mut self, request: &[u8], context: &str) -> RawRequest {
        let mut stream = connect(self.proxy.addr);
        send(&mut stream, request);
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(
            response.status,
            200,
            "{context}: status (body {:?})",
            response.body_text()
        );
        self.origin.next_request().request
    }

    fn next_follow_up_target(&mut self) -> String {
        self.follow_ups += 1;
        format!("/after/{}", self.follow_ups)
    }

    fn send_follow_up(&self, target: &str, context: &str) {
        let mut stream = connect(self.proxy.addr);
        send(
            &mut stream,
            format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n\r\n").as_bytes(),
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response to the follow-up: {error}"));
        assert_eq!(response.status, 200, "{context}: follow-up status");
        assert_eq!(response.body_text(), target, "{context}: follow-up body");
    }

    /// Sends a normal request on a new connection and checks that it is the next and
    /// only request the origin receives, on the pooled upstream connection.
    fn follow_up(&mut self, context: &str) {
        let target = self.next_follow_up_target();
        self.send_follow_up(&target, context);
        let seen = self.origin.next_request();
        assert_eq!(
            seen.request.target,
            target,
            "{context}: the origin received another request first: {:?}",
            String::from_utf8_lossy(&seen.request.head)
        );
        assert_eq!(
            seen.connection, 0,
            "{context}: ringway opened another upstream connection"
        );
    }
}

fn assert_incomplete(request: &RawRequest, context: &str) {
    assert!(
        !request.complete,
        "{context}: the origin received a complete request: {:?} with body {:?}",
        String::from_utf8_lossy(&request.head),
        String::from_utf8_lossy(&request.body)
    );
}

/// Returns the request as text for failure messages, cut after 120 characters.
fn shown(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    text.chars().take(120).collect()
}

/// Returns a POST head with `framing` lines, then `body`.
fn post(framing: &str, body: &str) -> Vec<u8> {
    format!("POST /submit HTTP/1.1\r\nHost: gw.test\r\n{framing}\r\n{body}").into_bytes()
}

// RFC 9112 sections 6.1 and 6.3: framing that two parsers could read differently is
// rejected with 400 before anything is forwarded, because request smuggling relies on it.
#[test]
fn ambiguous_framing_400() {
    let cases: [(Vec<u8>, &str); 7] = [
        (
            post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            "Transfer-Encoding",
        ),
        (post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), "Content-Length"),
        (post("Content-Length: five\r\n", "hello"), "Content-Length"),
        (post("Content-Length: 5 5\r\n", "hello"), "Content-Length"),
        (
            b"POST /submit HTTP/1.0\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "Transfer-Encoding",
        ),
        (post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), "chunked"),
        (post("Transfer-Encoding: gzip\r\n", "hello"), "chunked"),
    ];
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        for (request, about) in &cases {
            rejecter.expect_rejected(request, 400, about);
        }
        assert_eq!(
            rejecter.origin.connections(),
            1,
            "{driver:?}: upstream connections"
        );
    }
}

// RFC 9112 section 6.1: a transfer coding the server does not implement gets 501.
#[test]
fn unsupported_coding_501() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        rejecter.expect_rejected(
            &post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            501,
            "gzip",
        );
        rejecter.expect_rejected(
            &post(
                "Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            501,
            "deflate",
        );
        assert_eq!(
            rejecter.origin.connections(),
            1,
            "{driver:?}: upstream connections"
        );
    }
}

// RFC 9112 section 7.1: a chunk-size is hex digits, and chunk data ends with CRLF.
// ringway forwards the head before it reads the body, so an invalid chunk gets 400 if no
// response has started, and the origin never receives a complete body.
#[test]
fn invalid_chunk_400() {
    let bodies = [
        "zz\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\nzz\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
    ];
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        for body in bodies {
            rejecter.expect_rejected_mid_body(
                &post("Transfer-Encoding: chunked\r\n", body),
                400,
                "chunk",
            );
        }
    }
}

// RFC 9112 section 5.1: no whitespace is allowed between a field name and the colon, and
// section 5.2: a server rejects obsolete line folding in a request with 400.
#[test]
fn malformed_fields_400() {
    let requests: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-Long: first\r\n second\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-Long: first\r\n\tsecond\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-Test : value\r\n\r\n",
    ];
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        for request in requests {
            rejecter.expect_rejected(request, 400, "header");
        }
    }
}

// RFC 9112 section 3.2: a server rejects with 400 an HTTP/1.1 request without Host, and
// any request with more than one Host or an invalid one.
#[test]
fn host_rules_400() {
    let requests: [&[u8]; 7] = [
        b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: gw.test\r\nHost: other.test\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: gw.test\r\nHost: gw.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: gw test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@gw.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: gw.test:80a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    ];
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        for request in requests {
            rejecter.expect_rejected(request, 400, "Host");
        }
    }
}

/// Returns a GET request with Host and `extra` more header lines.
fn request_with_fields(extra: usize) -> Vec<u8> {
    let mut request = String::from("GET /fields HTTP/1.1\r\nHost: gw.test\r\n");
    for index in 0..extra {
        request.push_str(&format!("X-Field-{index}: {index}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

// RFC 6585 section 5: more header lines than limits.max_header_count get 431; exactly
// that many pass.
#[test]
fn header_count_431() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        let context = format!("{driver:?} {MAX_HEADER_COUNT} header lines");
        let seen = rejecter.expect_forwarded(&request_with_fields(MAX_HEADER_COUNT - 1), &context);
        let last = format!("X-Field-{}", MAX_HEADER_COUNT - 2);
        assert!(
            seen.header(&last).is_some(),
            "{context}: {last} not forwarded"
        );
        rejecter.expect_rejected(&request_with_fields(MAX_HEADER_COUNT), 431, "header");
    }
}

/// Returns a GET request whose head is exactly `len` bytes, padded with an X-Pad field.
fn request_with_head_len(len: usize) -> Vec<u8> {
    let start = "GET /padded HTTP/1.1\r\nHost: gw.test\r\nX-Pad: ";
    let end = "\r\n\r\n";
    let pad = "p".repeat(len - start.len() - end.len());
    format!("{start}{pad}{end}").into_bytes()
}

// RFC 6585 section 5: a request head over limits.max_request_head_bytes gets 431; one
// exactly at the limit passes.
#[test]
fn head_size_431() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        let context = format!("{driver:?} head of {MAX_REQUEST_HEAD_BYTES} bytes");
        let seen =
            rejecter.expect_forwarded(&request_with_head_len(MAX_REQUEST_HEAD_BYTES), &context);
        assert_eq!(seen.target, "/padded", "{context}: target at the origin");
        rejecter.expect_rejected(
            &request_with_head_len(MAX_REQUEST_HEAD_BYTES + 1),
            431,
            "head",
        );
        rejecter.expect_rejected(
            &request_with_head_len(4 * MAX_REQUEST_HEAD_BYTES),
            431,
            "head",
        );
    }
}

// RFC 9110 section 15.5.15: a request line longer than the server accepts gets 414,
// here with the whole request in one write, as clients send it.
#[test]
fn long_request_line_414() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        let target = format!("/{}", "a".repeat(2 * MAX_REQUEST_HEAD_BYTES));
        let request = format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
        rejecter.expect_rejected(request.as_bytes(), 414, "request line");
    }
}

// RFC 9110 section 15.5.15: ringway responds with 414 as soon as it has read more than
// the limit of a request line, without waiting for the line to end.
#[test]
fn unfinished_request_line_414() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        let request = format!("GET /{}", "a".repeat(2 * MAX_REQUEST_HEAD_BYTES));
        rejecter.expect_rejected(request.as_bytes(), 414, "request line");
    }
}

// RFC 9110 section 15.5.14: a request body with a declared length over
// limits.max_request_body_bytes gets 413 before anything is forwarded, because the head
// states the length. A body exactly at the limit passes.
#[test]
fn declared_body_over_limit_413() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        let context = format!("{driver:?} body of {MAX_REQUEST_BODY_BYTES} bytes");
        let body = "b".repeat(MAX_REQUEST_BODY_BYTES);
        let seen = rejecter.expect_forwarded(
            &post(
                &format!("Content-Length: {MAX_REQUEST_BODY_BYTES}\r\n"),
                &body,
            ),
            &context,
        );
        assert_eq!(
            seen.body.len(),
            MAX_REQUEST_BODY_BYTES,
            "{context}: body at the origin"
        );
        let body = "b".repeat(MAX_REQUEST_BODY_BYTES + 1);
        rejecter.expect_rejected(
            &post(
                &format!("Content-Length: {}\r\n", MAX_REQUEST_BODY_BYTES + 1),
                &body,
            ),
            413,
            "body",
        );
    }
}

// RFC 9110 section 15.5.14: a chunked body that grows past limits.max_request_body_bytes
// gets 413, and the origin, which already has the head, never receives a complete body.
#[test]
fn chunked_body_over_limit_413() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        let first = "a".repeat(600);
        let second = "b".repeat(MAX_REQUEST_BODY_BYTES + 1 - 600);
        let body = format!(
            "{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
            first.len(),
            second.len()
        );
        rejecter.expect_rejected_mid_body(
            &post("Transfer-Encoding: chunked\r\n", &body),
            413,
            "body",
        );
    }
}

// RFC 9110 section 10.1.1: a server that does not support an expectation responds with
// 417.
#[test]
fn unknown_expectation_417() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        rejecter.expect_rejected(
            b"POST /submit HTTP/1.1\r\nHost: gw.test\r\nExpect: something-else\r\nContent-Length: 0\r\n\r\n",
            417,
            "Expect",
        );
    }
}

// RFC 9110 section 15.6.6: a major version the server does not support gets 505.
#[test]
fn http2_request_line_505() {
    let requests: [&[u8]; 2] = [
        b"GET / HTTP/2.0\r\nHost: gw.test\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        for request in requests {
            rejecter.expect_rejected(request, 505, "HTTP");
        }
    }
}

// RFC 9110 section 9.3.6: CONNECT requests a tunnel, which a reverse proxy does not
// offer, so it gets 501.
#[test]
fn connect_method_501() {
    for driver in DRIVERS {
        let mut rejecter = Rejecter::start(driver);
        rejecter.expect_rejected(
            b"CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\n\r\n",
            501,
            "CONNECT",
        );
    }
}
