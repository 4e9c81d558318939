//! RFC 9110 and RFC 9112 conformance of ringway as an intermediary, checked black-box:
//! raw sockets to ringway on one side and scripted origins on the other, every scenario
//! under io_uring and epoll.
//!
//! The list below names, for every conformance requirement, the test that checks it. A
//! requirement that another test file already checks exactly is named there and not
//! repeated here.
//!
//! Request framing (RFC 9112 sections 6 and 7):
//! - chunk sizes with `0x`, `+`, spaces or overflow: `chunk_size_forms`
//! - chunk data longer or shorter than declared: `chunk_data_mismatch`
//! - bare LF or bare CR in chunk lines: `chunk_line_endings`
//! - chunk extensions, never forwarded and bounded by `limits.max_chunk_extension_bytes`:
//!   `chunk_extension_limit`
//! - trailers, never merged into the header section: `trailers_dropped`
//! - bodies cut short by EOF, never complete at the upstream: `body_cut_by_eof`
//! - Content-Length with leading zeros (forwarded as the plain number), with `+`, and
//!   lists ("5, 5" accepted as 5, "44, 45" rejected): cases.rs `cl_te_smuggling_rejected`
//! - Content-Length empty, overflowing, not a decimal number, conflicting, or repeated on
//!   several lines: `content_length_forms`
//! - GET with a body: exchange.rs `get_with_body_forwarded`
//! - POST without Content-Length or Transfer-Encoding, forwarded with no body and no
//!   framing header: cases.rs `bodiless_request_stays_bodiless`
//!
//! Request smuggling:
//! - Content-Length with Transfer-Encoding, in both orders: cases.rs
//!   `cl_te_smuggling_rejected`
//! - Transfer-Encoding in an HTTP/1.0 request: rejections.rs `ambiguous_framing_400`
//! - `chunked` applied twice: cases.rs `cl_te_smuggling_rejected`
//! - Transfer-Encoding values in other case and with whitespace: `te_value_forms`
//! - a final transfer coding other than chunked: cases.rs `cl_te_smuggling_rejected`
//!   (`chunked, identity`) and rejections.rs `ambiguous_framing_400` (`gzip`)
//! - framing headers continued by obs-fold: `folded_framing_400`
//! - framing headers named in Connection: `nominated_framing_kept`
//! - whitespace before the first header line: `leading_whitespace_400`
//! - invalid header names: `invalid_field_names_400`
//! - CR or NUL in header values: `cr_nul_in_values_400`
//! - missing, duplicate or invalid Host: rejections.rs `host_rules_400`
//! - absolute-form target with a conflicting Host (the upstream gets the target's
//!   authority as its only Host): exchange.rs `absolute_form_target`
//! - whitespace inside the request target: `spaces_in_target_400`
//! - Content-Length or Transfer-Encoding in a trailer section: `framing_trailers_ignored`
//!
//! Hop-by-hop fields and forwarding headers (RFC 9110 sections 6.6.1 and 7.6):
//! - every field named in Connection, removed in both directions:
//!   `connection_named_removed`
//! - `Upgrade: h2c` and `HTTP2-Settings`, never forwarded: `h2c_upgrade_removed`
//! - Via added and appended on requests: cases.rs `host_and_forwarding_headers`
//! - Via added and appended on responses: `via_on_responses`
//! - Date on every response, ringway's own errors included: `date_on_every_response`
//!
//! Response framing from the upstream (RFC 9112 section 6.3):
//! - invalid or conflicting Content-Length gives 502: cases.rs `upstream_status_mapping`
//! - Content-Length with Transfer-Encoding gives 502: failures.rs `response_cl_and_te_502`
//! - bytes after a complete body, never relayed, and the connection never reused, with
//!   either value of `relay`: `bytes_after_body`
//! - truncated bodies never completed: cases.rs `upstream_closes_early`
//! - HEAD, 204 and 304 responses ending at the head, 204 without Content-Length:
//!   cases.rs `bodiless_responses_end_at_head`
//! - 1xx responses forwarded (not to HTTP/1.0 clients) and never taken as final:
//!   `interim_responses`
//! - 101 to a request without Upgrade gives 502: failures.rs `unrequested_upgrade_502`
//! - 101 to a request whose Upgrade ringway removed gives 502: `upgrade_101_502`
//! - an upgrade offer with a 101 becomes a byte tunnel: upgrade.rs
//! - garbage or no status line gives 502: failures.rs `garbage_response_502` and
//!   `partial_head_502`
//! - obs-fold, whitespace before the colon, CR or NUL in a response head gives 502:
//!   `malformed_response_fields_502`
//!
//! Persistent connections (RFC 9112 section 9):
//! - 20 requests on one connection: exchange.rs `keep_alive_many_requests`
//! - pipelined requests without bodies answered in order: exchange.rs
//!   `pipelined_requests_in_order`
//! - pipelined requests with bodies answered in order: `pipelined_bodies_in_order`
//! - no request after one with `Connection: close` (or an HTTP/1.0 one without
//!   keep-alive) processed: `close_ends_pipeline`
//! - the origin closing idle pooled connections: failures.rs
//!   `stale_pooled_connection_replaced`
//! - a POST never sent again once any byte of it was sent: failures.rs `post_not_resent`
//!
//! Limits:
//! - request line and target, 414: rejections.rs `long_request_line_414` and
//!   `unfinished_request_line_414`
//! - header bytes and count, 431: rejections.rs `head_size_431` and `header_count_431`
//! - chunk extension size, 400 with the upstream never seeing a complete body:
//!   `chunk_extension_limit`

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use common::{
    DRIVERS, Driver, RawOrigin, RawRequest, RecordingOrigin, Reply, Response, Ringway, Seen,
    TIMEOUT, assert_error_response, config_for, connect, ok_with_body, pattern_bytes, read_request,
    read_response, reply_with_target, send, wait_for_close,
};

/// Bound for ringway to close a connection once the exchange on it is over.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Largest difference allowed between a Date that ringway generates and the test's clock.
/// ringway formats Date once a second, and a loaded two-core machine may delay the
/// response by another second or two.
const DATE_SKEW_MAX: Duration = Duration::from_secs(5);

/// `limits.max_chunk_extension_bytes` in the configured half of the extension test: small,
/// so that a short chunk line reaches it.
const CONFIGURED_MAX_CHUNK_EXTENSION_BYTES: usize = 32;

/// The default of `limits.max_chunk_extension_bytes`, as config/README.md documents it.
const DEFAULT_MAX_CHUNK_EXTENSION_BYTES: usize = 1024;

/// Time between an origin's response and the bytes it sends after it on the idle
/// connection in `bytes_after_body`: long enough for ringway to have relayed the response
/// and pooled the connection.
const LATE_BYTES_DELAY: Duration = Duration::from_millis(100);

/// Time for bytes written on loopback to reach ringway's receive queue before the next
/// request, in the test of bytes that an origin sends on an idle connection.
const LOOPBACK_SETTLE: Duration = Duration::from_millis(50);

/// Size of the large body in `bytes_after_body`: many times the first read of a response,
/// so that most of the body is relayed (or spliced) after the head, not read with it.
const LARGE_BODY_BYTES: usize = 256 * 1024;

/// The values of the top-level `relay` key: how ringway moves response bodies with a known
/// end.
const RELAY_MODES: [&str; 2] = ["copy", "splice"];

/// A complete response that an origin appends after a framed body. A proxy that reused
/// the connection would relay it as the response to the next request.
const FORGED_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged";

/// An IMF-fixdate from RFC 9110 section 5.6.7, as an origin's own Date.
const ORIGIN_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// `ORIGIN_DATE` in seconds since the Unix epoch.
const ORIGIN_DATE_UNIX: u64 = 784_111_777;

/// ringway in front of a `RecordingOrigin`, with helpers that check how ringway treats
/// one request and then prove, with a follow-up request, what the origin received.
struct Gateway {
    driver: Driver,
    origin: RecordingOrigin,
    proxy: Ringway,
    follow_ups: usize,
}

impl Gateway {
    /// Starts ringway with the default limits in front of an origin that responds with
    /// the request target.
    fn start(driver: Driver) -> Gateway {
        Gateway::start_with(driver, None, reply_with_target)
    }

    /// Starts ringway with `limits` (or the defaults) in front of an origin that responds
    /// with `respond`.
    fn start_with(
        driver: Driver,
        limits: Option<Value>,
        respond: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static,
    ) -> Gateway {
        let origin = RecordingOrigin::start(respond);
        let mut config = config_for(origin.addr, driver);
        if let Some(limits) = limits {
            config["limits"] = limits;
        }
        let proxy = Ringway::start(&config);
        Gateway {
            driver,
            origin,
            proxy,
            follow_ups: 0,
        }
    }

    fn context(&self, request: &[u8]) -> String {
        format!("{:?} {}", self.driver, shown(request))
    }

    /// Sends `request` on a new connection and returns the response.
    fn exchange(&self, request: &[u8], head_request: bool, context: &str) -> Response {
        let mut stream = connect(self.proxy.addr);
        send(&mut stream, request);
        read_response(&mut stream, head_request)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"))
    }

    /// Sends `request`, whose head ringway must reject, and checks the error response,
    /// its Date, the close after it, and that the origin never receives the request.
    fn reject_head(&mut self, request: &[u8], status: u16, about: &str) {
        let context = self.context(request);
        let mut stream = connect(self.proxy.addr);
        send(&mut stream, request);
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_error_response(&response, status, about, &context);
        assert_date_now(&response, &context);
        assert_closed_empty(&mut stream, &context);
        drop(stream);
        self.follow_up(&context);
    }

    /// Sends `request`, whose head is valid and whose body ringway must reject, and
    /// checks the error response and the close after it. ringway forwards the head before
    /// it reads the body, so the origin receives the request, but only with a body that
    /// stops before its end: at most the chunk data in `passed`, which precedes the
    /// invalid bytes.
    fn reject_body(&mut self, request: &[u8], target: &str, passed: &[u8], about: &str) {
        let context = self.context(request);
        let mut stream = connect(self.proxy.addr);
        send(&mut stream, request);
        // The origin responds only to a complete request, so no response has started when
        // ringway finds the invalid bytes, and the client gets the error.
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_error_response(&response, 400, about, &context);
        assert_date_now(&response, &context);
        assert_closed_empty(&mut stream, &context);
        drop(stream);
        self.expect_incomplete(target, passed, &context);
        self.follow_up(&context);
    }

    /// Sends `partial`, a request whose body ends early, then closes the write side of
    /// the connection. ringway must close the connection without a response and must not
    /// complete the body toward the origin.
    fn cut_body(&mut self, partial: &[u8], target: &str, passed: &[u8]) {
        let context = format!("{} then EOF", self.context(partial));
        let mut stream = connect(self.proxy.addr);
        send(&mut stream, partial);
        stream
            .shutdown(Shutdown::Write)
            .unwrap_or_else(|error| panic!("{context}: shutdown failed: {error}"));
        let rest = wait_for_close(&mut stream, CLOSE_WAIT)
            .unwrap_or_else(|| panic!("{context}: connection open after the client's EOF"));
        assert!(
            rest.is_empty(),
            "{context}: bytes after the client's EOF: {:?}",
            String::from_utf8_lossy(&rest)
        );
        drop(stream);
        self.expect_incomplete(target, passed, &context);
        self.follow_up(&context);
    }

    /// Checks that the next request the origin records is `target` with a body that is
    /// incomplete and a prefix of `passed`.
    fn expect_incomplete(&self, target: &str, passed: &[u8], context: &str) {
        let seen = self.origin.next_request().request;
        assert_eq!(seen.target, target, "{context}: request at the origin");
        assert!(
            !seen.complete,
            "{context}: the origin received a complete body {:?}",
            String::from_utf8_lossy(&seen.body)
        );
        assert!(
            passed.starts_with(&seen.body),
            "{context}: the origin received body {:?}, which is not a prefix of {:?}",
            String::from_utf8_lossy(&seen.body),
            String::from_utf8_lossy(passed)
        );
    }

    /// Sends `request`, which ringway must forward, with GET requests for `following`
    /// pipelined behind it in the same write. Checks that the client gets a 200 for each
    /// and that the GET requests reach the origin without a body, and returns the
    /// requests as the origin recorded them, in order.
    fn forward(&self, request: &[u8], following: &[&str], context: &str) -> Vec<Seen> {
        let mut stream = connect(self.proxy.addr);
        let mut bytes = request.to_vec();
        for target in following {
            bytes.extend_from_slice(get(target).as_bytes());
        }
        send(&mut stream, &bytes);
        let mut seen = Vec::new();
        for index in 0..=following.len() {
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response {index}: {error}"));
            assert_eq!(
                response.status,
                200,
                "{context}: status of response {index} (body {:?})",
                response.body_text()
            );
            seen.push(self.origin.next_request());
        }
        for (target, Seen { request, .. }) in following.iter().zip(&seen[1..]) {
            assert_eq!(
                request.target, *target,
                "{context}: pipelined request at the origin"
            );
            assert!(
                request.body_raw.is_empty(),
                "{context}: {target} has body {:?} at the origin",
                String::from_utf8_lossy(&request.body_raw)
            );
        }
        seen
    }

    /// Sends a GET on a new connection and checks that it is the next request the origin
    /// records, so that no earlier request reached the origin unnoticed. Returns the
    /// request as the origin recorded it.
    fn follow_up(&mut self, context: &str) -> Seen {
        self.follow_ups += 1;
        let target = format!("/follow-up/{}", self.follow_ups);
        let response = self.exchange(get(&target).as_bytes(), false, context);
        assert_eq!(response.status, 200, "{context}: follow-up status");
        assert_eq!(response.body_text(), target, "{context}: follow-up body");
        let seen = self.origin.next_request();
        assert_eq!(
            seen.request.target,
            target,
            "{context}: the origin received another request first: {:?}",
            String::from_utf8_lossy(&seen.request.head)
        );
        seen
    }
}

/// Returns a GET request for `target` with `Host: gw.test`.
fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
}

/// Returns a POST to `target` with the header lines `fields`, then `body`.
fn post(target: &str, fields: &str, body: &str) -> Vec<u8> {
    format!("POST {target} HTTP/1.1\r\nHost: gw.test\r\n{fields}\r\n{body}").into_bytes()
}

/// Returns `bytes` with control and non-ASCII bytes escaped, cut after 120 characters,
/// for failure messages.
fn shown(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string().chars().take(120).collect()
}

/// Checks that ringway closes `stream` with nothing more sent on it.
fn assert_closed_empty(stream: &mut TcpStream, context: &str) {
    let rest = wait_for_close(stream, CLOSE_WAIT)
        .unwrap_or_else(|| panic!("{context}: connection open after the response"));
    assert!(
        rest.is_empty(),
        "{context}: bytes after the response: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Returns the names of the fields of `headers` that are in `names`, compared
/// case-insensitively.
fn present<'a>(headers: &[(String, String)], names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|name| {
            headers
                .iter()
                .any(|(field, _)| field.eq_ignore_ascii_case(name))
        })
        .collect()
}

/// Returns the elements of every Via line of `response` in order, the comma-separated
/// list that RFC 9110 section 5.3 makes equal to the lines combined.
fn via_entries(response: &Response) -> Vec<String> {
    response
        .headers_named("Via")
        .iter()
        .flat_map(|value| value.split(','))
        .map(|entry| entry.trim().to_owned())
        .collect()
}

/// Returns the number of days from 1970-01-01 to the given date of the proleptic
/// Gregorian calendar. Years start in March here, so that the leap day ends a year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses an IMF-fixdate such as "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 section
/// 5.6.7) into seconds since the Unix epoch. Returns `None` for any other form, for a day
/// that the month does not have, and for a day name that does not match the date.
fn parse_imf_fixdate(value: &str) -> Option<u64> {
    // Day names in order from Thursday, the day name of 1970-01-01.
    const DAY_NAMES: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    let bytes = value.as_bytes();
    if bytes.len() != 29 || !value.is_ascii() || &value[3..5] != ", " || &value[25..] != " GMT" {
        return None;
    }
    if [7, 11, 16].iter().any(|&at| bytes[at] != b' ') || bytes[19] != b':' || bytes[22] != b':' {
        return None;
    }

    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = &value[range];
        digits
            .bytes()
            .all(|byte| byte.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let day = number(5..7)?;
    let month = MONTHS.iter().position(|&name| name == &value[8..11])? as i64 + 1;
    let year = number(12..16)?;
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    if year < 1970 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }

    let days = days_from_civil(year, month, day);
    let next_month = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    if day < 1 || days >= next_month {
        return None;
    }
    if DAY_NAMES[days.rem_euclid(7) as usize] != &value[..3] {
        return None;
    }
    u64::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).ok()
}

/// Checks that `response` has exactly one Date, an IMF-fixdate within `DATE_SKEW_MAX`
/// of now.
fn assert_date_now(response: &Response, context: &str) {
    let dates = response.headers_named("Date");
    assert_eq!(dates.len(), 1, "{context}: Date lines {dates:?}");
    let date = parse_imf_fixdate(dates[0])
        .unwrap_or_else(|| panic!("{context}: Date {:?} is not an IMF-fixdate", dates[0]));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    assert!(
        date.abs_diff(now) <= DATE_SKEW_MAX.as_secs(),
        "{context}: Date {:?} is {} s away from now",
        dates[0],
        date.abs_diff(now)
    );
}

// RFC 9112 section 7.1: chunk-size = 1*HEXDIG, followed directly by CRLF or by
// chunk-ext, which starts with optional whitespace and ";". A "0x" prefix, a sign,
// whitespace that no extension follows, and a size past 64 bits are invalid: the request
// gets 400 and the origin never receives a complete body. Leading zeros and upper-case
// digits are valid hex.
#[test]
fn chunk_size_forms() {
    let rejected = [
        ("0x5\r\nhello\r\n0\r\n\r\n", ""),
        ("+5\r\nhello\r\n0\r\n\r\n", ""),
        ("-5\r\nhello\r\n0\r\n\r\n", ""),
        (" 5\r\nhello\r\n0\r\n\r\n", ""),
        ("\t5\r\nhello\r\n0\r\n\r\n", ""),
        ("5 \r\nhello\r\n0\r\n\r\n", ""),
        ("5\t\r\nhello\r\n0\r\n\r\n", ""),
        ("5 5\r\nhello\r\n0\r\n\r\n", ""),
        ("\r\nhello\r\n0\r\n\r\n", ""),
        ("10000000000000000\r\nhello\r\n0\r\n\r\n", ""),
        ("fffffffffffffffff\r\nhello\r\n0\r\n\r\n", ""),
        (
            "5\r\nhello\r\n10000000000000005\r\nworld\r\n0\r\n\r\n",
            "hello",
        ),
        ("5\r\nhello\r\n0x0\r\n\r\n", "hello"),
    ];
    let accepted = [
        ("0005\r\nhello\r\n0000\r\n\r\n", "hello"),
        ("00000000000000005\r\nhello\r\n0\r\n\r\n", "hello"),
        ("A\r\nhelloworld\r\n0\r\n\r\n", "helloworld"),
        ("5 ;ext\r\nhello\r\n0\r\n\r\n", "hello"),
        ("5\t; ext = \"v\"\r\nhello\r\n0\r\n\r\n", "hello"),
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for (body, passed) in rejected {
            let request = post("/chunks", "Transfer-Encoding: chunked\r\n", body);
            gateway.reject_body(&request, "/chunks", passed.as_bytes(), "chunk");
        }
        for (body, data) in accepted {
            let request = post("/chunks", "Transfer-Encoding: chunked\r\n", body);
            let context = gateway.context(&request);
            let upload = &gateway.forward(&request, &["/after"], &context)[0].request;
            assert!(upload.complete, "{context}: body incomplete at the origin");
            assert_eq!(
                upload.body,
                data.as_bytes(),
                "{context}: body at the origin"
            );
            assert!(
                !upload.body_raw.contains(&b';'),
                "{context}: chunk extension forwarded: {:?}",
                String::from_utf8_lossy(&upload.body_raw)
            );
        }
    }
}

// RFC 9112 section 7.1: chunk-data is exactly chunk-size bytes, followed by CRLF. Data
// longer or shorter than declared leaves something other than CRLF where the CRLF must
// be, so the request gets 400 and the origin never receives a complete body.
#[test]
fn chunk_data_mismatch() {
    let cases = [
        ("5\r\nhelloXX\r\n0\r\n\r\n", "hello"),
        ("5\r\nhello!\r\n0\r\n\r\n", "hello"),
        ("5\r\nhel\r\n0\r\n\r\n", "hel\r\n"),
        ("5\r\nhell\r\n0\r\n\r\n", "hell\r"),
        ("3\r\nabc\r\n5\r\nhelloworld\r\n0\r\n\r\n", "abchello"),
        ("5\r\nhello0\r\n\r\n", "hello"),
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for (body, passed) in cases {
            let request = post("/chunks", "Transfer-Encoding: chunked\r\n", body);
            gateway.reject_body(&request, "/chunks", passed.as_bytes(), "chunk");
        }
    }
}

// RFC 9112 section 7.1: every line of a chunked body ends with CRLF. Section 2.2 lets a
// recipient accept a bare LF, but a proxy that did would frame the body differently from
// a stricter server behind it. So a bare LF or a CR without LF gets 400, and the origin
// never receives a complete body.
#[test]
fn chunk_line_endings() {
    let cases = [
        ("5\nhello\r\n0\r\n\r\n", ""),
        ("5\rhello\r\n0\r\n\r\n", ""),
        ("5;a=b\nhello\r\n0\r\n\r\n", ""),
        ("5\r\nhello\n0\r\n\r\n", "hello"),
        ("5\r\nhello\r0\r\n\r\n", "hello"),
        ("5\r\nhello\r\n0\n\r\n", "hello"),
        ("5\r\nhello\r\n0\r\n\n", "hello"),
        ("5\r\nhello\r\n0\r\nX-Sum: 1\n\r\n", "hello"),
        ("5\r\nhello\r\n0\r\nX-Sum: 1\r\r\n", "hello"),
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for (body, passed) in cases {
            let request = post("/chunks", "Transfer-Encoding: chunked\r\n", body);
            gateway.reject_body(&request, "/chunks", passed.as_bytes(), "chunk");
        }
    }
}

// RFC 9112 section 7.1.1: a recipient ignores chunk extensions it does not understand,
// and a server ought to limit their length. ringway re-encodes the body without them,
// and an extension longer than limits.max_chunk_extension_bytes (counted from the byte
// after the chunk-size to the CR) gets 400 with the origin never receiving a complete
// body. This holds on the last chunk too, whose extension ringway must read before it
// ends the body toward the origin. Extensions that break the chunk-ext grammar get 400.
#[test]
fn chunk_extension_limit() {
    for driver in DRIVERS {
        for (limits, max) in [
            (None, DEFAULT_MAX_CHUNK_EXTENSION_BYTES),
            (
                Some(json!({ "max_chunk_extension_bytes": CONFIGURED_MAX_CHUNK_EXTENSION_BYTES })),
                CONFIGURED_MAX_CHUNK_EXTENSION_BYTES,
            ),
        ] {
            let mut gateway = Gateway::start_with(driver, limits, reply_with_target);
            // ";" and a name: exactly `max` extension bytes, then one more.
            let at_limit = format!(";{}", "e".repeat(max - 1));
            let over_limit = format!(";{}", "e".repeat(max));

            let body =
                format!("5{at_limit}\r\nhello\r\n5;a=1;b=\"x;y\"\r\nworld\r\n0{at_limit}\r\n\r\n");
            let request = post("/ext", "Transfer-Encoding: chunked\r\n", &body);
            let context = format!("{driver:?} extensions of {max} bytes");
            let upload = &gateway.forward(&request, &["/after"], &context)[0].request;
            assert!(upload.complete, "{context}: body incomplete at the origin");
            assert_eq!(upload.body, b"helloworld", "{context}: body at the origin");
            assert!(
                !upload.body_raw.contains(&b';'),
                "{context}: chunk extension forwarded: {:?}",
                String::from_utf8_lossy(&upload.body_raw)
            );

            let rejected = [
                (format!("5{over_limit}\r\nhello\r\n0\r\n\r\n"), ""),
                (
                    format!("5\r\nhello\r\n5{over_limit}\r\nworld\r\n0\r\n\r\n"),
                    "hello",
                ),
                (format!("5\r\nhello\r\n0{over_limit}\r\n\r\n"), "hello"),
            ];
            for (body, passed) in &rejected {
                let request = post("/ext", "Transfer-Encoding: chunked\r\n", body);
                gateway.reject_body(
                    &request,
                    "/ext",
                    passed.as_bytes(),
                    "max_chunk_extension_bytes",
                );
            }

            for (body, passed) in [
                ("5;\r\nhello\r\n0\r\n\r\n", ""),
                ("5;a b\r\nhello\r\n0\r\n\r\n", ""),
                ("5;a=\"x\r\nhello\r\n0\r\n\r\n", ""),
                ("5;a=1 \r\nhello\r\n0\r\n\r\n", ""),
                ("5\r\nhello\r\n0;=1\r\n\r\n", "hello"),
            ] {
                let request = post("/ext", "Transfer-Encoding: chunked\r\n", body);
                gateway.reject_body(&request, "/ext", passed.as_bytes(), "chunk extension");
            }
        }
    }
}

// RFC 9110 section 6.5.1: a recipient must not merge trailer fields into the header
// section unless their definition allows it. ringway drops trailer fields in both
// directions (and Trailer, which would announce them), so none of them reaches the other
// side as a header or a trailer, and the body arrives complete.
#[test]
fn trailers_dropped() {
    let trailer_names = ["X-Checksum", "Authorization", "Trailer"];
    for driver in DRIVERS {
        let gateway = Gateway::start_with(driver, None, |request| {
            if request.target == "/download" {
                Reply::keep_open(
                    b"HTTP/1.1 200 OK\r\nTrailer: X-Checksum, Set-Cookie\r\n\
                      Transfer-Encoding: chunked\r\n\r\n\
                      2\r\nok\r\n0\r\nX-Checksum: 42\r\nSet-Cookie: session=forged\r\n\r\n"
                        .to_vec(),
                )
            } else {
                reply_with_target(request)
            }
        });

        let context = format!("{driver:?} request trailers");
        let request = post(
            "/upload",
            "Trailer: X-Checksum, Authorization\r\nTransfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n0\r\nX-Checksum: 42\r\nAuthorization: Bearer forged\r\n\
             X-Forwarded-For: 10.0.0.1\r\n\r\n",
        );
        let seen = gateway.forward(&request, &["/after"], &context);
        let upload = &seen[0].request;
        assert!(upload.complete, "{context}: body incomplete at the origin");
        assert_eq!(upload.body, b"hello", "{context}: body at the origin");
        assert_eq!(
            present(&upload.headers, &trailer_names),
            Vec::<&str>::new(),
            "{context}: trailer fields in the header section at the origin"
        );
        assert_eq!(
            upload.headers_named("X-Forwarded-For"),
            vec!["127.0.0.1"],
            "{context}: X-Forwarded-For at the origin"
        );
        assert_eq!(
            upload.trailers,
            Vec::<(String, String)>::new(),
            "{context}: trailers at the origin"
        );

        let context = format!("{driver:?} response trailers");
        let mut stream = connect(gateway.proxy.addr);
        send(&mut stream, get("/download").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        assert!(response.complete, "{context}: body incomplete");
        assert_eq!(response.body, b"ok", "{context}: body");
        assert_eq!(
            present(&response.headers, &["X-Checksum", "Set-Cookie", "Trailer"]),
            Vec::<&str>::new(),
            "{context}: trailer fields in the header section"
        );
        assert_eq!(
            response.trailers,
            Vec::<(String, String)>::new(),
            "{context}: trailers at the client"
        );
        send(&mut stream, get("/next").as_bytes());
        let next = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response to the next GET: {error}"));
        assert_eq!(next.body, b"/next", "{context}: next response");
    }
}

// RFC 9110 section 6.5.1 and RFC 9112 section 7.1.2: fields that frame the message
// cannot appear as trailers. A Content-Length or Transfer-Encoding in a trailer section
// never reaches the other side and changes nothing: the body ends at the empty line,
// and the next message starts right after it.
#[test]
fn framing_trailers_ignored() {
    for driver in DRIVERS {
        let gateway = Gateway::start_with(driver, None, |request| {
            if request.target == "/download" {
                Reply::keep_open(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      2\r\nok\r\n0\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                        .to_vec(),
                )
            } else {
                reply_with_target(request)
            }
        });

        let context = format!("{driver:?} framing fields in request trailers");
        let request = post(
            "/upload",
            "Transfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n0\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let seen = gateway.forward(&request, &["/after-1", "/after-2"], &context);
        let upload = &seen[0].request;
        assert!(upload.complete, "{context}: body incomplete at the origin");
        assert_eq!(upload.body, b"hello", "{context}: body at the origin");
        assert_eq!(
            upload.headers_named("Transfer-Encoding"),
            vec!["chunked"],
            "{context}: Transfer-Encoding at the origin"
        );
        assert_eq!(
            upload.headers_named("Content-Length"),
            Vec::<&str>::new(),
            "{context}: Content-Length at the origin"
        );
        assert_eq!(
            upload.trailers,
            Vec::<(String, String)>::new(),
            "{context}: trailers at the origin"
        );
        let connections: Vec<usize> = seen.iter().map(|seen| seen.connection).collect();
        assert_eq!(
            connections,
            vec![0; 3],
            "{context}: upstream connection of each request"
        );

        let context = format!("{driver:?} framing fields in response trailers");
        let mut stream = connect(gateway.proxy.addr);
        send(&mut stream, get("/download").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        assert!(response.complete, "{context}: body incomplete");
        assert_eq!(response.body, b"ok", "{context}: body");
        assert_eq!(
            response.trailers,
            Vec::<(String, String)>::new(),
            "{context}: trailers at the client"
        );
        send(&mut stream, get("/next").as_bytes());
        let next = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response to the next GET: {error}"));
        assert_eq!(next.status, 200, "{context}: status of the next GET");
        assert_eq!(next.body, b"/next", "{context}: body of the next GET");
    }
}

// RFC 9112 section 8: a message whose body ends before the end its framing declares is
// incomplete.
// When the client's connection ends inside a body, ringway closes both connections
// without a response and never ends the body toward the origin. It sends neither the
// missing bytes nor a last chunk, not even when only the client's trailer section was
// left to come.
#[test]
fn body_cut_by_eof() {
    let chunked = "Transfer-Encoding: chunked\r\n";
    let cases = [
        (post("/cut", "Content-Length: 10\r\n", "01234"), "01234"),
        (post("/cut", "Content-Length: 10\r\n", ""), ""),
        (post("/cut", chunked, ""), ""),
        (post("/cut", chunked, "a\r\n01234"), "01234"),
        (post("/cut", chunked, "5\r\n01234\r\n"), "01234"),
        (post("/cut", chunked, "5\r\n01234\r\n5"), "01234"),
        (post("/cut", chunked, "5\r\n01234\r\n5;ext"), "01234"),
        (post("/cut", chunked, "5\r\n01234\r"), "01234"),
        (post("/cut", chunked, "5\r\n01234\r\n0"), "01234"),
        (post("/cut", chunked, "5\r\n01234\r\n0\r\n"), "01234"),
        (
            post("/cut", chunked, "5\r\n01234\r\n0\r\nX-Sum: 1\r\n"),
            "01234",
        ),
        (post("/cut", chunked, "5\r\n01234\r\n0\r\n\r"), "01234"),
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for (partial, passed) in &cases {
            gateway.cut_body(partial, "/cut", passed.as_bytes());
        }
    }
}

// RFC 9110 section 8.6: Content-Length = 1*DIGIT, and a list or repeat of one value may
// be taken as that value. RFC 9112 section 6.3: any other Content-Length makes the
// framing invalid, and the server responds with 400 and closes. So an empty value, a
// value past 64 bits, a decimal point or an exponent gets 400 before anything is
// forwarded, and a valid length over limits.max_request_body_bytes gets 413, not a
// wrapped number. Accepted forms go upstream as one Content-Length line of ringway's own.
#[test]
fn content_length_forms() {
    let rejected = [
        ("Content-Length: \r\n", 400, "Content-Length"),
        (
            "Content-Length: 18446744073709551616\r\n",
            400,
            "Content-Length",
        ),
        (
            "Content-Length: 99999999999999999999999\r\n",
            400,
            "Content-Length",
        ),
        ("Content-Length: 5.0\r\n", 400, "Content-Length"),
        ("Content-Length: 5e0\r\n", 400, "Content-Length"),
        (
            "Content-Length: 5\r\nContent-Length: \r\n",
            400,
            "Content-Length",
        ),
        (
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            400,
            "Content-Length",
        ),
        ("Content-Length: 5, 6\r\n", 400, "Content-Length"),
        (
            "Content-Length: 18446744073709551615\r\n",
            413,
            "Content-Length",
        ),
    ];
    let accepted = [
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5,5\r\n",
        "Content-Length: 05\r\nContent-Length: 5, 005\r\n",
        "Content-Length:5\r\n",
        "Content-Length: \t5 \t\r\n",
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for (fields, status, about) in rejected {
            gateway.reject_head(&post("/length", fields, "hello"), status, about);
        }
        for fields in accepted {
            let request = post("/length", fields, "hello");
            let context = gateway.context(&request);
            let upload = &gateway.forward(&request, &["/after"], &context)[0].request;
            assert_eq!(
                upload.headers_named("Content-Length"),
                vec!["5"],
                "{context}: Content-Length at the origin"
            );
            assert_eq!(
                upload.headers_named("Transfer-Encoding"),
                Vec::<&str>::new(),
                "{context}: Transfer-Encoding at the origin"
            );
            assert_eq!(upload.body_raw, b"hello", "{context}: body at the origin");
        }
        assert_eq!(
            gateway.origin.connections(),
            1,
            "{driver:?}: upstream connections"
        );
    }
}

// RFC 9112 section 7: transfer-coding names are case-insensitive. RFC 9110 section
// 5.6.1: a list may have empty elements and whitespace around them. RFC 9112 section
// 6.3: a request whose final transfer coding is not chunked gets 400. A form that one
// parser reads as chunked and another does not is the raw material of request
// smuggling. So every form ringway does not read as exactly chunked gets 400 before
// anything is forwarded. Every form it accepts goes upstream as ringway's own
// `Transfer-Encoding: chunked`.
#[test]
fn te_value_forms() {
    let body = "5\r\nhello\r\n0\r\n\r\n";
    let accepted = [
        "Transfer-Encoding: Chunked\r\n",
        "TRANSFER-ENCODING: CHUNKED\r\n",
        "Transfer-Encoding:chunked\r\n",
        "Transfer-Encoding: \t chunked \t\r\n",
        "Transfer-Encoding: , chunked ,\r\n",
        "Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n",
    ];
    let rejected = [
        ("Transfer-Encoding: chunked;q=1\r\n", "chunked"),
        ("Transfer-Encoding: \"chunked\"\r\n", "chunked"),
        ("Transfer-Encoding: chunk\r\n", "chunked"),
        ("Transfer-Encoding: xchunked\r\n", "chunked"),
        ("Transfer-Encoding: chunked chunked\r\n", "chunked"),
        ("Transfer-Encoding: identity\r\n", "chunked"),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\nTransfer-Encoding: x\r\n",
            "chunked",
        ),
        ("Transfer-Encoding: \r\n", "Transfer-Encoding"),
        ("Transfer-Encoding: chunked\x0b\r\n", "header value"),
        ("Transfer-Encoding: \x0cchunked\r\n", "header value"),
        ("Transfer-Encoding : chunked\r\n", "header line"),
        ("Transfer-Encoding\t: chunked\r\n", "header line"),
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for (fields, about) in rejected {
            gateway.reject_head(&post("/te", fields, body), 400, about);
        }
        for fields in accepted {
            let request = post("/te", fields, body);
            let context = gateway.context(&request);
            let upload = &gateway.forward(&request, &["/after"], &context)[0].request;
            assert_eq!(
                upload.headers_named("Transfer-Encoding"),
                vec!["chunked"],
                "{context}: Transfer-Encoding at the origin"
            );
            assert_eq!(
                upload.headers_named("Content-Length"),
                Vec::<&str>::new(),
                "{context}: Content-Length at the origin"
            );
            assert!(upload.complete, "{context}: body incomplete at the origin");
            assert_eq!(upload.body, b"hello", "{context}: body at the origin");
        }
        assert_eq!(
            gateway.origin.connections(),
            1,
            "{driver:?}: upstream connections"
        );
    }
}

// RFC 9112 section 5.2: a server rejects obsolete line folding in a request with 400,
// or replaces it with spaces. ringway rejects it. A folded line that continues a
// framing header (or looks like one) must never change how the body is framed, so
// nothing is forwarded.
#[test]
fn folded_framing_400() {
    let requests = [
        post("/fold", "Content-Length: 5\r\n 0\r\n", "hello"),
        post("/fold", "Content-Length: 5\r\n\t0\r\n", "hello"),
        post("/fold", "Content-Length:\r\n 5\r\n", "hello"),
        post(
            "/fold",
            "Transfer-Encoding:\r\n chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "/fold",
            "Transfer-Encoding: identity\r\n ,chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        post(
            "/fold",
            "Content-Length: 5\r\nX-Pad: x\r\n Transfer-Encoding: chunked\r\n",
            "hello",
        ),
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for request in &requests {
            gateway.reject_head(request, 400, "obs-fold");
        }
    }
}

// RFC 9110 section 7.6.1: fields named in Connection are hop-by-hop, but Content-Length
// and Transfer-Encoding frame the message on this hop, so naming them changes nothing.
// ringway frames the body by them and forwards its own framing header, and the next
// pipelined message starts right after the body. The same holds for responses.
#[test]
fn nominated_framing_kept() {
    for driver in DRIVERS {
        let gateway = Gateway::start_with(driver, None, |request| {
            let reply: &[u8] = match request.target.as_str() {
                "/response-length" => {
                    b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok"
                }
                "/response-chunked" => {
                    b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\n\
                      Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                }
                _ => return reply_with_target(request),
            };
            Reply::keep_open(reply)
        });

        let cases = [
            (
                "Connection: Content-Length\r\nContent-Length: 5\r\n",
                "hello",
                ("Content-Length", "5"),
            ),
            (
                "Content-Length: 5\r\nConnection: content-length, close\r\n",
                "hello",
                ("Content-Length", "5"),
            ),
            (
                "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
                ("Transfer-Encoding", "chunked"),
            ),
        ];
        for (fields, body, (name, value)) in cases {
            let request = post("/request", fields, body);
            let context = gateway.context(&request);
            let following: &[&str] = if fields.contains("close") {
                &[]
            } else {
                &["/after"]
            };
            let seen = gateway.forward(&request, following, &context);
            let upload = &seen[0].request;
            assert_eq!(
                upload.headers_named(name),
                vec![value],
                "{context}: {name} at the origin"
            );
            assert_eq!(upload.body, b"hello", "{context}: body at the origin");
            assert_eq!(
                upload.header("Connection"),
                None,
                "{context}: Connection at the origin"
            );
        }

        let context = format!("{driver:?} framing fields named in a response's Connection");
        let mut stream = connect(gateway.proxy.addr);
        send(&mut stream, get("/response-length").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(
            response.header("Content-Length"),
            Some("2"),
            "{context}: Content-Length"
        );
        assert_eq!(response.body, b"ok", "{context}: body framed by length");
        send(&mut stream, get("/response-chunked").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no chunked response: {error}"));
        assert!(response.chunked, "{context}: chunked response not chunked");
        assert!(response.complete, "{context}: chunked body incomplete");
        assert_eq!(response.body, b"ok", "{context}: chunked body");
        send(&mut stream, get("/next").as_bytes());
        let next = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response to the next GET: {error}"));
        assert_eq!(next.body, b"/next", "{context}: body of the next GET");
        let seen: Vec<Seen> = (0..3).map(|_| gateway.origin.next_request()).collect();
        let targets: Vec<&str> = seen
            .iter()
            .map(|seen| seen.request.target.as_str())
            .collect();
        assert_eq!(
            targets,
            ["/response-length", "/response-chunked", "/next"],
            "{context}: requests at the origin"
        );
        assert!(
            seen.iter()
                .all(|later| later.connection == seen[0].connection),
            "{context}: a response did not leave its upstream connection reusable: {:?}",
            seen.iter().map(|seen| seen.connection).collect::<Vec<_>>()
        );
    }
}

// RFC 9112 section 2.2: whitespace between the start-line and the first field line is a
// smuggling vector, because a recipient that keeps the line would see a field the others
// do not. A recipient must reject the message or ignore such lines, and ringway rejects
// it with 400.
#[test]
fn leading_whitespace_400() {
    let requests: [&[u8]; 4] = [
        b"GET /ws HTTP/1.1\r\n X-Injected: 1\r\nHost: gw.test\r\n\r\n",
        b"GET /ws HTTP/1.1\r\n\tX-Injected: 1\r\nHost: gw.test\r\n\r\n",
        b"GET /ws HTTP/1.1\r\n Host: other.test\r\nHost: gw.test\r\n\r\n",
        b"POST /ws HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: gw.test\r\n\
          Content-Length: 5\r\n\r\nhello",
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for request in requests {
            gateway.reject_head(request, 400, "header");
        }
    }
}

// RFC 9110 section 5.1 and RFC 9112 section 5: a field name is a token, directly
// followed by a colon. A name with a space, a delimiter, a control or non-ASCII byte,
// an empty name, or a line without a colon makes the request invalid, 400.
#[test]
fn invalid_field_names_400() {
    let lines: [&[u8]; 10] = [
        b"X Test: 1",
        b": 1",
        b"X-T\xc3\xa9st: 1",
        b"X-Test\x00: 1",
        b"X(Test): 1",
        b"X/Test: 1",
        b"[X]: 1",
        b"X-Test\t: 1",
        b"X-Test",
        b"X-Test\x7f: 1",
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for line in lines {
            let mut request = b"GET /names HTTP/1.1\r\nHost: gw.test\r\n".to_vec();
            request.extend_from_slice(line);
            request.extend_from_slice(b"\r\n\r\n");
            gateway.reject_head(&request, 400, "header");
        }
    }
}

// RFC 9110 section 5.5: a recipient of CR, LF or NUL in a field value must reject the
// message or replace each of them with SP before it processes or forwards the message.
// ringway rejects it with 400.
#[test]
fn cr_nul_in_values_400() {
    let lines: [&[u8]; 6] = [
        b"X-Test: a\rb",
        b"X-Test: a\x00b",
        b"X-Test: \x00",
        b"X-Test: value\r",
        b"Host2: a\rContent-Length: 5",
        b"User-Agent: a\x00\r\nContent-Length: 5",
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for line in lines {
            let mut request = b"GET /values HTTP/1.1\r\nHost: gw.test\r\n".to_vec();
            request.extend_from_slice(line);
            request.extend_from_slice(b"\r\n\r\nhello");
            gateway.reject_head(&request, 400, "header value");
        }
    }
}

// RFC 9112 section 3: the request line is the method, the target and the version
// separated by single spaces, and section 3.2 allows no whitespace in the target. A
// recipient of an invalid request line should respond with 400 and must not guess at
// the target, so nothing is forwarded. An encoded space is valid and goes on as it is.
#[test]
fn spaces_in_target_400() {
    let request_lines: [&[u8]; 7] = [
        b"GET /a b HTTP/1.1",
        b"GET /a\tb HTTP/1.1",
        b"GET  /a HTTP/1.1",
        b"GET /a  HTTP/1.1",
        b"GET /a HTTP/1.1 HTTP/1.1",
        b"GET /a\x0bb HTTP/1.1",
        b"GET /a\x00b HTTP/1.1",
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for request_line in request_lines {
            let mut request = request_line.to_vec();
            request.extend_from_slice(b"\r\nHost: gw.test\r\n\r\n");
            gateway.reject_head(&request, 400, "request");
        }

        let context = format!("{driver:?} encoded space");
        let response = gateway.exchange(get("/a%20b").as_bytes(), false, &context);
        assert_eq!(response.body, b"/a%20b", "{context}: body");
        assert_eq!(
            gateway.origin.next_request().request.target,
            "/a%20b",
            "{context}: target at the origin"
        );
    }
}

// RFC 9110 section 7.6.1: a proxy removes Connection and every field it names before
// forwarding, on requests and responses alike. That covers names in any case, on any
// number of Connection lines and with whitespace around them, and every line of a named
// field.
#[test]
fn connection_named_removed() {
    let removed_from_request = ["Connection", "X-A", "X-B", "X-C", "Cookie", "Keep-Alive"];
    let removed_from_response = ["Connection", "X-A", "X-B", "X-C", "Set-Cookie"];
    for driver in DRIVERS {
        let gateway = Gateway::start_with(driver, None, |request| {
            if request.target != "/named" {
                return reply_with_target(request);
            }
            Reply::keep_open(
                b"HTTP/1.1 200 OK\r\nConnection: X-A, x-b\r\nX-A: 1\r\nX-B: 2\r\n\
                  Connection: \tX-C , Set-Cookie\r\nX-C: 3\r\nSet-Cookie: s=1\r\nX-D: 4\r\n\
                  x-a: 5\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec(),
            )
        });
        let context = format!("{driver:?} fields named in Connection");
        let mut stream = connect(gateway.proxy.addr);
        send(
            &mut stream,
            b"GET /named HTTP/1.1\r\nHost: gw.test\r\nConnection: X-A, x-b\r\nX-A: 1\r\n\
              X-B: 2\r\nX-D: 4\r\nConnection: X-C ,Cookie,\tkeep-alive\r\nX-C: 3\r\n\
              Cookie: c=1\r\nx-a: 5\r\nKeep-Alive: timeout=5\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        assert_eq!(response.body, b"ok", "{context}: body");
        assert_eq!(
            present(&response.headers, &removed_from_response),
            Vec::<&str>::new(),
            "{context}: fields at the client"
        );
        assert_eq!(
            response.headers_named("X-D"),
            vec!["4"],
            "{context}: X-D at the client"
        );

        let seen = gateway.origin.next_request();
        assert_eq!(
            present(&seen.request.headers, &removed_from_request),
            Vec::<&str>::new(),
            "{context}: fields at the origin"
        );
        assert_eq!(
            seen.request.headers_named("X-D"),
            vec!["4"],
            "{context}: X-D at the origin"
        );
        assert_eq!(
            seen.request.headers_named("Host"),
            vec!["gw.test"],
            "{context}: Host at the origin"
        );

        // Naming fields keeps both connections persistent.
        send(&mut stream, get("/next").as_bytes());
        let next = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response to the next GET: {error}"));
        assert_eq!(next.body, b"/next", "{context}: body of the next GET");
        assert_eq!(
            gateway.origin.next_request().connection,
            seen.connection,
            "{context}: upstream connection of the next GET"
        );
    }
}

// RFC 9113 section 3.1 deprecates the h2c upgrade and HTTP2-Settings, and RFC 9110
// section 7.8 makes Upgrade hop-by-hop. ringway never offers h2c upstream, so Upgrade and
// HTTP2-Settings never reach the origin, whether or not Connection names them, and the
// client gets the origin's HTTP/1.1 response, not 101.
#[test]
fn h2c_upgrade_removed() {
    let settings = "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    let requests = [
        format!(
            "GET /h2c HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\n{settings}\r\n"
        ),
        format!("GET /h2c HTTP/1.1\r\nHost: gw.test\r\nUpgrade: h2c\r\n{settings}\r\n"),
        format!("GET /h2c HTTP/1.1\r\nHost: gw.test\r\n{settings}\r\n"),
        format!(
            "POST /h2c HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\
             Connection: HTTP2-Settings, Upgrade\r\nUpgrade: h2c\r\n{settings}\r\nhello"
        ),
    ];
    for driver in DRIVERS {
        let gateway = Gateway::start(driver);
        let mut stream = connect(gateway.proxy.addr);
        for request in &requests {
            let context = format!("{driver:?} {}", shown(request.as_bytes()));
            send(&mut stream, request.as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: status");
            assert_eq!(response.body, b"/h2c", "{context}: body");
            assert_eq!(
                present(&response.headers, &["Upgrade", "Connection"]),
                Vec::<&str>::new(),
                "{context}: upgrade fields at the client"
            );
            let seen = gateway.origin.next_request().request;
            assert_eq!(
                present(&seen.headers, &["Upgrade", "HTTP2-Settings", "Connection"]),
                Vec::<&str>::new(),
                "{context}: upgrade fields at the origin"
            );
            assert!(seen.complete, "{context}: body incomplete at the origin");
        }
    }
}

// RFC 9110 section 7.6.3: a proxy adds its own entry to Via in every message it
// forwards, responses and interim responses included, after the entries it received.
// The received-protocol of the entry is the protocol of the message as ringway received
// it, so a response from an HTTP/1.0 origin gets "1.0 ringway" whatever the client's
// version.
#[test]
fn via_on_responses() {
    for driver in DRIVERS {
        let gateway = Gateway::start_with(driver, None, |request| {
            let reply: &[u8] = match request.target.as_str() {
                "/via" => {
                    b"HTTP/1.1 200 OK\r\nVia: 1.1 cache-a\r\nVia: 1.0 cache-b, 1.1 cache-c\r\n\
                      Content-Length: 2\r\n\r\nok"
                }
                "/old-origin" => b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                "/hints" => {
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
                      HTTP/1.1 200 OK\r\nVia: 1.1 cache-a\r\nContent-Length: 2\r\n\r\nok"
                }
                _ => return reply_with_target(request),
            };
            Reply::keep_open(reply)
        });
        let appended = ["1.1 cache-a", "1.0 cache-b", "1.1 cache-c", "1.1 ringway"];
        let cases: [(&str, u8, &[&str]); 4] = [
            ("/via", 1, &appended),
            ("/via", 0, &appended),
            ("/plain", 1, &["1.1 ringway"]),
            ("/old-origin", 1, &["1.0 ringway"]),
        ];
        for (target, client_minor, expected) in cases {
            let context = format!("{driver:?} GET {target} from HTTP/1.{client_minor}");
            let request = format!("GET {target} HTTP/1.{client_minor}\r\nHost: gw.test\r\n\r\n");
            let response = gateway.exchange(request.as_bytes(), false, &context);
            assert_eq!(response.status, 200, "{context}: status");
            assert_eq!(via_entries(&response), expected, "{context}: Via");
        }

        let context = format!("{driver:?} interim response");
        let mut stream = connect(gateway.proxy.addr);
        send(&mut stream, get("/hints").as_bytes());
        let interim = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no interim response: {error}"));
        assert_eq!(interim.status, 103, "{context}: interim status");
        assert_eq!(
            via_entries(&interim),
            ["1.1 ringway"],
            "{context}: Via of the 103"
        );
        let fin = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no final response: {error}"));
        assert_eq!(fin.status, 200, "{context}: final status");
        assert_eq!(
            via_entries(&fin),
            ["1.1 cache-a", "1.1 ringway"],
            "{context}: Via of the 200"
        );
    }
}

// RFC 9110 section 6.6.1: an origin server with a clock sends Date in 2xx, 3xx and 4xx
// responses, and a recipient with a clock that forwards a response without Date must
// add one. So every final response ringway sends carries exactly one Date: the origin's
// own when it sent one, ringway's current time otherwise, and on ringway's own errors.
// A Date named in Connection is hop-by-hop, so ringway replaces it.
#[test]
fn date_on_every_response() {
    assert_eq!(
        parse_imf_fixdate(ORIGIN_DATE),
        Some(ORIGIN_DATE_UNIX),
        "the test's IMF-fixdate parser"
    );
    for driver in DRIVERS {
        let gateway = Gateway::start_with(driver, None, |request| {
            let dated =
                format!("HTTP/1.1 200 OK\r\nDate: {ORIGIN_DATE}\r\nContent-Length: 2\r\n\r\nok");
            let nominated = format!(
                "HTTP/1.1 200 OK\r\nConnection: Date\r\nDate: {ORIGIN_DATE}\r\n\
                 Content-Length: 2\r\n\r\nok"
            );
            let reply = match request.target.as_str() {
                "/dated" => dated.into_bytes(),
                "/nominated" => nominated.into_bytes(),
                "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                "/not-modified" => b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n".to_vec(),
                "/chunked" => {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                        .to_vec()
                }
                "/unavailable" => {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()
                }
                "/invalid" => b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nok".to_vec(),
                "/close" => return Reply::then_close(b"HTTP/1.1 200 OK\r\n\r\nok".to_vec()),
                _ if request.method == "HEAD" => {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n".to_vec()
                }
                _ => ok_with_body(b"ok"),
            };
            Reply::keep_open(reply)
        });

        let context = format!("{driver:?} origin's Date");
        let response = gateway.exchange(get("/dated").as_bytes(), false, &context);
        assert_eq!(
            response.headers_named("Date"),
            vec![ORIGIN_DATE],
            "{context}: Date"
        );

        let mut stream = connect(gateway.proxy.addr);
        for (method, target, status) in [
            ("GET", "/plain", 200),
            ("HEAD", "/plain", 200),
            ("GET", "/nominated", 200),
            ("GET", "/no-content", 204),
            ("GET", "/not-modified", 304),
            ("GET", "/chunked", 200),
            ("GET", "/unavailable", 503),
            ("GET", "/close", 200),
        ] {
            let context = format!("{driver:?} {method} {target}");
            let request = format!("{method} {target} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
            send(&mut stream, request.as_bytes());
            let response = read_response(&mut stream, method == "HEAD")
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, status, "{context}: status");
            assert_date_now(&response, &context);
        }

        let context = format!("{driver:?} ringway's 502");
        let mut stream = connect(gateway.proxy.addr);
        send(&mut stream, get("/invalid").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_error_response(&response, 502, "Content-Length", &context);
        assert_date_now(&response, &context);

        let context = format!("{driver:?} ringway's 400");
        let response = gateway.exchange(b"GET / HTTP/1.1\r\n\r\n", false, &context);
        assert_error_response(&response, 400, "Host", &context);
        assert_date_now(&response, &context);
    }
}

/// One response in `bytes_after_body`, which the origin follows with `FORGED_RESPONSE`.
struct ExtraBytesCase {
    method: &'static str,
    target: &'static str,
    /// The framed response, as the origin sends it.
    reply: Vec<u8>,
    status: u16,
    /// The body the client must receive.
    body: Vec<u8>,
    /// The origin sends `FORGED_RESPONSE` `LATE_BYTES_DELAY` after the response, while
    /// the connection is idle, instead of in the same write.
    late: bool,
}

/// Returns the cases of `bytes_after_body`: each framing, and extra bytes sent with the
/// response or after it.
fn extra_bytes_cases() -> Vec<ExtraBytesCase> {
    let large_body = pattern_bytes(0, LARGE_BODY_BYTES);
    let mut large_reply =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE_BODY_BYTES}\r\n\r\n").into_bytes();
    large_reply.extend_from_slice(&large_body);
    let length_reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
    let case = |method, target, reply: &[u8], status, body: &[u8], late| ExtraBytesCase {
        method,
        target,
        reply: reply.to_vec(),
        status,
        body: body.to_vec(),
        late,
    };
    vec![
        case("GET", "/length", &length_reply, 200, b"ok", false),
        case("GET", "/large", &large_reply, 200, &large_body, false),
        case(
            "GET",
            "/chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            200,
            b"ok",
            false,
        ),
        case(
            "GET",
            "/no-content",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            204,
            b"",
            false,
        ),
        case(
            "HEAD",
            "/head",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            200,
            b"",
            false,
        ),
        case("GET", "/late", &length_reply, 200, b"ok", true),
        case("GET", "/large-late", &large_reply, 200, &large_body, true),
    ]
}

// RFC 9112 section 6.3: a response ends where its framing declares, and a client must not
// process, cache or forward data after it as a separate response, because that opens
// the way to cache poisoning. So the client gets exactly the framed response, and the
// next request goes on a new upstream connection, whether the extra bytes came with the
// response or later, while the connection was idle in ringway's pool. The extra bytes
// here are a complete response, which a proxy that reused the connection would relay
// as the response to the next request. Both relay modes are checked, because splice(2)
// leaves the bytes after a Content-Length body in the socket instead of a buffer.
#[test]
fn bytes_after_body() {
    for driver in DRIVERS {
        for relay in RELAY_MODES {
            let cases = Arc::new(extra_bytes_cases());
            let (seen_tx, seen) = mpsc::channel::<(usize, String)>();
            let seen_tx = Mutex::new(seen_tx);
            let (late_tx, late) = mpsc::channel::<()>();
            let late_tx = Mutex::new(late_tx);
            let origin_cases = Arc::clone(&cases);
            let origin = RawOrigin::start(move |mut stream, connection| {
                while let Ok(request) = read_request(&mut stream) {
                    if let Ok(seen_tx) = seen_tx.lock() {
                        let _ = seen_tx.send((connection, request.target.clone()));
                    }
                    let case = origin_cases
                        .iter()
                        .find(|case| case.target == request.target);
                    let written = match case {
                        None => stream.write_all(&ok_with_body(request.target.as_bytes())),
                        Some(case) if case.late => {
                            let written = stream.write_all(&case.reply);
                            thread::sleep(LATE_BYTES_DELAY);
                            let late_written = stream.write_all(FORGED_RESPONSE);
                            if let Ok(late_tx) = late_tx.lock() {
                                let _ = late_tx.send(());
                            }
                            written.and(late_written)
                        }
                        Some(case) => stream.write_all(&[&case.reply, FORGED_RESPONSE].concat()),
                    };
                    if written.is_err() {
                        return;
                    }
                }
            });
            let mut config = config_for(origin.addr, driver);
            config["relay"] = json!(relay);
            let proxy = Ringway::start(&config);
            let mut stream = connect(proxy.addr);
            for case in cases.iter() {
                let context = format!(
                    "{driver:?} relay {relay} {} {} with bytes after the response",
                    case.method, case.target
                );
                let request = format!(
                    "{} {} HTTP/1.1\r\nHost: gw.test\r\n\r\n",
                    case.method, case.target
                );
                send(&mut stream, request.as_bytes());
                let response = read_response(&mut stream, case.method == "HEAD")
                    .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
                assert_eq!(response.status, case.status, "{context}: status");
                assert!(response.complete, "{context}: body incomplete");
                assert!(
                    response.body == case.body,
                    "{context}: body of {} bytes differs from the {} bytes sent",
                    response.body.len(),
                    case.body.len()
                );
                if case.late {
                    late.recv_timeout(TIMEOUT)
                        .unwrap_or_else(|_| panic!("{context}: the origin sent no late bytes"));
                    thread::sleep(LOOPBACK_SETTLE);
                }

                send(&mut stream, get("/next").as_bytes());
                let next = read_response(&mut stream, false).unwrap_or_else(|error| {
                    panic!("{context}: no response to the next GET: {error}")
                });
                assert_eq!(next.status, 200, "{context}: status of the next GET");
                assert_eq!(next.body, b"/next", "{context}: body of the next GET");

                let (case_connection, case_target) = seen
                    .recv_timeout(TIMEOUT)
                    .unwrap_or_else(|_| panic!("{context}: the origin got no request"));
                assert_eq!(case_target, case.target, "{context}: request at the origin");
                let (next_connection, next_target) = seen
                    .recv_timeout(TIMEOUT)
                    .unwrap_or_else(|_| panic!("{context}: the origin got no next GET"));
                assert_eq!(
                    next_target, "/next",
                    "{context}: next request at the origin"
                );
                assert_ne!(
                    next_connection, case_connection,
                    "{context}: the upstream connection with extra bytes was reused"
                );
            }
        }
    }
}

// RFC 9110 section 15.2: a client must parse any number of 1xx responses before the
// final one, and a proxy must forward them unless it asked for them itself, but not to
// an HTTP/1.0 client, which cannot parse them. A 1xx response never has a body (RFC 9112
// section 6.3), so framing fields in one change nothing, and none is ever taken as the
// final response.
#[test]
fn interim_responses() {
    for driver in DRIVERS {
        let gateway = Gateway::start_with(driver, None, |request| {
            let reply: &[u8] = match request.target.as_str() {
                "/hints" => {
                    b"HTTP/1.1 102 Processing\r\n\r\n\
                      HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
                      HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n\
                      HTTP/1.1 199 Unassigned\r\nX-Interim: 1\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                }
                "/framed-hints" => {
                    b"HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\
                      Link: </c.css>; rel=preload\r\n\r\n\
                      HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                }
                "/continue" => {
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                }
                _ => return reply_with_target(request),
            };
            Reply::keep_open(reply)
        });
        let cases: [(&str, &[(u16, Option<&str>)]); 3] = [
            (
                "/hints",
                &[
                    (102, None),
                    (103, Some("</a.css>; rel=preload")),
                    (103, Some("</b.js>; rel=preload")),
                    (199, None),
                ],
            ),
            (
                "/framed-hints",
                &[(103, Some("</c.css>; rel=preload")), (103, None)],
            ),
            ("/continue", &[(100, None)]),
        ];
        let mut stream = connect(gateway.proxy.addr);
        for (target, interim) in cases {
            let context = format!("{driver:?} HTTP/1.1 GET {target}");
            send(&mut stream, get(target).as_bytes());
            let mut received = Vec::new();
            let fin = loop {
                let response = read_response(&mut stream, false)
                    .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
                if response.status >= 200 {
                    break response;
                }
                assert_eq!(
                    present(&response.headers, &["Content-Length", "Transfer-Encoding"]),
                    Vec::<&str>::new(),
                    "{context}: framing fields in the {} response",
                    response.status
                );
                if response.status == 199 {
                    assert_eq!(
                        response.header("X-Interim"),
                        Some("1"),
                        "{context}: X-Interim of the 199 response"
                    );
                }
                received.push((response.status, response.header("Link").map(str::to_owned)));
            };
            let expected: Vec<(u16, Option<String>)> = interim
                .iter()
                .map(|(status, link)| (*status, link.map(str::to_owned)))
                .collect();
            assert_eq!(received, expected, "{context}: interim responses");
            assert_eq!(fin.status, 200, "{context}: final status");
            assert_eq!(fin.body, b"ok", "{context}: final body");
        }
        send(&mut stream, get("/next").as_bytes());
        let next = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response to the next GET: {error}"));
        assert_eq!(next.body, b"/next", "{driver:?}: body of the next GET");

        for (target, _) in cases {
            let context = format!("{driver:?} HTTP/1.0 GET {target}");
            let mut stream = connect(gateway.proxy.addr);
            let request = format!("GET {target} HTTP/1.0\r\nHost: gw.test\r\n\r\n");
            send(&mut stream, request.as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: first response");
            assert_eq!(response.body, b"ok", "{context}: body");
            assert_closed_empty(&mut stream, &context);
        }
    }
}

// RFC 9110 sections 7.8 and 15.2.2: a server sends 101 only to switch to a protocol the
// client asked for in Upgrade. An Upgrade that Connection does not name is not an offer,
// so ringway removes it and the origin never receives a request to upgrade. A 101 from
// the origin anyway gives 502. Its bytes never reach the client, and the connection that
// switched protocols is never reused. Honoured upgrades are tested in upgrade.rs.
#[test]
fn upgrade_101_502() {
    for driver in DRIVERS {
        let mut gateway = Gateway::start_with(driver, None, |request| {
            if request.target != "/chat" {
                return reply_with_target(request);
            }
            Reply::keep_open(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello"
                    .to_vec(),
            )
        });
        let context = format!("{driver:?} WebSocket upgrade");
        let mut stream = connect(gateway.proxy.addr);
        send(
            &mut stream,
            b"GET /chat HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_error_response(&response, 502, "101", &context);
        assert_date_now(&response, &context);
        assert_closed_empty(&mut stream, &context);

        let seen = gateway.origin.next_request();
        assert_eq!(
            seen.request.target, "/chat",
            "{context}: request at the origin"
        );
        assert_eq!(
            present(&seen.request.headers, &["Upgrade", "Connection"]),
            Vec::<&str>::new(),
            "{context}: upgrade fields at the origin"
        );
        let next = gateway.follow_up(&context);
        assert_ne!(
            next.connection, seen.connection,
            "{context}: the connection that sent 101 was reused"
        );
    }
}

// RFC 9112 section 9.3.2: a server may process pipelined requests in parallel but must
// respond in the order it received them. Each request's framing (Content-Length,
// chunked with extensions and trailers, none) decides exactly where the next one starts,
// so every request reaches the origin whole, in order, on one upstream connection, and
// each response goes back in the same order.
#[test]
fn pipelined_bodies_in_order() {
    let requests: [(&str, &str, &str, &[u8]); 8] = [
        ("POST", "/1", "Content-Length: 5\r\n\r\nhello", b"hello"),
        (
            "POST",
            "/2",
            "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"abc",
        ),
        ("GET", "/3", "\r\n", b""),
        ("POST", "/4", "Content-Length: 0\r\n\r\n", b""),
        (
            "PUT",
            "/5",
            "Transfer-Encoding: chunked\r\n\r\n2;x=y\r\nhi\r\n1\r\n!\r\n0\r\nX-Sum: 1\r\n\r\n",
            b"hi!",
        ),
        ("HEAD", "/6", "\r\n", b""),
        ("DELETE", "/7", "Content-Length: 3\r\n\r\nxyz", b"xyz"),
        ("GET", "/8", "\r\n", b""),
    ];
    for driver in DRIVERS {
        let gateway = Gateway::start(driver);
        let mut stream = connect(gateway.proxy.addr);
        let pipelined: Vec<u8> = requests
            .iter()
            .flat_map(|(method, target, rest, _)| {
                format!("{method} {target} HTTP/1.1\r\nHost: gw.test\r\n{rest}").into_bytes()
            })
            .collect();
        send(&mut stream, &pipelined);
        for (method, target, _, _) in requests {
            let context = format!("{driver:?} pipelined {method} {target}");
            let response = read_response(&mut stream, method == "HEAD")
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: status");
            let expected_body = if method == "HEAD" { "" } else { target };
            assert_eq!(
                response.body_text(),
                expected_body,
                "{context}: response order"
            );
        }
        for (method, target, _, body) in requests {
            let context = format!("{driver:?} pipelined {method} {target}");
            let seen = gateway.origin.next_request();
            assert_eq!(
                (seen.request.method.as_str(), seen.request.target.as_str()),
                (method, target),
                "{context}: order at the origin"
            );
            assert!(
                seen.request.complete,
                "{context}: body incomplete at the origin"
            );
            assert_eq!(seen.request.body, body, "{context}: body at the origin");
            assert_eq!(seen.connection, 0, "{context}: upstream connection");
        }
    }
}

// RFC 9112 section 9.6: a server that receives "close" closes the connection after the
// final response to that request and must not process any later request on it. The
// same holds for an HTTP/1.0 request without keep-alive (section 9.3). Requests
// pipelined behind it never reach the origin.
#[test]
fn close_ends_pipeline() {
    let first_requests: [&[u8]; 2] = [
        b"GET /first HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
        b"GET /first HTTP/1.0\r\nHost: gw.test\r\n\r\n",
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start(driver);
        for first in first_requests {
            let context = gateway.context(first);
            let mut stream = connect(gateway.proxy.addr);
            let mut pipelined = first.to_vec();
            pipelined.extend_from_slice(get("/second").as_bytes());
            pipelined.extend_from_slice(&post("/third", "Content-Length: 5\r\n", "hello"));
            send(&mut stream, &pipelined);
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: status");
            assert_eq!(response.body, b"/first", "{context}: body");
            assert_eq!(
                response.header("Connection"),
                Some("close"),
                "{context}: Connection"
            );
            assert_closed_empty(&mut stream, &context);
            assert_eq!(
                gateway.origin.next_request().request.target,
                "/first",
                "{context}: request at the origin"
            );
            gateway.follow_up(&context);
        }
    }
}

// RFC 9112 section 5.2: a proxy that receives obs-fold in a response must either
// replace it with spaces or discard the response and send 502. Section 5.1: a proxy must
// remove whitespace between a field name and the colon before it forwards a response.
// RFC 9110 section 5.5: CR and NUL are invalid in a value. ringway sends 502 for all of
// them, so a folded or padded framing header never frames a body one way for ringway and
// another way for the client, and it closes that upstream connection.
#[test]
fn malformed_response_fields_502() {
    let replies: [(&str, &[u8]); 6] = [
        (
            "/fold-length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 0\r\n\r\nok",
        ),
        (
            "/fold-other",
            b"HTTP/1.1 200 OK\r\nX-Long: a\r\n\tb\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "/space-length",
            b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        ),
        (
            "/space-te",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "/cr-value",
            b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "/nul-value",
            b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
        ),
    ];
    for driver in DRIVERS {
        let mut gateway = Gateway::start_with(driver, None, move |request| {
            match replies.iter().find(|(target, _)| *target == request.target) {
                Some((_, reply)) => Reply::keep_open(reply.to_vec()),
                None => reply_with_target(request),
            }
        });
        for (target, reply) in replies {
            let context = format!("{driver:?} upstream reply {}", shown(reply));
            let mut stream = connect(gateway.proxy.addr);
            send(&mut stream, get(target).as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_error_response(&response, 502, "response head", &context);
            assert_date_now(&response, &context);
            assert_closed_empty(&mut stream, &context);
            let seen = gateway.origin.next_request();
            assert_eq!(
                seen.request.target, target,
                "{context}: request at the origin"
            );
            let next = gateway.follow_up(&context);
            assert_ne!(
                next.connection, seen.connection,
                "{context}: the upstream connection was reused"
            );
        }
    }
}
