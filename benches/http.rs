//! Micro-benchmarks of ringway's I/O-free HTTP/1.1 core on realistic inputs.
//!
//! Each parse benchmark sits next to a plain `httparse` parse of the same bytes, which is the
//! floor: ringway's parsers call `httparse` and then apply the framing rules of RFC 9112, so the
//! difference between the two is the cost of those rules. Run with
//! `cargo bench --bench http`; docs/BENCHMARKS.md records a run and the machine it ran on.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ringway::config::{
    DEFAULT_BUFFER_SIZE_BYTES, DEFAULT_MAX_HEADER_COUNT, DEFAULT_MAX_REQUEST_HEAD_BYTES,
    DEFAULT_MAX_RESPONSE_HEAD_BYTES,
};
use ringway::http::body::{
    ChunkedDecoder, ChunkedLimits, LAST_CHUNK, MAX_CHUNK_HEADER_BYTES, encode_chunk_header,
};
use ringway::http::forward::{ClientIp, RequestContext, write_request_head};
use ringway::http::head::{HeadLimits, RequestHead, ResponseHead, parse_request, parse_response};
use ringway::routing::table::{HostPattern, PathMatch, RouteSpec, RouteTable};
use ringway::routing::template::{Captures, PathTemplate};

/// A browser's request for a script, modeled on the header lines Firefox 128 sends (300 bytes,
/// 8 header lines).
const BROWSER_REQUEST: &[u8] = b"GET /assets/app.3f9c2b.js HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
DNT: 1\r\n\
\r\n";

/// A request with the three header lines `curl` 8 sends by default plus a request id (120 bytes).
const CURL_REQUEST: &[u8] = b"GET /api/v1/items?limit=20 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
X-Request-Id: a1b2c\r\n\
\r\n";

/// The request heads with the names their benchmarks report them under.
const REQUESTS: [(&str, &[u8]); 2] = [
    ("browser_300B", BROWSER_REQUEST),
    ("curl_120B", CURL_REQUEST),
];

/// A login response from an application server, with three Set-Cookie lines (700 bytes,
/// 13 header lines).
const COOKIE_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Fri, 04 Dec 2026 22:59:25 GMT\r\n\
Server: Apache/2.4.62 (Debian)\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Length: 512\r\n\
Cache-Control: no-store, no-cache, must-revalidate\r\n\
Set-Cookie: session_id=8f14e45fceea167a5a36dedd4bea2543; Path=/app; HttpOnly; Secure; SameSite=Lax\r\n\
Set-Cookie: csrf_token=c9f0f895fb98ab9159f51fd0297e236d; Path=/; Secure; SameSite=Strict\r\n\
Set-Cookie: preferences=lang%3Den%26theme%3Ddark; Path=/; Max-Age=31536000; SameSite=Lax\r\n\
Vary: Accept-Encoding, Cookie\r\n\
X-Content-Type-Options: nosniff\r\n\
Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n\
Content-Security-Policy: default-src 'self'; img-src 'self' data:\r\n\
Connection: keep-alive\r\n\
\r\n";

/// Size of the chunked body: large enough that per-call overhead is noise next to the copy.
const CHUNKED_BODY_BYTES: usize = 1024 * 1024;

/// Size of each chunk, the chunk size `ringway-origin` uses for its chunked responses.
const CHUNK_BYTES: usize = 16 * 1024;

/// Header slots of the `httparse` floor: the 13 header lines of the largest input, rounded up. A plain
/// parse has to initialize its array, so sizing it to ringway's header limit (100) would charge
/// the floor for zeroing slots that ringway's parser leaves uninitialized.
const FLOOR_HEADER_SLOTS: usize = 16;

/// Route table sizes for `RouteTable::find`: one route, a small site and a large shared gateway.
const ROUTE_TABLE_SIZES: [usize; 3] = [1, 10, 100];

fn request_limits() -> HeadLimits {
    HeadLimits {
        max_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
        max_header_count: DEFAULT_MAX_HEADER_COUNT,
    }
}

fn response_limits() -> HeadLimits {
    HeadLimits {
        max_head_bytes: DEFAULT_MAX_RESPONSE_HEAD_BYTES,
        max_header_count: DEFAULT_MAX_HEADER_COUNT,
    }
}

/// Checks that the inputs have the sizes the module documentation and docs/BENCHMARKS.md give,
/// so an edit that changes them cannot go unnoticed.
fn check_input_sizes() {
    assert_eq!(BROWSER_REQUEST.len(), 300, "browser request head size");
    assert_eq!(CURL_REQUEST.len(), 120, "curl request head size");
    assert_eq!(COOKIE_RESPONSE.len(), 700, "response head size");
}

fn parse_requests(c: &mut Criterion) {
    check_input_sizes();
    for (name, input) in REQUESTS {
        let mut group = c.benchmark_group(format!("request_head/{name}"));
        group.throughput(Throughput::Bytes(input.len() as u64));

        // The floor: the same bytes through httparse alone, with no framing rules.
        group.bench_function("httparse_request_floor", |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; FLOOR_HEADER_SLOTS];
                let mut request = httparse::Request::new(&mut headers);
                let status = request.parse(black_box(input)).expect("valid request head");
                black_box((status, request.headers.len()));
            })
        });

        // The head is reused across iterations, as a connection reuses it across requests.
        let mut head = RequestHead::default();
        group.bench_function("parse_request", |b| {
            b.iter(|| {
                let complete = parse_request(black_box(input), request_limits(), &mut head)
                    .expect("valid request head");
                assert!(complete, "request head parsed as partial");
                black_box(&head);
            })
        });
        group.finish();
    }
}

fn parse_responses(c: &mut Criterion) {
    let mut group = c.benchmark_group("response_head/cookies_700B");
    group.throughput(Throughput::Bytes(COOKIE_RESPONSE.len() as u64));

    group.bench_function("httparse_response_floor", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; FLOOR_HEADER_SLOTS];
            let mut response = httparse::Response::new(&mut headers);
            let status = response
                .parse(black_box(COOKIE_RESPONSE))
                .expect("valid response head");
            black_box((status, response.headers.len()));
        })
    });

    let mut head = ResponseHead::default();
    group.bench_function("parse_response", |b| {
        b.iter(|| {
            let complete = parse_response(
                black_box(COOKIE_RESPONSE),
                response_limits(),
                false,
                &mut head,
            )
            .expect("valid response head");
            assert!(complete, "response head parsed as partial");
            black_box(&head);
        })
    });
    group.finish();
}

fn write_request_heads(c: &mut Criterion) {
    let context = RequestContext {
        client_ip: &ClientIp::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
        upstream_authority: "127.0.0.1:8080",
        target: None,
        rules: None,
        request_id: None,
    };
    for (name, input) in REQUESTS {
        let mut head = RequestHead::default();
        let complete =
            parse_request(input, request_limits(), &mut head).expect("valid request head");
        assert!(complete, "request head parsed as partial");

        // The proxy writes into a cleared buffer of the pool's size and passes its capacity as
        // the limit, so the benchmark does the same and never reallocates.
        let mut out = Vec::with_capacity(DEFAULT_BUFFER_SIZE_BYTES);
        let limit = out.capacity();
        c.bench_function(&format!("write_request_head/{name}"), |b| {
            b.iter(|| {
                out.clear();
                write_request_head(&mut out, limit, black_box(input), &head, &context)
                    .expect("forwarded head fits the limit");
                black_box(out.len());
            })
        });
    }
}

/// Encodes `CHUNKED_BODY_BYTES` of data in `CHUNK_BYTES` chunks, ending with the last chunk.
fn chunked_body() -> Vec<u8> {
    let data: Vec<u8> = (0..CHUNK_BYTES).map(|i| (i % 251) as u8).collect();
    let mut body = Vec::with_capacity(CHUNKED_BODY_BYTES + CHUNKED_BODY_BYTES / CHUNK_BYTES * 16);
    let mut header = [0; MAX_CHUNK_HEADER_BYTES];
    for _ in 0..CHUNKED_BODY_BYTES / CHUNK_BYTES {
        let len = encode_chunk_header(CHUNK_BYTES as u64, &mut header);
        body.extend_from_slice(&header[..len]);
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(LAST_CHUNK);
    body
}

fn decode_chunked(c: &mut Criterion) {
    let body = chunked_body();
    let mut group = c.benchmark_group("chunked_1MiB_16KiB_chunks");
    // Throughput counts decoded data bytes, so both variants report the same unit.
    group.throughput(Throughput::Bytes(CHUNKED_BODY_BYTES as u64));

    // The body arrives in reads of at most one pool buffer, as in the relay.
    let mut out = vec![0; DEFAULT_BUFFER_SIZE_BYTES];
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
            let mut decoded = 0;
            for read in black_box(&body).chunks(DEFAULT_BUFFER_SIZE_BYTES) {
                let mut input = read;
                while !input.is_empty() && !decoder.is_done() {
                    let progress = decoder.decode(input, &mut out).expect("valid chunked body");
                    input = &input[progress.consumed..];
                    decoded += progress.written;
                }
            }
            assert!(decoder.is_done(), "chunked body did not end");
            assert_eq!(decoded, CHUNKED_BODY_BYTES, "decoded data bytes");
            black_box(&out);
        })
    });

    // Decoding in place overwrites the input, so every iteration starts from a fresh copy,
    // made in the untimed setup.
    group.bench_function("decode_in_place", |b| {
        b.iter_batched_ref(
            || body.clone(),
            |buf| {
                let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
                let mut decoded = 0;
                for read in buf.chunks_mut(DEFAULT_BUFFER_SIZE_BYTES) {
                    let progress = decoder.decode_in_place(read).expect("valid chunked body");
                    decoded += progress.written;
                    black_box(&read[..progress.written]);
                }
                assert!(decoder.is_done(), "chunked body did not end");
                assert_eq!(decoded, CHUNKED_BODY_BYTES, "decoded data bytes");
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Builds a table of `count` routes on one host where only the last one, a path template,
/// matches `GET /assets/...`. The others are longer prefixes, so the table tries them first
/// and `find` checks every route.
fn route_table(count: usize) -> RouteTable {
    let host = || HostPattern::parse("www.example.com").expect("valid host");
    let mut specs: Vec<RouteSpec> = (1..count)
        .map(|i| RouteSpec {
            host: host(),
            path: PathMatch::Prefix(format!("/service-number-{i}/")),
            methods: Some(vec!["GET".to_owned(), "HEAD".to_owned(), "POST".to_owned()]),
            headers: Vec::new(),
            priority: 0,
            case_sensitive: true,
        })
        .collect();
    specs.push(RouteSpec {
        host: host(),
        path: PathMatch::Template(PathTemplate::parse("/assets/{*file}").expect("valid template")),
        methods: Some(vec!["GET".to_owned(), "HEAD".to_owned()]),
        headers: Vec::new(),
        priority: 0,
        case_sensitive: true,
    });
    RouteTable::new(specs)
}

fn find_routes(c: &mut Criterion) {
    let mut group = c.benchmark_group("find_route_last");
    for count in ROUTE_TABLE_SIZES {
        let table = route_table(count);
        let last = count - 1;
        let mut captures = Captures::new();
        group.bench_function(format!("{count}_routes"), |b| {
            b.iter(|| {
                captures.clear();
                let found = black_box(&table).find(
                    Some(black_box(b"WWW.Example.com:443".as_slice())),
                    black_box(b"GET".as_slice()),
                    black_box(b"/assets/app.3f9c2b.js".as_slice()),
                    |_| None,
                    &mut captures,
                );
                assert_eq!(found, Some(last), "matched route");
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    parse_requests,
    parse_responses,
    write_request_heads,
    decode_chunked,
    find_routes
);
criterion_main!(benches);
