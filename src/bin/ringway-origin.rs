//! `ringway-origin`: an HTTP/1.1 origin server and download checker for demos, tests and
//! benchmarks of ringway.
//!
//! `serve` generates every response body on the fly, so a body of any size needs no file
//! and almost no memory. Byte `i` of every generated body is `(i % 251) as u8`. Because 251
//! is prime, a duplicated, dropped or reordered piece of any buffer size breaks the pattern.
//! `fetch` downloads such bodies, checks every byte and reports the throughput.
//!
//! The server uses blocking std sockets with one thread per connection. That keeps the
//! origin simple and is fast enough to saturate loopback with large writes.

use std::ffi::OsString;
use std::process::ExitCode;

const USAGE: &str = "\
ringway-origin: HTTP/1.1 test origin and download checker for ringway

Usage:
    ringway-origin serve [--listen ADDR]
    ringway-origin fetch URL [--expect-bytes N] [--parallel K]
    ringway-origin --help

serve
    Serves generated bodies over HTTP/1.1 with keep-alive and pipelining, one thread
    per connection. Prints `listening on ADDR` with the bound address on stdout once
    it accepts connections.
    --listen ADDR       address to listen on (default 127.0.0.1:9090; port 0 picks a
                        free port)

fetch
    Sends GET URL (http:// only) and checks that the status is 200 and that every
    body byte matches the pattern. Prints one line per download and a total, with
    throughput in MB/s (1 MB = 10^6 bytes). Exits 1 on a bad status, a short body,
    a wrong byte or a length mismatch.
    --expect-bytes N    required body length in bytes
    --parallel K        number of concurrent downloads, each on its own connection
                        (default 1, max 1024)

Body pattern: byte i of every generated body is (i % 251).

Routes (N, K and P are byte counts, I is milliseconds, all decimal):
    GET  /bytes/N              200 with Content-Length: N
    GET  /chunked/N?chunk=K    200, chunked, N bytes in chunks of K (default 16384)
    GET  /close/N              200 with Connection: close and no Content-Length,
                               N bytes, then the connection closes
    GET  /trickle/N?interval_ms=I&piece=P
                               200, chunked, N bytes sent P at a time (default 16)
                               with a pause of I ms (default 1000) between pieces
    GET  /small                200 with Content-Length: 100, Content-Type: text/plain
    GET  /status/CODE          status CODE (100-599) with Content-Length: 0, and no
                               Content-Length for 204 and 304; a 1xx code other than
                               101 is sent as an interim response followed by 200
    GET  /headers              200 with the raw request head as received as the body
    POST|PUT /echo             streams the request body back with the same framing
                               (Content-Length or chunked); the client must read the
                               echo while it sends a body larger than the socket
                               buffers, or both sides block
    POST|PUT /sink             reads and discards the body, answers 200 with
                               `received N bytes`
Every GET route also answers HEAD. Anything else gets 404.
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match cli::parse(&args) {
        Ok(cli::Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(cli::Command::Serve { listen }) => serve::run(&listen),
        Ok(cli::Command::Fetch(options)) => fetch::run(&options),
        Err(message) => {
            eprintln!("ringway-origin: {message}");
            eprintln!("Run `ringway-origin --help` for usage.");
            ExitCode::from(2)
        }
    }
}

/// Command-line parsing. The crate has no argument parser dependency for this tool, and
/// the grammar is small: a subcommand, one positional URL and three options.
mod cli {
    use std::ffi::OsString;

    use crate::{fetch, serve};

    pub enum Command {
        Help,
        Serve { listen: String },
        Fetch(fetch::Options),
    }

    /// Parses the arguments after the program name. Options take their value either as
    /// the next argument or after `=` (`--listen=127.0.0.1:0`).
    pub fn parse(args: &[OsString]) -> Result<Command, String> {
        let mut args = args
            .iter()
            .map(|arg| {
                arg.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("argument {arg:?} is not valid UTF-8"))
            })
            .collect::<Result<Vec<String>, String>>()?
            .into_iter();

        if args.clone().any(|arg| arg == "--help" || arg == "-h") {
            return Ok(Command::Help);
        }
        let subcommand = args
            .next()
            .ok_or("missing subcommand: expected `serve` or `fetch`")?;
        match subcommand.as_str() {
            "serve" => parse_serve(args),
            "fetch" => parse_fetch(args),
            other => Err(format!(
                "unknown subcommand `{other}`: expected `serve` or `fetch`"
            )),
        }
    }

    fn parse_serve(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
        let mut listen = serve::DEFAULT_LISTEN.to_owned();
        while let Some(arg) = args.next() {
            let (name, inline_value) = split_option(&arg);
            match name {
                "--listen" => listen = option_value(name, inline_value, &mut args)?,
                _ => return Err(format!("unexpected argument `{arg}` for `serve`")),
            }
        }
        Ok(Command::Serve { listen })
    }

    fn parse_fetch(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
        let mut url = None;
        let mut expect_bytes = None;
        let mut parallel = 1;
        while let Some(arg) = args.next() {
            let (name, inline_value) = split_option(&arg);
            match name {
                "--expect-bytes" => {
                    let value = option_value(name, inline_value, &mut args)?;
                    expect_bytes = Some(parse_decimal(&value).ok_or_else(|| {
                        format!("invalid --expect-bytes `{value}`: expected a decimal byte count")
                    })?);
                }
                "--parallel" => {
                    let value = option_value(name, inline_value, &mut args)?;
                    parallel = parse_decimal(&value)
                        .and_then(|count| usize::try_from(count).ok())
                        .filter(|count| (1..=fetch::MAX_PARALLEL).contains(count))
                        .ok_or_else(|| {
                            format!(
                                "invalid --parallel `{value}`: expected 1 to {}",
                                fetch::MAX_PARALLEL
                            )
                        })?;
                }
                _ if arg.starts_with('-') => {
                    return Err(format!("unknown option `{arg}` for `fetch`"));
                }
                _ if url.is_none() => url = Some(arg),
                _ => {
                    return Err(format!(
                        "unexpected argument `{arg}`: `fetch` takes one URL"
                    ));
                }
            }
        }
        let url = url.ok_or("missing URL for `fetch`")?;
        Ok(Command::Fetch(fetch::Options {
            url,
            expect_bytes,
            parallel,
        }))
    }

    /// Splits `--name=value` into its name and value. Other arguments come back whole.
    fn split_option(arg: &str) -> (&str, Option<&str>) {
        match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (arg, None),
        }
    }

    fn option_value(
        name: &str,
        inline_value: Option<&str>,
        args: &mut impl Iterator<Item = String>,
    ) -> Result<String, String> {
        match inline_value {
            Some(value) => Ok(value.to_owned()),
            None => args
                .next()
                .ok_or_else(|| format!("missing value for {name}")),
        }
    }

    /// Parses a non-empty string of ASCII digits into a u64. Signs, spaces and other
    /// characters that `str::parse` would accept or trim are rejected.
    pub fn parse_decimal(text: &str) -> Option<u64> {
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }
}

/// The generated body pattern: byte `i` of a body is `(i % PERIOD) as u8`.
mod pattern {
    use std::io::{self, Write};
    use std::sync::OnceLock;

    /// Period of the pattern. A prime period means no buffer size of a power of two, or of
    /// any other size below 251, is a multiple of it, so a repeated or skipped buffer
    /// shifts every following byte.
    pub const PERIOD: u64 = 251;

    /// Size of the pre-built pattern block in bytes: 1024 periods (251 KiB). Writes and
    /// checks work on slices of up to `MAX_SLICE_BYTES`, which is large enough that memory
    /// copies, not system calls, bound the throughput on loopback.
    const BLOCK_BYTES: usize = 251 * 1024;

    /// Largest slice that `slice_at` returns. A slice can start at any of the first
    /// `PERIOD` bytes of the block and still fit inside it.
    pub const MAX_SLICE_BYTES: usize = BLOCK_BYTES - PERIOD as usize;

    fn block() -> &'static [u8] {
        static BLOCK: OnceLock<Box<[u8]>> = OnceLock::new();
        BLOCK.get_or_init(|| {
            (0..BLOCK_BYTES)
                .map(|index| (index as u64 % PERIOD) as u8)
                .collect()
        })
    }

    /// Returns the pattern bytes that start at body offset `offset`, `len` bytes long but
    /// at most `MAX_SLICE_BYTES`.
    pub fn slice_at(offset: u64, len: u64) -> &'static [u8] {
        let start = (offset % PERIOD) as usize;
        let len = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(MAX_SLICE_BYTES);
        &block()[start..start + len]
    }

    /// Writes `len` pattern bytes that start at body offset `offset`.
    pub fn write(out: &mut impl Write, offset: u64, len: u64) -> io::Result<()> {
        let mut written = 0;
        while written < len {
            let slice = slice_at(offset + written, len - written);
            out.write_all(slice)?;
            written += slice.len() as u64;
        }
        Ok(())
    }

    /// Returns the index in `data` of the first byte that differs from the pattern, where
    /// `data[0]` is body byte `offset`.
    pub fn first_mismatch(data: &[u8], offset: u64) -> Option<usize> {
        let mut checked = 0;
        while checked < data.len() {
            let expected = slice_at(offset + checked as u64, (data.len() - checked) as u64);
            let actual = &data[checked..checked + expected.len()];
            if actual != expected {
                let position = actual
                    .iter()
                    .zip(expected)
                    .position(|(got, want)| got != want)
                    .unwrap_or(0);
                return Some(checked + position);
            }
            checked += expected.len();
        }
        None
    }

    /// Returns the pattern byte at body offset `offset`.
    pub fn byte_at(offset: u64) -> u8 {
        (offset % PERIOD) as u8
    }
}

/// HTTP/1.1 message framing shared by the server and the download checker: a buffered
/// reader, head parsing with httparse, and a body decoder for Content-Length, chunked and
/// close-delimited bodies.
mod wire {
    use std::io::{self, Read};
    use std::net::TcpStream;

    /// Maximum size of a request or response head in bytes, and so the size of the read
    /// buffer. It is above the defaults of common servers (nginx allows 4 buffers of
    /// 8 KiB for large heads) and small enough to allocate per connection.
    pub const MAX_HEAD_BYTES: usize = 64 * 1024;

    /// Maximum number of header fields in a head. httparse needs a fixed-size array, and
    /// 128 fields is beyond what real clients send.
    pub const MAX_HEADERS: usize = 128;

    /// Maximum length in bytes of a chunk-size line, extensions included, and of each
    /// trailer field line. A chunk size needs at most 16 hex digits, and the rest leaves
    /// room for extensions and trailer fields that a sender adds.
    const MAX_CHUNK_LINE_BYTES: usize = 4096;

    /// Maximum total size in bytes of a chunked trailer section, the same bound as a head.
    const MAX_TRAILER_BYTES: usize = MAX_HEAD_BYTES;

    pub struct Header {
        pub name: String,
        pub value: Vec<u8>,
    }

    /// Values of every field named `name` (case-insensitive), in order.
    pub fn header_values<'a>(
        headers: &'a [Header],
        name: &'a str,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value.as_slice())
    }

    /// Lowercased elements of the comma-separated lists in every field named `name`
    /// (RFC 9110 section 5.6.1), with empty elements dropped.
    pub fn list_elements(headers: &[Header], name: &str) -> Vec<String> {
        header_values(headers, name)
            .flat_map(|value| value.split(|&byte| byte == b','))
            .map(|element| String::from_utf8_lossy(element).trim().to_ascii_lowercase())
            .filter(|element| !element.is_empty())
            .collect()
    }

    pub fn headers_from(parsed: &[httparse::Header<'_>]) -> Vec<Header> {
        parsed
            .iter()
            .map(|header| Header {
                name: header.name.to_owned(),
                value: header.value.to_vec(),
            })
            .collect()
    }

    /// Framing of a message body (RFC 9112 section 6.3).
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum BodyFraming {
        /// No body, or a body of length zero.
        Empty,
        Length(u64),
        Chunked,
        /// The body ends when the peer closes the connection (responses only).
        UntilClose,
    }

    /// Returns the Content-Length of a message, or `None` when it has none. Several fields,
    /// or a comma-separated list, are accepted only when every value is the same (RFC 9110
    /// section 8.6, RFC 9112 section 6.3 item 5).
    pub fn content_length(headers: &[Header]) -> Result<Option<u64>, String> {
        let mut length = None;
        for value in header_values(headers, "content-length") {
            for element in value.split(|&byte| byte == b',') {
                let text = String::from_utf8_lossy(element);
                let text = text.trim_matches([' ', '\t']);
                let parsed = crate::cli::parse_decimal(text)
                    .ok_or_else(|| format!("invalid Content-Length `{text}`"))?;
                match length {
                    Some(previous) if previous != parsed => {
                        return Err(format!(
                            "conflicting Content-Length values {previous} and {parsed}"
                        ));
                    }
                    _ => length = Some(parsed),
                }
            }
        }
        Ok(length)
    }

    /// A buffered reader over a TCP stream. Head and chunk-line parsing work on the
    /// buffer; large body reads bypass it and go straight into the caller's buffer.
    pub struct Reader {
        stream: TcpStream,
        buf: Box<[u8]>,
        start: usize,
        end: usize,
    }

    pub enum HeadError {
        Io(io::Error),
        /// A malformed head, with a description of the defect.
        Invalid(String),
        /// A head over one of its size limits, with the limit that it broke.
        TooLarge(String),
    }

    impl From<io::Error> for HeadError {
        fn from(error: io::Error) -> Self {
            HeadError::Io(error)
        }
    }

    /// Result of trying to parse a head from the buffered bytes.
    pub enum ParseStatus<T> {
        Complete { value: T, len: usize },
        Partial,
    }

    impl Reader {
        pub fn new(stream: TcpStream) -> Reader {
            Reader {
                stream,
                buf: vec![0; MAX_HEAD_BYTES].into_boxed_slice(),
                start: 0,
                end: 0,
            }
        }

        pub fn stream(&self) -> &TcpStream {
            &self.stream
        }

        pub fn buffered(&self) -> &[u8] {
            &self.buf[self.start..self.end]
        }

        fn consume(&mut self, len: usize) {
            self.start += len.min(self.end - self.start);
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
        }

        /// Reads more bytes from the stream into the buffer and returns how many arrived;
        /// 0 means the peer closed its side.
        fn fill(&mut self) -> io::Result<usize> {
            if self.end == self.buf.len() && self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                return Err(io::Error::other("read buffer is full"));
            }
            loop {
                match self.stream.read(&mut self.buf[self.end..]) {
                    Ok(read) => {
                        self.end += read;
                        return Ok(read);
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                }
            }
        }

        /// Reads one head with `parse`, which returns the parsed value and the head length
        /// once the buffered bytes hold a complete head. Returns `Ok(None)` when the peer
        /// closed the connection before sending any byte of a head.
        pub fn read_head<T>(
            &mut self,
            mut parse: impl FnMut(&[u8]) -> Result<ParseStatus<T>, HeadError>,
        ) -> Result<Option<T>, HeadError> {
            loop {
                if self.start < self.end {
                    if let ParseStatus::Complete { value, len } = parse(self.buffered())? {
                        self.consume(len);
                        return Ok(Some(value));
                    }
                    if self.end - self.start >= MAX_HEAD_BYTES {
                        return Err(HeadError::TooLarge(format!(
                            "head is larger than {MAX_HEAD_BYTES} bytes"
                        )));
                    }
                }
                if self.fill()? == 0 {
                    if self.start == self.end {
                        return Ok(None);
                    }
                    return Err(HeadError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed after {} bytes of an incomplete head",
                            self.end - self.start
                        ),
                    )));
                }
            }
        }

        /// Reads one CRLF-terminated line and returns it without the CRLF.
        fn read_line(&mut self, max_len: usize, what: &str) -> io::Result<Vec<u8>> {
            loop {
                if let Some(newline) = self.buffered().iter().position(|&byte| byte == b'\n') {
                    let line = &self.buffered()[..newline];
                    let Some(line) = line.strip_suffix(b"\r") else {
                        return Err(invalid_data(format!("{what} ends in a bare LF, not CRLF")));
                    };
                    let line = line.to_vec();
                    self.consume(newline + 1);
                    return Ok(line);
                }
                if self.end - self.start >= max_len {
                    return Err(invalid_data(format!(
                        "{what} is longer than {max_len} bytes"
                    )));
                }
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed inside a {what}"),
                    ));
                }
            }
        }

        /// Reads up to `out.len()` bytes, first from the buffer, otherwise straight from the
        /// stream. Returns 0 when the peer closed its side.
        fn read_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.start < self.end {
                let len = out.len().min(self.end - self.start);
                out[..len].copy_from_slice(&self.buf[self.start..self.start + len]);
                self.consume(len);
                return Ok(len);
            }
            loop {
                match self.stream.read(out) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    result => return result,
                }
            }
        }
    }

    fn invalid_data(message: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, message)
    }

    /// Decodes one message body from a `Reader`, piece by piece, without holding it.
    pub struct BodyReader {
        state: BodyState,
        received: u64,
    }

    enum BodyState {
        Length { remaining: u64, total: u64 },
        ChunkSize,
        ChunkData { remaining: u64 },
        ChunkDataEnd,
        Trailers,
        UntilClose,
        Done,
    }

    impl BodyReader {
        pub fn new(framing: BodyFraming) -> BodyReader {
            let state = match framing {
                BodyFraming::Empty | BodyFraming::Length(0) => BodyState::Done,
                BodyFraming::Length(total) => BodyState::Length {
                    remaining: total,
                    total,
                },
                BodyFraming::Chunked => BodyState::ChunkSize,
                BodyFraming::UntilClose => BodyState::UntilClose,
            };
            BodyReader { state, received: 0 }
        }

        /// Body bytes decoded so far.
        pub fn received(&self) -> u64 {
            self.received
        }

        pub fn is_done(&self) -> bool {
            matches!(self.state, BodyState::Done)
        }

        /// Reads the next piece of body data into `out` and returns its length, or 0 once
        /// the body has ended. A connection closed before the end of a framed body is an
        /// `UnexpectedEof` error, and malformed chunked framing is `InvalidData`.
        pub fn read(&mut self, reader: &mut Reader, out: &mut [u8]) -> io::Result<usize> {
            if out.is_empty() {
                return Ok(0);
            }
            loop {
                match self.state {
                    BodyState::Done => return Ok(0),
                    BodyState::Length { remaining, total } => {
                        let limit = out
                            .len()
                            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                        let read = reader.read_some(&mut out[..limit])?;
                        if read == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "connection closed after {} of {total} body bytes \
                                     (Content-Length: {total})",
                                    self.received
                                ),
                            ));
                        }
                        let remaining = remaining - read as u64;
                        self.state = if remaining == 0 {
                            BodyState::Done
                        } else {
                            BodyState::Length { remaining, total }
                        };
                        self.received += read as u64;
                        return Ok(read);
                    }
                    BodyState::UntilClose => {
                        let read = reader.read_some(out)?;
                        if read == 0 {
                            self.state = BodyState::Done;
                        }
                        self.received += read as u64;
                        return Ok(read);
                    }
                    BodyState::ChunkSize => {
                        let line = self.chunk_line(reader, "chunk-size line")?;
                        let size = parse_chunk_size(&line)?;
                        self.state = if size == 0 {
                            BodyState::Trailers
                        } else {
                            BodyState::ChunkData { remaining: size }
                        };
                    }
                    BodyState::ChunkData { remaining } => {
                        let limit = out
                            .len()
                            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                        let read = reader.read_some(&mut out[..limit])?;
                        if read == 0 {
                            return Err(self.closed_inside_chunked());
                        }
                        let remaining = remaining - read as u64;
                        self.state = if remaining == 0 {
                            BodyState::ChunkDataEnd
                        } else {
                            BodyState::ChunkData { remaining }
                        };
                        self.received += read as u64;
                        return Ok(read);
                    }
                    BodyState::ChunkDataEnd => {
                        let line = self.chunk_line(reader, "chunk data terminator")?;
                        if !line.is_empty() {
                            return Err(invalid_data(format!(
                                "chunk data is longer than its chunk size, or is not followed \
                                 by CRLF, after {} body bytes",
                                self.received
                            )));
                        }
                        self.state = BodyState::ChunkSize;
                    }
                    BodyState::Trailers => {
                        // RFC 9112 section 7.1.2: the trailer section is a list of field
                        // lines that ends with an empty line. Trailers are read and dropped.
                        let mut trailer_bytes = 0;
                        loop {
                            let line = self.chunk_line(reader, "trailer field line")?;
                            if line.is_empty() {
                                break;
                            }
                            trailer_bytes += line.len() + 2;
                            if trailer_bytes > MAX_TRAILER_BYTES {
                                return Err(invalid_data(format!(
                                    "trailer section is larger than {MAX_TRAILER_BYTES} bytes"
                                )));
                            }
                        }
                        self.state = BodyState::Done;
                        return Ok(0);
                    }
                }
            }
        }

        fn chunk_line(&self, reader: &mut Reader, what: &str) -> io::Result<Vec<u8>> {
            reader
                .read_line(MAX_CHUNK_LINE_BYTES, what)
                .map_err(|error| match error.kind() {
                    io::ErrorKind::UnexpectedEof => self.closed_inside_chunked(),
                    _ => error,
                })
        }

        fn closed_inside_chunked(&self) -> io::Error {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed inside the chunked body after {} bytes, before the \
                     last chunk",
                    self.received
                ),
            )
        }
    }

    /// Parses a chunk-size line: hex digits, then optional chunk extensions that start
    /// with `;` after optional whitespace (RFC 9112 section 7.1.1). Extensions are ignored.
    fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
        let digits = line
            .iter()
            .take_while(|byte| byte.is_ascii_hexdigit())
            .count();
        let rest = &line[digits..];
        let extension_ok = rest
            .iter()
            .find(|&&byte| byte != b' ' && byte != b'\t')
            .is_none_or(|&byte| byte == b';');
        if digits == 0 || !extension_ok {
            return Err(invalid_data(format!(
                "invalid chunk-size line `{}`",
                String::from_utf8_lossy(line).escape_debug()
            )));
        }
        let mut size: u64 = 0;
        for &digit in &line[..digits] {
            let value = (digit as char).to_digit(16).unwrap_or(0) as u64;
            size = size
                .checked_mul(16)
                .and_then(|size| size.checked_add(value))
                .ok_or_else(|| {
                    invalid_data(format!(
                        "chunk size `{}` does not fit in 64 bits",
                        String::from_utf8_lossy(&line[..digits])
                    ))
                })?;
        }
        Ok(size)
    }
}

/// The origin server.
mod serve {
    use std::fmt::Write as _;
    use std::io::{self, BufWriter, Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crate::cli::parse_decimal;
    use crate::pattern;
    use crate::wire::{self, BodyFraming, BodyReader, HeadError, Header, ParseStatus, Reader};

    pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

    /// Maximum number of connections served at once, one thread each. Beyond it new
    /// connections are closed right away, so a runaway client cannot exhaust threads;
    /// 4096 is far above what the demo, the tests or a benchmark open.
    const MAX_CONNECTIONS: usize = 4096;

    /// Time a read or write may block before the connection is dropped. This bounds how
    /// long an idle keep-alive connection, or a peer that stopped reading, keeps a thread busy.
    const IO_TIMEOUT: Duration = Duration::from_secs(60);

    /// Pause after a failed accept (for example when out of file descriptors), so the
    /// accept loop does not spin while the condition lasts.
    const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

    /// After the last response on a connection the server half-closes it and discards
    /// what the client still sends for up to this long. Closing a socket with unread data
    /// makes the kernel send RST, which can destroy the response before the client reads it.
    const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

    /// Maximum number of bytes discarded while lingering before the socket is closed.
    const LINGER_MAX_BYTES: u64 = 1024 * 1024;

    /// Capacity in bytes of the per-connection write buffer. Heads and chunk framing
    /// collect here; pattern slices, which are larger, go to the socket directly.
    const WRITE_BUFFER_BYTES: usize = 64 * 1024;

    /// Size in bytes of the buffer that request bodies are read into by /echo and /sink.
    const BODY_PIECE_BYTES: usize = 64 * 1024;

    /// Default chunk size of /chunked/N, the size many servers use for streamed bodies.
    const DEFAULT_CHUNK_BYTES: u64 = 16 * 1024;

    /// Default piece size and interval of /trickle/N: 16 bytes per second resembles a
    /// slow event stream.
    const DEFAULT_TRICKLE_PIECE_BYTES: u64 = 16;
    const DEFAULT_TRICKLE_INTERVAL_MS: u64 = 1000;

    /// Body size of /small.
    const SMALL_BODY_BYTES: u64 = 100;

    /// Accept backlog of the origin's listener, enough for a benchmark's burst of connections.
    const LISTEN_BACKLOG: i32 = 4096;

    /// Binds `listen`, prints `listening on ADDR` and serves until the process is killed.
    pub fn run(listen: &str) -> ExitCode {
        let listener = match TcpListener::bind(listen) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("ringway-origin: failed to listen on {listen}: {error}");
                return ExitCode::FAILURE;
            }
        };
        // std listens with a backlog of 128, which drops connections when a benchmark opens
        // hundreds at once; the kernel caps the larger value at net.core.somaxconn.
        if let Err(error) = ringway::sys::set_listen_backlog(
            std::os::fd::AsRawFd::as_raw_fd(&listener),
            LISTEN_BACKLOG,
        ) {
            eprintln!(
                "ringway-origin: failed to raise the listen backlog: {error}; going on with 128"
            );
        }
        let local = match listener.local_addr() {
            Ok(local) => local,
            Err(error) => {
                eprintln!("ringway-origin: failed to read the bound address: {error}");
                return ExitCode::FAILURE;
            }
        };
        let mut stdout = io::stdout();
        if let Err(error) = writeln!(stdout, "listening on {local}").and_then(|()| stdout.flush()) {
            eprintln!("ringway-origin: failed to write to stdout: {error}");
            return ExitCode::FAILURE;
        }

        let active = Arc::new(AtomicUsize::new(0));
        loop {
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("ringway-origin: accept failed: {error}");
                    thread::sleep(ACCEPT_ERROR_BACKOFF);
                    continue;
                }
            };
            if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                eprintln!(
                    "ringway-origin: {peer}: closing new connection, {MAX_CONNECTIONS} \
                     connections are already open"
                );
                continue;
            }
            let slot = ConnectionSlot::take(&active);
            let spawned = thread::Builder::new()
                .name(format!("conn {peer}"))
                .spawn(move || {
                    let _slot = slot;
                    serve_connection(stream, peer);
                });
            if let Err(error) = spawned {
                eprintln!("ringway-origin: {peer}: failed to start a connection thread: {error}");
            }
        }
    }

    /// One counted open connection; the count drops when the slot does.
    struct ConnectionSlot(Arc<AtomicUsize>);

    impl ConnectionSlot {
        fn take(active: &Arc<AtomicUsize>) -> ConnectionSlot {
            active.fetch_add(1, Ordering::Relaxed);
            ConnectionSlot(Arc::clone(active))
        }
    }

    impl Drop for ConnectionSlot {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    struct RequestHead {
        method: String,
        target: String,
        /// 0 for HTTP/1.0, 1 for HTTP/1.1.
        minor_version: u8,
        headers: Vec<Header>,
        /// The head exactly as received, including the empty line that ends it.
        raw: Vec<u8>,
    }

    fn parse_request_head(buffered: &[u8]) -> Result<ParseStatus<RequestHead>, HeadError> {
        let mut fields = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
        let mut request = httparse::Request::new(&mut fields);
        match request.parse(buffered) {
            Ok(httparse::Status::Complete(len)) => Ok(ParseStatus::Complete {
                value: RequestHead {
                    method: request.method.unwrap_or_default().to_owned(),
                    target: request.path.unwrap_or_default().to_owned(),
                    minor_version: request.version.unwrap_or(1),
                    headers: wire::headers_from(request.headers),
                    raw: buffered[..len].to_vec(),
                },
                len,
            }),
            Ok(httparse::Status::Partial) => Ok(ParseStatus::Partial),
            Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge(format!(
                "request has more than {} header fields",
                wire::MAX_HEADERS
            ))),
            Err(error) => Err(HeadError::Invalid(format!("invalid request head: {error}"))),
        }
    }

    /// The facts about a request that shape its response head.
    #[derive(Clone, Copy)]
    struct Exchange {
        /// 0 for HTTP/1.0, 1 for HTTP/1.1.
        minor_version: u8,
        /// The request method is HEAD, so the response carries no body.
        head_only: bool,
    }

    impl Exchange {
        fn of(head: &RequestHead) -> Exchange {
            Exchange {
                minor_version: head.minor_version,
                head_only: head.method == "HEAD",
            }
        }

        /// The exchange assumed when the request head could not be parsed.
        const UNPARSED: Exchange = Exchange {
            minor_version: 1,
            head_only: false,
        };
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Persistence {
        KeepAlive,
        Close,
    }

    /// Framing of a response body on the wire.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum ResponseFraming {
        Length(u64),
        Chunked,
        UntilClose,
        /// 1xx, 204 and 304 responses, which have no body and no framing header
        /// (RFC 9112 section 6.3 item 1).
        NoBody,
    }

    /// A request rejected before its route ran.
    struct Rejection {
        status: u16,
        reason: String,
        /// Value of the Allow field for 405 responses.
        allow: Option<&'static str>,
    }

    impl Rejection {
        fn new(status: u16, reason: impl Into<String>) -> Rejection {
            Rejection {
                status,
                reason: reason.into(),
                allow: None,
            }
        }
    }

    enum Route {
        /// Streams the request body back.
        Echo,
        /// Reads and counts the request body.
        Sink,
        /// A response generated without looking at the request body.
        Generated(Generated),
    }

    enum Generated {
        Bytes {
            len: u64,
        },
        Chunked {
            len: u64,
            chunk: u64,
        },
        Close {
            len: u64,
        },
        Trickle {
            len: u64,
            interval: Duration,
            piece: u64,
        },
        Small,
        Status {
            code: u16,
        },
        Headers,
        NotFound {
            path: String,
        },
    }

    struct Connection {
        reader: Reader,
        writer: BufWriter<TcpStream>,
        peer: SocketAddr,
    }

    fn serve_connection(stream: TcpStream, peer: SocketAddr) {
        let writer = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.try_clone());
        let writer = match writer {
            Ok(writer) => writer,
            Err(error) => {
                eprintln!("ringway-origin: {peer}: failed to set up the connection: {error}");
                return;
            }
        };
        let mut connection = Connection {
            reader: Reader::new(stream),
            writer: BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer),
            peer,
        };

        loop {
            let head = match connection.reader.read_head(parse_request_head) {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(HeadError::Io(error))
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    eprintln!(
                        "ringway-origin: {peer}: no request within {} s, closing the connection",
                        IO_TIMEOUT.as_secs()
                    );
                    return;
                }
                Err(HeadError::Io(error)) => {
                    eprintln!("ringway-origin: {peer}: failed to read a request head: {error}");
                    return;
                }
                Err(HeadError::Invalid(reason)) => {
                    connection.reject_and_close(Rejection::new(400, reason));
                    return;
                }
                Err(HeadError::TooLarge(reason)) => {
                    connection.reject_and_close(Rejection::new(431, reason));
                    return;
                }
            };
            match connection.handle_request(&head) {
                Ok(Persistence::KeepAlive) => {}
                Ok(Persistence::Close) => {
                    connection.close_gracefully();
                    return;
                }
                Err(error) => {
                    eprintln!(
                        "ringway-origin: {peer}: {} {} failed: {error}",
                        head.method, head.target
                    );
                    return;
                }
            }
        }
    }

    impl Connection {
        fn handle_request(&mut self, head: &RequestHead) -> io::Result<Persistence> {
            let exchange = Exchange::of(head);
            let framing = match request_framing(head) {
                Ok(framing) => framing,
                Err(rejection) => return self.reject(exchange, rejection, Persistence::Close),
            };
            // RFC 9112 section 3.2: a server must respond with 400 to an HTTP/1.1 request
            // without a Host field and to any request with more than one.
            let host_fields = wire::header_values(&head.headers, "host").count();
            if host_fields > 1 || (head.minor_version == 1 && host_fields == 0) {
                let reason = format!("request has {host_fields} Host fields, expected 1");
                return self.reject(exchange, Rejection::new(400, reason), Persistence::Close);
            }
            let persistence = requested_persistence(head);

            let mut body = BodyReader::new(framing);
            // RFC 9110 section 10.1.1: "100-continue" is the only expectation defined, and
            // a server may respond to any other with 417. The body may follow anyway, so
            // the connection closes.
            let expectations = wire::list_elements(&head.headers, "expect");
            if let Some(unknown) = expectations.iter().find(|value| *value != "100-continue") {
                let reason = format!("unsupported expectation `{unknown}`");
                return self.reject(exchange, Rejection::new(417, reason), Persistence::Close);
            }
            // RFC 9110 section 15.2: a server must not send a 1xx response to an HTTP/1.0
            // client.
            if !expectations.is_empty() && !body.is_done() && head.minor_version == 1 {
                self.writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                self.writer.flush()?;
            }

            let route = match parse_route(&head.method, &head.target) {
                Ok(route) => route,
                Err(rejection) => {
                    drain(&mut self.reader, &mut body)?;
                    return self.reject(exchange, rejection, persistence);
                }
            };
            match route {
                Route::Echo => self.echo(head, framing, &mut body, persistence),
                Route::Sink => {
                    let received = drain(&mut self.reader, &mut body)?;
                    let text = format!("received {received} bytes\n");
                    self.send_text(exchange, 200, &[], &text, persistence)
                }
                Route::Generated(generated) => {
                    drain(&mut self.reader, &mut body)?;
                    self.send_generated(head, generated, persistence)
                }
            }
        }

        /// Sends the response of a route that ignores the request body.
        fn send_generated(
            &mut self,
            head: &RequestHead,
            route: Generated,
            persistence: Persistence,
        ) -> io::Result<Persistence> {
            let exchange = Exchange::of(head);
            let send_body = !exchange.head_only;
            let text_plain = [("Content-Type", "text/plain")];
            let persistence = match route {
                Generated::Bytes { len } => {
                    let framing = ResponseFraming::Length(len);
                    let persistence = self.send_head(exchange, 200, &[], framing, persistence)?;
                    if send_body {
                        pattern::write(&mut self.writer, 0, len)?;
                    }
                    persistence
                }
                Generated::Chunked { len, chunk } => {
                    let framing = streaming_framing(exchange);
                    let persistence = self.send_head(exchange, 200, &[], framing, persistence)?;
                    if send_body {
                        self.send_pattern_pieces(framing, len, chunk, None)?;
                    }
                    persistence
                }
                Generated::Close { len } => {
                    let framing = ResponseFraming::UntilClose;
                    let persistence = self.send_head(exchange, 200, &[], framing, persistence)?;
                    if send_body {
                        pattern::write(&mut self.writer, 0, len)?;
                    }
                    persistence
                }
                Generated::Trickle {
                    len,
                    interval,
                    piece,
                } => {
                    let framing = streaming_framing(exchange);
                    let persistence = self.send_head(exchange, 200, &[], framing, persistence)?;
                    if send_body {
                        self.send_pattern_pieces(framing, len, piece, Some(interval))?;
                    }
                    persistence
                }
                Generated::Small => {
                    let framing = ResponseFraming::Length(SMALL_BODY_BYTES);
                    let persistence =
                        self.send_head(exchange, 200, &text_plain, framing, persistence)?;
                    if send_body {
                        pattern::write(&mut self.writer, 0, SMALL_BODY_BYTES)?;
                    }
                    persistence
                }
                Generated::Status { code } => self.send_status(exchange, code, persistence)?,
                Generated::Headers => {
                    let framing = ResponseFraming::Length(head.raw.len() as u64);
                    let persistence =
                        self.send_head(exchange, 200, &text_plain, framing, persistence)?;
                    if send_body {
                        self.writer.write_all(&head.raw)?;
                    }
                    persistence
                }
                Generated::NotFound { path } => {
                    let text = format!("not found: {path}\n");
                    self.send_text(exchange, 404, &[], &text, persistence)?
                }
            };
            self.writer.flush()?;
            Ok(persistence)
        }

        /// Sends `len` pattern bytes in pieces of `piece` bytes, as chunks when `framing`
        /// is chunked. With an `interval`, flushes each piece and pauses between pieces.
        fn send_pattern_pieces(
            &mut self,
            framing: ResponseFraming,
            len: u64,
            piece: u64,
            interval: Option<Duration>,
        ) -> io::Result<()> {
            let mut sent = 0;
            while sent < len {
                if let Some(interval) = interval
                    && sent > 0
                {
                    thread::sleep(interval);
                }
                let size = piece.min(len - sent);
                if framing == ResponseFraming::Chunked {
                    write!(self.writer, "{size:x}\r\n")?;
                    pattern::write(&mut self.writer, sent, size)?;
                    self.writer.write_all(b"\r\n")?;
                } else {
                    pattern::write(&mut self.writer, sent, size)?;
                }
                if interval.is_some() {
                    self.writer.flush()?;
                }
                sent += size;
            }
            if framing == ResponseFraming::Chunked {
                self.writer.write_all(b"0\r\n\r\n")?;
            }
            Ok(())
        }

        fn send_status(
            &mut self,
            exchange: Exchange,
            code: u16,
            persistence: Persistence,
        ) -> io::Result<Persistence> {
            let framing = match code {
                100..=199 => {
                    // A 1xx response is interim, so a final response must follow it
                    // (RFC 9110 section 15.2). HTTP/1.0 clients get only the final one.
                    if exchange.minor_version == 1 {
                        write!(
                            self.writer,
                            "HTTP/1.1 {code} {}\r\n\r\n",
                            reason_phrase(code)
                        )?;
                        self.writer.flush()?;
                    }
                    ResponseFraming::Length(0)
                }
                204 | 304 => ResponseFraming::NoBody,
                _ => ResponseFraming::Length(0),
            };
            let status = if code < 200 { 200 } else { code };
            self.send_head(exchange, status, &[], framing, persistence)
        }

        /// Streams the request body back with the same framing kind, one piece per read.
        fn echo(
            &mut self,
            head: &RequestHead,
            request_framing: BodyFraming,
            body: &mut BodyReader,
            persistence: Persistence,
        ) -> io::Result<Persistence> {
            let framing = match request_framing {
                BodyFraming::Empty => ResponseFraming::Length(0),
                BodyFraming::Length(len) => ResponseFraming::Length(len),
                BodyFraming::Chunked => ResponseFraming::Chunked,
                BodyFraming::UntilClose => ResponseFraming::UntilClose,
            };
            let content_type: Vec<(&str, &str)> =
                wire::header_values(&head.headers, "content-type")
                    .next()
                    .and_then(|value| std::str::from_utf8(value).ok())
                    .map(|value| ("Content-Type", value))
                    .into_iter()
                    .collect();
            let exchange = Exchange::of(head);
            let persistence = self.send_head(exchange, 200, &content_type, framing, persistence)?;
            self.writer.flush()?;

            let mut piece = vec![0; BODY_PIECE_BYTES];
            loop {
                let read = body.read(&mut self.reader, &mut piece)?;
                if read == 0 {
                    break;
                }
                if framing == ResponseFraming::Chunked {
                    write!(self.writer, "{read:x}\r\n")?;
                    self.writer.write_all(&piece[..read])?;
                    self.writer.write_all(b"\r\n")?;
                } else {
                    self.writer.write_all(&piece[..read])?;
                }
                self.writer.flush()?;
            }
            if framing == ResponseFraming::Chunked {
                self.writer.write_all(b"0\r\n\r\n")?;
            }
            self.writer.flush()?;
            Ok(persistence)
        }

        /// Writes a status line and header section to the write buffer and returns the
        /// persistence that the response announces: a close-delimited body forces Close.
        fn send_head(
            &mut self,
            exchange: Exchange,
            status: u16,
            extra: &[(&str, &str)],
            framing: ResponseFraming,
            persistence: Persistence,
        ) -> io::Result<Persistence> {
            let persistence = match framing {
                ResponseFraming::UntilClose => Persistence::Close,
                _ => persistence,
            };

            let mut text = String::with_capacity(256);
            // Writing to a String cannot fail, so the fmt::Result values are ignored.
            let _ = write!(text, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
            let _ = write!(text, "Date: {}\r\n", http_date(SystemTime::now()));
            text.push_str("Server: ringway-origin\r\n");
            for (name, value) in extra {
                let _ = write!(text, "{name}: {value}\r\n");
            }

            match framing {
                ResponseFraming::Length(len) => {
                    let _ = write!(text, "Content-Length: {len}\r\n");
                }
                ResponseFraming::Chunked => text.push_str("Transfer-Encoding: chunked\r\n"),
                ResponseFraming::UntilClose | ResponseFraming::NoBody => {}
            }
            match persistence {
                Persistence::Close => text.push_str("Connection: close\r\n"),
                // RFC 9112 section 9.3: an HTTP/1.0 connection persists only when both
                // sides send "keep-alive".
                Persistence::KeepAlive if exchange.minor_version == 0 => {
                    text.push_str("Connection: keep-alive\r\n");
                }
                Persistence::KeepAlive => {}
            }
            text.push_str("\r\n");

            self.writer.write_all(text.as_bytes())?;
            Ok(persistence)
        }

        /// Sends a `text/plain` response with `text` as its body, or only its head when
        /// the request was HEAD.
        fn send_text(
            &mut self,
            exchange: Exchange,
            status: u16,
            extra: &[(&str, &str)],
            text: &str,
            persistence: Persistence,
        ) -> io::Result<Persistence> {
            let mut headers = vec![("Content-Type", "text/plain")];
            headers.extend_from_slice(extra);
            let framing = ResponseFraming::Length(text.len() as u64);
            let persistence = self.send_head(exchange, status, &headers, framing, persistence)?;
            if !exchange.head_only {
                self.writer.write_all(text.as_bytes())?;
            }
            self.writer.flush()?;
            Ok(persistence)
        }

        /// Logs `rejection` and sends it as an error response that announces `persistence`.
        fn reject(
            &mut self,
            exchange: Exchange,
            rejection: Rejection,
            persistence: Persistence,
        ) -> io::Result<Persistence> {
            eprintln!(
                "ringway-origin: {}: rejected request with {}: {}",
                self.peer, rejection.status, rejection.reason
            );
            let allow: Vec<(&str, &str)> = rejection
                .allow
                .map(|allow| ("Allow", allow))
                .into_iter()
                .collect();
            let text = format!("{}\n", rejection.reason);
            self.send_text(exchange, rejection.status, &allow, &text, persistence)
        }

        /// Rejects a request whose head could not be parsed, then closes the connection.
        fn reject_and_close(&mut self, rejection: Rejection) {
            match self.reject(Exchange::UNPARSED, rejection, Persistence::Close) {
                Ok(_) => self.close_gracefully(),
                Err(error) => eprintln!(
                    "ringway-origin: {}: failed to send an error response: {error}",
                    self.peer
                ),
            }
        }

        /// Flushes, half-closes the connection and discards what the client still sends
        /// for a short time, so the kernel does not reset the connection while the last
        /// response is in flight.
        fn close_gracefully(&mut self) {
            if self.writer.flush().is_err() {
                return;
            }
            let mut stream = self.reader.stream();
            if stream.shutdown(Shutdown::Write).is_err()
                || stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err()
            {
                return;
            }
            let mut discard = vec![0; BODY_PIECE_BYTES];
            let mut discarded = 0;
            while discarded < LINGER_MAX_BYTES {
                match stream.read(&mut discard) {
                    Ok(0) | Err(_) => return,
                    Ok(read) => discarded += read as u64,
                }
            }
        }
    }

    /// Reads and discards the rest of a request body and returns the body length.
    fn drain(reader: &mut Reader, body: &mut BodyReader) -> io::Result<u64> {
        if body.is_done() {
            return Ok(body.received());
        }
        let mut discard = vec![0; BODY_PIECE_BYTES];
        while body.read(reader, &mut discard)? > 0 {}
        Ok(body.received())
    }

    /// Determines the framing of the request body (RFC 9112 section 6.3).
    fn request_framing(head: &RequestHead) -> Result<BodyFraming, Rejection> {
        let codings = wire::list_elements(&head.headers, "transfer-encoding");
        let content_length =
            wire::content_length(&head.headers).map_err(|reason| Rejection::new(400, reason))?;
        if codings.is_empty()
            && wire::header_values(&head.headers, "transfer-encoding")
                .next()
                .is_some()
        {
            return Err(Rejection::new(400, "empty Transfer-Encoding"));
        }
        if codings.is_empty() {
            return Ok(content_length.map_or(BodyFraming::Empty, BodyFraming::Length));
        }

        // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message means the framing
        // is faulty, and a server may reject a request with both Transfer-Encoding and
        // Content-Length, a common request smuggling vector. Either way it must close.
        if head.minor_version == 0 {
            return Err(Rejection::new(
                400,
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if content_length.is_some() {
            return Err(Rejection::new(
                400,
                "request has both Transfer-Encoding and Content-Length",
            ));
        }

        // RFC 9112 section 6.3 item 4: if chunked is not the final coding the length
        // cannot be determined, so 400. Section 6.1: codings the server does not
        // implement get 501; this server implements only chunked.
        if codings.last().map(String::as_str) != Some("chunked") {
            return Err(Rejection::new(
                400,
                format!(
                    "Transfer-Encoding `{}` does not end in chunked",
                    codings.join(", ")
                ),
            ));
        }
        if codings.len() > 1 {
            return Err(Rejection::new(
                501,
                format!(
                    "unsupported Transfer-Encoding `{}`: only chunked is implemented",
                    codings.join(", ")
                ),
            ));
        }
        Ok(BodyFraming::Chunked)
    }

    /// Returns whether the client wants the connection kept open after this exchange:
    /// HTTP/1.1 persists unless `close` is listed, HTTP/1.0 only when `keep-alive` is
    /// listed (RFC 9112 section 9.3).
    fn requested_persistence(head: &RequestHead) -> Persistence {
        let options = wire::list_elements(&head.headers, "connection");
        let has = |option: &str| options.iter().any(|listed| listed == option);
        let keep_alive = match head.minor_version {
            0 => has("keep-alive") && !has("close"),
            _ => !has("close"),
        };
        if keep_alive {
            Persistence::KeepAlive
        } else {
            Persistence::Close
        }
    }

    /// Chunked for HTTP/1.1 clients. HTTP/1.0 clients cannot decode chunked (RFC 9112
    /// section 6.1), so their streamed bodies end with the connection.
    fn streaming_framing(exchange: Exchange) -> ResponseFraming {
        if exchange.minor_version == 1 {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::UntilClose
        }
    }

    fn parse_route(method: &str, target: &str) -> Result<Route, Rejection> {
        let (path, query) = split_target(target)?;
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match segments.as_slice() {
            ["echo"] => Route::Echo,
            ["sink"] => Route::Sink,
            ["bytes", len] => Route::Generated(Generated::Bytes {
                len: path_number(len, "N")?,
            }),
            ["chunked", len] => Route::Generated(Generated::Chunked {
                len: path_number(len, "N")?,
                chunk: DEFAULT_CHUNK_BYTES,
            }),
            ["close", len] => Route::Generated(Generated::Close {
                len: path_number(len, "N")?,
            }),
            ["trickle", len] => Route::Generated(Generated::Trickle {
                len: path_number(len, "N")?,
                interval: Duration::from_millis(DEFAULT_TRICKLE_INTERVAL_MS),
                piece: DEFAULT_TRICKLE_PIECE_BYTES,
            }),
            ["small"] => Route::Generated(Generated::Small),
            ["status", code] => Route::Generated(Generated::Status {
                code: status_code(code)?,
            }),
            ["headers"] => Route::Generated(Generated::Headers),
            _ => Route::Generated(Generated::NotFound {
                path: path.to_owned(),
            }),
        };
        let route = apply_query(route, query)?;

        let allowed = match route {
            Route::Generated(Generated::NotFound { .. }) => return Ok(route),
            Route::Echo | Route::Sink => "POST, PUT",
            Route::Generated(_) => "GET, HEAD",
        };
        if !allowed.split(", ").any(|allowed| allowed == method) {
            return Err(Rejection {
                status: 405,
                reason: format!("method {method} is not allowed on {path}"),
                allow: Some(allowed),
            });
        }
        Ok(route)
    }

    /// Splits a request target into path and query. The absolute form, which a server
    /// must accept (RFC 9112 section 3.2.2), is reduced to its path.
    fn split_target(target: &str) -> Result<(&str, &str), Rejection> {
        let origin_form = match target.strip_prefix("http://") {
            Some(rest) => rest.find('/').map_or("/", |slash| &rest[slash..]),
            None => target,
        };
        if !origin_form.starts_with('/') {
            let reason = format!("request target `{target}` is not a path");
            return Err(Rejection::new(400, reason));
        }
        Ok(origin_form.split_once('?').unwrap_or((origin_form, "")))
    }

    fn path_number(text: &str, name: &str) -> Result<u64, Rejection> {
        parse_decimal(text).ok_or_else(|| {
            let reason = format!("invalid {name} `{text}`: expected a decimal number below 2^64");
            Rejection::new(400, reason)
        })
    }

    fn status_code(text: &str) -> Result<u16, Rejection> {
        let code = path_number(text, "status code")?;
        match code {
            101 => Err(Rejection::new(
                400,
                "status 101 needs a protocol upgrade, which this origin does not implement",
            )),
            100..=599 => Ok(code as u16),
            _ => Err(Rejection::new(
                400,
                format!("invalid status code {code}: expected 100 to 599"),
            )),
        }
    }

    /// Applies the query parameters of /chunked and /trickle. Other routes except 404
    /// take none. Unknown or repeated parameters are rejected, so a typo does not go
    /// unnoticed.
    fn apply_query(mut route: Route, query: &str) -> Result<Route, Rejection> {
        let mut seen: Vec<&str> = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if seen.contains(&name) {
                let reason = format!("query parameter `{name}` is repeated");
                return Err(Rejection::new(400, reason));
            }
            seen.push(name);
            let number = |minimum: u64| match parse_decimal(value) {
                Some(number) if number >= minimum => Ok(number),
                _ => Err(Rejection::new(
                    400,
                    format!(
                        "invalid {name} `{value}`: expected a decimal number of at least {minimum}"
                    ),
                )),
            };
            match (&mut route, name) {
                (Route::Generated(Generated::Chunked { chunk, .. }), "chunk") => {
                    *chunk = number(1)?
                }
                (Route::Generated(Generated::Trickle { piece, .. }), "piece") => {
                    *piece = number(1)?
                }
                (Route::Generated(Generated::Trickle { interval, .. }), "interval_ms") => {
                    *interval = Duration::from_millis(number(0)?);
                }
                (Route::Generated(Generated::NotFound { .. }), _) => {}
                _ => {
                    let reason = format!("unknown query parameter `{name}`");
                    return Err(Rejection::new(400, reason));
                }
            }
        }
        Ok(route)
    }

    fn reason_phrase(status: u16) -> &'static str {
        match status {
            100 => "Continue",
            102 => "Processing",
            103 => "Early Hints",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            411 => "Length Required",
            413 => "Content Too Large",
            414 => "URI Too Long",
            417 => "Expectation Failed",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            // RFC 9112 section 4: the reason phrase may be empty.
            _ => "",
        }
    }

    /// Formats `time` as an IMF-fixdate, the preferred Date format (RFC 9110 section
    /// 5.6.7), for example `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn http_date(time: SystemTime) -> String {
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let seconds = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let days = seconds / 86_400;
        let second_of_day = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        format!(
            "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
            WEEKDAYS[(days % 7) as usize],
            MONTHS[(month - 1) as usize],
            second_of_day / 3600,
            second_of_day % 3600 / 60,
            second_of_day % 60,
        )
    }

    /// Converts days since 1970-01-01 to a (year, month, day) date in the proleptic
    /// Gregorian calendar, counting in 400-year eras of 146097 days that start on
    /// March 1 so the leap day falls at the end of each year.
    fn civil_from_days(days: u64) -> (u64, u64, u64) {
        let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
        let era = shifted / 146_097;
        let day_of_era = shifted % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_index = (5 * day_of_year + 2) / 153; // 0 = March
        let day = day_of_year - (153 * month_index + 2) / 5 + 1;
        let month = if month_index < 10 {
            month_index + 3
        } else {
            month_index - 9
        };
        let year = year_of_era + era * 400 + u64::from(month <= 2);
        (year, month, day)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn http_date_known_instants() {
            let at = |seconds| http_date(UNIX_EPOCH + Duration::from_secs(seconds));
            assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
            assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
            assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
            // 2100 is not a leap year, so February has 28 days.
            assert_eq!(at(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
            assert_eq!(at(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        }
    }
}

/// The `fetch` subcommand: downloads and checks pattern bodies.
mod fetch {
    use std::io::{self, Read, Write};
    use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
    use std::process::ExitCode;
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::pattern;
    use crate::wire::{self, BodyFraming, BodyReader, HeadError, Header, ParseStatus, Reader};

    /// Maximum value of --parallel, so a mistyped count cannot start thousands of threads
    /// and connections. Near the maximum, the common default soft limit of 1024 open
    /// files (`ulimit -n`) needs raising too.
    pub const MAX_PARALLEL: usize = 1024;

    /// Time to wait for a TCP connection to be established.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Time a single read or write may block before the download fails. It turns a
    /// stalled proxy into an error instead of a hang.
    const IO_TIMEOUT: Duration = Duration::from_secs(30);

    /// Size in bytes of the buffer each download reads the body into.
    const READ_BUFFER_BYTES: usize = 256 * 1024;

    /// Time to wait, after a Content-Length or chunked body ends, for bytes that should
    /// not be there. The request sends `Connection: close`, so a correct peer closes
    /// right away and the wait ends early.
    const TRAILING_DATA_WAIT: Duration = Duration::from_millis(100);

    pub struct Options {
        pub url: String,
        pub expect_bytes: Option<u64>,
        pub parallel: usize,
    }

    struct Target {
        addr: SocketAddr,
        /// Host and port as written in the URL, sent as the Host field.
        authority: String,
        /// Path and query, the request target.
        path: String,
    }

    struct Download {
        bytes: u64,
        elapsed: Duration,
    }

    pub fn run(options: &Options) -> ExitCode {
        let target = match parse_url(&options.url) {
            Ok(target) => target,
            Err(message) => {
                eprintln!("ringway-origin: {message}");
                return ExitCode::from(2);
            }
        };

        let started = Instant::now();
        let results: Vec<Result<Download, String>> = thread::scope(|scope| {
            let handles: Vec<_> = (0..options.parallel)
                .map(|_| scope.spawn(|| download(&target, options.expect_bytes)))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| Err("download thread panicked".to_owned()))
                })
                .collect()
        });
        let elapsed = started.elapsed();

        let mut failed = 0;
        let mut total_bytes = 0;
        for (index, result) in results.iter().enumerate() {
            let number = index + 1;
            match result {
                Ok(download) => {
                    total_bytes += download.bytes;
                    println!(
                        "download {number}: {} bytes in {:.3} s, {:.1} MB/s",
                        download.bytes,
                        download.elapsed.as_secs_f64(),
                        megabytes_per_second(download.bytes, download.elapsed)
                    );
                }
                Err(message) => {
                    failed += 1;
                    eprintln!(
                        "ringway-origin: download {number} of {} failed: {message}",
                        options.url
                    );
                }
            }
        }
        if failed > 0 {
            eprintln!(
                "ringway-origin: {failed} of {} downloads failed",
                options.parallel
            );
            return ExitCode::FAILURE;
        }
        let noun = if options.parallel == 1 {
            "download"
        } else {
            "downloads"
        };
        println!(
            "total: {} {noun}, {total_bytes} bytes in {:.3} s, {:.1} MB/s (1 MB = 10^6 bytes)",
            options.parallel,
            elapsed.as_secs_f64(),
            megabytes_per_second(total_bytes, elapsed)
        );
        ExitCode::SUCCESS
    }

    fn megabytes_per_second(bytes: u64, elapsed: Duration) -> f64 {
        bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
    }

    /// Parses `http://host[:port][/path]`. The host may be a name, an IPv4 address or an
    /// IPv6 address in brackets.
    fn parse_url(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("invalid URL `{url}`: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(start) if rest[start..].starts_with('?') => {
                (&rest[..start], format!("/{}", &rest[start..]))
            }
            Some(start) => (&rest[..start], rest[start..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("invalid port `{port}` in URL `{url}`"))?;
                (host, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("invalid URL `{url}`: missing host"));
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|error| format!("failed to resolve `{host}`: {error}"))?
            .next()
            .ok_or_else(|| format!("`{host}` resolved to no address"))?;
        Ok(Target {
            addr,
            authority: authority.to_owned(),
            path,
        })
    }

    struct ResponseHead {
        status: u16,
        reason: String,
        headers: Vec<Header>,
    }

    fn parse_response_head(buffered: &[u8]) -> Result<ParseStatus<ResponseHead>, HeadError> {
        let mut fields = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        match response.parse(buffered) {
            Ok(httparse::Status::Complete(len)) => Ok(ParseStatus::Complete {
                value: ResponseHead {
                    status: response.code.unwrap_or(0),
                    reason: response.reason.unwrap_or_default().to_owned(),
                    headers: wire::headers_from(response.headers),
                },
                len,
            }),
            Ok(httparse::Status::Partial) => Ok(ParseStatus::Partial),
            Err(error) => Err(HeadError::Invalid(format!(
                "invalid response head: {error}"
            ))),
        }
    }

    fn head_error_text(error: HeadError) -> String {
        match error {
            HeadError::Io(error) => describe_io(&error),
            HeadError::Invalid(text) | HeadError::TooLarge(text) => text,
        }
    }

    fn describe_io(error: &io::Error) -> String {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("timed out after {} s without data", IO_TIMEOUT.as_secs())
            }
            _ => error.to_string(),
        }
    }

    /// Determines the framing of a response body to a GET (RFC 9112 section 6.3).
    /// Both Transfer-Encoding and Content-Length is an error here, because no sender may
    /// send both (RFC 9112 section 6.2), so a proxy that forwards both has a bug.
    fn response_framing(head: &ResponseHead) -> Result<BodyFraming, String> {
        if matches!(head.status, 204 | 304) {
            return Ok(BodyFraming::Empty);
        }
        let codings = wire::list_elements(&head.headers, "transfer-encoding");
        let content_length = wire::content_length(&head.headers)?;
        if !codings.is_empty() {
            if content_length.is_some() {
                return Err("response has both Transfer-Encoding and Content-Length".to_owned());
            }
            return Ok(if codings.last().map(String::as_str) == Some("chunked") {
                BodyFraming::Chunked
            } else {
                BodyFraming::UntilClose
            });
        }
        Ok(content_length.map_or(BodyFraming::UntilClose, BodyFraming::Length))
    }

    fn download(target: &Target, expect_bytes: Option<u64>) -> Result<Download, String> {
        let started = Instant::now();
        let stream = TcpStream::connect_timeout(&target.addr, CONNECT_TIMEOUT)
            .map_err(|error| format!("failed to connect to {}: {error}", target.addr))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|error| format!("failed to set up the connection: {error}"))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringway-origin-fetch\r\nConnection: close\r\n\r\n",
            target.path, target.authority
        );
        (&stream)
            .write_all(request.as_bytes())
            .map_err(|error| format!("failed to send the request: {}", describe_io(&error)))?;

        let mut reader = Reader::new(stream);
        let head = loop {
            let head = reader
                .read_head(parse_response_head)
                .map_err(|error| {
                    format!(
                        "failed to read the response head: {}",
                        head_error_text(error)
                    )
                })?
                .ok_or("connection closed before a response arrived")?;
            // Interim responses precede the final one (RFC 9110 section 15.2).
            match head.status {
                101 => return Err("unexpected 101 Switching Protocols".to_owned()),
                100..=199 => continue,
                _ => break head,
            }
        };
        if head.status != 200 {
            return Err(format!(
                "unexpected status {} {} (expected 200)",
                head.status, head.reason
            ));
        }
        let framing = response_framing(&head)
            .map_err(|message| format!("invalid response framing: {message}"))?;

        let received = check_body(&mut reader, framing, expect_bytes)?;
        let elapsed = started.elapsed();
        if let Some(expected) = expect_bytes
            && received != expected
        {
            return Err(format!(
                "body length mismatch: expected {expected} bytes, got {received}"
            ));
        }
        if framing != BodyFraming::UntilClose {
            check_no_trailing_data(&mut reader, received)?;
        }
        Ok(Download {
            bytes: received,
            elapsed,
        })
    }

    /// Reads the body and checks every byte against the pattern. Returns the body length.
    fn check_body(
        reader: &mut Reader,
        framing: BodyFraming,
        expect_bytes: Option<u64>,
    ) -> Result<u64, String> {
        let mut body = BodyReader::new(framing);
        let mut buffer = vec![0; READ_BUFFER_BYTES];
        loop {
            let offset = body.received();
            let read = body
                .read(reader, &mut buffer)
                .map_err(|error| match error.kind() {
                    io::ErrorKind::UnexpectedEof => format!("short body: {error}"),
                    _ => format!(
                        "failed to read the body after {offset} bytes: {}",
                        describe_io(&error)
                    ),
                })?;
            if read == 0 {
                return Ok(body.received());
            }
            if let Some(index) = pattern::first_mismatch(&buffer[..read], offset) {
                let at = offset + index as u64;
                return Err(format!(
                    "body mismatch at offset {at}: expected {:#04x}, got {:#04x}",
                    pattern::byte_at(at),
                    buffer[index]
                ));
            }
            if let Some(expected) = expect_bytes
                && body.received() > expected
            {
                return Err(format!(
                    "body length mismatch: expected {expected} bytes, got more than that ({} so far)",
                    body.received()
                ));
            }
        }
    }

    /// Fails when bytes follow the end of a delimited body. The request sent
    /// `Connection: close`, so any further byte is a framing error, such as a repeated
    /// piece of the body.
    fn check_no_trailing_data(reader: &mut Reader, body_len: u64) -> Result<(), String> {
        let buffered = reader.buffered().len();
        if buffered > 0 {
            return Err(format!(
                "{buffered} unexpected bytes after the end of the {body_len}-byte body"
            ));
        }
        let mut stream = reader.stream();
        if stream.set_read_timeout(Some(TRAILING_DATA_WAIT)).is_err() {
            return Ok(());
        }
        let mut probe = [0; 4096];
        match stream.read(&mut probe) {
            Ok(0) | Err(_) => Ok(()),
            Ok(read) => Err(format!(
                "at least {read} unexpected bytes after the end of the {body_len}-byte body"
            )),
        }
    }
}
