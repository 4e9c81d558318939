//! Tests of `ringway-origin` and of the shared harness, run directly against the
//! origins with no proxy in between.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    Origin, RawOrigin, RawRequest, TIMEOUT, chunked_body, connect, pattern_bytes, pattern_ok,
    read_request, read_response, read_response_streaming, read_to_close, run_fetch,
};

/// Bound for one `ringway-origin fetch` run against a local origin.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("failed to send the request");
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: origin.test\r\n\r\n")
}

/// Sends `GET target` with `Connection: close` and returns everything the origin sent.
fn get_raw(origin: &Origin, target: &str) -> Vec<u8> {
    let mut stream = connect(origin.addr);
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n");
    send(&mut stream, request.as_bytes());
    read_to_close(&mut stream)
}

/// Splits a raw response into head and body at the first empty line.
fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("response has no empty line after its head");
    raw.split_at(end + 4)
}

/// Returns the chunk sizes of a raw chunked body, the final 0 included.
fn chunk_sizes(mut body: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|window| window == b"\r\n")
            .expect("chunk-size line has no CRLF");
        let line = std::str::from_utf8(&body[..line_end]).expect("chunk-size line is not ASCII");
        let size = usize::from_str_radix(line, 16).expect("chunk size is not hex");
        sizes.push(size);
        if size == 0 {
            assert_eq!(
                &body[line_end..],
                b"\r\n\r\n",
                "last chunk is not followed by CRLF"
            );
            return sizes;
        }
        let data_end = line_end + 2 + size;
        assert_eq!(
            &body[data_end..data_end + 2],
            b"\r\n",
            "chunk data has no CRLF"
        );
        body = &body[data_end + 2..];
    }
}

#[test]
fn origin_bytes_fixed_length() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(&mut stream, get("/bytes/100000").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");

    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("100000"));
    assert!(!response.chunked);
    assert!(response.complete);
    assert_eq!(response.body.len(), 100_000);
    assert!(pattern_ok(&response.body, 0));
}

#[test]
fn origin_bytes_rejects_invalid_lengths() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    for target in [
        "/bytes/12a",
        "/bytes/-1",
        "/bytes/+5",
        "/bytes/",
        "/bytes/18446744073709551616",
    ] {
        send(&mut stream, get(target).as_bytes());
        let response = read_response(&mut stream, false).expect("failed to read the response");
        assert_eq!(response.status, 400, "{target}");
        assert!(
            response.body_text().contains("invalid N"),
            "{target}: {}",
            response.body_text()
        );
    }

    // The largest u64 parses, which HEAD shows without sending the body.
    send(
        &mut stream,
        b"HEAD /bytes/18446744073709551615 HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    );
    let response = read_response(&mut stream, true).expect("failed to read the HEAD response");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-length"),
        Some("18446744073709551615")
    );
}

#[test]
fn origin_bytes_zero_length() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(&mut stream, get("/bytes/0").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("0"));
    assert!(response.body.is_empty());
}

#[test]
fn origin_chunked_uses_chunk_size() {
    let origin = Origin::start();
    let raw = get_raw(&origin, "/chunked/100000?chunk=4096");
    let (head, body) = split_head(&raw);
    let head = String::from_utf8_lossy(head);
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(!head.contains("Content-Length"), "{head}");

    let mut expected = vec![4096; 24];
    expected.extend([100_000 - 24 * 4096, 0]);
    assert_eq!(chunk_sizes(body), expected);

    let mut stream = connect(origin.addr);
    send(&mut stream, get("/chunked/100000?chunk=4096").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert!(response.chunked);
    assert!(response.complete);
    assert_eq!(response.body.len(), 100_000);
    assert!(pattern_ok(&response.body, 0));
}

#[test]
fn origin_chunked_default_chunk_size() {
    let origin = Origin::start();
    let raw = get_raw(&origin, "/chunked/40000");
    let (_, body) = split_head(&raw);
    assert_eq!(chunk_sizes(body), vec![16384, 16384, 40000 - 2 * 16384, 0]);
}

#[test]
fn origin_rejects_bad_query() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    for (target, message) in [
        ("/chunked/10?chunk=0", "invalid chunk"),
        ("/chunked/10?chunk=x", "invalid chunk"),
        ("/chunked/10?chunk=1&chunk=2", "repeated"),
        ("/chunked/10?size=1", "unknown query parameter `size`"),
        ("/bytes/10?chunk=1", "unknown query parameter `chunk`"),
        ("/trickle/10?piece=0", "invalid piece"),
    ] {
        send(&mut stream, get(target).as_bytes());
        let response = read_response(&mut stream, false).expect("failed to read the response");
        assert_eq!(response.status, 400, "{target}");
        assert!(
            response.body_text().contains(message),
            "{target}: {}",
            response.body_text()
        );
    }
}

#[test]
fn origin_close_delimited_body() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(&mut stream, get("/close/50000").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");

    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.header("transfer-encoding"), None);
    assert!(response.complete);
    assert_eq!(response.body.len(), 50_000);
    assert!(pattern_ok(&response.body, 0));
}

#[test]
fn origin_head_sends_no_body() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"HEAD /bytes/1000 HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    );
    let response = read_response(&mut stream, true).expect("failed to read the HEAD response");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("1000"));
    assert!(response.body.is_empty());

    send(
        &mut stream,
        b"HEAD /chunked/1000 HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    );
    let response = read_response(&mut stream, true).expect("failed to read the HEAD response");
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));

    // Had either HEAD response carried a body, this response would not parse.
    send(&mut stream, get("/small").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the GET response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, pattern_bytes(0, 100));
}

#[test]
fn origin_small_is_text_plain() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(&mut stream, get("/small").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.header("content-length"), Some("100"));
    assert_eq!(response.body, pattern_bytes(0, 100));
}

#[test]
fn origin_date_header_is_imf_fixdate() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(&mut stream, get("/small").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");
    let date = response.header("date").expect("response has no Date");
    // For example "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 section 5.6.7).
    assert_eq!(date.len(), 29, "{date}");
    assert!(date.ends_with(" GMT"), "{date}");
    assert_eq!(&date[3..5], ", ", "{date}");
}

#[test]
fn origin_echo_content_length() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    let body = pattern_bytes(7, 10_000);
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Type: application/x-test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    send(&mut stream, head.as_bytes());
    send(&mut stream, &body);
    let response = read_response(&mut stream, false).expect("failed to read the response");

    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("10000"));
    assert_eq!(response.header("content-type"), Some("application/x-test"));
    assert!(!response.chunked);
    assert_eq!(response.body, body);
}

#[test]
fn origin_echo_chunked() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    let body = pattern_bytes(0, 5000);
    send(
        &mut stream,
        b"PUT /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    send(&mut stream, &chunked_body(&body, 1000));
    let response = read_response(&mut stream, false).expect("failed to read the response");

    assert_eq!(response.status, 200);
    assert!(response.chunked);
    assert_eq!(response.header("content-length"), None);
    assert!(response.complete);
    assert_eq!(response.body, body);
}

#[test]
fn origin_echo_streams_before_body_ends() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    send(&mut stream, b"5\r\nfirst\r\n");

    // The first piece comes back while the request body is still open.
    let mut received = Vec::new();
    let mut piece = [0; 1024];
    let deadline = Instant::now() + TIMEOUT;
    while !received.windows(5).any(|window| window == b"first") {
        assert!(
            Instant::now() < deadline,
            "echo did not stream: {received:?}"
        );
        let read = stream.read(&mut piece).expect("failed to read the echo");
        assert_ne!(read, 0, "origin closed the connection");
        received.extend_from_slice(&piece[..read]);
    }
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\n"));

    send(&mut stream, b"6\r\nsecond\r\n0\r\n\r\n");
    let rest = read_response_tail(&mut stream, &received);
    assert!(
        rest.ends_with(b"6\r\nsecond\r\n0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Reads until the chunked response whose start is `received` has ended.
fn read_response_tail(stream: &mut TcpStream, received: &[u8]) -> Vec<u8> {
    let mut all = received.to_vec();
    let mut piece = [0; 1024];
    while !all.ends_with(b"0\r\n\r\n") {
        let read = stream.read(&mut piece).expect("failed to read the echo");
        assert_ne!(read, 0, "origin closed the connection");
        all.extend_from_slice(&piece[..read]);
    }
    all
}

#[test]
fn origin_echo_without_body() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    );
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("0"));
}

#[test]
fn origin_rejects_unsupported_framing() {
    let origin = Origin::start();
    for (codings, status) in [("gzip", 400), ("gzip, chunked", 501)] {
        let mut stream = connect(origin.addr);
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: {codings}\r\n\r\n"
        );
        send(&mut stream, head.as_bytes());
        let response = read_response(&mut stream, false).expect("failed to read the response");
        assert_eq!(response.status, status, "{codings}");
        assert_eq!(response.header("connection"), Some("close"), "{codings}");
        assert!(read_to_close(&mut stream).is_empty(), "{codings}");
    }

    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 400);
    assert!(
        response.body_text().contains("both"),
        "{}",
        response.body_text()
    );

    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 5, 6\r\n\r\n",
    );
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 400);
    assert!(
        response.body_text().contains("conflicting"),
        "{}",
        response.body_text()
    );
}

#[test]
fn origin_sink_counts_body() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    let body = pattern_bytes(0, 1 << 20);
    send(
        &mut stream,
        b"POST /sink HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 1048576\r\n\r\n",
    );
    send(&mut stream, &body);
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_text(), "received 1048576 bytes\n");
    assert_eq!(response.header("content-length"), Some("23"));

    send(
        &mut stream,
        b"PUT /sink HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    send(&mut stream, &chunked_body(&body[..3000], 7));
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.body_text(), "received 3000 bytes\n");
}

#[test]
fn origin_expect_continue() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"POST /sink HTTP/1.1\r\nHost: origin.test\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    );
    let interim = read_response(&mut stream, false).expect("failed to read the interim response");
    assert_eq!(interim.status, 100);
    assert!(interim.body.is_empty());

    send(&mut stream, b"0123456789");
    let response = read_response(&mut stream, false).expect("failed to read the final response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_text(), "received 10 bytes\n");
}

#[test]
fn origin_status_codes() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);

    for (code, content_length) in [(204, None), (304, None), (503, Some("0")), (418, Some("0"))] {
        send(&mut stream, get(&format!("/status/{code}")).as_bytes());
        let response = read_response(&mut stream, false).expect("failed to read the response");
        assert_eq!(response.status, code);
        assert_eq!(response.header("content-length"), content_length, "{code}");
        assert!(response.body.is_empty(), "{code}");
    }

    // An interim response arrives on its own, followed by the final 200.
    send(&mut stream, get("/status/103").as_bytes());
    let interim = read_response(&mut stream, false).expect("failed to read the interim response");
    assert_eq!(interim.status, 103);
    assert_eq!(interim.reason, "Early Hints");
    let response = read_response(&mut stream, false).expect("failed to read the final response");
    assert_eq!(response.status, 200);

    for code in ["101", "99", "600", "20x"] {
        send(&mut stream, get(&format!("/status/{code}")).as_bytes());
        let response = read_response(&mut stream, false).expect("failed to read the response");
        assert_eq!(response.status, 400, "{code}");
    }
}

#[test]
fn origin_headers_returns_raw_head() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    let head = b"GET /headers HTTP/1.1\r\nHost: origin.test\r\nx-lower: a\r\nX-Repeat: 1\r\nX-Repeat: 2\r\n\r\n";
    send(&mut stream, head);
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, head);
}

#[test]
fn origin_pipelined_requests_in_order() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    let pipelined = [
        get("/bytes/10"),
        get("/status/204"),
        "POST /echo HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 4\r\n\r\nping".to_owned(),
        get("/chunked/300?chunk=100"),
        get("/small"),
    ]
    .concat();
    send(&mut stream, pipelined.as_bytes());

    let statuses_and_bodies: Vec<(u16, Vec<u8>)> = (0..5)
        .map(|_| {
            let response = read_response(&mut stream, false).expect("failed to read a response");
            (response.status, response.body)
        })
        .collect();
    assert_eq!(
        statuses_and_bodies,
        vec![
            (200, pattern_bytes(0, 10)),
            (204, Vec::new()),
            (200, b"ping".to_vec()),
            (200, pattern_bytes(0, 300)),
            (200, pattern_bytes(0, 100)),
        ]
    );
}

#[test]
fn origin_honours_connection_close() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"GET /small HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n",
    );
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body.len(), 100);
    assert!(read_to_close(&mut stream).is_empty());
}

#[test]
fn origin_http10_keep_alive_and_close() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.header("connection"), Some("keep-alive"));

    // HTTP/1.0 cannot decode chunked, so a streamed body ends with the connection.
    send(
        &mut stream,
        b"GET /chunked/1000?chunk=10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body, pattern_bytes(0, 1000));
}

#[test]
fn origin_unknown_path_is_404() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(&mut stream, get("/nowhere?x=1").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 404);
    assert_eq!(response.body_text(), "not found: /nowhere\n");

    send(
        &mut stream,
        b"DELETE /bytes/5 HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    );
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
}

#[test]
fn origin_rejects_malformed_requests() {
    let origin = Origin::start();
    let cases: [(&[u8], u16); 3] = [
        (b"GET /small HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n", 400),
        (b"GET /small HTTP/1.1\r\n\r\n", 400),
        (b"GET /small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ];
    for (request, status) in cases {
        let mut stream = connect(origin.addr);
        send(&mut stream, request);
        let response = read_response(&mut stream, false).expect("failed to read the response");
        assert_eq!(
            response.status,
            status,
            "{}",
            String::from_utf8_lossy(request)
        );
        assert!(read_to_close(&mut stream).is_empty());
    }

    let mut stream = connect(origin.addr);
    let huge = format!(
        "GET /small HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    send(&mut stream, huge.as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert_eq!(response.status, 431);

    // The origin logs each rejection, possibly just after the response went out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !origin.logs().contains("rejected request with 431")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        origin.logs().contains("rejected request with 431"),
        "{}",
        origin.logs()
    );
}

#[test]
fn origin_trickle_paces_pieces() {
    let origin = Origin::start();
    let started = Instant::now();
    let raw = get_raw(&origin, "/trickle/64?interval_ms=30&piece=16");
    let elapsed = started.elapsed();

    let (_, body) = split_head(&raw);
    assert_eq!(chunk_sizes(body), vec![16, 16, 16, 16, 0]);
    // Three pauses separate four pieces.
    assert!(elapsed >= Duration::from_millis(90), "{elapsed:?}");
}

#[test]
fn read_response_streaming_skips_storage() {
    let origin = Origin::start();
    let mut stream = connect(origin.addr);
    send(&mut stream, get("/chunked/3000000?chunk=65536").as_bytes());
    let mut offset = 0;
    let mut pattern_held = true;
    let response = read_response_streaming(&mut stream, false, &mut |data| {
        pattern_held &= pattern_ok(data, offset);
        offset += data.len() as u64;
    })
    .expect("failed to read the response");
    assert!(pattern_held);
    assert_eq!(offset, 3_000_000);
    assert_eq!(response.body_len, 3_000_000);
    assert!(response.body.is_empty());
    assert!(response.complete);
}

#[test]
fn pattern_ok_detects_changes() {
    let body = pattern_bytes(0, 1000);
    assert_eq!(body[250], 250);
    assert_eq!(body[251], 0);
    assert!(pattern_ok(&body, 0));
    assert!(pattern_ok(&body[300..], 300));
    assert!(!pattern_ok(&body[300..], 301));
    assert!(pattern_ok(&pattern_bytes(u64::MAX - 10, 5), u64::MAX - 10));

    let mut changed = body.clone();
    changed[999] ^= 1;
    assert!(!pattern_ok(&changed, 0));

    // A repeated piece breaks the pattern even when it is a power of two long.
    let mut repeated = body[..512].to_vec();
    repeated.extend_from_slice(&body[256..512]);
    assert!(!pattern_ok(&repeated, 0));
}

#[test]
fn raw_origin_scripted_reply() {
    let (requests, received) = mpsc::channel::<RawRequest>();
    let origin = RawOrigin::start(move |mut stream, index| {
        let request = read_request(&mut stream).expect("failed to read the request");
        let reply = format!(
            "HTTP/1.1 201 Created\r\nX-Index: {index}\r\nX-Repeat: 1\r\nx-repeat: 2\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n0\r\nX-Trailer: done\r\n\r\n"
        );
        let _ = requests.send(request);
        stream
            .write_all(reply.as_bytes())
            .expect("failed to send the reply");
    });

    let mut stream = connect(origin.addr);
    let body_raw = b"4;name=value\r\nwxyz\r\n2\r\n!!\r\n0\r\nX-Sum: 6\r\n\r\n";
    send(
        &mut stream,
        b"POST /upload?q=1 HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    send(&mut stream, body_raw);
    let response = read_response(&mut stream, false).expect("failed to read the response");

    let request = received
        .recv_timeout(TIMEOUT)
        .expect("origin received no request");
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, "/upload?q=1");
    assert_eq!(request.version, 1);
    assert_eq!(request.header("HOST"), Some("raw.test"));
    assert!(request.chunked);
    assert!(request.complete);
    assert_eq!(request.body, b"wxyz!!");
    assert_eq!(request.body_raw, body_raw);
    assert_eq!(request.trailers, vec![("X-Sum".to_owned(), "6".to_owned())]);

    assert_eq!(response.status, 201);
    assert_eq!(response.reason, "Created");
    assert_eq!(response.header("x-index"), Some("0"));
    assert_eq!(response.headers_named("X-Repeat"), vec!["1", "2"]);
    assert_eq!(response.body, b"abc");
    assert_eq!(
        response.trailers,
        vec![("X-Trailer".to_owned(), "done".to_owned())]
    );
    assert!(response.raw_head.starts_with(b"HTTP/1.1 201 Created\r\n"));
    assert!(response.raw_head.ends_with(b"\r\n\r\n"));
    assert_eq!(origin.connections(), 1);

    let mut second = connect(origin.addr);
    send(&mut second, get("/").as_bytes());
    let response = read_response(&mut second, false).expect("failed to read the second response");
    assert_eq!(response.header("x-index"), Some("1"));
    assert_eq!(origin.connections(), 2);
}

#[test]
fn read_request_leaves_pipelined_bytes() {
    let (requests, received) = mpsc::channel::<RawRequest>();
    let origin = RawOrigin::start(move |mut stream, _| {
        for _ in 0..2 {
            let request = read_request(&mut stream).expect("failed to read a request");
            let _ = requests.send(request);
        }
    });
    let mut stream = connect(origin.addr);
    send(
        &mut stream,
        b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let first = received
        .recv_timeout(TIMEOUT)
        .expect("origin received no first request");
    let second = received
        .recv_timeout(TIMEOUT)
        .expect("origin received no second request");
    assert_eq!(
        (first.target.as_str(), first.body.as_slice()),
        ("/a", b"abc".as_slice())
    );
    assert_eq!(second.target, "/b");
    assert!(second.body.is_empty());
}

#[test]
fn read_response_reports_cut_bodies() {
    let origin = RawOrigin::start(|mut stream, index| {
        let _ = read_request(&mut stream);
        let reply: Vec<u8> = match index {
            0 => [
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".as_slice(),
                &pattern_bytes(0, 40),
            ]
            .concat(),
            _ => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123".to_vec(),
        };
        let _ = stream.write_all(&reply);
    });

    let mut stream = connect(origin.addr);
    send(&mut stream, get("/").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert!(!response.complete);
    assert_eq!(response.body, pattern_bytes(0, 40));
    assert_eq!(response.body_len, 40);

    let mut stream = connect(origin.addr);
    send(&mut stream, get("/").as_bytes());
    let response = read_response(&mut stream, false).expect("failed to read the response");
    assert!(!response.complete);
    assert!(response.chunked);
    assert_eq!(response.body, b"0123");
}

#[test]
fn fetch_checks_origin_bodies() {
    let origin = Origin::start();
    for (path, bytes) in [
        ("/bytes/10000000", "10000000"),
        ("/chunked/1000003?chunk=7919", "1000003"),
        ("/close/65537", "65537"),
    ] {
        let url = format!("http://{}{path}", origin.addr);
        let output = run_fetch(
            &[&url, "--expect-bytes", bytes, "--parallel", "2"],
            FETCH_TIMEOUT,
        );
        assert!(output.status.success(), "{path}: {}", output.stderr);
        assert!(
            output
                .stdout
                .contains(&format!("download 1: {bytes} bytes in ")),
            "{}",
            output.stdout
        );
        assert!(
            output
                .stdout
                .contains(&format!("download 2: {bytes} bytes in ")),
            "{}",
            output.stdout
        );
        assert!(
            output.stdout.contains("total: 2 downloads, "),
            "{}",
            output.stdout
        );
    }
}

#[test]
fn fetch_fails_on_wrong_byte() {
    let origin = RawOrigin::start(|mut stream, _| {
        let _ = read_request(&mut stream);
        let mut body = pattern_bytes(0, 1000);
        body[500] = 0;
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(&[head.as_slice(), &body].concat());
    });
    let url = format!("http://{}/bytes/1000", origin.addr);
    let output = run_fetch(&[&url, "--expect-bytes", "1000"], FETCH_TIMEOUT);
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    // Byte 500 of the pattern is 500 % 251 = 249 = 0xf9.
    assert!(
        output
            .stderr
            .contains("body mismatch at offset 500: expected 0xf9, got 0x00"),
        "{}",
        output.stderr
    );
}

#[test]
fn fetch_fails_on_early_close() {
    let origin = RawOrigin::start(|mut stream, _| {
        let _ = read_request(&mut stream);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        let _ = stream.write_all(&[head.as_slice(), &pattern_bytes(0, 600)].concat());
    });
    let url = format!("http://{}/bytes/1000", origin.addr);
    let output = run_fetch(&[&url], FETCH_TIMEOUT);
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    assert!(output.stderr.contains("short body"), "{}", output.stderr);
    assert!(output.stderr.contains("600 of 1000"), "{}", output.stderr);
}

#[test]
fn fetch_fails_on_bytes_after_body() {
    let origin = RawOrigin::start(|mut stream, _| {
        let _ = read_request(&mut stream);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        let _ = stream.write_all(&[head.as_slice(), &pattern_bytes(0, 110)].concat());
    });
    let url = format!("http://{}/bytes/100", origin.addr);
    let output = run_fetch(&[&url], FETCH_TIMEOUT);
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    assert!(
        output.stderr.contains("unexpected bytes after the end"),
        "{}",
        output.stderr
    );
}

#[test]
fn fetch_fails_on_conflicting_framing() {
    let origin = RawOrigin::start(|mut stream, _| {
        let _ = read_request(&mut stream);
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\x00\x01\x02\r\n0\r\n\r\n";
        let _ = stream.write_all(reply);
    });
    let url = format!("http://{}/", origin.addr);
    let output = run_fetch(&[&url], FETCH_TIMEOUT);
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("both Transfer-Encoding and Content-Length"),
        "{}",
        output.stderr
    );
}

#[test]
fn fetch_fails_on_length_or_status() {
    let origin = Origin::start();
    let url = format!("http://{}/bytes/10", origin.addr);
    let output = run_fetch(&[&url, "--expect-bytes", "11"], FETCH_TIMEOUT);
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("body length mismatch: expected 11 bytes, got 10"),
        "{}",
        output.stderr
    );

    let url = format!("http://{}/status/404", origin.addr);
    let output = run_fetch(&[&url], FETCH_TIMEOUT);
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    assert!(
        output.stderr.contains("unexpected status 404"),
        "{}",
        output.stderr
    );
}

#[test]
fn fetch_rejects_bad_arguments() {
    for args in [
        vec!["https://127.0.0.1:1/"],
        vec!["http://127.0.0.1:1/", "--parallel", "0"],
        vec!["http://127.0.0.1:1/", "--expect-bytes", "-3"],
        vec![],
    ] {
        let output = run_fetch(&args, FETCH_TIMEOUT);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", output.stderr);
    }
}
