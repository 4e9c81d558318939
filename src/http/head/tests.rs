//! Table-driven tests for request and response head parsing. Each case names the RFC 9110 or
//! RFC 9112 section whose rule it checks.

use super::*;
use crate::http::body::BodyKind;

/// Limits large enough for every case that is not about limits.
const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8 * 1024,
    max_header_count: 64,
};

/// Bytes that may follow a head in the same read: none, a body, and a pipelined request.
const TRAILING: [&[u8]; 3] = [b"", b"hello", b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n"];

/// Parses a request head that must be complete under `limits`.
fn req_with(buf: &[u8], limits: HeadLimits) -> Result<RequestHead, ProxyError> {
    let mut head = RequestHead::default();
    match parse_request(buf, limits, &mut head) {
        Ok(true) => Ok(head),
        Ok(false) => panic!("request head {} reported as incomplete", shown(buf)),
        Err(err) => Err(err),
    }
}

fn req(buf: &[u8]) -> Result<RequestHead, ProxyError> {
    req_with(buf, LIMITS)
}

fn req_ok(buf: &[u8]) -> RequestHead {
    req(buf).unwrap_or_else(|err| panic!("request {} rejected: {err}", shown(buf)))
}

fn req_err(buf: &[u8]) -> ProxyError {
    match req(buf) {
        Ok(head) => panic!("request {} accepted as {head:?}", shown(buf)),
        Err(err) => err,
    }
}

/// Parses a response head that must be complete.
fn resp(buf: &[u8], request_was_head: bool) -> Result<ResponseHead, ProxyError> {
    let mut head = ResponseHead::default();
    match parse_response(buf, LIMITS, request_was_head, &mut head) {
        Ok(true) => Ok(head),
        Ok(false) => panic!("response head {} reported as incomplete", shown(buf)),
        Err(err) => Err(err),
    }
}

fn resp_ok(buf: &[u8], request_was_head: bool) -> ResponseHead {
    resp(buf, request_was_head)
        .unwrap_or_else(|err| panic!("response {} rejected: {err}", shown(buf)))
}

fn text(buf: &[u8], span: Span) -> &str {
    std::str::from_utf8(span.of(buf)).expect("span is not UTF-8")
}

fn texts(buf: &[u8], spans: &[Span]) -> Vec<String> {
    spans
        .iter()
        .map(|&span| text(buf, span).to_owned())
        .collect()
}

/// Builds a request head from a request line and header lines, each without its CRLF.
fn head_of(request_line: &str, lines: &[&str]) -> Vec<u8> {
    let mut out = format!("{request_line}\r\n");
    for line in lines {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Builds an HTTP/1.1 POST with a valid Host and the given extra header lines.
fn post(lines: &[&str]) -> Vec<u8> {
    let mut all = vec!["Host: example.com"];
    all.extend_from_slice(lines);
    head_of("POST /upload HTTP/1.1", &all)
}

/// Builds a response head from a status line and header lines, each without its CRLF.
fn response_of(status_line: &str, lines: &[&str]) -> Vec<u8> {
    head_of(status_line, lines)
}

/// Asserts that `err` has `kind` and that its detail contains `fragment`.
fn assert_error(case: &str, err: &ProxyError, kind: Kind, fragment: &str) {
    assert_eq!(err.kind, kind, "{case}: wrong kind for error {err}");
    assert!(
        err.detail.contains(fragment),
        "{case}: detail {:?} does not contain {fragment:?}",
        err.detail
    );
}

/// A request that must parse, with the values it must parse to.
struct ValidRequest {
    name: &'static str,
    head: &'static [u8],
    method: &'static str,
    target: &'static str,
    form: TargetForm,
    path: &'static str,
    authority: Option<&'static str>,
    minor_version: u8,
    body: BodyKind,
    keep_alive: bool,
}

const VALID_REQUESTS: &[ValidRequest] = &[
    ValidRequest {
        // RFC 9112 section 3.2.1: origin-form, the query is not part of the path.
        name: "origin-form with query",
        head: b"GET /index.html?q=1&r=%2F HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        method: "GET",
        target: "/index.html?q=1&r=%2F",
        form: TargetForm::Origin,
        path: "/index.html",
        authority: Some("example.com"),
        minor_version: 1,
        body: BodyKind::None,
        keep_alive: true,
    },
    ValidRequest {
        // RFC 9112 section 6.2: Content-Length frames the body.
        name: "content-length body",
        head: b"POST /upload HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 5\r\n\r\n",
        method: "POST",
        target: "/upload",
        form: TargetForm::Origin,
        path: "/upload",
        authority: Some("example.com:8080"),
        minor_version: 1,
        body: BodyKind::Length(5),
        keep_alive: true,
    },
    ValidRequest {
        // RFC 9112 section 6.1: chunked as the final coding frames the body.
        name: "chunked body",
        head: b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        method: "PUT",
        target: "/x",
        form: TargetForm::Origin,
        path: "/x",
        authority: Some("a"),
        minor_version: 1,
        body: BodyKind::Chunked,
        keep_alive: true,
    },
    ValidRequest {
        // RFC 9112 section 3.2.2: the absolute-form authority replaces Host.
        name: "absolute-form",
        head: b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other.example\r\n\r\n",
        method: "GET",
        target: "http://example.com:8080/a/b?c=d",
        form: TargetForm::Absolute,
        path: "/a/b",
        authority: Some("example.com:8080"),
        minor_version: 1,
        body: BodyKind::None,
        keep_alive: true,
    },
    ValidRequest {
        // RFC 9112 section 3.2.4: asterisk-form is only for OPTIONS.
        name: "asterisk-form",
        head: b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        method: "OPTIONS",
        target: "*",
        form: TargetForm::Asterisk,
        path: "*",
        authority: Some("a"),
        minor_version: 1,
        body: BodyKind::None,
        keep_alive: true,
    },
    ValidRequest {
        // RFC 9112 section 3.2: Host is only required from HTTP/1.1 on. RFC 9112 section 9.3:
        // HTTP/1.0 is not persistent by default.
        name: "http/1.0 without host",
        head: b"GET / HTTP/1.0\r\n\r\n",
        method: "GET",
        target: "/",
        form: TargetForm::Origin,
        path: "/",
        authority: None,
        minor_version: 0,
        body: BodyKind::None,
        keep_alive: false,
    },
    ValidRequest {
        // RFC 9110 section 5.1: field names are case-insensitive. RFC 9112 section 9.6: close.
        name: "lowercase names and close",
        head: b"HEAD /h HTTP/1.1\r\nhost: A.Example\r\nconnection: Close\r\n\r\n",
        method: "HEAD",
        target: "/h",
        form: TargetForm::Origin,
        path: "/h",
        authority: Some("A.Example"),
        minor_version: 1,
        body: BodyKind::None,
        keep_alive: false,
    },
];

fn assert_valid_request(case: &ValidRequest, buf: &[u8], head: &RequestHead) {
    let name = case.name;
    assert_eq!(text(buf, head.method), case.method, "{name}: method");
    assert_eq!(text(buf, head.target), case.target, "{name}: target");
    assert_eq!(head.target_form, Some(case.form), "{name}: target form");
    assert_eq!(text(buf, head.path), case.path, "{name}: path");
    assert_eq!(
        head.authority(buf).map(|a| std::str::from_utf8(a).unwrap()),
        case.authority,
        "{name}: authority"
    );
    assert_eq!(
        head.minor_version, case.minor_version,
        "{name}: minor version"
    );
    assert_eq!(head.head_len, case.head.len(), "{name}: head_len");
    assert_eq!(head.body, Some(case.body), "{name}: body");
    assert_eq!(head.keep_alive, case.keep_alive, "{name}: keep_alive");
}

#[test]
fn request_valid_heads() {
    for case in VALID_REQUESTS {
        for trailing in TRAILING {
            let buf = [case.head, trailing].concat();
            let head = req(&buf).unwrap_or_else(|err| panic!("{}: rejected: {err}", case.name));
            assert_valid_request(case, &buf, &head);
        }
    }
}

#[test]
fn request_every_split_is_partial() {
    for case in VALID_REQUESTS {
        for end in 0..case.head.len() {
            let mut head = RequestHead::default();
            let result = parse_request(&case.head[..end], LIMITS, &mut head);
            assert!(
                matches!(result, Ok(false)),
                "{}: prefix of {end} bytes gave {result:?}",
                case.name
            );
        }
    }
}

#[test]
fn request_head_reused_across_requests() {
    // One RequestHead serves every request of a connection, so nothing may leak from the
    // previous request into the next one.
    let first = b"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\nConnection: X-Hop\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    let second = b"GET /y HTTP/1.0\r\n\r\n";
    let mut head = RequestHead::default();
    assert!(matches!(parse_request(first, LIMITS, &mut head), Ok(true)));
    assert_eq!(head.connection_tokens.len(), 1);
    assert!(head.expect_continue);

    assert!(matches!(parse_request(second, LIMITS, &mut head), Ok(true)));
    assert_eq!(text(second, head.target), "/y");
    assert_eq!(text(second, head.path), "/y");
    assert_eq!(head.target_form, Some(TargetForm::Origin));
    assert_eq!(head.target_authority, None);
    assert_eq!(head.host, None);
    assert_eq!(head.fields.len(), 0);
    assert!(head.connection_tokens.is_empty());
    assert!(!head.expect_continue);
    assert_eq!(head.body, Some(BodyKind::None));
    assert!(!head.keep_alive);
}

#[test]
fn request_fields_keep_order_and_roles() {
    let buf = head_of(
        "GET / HTTP/1.1",
        &[
            "Host: a",
            "X-Forwarded-For: 192.0.2.1",
            "Via: 1.1 edge",
            "X-Forwarded-Proto: https",
            "x-forwarded-host: b",
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "Upgrade: websocket",
            "Proxy-Connection: keep-alive",
            "Trailer: X-Sum",
            "HTTP2-Settings: AAMAAABkAAQAAP__",
            "Connection: Upgrade, HTTP2-Settings",
            "Accept: text/html",
            "accept: text/plain",
        ],
    );
    let head = req_ok(&buf);
    let got: Vec<(String, String, FieldRole)> = head
        .fields
        .iter()
        .map(|field| {
            (
                text(&buf, field.name).to_owned(),
                text(&buf, field.value).to_owned(),
                field.role,
            )
        })
        .collect();
    let expected = [
        ("Host", "a", FieldRole::Host),
        ("X-Forwarded-For", "192.0.2.1", FieldRole::ForwardedFor),
        ("Via", "1.1 edge", FieldRole::Via),
        ("X-Forwarded-Proto", "https", FieldRole::ForwardedReplaced),
        ("x-forwarded-host", "b", FieldRole::ForwardedReplaced),
        ("Keep-Alive", "timeout=5", FieldRole::HopByHop),
        ("TE", "trailers", FieldRole::HopByHop),
        ("Upgrade", "websocket", FieldRole::HopByHop),
        ("Proxy-Connection", "keep-alive", FieldRole::HopByHop),
        ("Trailer", "X-Sum", FieldRole::HopByHop),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__", FieldRole::HopByHop),
        ("Connection", "Upgrade, HTTP2-Settings", FieldRole::HopByHop),
        ("Accept", "text/html", FieldRole::EndToEnd),
        ("accept", "text/plain", FieldRole::EndToEnd),
    ];
    assert_eq!(got.len(), expected.len());
    for (got, (name, value, role)) in got.iter().zip(expected) {
        assert_eq!((got.0.as_str(), got.1.as_str(), got.2), (name, value, role));
    }
}

#[test]
fn request_value_whitespace_trimmed() {
    // RFC 9112 section 5.1: OWS around a field value is not part of the value.
    let buf = head_of("GET / HTTP/1.1", &["Host: \t example.com \t", "X-A:b  "]);
    let head = req_ok(&buf);
    assert_eq!(text(&buf, head.host.unwrap()), "example.com");
    assert_eq!(text(&buf, head.fields[1].value), "b");
}

#[test]
fn request_framing_accepted() {
    let cases: &[(&str, &[&str], BodyKind)] = &[
        // RFC 9110 section 8.6: a list of identical values is one length.
        (
            "identical list",
            &["Content-Length: 5, 5"],
            BodyKind::Length(5),
        ),
        (
            "identical lines",
            &["Content-Length: 5", "Content-Length: 5"],
            BodyKind::Length(5),
        ),
        (
            "list with ows",
            &["Content-Length: 5 ,\t5"],
            BodyKind::Length(5),
        ),
        // RFC 9110 section 8.6: Content-Length = 1*DIGIT, so leading zeros are digits.
        (
            "leading zeros",
            &["Content-Length: 007"],
            BodyKind::Length(7),
        ),
        ("zero", &["Content-Length: 0"], BodyKind::Length(0)),
        (
            "max u64",
            &["Content-Length: 18446744073709551615"],
            BodyKind::Length(u64::MAX),
        ),
        // RFC 9112 section 7: transfer-coding names are case-insensitive.
        (
            "chunked uppercase",
            &["Transfer-Encoding: Chunked"],
            BodyKind::Chunked,
        ),
        (
            "chunked ows",
            &["Transfer-Encoding:  chunked "],
            BodyKind::Chunked,
        ),
        // RFC 9110 section 5.6.1: empty list elements are ignored.
        (
            "chunked empty element",
            &["Transfer-Encoding: chunked ,"],
            BodyKind::Chunked,
        ),
        (
            "chunked leading comma",
            &["Transfer-Encoding: , chunked"],
            BodyKind::Chunked,
        ),
        // RFC 9112 section 6.3 item 7: a request without Content-Length and Transfer-Encoding has
        // no body.
        ("no framing", &[], BodyKind::None),
    ];
    for &(name, lines, body) in cases {
        let head = req(&post(lines)).unwrap_or_else(|err| panic!("{name}: rejected: {err}"));
        assert_eq!(head.body, Some(body), "{name}");
    }
}

#[test]
fn request_rejections() {
    let get11 = |lines: &[&str]| head_of("GET / HTTP/1.1", lines);
    let cases: Vec<(&str, Vec<u8>, Kind, &str)> = vec![
        // RFC 9112 section 6.3 item 3: Content-Length with Transfer-Encoding may be an attempt at
        // request smuggling and ought to be handled as an error, so ringway rejects it.
        (
            "cl then te",
            post(&["Content-Length: 5", "Transfer-Encoding: chunked"]),
            Kind::BadRequest,
            "Content-Length and Transfer-Encoding together",
        ),
        (
            "te then cl",
            post(&["Transfer-Encoding: chunked", "Content-Length: 5"]),
            Kind::BadRequest,
            "Content-Length and Transfer-Encoding together",
        ),
        // RFC 9112 section 6.3 item 5: an invalid Content-Length is unrecoverable.
        (
            "differing cl lines",
            post(&["Content-Length: 5", "Content-Length: 6"]),
            Kind::BadRequest,
            "conflicting Content-Length values 5 and 6",
        ),
        (
            "differing cl list",
            post(&["Content-Length: 5, 6"]),
            Kind::BadRequest,
            "conflicting Content-Length values 5 and 6",
        ),
        (
            "cl not numeric",
            post(&["Content-Length: abc"]),
            Kind::BadRequest,
            "invalid Content-Length \"abc\"",
        ),
        (
            "cl plus sign",
            post(&["Content-Length: +5"]),
            Kind::BadRequest,
            "invalid Content-Length \"+5\"",
        ),
        (
            "cl negative",
            post(&["Content-Length: -1"]),
            Kind::BadRequest,
            "invalid Content-Length \"-1\"",
        ),
        (
            "cl empty",
            post(&["Content-Length: "]),
            Kind::BadRequest,
            "invalid Content-Length \"\"",
        ),
        (
            "cl inner space",
            post(&["Content-Length: 1 0"]),
            Kind::BadRequest,
            "invalid Content-Length \"1 0\"",
        ),
        (
            "cl hex",
            post(&["Content-Length: 0x10"]),
            Kind::BadRequest,
            "invalid Content-Length \"0x10\"",
        ),
        (
            "cl empty element",
            post(&["Content-Length: 5,"]),
            Kind::BadRequest,
            "invalid Content-Length \"5,\"",
        ),
        (
            "cl 20 digits overflow",
            post(&["Content-Length: 99999999999999999999"]),
            Kind::BadRequest,
            "invalid Content-Length \"99999999999999999999\"",
        ),
        (
            "cl max plus one",
            post(&["Content-Length: 18446744073709551616"]),
            Kind::BadRequest,
            "invalid Content-Length \"18446744073709551616\"",
        ),
        // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        (
            "te on http/1.0",
            head_of("POST / HTTP/1.0", &["Transfer-Encoding: chunked"]),
            Kind::BadRequest,
            "not allowed in an HTTP/1.0 request",
        ),
        // RFC 9112 section 6.3 item 4: chunked must be the final coding of a request.
        (
            "te chunked not last",
            post(&["Transfer-Encoding: chunked, gzip"]),
            Kind::BadRequest,
            "last transfer coding of a request must be chunked",
        ),
        (
            "te chunked not last across lines",
            post(&["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"]),
            Kind::BadRequest,
            "last transfer coding of a request must be chunked",
        ),
        (
            "te only gzip",
            post(&["Transfer-Encoding: gzip"]),
            Kind::BadRequest,
            "last transfer coding of a request must be chunked",
        ),
        // RFC 9112 section 6.1: chunked must not be applied more than once.
        (
            "te chunked twice",
            post(&["Transfer-Encoding: chunked, chunked"]),
            Kind::BadRequest,
            "more than once",
        ),
        (
            "te chunked twice across lines",
            post(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
            Kind::BadRequest,
            "more than once",
        ),
        (
            "te empty",
            post(&["Transfer-Encoding: "]),
            Kind::BadRequest,
            "empty Transfer-Encoding",
        ),
        (
            "te only commas",
            post(&["Transfer-Encoding: , ,"]),
            Kind::BadRequest,
            "empty Transfer-Encoding",
        ),
        // RFC 9112 section 6.1: a coding the server does not understand gets 501.
        (
            "te gzip then chunked",
            post(&["Transfer-Encoding: gzip, chunked"]),
            Kind::UnsupportedTransferCoding,
            "transfer coding \"gzip\" is not supported",
        ),
        // RFC 9112 section 5.2: ringway rejects obs-fold instead of replacing it with spaces.
        (
            "obs-fold",
            get11(&["Host: a", "X-A: b", " c"]),
            Kind::BadRequest,
            "malformed request head",
        ),
        (
            "obs-fold tab",
            get11(&["Host: a", "X-A: b", "\tc"]),
            Kind::BadRequest,
            "malformed request head",
        ),
        // RFC 9112 section 5.1: no whitespace between field name and colon.
        (
            "space before colon",
            get11(&["Host : a"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        (
            "tab before colon",
            get11(&["Host\t: a"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        // RFC 9112 section 2.2: whitespace before the first field line is rejected.
        (
            "space before first header",
            get11(&[" Host: a"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        // RFC 9110 section 5.1: a field name is a token.
        (
            "name with space",
            get11(&["Host: a", "X A: b"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        (
            "name with quote",
            get11(&["Host: a", "X\"A: b"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        (
            "name with slash",
            get11(&["Host: a", "X/A: b"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        (
            "name with parenthesis",
            get11(&["Host: a", "X(A): b"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        (
            "name non-ascii",
            get11(&["Host: a", "X-\u{e9}: b"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        (
            "name empty",
            get11(&["Host: a", ": b"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        (
            "line without colon",
            get11(&["Host: a", "X-A"]),
            Kind::BadRequest,
            "invalid header line",
        ),
        // RFC 9110 section 5.5: CR, LF and NUL are invalid in a field value, and DEL is not a
        // field-vchar.
        (
            "bare cr in value",
            get11(&["Host: a", "X-A: b\rc"]),
            Kind::BadRequest,
            "invalid byte in a header value",
        ),
        (
            "nul in value",
            get11(&["Host: a", "X-A: b\0c"]),
            Kind::BadRequest,
            "invalid byte in a header value",
        ),
        (
            "del in value",
            get11(&["Host: a", "X-A: b\x7fc"]),
            Kind::BadRequest,
            "invalid byte in a header value",
        ),
        // RFC 9112 section 3.2: exactly one valid Host in an HTTP/1.1 request.
        (
            "missing host",
            get11(&["Accept: */*"]),
            Kind::BadRequest,
            "missing Host header",
        ),
        (
            "two hosts",
            get11(&["Host: a", "Host: a"]),
            Kind::BadRequest,
            "more than one Host header",
        ),
        (
            "two hosts on 1.0",
            head_of("GET / HTTP/1.0", &["Host: a", "host: b"]),
            Kind::BadRequest,
            "more than one Host header",
        ),
        (
            "host with space",
            get11(&["Host: a b"]),
            Kind::BadRequest,
            "invalid Host header \"a b\"",
        ),
        (
            "host with slash",
            get11(&["Host: a/b"]),
            Kind::BadRequest,
            "invalid Host header \"a/b\"",
        ),
        (
            "host with userinfo",
            get11(&["Host: user@host"]),
            Kind::BadRequest,
            "invalid Host header \"user@host\"",
        ),
        (
            "host unclosed ipv6",
            get11(&["Host: [::1"]),
            Kind::BadRequest,
            "invalid Host header \"[::1\"",
        ),
        (
            "host empty",
            get11(&["Host: "]),
            Kind::BadRequest,
            "invalid Host header \"\"",
        ),
        (
            "host invalid on 1.0",
            head_of("GET / HTTP/1.0", &["Host: a b"]),
            Kind::BadRequest,
            "invalid Host header \"a b\"",
        ),
        // RFC 9110 section 10.1.1: 417 for an expectation the server cannot meet.
        (
            "expect other",
            get11(&["Host: a", "Expect: 200-ok"]),
            Kind::ExpectationFailed,
            "unsupported Expect value \"200-ok\"",
        ),
        (
            "expect list",
            get11(&["Host: a", "Expect: 100-continue, x"]),
            Kind::ExpectationFailed,
            "unsupported Expect value \"100-continue, x\"",
        ),
        // RFC 9110 section 9.3.6: CONNECT requests a tunnel, which ringway does not open.
        (
            "connect",
            head_of(
                "CONNECT example.com:443 HTTP/1.1",
                &["Host: example.com:443"],
            ),
            Kind::MethodNotImplemented,
            "CONNECT",
        ),
        // RFC 9112 section 3.2.4: asterisk-form is only for OPTIONS.
        (
            "asterisk with get",
            get11_target("*"),
            Kind::BadRequest,
            "only valid with OPTIONS",
        ),
        // RFC 9112 section 3.2: origin-form starts with "/", absolute-form with a scheme.
        (
            "target without slash",
            get11_target("index.html"),
            Kind::BadRequest,
            "invalid request target \"index.html\"",
        ),
        (
            "target other scheme",
            get11_target("ftp://a/b"),
            Kind::BadRequest,
            "invalid request target \"ftp://a/b\"",
        ),
        (
            "target bare scheme",
            get11_target("http://"),
            Kind::BadRequest,
            "invalid request target \"http://\"",
        ),
        (
            "target authority-form",
            get11_target("example.com:80"),
            Kind::BadRequest,
            "invalid request target \"example.com:80\"",
        ),
        // RFC 9110 section 4.2.4: userinfo in an http(s) URI is invalid.
        (
            "absolute with userinfo",
            get11_target("http://user@a/"),
            Kind::BadRequest,
            "invalid authority in request target",
        ),
        (
            "absolute empty authority",
            get11_target("http:///x"),
            Kind::BadRequest,
            "invalid authority in request target",
        ),
        (
            "absolute bad port",
            get11_target("http://a:80x/"),
            Kind::BadRequest,
            "invalid authority in request target",
        ),
        // RFC 9112 section 3: request-line = method SP request-target SP HTTP-version.
        (
            "space in target",
            head_of("GET /a b HTTP/1.1", &["Host: a"]),
            Kind::BadRequest,
            "malformed request line",
        ),
        (
            "lowercase version",
            head_of("GET / http/1.1", &["Host: a"]),
            Kind::BadRequest,
            "malformed request line",
        ),
        (
            "missing version",
            head_of("GET /", &["Host: a"]),
            Kind::BadRequest,
            "malformed request",
        ),
        (
            "double space",
            head_of("GET  / HTTP/1.1", &["Host: a"]),
            Kind::BadRequest,
            "malformed request head",
        ),
        (
            "empty method",
            head_of(" / HTTP/1.1", &["Host: a"]),
            Kind::BadRequest,
            "malformed request head",
        ),
        // ringway speaks HTTP/1.0 and HTTP/1.1 only. RFC 9110 section 2.5 suggests serving HTTP/1.2
        // as HTTP/1.1, but httparse reads no other minor version, so it gets 505 too.
        (
            "http/2.0",
            head_of("GET / HTTP/2.0", &["Host: a"]),
            Kind::VersionNotSupported,
            "HTTP/1.0 and HTTP/1.1",
        ),
        (
            "http/1.2",
            head_of("GET / HTTP/1.2", &["Host: a"]),
            Kind::VersionNotSupported,
            "HTTP/1.0 and HTTP/1.1",
        ),
        (
            "http/0.9",
            head_of("GET / HTTP/0.9", &["Host: a"]),
            Kind::VersionNotSupported,
            "HTTP/1.0 and HTTP/1.1",
        ),
        (
            "http/3",
            head_of("GET / HTTP/3", &["Host: a"]),
            Kind::VersionNotSupported,
            "HTTP/1.0 and HTTP/1.1",
        ),
    ];
    for (name, buf, kind, fragment) in &cases {
        assert_error(name, &req_err(buf), *kind, fragment);
    }
}

fn get11_target(target: &str) -> Vec<u8> {
    head_of(&format!("GET {target} HTTP/1.1"), &["Host: a"])
}

#[test]
fn request_rejection_same_at_every_split() {
    // A prefix of an invalid head is either still incomplete or rejected with the same kind as
    // the whole head, so the result does not depend on how the bytes arrived.
    let cases: &[(&[u8], Kind)] = &[
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Kind::VersionNotSupported),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Kind::VersionNotSupported),
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Kind::BadRequest),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", Kind::BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", Kind::BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", Kind::BadRequest),
    ];
    for &(buf, kind) in cases {
        for end in 1..=buf.len() {
            let mut head = RequestHead::default();
            match parse_request(&buf[..end], LIMITS, &mut head) {
                Ok(false) => assert!(
                    end < buf.len(),
                    "{}: whole head reported as incomplete",
                    shown(buf)
                ),
                Ok(true) => panic!("{}: prefix of {end} bytes accepted", shown(buf)),
                Err(err) => assert_eq!(
                    err.kind,
                    kind,
                    "{}: prefix of {end} bytes gave {err}",
                    shown(buf)
                ),
            }
        }
    }
}

#[test]
fn request_options_asterisk() {
    let buf = head_of("OPTIONS * HTTP/1.1", &["Host: a"]);
    let head = req_ok(&buf);
    assert_eq!(head.target_form, Some(TargetForm::Asterisk));
    assert_eq!(head.target_authority, None);
    assert_eq!(text(&buf, head.path), "*");
}

#[test]
fn request_absolute_form_targets() {
    // RFC 9112 section 3.2.2: the authority of an absolute-form target is the request's host,
    // and the scheme is case-insensitive (RFC 9110 section 4.2.3).
    let cases: &[(&str, &str, &str)] = &[
        ("http://example.com/a?b", "example.com", "/a"),
        ("HTTPS://Example.COM:8443/x/y", "Example.COM:8443", "/x/y"),
        ("http://[::1]:8080/v6", "[::1]:8080", "/v6"),
        ("http://example.com?q", "example.com", ""),
        ("http://example.com", "example.com", ""),
        ("http://a/%2F?x=%2F", "a", "/%2F"),
    ];
    for &(target, authority, path) in cases {
        let buf = head_of(
            &format!("GET {target} HTTP/1.1"),
            &["Host: ignored.example"],
        );
        let head = req(&buf).unwrap_or_else(|err| panic!("{target}: rejected: {err}"));
        assert_eq!(head.target_form, Some(TargetForm::Absolute), "{target}");
        assert_eq!(
            head.target_authority.map(|span| text(&buf, span)),
            Some(authority),
            "{target}"
        );
        assert_eq!(head.authority(&buf), Some(authority.as_bytes()), "{target}");
        assert_eq!(text(&buf, head.path), path, "{target}");
        assert_eq!(
            head.host.map(|span| text(&buf, span)),
            Some("ignored.example"),
            "{target}"
        );
    }
}

#[test]
fn request_http10_absolute_form_without_host() {
    let buf = head_of("GET http://example.com/ HTTP/1.0", &[]);
    let head = req_ok(&buf);
    assert_eq!(head.host, None);
    assert_eq!(head.authority(&buf), Some(&b"example.com"[..]));
}

#[test]
fn request_header_count_limit() {
    // More field lines than limits.max_header_count get 431 (RFC 6585 section 5).
    let limits = HeadLimits {
        max_head_bytes: 8 * 1024,
        max_header_count: 3,
    };
    let three = head_of("GET / HTTP/1.1", &["Host: a", "X-1: 1", "X-2: 2"]);
    assert_eq!(req_with(&three, limits).unwrap().fields.len(), 3);

    let four = head_of("GET / HTTP/1.1", &["Host: a", "X-1: 1", "X-2: 2", "X-3: 3"]);
    let err = req_with(&four, limits).expect_err("four header lines accepted");
    assert_error(
        "four lines",
        &err,
        Kind::HeadTooLarge,
        "more than 3 header lines",
    );
}

#[test]
fn request_header_count_capped() {
    // A configured count above MAX_HEADER_COUNT is capped, because the parser's slots are a
    // fixed array.
    let limits = HeadLimits {
        max_head_bytes: 64 * 1024,
        max_header_count: MAX_HEADER_COUNT + 10,
    };
    let lines: Vec<String> = std::iter::once("Host: a".to_owned())
        .chain((0..MAX_HEADER_COUNT).map(|i| format!("X-{i}: {i}")))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let buf = head_of("GET / HTTP/1.1", &lines);
    let err = req_with(&buf, limits).expect_err("too many header lines accepted");
    assert_eq!(err.kind, Kind::HeadTooLarge);

    let buf = head_of("GET / HTTP/1.1", &lines[..MAX_HEADER_COUNT]);
    assert_eq!(
        req_with(&buf, limits).unwrap().fields.len(),
        MAX_HEADER_COUNT
    );
}

#[test]
fn request_head_byte_limit() {
    let buf = head_of(
        "GET / HTTP/1.1",
        &["Host: a", "X-Pad: 0123456789012345678901234567890123456789"],
    );
    let exact = HeadLimits {
        max_head_bytes: buf.len(),
        max_header_count: 8,
    };
    assert_eq!(req_with(&buf, exact).unwrap().head_len, buf.len());

    let short = HeadLimits {
        max_head_bytes: buf.len() - 1,
        max_header_count: 8,
    };
    // The whole head arrived in one read.
    let err = req_with(&buf, short).expect_err("head over the limit accepted");
    assert_error(
        "complete",
        &err,
        Kind::HeadTooLarge,
        &format!("larger than {} bytes", buf.len() - 1),
    );
    // Only the first max_head_bytes arrived, and the head has not ended.
    let mut head = RequestHead::default();
    let err = parse_request(&buf[..buf.len() - 1], short, &mut head)
        .expect_err("partial head at the limit");
    assert_eq!(err.kind, Kind::HeadTooLarge);
    // One byte less is still below the limit.
    assert!(matches!(
        parse_request(&buf[..buf.len() - 2], short, &mut head),
        Ok(false)
    ));
}

#[test]
fn request_line_limit_uri_too_long() {
    // RFC 9112 section 3: a request line longer than the server accepts gets 414.
    let long_target = format!("/{}", "a".repeat(100));
    let buf = head_of(&format!("GET {long_target} HTTP/1.1"), &["Host: a"]);
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_header_count: 8,
    };
    for end in 0..=buf.len() {
        let mut head = RequestHead::default();
        let result = parse_request(&buf[..end], limits, &mut head);
        if end < 64 {
            assert!(
                matches!(result, Ok(false)),
                "prefix of {end} bytes gave {result:?}"
            );
        } else {
            let err = result.expect_err("request line over the limit accepted");
            assert_error(
                &format!("prefix of {end} bytes"),
                &err,
                Kind::UriTooLong,
                "request line longer than 64 bytes",
            );
        }
    }
}

#[test]
fn request_keep_alive() {
    // RFC 9112 section 9.3: HTTP/1.1 persists unless "close" is sent, and HTTP/1.0 persists only
    // with "keep-alive".
    let cases: &[(&str, &str, &[&str], bool)] = &[
        ("1.1 default", "HTTP/1.1", &["Host: a"], true),
        (
            "1.1 close",
            "HTTP/1.1",
            &["Host: a", "Connection: close"],
            false,
        ),
        (
            "1.1 close uppercase",
            "HTTP/1.1",
            &["Host: a", "Connection: CLOSE"],
            false,
        ),
        (
            "1.1 close in list",
            "HTTP/1.1",
            &["Host: a", "Connection: X-A, close"],
            false,
        ),
        (
            "1.1 close second line",
            "HTTP/1.1",
            &["Host: a", "Connection: X-A", "Connection: close"],
            false,
        ),
        (
            "1.1 keep-alive",
            "HTTP/1.1",
            &["Host: a", "Connection: keep-alive"],
            true,
        ),
        (
            "1.1 close wins",
            "HTTP/1.1",
            &["Host: a", "Connection: keep-alive, close"],
            false,
        ),
        ("1.0 default", "HTTP/1.0", &[], false),
        (
            "1.0 keep-alive",
            "HTTP/1.0",
            &["Connection: keep-alive"],
            true,
        ),
        (
            "1.0 keep-alive mixed case",
            "HTTP/1.0",
            &["Connection: Keep-Alive"],
            true,
        ),
        (
            "1.0 keep-alive and close",
            "HTTP/1.0",
            &["Connection: keep-alive", "Connection: close"],
            false,
        ),
        ("1.0 other token", "HTTP/1.0", &["Connection: X-A"], false),
    ];
    for &(name, version, lines, keep_alive) in cases {
        let buf = head_of(&format!("GET / {version}"), lines);
        assert_eq!(req(&buf).unwrap().keep_alive, keep_alive, "{name}");
    }
}

#[test]
fn request_connection_tokens() {
    // RFC 9110 section 7.6.1: every connection option names a hop-by-hop field, except close
    // and keep-alive, which ringway reads itself.
    let buf = head_of(
        "GET / HTTP/1.1",
        &[
            "Host: a",
            "Connection: keep-alive, X-Hop ,, Upgrade",
            "Connection:",
            "connection: x-other,close",
        ],
    );
    let head = req_ok(&buf);
    assert_eq!(
        texts(&buf, &head.connection_tokens),
        ["X-Hop", "Upgrade", "x-other"]
    );
    assert!(!head.keep_alive);
}

#[test]
fn request_expect_continue() {
    // RFC 9110 section 10.1.1: 100-continue is matched case-insensitively, and a server ignores
    // it in an HTTP/1.0 request.
    let cases: &[(&str, &str, &[&str], bool)] = &[
        (
            "1.1",
            "HTTP/1.1",
            &["Host: a", "Expect: 100-continue"],
            true,
        ),
        (
            "1.1 mixed case",
            "HTTP/1.1",
            &["Host: a", "Expect: 100-Continue"],
            true,
        ),
        ("1.1 without", "HTTP/1.1", &["Host: a"], false),
        ("1.0", "HTTP/1.0", &["Expect: 100-continue"], false),
    ];
    for &(name, version, lines, expected) in cases {
        let buf = head_of(&format!("POST / {version}"), lines);
        assert_eq!(req(&buf).unwrap().expect_continue, expected, "{name}");
    }
}

#[test]
fn request_idempotent_methods() {
    // RFC 9110 section 9.2.2.
    let cases = [
        ("GET", true),
        ("HEAD", true),
        ("OPTIONS", true),
        ("TRACE", true),
        ("PUT", true),
        ("DELETE", true),
        ("POST", false),
        ("PATCH", false),
        ("get", false),
    ];
    for (method, idempotent) in cases {
        let buf = head_of(&format!("{method} / HTTP/1.1"), &["Host: a"]);
        let head = req_ok(&buf);
        assert_eq!(head.is_idempotent(&buf), idempotent, "{method}");
        assert_eq!(head.is_head(&buf), method == "HEAD", "{method}");
    }
}

#[test]
fn is_valid_host_table() {
    // RFC 9110 section 7.2 and RFC 3986 section 3.2.2: uri-host [ ":" port ], no userinfo.
    let cases: &[(&[u8], bool)] = &[
        (b"example.com", true),
        (b"example.com:8080", true),
        (b"a", true),
        (b"EXAMPLE.com", true),
        (b"127.0.0.1", true),
        (b"127.0.0.1:80", true),
        (b"[::1]", true),
        (b"[::1]:8080", true),
        (b"[2001:db8::1]", true),
        (b"[::ffff:192.0.2.1]", true),
        (b"xn--bcher-kva.example", true),
        (b"a_b~c.example", true),
        (b"a%20b", true),
        (b"a!$&'()*+,;=b", true),
        // port = *DIGIT, so an empty port is allowed.
        (b"a:", true),
        (b"a:65535", true),
        (b"[::1]:", true),
        (b"", false),
        (b"a b", false),
        (b"a/b", false),
        (b"a?b", false),
        (b"a#b", false),
        (b"a\tb", false),
        (b"user@host", false),
        (b"[::1", false),
        (b"[::1]x", false),
        (b"[::1]:x", false),
        (b"[]", false),
        (b"[::g]", false),
        (b"::1", false),
        (b"a:b:80", false),
        (b"a:80x", false),
        (b"a:123456", false),
        (b":80", false),
        (b"ex\xc3\xa4mple", false),
    ];
    for &(value, valid) in cases {
        assert_eq!(is_valid_host(value), valid, "{}", shown(value));
    }
}

#[test]
fn parse_content_length_table() {
    // RFC 9110 section 8.6: Content-Length = 1*DIGIT.
    let cases: &[(&[u8], Option<u64>)] = &[
        (b"0", Some(0)),
        (b"5", Some(5)),
        (b"007", Some(7)),
        (b"00000000000000000000000000005", Some(5)),
        (b"18446744073709551615", Some(u64::MAX)),
        (b"18446744073709551616", None),
        (b"99999999999999999999", None),
        (b"", None),
        (b"+5", None),
        (b"-1", None),
        (b" 5 ", None),
        (b"5 ", None),
        (b"1 0", None),
        (b"0x10", None),
        (b"1e3", None),
        (b"5,5", None),
        (b"5.0", None),
        (b"\xd9\xa1", None),
    ];
    for &(value, expected) in cases {
        assert_eq!(parse_content_length(value), expected, "{}", shown(value));
    }
}

/// A response that must parse, with the values it must parse to.
struct ValidResponse {
    name: &'static str,
    head: &'static [u8],
    request_was_head: bool,
    status: u16,
    reason: &'static str,
    body: BodyKind,
    keep_alive: bool,
    content_length: Option<u64>,
    has_date: bool,
}

const VALID_RESPONSES: &[ValidResponse] = &[
    ValidResponse {
        // RFC 9112 section 6.3 item 6: Content-Length frames the body.
        name: "content-length",
        head:
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        request_was_head: false,
        status: 200,
        reason: "OK",
        body: BodyKind::Length(5),
        keep_alive: true,
        content_length: Some(5),
        has_date: true,
    },
    ValidResponse {
        // RFC 9112 section 6.3 item 4: chunked as the final coding frames the body.
        name: "chunked",
        head: b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n",
        request_was_head: false,
        status: 201,
        reason: "Created",
        body: BodyKind::Chunked,
        keep_alive: true,
        content_length: None,
        has_date: false,
    },
    ValidResponse {
        // RFC 9112 section 6.3 item 8: otherwise the body ends when the server closes, so the
        // connection cannot be reused.
        name: "close-delimited",
        head: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
        request_was_head: false,
        status: 200,
        reason: "OK",
        body: BodyKind::CloseDelimited,
        keep_alive: false,
        content_length: None,
        has_date: false,
    },
    ValidResponse {
        // RFC 9112 section 6.3 item 1: a response to HEAD has no body.
        name: "head with content-length",
        head: b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        request_was_head: true,
        status: 200,
        reason: "OK",
        body: BodyKind::None,
        keep_alive: true,
        content_length: Some(1234),
        has_date: false,
    },
    ValidResponse {
        name: "head without framing",
        head: b"HTTP/1.1 200 OK\r\n\r\n",
        request_was_head: true,
        status: 200,
        reason: "OK",
        body: BodyKind::None,
        keep_alive: true,
        content_length: None,
        has_date: false,
    },
    ValidResponse {
        // RFC 9112 section 6.3 item 1: 304 has no body, and its Content-Length describes the
        // selected representation (RFC 9110 section 8.6).
        name: "304 with content-length",
        head: b"HTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\nETag: \"x\"\r\n\r\n",
        request_was_head: false,
        status: 304,
        reason: "Not Modified",
        body: BodyKind::None,
        keep_alive: true,
        content_length: Some(120),
        has_date: false,
    },
    ValidResponse {
        // RFC 9112 section 9.3: an HTTP/1.0 response persists only with keep-alive.
        name: "http/1.0 keep-alive",
        head: b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
        request_was_head: false,
        status: 200,
        reason: "OK",
        body: BodyKind::Length(0),
        keep_alive: true,
        content_length: Some(0),
        has_date: false,
    },
    ValidResponse {
        // RFC 9112 section 4: the reason phrase may be empty.
        name: "empty reason",
        head: b"HTTP/1.1 404 \r\ncontent-length: 0\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        request_was_head: false,
        status: 404,
        reason: "",
        body: BodyKind::Length(0),
        keep_alive: true,
        content_length: Some(0),
        has_date: true,
    },
    ValidResponse {
        // RFC 9110 section 15.2: an interim response has no body.
        name: "100 continue",
        head: b"HTTP/1.1 100 Continue\r\n\r\n",
        request_was_head: false,
        status: 100,
        reason: "Continue",
        body: BodyKind::None,
        keep_alive: true,
        content_length: None,
        has_date: false,
    },
];

fn assert_valid_response(case: &ValidResponse, buf: &[u8], head: &ResponseHead) {
    let name = case.name;
    assert_eq!(head.status, case.status, "{name}: status");
    assert_eq!(text(buf, head.reason), case.reason, "{name}: reason");
    assert_eq!(head.head_len, case.head.len(), "{name}: head_len");
    assert_eq!(head.body, Some(case.body), "{name}: body");
    assert_eq!(head.keep_alive, case.keep_alive, "{name}: keep_alive");
    assert_eq!(
        head.content_length, case.content_length,
        "{name}: content_length"
    );
    assert_eq!(head.has_date, case.has_date, "{name}: has_date");
}

#[test]
fn response_valid_heads() {
    for case in VALID_RESPONSES {
        for trailing in TRAILING {
            let buf = [case.head, trailing].concat();
            let head = resp(&buf, case.request_was_head)
                .unwrap_or_else(|err| panic!("{}: rejected: {err}", case.name));
            assert_valid_response(case, &buf, &head);
        }
    }
}

#[test]
fn response_every_split_is_partial() {
    for case in VALID_RESPONSES {
        for end in 0..case.head.len() {
            let mut head = ResponseHead::default();
            let result =
                parse_response(&case.head[..end], LIMITS, case.request_was_head, &mut head);
            assert!(
                matches!(result, Ok(false)),
                "{}: prefix of {end} bytes gave {result:?}",
                case.name
            );
        }
    }
}

#[test]
fn response_framing_by_status() {
    // RFC 9112 section 6.3 item 1: a response to HEAD, and every 1xx, 204 and 304 response,
    // ends at the end of its head, whatever framing headers it carries.
    let framings: &[&[&str]] = &[
        &[],
        &["Content-Length: 10"],
        &["Transfer-Encoding: chunked"],
        &["Content-Length: 10", "Transfer-Encoding: chunked"],
        &["Transfer-Encoding: gzip"],
    ];
    let bodiless: &[(&str, bool)] = &[
        ("HTTP/1.1 200 OK", true),
        ("HTTP/1.1 500 Internal Server Error", true),
        ("HTTP/1.1 100 Continue", false),
        ("HTTP/1.1 101 Switching Protocols", false),
        ("HTTP/1.1 103 Early Hints", false),
        ("HTTP/1.1 199 Whatever", false),
        ("HTTP/1.1 204 No Content", false),
        ("HTTP/1.1 304 Not Modified", false),
    ];
    for &(status_line, request_was_head) in bodiless {
        for &lines in framings {
            let buf = response_of(status_line, lines);
            let head = resp(&buf, request_was_head)
                .unwrap_or_else(|err| panic!("{status_line} {lines:?}: rejected: {err}"));
            assert_eq!(head.body, Some(BodyKind::None), "{status_line} {lines:?}");
            let length = lines.contains(&"Content-Length: 10").then_some(10);
            assert_eq!(head.content_length, length, "{status_line} {lines:?}");
        }
    }
}

#[test]
fn response_framing_with_body() {
    let cases: &[(&str, &[&str], BodyKind)] = &[
        ("cl", &["Content-Length: 10"], BodyKind::Length(10)),
        ("cl zero", &["Content-Length: 0"], BodyKind::Length(0)),
        // RFC 9110 section 8.6: identical values are one length.
        (
            "cl identical list",
            &["Content-Length: 10, 10"],
            BodyKind::Length(10),
        ),
        (
            "cl identical lines",
            &["Content-Length: 10", "Content-Length: 10"],
            BodyKind::Length(10),
        ),
        (
            "chunked",
            &["Transfer-Encoding: chunked"],
            BodyKind::Chunked,
        ),
        (
            "chunked uppercase",
            &["Transfer-Encoding: CHUNKED"],
            BodyKind::Chunked,
        ),
        (
            "chunked empty element",
            &["Transfer-Encoding: chunked,"],
            BodyKind::Chunked,
        ),
        ("neither", &[], BodyKind::CloseDelimited),
        ("206 with cl", &["Content-Length: 3"], BodyKind::Length(3)),
    ];
    for &(name, lines, body) in cases {
        let status_line = if name.starts_with("206") {
            "HTTP/1.1 206 Partial Content"
        } else {
            "HTTP/1.1 200 OK"
        };
        let buf = response_of(status_line, lines);
        let head = resp(&buf, false).unwrap_or_else(|err| panic!("{name}: rejected: {err}"));
        assert_eq!(head.body, Some(body), "{name}");
    }
}

#[test]
fn response_rejections() {
    let ok200 = |lines: &[&str]| response_of("HTTP/1.1 200 OK", lines);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // RFC 9112 section 6.3 item 3: both together ought to be handled as an error, so ringway
        // rejects them.
        (
            "cl then te",
            ok200(&["Content-Length: 5", "Transfer-Encoding: chunked"]),
            "Content-Length and Transfer-Encoding together",
        ),
        (
            "te then cl",
            ok200(&["Transfer-Encoding: chunked", "Content-Length: 5"]),
            "Content-Length and Transfer-Encoding together",
        ),
        // RFC 9112 section 6.3 item 5: an invalid Content-Length in a response is an error.
        (
            "differing cl lines",
            ok200(&["Content-Length: 5", "Content-Length: 6"]),
            "conflicting Content-Length values 5 and 6",
        ),
        (
            "differing cl list",
            ok200(&["Content-Length: 5, 6"]),
            "conflicting Content-Length values 5 and 6",
        ),
        (
            "cl not numeric",
            ok200(&["Content-Length: abc"]),
            "invalid Content-Length \"abc\"",
        ),
        (
            "cl negative",
            ok200(&["Content-Length: -1"]),
            "invalid Content-Length \"-1\"",
        ),
        (
            "cl overflow",
            ok200(&["Content-Length: 18446744073709551616"]),
            "invalid Content-Length",
        ),
        // ringway decodes only chunked, and would otherwise pass on a coded body as plain.
        (
            "te gzip",
            ok200(&["Transfer-Encoding: gzip"]),
            "unsupported transfer coding \"gzip\"",
        ),
        (
            "te gzip then chunked",
            ok200(&["Transfer-Encoding: gzip, chunked"]),
            "unsupported transfer coding \"gzip\"",
        ),
        (
            "te chunked then gzip",
            ok200(&["Transfer-Encoding: chunked, gzip"]),
            "unsupported transfer coding \"gzip\"",
        ),
        // RFC 9112 section 6.1: chunked must not be applied more than once.
        (
            "te chunked twice",
            ok200(&["Transfer-Encoding: chunked, chunked"]),
            "chunked is applied more than once",
        ),
        (
            "te empty",
            ok200(&["Transfer-Encoding: "]),
            "empty Transfer-Encoding",
        ),
        // RFC 9110 section 15: status codes are 100 to 599.
        (
            "status 99",
            response_of("HTTP/1.1 099 Low", &[]),
            "invalid status code 99",
        ),
        (
            "status 600",
            response_of("HTTP/1.1 600 High", &[]),
            "invalid status code 600",
        ),
        (
            "status four digits",
            response_of("HTTP/1.1 2000 OK", &[]),
            "malformed response head",
        ),
        (
            "status missing",
            response_of("HTTP/1.1 OK", &[]),
            "malformed response head",
        ),
        (
            "garbage status line",
            response_of("garbage", &[]),
            "malformed response head",
        ),
        (
            "http/2 status line",
            response_of("HTTP/2 200", &[]),
            "malformed response head",
        ),
        // RFC 9112 section 5.2: obs-fold is rejected.
        (
            "obs-fold",
            ok200(&["X-A: b", " c", "Content-Length: 0"]),
            "malformed response head",
        ),
        // RFC 9112 section 5.1: no whitespace between field name and colon.
        (
            "space before colon",
            ok200(&["Content-Length : 0"]),
            "malformed response head",
        ),
        (
            "nul in value",
            ok200(&["X-A: b\0", "Content-Length: 0"]),
            "malformed response head",
        ),
    ];
    for (name, buf, fragment) in &cases {
        let err = resp(buf, false)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted {}", shown(buf)));
        assert_error(name, &err, Kind::InvalidResponse, fragment);
    }
}

#[test]
fn response_head_limits() {
    let buf = response_of(
        "HTTP/1.1 200 OK",
        &["Content-Length: 0", "X-Pad: 0123456789"],
    );
    let limits = HeadLimits {
        max_head_bytes: buf.len() - 1,
        max_header_count: 8,
    };
    let mut head = ResponseHead::default();
    let err =
        parse_response(&buf, limits, false, &mut head).expect_err("complete head over the limit");
    assert_eq!(err.kind, Kind::InvalidResponse);
    let err = parse_response(&buf[..buf.len() - 1], limits, false, &mut head)
        .expect_err("partial head at the limit");
    assert_eq!(err.kind, Kind::InvalidResponse);
    assert!(matches!(
        parse_response(&buf[..buf.len() - 2], limits, false, &mut head),
        Ok(false)
    ));

    let limits = HeadLimits {
        max_head_bytes: 8 * 1024,
        max_header_count: 1,
    };
    let err = parse_response(&buf, limits, false, &mut head)
        .expect_err("two header lines over a count of one");
    assert_eq!(err.kind, Kind::InvalidResponse);
}

#[test]
fn response_keep_alive() {
    // RFC 9112 section 9.3, and section 6.3 item 8: a close-delimited body ends the connection.
    let cases: &[(&str, &str, &[&str], bool)] = &[
        ("1.1 with length", "HTTP/1.1", &["Content-Length: 0"], true),
        (
            "1.1 close",
            "HTTP/1.1",
            &["Content-Length: 0", "Connection: close"],
            false,
        ),
        (
            "1.1 close in list",
            "HTTP/1.1",
            &["Content-Length: 0", "Connection: X-A, Close"],
            false,
        ),
        (
            "1.1 close-delimited",
            "HTTP/1.1",
            &["Connection: keep-alive"],
            false,
        ),
        (
            "1.1 chunked",
            "HTTP/1.1",
            &["Transfer-Encoding: chunked"],
            true,
        ),
        (
            "1.0 without keep-alive",
            "HTTP/1.0",
            &["Content-Length: 0"],
            false,
        ),
        (
            "1.0 keep-alive",
            "HTTP/1.0",
            &["Content-Length: 0", "Connection: keep-alive"],
            true,
        ),
        (
            "1.0 keep-alive close-delimited",
            "HTTP/1.0",
            &["Connection: keep-alive"],
            false,
        ),
        // RFC 9112 section 6.1: after an HTTP/1.0 message with Transfer-Encoding, the
        // connection is closed.
        (
            "1.0 keep-alive chunked",
            "HTTP/1.0",
            &["Connection: keep-alive", "Transfer-Encoding: chunked"],
            false,
        ),
    ];
    for &(name, version, lines, keep_alive) in cases {
        let buf = response_of(&format!("{version} 200 OK"), lines);
        let head = resp(&buf, false).unwrap_or_else(|err| panic!("{name}: rejected: {err}"));
        assert_eq!(head.keep_alive, keep_alive, "{name}");
    }
}

#[test]
fn response_fields_and_tokens() {
    let buf = response_of(
        "HTTP/1.1 200 OK",
        &[
            "Set-Cookie: a=1",
            "Host: origin.internal",
            "X-Forwarded-For: 192.0.2.1",
            "Via: 1.1 origin",
            "Connection: X-Hop, keep-alive",
            "Keep-Alive: timeout=5",
            "Content-Length: 0",
            "Set-Cookie: b=2",
        ],
    );
    let head = resp_ok(&buf, false);
    let roles: Vec<(&str, FieldRole)> = head
        .fields
        .iter()
        .map(|field| (text(&buf, field.name), field.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("Set-Cookie", FieldRole::EndToEnd),
            // Host and the forwarding headers mean nothing special in a response.
            ("Host", FieldRole::EndToEnd),
            ("X-Forwarded-For", FieldRole::EndToEnd),
            ("Via", FieldRole::Via),
            ("Connection", FieldRole::HopByHop),
            ("Keep-Alive", FieldRole::HopByHop),
            ("Content-Length", FieldRole::HopByHop),
            ("Set-Cookie", FieldRole::EndToEnd),
        ]
    );
    assert_eq!(texts(&buf, &head.connection_tokens), ["X-Hop"]);
}

#[test]
fn response_head_reused() {
    let first = response_of(
        "HTTP/1.1 200 OK",
        &[
            "Date: Sun, 06 Nov 1994 08:49:37 GMT",
            "Connection: X-A",
            "Content-Length: 7",
        ],
    );
    let second = response_of("HTTP/1.1 204 No Content", &[]);
    let mut head = ResponseHead::default();
    assert!(matches!(
        parse_response(&first, LIMITS, false, &mut head),
        Ok(true)
    ));
    assert!(matches!(
        parse_response(&second, LIMITS, false, &mut head),
        Ok(true)
    ));
    assert_eq!(head.status, 204);
    assert!(head.fields.is_empty());
    assert!(head.connection_tokens.is_empty());
    assert!(!head.has_date);
    assert_eq!(head.content_length, None);
    assert_eq!(head.body, Some(BodyKind::None));
}

#[test]
fn field_roles_by_name() {
    let cases: [(&[u8], FieldRole); 20] = [
        (b"TE", FieldRole::HopByHop),
        (b"Via", FieldRole::Via),
        (b"HOST", FieldRole::Host),
        (b"Trailer", FieldRole::HopByHop),
        (b"upgrade", FieldRole::HopByHop),
        (b"Forwarded", FieldRole::Forwarded),
        (b"Connection", FieldRole::HopByHop),
        (b"Keep-Alive", FieldRole::HopByHop),
        (b"Content-Length", FieldRole::HopByHop),
        (b"HTTP2-Settings", FieldRole::HopByHop),
        (b"X-Forwarded-For", FieldRole::ForwardedFor),
        (b"Proxy-Connection", FieldRole::HopByHop),
        (b"X-Forwarded-Host", FieldRole::ForwardedReplaced),
        (b"Transfer-Encoding", FieldRole::HopByHop),
        (b"x-forwarded-proto", FieldRole::ForwardedReplaced),
        // Names of the same lengths that are not special.
        (b"Tf", FieldRole::EndToEnd),
        (b"Hosts", FieldRole::EndToEnd),
        (b"Accept-Language", FieldRole::EndToEnd),
        (b"Content-Language", FieldRole::EndToEnd),
        (b"", FieldRole::EndToEnd),
    ];
    for (name, role) in cases {
        assert_eq!(role_of(name), role, "{}", String::from_utf8_lossy(name));
    }
}

#[test]
fn reset_keeps_capacity_only() {
    let raw = b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: x-one\r\nContent-Length: 3\r\n\r\nabc";
    let mut head = RequestHead::default();
    assert!(matches!(parse_request(raw, LIMITS, &mut head), Ok(true)));
    assert!(head.capacity_bytes() > 0);
    let capacity = head.capacity_bytes();
    head.reset();
    assert_eq!(head.capacity_bytes(), capacity);
    assert!(head.fields.is_empty());
    assert!(head.connection_tokens.is_empty());
    assert_eq!(head.body, None);
    assert_eq!(head.head_len, 0);
    assert!(head.host.is_none());

    let raw = b"HTTP/1.1 200 OK\r\nConnection: x-two\r\nContent-Length: 0\r\n\r\n";
    let mut head = ResponseHead::default();
    assert!(matches!(parse_response(raw, LIMITS, false, &mut head), Ok(true)));
    let capacity = head.capacity_bytes();
    head.reset();
    assert_eq!(head.capacity_bytes(), capacity);
    assert!(head.fields.is_empty());
    assert!(head.connection_tokens.is_empty());
    assert_eq!(head.status, 0);
    assert_eq!(head.content_length, None);
}
