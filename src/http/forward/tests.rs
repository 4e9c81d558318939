//! Tests for the heads ringway writes. Every case compares exact bytes, and the Date that
//! ringway adds is checked against the clock and then cut out so the rest can be compared too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::http::date::{DATE_LEN, format_imf_fixdate};
use crate::http::head::{HeadLimits, parse_request, parse_response};

/// Limits large enough for every case here.
const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8 * 1024,
    max_header_count: 64,
};

/// Room for every forwarded head in these tests.
const OUT_LIMIT_BYTES: usize = 16 * 1024;

const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

const UPSTREAM_AUTHORITY: &str = "backend.internal:8080";

/// A Date value that ringway must forward unchanged.
const UPSTREAM_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

fn request(raw: &[u8]) -> RequestHead {
    let mut head = RequestHead::default();
    match parse_request(raw, LIMITS, &mut head) {
        Ok(true) => head,
        other => panic!(
            "request {:?} did not parse: {other:?}",
            String::from_utf8_lossy(raw)
        ),
    }
}

fn response(raw: &[u8], request_was_head: bool) -> ResponseHead {
    let mut head = ResponseHead::default();
    match parse_response(raw, LIMITS, request_was_head, &mut head) {
        Ok(true) => head,
        other => panic!(
            "response {:?} did not parse: {other:?}",
            String::from_utf8_lossy(raw)
        ),
    }
}

/// Returns the head ringway forwards for `raw` from a client at `client_ip`.
fn forward_from(raw: &[u8], client_ip: IpAddr) -> String {
    let head = request(raw);
    let context = RequestContext {
        client_ip: &ClientIp::new(client_ip),
        upstream_authority: UPSTREAM_AUTHORITY,
        target: None,
        rules: None,
        request_id: None,
    };
    let mut out = Vec::new();
    write_request_head(&mut out, OUT_LIMIT_BYTES, raw, &head, &context)
        .expect("forwarded head over the limit");
    String::from_utf8(out).expect("forwarded head is not UTF-8")
}

fn forward(raw: &[u8]) -> String {
    forward_from(raw, CLIENT_IP)
}

/// Returns the head ringway sends the client for the upstream response `raw`.
fn respond(
    raw: &[u8],
    request_was_head: bool,
    framing: ClientFraming,
    close: bool,
    client_minor_version: u8,
) -> String {
    let head = response(raw, request_was_head);
    let mut out = Vec::new();
    write_response_head(&mut out, raw, &head, framing, close, client_minor_version, &ResponseExtras::default());
    String::from_utf8(out).expect("response head is not UTF-8")
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

/// Checks that `out` has exactly one Date line, written between `before` and now, and returns
/// `out` without that line.
fn without_current_date(out: &str, before: u64) -> String {
    let after = now_seconds();
    let line_start = out
        .find("\r\nDate: ")
        .unwrap_or_else(|| panic!("no Date line in {out:?}"))
        + 2;
    assert_eq!(
        out.matches("\r\nDate: ").count(),
        1,
        "more than one Date line in {out:?}"
    );
    let value_start = line_start + "Date: ".len();
    let value = &out[value_start..value_start + DATE_LEN];
    let current = (before..=after).any(|second| format_imf_fixdate(second) == value.as_bytes());
    assert!(
        current,
        "Date {value:?} is not between {before} and {after}"
    );
    assert_eq!(
        &out[value_start + DATE_LEN..value_start + DATE_LEN + 2],
        "\r\n"
    );
    format!(
        "{}{}",
        &out[..line_start],
        &out[value_start + DATE_LEN + 2..]
    )
}

/// The headers ringway adds to a request from 127.0.0.1 for host example.com.
const ADDED_FOR_EXAMPLE: &str = "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\nVia: 1.1 ringway\r\n";

#[test]
fn request_head_exact_bytes() {
    let raw =
        b"GET /a HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Custom: 1\r\nUser-Agent: t/1\r\nx-custom: 2\r\n\r\n";
    let expected = format!(
        "GET /a HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Custom: 1\r\nUser-Agent: t/1\r\nx-custom: 2\r\n{ADDED_FOR_EXAMPLE}\r\n"
    );
    assert_eq!(forward(raw), expected);
}

#[test]
fn request_lines_normalized_between_copied_runs() {
    // Lines already in ringway's form are copied in runs. The others are rewritten with one
    // space after the colon, no trailing whitespace and CRLF, and the order stays.
    let raw = b"GET /a HTTP/1.1\r\nHost: example.com\r\nA: 1\r\nB:2\r\nC: 3\r\nConnection: close\r\nD: 4\r\nE:   5  \r\nF: 6\nG: \r\n\r\n";
    let expected = format!(
        "GET /a HTTP/1.1\r\nHost: example.com\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: \r\n{ADDED_FOR_EXAMPLE}\r\n"
    );
    assert_eq!(forward(raw), expected);
}

#[test]
fn request_target_bytes_kept() {
    // RFC 9110 section 7.7: a proxy does not modify the path or query of the target, because
    // decoding %2F or normalizing the query would change which resource the upstream serves.
    let cases = [
        ("GET", "/a%2Fb?x=1&y=%20"),
        ("GET", "/"),
        ("GET", "/%7Euser/./../x?q=a+b&&"),
        ("GET", "/p;param?"),
        ("DELETE", "/items/%E2%82%AC"),
        ("OPTIONS", "*"),
        ("GET", "http://example.com/x%2F?y"),
    ];
    for (method, target) in cases {
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: example.com\r\n\r\n");
        let out = forward(raw.as_bytes());
        let expected_line = format!("{method} {target} HTTP/1.1\r\n");
        assert!(
            out.starts_with(&expected_line),
            "{target}: forwarded as {out:?}"
        );
    }
}

#[test]
fn request_hop_by_hop_removed() {
    // RFC 9110 section 7.6.1: connection-specific fields are not forwarded. Content-Length and
    // Transfer-Encoding are left out of this table because ringway writes its own.
    let lines = [
        "Connection: close",
        "connection: keep-alive",
        "Keep-Alive: timeout=5, max=100",
        "Proxy-Connection: keep-alive",
        "TE: trailers",
        "te: gzip",
        "Trailer: X-Checksum",
        "Upgrade: websocket",
        "UPGRADE: h2c",
        "HTTP2-Settings: AAMAAABkAAQAAP__",
    ];
    let expected =
        format!("GET /a HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n{ADDED_FOR_EXAMPLE}\r\n");
    for line in lines {
        let raw = format!("GET /a HTTP/1.1\r\nHost: example.com\r\n{line}\r\nAccept: */*\r\n\r\n");
        assert_eq!(forward(raw.as_bytes()), expected, "{line}");
    }
    let all = format!(
        "GET /a HTTP/1.1\r\n{}\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        lines.join("\r\n")
    );
    assert_eq!(forward(all.as_bytes()), expected, "all together");
}

#[test]
fn request_connection_named_removed() {
    // RFC 9110 section 7.6.1: a field named in Connection is hop-by-hop, whatever its case.
    let raw = b"GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: X-Secret, x-other\r\nX-SECRET: s\r\nX-Kept: k\r\nConnection: X-Third\r\nX-Other: o\r\nx-third: t\r\n\r\n";
    let expected =
        format!("GET /a HTTP/1.1\r\nHost: example.com\r\nX-Kept: k\r\n{ADDED_FOR_EXAMPLE}\r\n");
    assert_eq!(forward(raw), expected);
}

#[test]
fn request_host_named_in_connection_kept() {
    // RFC 9112 section 3.2: every HTTP/1.1 request carries exactly one Host, so Connection
    // cannot remove it.
    let raw = b"GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: Host\r\n\r\n";
    let expected = format!("GET /a HTTP/1.1\r\nHost: example.com\r\n{ADDED_FOR_EXAMPLE}\r\n");
    assert_eq!(forward(raw), expected);
}

#[test]
fn request_forwarded_for_appended() {
    let base = "GET / HTTP/1.1\r\nHost: example.com\r\n";
    let rest =
        "X-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\nVia: 1.1 ringway\r\n\r\n";
    let cases: &[(&str, &str, IpAddr, &str)] = &[
        ("added", "", CLIENT_IP, "X-Forwarded-For: 127.0.0.1\r\n"),
        (
            "single value",
            "X-Forwarded-For: 203.0.113.7\r\n",
            CLIENT_IP,
            "X-Forwarded-For: 203.0.113.7, 127.0.0.1\r\n",
        ),
        (
            "lines combined in order",
            "X-Forwarded-For: 203.0.113.7, 198.51.100.2\r\nAccept: */*\r\nx-forwarded-for: 192.0.2.9\r\n",
            CLIENT_IP,
            "Accept: */*\r\nX-Forwarded-For: 203.0.113.7, 198.51.100.2, 192.0.2.9, 127.0.0.1\r\n",
        ),
        (
            "empty value",
            "X-Forwarded-For: \r\n",
            CLIENT_IP,
            "X-Forwarded-For: 127.0.0.1\r\n",
        ),
        (
            "ipv6 loopback",
            "",
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "X-Forwarded-For: ::1\r\n",
        ),
        (
            "ipv6 appended",
            "X-Forwarded-For: 203.0.113.7\r\n",
            "2001:db8::7".parse().unwrap(),
            "X-Forwarded-For: 203.0.113.7, 2001:db8::7\r\n",
        ),
        (
            "ipv6 full width",
            "",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                .parse()
                .unwrap(),
            "X-Forwarded-For: ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\r\n",
        ),
    ];
    for &(name, lines, client_ip, expected_lines) in cases {
        let raw = format!("{base}{lines}\r\n");
        let expected = format!("{base}{expected_lines}{rest}");
        assert_eq!(forward_from(raw.as_bytes(), client_ip), expected, "{name}");
    }
}

#[test]
fn request_forwarded_proto_host_replaced() {
    // A client may not choose the scheme or host the upstream believes it used.
    let raw = b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\nHost: example.com\r\nX-Forwarded-Host: evil.example\r\nx-forwarded-proto: https\r\n\r\n";
    let expected = format!("GET / HTTP/1.1\r\nHost: example.com\r\n{ADDED_FOR_EXAMPLE}\r\n");
    assert_eq!(forward(raw), expected);
}

#[test]
fn request_via_appended() {
    // RFC 9110 section 7.6.3: the received protocol of the client's hop, then the pseudonym.
    let cases: &[(&str, &str, &str)] = &[
        (
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "Via: 1.1 ringway\r\n",
            "X-Forwarded-Host: a\r\n",
        ),
        (
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "Via: 1.0 ringway\r\n",
            "X-Forwarded-Host: a\r\n",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nVia: 1.0 fred, 1.1 p.example (Proxy)\r\n\r\n",
            "Via: 1.0 fred, 1.1 p.example (Proxy), 1.1 ringway\r\n",
            "X-Forwarded-Host: a\r\n",
        ),
        (
            "GET / HTTP/1.0\r\nVia: 1.1 first\r\nHost: a\r\nvia: 1.1 second\r\n\r\n",
            "Via: 1.1 first, 1.1 second, 1.0 ringway\r\n",
            "X-Forwarded-Host: a\r\n",
        ),
    ];
    for &(raw, via, forwarded_host) in cases {
        let expected = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n{forwarded_host}{via}\r\n"
        );
        assert_eq!(forward(raw.as_bytes()), expected, "{raw:?}");
    }
}

#[test]
fn request_host_from_upstream_for_http10() {
    // An HTTP/1.0 client may omit Host, but the HTTP/1.1 request ringway sends needs one
    // (RFC 9112 section 3.2). No X-Forwarded-Host is sent, because the client named no host.
    let out = forward(b"GET /old HTTP/1.0\r\nAccept: */*\r\n\r\n");
    let expected = "GET /old HTTP/1.1\r\nAccept: */*\r\nHost: backend.internal:8080\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nVia: 1.0 ringway\r\n\r\n";
    assert_eq!(out, expected);
}

#[test]
fn request_absolute_form_host() {
    // RFC 9112 section 3.2.2: the target's authority replaces the received Host.
    let raw = b"GET http://example.com:8080/x HTTP/1.1\r\nHost: other.example\r\nAccept: a\r\n\r\n";
    let expected = "GET http://example.com:8080/x HTTP/1.1\r\nAccept: a\r\nHost: example.com:8080\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com:8080\r\nVia: 1.1 ringway\r\n\r\n";
    assert_eq!(forward(raw), expected);

    let raw = b"GET http://example.com/x HTTP/1.0\r\n\r\n";
    let expected = "GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\nVia: 1.0 ringway\r\n\r\n";
    assert_eq!(forward(raw), expected);
}

#[test]
fn request_exactly_one_host() {
    let raws: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nhost: example.com\r\n\r\n",
        b"GET http://example.com/ HTTP/1.1\r\nHost: other\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: host\r\nHost: example.com\r\n\r\n",
    ];
    for raw in raws {
        let out = forward(raw);
        let hosts = out
            .split("\r\n")
            .filter(|line| line.to_ascii_lowercase().starts_with("host:"))
            .count();
        assert_eq!(hosts, 1, "{out:?}");
    }
}

#[test]
fn request_framing_written() {
    // RFC 9112 section 6: ringway frames the body it forwards itself, whatever form the
    // client's framing headers had.
    let cases: &[(&str, &str)] = &[
        ("Content-Length: 5\r\n", "Content-Length: 5\r\n"),
        ("Content-Length: 0\r\n", "Content-Length: 0\r\n"),
        ("Content-Length: 007\r\n", "Content-Length: 7\r\n"),
        (
            "Content-Length: 5, 5\r\nContent-Length: 5\r\n",
            "Content-Length: 5\r\n",
        ),
        (
            "Content-Length: 18446744073709551615\r\n",
            "Content-Length: 18446744073709551615\r\n",
        ),
        (
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\n",
        ),
        (
            "Transfer-Encoding: Chunked ,\r\n",
            "Transfer-Encoding: chunked\r\n",
        ),
        ("", ""),
    ];
    for &(lines, framing) in cases {
        let raw = format!("POST /up HTTP/1.1\r\n{lines}Host: example.com\r\n\r\n");
        let expected =
            format!("POST /up HTTP/1.1\r\nHost: example.com\r\n{ADDED_FOR_EXAMPLE}{framing}\r\n");
        assert_eq!(forward(raw.as_bytes()), expected, "{lines:?}");
    }
}

#[test]
fn request_output_parses_again() {
    let raws: [&[u8]; 6] = [
        b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 12\r\nConnection: X-A\r\nX-A: 1\r\n\r\n",
        b"PUT /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nVia: 1.1 a\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET http://[::1]:8080/v6 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
    ];
    for raw in raws {
        let original = request(raw);
        let out = forward(raw);
        let out = out.as_bytes();

        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        let status = parsed
            .parse(out)
            .unwrap_or_else(|err| panic!("{:?}: {err}", String::from_utf8_lossy(out)));
        assert_eq!(status, httparse::Status::Complete(out.len()));
        assert_eq!(parsed.version, Some(1));

        let again = request(out);
        assert_eq!(again.method.of(out), original.method.of(raw));
        assert_eq!(again.target.of(out), original.target.of(raw));
        assert_eq!(again.body, original.body);
        assert_eq!(
            again.authority(out),
            original
                .authority(raw)
                .or(Some(UPSTREAM_AUTHORITY.as_bytes()))
        );
        assert!(again.connection_tokens.is_empty());
    }
}

#[test]
fn request_overflow_stays_within_limit() {
    let raw = b"POST /upload?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 203.0.113.7\r\nVia: 1.0 a\r\nContent-Length: 3\r\n\r\n";
    let full = forward(raw);
    let head = request(raw);
    let context = RequestContext {
        client_ip: &ClientIp::new(CLIENT_IP),
        upstream_authority: UPSTREAM_AUTHORITY,
        target: None,
        rules: None,
        request_id: None,
    };
    for limit in 0..full.len() {
        let mut out = Vec::with_capacity(limit);
        let capacity = out.capacity();
        let err = write_request_head(&mut out, limit, raw, &head, &context)
            .expect_err("head over the limit written");
        assert_eq!(err.kind, Kind::HeadTooLarge, "limit {limit}");
        assert!(
            out.len() <= limit,
            "limit {limit}: wrote {} bytes",
            out.len()
        );
        assert_eq!(
            out.capacity(),
            capacity,
            "limit {limit}: buffer reallocated"
        );
    }
    let mut out = Vec::with_capacity(full.len());
    write_request_head(&mut out, full.len(), raw, &head, &context).expect("head at the limit");
    assert_eq!(out, full.as_bytes());
}

#[test]
fn request_appends_after_existing_bytes() {
    // The limit counts the bytes already in the buffer.
    let raw = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let full = forward(raw);
    let head = request(raw);
    let context = RequestContext {
        client_ip: &ClientIp::new(CLIENT_IP),
        upstream_authority: UPSTREAM_AUTHORITY,
        target: None,
        rules: None,
        request_id: None,
    };
    let mut out = b"prefix".to_vec();
    write_request_head(&mut out, 6 + full.len(), raw, &head, &context).expect("head at the limit");
    assert_eq!(out, [b"prefix", full.as_bytes()].concat());

    let mut out = b"prefix".to_vec();
    let err = write_request_head(&mut out, 5 + full.len(), raw, &head, &context)
        .expect_err("head over the limit");
    assert_eq!(err.kind, Kind::HeadTooLarge);
    assert!(out.len() <= 5 + full.len());
}

#[test]
fn response_head_exact_bytes() {
    let raw = format!(
        "HTTP/1.1 200 OK\r\nDate: {UPSTREAM_DATE}\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: h\r\nKeep-Alive: timeout=5\r\nset-cookie: b=2; Path=/\r\nTransfer-Encoding: chunked\r\nVia: 1.0 origin\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nTrailer: X-Sum\r\nSet-Cookie: c=3\r\n\r\n"
    );
    let out = respond(raw.as_bytes(), false, ClientFraming::Chunked, false, 1);
    let expected = format!(
        "HTTP/1.1 200 OK\r\nDate: {UPSTREAM_DATE}\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nset-cookie: b=2; Path=/\r\nSet-Cookie: c=3\r\nVia: 1.0 origin, 1.1 ringway\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    assert_eq!(out, expected);
}

#[test]
fn response_framing_and_connection() {
    // Each row: upstream status line and framing lines, whether the request was HEAD, the
    // client framing and connection choice, and the lines ringway must write after Via.
    type Row = (
        &'static str,
        &'static str,
        bool,
        ClientFraming,
        bool,
        u8,
        &'static str,
    );
    let rows: &[Row] = &[
        (
            "HTTP/1.1 200 OK",
            "Content-Length: 5\r\n",
            false,
            ClientFraming::Length(5),
            false,
            1,
            "Content-Length: 5\r\n",
        ),
        (
            "HTTP/1.1 200 OK",
            "Content-Length: 0\r\n",
            false,
            ClientFraming::Length(0),
            false,
            1,
            "Content-Length: 0\r\n",
        ),
        (
            "HTTP/1.1 200 OK",
            "Content-Length: 18446744073709551615\r\n",
            false,
            ClientFraming::Length(u64::MAX),
            false,
            1,
            "Content-Length: 18446744073709551615\r\n",
        ),
        // RFC 9110 section 8.6: a response to HEAD and a 304 keep the length of the
        // representation.
        (
            "HTTP/1.1 200 OK",
            "Content-Length: 1234\r\n",
            true,
            ClientFraming::None,
            false,
            1,
            "Content-Length: 1234\r\n",
        ),
        (
            "HTTP/1.1 304 Not Modified",
            "Content-Length: 120\r\n",
            false,
            ClientFraming::None,
            false,
            1,
            "Content-Length: 120\r\n",
        ),
        (
            "HTTP/1.1 200 OK",
            "Transfer-Encoding: chunked\r\n",
            true,
            ClientFraming::None,
            false,
            1,
            "",
        ),
        // RFC 9110 section 8.6: a 204 never carries Content-Length.
        (
            "HTTP/1.1 204 No Content",
            "Content-Length: 0\r\n",
            false,
            ClientFraming::None,
            false,
            1,
            "",
        ),
        (
            "HTTP/1.1 204 No Content",
            "Content-Length: 0\r\n",
            true,
            ClientFraming::None,
            false,
            1,
            "",
        ),
        // Chunked and close-delimited bodies are re-encoded as chunked for HTTP/1.1 clients.
        (
            "HTTP/1.1 200 OK",
            "Transfer-Encoding: chunked\r\n",
            false,
            ClientFraming::Chunked,
            false,
            1,
            "Transfer-Encoding: chunked\r\n",
        ),
        (
            "HTTP/1.1 200 OK",
            "",
            false,
            ClientFraming::Chunked,
            false,
            1,
            "Transfer-Encoding: chunked\r\n",
        ),
        // An HTTP/1.0 client reads a body without a length until the connection closes.
        (
            "HTTP/1.1 200 OK",
            "Transfer-Encoding: chunked\r\n",
            false,
            ClientFraming::Close,
            true,
            0,
            "Connection: close\r\n",
        ),
        // RFC 9112 section 9.3: an HTTP/1.0 client keeps the connection only when the response
        // carries keep-alive.
        (
            "HTTP/1.1 200 OK",
            "Content-Length: 5\r\n",
            false,
            ClientFraming::Length(5),
            false,
            0,
            "Content-Length: 5\r\nConnection: keep-alive\r\n",
        ),
        (
            "HTTP/1.1 200 OK",
            "Content-Length: 5\r\n",
            false,
            ClientFraming::Length(5),
            true,
            0,
            "Content-Length: 5\r\nConnection: close\r\n",
        ),
        (
            "HTTP/1.1 200 OK",
            "Content-Length: 5\r\n",
            false,
            ClientFraming::Length(5),
            true,
            1,
            "Content-Length: 5\r\nConnection: close\r\n",
        ),
        (
            "HTTP/1.1 200 OK",
            "Transfer-Encoding: chunked\r\n",
            false,
            ClientFraming::Chunked,
            true,
            1,
            "Transfer-Encoding: chunked\r\nConnection: close\r\n",
        ),
        (
            "HTTP/1.1 200 OK",
            "Content-Length: 1234\r\n",
            true,
            ClientFraming::None,
            false,
            0,
            "Content-Length: 1234\r\nConnection: keep-alive\r\n",
        ),
    ];
    for &(status_line, lines, request_was_head, framing, close, client_minor, tail) in rows {
        let raw = format!("{status_line}\r\nDate: {UPSTREAM_DATE}\r\n{lines}\r\n");
        let out = respond(
            raw.as_bytes(),
            request_was_head,
            framing,
            close,
            client_minor,
        );
        let expected =
            format!("{status_line}\r\nDate: {UPSTREAM_DATE}\r\nVia: 1.1 ringway\r\n{tail}\r\n");
        assert_eq!(
            out, expected,
            "{status_line} {lines:?} {framing:?} close={close} client 1.{client_minor}"
        );
    }
}

#[test]
fn response_date_added_when_missing() {
    // RFC 9110 section 6.6.1: a proxy adds Date to a response that has none.
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\r\n\r\n";
    let before = now_seconds();
    let out = respond(raw, false, ClientFraming::Length(2), true, 1);
    let rest = without_current_date(&out, before);
    assert_eq!(
        rest,
        "HTTP/1.1 200 OK\r\nX-A: a\r\nVia: 1.1 ringway\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn response_date_named_in_connection_replaced() {
    // A Date that Connection names is dropped with it, so ringway adds its own.
    let raw = format!(
        "HTTP/1.1 200 OK\r\nConnection: date\r\nDate: {UPSTREAM_DATE}\r\nContent-Length: 0\r\n\r\n"
    );
    let before = now_seconds();
    let out = respond(raw.as_bytes(), false, ClientFraming::Length(0), false, 1);
    assert!(!out.contains(UPSTREAM_DATE), "{out:?}");
    let rest = without_current_date(&out, before);
    assert_eq!(
        rest,
        "HTTP/1.1 200 OK\r\nVia: 1.1 ringway\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn response_status_line_and_via() {
    // RFC 9110 section 7.6.3: Via names the protocol of the upstream's hop, and the status
    // line is always HTTP/1.1 because that is what ringway speaks to the client.
    let cases: &[(&str, &str, &str)] = &[
        (
            "HTTP/1.1 404 Not Found\r\n",
            "HTTP/1.1 404 Not Found\r\n",
            "Via: 1.1 ringway\r\n",
        ),
        (
            "HTTP/1.1 404 \r\n",
            "HTTP/1.1 404 \r\n",
            "Via: 1.1 ringway\r\n",
        ),
        (
            "HTTP/1.0 200 Fine Thanks\r\n",
            "HTTP/1.1 200 Fine Thanks\r\n",
            "Via: 1.0 ringway\r\n",
        ),
        (
            "HTTP/1.1 503 Service Unavailable\r\nVia: 1.1 a\r\nvia: 1.0 b\r\n",
            "HTTP/1.1 503 Service Unavailable\r\n",
            "Via: 1.1 a, 1.0 b, 1.1 ringway\r\n",
        ),
    ];
    for &(upstream, status_line, via) in cases {
        let raw = format!("{upstream}Date: {UPSTREAM_DATE}\r\nContent-Length: 0\r\n\r\n");
        let out = respond(raw.as_bytes(), false, ClientFraming::Length(0), false, 1);
        let expected =
            format!("{status_line}Date: {UPSTREAM_DATE}\r\n{via}Content-Length: 0\r\n\r\n");
        assert_eq!(out, expected, "{upstream:?}");
    }
}

#[test]
fn response_end_to_end_fields_kept() {
    // Host and the forwarding headers are ordinary fields in a response.
    let raw = format!(
        "HTTP/1.1 200 OK\r\nDate: {UPSTREAM_DATE}\r\nHost: origin.internal\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\nContent-Length: 0\r\n\r\n"
    );
    let out = respond(raw.as_bytes(), false, ClientFraming::Length(0), false, 1);
    let expected = format!(
        "HTTP/1.1 200 OK\r\nDate: {UPSTREAM_DATE}\r\nHost: origin.internal\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\nVia: 1.1 ringway\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(out, expected);
}

#[test]
fn response_clears_output_first() {
    let raw = format!("HTTP/1.1 200 OK\r\nDate: {UPSTREAM_DATE}\r\nContent-Length: 0\r\n\r\n");
    let head = response(raw.as_bytes(), false);
    let mut out = b"stale bytes".to_vec();
    write_response_head(
        &mut out,
        raw.as_bytes(),
        &head,
        ClientFraming::Length(0),
        false,
        1,
        &ResponseExtras::default(),
    );
    let expected = format!(
        "HTTP/1.1 200 OK\r\nDate: {UPSTREAM_DATE}\r\nVia: 1.1 ringway\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(out, expected.as_bytes());
}

#[test]
fn interim_head_exact_bytes() {
    // RFC 9110 section 15.2: an interim response ends at its head, so ringway adds neither
    // framing nor Date.
    let cases: &[(&str, &str)] = &[
        (
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 100 Continue\r\nVia: 1.1 ringway\r\n\r\n",
        ),
        (
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nConnection: X-A\r\nX-A: 1\r\nlink: </b.js>; rel=preload\r\n\r\n",
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nlink: </b.js>; rel=preload\r\nVia: 1.1 ringway\r\n\r\n",
        ),
        (
            "HTTP/1.1 102 \r\nVia: 1.1 a\r\n\r\n",
            "HTTP/1.1 102 \r\nVia: 1.1 a, 1.1 ringway\r\n\r\n",
        ),
    ];
    for &(raw, expected) in cases {
        let head = response(raw.as_bytes(), false);
        let mut out = b"stale".to_vec();
        write_interim_head(&mut out, raw.as_bytes(), &head);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{raw:?}");
    }
}

#[test]
fn error_response_exact_bytes() {
    let cases: &[(u16, &str, &str, bool)] = &[
        (400, "Bad Request", "missing Host header", true),
        (404, "Not Found", "no route for host \"a\"", false),
        (502, "Bad Gateway", "", true),
        // The length counts bytes, not characters.
        (
            431,
            "Request Header Fields Too Large",
            "caf\u{e9} \u{2014} too large",
            false,
        ),
    ];
    for &(status, reason, detail, close) in cases {
        let body = format!("{status} {reason}: {detail}\n");
        let connection = if close { "Connection: close\r\n" } else { "" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{connection}\r\n",
            body.len()
        );
        for head_only in [false, true] {
            let mut out = b"stale".to_vec();
            let before = now_seconds();
            write_error_response(&mut out, status, reason, detail, close, head_only, b"");
            let out = String::from_utf8(out).unwrap();
            let expected = if head_only {
                head.clone()
            } else {
                format!("{head}{body}")
            };
            assert_eq!(
                without_current_date(&out, before),
                expected,
                "{status} head_only={head_only}"
            );
        }
    }
}

#[test]
fn error_response_length_matches_body() {
    // Parse what a client would see: Content-Length must cover the body exactly, or the next
    // response on the connection would be misread.
    let mut out = Vec::new();
    write_error_response(
        &mut out,
        505,
        "HTTP Version Not Supported",
        "unsupported version \"HTTP/2.0\"",
        false,
        false,
        b"",
    );
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) =
        parsed.parse(&out).expect("error response does not parse")
    else {
        panic!("error response head is incomplete");
    };
    assert_eq!(parsed.code, Some(505));
    let length = parsed
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
        .map(|header| {
            std::str::from_utf8(header.value)
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .expect("no Content-Length");
    assert_eq!(length, out.len() - head_len);
}
