//! Shared harness for the integration tests.
//!
//! It starts the real `ringway` binary and `ringway-origin` processes on loopback with
//! port 0, runs scripted origins in threads, and reads HTTP/1.1 messages from raw TCP
//! streams exactly as they arrive. Every call that can block is bounded by `TIMEOUT`
//! (or a timeout the caller passes), so a broken proxy fails a test instead of hanging it.
//!
//! Each test file includes this module with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Bound for every blocking step of the harness: waiting for a process to listen or
/// exit, connecting, and each single read or write on a socket.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Period of the body pattern of `ringway-origin`: body byte `i` is `(i % 251) as u8`.
pub const PATTERN_PERIOD: u64 = 251;

/// Maximum size in bytes of a head the harness reads, the same bound as `ringway-origin`.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Maximum number of header fields httparse accepts in one head.
const MAX_HEADERS: usize = 128;

/// Maximum length in bytes of a chunk-size line or trailer line.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Size in bytes of the pieces that bodies are read in.
const READ_PIECE_BYTES: usize = 64 * 1024;

/// Interval at which the harness polls a child process for its exit.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The I/O driver of ringway, config key `driver`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    /// Returns the value of `driver` in the ringway config.
    pub fn config_value(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

pub const DRIVERS: [Driver; 2] = [Driver::IoUring, Driver::Epoll];

/// Returns a config with one worker listening on 127.0.0.1 port 0 that routes every path
/// to `upstream`.
pub fn config_for(upstream: SocketAddr, driver: Driver) -> Value {
    json!({
        "workers": 1,
        "listen": "127.0.0.1:0",
        "driver": driver.config_value(),
        "upstreams": { "origin": { "servers": [upstream.to_string()] } },
        "routes": [{ "path_prefix": "/", "upstream": "origin" }],
    })
}

/// A running `ringway` process, killed on drop.
pub struct Ringway {
    pub addr: SocketAddr,
    process: ChildProcess,
    config_file: TempConfig,
}

impl Ringway {
    /// Writes `config` to a temporary file, starts ringway with `--config FILE`, and waits
    /// until it logs `listening on ADDR`. Panics with the output seen so far when that
    /// line does not appear within `TIMEOUT` or the process exits first.
    pub fn start(config: &Value) -> Ringway {
        let config = TempConfig::write(config);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringway"));
        command.arg("--config").arg(&config.path);
        let mut process = ChildProcess::spawn("ringway", command);
        let addr = process.wait_for_listening();
        Ringway {
            addr,
            process,
            config_file: config,
        }
    }

    /// Like `start`, with `env` added to ringway's environment, for settings that only
    /// tests use (such as the panic path of `RINGWAY_TEST_PANIC_PATH`).
    pub fn start_with_env(config: &Value, env: &[(&str, &str)]) -> Ringway {
        let config = TempConfig::write(config);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringway"));
        command.arg("--config").arg(&config.path);
        command.envs(env.iter().copied());
        let mut process = ChildProcess::spawn("ringway", command);
        let addr = process.wait_for_listening();
        Ringway {
            addr,
            process,
            config_file: config,
        }
    }

    /// Like `start`, with `args` after `--config FILE` (for example `--takeover`).
    pub fn start_with_args(config: &Value, args: &[&str]) -> Ringway {
        let config = TempConfig::write(config);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringway"));
        command.arg("--config").arg(&config.path).args(args);
        let mut process = ChildProcess::spawn("ringway", command);
        let addr = process.wait_for_listening();
        Ringway {
            addr,
            process,
            config_file: config,
        }
    }

    /// Like `start_expecting_failure`, with `args` after `--config FILE`; returns the output
    /// and the exit status.
    pub fn start_expecting_failure_with_args(
        config: &Value,
        args: &[&str],
    ) -> (String, ExitStatus) {
        let config = TempConfig::write(config);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringway"));
        command.arg("--config").arg(&config.path).args(args);
        let mut process = ChildProcess::spawn("ringway", command);
        let status = process.wait_for_exit_rejecting_listen();
        (process.logs(), status)
    }

    /// Starts ringway with `config`, which it must reject, and returns its output.
    /// Panics when ringway starts listening, exits with status 0, or runs past `TIMEOUT`.
    pub fn start_expecting_failure(config: &Value) -> String {
        let config = TempConfig::write(config);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringway"));
        command.arg("--config").arg(&config.path);
        let mut process = ChildProcess::spawn("ringway", command);
        let status = process.wait_for_exit_rejecting_listen();
        let logs = process.logs();
        assert!(
            !status.success(),
            "ringway accepted a config it should reject; output:\n{logs}"
        );
        logs
    }

    /// Output collected so far, stderr and stdout interleaved by line, with terminal
    /// color codes removed.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Peak resident set size in KiB (`VmHWM` in /proc/PID/status).
    pub fn vm_hwm_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// Current resident set size in KiB (`VmRSS` in /proc/PID/status).
    pub fn vm_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// Anonymous resident memory in KiB (`RssAnon` in /proc/PID/status): the heap, stacks and
    /// other private memory, without the pages of the binary and its libraries.
    pub fn rss_anon_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "RssAnon")
    }

    /// Resets the peak that `vm_hwm_kib` reports to the current resident set size, by writing
    /// 5 to /proc/PID/clear_refs (Linux 4.0 and later).
    pub fn reset_peak_rss(&self) {
        let path = format!("/proc/{}/clear_refs", self.pid());
        fs::write(&path, "5").unwrap_or_else(|error| panic!("failed to write {path}: {error}"));
    }

    /// Number of open file descriptors (entries of /proc/PID/fd).
    pub fn open_fds(&self) -> usize {
        let dir = format!("/proc/{}/fd", self.pid());
        fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("failed to list {dir}: {error}"))
            .count()
    }

    /// Sends `signal` (such as `libc::SIGHUP`) to this ringway process, by its PID.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.pid()).expect("PIDs fit in i32");
        // SAFETY: kill only sends a signal. The PID is the child this harness started, and it
        // is not reaped yet because `ChildProcess` reaps it only on drop.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            io::Error::last_os_error()
        );
    }

    /// Replaces the config file ringway was started with, for a reload.
    pub fn rewrite_config(&self, config: &Value) {
        let text = serde_json::to_string_pretty(config).expect("failed to serialize the config");
        let path = &self.config_file.path;
        fs::write(path, text)
            .unwrap_or_else(|error| panic!("failed to write {}: {error}", path.display()));
    }

    /// Waits up to `within` for a line of output that contains `text`; returns the line.
    pub fn wait_for_log(&self, text: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.logs().lines().find(|line| line.contains(text)) {
                return Some(line.to_owned());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(EXIT_POLL_INTERVAL);
        }
    }

    /// Counts the lines of output that contain `text`.
    pub fn count_log_lines(&self, text: &str) -> usize {
        self.logs()
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }

    /// Returns the admin listener's address from the `served on ADDR` log line. Panics when
    /// the line does not appear within `TIMEOUT`.
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self
            .wait_for_log("admin endpoints", TIMEOUT)
            .unwrap_or_else(|| panic!("no admin log line; output:\n{}", self.logs()));
        let (_, rest) = line.split_once("served on ").expect("`served on ADDR`");
        rest.split_whitespace()
            .next()
            .and_then(|token| token.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// Waits up to `within` for ringway to exit and returns its status.
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.process.wait_for_exit(within)
    }

    /// Returns the exit status if ringway has exited, without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.process
            .child
            .try_wait()
            .expect("failed to poll the ringway process")
    }
}

/// A `ringway-origin serve` process on 127.0.0.1 port 0, killed on drop.
pub struct Origin {
    pub addr: SocketAddr,
    process: ChildProcess,
}

impl Origin {
    pub fn start() -> Origin {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringway-origin"));
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        let mut process = ChildProcess::spawn("ringway-origin", command);
        let addr = process.wait_for_listening();
        Origin { addr, process }
    }

    /// Output collected so far; the origin logs every request it rejects.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// Output and exit status of one `ringway-origin fetch` run.
pub struct FetchOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ringway-origin fetch` with `args` and returns its output. Kills it and panics
/// when it runs longer than `timeout`.
pub fn run_fetch(args: &[&str], timeout: Duration) -> FetchOutput {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringway-origin"))
        .arg("fetch")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start ringway-origin fetch");
    let stdout = read_pipe_in_thread(child.stdout.take().expect("stdout is piped"));
    let stderr = read_pipe_in_thread(child.stderr.take().expect("stderr is piped"));

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .expect("failed to poll ringway-origin fetch")
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringway-origin fetch {args:?} did not finish within {timeout:?}; stderr:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(EXIT_POLL_INTERVAL);
    };
    FetchOutput {
        status,
        stdout: stdout.join().expect("stdout reader thread panicked"),
        stderr: stderr.join().expect("stderr reader thread panicked"),
    }
}

fn read_pipe_in_thread(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A scripted origin: accepts connections on 127.0.0.1 port 0 and runs the handler for
/// each in its own thread, with the connection's index (0 for the first). Accepted
/// streams have `TIMEOUT` read and write timeouts. Stops accepting on drop.
pub struct RawOrigin {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    accept_thread: Option<JoinHandle<()>>,
}

impl RawOrigin {
    pub fn start(handler: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a raw origin");
        let addr = listener
            .local_addr()
            .expect("failed to read the raw origin address");
        let stopping = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);

        let accept_thread = {
            let stopping = Arc::clone(&stopping);
            let accepted = Arc::clone(&accepted);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let index = accepted.fetch_add(1, Ordering::SeqCst);
                    set_timeouts(&stream);
                    let handler = Arc::clone(&handler);
                    thread::spawn(move || handler(stream, index));
                }
            })
        };
        RawOrigin {
            addr,
            stopping,
            accepted,
            accept_thread: Some(accept_thread),
        }
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // The accept loop blocks in accept(), so a connection wakes it up to see the flag.
        let _ = TcpStream::connect_timeout(&self.addr, TIMEOUT);
        if let Some(accept_thread) = self.accept_thread.take() {
            let _ = accept_thread.join();
        }
    }
}

/// How long a `RecordingOrigin` connection waits for the next request before it closes.
/// Longer than any test, so that an idle upstream connection pooled by ringway never
/// goes stale in the middle of a test unless the test closes it on purpose.
const RECORDING_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What a `RecordingOrigin` sends back for one request.
pub struct Reply {
    /// The bytes written after the request was read, exactly as given.
    pub bytes: Vec<u8>,
    /// Close the connection after writing `bytes`, without saying so in the response.
    pub close: bool,
}

impl Reply {
    /// Sends `bytes` and waits for the next request on the same connection.
    pub fn keep_open(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            close: false,
        }
    }

    /// Sends `bytes` and closes the connection.
    pub fn then_close(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            bytes: bytes.into(),
            close: true,
        }
    }
}

/// One request that a `RecordingOrigin` read.
#[derive(Debug)]
pub struct Seen {
    /// Index of the upstream connection it came on (0 for the first accepted).
    pub connection: usize,
    pub request: RawRequest,
}

/// A scripted origin that reads requests in a keep-alive loop on every connection,
/// records each one (an incomplete body included) and responds with the reply that
/// `respond` builds. A connection ends when the peer closes it, a request fails to parse,
/// a body is incomplete, or a reply says `close`.
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    origin: RawOrigin,
    seen: mpsc::Receiver<Seen>,
}

impl RecordingOrigin {
    pub fn start(
        respond: impl Fn(&RawRequest) -> Reply + Send + Sync + 'static,
    ) -> RecordingOrigin {
        let (sender, seen) = mpsc::channel();
        let origin = RawOrigin::start(move |mut stream, connection| {
            let _ = stream.set_read_timeout(Some(RECORDING_IDLE_TIMEOUT));
            while let Ok(request) = read_request(&mut stream) {
                let complete = request.complete;
                let reply = complete.then(|| respond(&request));
                let _ = sender.send(Seen {
                    connection,
                    request,
                });
                let Some(reply) = reply else { return };
                if stream.write_all(&reply.bytes).is_err() || reply.close {
                    return;
                }
            }
        });
        RecordingOrigin {
            addr: origin.addr,
            origin,
            seen,
        }
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> usize {
        self.origin.connections()
    }

    /// Returns the next recorded request. Panics when none arrives within `TIMEOUT`.
    pub fn next_request(&self) -> Seen {
        self.seen
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("the origin received no request within {TIMEOUT:?}"))
    }

    /// Returns the next request recorded within `within`, or `None`.
    pub fn next_request_within(&self, within: Duration) -> Option<Seen> {
        self.seen.recv_timeout(within).ok()
    }
}

/// Returns a 200 response with `body`, framed by Content-Length.
pub fn ok_with_body(body: &[u8]) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(body);
    response
}

/// Returns a 200 reply whose body is the request target, or only its head for HEAD
/// (RFC 9110 section 9.3.2), so a test can tell which request a response belongs to.
pub fn reply_with_target(request: &RawRequest) -> Reply {
    let mut response = ok_with_body(request.target.as_bytes());
    if request.method == "HEAD" {
        response.truncate(response.len() - request.target.len());
    }
    Reply::keep_open(response)
}

/// Writes all of `bytes` to `stream`. Panics when the write fails or times out.
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream
        .write_all(bytes)
        .unwrap_or_else(|error| panic!("failed to send {} bytes: {error}", bytes.len()));
}

/// Reads until the peer closes the connection (an orderly close or a reset) and returns
/// the bytes received before it, or `None` when the connection is still open after
/// `within`. Restores the stream's read timeout afterwards.
pub fn wait_for_close(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let previous_timeout = stream.read_timeout().ok().flatten();
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut piece = vec![0; READ_PIECE_BYTES];
    let closed = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break false;
        }
        stream
            .set_read_timeout(Some(remaining))
            .expect("failed to set the read timeout");
        match stream.read(&mut piece) {
            Ok(0) => break true,
            Ok(read) => received.extend_from_slice(&piece[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break false;
            }
            Err(_) => break true,
        }
    };
    let _ = stream.set_read_timeout(previous_timeout);
    closed.then_some(received)
}

/// Checks that `response` is an error response written by ringway itself: the status
/// `status`, `Connection: close`, and a plain-text body of one line that starts with the
/// status code and reason phrase and mentions `about` (compared case-insensitively).
/// `context` starts every failure message.
pub fn assert_error_response(response: &Response, status: u16, about: &str, context: &str) {
    let body = response.body_text();
    assert_eq!(response.status, status, "{context}: status (body {body:?})");
    assert_eq!(
        response.header("Connection"),
        Some("close"),
        "{context}: Connection header of the {status} response"
    );
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; charset=utf-8"),
        "{context}: Content-Type of the {status} response"
    );
    let first_line = format!("{status} {}: ", response.reason);
    assert!(
        body.starts_with(&first_line),
        "{context}: body {body:?} does not start with {first_line:?}"
    );
    assert!(
        body.ends_with('\n') && body.matches('\n').count() == 1,
        "{context}: body {body:?} is not exactly one line"
    );
    if status == 502 || status == 504 {
        // Upstream failures get a fixed text: the upstream's address, the OS error and the
        // configuration key (`about`) are for ringway's log, not for the client.
        assert!(
            UPSTREAM_ERROR_TEXTS
                .iter()
                .any(|text| body == format!("{first_line}{text}\n")),
            "{context}: body {body:?} is not one of ringway's fixed upstream error texts"
        );
        return;
    }
    assert!(
        body.to_ascii_lowercase()
            .contains(&about.to_ascii_lowercase()),
        "{context}: body {body:?} does not mention {about:?}"
    );
}

/// The bodies' texts of ringway's 502 and 504 responses, which never carry upstream details.
pub const UPSTREAM_ERROR_TEXTS: [&str; 5] = [
    "the upstream server could not be reached",
    "connecting to the upstream server timed out",
    "the upstream server did not respond in time",
    "the upstream server closed the connection without a complete response",
    "the upstream server sent an invalid response",
];

/// Connects to `addr` and sets `TIMEOUT` read and write timeouts and TCP_NODELAY.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|error| panic!("failed to connect to {addr}: {error}"));
    set_timeouts(&stream);
    stream.set_nodelay(true).expect("failed to set TCP_NODELAY");
    stream
}

fn set_timeouts(stream: &TcpStream) {
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("failed to set the read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("failed to set the write timeout");
}

/// Sets `TIMEOUT` as the read timeout unless the stream already has one.
fn ensure_read_timeout(stream: &TcpStream) -> io::Result<()> {
    if stream.read_timeout()?.is_none() {
        stream.set_read_timeout(Some(TIMEOUT))?;
    }
    Ok(())
}

/// One request as an origin received it.
#[derive(Debug)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields in order, repeats kept.
    pub headers: Vec<(String, String)>,
    /// The head exactly as received, including the empty line that ends it.
    pub head: Vec<u8>,
    /// The body bytes as framed on the wire: chunk-size lines, chunk data, CRLFs and the
    /// trailer section are kept verbatim.
    pub body_raw: Vec<u8>,
    /// The decoded body.
    pub body: Vec<u8>,
    pub chunked: bool,
    /// False when the peer closed the connection before the end of the framed body.
    pub complete: bool,
    pub trailers: Vec<(String, String)>,
}

impl RawRequest {
    /// Value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_named(&self.headers, name)
    }

    /// Values of every field named `name` (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        all_named(&self.headers, name)
    }
}

/// One response as a client received it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields in order, repeats kept.
    pub headers: Vec<(String, String)>,
    /// The decoded body. Empty when the body went to a callback of
    /// `read_response_streaming`.
    pub body: Vec<u8>,
    /// Number of decoded body bytes received.
    pub body_len: u64,
    /// False when the peer closed the connection before the end of the framed body.
    pub complete: bool,
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
    /// The head exactly as received, including the empty line that ends it.
    pub raw_head: Vec<u8>,
}

impl Response {
    /// Value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_named(&self.headers, name)
    }

    /// Values of every field named `name` (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        all_named(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn first_named<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn all_named<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
        .collect()
}

/// Reads one request: its head and its body as framed by Content-Length or chunked.
/// Reads no byte past the end of the request, so pipelined requests stay in the stream.
/// Fails with `UnexpectedEof` when the peer closes before sending any byte.
pub fn read_request(stream: &mut TcpStream) -> io::Result<RawRequest> {
    ensure_read_timeout(stream)?;
    let head = read_head_bytes(stream, "request")?;
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    parsed
        .parse(&head)
        .map_err(|error| invalid_data(format!("invalid request head: {error}")))?;
    let headers = owned_headers(parsed.headers);
    let method = parsed.method.unwrap_or_default().to_owned();
    let target = parsed.path.unwrap_or_default().to_owned();
    let version = parsed.version.unwrap_or(1);

    // RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length, and a request
    // with neither has no body.
    let framing = if final_coding_is_chunked(&headers) {
        Framing::Chunked
    } else {
        match content_length(&headers)? {
            Some(len) => Framing::Length(len),
            None => Framing::Empty,
        }
    };
    let mut body = Vec::new();
    let mut body_raw = Vec::new();
    let outcome = read_body(stream, framing, Some(&mut body_raw), &mut |data| {
        body.extend_from_slice(data)
    })?;
    Ok(RawRequest {
        method,
        target,
        version,
        headers,
        head,
        body_raw,
        body,
        chunked: framing == Framing::Chunked,
        complete: outcome.complete,
        trailers: outcome.trailers,
    })
}

/// Reads a request head up to and including the empty line that ends it, and leaves
/// the body in the stream, for origins that must answer before they read the body.
pub fn read_request_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    ensure_read_timeout(stream)?;
    read_head_bytes(stream, "request")
}

/// Reads one response and decodes its body (Content-Length, chunked or close-delimited).
/// `head_request` is true when the request was HEAD, whose response has no body. An interim
/// (1xx) response comes back on its own, without a body; call again for the next one.
pub fn read_response(stream: &mut TcpStream, head_request: bool) -> io::Result<Response> {
    let mut body = Vec::new();
    let mut response = read_response_streaming(stream, head_request, &mut |data| {
        body.extend_from_slice(data)
    })?;
    response.body = body;
    Ok(response)
}

/// Like `read_response`, but passes each piece of the decoded body to `on_body` instead
/// of keeping it, so a test can check a body larger than it wants to hold.
pub fn read_response_streaming(
    stream: &mut TcpStream,
    head_request: bool,
    on_body: &mut dyn FnMut(&[u8]),
) -> io::Result<Response> {
    ensure_read_timeout(stream)?;
    let raw_head = read_head_bytes(stream, "response")?;
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    parsed
        .parse(&raw_head)
        .map_err(|error| invalid_data(format!("invalid response head: {error}")))?;
    let status = parsed.code.unwrap_or(0);
    let headers = owned_headers(parsed.headers);
    let reason = parsed.reason.unwrap_or_default().to_owned();
    let version = parsed.version.unwrap_or(1);

    let framing = response_framing(status, head_request, &headers)?;
    let outcome = read_body(stream, framing, None, on_body)?;
    Ok(Response {
        status,
        reason,
        version,
        headers,
        body: Vec::new(),
        body_len: outcome.len,
        complete: outcome.complete,
        chunked: framing == Framing::Chunked,
        trailers: outcome.trailers,
        raw_head,
    })
}

/// Determines how a response body is delimited (RFC 9112 section 6.3).
fn response_framing(
    status: u16,
    head_request: bool,
    headers: &[(String, String)],
) -> io::Result<Framing> {
    // Item 1: responses to HEAD, and 1xx, 204 and 304 responses, have no body.
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    // Items 3 and 4: Transfer-Encoding overrides Content-Length, and a response whose
    // final coding is not chunked is delimited by the connection close.
    if !all_named(headers, "transfer-encoding").is_empty() {
        return Ok(if final_coding_is_chunked(headers) {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    // Items 5 to 8: a valid Content-Length delimits the body, otherwise the close does.
    Ok(match content_length(headers)? {
        Some(len) => Framing::Length(len),
        None => Framing::UntilClose,
    })
}

/// Reads until the peer closes the connection or a read fails or times out, and
/// returns every byte received.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    ensure_read_timeout(stream).expect("failed to set the read timeout");
    let mut received = Vec::new();
    let mut piece = vec![0; READ_PIECE_BYTES];
    loop {
        match stream.read(&mut piece) {
            Ok(0) => return received,
            Ok(read) => received.extend_from_slice(&piece[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return received,
        }
    }
}

/// Returns whether `body` matches the origin's pattern, where `body[0]` is body byte
/// `offset`.
pub fn pattern_ok(body: &[u8], offset: u64) -> bool {
    body.iter()
        .zip(offset..)
        .all(|(&byte, position)| byte == (position % PATTERN_PERIOD) as u8)
}

/// Returns `len` pattern bytes starting at body offset `offset`.
pub fn pattern_bytes(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|position| (position % PATTERN_PERIOD) as u8)
        .collect()
}

/// Encodes `body` as a chunked body with chunks of at most `chunk_len` bytes, followed by
/// the last chunk and an empty trailer section.
pub fn chunked_body(body: &[u8], chunk_len: usize) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(body.len() + 64);
    for chunk in body.chunks(chunk_len.max(1)) {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    encoded
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

struct BodyOutcome {
    len: u64,
    complete: bool,
    trailers: Vec<(String, String)>,
}

/// Reads a body framed as `framing`, passing decoded data to `on_data` and, when `raw`
/// is given, appending the bytes as they were on the wire. Reaching the end of the stream
/// early is reported as an incomplete body, not an error.
fn read_body(
    stream: &mut TcpStream,
    framing: Framing,
    mut raw: Option<&mut Vec<u8>>,
    on_data: &mut dyn FnMut(&[u8]),
) -> io::Result<BodyOutcome> {
    let mut outcome = BodyOutcome {
        len: 0,
        complete: true,
        trailers: Vec::new(),
    };
    let mut piece = vec![0; READ_PIECE_BYTES];
    match framing {
        Framing::Empty => {}
        Framing::Length(len) => {
            outcome.len = read_exactly(stream, len, &mut piece, &mut raw, on_data)?;
            outcome.complete = outcome.len == len;
        }
        Framing::UntilClose => loop {
            let read = read_some(stream, &mut piece)?;
            if read == 0 {
                break;
            }
            if let Some(raw) = raw.as_deref_mut() {
                raw.extend_from_slice(&piece[..read]);
            }
            on_data(&piece[..read]);
            outcome.len += read as u64;
        },
        Framing::Chunked => loop {
            let Some(line) = read_line(stream, &mut raw)? else {
                outcome.complete = false;
                break;
            };
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                match read_trailers(stream, &mut raw)? {
                    Some(trailers) => outcome.trailers = trailers,
                    None => outcome.complete = false,
                }
                break;
            }
            let read = read_exactly(stream, size, &mut piece, &mut raw, on_data)?;
            outcome.len += read;
            if read < size {
                outcome.complete = false;
                break;
            }
            match read_line(stream, &mut raw)? {
                None => {
                    outcome.complete = false;
                    break;
                }
                Some(line) if !line.is_empty() => {
                    return Err(invalid_data(format!(
                        "chunk data is not followed by CRLF after {} body bytes",
                        outcome.len
                    )));
                }
                Some(_) => {}
            }
        },
    }
    Ok(outcome)
}

/// Reads up to `len` bytes in pieces and returns how many arrived before the end of the
/// stream.
fn read_exactly(
    stream: &mut TcpStream,
    len: u64,
    piece: &mut [u8],
    raw: &mut Option<&mut Vec<u8>>,
    on_data: &mut dyn FnMut(&[u8]),
) -> io::Result<u64> {
    let mut received = 0;
    while received < len {
        let limit = piece
            .len()
            .min((len - received).min(usize::MAX as u64) as usize);
        let read = read_some(stream, &mut piece[..limit])?;
        if read == 0 {
            break;
        }
        if let Some(raw) = raw.as_deref_mut() {
            raw.extend_from_slice(&piece[..read]);
        }
        on_data(&piece[..read]);
        received += read as u64;
    }
    Ok(received)
}

fn read_some(stream: &mut TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buffer) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => return Ok(0),
            result => return result,
        }
    }
}

/// Reads a head up to and including the empty line that ends it, one byte per read so
/// that nothing after the head leaves the socket.
fn read_head_bytes(stream: &mut TcpStream, what: &str) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") && !(head.ends_with(b"\n\n")) {
        if head.len() >= MAX_HEAD_BYTES {
            return Err(invalid_data(format!(
                "{what} head is larger than {MAX_HEAD_BYTES} bytes"
            )));
        }
        if read_some(stream, &mut byte)? == 0 {
            let message = if head.is_empty() {
                format!("connection closed before a {what} head")
            } else {
                format!(
                    "connection closed inside a {what} head: {:?}",
                    String::from_utf8_lossy(&head)
                )
            };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// Reads one CRLF-terminated line, one byte per read, and returns it without the CRLF.
/// Returns `None` when the stream ends first.
fn read_line(
    stream: &mut TcpStream,
    raw: &mut Option<&mut Vec<u8>>,
) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut byte = [0; 1];
    loop {
        if read_some(stream, &mut byte)? == 0 {
            return Ok(None);
        }
        if let Some(raw) = raw.as_deref_mut() {
            raw.push(byte[0]);
        }
        if byte[0] == b'\n' {
            return match line.strip_suffix(b"\r") {
                Some(line) => Ok(Some(line.to_vec())),
                None => Err(invalid_data(format!(
                    "line {:?} ends in a bare LF, not CRLF",
                    String::from_utf8_lossy(&line)
                ))),
            };
        }
        line.push(byte[0]);
        if line.len() > MAX_LINE_BYTES {
            return Err(invalid_data(format!(
                "line is longer than {MAX_LINE_BYTES} bytes"
            )));
        }
    }
}

/// Parses a chunk-size line: hex digits, then optional extensions after `;`
/// (RFC 9112 section 7.1.1).
fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = String::from_utf8_lossy(line);
    let size = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim_end_matches([' ', '\t']);
    if size.is_empty() || !size.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(invalid_data(format!("invalid chunk-size line {text:?}")));
    }
    u64::from_str_radix(size, 16)
        .map_err(|_| invalid_data(format!("chunk size {size:?} does not fit in 64 bits")))
}

/// Reads the trailer section after the last chunk. Returns `None` when the stream ends
/// before the empty line that closes it.
fn read_trailers(
    stream: &mut TcpStream,
    raw: &mut Option<&mut Vec<u8>>,
) -> io::Result<Option<Vec<(String, String)>>> {
    let mut trailers = Vec::new();
    loop {
        let Some(line) = read_line(stream, raw)? else {
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some(trailers));
        }
        let text = String::from_utf8_lossy(&line);
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| invalid_data(format!("invalid trailer field line {text:?}")))?;
        trailers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
}

fn owned_headers(parsed: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    parsed
        .iter()
        .map(|header| {
            (
                header.name.to_owned(),
                String::from_utf8_lossy(header.value).into_owned(),
            )
        })
        .collect()
}

fn final_coding_is_chunked(headers: &[(String, String)]) -> bool {
    all_named(headers, "transfer-encoding")
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .rfind(|coding| !coding.is_empty())
        .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"))
}

/// Returns the Content-Length, or `None` without one. Repeated values must agree
/// (RFC 9110 section 8.6).
fn content_length(headers: &[(String, String)]) -> io::Result<Option<u64>> {
    let mut length = None;
    for element in all_named(headers, "content-length")
        .iter()
        .flat_map(|value| value.split(','))
    {
        let element = element.trim();
        if element.is_empty() || !element.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid_data(format!("invalid Content-Length {element:?}")));
        }
        let parsed: u64 = element.parse().map_err(|_| {
            invalid_data(format!("Content-Length {element} does not fit in 64 bits"))
        })?;
        if length.is_some_and(|previous| previous != parsed) {
            return Err(invalid_data(format!(
                "conflicting Content-Length values {length:?} and {parsed}"
            )));
        }
        length = Some(parsed);
    }
    Ok(length)
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A config file in the temp directory, removed on drop.
struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    /// Writes `config` as JSON to a file whose name is unique per test process and call.
    fn write(config: &Value) -> TempConfig {
        static NEXT_CONFIG: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringway-test-{}-{}.json",
            std::process::id(),
            NEXT_CONFIG.fetch_add(1, Ordering::SeqCst)
        ));
        let text = serde_json::to_string_pretty(config).expect("failed to serialize the config");
        fs::write(&path, text)
            .unwrap_or_else(|error| panic!("failed to write {}: {error}", path.display()));
        TempConfig { path }
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Reads a `Vm*` line of /proc/PID/status, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status =
        fs::read_to_string(&path).unwrap_or_else(|error| panic!("failed to read {path}: {error}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("{path} has no parsable {field} line:\n{status}"))
}

enum OutputEvent {
    Line(String),
    /// One of the two output pipes reached its end.
    Closed,
}

/// A child process whose stdout and stderr are collected line by line by two threads.
/// The child is killed (by its PID, through `Child::kill`) and reaped on drop.
struct ChildProcess {
    name: &'static str,
    child: Child,
    output: Arc<Mutex<String>>,
    events: mpsc::Receiver<OutputEvent>,
    closed_pipes: usize,
}

impl ChildProcess {
    fn spawn(name: &'static str, mut command: Command) -> ChildProcess {
        // Loggers that honour NO_COLOR write plain text. Collected lines are stripped of
        // color codes anyway.
        command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {name}: {error}"));
        let output = Arc::new(Mutex::new(String::new()));
        let (sender, events) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        collect_lines(stdout, Arc::clone(&output), sender.clone());
        collect_lines(stderr, Arc::clone(&output), sender);
        ChildProcess {
            name,
            child,
            output,
            events,
            closed_pipes: 0,
        }
    }

    fn logs(&self) -> String {
        self.output
            .lock()
            .map(|output| output.clone())
            .unwrap_or_default()
    }

    /// Waits for a `listening on ADDR` line and returns ADDR.
    fn wait_for_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(remaining) {
                Ok(OutputEvent::Line(line)) => {
                    let Some(addr) = parse_listening_line(&line) else {
                        continue;
                    };
                    assert_ne!(
                        addr.port(),
                        0,
                        "{} logged port 0 in {line:?}; it must log the bound address",
                        self.name
                    );
                    return addr;
                }
                Ok(OutputEvent::Closed) => {
                    self.closed_pipes += 1;
                    if self.closed_pipes == 2 {
                        let status = self.wait_for_exit(TIMEOUT);
                        panic!(
                            "{} exited ({status:?}) before logging `listening on ADDR`; output:\n{}",
                            self.name,
                            self.logs()
                        );
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "{} did not log `listening on ADDR` within {TIMEOUT:?}; output so far:\n{}",
                    self.name,
                    self.logs()
                ),
            }
        }
    }

    /// Waits for the process to exit and returns its status. Panics when it logs
    /// `listening on` first or is still running after `TIMEOUT`.
    fn wait_for_exit_rejecting_listen(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        while self.closed_pipes < 2 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(remaining) {
                Ok(OutputEvent::Line(line)) => assert!(
                    parse_listening_line(&line).is_none(),
                    "{} started listening although it should have failed: {line:?}",
                    self.name
                ),
                Ok(OutputEvent::Closed) => self.closed_pipes += 1,
                Err(_) => break,
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_for_exit(remaining).unwrap_or_else(|| {
            panic!(
                "{} is still running after {TIMEOUT:?}; output:\n{}",
                self.name,
                self.logs()
            )
        })
    }

    fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(EXIT_POLL_INTERVAL);
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends each line of `pipe` to `output` and sends it as an event, then sends `Closed`.
fn collect_lines(
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
    events: mpsc::Sender<OutputEvent>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = strip_ansi(&String::from_utf8_lossy(&bytes));
                    let line = line.trim_end_matches(['\r', '\n']).to_owned();
                    if let Ok(mut output) = output.lock() {
                        output.push_str(&line);
                        output.push('\n');
                    }
                    let _ = events.send(OutputEvent::Line(line));
                }
            }
        }
        let _ = events.send(OutputEvent::Closed);
    });
}

/// Removes ANSI CSI escape sequences (colors and styles).
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.clone().next() == Some('[') {
                chars.next();
                // Parameters and intermediates run until a final byte in 0x40..=0x7e.
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
}

/// Returns ADDR from a line that contains `listening on ADDR`. ADDR may carry a
/// structured-log key (`listening on addr=127.0.0.1:8080`).
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    let token = rest.split_whitespace().next()?;
    let token = token.rsplit_once('=').map_or(token, |(_, value)| value);
    token
        .trim_matches(|c: char| c == '"' || c == '\'' || c == ',' || c == ';')
        .parse()
        .ok()
}
