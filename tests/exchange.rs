//! Normal traffic through the real `ringway` binary: keep-alive, pipelining, request and
//! response body framing, HTTP/1.0 clients, header transparency, hop-by-hop removal,
//! interim responses and large bodies. Every scenario runs under io_uring and epoll.

mod common;

use std::thread;
use std::time::Duration;

use common::{
    DRIVERS, Origin, RecordingOrigin, Reply, Ringway, chunked_body, config_for, connect,
    ok_with_body, pattern_bytes, read_response, read_response_streaming, reply_with_target, send,
    wait_for_close,
};

/// Requests sent on one client connection by the keep-alive test.
const KEEP_ALIVE_REQUESTS: usize = 20;

/// Size of the large download and upload bodies: twice ringway's whole buffer pool at
/// the defaults (512 buffers of 64 KiB), so a proxy that kept the body would fail.
const LARGE_BODY_BYTES: u64 = 64 << 20;

/// Size of the pieces the large uploads are written in.
const UPLOAD_PIECE_BYTES: usize = 1 << 20;

/// Bound for ringway to close a connection it announced `Connection: close` on.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Returns a GET request for `target` with `Host: gw.test` and `extra` header lines.
fn get(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{extra}\r\n")
}

/// Sends a GET for `target` on `stream` and checks that the response is a 200 with the
/// body that `reply_with_target` sends.
fn assert_target_echoed(stream: &mut std::net::TcpStream, target: &str, context: &str) {
    send(stream, get(target, "").as_bytes());
    let response = read_response(stream, false)
        .unwrap_or_else(|error| panic!("{context}: no response to GET {target}: {error}"));
    assert_eq!(response.status, 200, "{context}: status of GET {target}");
    assert_eq!(
        response.body_text(),
        target,
        "{context}: body of GET {target}"
    );
}

/// Returns the origin's reply: "stored" for a POST, the target for anything else.
fn store_or_echo(request: &common::RawRequest) -> Reply {
    if request.method == "POST" {
        Reply::keep_open(ok_with_body(b"stored"))
    } else {
        reply_with_target(request)
    }
}

// RFC 9112 section 9.3: an HTTP/1.1 connection persists by default, and a proxy keeps
// its upstream connections for reuse too.
#[test]
fn keep_alive_many_requests() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        for index in 0..KEEP_ALIVE_REQUESTS {
            let target = format!("/item/{index}");
            let context = format!("{driver:?} request {index}");
            assert_target_echoed(&mut stream, &target, &context);
            let seen = origin.next_request();
            assert_eq!(
                seen.request.target, target,
                "{context}: target at the origin"
            );
            assert_eq!(seen.connection, 0, "{context}: upstream connection used");
        }
        assert_eq!(
            origin.connections(),
            1,
            "{driver:?}: upstream connections for {KEEP_ALIVE_REQUESTS} sequential requests"
        );
    }
}

// RFC 9112 section 9.3.2: responses to pipelined requests come in the order the requests
// were sent.
#[test]
fn pipelined_requests_in_order() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        let targets = ["/first", "/second", "/third"];
        let pipelined: String = targets.iter().map(|target| get(target, "")).collect();
        send(&mut stream, pipelined.as_bytes());
        for target in targets {
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{driver:?}: no response for {target}: {error}"));
            assert_eq!(response.status, 200, "{driver:?}: status for {target}");
            assert_eq!(response.body_text(), target, "{driver:?}: response order");
        }
        for target in targets {
            let seen = origin.next_request();
            assert_eq!(
                seen.request.target, target,
                "{driver:?}: order at the origin"
            );
        }
        assert_target_echoed(
            &mut stream,
            "/after",
            &format!("{driver:?} after pipelining"),
        );
    }
}

// RFC 9112 section 6.2: a body with a known length is forwarded with Content-Length and
// exactly that many bytes, not re-framed as chunked.
#[test]
fn post_content_length_forwarded() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(store_or_echo);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let body = pattern_bytes(0, 300_000);
        let mut stream = connect(proxy.addr);
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        send(&mut stream, head.as_bytes());
        send(&mut stream, &body);
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response to the POST: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");
        assert_eq!(response.body, b"stored", "{driver:?}: response body");

        let request = origin.next_request().request;
        assert_eq!(
            request.headers_named("Content-Length"),
            vec!["300000"],
            "{driver:?}: Content-Length at the origin"
        );
        assert!(
            request.headers_named("Transfer-Encoding").is_empty(),
            "{driver:?}: Transfer-Encoding at the origin: {:?}",
            request.headers
        );
        assert!(request.complete, "{driver:?}: body complete at the origin");
        assert!(
            request.body_raw == body,
            "{driver:?}: body bytes at the origin differ"
        );
        assert_target_echoed(&mut stream, "/after", &format!("{driver:?} after the POST"));
    }
}

// RFC 9112 section 7.1: ringway decodes a chunked request body and encodes it again with
// its own chunk sizes, so the origin receives valid chunked framing and the same data.
#[test]
fn post_chunked_reencoded() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(store_or_echo);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let data = pattern_bytes(0, 200_000);
        // Odd chunk sizes, an extension on the first chunk and a trailer field.
        let mut body = b"7;ext=1\r\n".to_vec();
        body.extend_from_slice(&data[..7]);
        body.extend_from_slice(b"\r\n");
        let rest = chunked_body(&data[7..], 9_999);
        let rest = rest
            .strip_suffix(b"0\r\n\r\n")
            .expect("chunked_body ends with the last chunk");
        body.extend_from_slice(rest);
        body.extend_from_slice(b"0\r\nX-Checksum: 42\r\n\r\n");

        let mut stream = connect(proxy.addr);
        send(
            &mut stream,
            b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        send(&mut stream, &body);
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response to the POST: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");

        let request = origin.next_request().request;
        assert_eq!(
            request.headers_named("Transfer-Encoding"),
            vec!["chunked"],
            "{driver:?}: Transfer-Encoding at the origin"
        );
        assert!(
            request.headers_named("Content-Length").is_empty(),
            "{driver:?}: Content-Length at the origin: {:?}",
            request.headers
        );
        assert!(request.chunked, "{driver:?}: origin body is chunked");
        assert!(
            request.complete,
            "{driver:?}: chunked body complete at the origin"
        );
        assert!(
            request.body == data,
            "{driver:?}: decoded body at the origin differs"
        );
        assert!(
            !request.body_raw.windows(5).any(|window| window == b";ext="),
            "{driver:?}: the client's chunk extension reached the origin, so the body was not re-encoded"
        );
        assert_target_echoed(&mut stream, "/after", &format!("{driver:?} after the POST"));
    }
}

// RFC 9110 section 8.6: Content-Length: 0 states an empty body and is kept as it is.
#[test]
fn post_empty_content_length() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(
            &mut stream,
            b"POST /empty HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");

        let request = origin.next_request().request;
        assert_eq!(
            request.headers_named("Content-Length"),
            vec!["0"],
            "{driver:?}: Content-Length at the origin"
        );
        assert!(
            request.headers_named("Transfer-Encoding").is_empty(),
            "{driver:?}: Transfer-Encoding at the origin"
        );
        assert!(
            request.body_raw.is_empty(),
            "{driver:?}: body at the origin"
        );
        assert_target_echoed(&mut stream, "/after", &format!("{driver:?} after the POST"));
    }
}

// RFC 9110 section 9.3.1: content in a GET has no defined meaning, but its framing still
// delimits the message, so the body is forwarded with it.
#[test]
fn get_with_body_forwarded() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(
            &mut stream,
            b"GET /search HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");
        assert_eq!(response.body_text(), "/search", "{driver:?}: body");

        let request = origin.next_request().request;
        assert_eq!(request.method, "GET", "{driver:?}: method");
        assert_eq!(
            request.headers_named("Content-Length"),
            vec!["5"],
            "{driver:?}: Content-Length at the origin"
        );
        assert_eq!(request.body_raw, b"hello", "{driver:?}: body at the origin");
        assert_target_echoed(&mut stream, "/after", &format!("{driver:?} after the GET"));
        assert_eq!(
            origin.next_request().request.target,
            "/after",
            "{driver:?}: next request"
        );
    }
}

// RFC 9112 section 6.3 item 1: responses to HEAD and 204 and 304 responses end at the
// empty line after the head, and the connection carries on with the next request.
#[test]
fn bodiless_responses_keep_connection() {
    for driver in DRIVERS {
        let origin = Origin::start();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        let cases = [
            ("HEAD", "/bytes/1234", 200, Some("1234")),
            ("GET", "/status/204", 204, None),
            ("GET", "/status/304", 304, None),
        ];
        for (method, target, status, content_length) in cases {
            let context = format!("{driver:?} {method} {target}");
            let request = format!("{method} {target} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
            send(&mut stream, request.as_bytes());
            let response = read_response(&mut stream, method == "HEAD")
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, status, "{context}: status");
            assert_eq!(
                response.header("Content-Length"),
                content_length,
                "{context}: Content-Length"
            );
            assert_eq!(
                response.header("Transfer-Encoding"),
                None,
                "{context}: Transfer-Encoding"
            );
            assert_eq!(response.header("Connection"), None, "{context}: Connection");

            send(&mut stream, get("/small", "").as_bytes());
            let next = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response to the next GET: {error}"));
            assert_eq!(next.status, 200, "{context}: status of the next GET");
            assert_eq!(
                next.body,
                pattern_bytes(0, 100),
                "{context}: body of the next GET"
            );
        }
    }
}

// RFC 9112 section 7: a chunked response goes to an HTTP/1.1 client chunked, with the
// same data.
#[test]
fn chunked_response_relayed() {
    for driver in DRIVERS {
        let origin = Origin::start();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/chunked/100000?chunk=777", "").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");
        assert!(
            response.chunked,
            "{driver:?}: response is not chunked: {:?}",
            response.headers
        );
        assert_eq!(
            response.header("Content-Length"),
            None,
            "{driver:?}: Content-Length"
        );
        assert!(
            response.complete,
            "{driver:?}: body ends with the last chunk"
        );
        assert!(
            response.body == pattern_bytes(0, 100_000),
            "{driver:?}: body bytes differ"
        );

        send(&mut stream, get("/small", "").as_bytes());
        let next = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response to the next GET: {error}"));
        assert_eq!(next.status, 200, "{driver:?}: status of the next GET");
    }
}

// RFC 9112 section 6.3 item 8 and section 7: a close-delimited body goes to an HTTP/1.1
// client chunked, so the client connection outlives the upstream one.
#[test]
fn close_delimited_reframed_chunked() {
    for driver in DRIVERS {
        let origin = Origin::start();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/close/100000", "").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");
        assert!(
            response.chunked,
            "{driver:?}: response is not chunked: {:?}",
            response.headers
        );
        assert!(
            response.complete,
            "{driver:?}: body ends with the last chunk"
        );
        assert!(
            response.body == pattern_bytes(0, 100_000),
            "{driver:?}: body bytes differ"
        );
        assert_eq!(
            response.header("Connection"),
            None,
            "{driver:?}: Connection"
        );

        send(&mut stream, get("/small", "").as_bytes());
        let next = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response to the next GET: {error}"));
        assert_eq!(next.status, 200, "{driver:?}: status of the next GET");
        assert_eq!(
            next.body,
            pattern_bytes(0, 100),
            "{driver:?}: body of the next GET"
        );
    }
}

// RFC 9112 section 6.3 item 8: an HTTP/1.0 client cannot read chunked, so a body without
// a known length ends with the connection.
#[test]
fn close_delimited_to_http10() {
    for driver in DRIVERS {
        let origin = Origin::start();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        for target in ["/close/100000", "/chunked/100000?chunk=4096"] {
            let context = format!("{driver:?} HTTP/1.0 GET {target}");
            let mut stream = connect(proxy.addr);
            let request =
                format!("GET {target} HTTP/1.0\r\nHost: gw.test\r\nConnection: keep-alive\r\n\r\n");
            send(&mut stream, request.as_bytes());
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
                response.header("Connection"),
                Some("close"),
                "{context}: Connection"
            );
            assert!(
                response.body == pattern_bytes(0, 100_000),
                "{context}: body bytes differ"
            );
        }
    }
}

// RFC 9112 section 9.3: an HTTP/1.0 connection closes after the response unless the
// client sent keep-alive and the body has a known length.
#[test]
fn http10_connection_persistence() {
    for driver in DRIVERS {
        let origin = Origin::start();
        let proxy = Ringway::start(&config_for(origin.addr, driver));

        let context = format!("{driver:?} HTTP/1.0 without keep-alive");
        let mut stream = connect(proxy.addr);
        send(
            &mut stream,
            b"GET /bytes/1000 HTTP/1.0\r\nHost: gw.test\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
        assert_eq!(response.status, 200, "{context}: status");
        assert_eq!(
            response.header("Content-Length"),
            Some("1000"),
            "{context}: Content-Length"
        );
        assert_eq!(
            response.header("Connection"),
            Some("close"),
            "{context}: Connection"
        );
        assert_eq!(response.body, pattern_bytes(0, 1000), "{context}: body");
        let rest = wait_for_close(&mut stream, CLOSE_WAIT)
            .unwrap_or_else(|| panic!("{context}: connection still open after {CLOSE_WAIT:?}"));
        assert!(
            rest.is_empty(),
            "{context}: bytes after the response: {rest:?}"
        );

        let context = format!("{driver:?} HTTP/1.0 with keep-alive");
        let mut stream = connect(proxy.addr);
        for round in 0..2 {
            send(
                &mut stream,
                b"GET /bytes/1000 HTTP/1.0\r\nHost: gw.test\r\nConnection: keep-alive\r\n\r\n",
            );
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response {round}: {error}"));
            assert_eq!(response.status, 200, "{context}: status {round}");
            assert_eq!(
                response.version, 1,
                "{context}: ringway answers as HTTP/1.1"
            );
            assert_eq!(
                response.header("Content-Length"),
                Some("1000"),
                "{context}: Content-Length"
            );
            assert_eq!(
                response.header("Transfer-Encoding"),
                None,
                "{context}: Transfer-Encoding"
            );
            assert_eq!(
                response.header("Connection"),
                Some("keep-alive"),
                "{context}: Connection"
            );
            assert_eq!(
                response.body,
                pattern_bytes(0, 1000),
                "{context}: body {round}"
            );
        }
    }
}

// RFC 9112 section 3.2.2: an absolute-form target goes on unchanged, and its authority
// replaces the Host header.
#[test]
fn absolute_form_target() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        let target = "http://shop.example.test:8080/cart/items?id=7&x=%2F";
        let request = format!("GET {target} HTTP/1.1\r\nHost: other.test\r\n\r\n");
        send(&mut stream, request.as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");

        let request = origin.next_request().request;
        assert_eq!(request.target, target, "{driver:?}: target at the origin");
        assert_eq!(
            request.headers_named("Host"),
            vec!["shop.example.test:8080"],
            "{driver:?}: Host at the origin"
        );
    }
}

// RFC 9110 section 7.1 and RFC 3986 section 2.4: a proxy forwards the target it received
// without decoding it, because decoding %2F or reordering a query changes the resource. The
// exceptions are the normalizations of RFC 3986 section 6.2.2 that keep the resource: ringway
// decodes escaped unreserved characters, merges repeated slashes and resolves dot segments
// before routing, and forwards that path, so the upstream serves the path the route matched.
#[test]
fn request_target_bytes_kept() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        let targets = [
            ("/files/a%2Fb/../c%20d", "/files/c%20d"),
            (
                "/search?q=a+b&q=%26&empty=&&flag",
                "/search?q=a+b&q=%26&empty=&&flag",
            ),
            ("/p;matrix=1/%7Euser/./x?", "/p;matrix=1/~user/x?"),
            ("//double//slash", "/double/slash"),
            ("/a%2Fb/%41", "/a%2Fb/A"),
        ];
        for (target, forwarded) in targets {
            let context = format!("{driver:?} target {target}");
            send(&mut stream, get(target, "").as_bytes());
            let response = read_response(&mut stream, false)
                .unwrap_or_else(|error| panic!("{context}: no response: {error}"));
            assert_eq!(response.status, 200, "{context}: status");
            assert_eq!(
                origin.next_request().request.target,
                forwarded,
                "{context}: at the origin"
            );
        }
    }
}

// RFC 9110 section 5.3: the order of field lines with the same name is significant, so a
// proxy must not change it. Names are forwarded in the case the client used.
#[test]
fn header_order_case_repeats() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(
            &mut stream,
            b"GET /h HTTP/1.1\r\nX-Custom: one\r\nHost: gw.test\r\nx-MiXeD-case: Value With  Spaces\r\n\
              Accept: */*\r\nX-Custom: two\r\nx-custom: three\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");

        let request = origin.next_request().request;
        let end_to_end: Vec<(&str, &str)> = request
            .headers
            .iter()
            .filter(|(name, _)| {
                ["x-custom", "x-mixed-case", "accept", "host"]
                    .iter()
                    .any(|wanted| name.eq_ignore_ascii_case(wanted))
            })
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            end_to_end,
            vec![
                ("X-Custom", "one"),
                ("Host", "gw.test"),
                ("x-MiXeD-case", "Value With  Spaces"),
                ("Accept", "*/*"),
                ("X-Custom", "two"),
                ("x-custom", "three"),
            ],
            "{driver:?}: end-to-end fields at the origin"
        );
    }
}

/// Hop-by-hop fields that a client or an origin may send, none of which may be forwarded.
const HOP_BY_HOP_FIELDS: [&str; 7] = [
    "Connection",
    "Keep-Alive",
    "TE",
    "Trailer",
    "Upgrade",
    "Proxy-Connection",
    "X-Foo",
];

// RFC 9110 section 7.6.1: a proxy removes Connection, the fields it names, and the other
// hop-by-hop fields before forwarding a request. Connection: close ends the client
// connection after the response.
#[test]
fn hop_by_hop_request_fields_removed() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(
            &mut stream,
            b"GET /hop HTTP/1.1\r\nHost: gw.test\r\nConnection: close, x-foo\r\nX-Foo: secret\r\n\
              Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\n\
              Proxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n",
        );
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");
        assert_eq!(
            response.header("Connection"),
            Some("close"),
            "{driver:?}: Connection"
        );
        let rest = wait_for_close(&mut stream, CLOSE_WAIT).unwrap_or_else(|| {
            panic!("{driver:?}: client connection open after Connection: close")
        });
        assert!(
            rest.is_empty(),
            "{driver:?}: bytes after the response: {rest:?}"
        );

        let request = origin.next_request().request;
        for field in HOP_BY_HOP_FIELDS {
            assert_eq!(
                request.header(field),
                None,
                "{driver:?}: {field} reached the origin: {:?}",
                request.headers
            );
        }
        assert_eq!(request.header("X-Kept"), Some("yes"), "{driver:?}: X-Kept");
    }
}

// RFC 9110 section 7.6.1: the same removal applies to responses. The origin's
// Connection: close ends only the upstream connection, not the client's.
#[test]
fn hop_by_hop_response_fields_removed() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(|request| {
            if request.target == "/hop" {
                Reply::then_close(
                    b"HTTP/1.1 200 OK\r\nConnection: close, x-foo\r\nX-Foo: secret\r\n\
                      Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\n\
                      Proxy-Connection: keep-alive\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
                        .to_vec(),
                )
            } else {
                reply_with_target(request)
            }
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/hop", "").as_bytes());
        let response = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response: {error}"));
        assert_eq!(response.status, 200, "{driver:?}: status");
        assert_eq!(response.body, b"ok", "{driver:?}: body");
        for field in HOP_BY_HOP_FIELDS {
            assert_eq!(
                response.header(field),
                None,
                "{driver:?}: {field} reached the client: {:?}",
                response.headers
            );
        }
        assert_eq!(response.header("X-Kept"), Some("yes"), "{driver:?}: X-Kept");
        assert_eq!(
            response.header("Content-Length"),
            Some("2"),
            "{driver:?}: Content-Length"
        );

        assert_target_echoed(
            &mut stream,
            "/next",
            &format!("{driver:?} after the origin closed"),
        );
        let first = origin.next_request();
        let second = origin.next_request();
        assert_eq!(first.connection, 0, "{driver:?}: first upstream connection");
        assert_eq!(
            second.connection, 1,
            "{driver:?}: the closed upstream connection was reused"
        );
    }
}

// RFC 9110 section 15.2 and RFC 8297: a 1xx response is forwarded to an HTTP/1.1 client
// before the final one, and never to an HTTP/1.0 client, which cannot parse it.
#[test]
fn early_hints_forwarded() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(|_| {
            Reply::keep_open(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec(),
            )
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));

        let mut stream = connect(proxy.addr);
        send(&mut stream, get("/page", "").as_bytes());
        let hints = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no 103 response: {error}"));
        assert_eq!(hints.status, 103, "{driver:?}: first response to HTTP/1.1");
        assert_eq!(
            hints.header("Link"),
            Some("</style.css>; rel=preload"),
            "{driver:?}: Link in the 103 response"
        );
        let fin = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no final response: {error}"));
        assert_eq!(fin.status, 200, "{driver:?}: final status to HTTP/1.1");
        assert_eq!(fin.body, b"ok", "{driver:?}: final body");

        let mut stream = connect(proxy.addr);
        send(&mut stream, b"GET /page HTTP/1.0\r\nHost: gw.test\r\n\r\n");
        let fin = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{driver:?}: no response to HTTP/1.0: {error}"));
        assert_eq!(fin.status, 200, "{driver:?}: first response to HTTP/1.0");
        assert_eq!(
            fin.header("Link"),
            None,
            "{driver:?}: Link of the 103 in the 200"
        );
        assert_eq!(fin.body, b"ok", "{driver:?}: body to HTTP/1.0");
    }
}

/// Returns a body callback that checks each piece against the pattern and counts the
/// bytes, recording the offset of the first wrong piece.
fn pattern_checker<'a>(
    offset: &'a mut u64,
    first_wrong: &'a mut Option<u64>,
) -> impl FnMut(&[u8]) + 'a {
    move |piece| {
        if first_wrong.is_none() && !common::pattern_ok(piece, *offset) {
            *first_wrong = Some(*offset);
        }
        *offset += piece.len() as u64;
    }
}

// Bodies larger than every buffer ringway has stream through intact, with Content-Length
// and chunked framing.
#[test]
fn large_download_intact() {
    for driver in DRIVERS {
        let origin = Origin::start();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        for target in [
            format!("/bytes/{LARGE_BODY_BYTES}"),
            format!("/chunked/{LARGE_BODY_BYTES}?chunk=100000"),
        ] {
            let context = format!("{driver:?} GET {target}");
            send(&mut stream, get(&target, "").as_bytes());
            let mut received = 0;
            let mut first_wrong = None;
            let response = read_response_streaming(
                &mut stream,
                false,
                &mut pattern_checker(&mut received, &mut first_wrong),
            )
            .unwrap_or_else(|error| panic!("{context}: download failed: {error}"));
            assert_eq!(response.status, 200, "{context}: status");
            assert!(response.complete, "{context}: body incomplete");
            assert_eq!(received, LARGE_BODY_BYTES, "{context}: body length");
            assert_eq!(first_wrong, None, "{context}: first wrong byte offset");
        }
    }
}

/// Uploads `LARGE_BODY_BYTES` pattern bytes to /echo with `framing_header`, encoding
/// each piece with `encode`, and checks the echoed body while the upload runs.
fn upload_and_check_echo(
    proxy: &Ringway,
    framing_header: &str,
    encode: fn(&[u8]) -> Vec<u8>,
    trailer: &'static [u8],
    context: &str,
) {
    let mut stream = connect(proxy.addr);
    let head = format!("PUT /echo HTTP/1.1\r\nHost: gw.test\r\n{framing_header}\r\n\r\n");
    send(&mut stream, head.as_bytes());
    let mut writer = stream
        .try_clone()
        .expect("failed to clone the client stream");
    // The origin echoes while it reads, so the upload runs in its own thread while this one
    // reads the echo. Otherwise both sides block once the socket buffers are full.
    let upload = thread::spawn(move || {
        let mut offset = 0;
        while offset < LARGE_BODY_BYTES {
            let len = UPLOAD_PIECE_BYTES.min((LARGE_BODY_BYTES - offset) as usize);
            send(&mut writer, &encode(&pattern_bytes(offset, len)));
            offset += len as u64;
        }
        send(&mut writer, trailer);
    });
    let mut received = 0;
    let mut first_wrong = None;
    let response = read_response_streaming(
        &mut stream,
        false,
        &mut pattern_checker(&mut received, &mut first_wrong),
    )
    .unwrap_or_else(|error| panic!("{context}: reading the echo failed: {error}"));
    upload
        .join()
        .unwrap_or_else(|_| panic!("{context}: the upload thread panicked"));
    assert_eq!(response.status, 200, "{context}: status");
    assert!(response.complete, "{context}: echo incomplete");
    assert_eq!(received, LARGE_BODY_BYTES, "{context}: echoed length");
    assert_eq!(
        first_wrong, None,
        "{context}: first wrong echoed byte offset"
    );

    // ringway sends the response head before the upload has ended, so it may announce
    // Connection: close; otherwise the connection carries on.
    if response.header("Connection") == Some("close") {
        let rest = wait_for_close(&mut stream, CLOSE_WAIT)
            .unwrap_or_else(|| panic!("{context}: connection open after Connection: close"));
        assert!(rest.is_empty(), "{context}: bytes after the echo: {rest:?}");
    } else {
        send(&mut stream, get("/small", "").as_bytes());
        let next = read_response(&mut stream, false)
            .unwrap_or_else(|error| panic!("{context}: no response after the upload: {error}"));
        assert_eq!(next.status, 200, "{context}: status after the upload");
        assert_eq!(
            next.body,
            pattern_bytes(0, 100),
            "{context}: body after the upload"
        );
    }
}

// Uploads larger than every buffer ringway has stream through intact, with Content-Length
// and chunked framing, while the response streams back.
#[test]
fn large_upload_intact() {
    for driver in DRIVERS {
        let origin = Origin::start();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        upload_and_check_echo(
            &proxy,
            &format!("Content-Length: {LARGE_BODY_BYTES}"),
            |piece| piece.to_vec(),
            b"",
            &format!("{driver:?} Content-Length upload"),
        );
        upload_and_check_echo(
            &proxy,
            "Transfer-Encoding: chunked",
            |piece| {
                let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                chunk.extend_from_slice(piece);
                chunk.extend_from_slice(b"\r\n");
                chunk
            },
            b"0\r\n\r\n",
            &format!("{driver:?} chunked upload"),
        );
    }
}
