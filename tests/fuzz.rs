//! Seeded, time-bounded fuzz tests of the HTTP parsers and serializers, on stable Rust.
//!
//! Each test first checks every entry of its corpus of valid and tricky messages as is, then
//! checks mutated corpus entries and generated messages until its time budget or iteration
//! bound runs out. The invariants live in `fuzz/src/checks.rs`, which the cargo-fuzz targets
//! in `fuzz/` share for longer runs under libFuzzer.
//!
//! Environment variables:
//! - `RINGWAY_FUZZ_SECONDS`: time budget of each test in seconds (default 5).
//! - `RINGWAY_FUZZ_SEED`: seed, decimal or 0x-prefixed hex. The default is fixed, so every run
//!   checks the same sequence of inputs, as far as its time budget reaches.
//!
//! A failure names the seed and the iteration and shows the input, so that it can be replayed
//! and added to the regression tests at the end of this file.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use checks::{ChunkedOutcome, ChunkedParams, HeadOutcome, RequestParams, ResponseParams, escaped};
use ringway::config::{
    DEFAULT_MAX_HEADER_COUNT, DEFAULT_MAX_REQUEST_HEAD_BYTES, DEFAULT_MAX_RESPONSE_HEAD_BYTES,
};
use ringway::http::body::{
    BodyKind, ChunkedError, ChunkedLimits, DEFAULT_MAX_EXTENSION_BYTES, DEFAULT_MAX_TRAILER_BYTES,
};
use ringway::http::head::{HeadLimits, MAX_HEADER_COUNT, RequestHead, ResponseHead};

/// Time budget of each test in seconds when `RINGWAY_FUZZ_SECONDS` is not set. It is short
/// enough for every CI run. In a release build on a 2-core VM, with the three tests running in
/// parallel, it covers about 150,000 request heads, 500,000 response heads or 900,000 chunked
/// bodies.
const DEFAULT_SECONDS_PER_TARGET: f64 = 5.0;

/// Seed when `RINGWAY_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x7269_6e67_7761_7921;

/// Iteration bound per second of time budget. The fastest rate measured is about 200,000
/// inputs per second (the chunked test in a release build on a 2-core VM). The bound is five
/// times that, so the time budget ends a run on such a machine, and the bound keeps a run
/// finite even if the clock stalls.
const MAX_ITERATIONS_PER_SECOND: f64 = 1_000_000.0;

/// Number of mutation iterations after which every test expects both accepted and rejected
/// inputs among them. Fewer iterations than this can miss one side by chance.
const MIN_ITERATIONS_FOR_COVERAGE: u64 = 1_000;

/// Maximum length in bytes of a mutated or generated input. It exceeds ringway's default head
/// limits (16 KiB for requests, 32 KiB for responses), so the limit paths are reached with the
/// default limits too.
const MAX_INPUT_BYTES: usize = 40 * 1024;

/// Maximum number of mutations applied to one input. Most bugs need one or two changes to a
/// valid message, and more mutations mostly produce inputs that fail on the first line.
const MAX_MUTATIONS_PER_INPUT: usize = 4;

/// Maximum number of fields a generated head has besides Host.
const MAX_GENERATED_FIELDS: usize = 8;

/// Maximum number of filler fields a generated head gets on top of the others. It exceeds
/// `MAX_HEADER_COUNT`, the cap on every header-count limit, so generated heads reach the cap.
const MAX_FILLER_FIELDS: usize = MAX_HEADER_COUNT + 20;

// ---------------------------------------------------------------------------------------------
// Random numbers and the test loop.

/// SplitMix64: a small, fast generator with good statistical quality, which is all a fuzzer
/// needs. Each iteration gets its own generator derived from the seed and the iteration number.
struct Rng(u64);

impl Rng {
    fn for_iteration(seed: u64, iteration: u64) -> Rng {
        let mut mixer = Rng(seed ^ iteration.wrapping_mul(0xa076_1d64_78bd_642f));
        Rng(mixer.next_u64())
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..bound`, or 0 when `bound` is 0.
    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next_u64() % bound as u64) as usize
        }
    }

    /// Returns a number in `range`, which must not be empty.
    fn in_range(&mut self, range: Range<usize>) -> usize {
        range.start + self.below(range.end - range.start)
    }

    /// Returns true with probability `numerator / denominator`.
    fn chance(&mut self, numerator: usize, denominator: usize) -> bool {
        self.below(denominator) < numerator
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn pick_ref<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Seed and bounds of one test run, read from the environment.
struct Settings {
    seed: u64,
    budget: Duration,
    max_iterations: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let seconds = match std::env::var("RINGWAY_FUZZ_SECONDS") {
            Ok(text) => match text.trim().parse::<f64>() {
                Ok(seconds) if seconds.is_finite() && seconds > 0.0 => seconds,
                _ => panic!(
                    "invalid RINGWAY_FUZZ_SECONDS {text:?}: expected a positive number of seconds, such as 600"
                ),
            },
            Err(_) => DEFAULT_SECONDS_PER_TARGET,
        };
        let seed = match std::env::var("RINGWAY_FUZZ_SEED") {
            Ok(text) => parse_seed(text.trim()).unwrap_or_else(|| {
                panic!(
                    "invalid RINGWAY_FUZZ_SEED {text:?}: expected a decimal or 0x-prefixed hex u64"
                )
            }),
            Err(_) => DEFAULT_SEED,
        };
        Settings {
            seed,
            budget: Duration::from_secs_f64(seconds),
            max_iterations: (seconds * MAX_ITERATIONS_PER_SECOND) as u64,
        }
    }
}

fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// An input with the parameters it is checked with.
struct Case<P> {
    input: Vec<u8>,
    params: P,
}

impl<P: fmt::Debug> fmt::Debug for Case<P> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "parameters: {:?}\ninput ({} bytes): \"{}\"",
            self.params,
            self.input.len(),
            escaped(&self.input)
        )
    }
}

/// Outcome counts of one run, by label, for the corpus and for the mutation phase.
#[derive(Default)]
struct Tally {
    corpus: BTreeMap<String, u64>,
    mutated: BTreeMap<String, u64>,
    mutated_iterations: u64,
}

impl Tally {
    fn record(&mut self, from_corpus: bool, label: String) {
        let counts = if from_corpus {
            &mut self.corpus
        } else {
            &mut self.mutated
        };
        *counts.entry(label).or_default() += 1;
        if !from_corpus {
            self.mutated_iterations += 1;
        }
    }

    /// Asserts that the corpus reached every outcome in `labels`, so that a corpus edit cannot
    /// silently drop a path from the test.
    fn assert_corpus_reaches(&self, target: &str, labels: &[&str]) {
        for label in labels {
            assert!(
                self.corpus.contains_key(*label),
                "{target}: no corpus entry gives {label:?}; corpus outcomes: {:?}",
                self.corpus
            );
        }
    }

    /// Asserts that the mutation phase produced inputs with labels starting with each of
    /// `prefixes`, once it ran long enough to expect that. A mutator that only produced
    /// garbage, or only valid messages, would make the test pass without testing much.
    fn assert_mutations_reach(&self, target: &str, prefixes: &[&str]) {
        if self.mutated_iterations < MIN_ITERATIONS_FOR_COVERAGE {
            return;
        }
        for prefix in prefixes {
            assert!(
                self.mutated.keys().any(|label| label.starts_with(prefix)),
                "{target}: no mutated input gives an outcome starting with {prefix:?}; outcomes: {:?}",
                self.mutated
            );
        }
    }
}

/// Runs `check` on every corpus case, then on cases from `next_case` until the time budget or
/// the iteration bound of `settings` runs out. Fails with the seed, the iteration and the case
/// on the first violated invariant or panic.
fn run<P: fmt::Debug, O>(
    target: &str,
    settings: &Settings,
    corpus: &[Case<P>],
    mut next_case: impl FnMut(&mut Rng) -> Case<P>,
    mut check: impl FnMut(&Case<P>) -> Result<O, String>,
    mut label: impl FnMut(&O) -> String,
) -> Tally {
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut iteration: u64 = 0;
    loop {
        let from_corpus = (iteration as usize) < corpus.len();
        if !from_corpus
            && (iteration >= settings.max_iterations || start.elapsed() >= settings.budget)
        {
            break;
        }
        let generated;
        let case = if from_corpus {
            &corpus[iteration as usize]
        } else {
            generated = next_case(&mut Rng::for_iteration(settings.seed, iteration));
            &generated
        };
        let failure = match panic::catch_unwind(AssertUnwindSafe(|| check(case))) {
            Ok(Ok(outcome)) => {
                tally.record(from_corpus, label(&outcome));
                None
            }
            Ok(Err(violation)) => Some(violation),
            Err(payload) => Some(format!("panic: {}", panic_message(payload.as_ref()))),
        };
        if let Some(failure) = failure {
            panic!(
                "{target}: {failure}\nreplay: RINGWAY_FUZZ_SEED={:#x} (iteration {iteration}{})\n{case:?}",
                settings.seed,
                if from_corpus {
                    ", an unmutated corpus entry"
                } else {
                    ""
                }
            );
        }
        iteration += 1;
    }
    eprintln!(
        "{target}: {iteration} inputs in {:.1} s, seed {:#x}; corpus outcomes {:?}; mutated outcomes {:?}",
        start.elapsed().as_secs_f64(),
        settings.seed,
        tally.corpus,
        tally.mutated
    );
    tally
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

fn head_label(outcome: &HeadOutcome) -> String {
    match outcome {
        HeadOutcome::Incomplete => "incomplete".to_owned(),
        HeadOutcome::Accepted(BodyKind::Length(_)) => "accepted Length".to_owned(),
        HeadOutcome::Accepted(body) => format!("accepted {body:?}"),
        HeadOutcome::Rejected(kind) => format!("rejected {kind:?}"),
    }
}

fn chunked_label(outcome: &ChunkedOutcome) -> String {
    match outcome {
        ChunkedOutcome::Incomplete => "incomplete".to_owned(),
        ChunkedOutcome::Done => "done".to_owned(),
        ChunkedOutcome::Rejected(error) => format!("rejected {error:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// Bytes that change how an HTTP/1.1 parser reads a message: line ends, separators, quotes,
/// the bytes a URI or token may not contain, and the ends of the byte range.
const INTERESTING_BYTES: &[u8] = b"\r\n\0 \t:,;=\"\\/?#@[]*%\x0b\x0c\x7f\x80\xe9\xff0aAzZ-.";

/// Numbers around the edges of u32, u64 and the chunk-size and Content-Length grammars.
const NUMBERS: &[&[u8]] = &[
    b"0",
    b"00",
    b"1",
    b"9",
    b"10",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999999",
    b"ffffffffffffffff",
    b"10000000000000000",
    b"FFFFFFFFFFFFFFFFF",
    b"0000000000000000000000000000000000000000000000000000000000000000001",
    b"-1",
    b"+1",
    b"0x10",
    b"1e3",
    b" 5",
    b"5 ",
    b"5,5",
    b"5, 6",
    b"1.0",
];

/// Fragments of HTTP/1.1 syntax that a byte-level mutation is unlikely to build.
const TOKENS: &[&[u8]] = &[
    b"Host: ",
    b"Content-Length: ",
    b"Transfer-Encoding: ",
    b"Connection: ",
    b"Expect: 100-continue",
    b"chunked",
    b"gzip",
    b"identity",
    b"close",
    b"keep-alive",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b"\r\n ",
    b"http://",
    b"https://",
    b"*",
    b"CONNECT",
    b"OPTIONS",
    b"HEAD",
    b"Via: ",
    b"X-Forwarded-For: ",
    b"Date: ",
    b";ext=\"v\\\"\"",
    b"0\r\n\r\n",
    b"X-Trailer: 1\r\n",
    b"[::1]:80",
];

fn mutate(input: &mut Vec<u8>, rng: &mut Rng, donors: &[Vec<u8>]) {
    for _ in 0..rng.in_range(1..MAX_MUTATIONS_PER_INPUT + 1) {
        mutate_once(input, rng, donors);
    }
    input.truncate(MAX_INPUT_BYTES);
}

fn mutate_once(input: &mut Vec<u8>, rng: &mut Rng, donors: &[Vec<u8>]) {
    let len = input.len();
    let at = rng.below(len + 1);
    match rng.below(16) {
        0 if at < len => input[at] ^= 1 << rng.below(8),
        1 if at < len => input[at] = rng.pick(INTERESTING_BYTES),
        2 => input.insert(at, rng.pick(INTERESTING_BYTES)),
        3 if at < len => {
            input.remove(at);
        }
        4 => {
            let end = (at + rng.in_range(1..17)).min(len);
            input.drain(at..end);
        }
        5 => {
            let copied = random_range(input.len(), rng, 64);
            let piece = input[copied].to_vec();
            input.splice(at..at, piece);
        }
        6 => {
            let donor = rng.pick_ref(donors);
            let donor_range = random_range(donor.len(), rng, 256);
            if rng.chance(1, 2) {
                input.splice(at..at, donor[donor_range].iter().copied());
            } else {
                // Crossover: this input's start, then the donor's rest.
                input.truncate(at);
                input.extend_from_slice(&donor[donor_range.start..]);
            }
        }
        7..=9 => mutate_lines(input, rng),
        10 => {
            let number = rng.pick(NUMBERS);
            input.splice(at..at, number.iter().copied());
        }
        11 => {
            let token = rng.pick(TOKENS);
            input.splice(at..at, token.iter().copied());
        }
        12 => {
            let range = random_range(len, rng, 32);
            let upper = rng.chance(1, 2);
            for byte in &mut input[range] {
                *byte = if upper {
                    byte.to_ascii_uppercase()
                } else {
                    byte.to_ascii_lowercase()
                };
            }
        }
        13 => input.truncate(at),
        14 => {
            // Long runs reach the head, extension and trailer limits.
            let byte = if rng.chance(1, 2) {
                rng.pick(INTERESTING_BYTES)
            } else {
                b'a'
            };
            let count = if rng.chance(1, 8) {
                rng.in_range(1_000..MAX_INPUT_BYTES)
            } else {
                rng.in_range(1..65)
            };
            input.splice(at..at, std::iter::repeat_n(byte, count));
        }
        _ if at < len => input[at] = rng.next_u64() as u8,
        _ => input.push(rng.next_u64() as u8),
    }
}

/// Returns a random range of at most `max_len` bytes within `0..len`.
fn random_range(len: usize, rng: &mut Rng, max_len: usize) -> Range<usize> {
    let start = rng.below(len + 1);
    let end = (start + rng.below(max_len + 1)).min(len);
    start..end
}

/// Duplicates, deletes or swaps whole lines, which moves fields around without breaking them.
fn mutate_lines(input: &mut Vec<u8>, rng: &mut Rng) {
    let mut lines: Vec<Vec<u8>> = input
        .split_inclusive(|&byte| byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    if lines.is_empty() {
        return;
    }
    let first = rng.below(lines.len());
    let second = rng.below(lines.len());
    match rng.below(3) {
        0 => {
            let copy = lines[first].clone();
            lines.insert(second, copy);
        }
        1 => {
            lines.remove(first);
        }
        _ => lines.swap(first, second),
    }
    *input = lines.concat();
}

/// Returns a random mutation of a corpus entry, or a generated message that is mutated half
/// of the time.
fn mutated_or_generated(
    rng: &mut Rng,
    corpus: &[Vec<u8>],
    generate: impl Fn(&mut Rng) -> Vec<u8>,
) -> Vec<u8> {
    let mut input = if rng.chance(1, 3) {
        generate(rng)
    } else {
        rng.pick_ref(corpus).clone()
    };
    if rng.chance(2, 3) {
        mutate(&mut input, rng, corpus);
    }
    input
}

// ---------------------------------------------------------------------------------------------
// Structured generation of heads.

/// Field values by field name, for generated heads: valid values first, then tricky ones.
type FieldTable = &'static [(&'static [&'static str], &'static [&'static str])];

const CONTENT_LENGTHS: &[&str] = &[
    "0",
    "5",
    "00005",
    "5, 5",
    "5,5",
    " 5 ",
    "18446744073709551615",
    "5, 6",
    "-1",
    "+5",
    "0x5",
    "5.0",
    "",
    "5 5",
    "18446744073709551616",
    "99999999999999999999",
];

const TRANSFER_ENCODINGS: &[&str] = &[
    "chunked",
    "Chunked",
    "CHUNKED",
    " chunked ",
    "gzip, chunked",
    "chunked, gzip",
    "chunked, chunked",
    "identity",
    "gzip",
    "",
    ",",
    ", chunked",
    "chunked,",
    "chunked;q=1",
    "x-custom, chunked",
];

const CONNECTIONS: &[&str] = &[
    "close",
    "keep-alive",
    "Keep-Alive",
    "close, keep-alive",
    "upgrade",
    "x-custom",
    "X-Custom, close",
    "host",
    "te",
    "via",
    "x-forwarded-for",
    "date",
    "expect",
    "content-length",
    "transfer-encoding",
    "accept",
    "",
    " , ,",
];

const REQUEST_FIELDS: FieldTable = &[
    (
        &["Host", "host", "HOST"],
        &[
            "example.com",
            "example.com:8080",
            "a",
            "127.0.0.1:80",
            "[::1]:8080",
            "[2001:db8::1]",
            "a-b.c_d~e",
            "",
            "a b",
            "user@a",
            "a:123456",
            "a:port",
            "[::1",
            "[::1]x",
            "a/b",
            "*",
        ],
    ),
    (&["Content-Length", "content-length"], CONTENT_LENGTHS),
    (
        &["Transfer-Encoding", "transfer-encoding"],
        TRANSFER_ENCODINGS,
    ),
    (&["Connection", "connection"], CONNECTIONS),
    (
        &["Expect"],
        &[
            "100-continue",
            "100-Continue",
            " 100-continue ",
            "200-ok",
            "",
        ],
    ),
    (
        &["X-Forwarded-For"],
        &["10.0.0.1", "10.0.0.1, 10.0.0.2", "unknown", ""],
    ),
    (&["Via"], &["1.0 edge", "1.1 a, 1.1 b", ""]),
    (&["X-Forwarded-Proto"], &["https"]),
    (&["X-Forwarded-Host"], &["evil.example"]),
    (&["Upgrade"], &["websocket", "h2c"]),
    (&["Keep-Alive"], &["timeout=5"]),
    (&["TE"], &["trailers"]),
    (&["Trailer"], &["X-Checksum"]),
    (&["Proxy-Connection"], &["keep-alive"]),
    (&["HTTP2-Settings"], &["AAMAAABkAAQAAP__"]),
];

const RESPONSE_FIELDS: FieldTable = &[
    (&["Content-Length", "content-length"], CONTENT_LENGTHS),
    (
        &["Transfer-Encoding", "transfer-encoding"],
        TRANSFER_ENCODINGS,
    ),
    (&["Connection", "connection"], CONNECTIONS),
    (&["Date", "date"], &["Sun, 06 Nov 1994 08:49:37 GMT", ""]),
    (&["Via"], &["1.1 origin", "1.0 a, 1.1 b", ""]),
    (
        &["Host", "X-Forwarded-For", "X-Forwarded-Host"],
        &["a", "10.0.0.1"],
    ),
    (&["Keep-Alive"], &["timeout=5, max=100"]),
    (&["Upgrade"], &["websocket"]),
    (&["Trailer"], &["X-Checksum"]),
    (&["Proxy-Connection"], &["close"]),
    (&["Set-Cookie"], &["a=1; Path=/", "b=2"]),
    (&["ETag"], &["\"v1\"", "W/\"v2\""]),
];

/// Names of end-to-end fields with generated values.
const CUSTOM_FIELD_NAMES: &[&str] = &[
    "X-Custom",
    "x-custom",
    "Accept",
    "Cookie",
    "User-Agent",
    "X-Empty",
    "Cache-Control",
    "Location",
];

/// Separators between a field name and its value: valid ones first. A space before the
/// colon is invalid (RFC 9112 section 5.1).
const FIELD_SEPARATORS: &[&[u8]] = &[b": ", b": ", b": ", b":", b":\t", b":  ", b" :", b"::"];

/// Returns the end of a line: CRLF most of the time, else a bare LF, which httparse accepts.
fn line_end(rng: &mut Rng) -> &'static [u8] {
    if rng.chance(1, 24) { b"\n" } else { b"\r\n" }
}

/// Returns printable bytes, with an occasional HTAB or obs-text byte, for a field value.
fn random_value(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(40);
    (0..len)
        .map(|_| match rng.below(32) {
            0 => b'\t',
            1 => 0x80 + rng.below(0x80) as u8,
            _ => 0x20 + rng.below(0x5f) as u8,
        })
        .collect()
}

fn push_field(out: &mut Vec<u8>, rng: &mut Rng, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(rng.pick(FIELD_SEPARATORS));
    out.extend_from_slice(value);
    out.extend_from_slice(line_end(rng));
}

/// Appends the fields of a generated head and the empty line that ends it: up to
/// `MAX_GENERATED_FIELDS` from `table` or with custom names, and sometimes many filler fields.
fn push_fields(out: &mut Vec<u8>, rng: &mut Rng, table: FieldTable) {
    for _ in 0..rng.below(MAX_GENERATED_FIELDS + 1) {
        if rng.chance(2, 3) {
            let (names, values) = rng.pick(table);
            // Valid values come first in each table, so favouring the first few keeps many
            // generated heads acceptable.
            let value = if rng.chance(1, 2) {
                values[rng.below(values.len().min(3))]
            } else {
                rng.pick(values)
            };
            let name = rng.pick(names).as_bytes();
            push_field(out, rng, name, value.as_bytes());
        } else {
            let name = rng.pick(CUSTOM_FIELD_NAMES).as_bytes();
            let value = random_value(rng);
            push_field(out, rng, name, &value);
        }
    }
    if rng.chance(1, 32) {
        for index in 0..rng.below(MAX_FILLER_FIELDS + 1) {
            out.extend_from_slice(format!("X-Filler-{index}: {index}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(line_end(rng));
}

fn generate_request(rng: &mut Rng) -> Vec<u8> {
    const METHODS: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "M-SEARCH",
        "get",
    ];
    const TARGETS: &[&str] = &[
        "/",
        "/index.html?q=1&r=%2F",
        "/a/b/../c;p?q#f",
        "*",
        "http://example.com:8080/p?q",
        "https://example.com",
        "HTTP://[::1]:80/",
        "http://",
        "http://user@a/",
        "http://a b/",
        "//double",
        "relative",
        "/caf\u{e9}",
        "/%00",
    ];
    const VERSIONS: &[&str] = &[
        "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "http/1.1",
        "HTTP/1",
    ];
    const TAILS: &[&[u8]] = &[
        b"",
        b"hello",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n",
    ];

    let mut out = format!(
        "{} {} {}",
        rng.pick(METHODS),
        rng.pick(TARGETS),
        rng.pick(VERSIONS)
    )
    .into_bytes();
    out.extend_from_slice(line_end(rng));
    // Most requests carry one valid Host, so that the other fields decide the outcome.
    if rng.chance(7, 8) {
        let host = rng.pick(&["example.com", "a:80", "[::1]"]).as_bytes();
        push_field(&mut out, rng, b"Host", host);
    }
    push_fields(&mut out, rng, REQUEST_FIELDS);
    out.extend_from_slice(rng.pick(TAILS));
    out
}

fn generate_response(rng: &mut Rng) -> Vec<u8> {
    const VERSIONS: &[&str] = &[
        "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.2", "http/1.1",
    ];
    const STATUSES: &[&str] = &[
        "200", "200", "100", "101", "103", "199", "201", "204", "206", "299", "304", "404", "503",
        "599", "600", "099", "000", "20", "2000", "abc",
    ];
    const REASONS: &[&[u8]] = &[
        b" OK",
        b" ",
        b"",
        b" No Content",
        b" O\tK",
        b" caf\xe9",
        b" Not  Found ",
        b" \x80",
    ];
    const TAILS: &[&[u8]] = &[b"", b"hello", b"0\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"];

    let mut out = format!("{} {}", rng.pick(VERSIONS), rng.pick(STATUSES)).into_bytes();
    out.extend_from_slice(rng.pick(REASONS));
    out.extend_from_slice(line_end(rng));
    push_fields(&mut out, rng, RESPONSE_FIELDS);
    out.extend_from_slice(rng.pick(TAILS));
    out
}

// ---------------------------------------------------------------------------------------------
// Structured generation of chunked bodies.

/// Bytes of generated chunk data, rich in the bytes of the chunked framing, so that data
/// that looks like framing is exercised.
const CHUNK_DATA_BYTES: &[u8] = b"\r\n0123456789abcdefABCDEF;= \t\"\\:x\x00\xff";

fn push_chunk_size(out: &mut Vec<u8>, rng: &mut Rng, size: usize) {
    for _ in 0..rng.below(3) {
        out.push(b'0');
    }
    let digits = if rng.chance(1, 2) {
        format!("{size:x}")
    } else {
        format!("{size:X}")
    };
    out.extend_from_slice(digits.as_bytes());
}

/// Appends zero or more chunk extensions (RFC 9112 section 7.1.1), with the optional
/// whitespace, token values and quoted-string values that the grammar allows.
fn push_extensions(out: &mut Vec<u8>, rng: &mut Rng) {
    const NAMES: &[&str] = &["a", "ext", "!#$%&'*+-.^_`|~09azAZ"];
    const VALUES: &[&str] = &[
        "1",
        "token",
        "\"\"",
        "\"quoted \\\" pair\"",
        "\"tab\there; =\"",
        "\"caf\u{e9}\"",
    ];
    const WHITESPACE: &[&str] = &["", "", " ", "\t", " \t"];
    for _ in 0..rng.below(3) {
        out.extend_from_slice(rng.pick(WHITESPACE).as_bytes());
        out.push(b';');
        out.extend_from_slice(rng.pick(WHITESPACE).as_bytes());
        out.extend_from_slice(rng.pick(NAMES).as_bytes());
        if rng.chance(1, 2) {
            out.extend_from_slice(rng.pick(WHITESPACE).as_bytes());
            out.push(b'=');
            out.extend_from_slice(rng.pick(WHITESPACE).as_bytes());
            out.extend_from_slice(rng.pick(VALUES).as_bytes());
        }
    }
}

fn generate_chunked(rng: &mut Rng) -> Vec<u8> {
    const TRAILERS: &[&[u8]] = &[
        b"Expires: Wed, 21 Oct 2015 07:28:00 GMT",
        b"X-Checksum: abc",
        b"X:",
        b"X-Obs: caf\xe9",
        b"D:  e f \t",
    ];
    let mut out = Vec::new();
    for _ in 0..rng.below(6) {
        let size = if rng.chance(1, 8) {
            rng.in_range(100..3_000)
        } else {
            rng.in_range(1..41)
        };
        push_chunk_size(&mut out, rng, size);
        if rng.chance(1, 3) {
            push_extensions(&mut out, rng);
        }
        out.extend_from_slice(b"\r\n");
        out.extend((0..size).map(|_| rng.pick(CHUNK_DATA_BYTES)));
        out.extend_from_slice(b"\r\n");
    }
    push_chunk_size(&mut out, rng, 0);
    if rng.chance(1, 4) {
        push_extensions(&mut out, rng);
    }
    out.extend_from_slice(b"\r\n");
    for _ in 0..rng.below(3) {
        out.extend_from_slice(rng.pick(TRAILERS));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if rng.chance(1, 2) {
        out.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Corpora.

/// Valid and tricky request heads, grouped by outcome.
fn request_corpus() -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = [
        &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nUser-Agent: fuzz\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
        b"GET HTTP://[::1]:80 HTTP/1.0\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\nVia: 1.0 edge\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
          Trailer: X\r\nProxy-Connection: keep-alive\r\nHTTP2-Settings: AAA\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host, x-forwarded-for, via, expect\r\nX-Forwarded-For: 1.2.3.4\r\n\
          Expect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Obs: caf\xe9\r\nX-Tab:\tv\t\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\n\r\n",
        // Bare LF line ends, which httparse accepts and ringway rewrites as CRLF.
        b"GET / HTTP/1.1\nHost: a\n\n",
        // Rejected: conflicting or ambiguous framing (RFC 9112 section 6.3).
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        // Rejected: Host missing, repeated or invalid (RFC 9112 section 3.2).
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        // Rejected: version, method, expectation and syntax.
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        // Incomplete.
        b"GET / HTTP/1.1\r\nHost: a\r\n",
    ]
    .into_iter()
    .map(<[u8]>::to_vec)
    .collect();

    // Over the default head limit: a request line alone (414) and a header section (431).
    let mut long_target = b"GET /".to_vec();
    long_target.resize(DEFAULT_MAX_REQUEST_HEAD_BYTES + 10, b'a');
    long_target.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    corpus.push(long_target);
    let mut long_field = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ".to_vec();
    long_field.resize(DEFAULT_MAX_REQUEST_HEAD_BYTES + 10, b'v');
    long_field.extend_from_slice(b"\r\n\r\n");
    corpus.push(long_field);
    // More fields than the default header-count limit.
    let mut many_fields = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for index in 0..DEFAULT_MAX_HEADER_COUNT {
        many_fields.extend_from_slice(format!("X-{index}: {index}\r\n").as_bytes());
    }
    many_fields.extend_from_slice(b"\r\n");
    corpus.push(many_fields);
    corpus
}

fn response_corpus() -> Vec<Vec<u8>> {
    [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nbody",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Drop, Date\r\nX-Drop: 1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
          Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        b"HTTP/1.1 200\r\nVia: 1.1 upstream\r\nVia: 1.0 other\r\nX-Forwarded-For: 1.2.3.4\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 200 O\tK\r\nContent-Length: 18446744073709551615\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nProxy-Connection: close\r\nTrailer: X\r\nUpgrade: h2c\r\n\r\n",
        // Rejected: ambiguous framing, unsupported codings, invalid status lines, folding.
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        b"HTTP/1.1 600 Bad\r\n\r\n",
        b"HTTP/1.1 099 x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n",
    ]
    .into_iter()
    .map(<[u8]>::to_vec)
    .collect()
}

fn chunked_corpus() -> Vec<Vec<u8>> {
    [
        &b"0\r\n\r\n"[..],
        b"000\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
        b"A\r\n0123456789\r\n0\r\n\r\n",
        b"0005\r\nhello\r\n0\r\n\r\n",
        b"3\r\n\r\n\r\r\n0\r\n\r\n",
        b"5 ; a = b ; c\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"q\\\"x\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\xe9\\\xe9\" ;b\r\nhello\r\n0\r\n\r\n",
        b"0;last=1\r\n\r\n",
        b"2\r\nok\r\n0\r\nA: b\r\nC:\r\nD:  e f \t\r\n\r\n",
        b"ffffffffffffffff\r\nabc",
        // Rejected: one case for each grammar error. The limit errors come from mutated inputs
        // checked with small limits.
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"10000000000000000\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5;a b\r\nhello\r\n0\r\n\r\n",
        b"0\r\n folded: x\r\n\r\n",
        // Incomplete.
        b"5\r\nhel",
    ]
    .into_iter()
    .map(<[u8]>::to_vec)
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Parameters.

const CLIENT_IPS: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(
        0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
    )),
];

const DEFAULT_REQUEST_LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
    max_header_count: DEFAULT_MAX_HEADER_COUNT,
};

const DEFAULT_RESPONSE_LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: DEFAULT_MAX_RESPONSE_HEAD_BYTES,
    max_header_count: DEFAULT_MAX_HEADER_COUNT,
};

const DEFAULT_REQUEST_PARAMS: RequestParams = RequestParams {
    limits: DEFAULT_REQUEST_LIMITS,
    forward_limit: usize::MAX,
    prefill: 0,
    client_ip: CLIENT_IPS[0],
};

const DEFAULT_CHUNKED_LIMITS: ChunkedLimits = ChunkedLimits {
    max_extension_bytes: DEFAULT_MAX_EXTENSION_BYTES,
    max_trailer_bytes: DEFAULT_MAX_TRAILER_BYTES,
};

/// Returns head limits for an input of `input_len` bytes: mostly `defaults`, sometimes limits
/// at or near the input's length, tiny limits, no limits, or a header count above the cap.
fn random_head_limits(rng: &mut Rng, input_len: usize, defaults: HeadLimits) -> HeadLimits {
    let max_head_bytes = match rng.below(8) {
        0 => rng.below(input_len + 2),
        1 => input_len.saturating_sub(rng.below(3)),
        2 => rng.below(64),
        3 => usize::MAX,
        _ => defaults.max_head_bytes,
    };
    let max_header_count = match rng.below(8) {
        0 => rng.below(12),
        1 => MAX_HEADER_COUNT + rng.below(10),
        _ => defaults.max_header_count,
    };
    HeadLimits {
        max_head_bytes,
        max_header_count,
    }
}

fn random_request_params(rng: &mut Rng, input_len: usize) -> RequestParams {
    // A forwarded head is the request head plus up to a few hundred bytes of forwarding
    // fields, so this range puts the limit on both sides of its length.
    let forward_limit = if rng.chance(1, 4) {
        rng.below(2 * input_len + 512)
    } else {
        usize::MAX
    };
    RequestParams {
        limits: random_head_limits(rng, input_len, DEFAULT_REQUEST_LIMITS),
        forward_limit,
        prefill: if rng.chance(1, 8) { rng.below(64) } else { 0 },
        client_ip: rng.pick(CLIENT_IPS),
    }
}

fn random_chunked_params(rng: &mut Rng, input_len: usize) -> ChunkedParams {
    const OUT_LENS: &[usize] = &[1, 2, 3, 5, 8, 16, 64, 1024, 64 * 1024];
    let limits = match rng.below(4) {
        0 => ChunkedLimits {
            max_extension_bytes: rng.below(25),
            max_trailer_bytes: rng.below(49),
        },
        1 => ChunkedLimits {
            max_extension_bytes: 0,
            max_trailer_bytes: 0,
        },
        _ => DEFAULT_CHUNKED_LIMITS,
    };
    let piece_ends = if input_len <= 512 && rng.chance(1, 8) {
        (1..=input_len).collect()
    } else {
        (0..rng.below(6))
            .map(|_| rng.below(input_len + 1))
            .collect()
    };
    let out_lens = (0..rng.in_range(1..4))
        .map(|_| {
            if rng.chance(1, 2) {
                rng.pick(OUT_LENS)
            } else {
                rng.in_range(1..100)
            }
        })
        .collect();
    let rechunk_lens = (0..rng.in_range(1..4))
        .map(|_| {
            if rng.chance(1, 4) {
                rng.in_range(1..5_000)
            } else {
                rng.in_range(1..20)
            }
        })
        .collect();
    ChunkedParams {
        limits,
        piece_ends,
        out_lens,
        rechunk_lens,
    }
}

fn default_chunked_params(input_len: usize) -> ChunkedParams {
    ChunkedParams {
        limits: DEFAULT_CHUNKED_LIMITS,
        piece_ends: (1..=input_len).collect(),
        out_lens: vec![1, 7],
        rechunk_lens: vec![1, 3],
    }
}

// ---------------------------------------------------------------------------------------------
// Targets.

#[test]
fn request_head_fuzz() {
    let settings = Settings::from_env();
    let corpus = request_corpus();
    let cases: Vec<Case<RequestParams>> = corpus
        .iter()
        .map(|input| Case {
            input: input.clone(),
            params: DEFAULT_REQUEST_PARAMS,
        })
        .collect();
    // One head reused across every input, as a keep-alive connection reuses it.
    let mut reused = RequestHead::default();
    let tally = run(
        "request head",
        &settings,
        &cases,
        |rng| {
            let input = mutated_or_generated(rng, &corpus, generate_request);
            let params = random_request_params(rng, input.len());
            Case { input, params }
        },
        |case| checks::check_request(&case.input, &case.params, &mut reused),
        head_label,
    );
    tally.assert_corpus_reaches(
        "request head",
        &[
            "accepted None",
            "accepted Length",
            "accepted Chunked",
            "incomplete",
            "rejected BadRequest",
            "rejected UriTooLong",
            "rejected HeadTooLarge",
            "rejected VersionNotSupported",
            "rejected MethodNotImplemented",
            "rejected ExpectationFailed",
            "rejected UnsupportedTransferCoding",
        ],
    );
    tally.assert_mutations_reach("request head", &["accepted", "rejected", "incomplete"]);
}

#[test]
fn response_head_fuzz() {
    let settings = Settings::from_env();
    let corpus = response_corpus();
    let mut cases = Vec::new();
    for input in &corpus {
        for request_was_head in [false, true] {
            let params = ResponseParams {
                limits: DEFAULT_RESPONSE_LIMITS,
                request_was_head,
            };
            cases.push(Case {
                input: input.clone(),
                params,
            });
        }
    }
    let mut reused = ResponseHead::default();
    let tally = run(
        "response head",
        &settings,
        &cases,
        |rng| {
            let input = mutated_or_generated(rng, &corpus, generate_response);
            let params = ResponseParams {
                limits: random_head_limits(rng, input.len(), DEFAULT_RESPONSE_LIMITS),
                request_was_head: rng.chance(1, 4),
            };
            Case { input, params }
        },
        |case| checks::check_response(&case.input, &case.params, &mut reused),
        head_label,
    );
    tally.assert_corpus_reaches(
        "response head",
        &[
            "accepted None",
            "accepted Length",
            "accepted Chunked",
            "accepted CloseDelimited",
            "incomplete",
            "rejected InvalidResponse",
        ],
    );
    tally.assert_mutations_reach("response head", &["accepted", "rejected"]);
}

#[test]
fn chunked_body_fuzz() {
    let settings = Settings::from_env();
    let corpus = chunked_corpus();
    let cases: Vec<Case<ChunkedParams>> = corpus
        .iter()
        .map(|input| Case {
            input: input.clone(),
            params: default_chunked_params(input.len()),
        })
        .collect();
    let tally = run(
        "chunked body",
        &settings,
        &cases,
        |rng| {
            let input = mutated_or_generated(rng, &corpus, generate_chunked);
            let params = random_chunked_params(rng, input.len());
            Case { input, params }
        },
        |case| checks::check_chunked(&case.input, &case.params),
        chunked_label,
    );
    let mut labels = vec!["done".to_owned(), "incomplete".to_owned()];
    labels.extend(
        [
            ChunkedError::InvalidChunkSize,
            ChunkedError::ChunkSizeOverflow,
            ChunkedError::MissingCrlf,
            ChunkedError::InvalidExtension,
            ChunkedError::InvalidTrailer,
        ]
        .iter()
        .map(|error| chunked_label(&ChunkedOutcome::Rejected(*error))),
    );
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    tally.assert_corpus_reaches("chunked body", &labels);
    tally.assert_mutations_reach(
        "chunked body",
        &[
            "done",
            "incomplete",
            "rejected ExtensionTooLong",
            "rejected TrailersTooLong",
            "rejected MissingCrlf",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Regression cases found by fuzzing.

/// Checks one request input under `params` and fails with the violation.
fn assert_request_holds(input: &[u8], params: RequestParams) {
    let outcome = checks::check_request(input, &params, &mut RequestHead::default());
    if let Err(violation) = outcome {
        panic!("{violation}\ninput: \"{}\"", escaped(input));
    }
}

/// Checks one response input under `params` and fails with the violation.
fn assert_response_holds(input: &[u8], params: ResponseParams) {
    let outcome = checks::check_response(input, &params, &mut ResponseHead::default());
    if let Err(violation) = outcome {
        panic!("{violation}\ninput: \"{}\"", escaped(input));
    }
}

/// Head limits with a byte limit small enough for a short request line to reach it.
const SMALL_HEAD_LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 16,
    max_header_count: DEFAULT_MAX_HEADER_COUNT,
};

#[test]
fn response_without_reason_phrase() {
    // For a status line without a reason phrase, or with obs-text in it, httparse returns a
    // static empty string instead of a slice of the buffer, so its offset in the buffer is
    // meaningless.
    let inputs: [&[u8]; 2] = [
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 caf\xe9\r\nContent-Length: 0\r\n\r\n",
    ];
    for input in inputs {
        for request_was_head in [false, true] {
            assert_response_holds(
                input,
                ResponseParams {
                    limits: DEFAULT_RESPONSE_LIMITS,
                    request_was_head,
                },
            );
        }
    }
}

#[test]
fn request_error_same_in_pieces() {
    // Under the default limits: 400 for the whole head, 431 for its first 16 KiB.
    let mut long_field = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ".to_vec();
    long_field.resize(DEFAULT_MAX_REQUEST_HEAD_BYTES, b'v');
    long_field.extend_from_slice(b"\r\nBad Name: x\r\n\r\n");
    let cases: [(&[u8], HeadLimits); 3] = [
        (&long_field, DEFAULT_REQUEST_LIMITS),
        // 400 for the whole head, 431 for its first 16 bytes.
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            SMALL_HEAD_LIMITS,
        ),
        // 505 for the whole head, 414 for its first 16 bytes.
        (
            b"GET /aaaaaaaaaaaaaaaa HTTP/2.0\r\nHost: a\r\n\r\n",
            SMALL_HEAD_LIMITS,
        ),
    ];
    for (input, limits) in cases {
        assert_request_holds(
            input,
            RequestParams {
                limits,
                ..DEFAULT_REQUEST_PARAMS
            },
        );
    }
}
