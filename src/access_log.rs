//! The access log: one line per request, written off the workers.
//!
//! Each worker formats lines into a buffer of its own ([`AccessLog`]) and hands a full buffer,
//! or whatever it contains every `FLUSH_INTERVAL`, to one writer thread over a bounded channel.
//! The writer writes the bytes to standard output or a file and sends the emptied buffer back,
//! so that a warm worker formats and flushes without allocating. When the writer falls behind
//! and the channel is full, the worker drops the buffer's lines, counts them and warns at most
//! once a second: a slow disk never blocks a worker.
//!
//! The writer opens the file again when `reopen` is called (SIGUSR1), for log rotation.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::config::{AccessLog as AccessLogConfig, AccessLogFormat};
use crate::http::date::civil_from_days;
use crate::logging::{REPEATED_LOG_INTERVAL, RateLimitedLog};
use crate::metrics::WorkerMetrics;

/// How often a worker hands its buffered lines to the writer, so that a quiet worker's lines
/// appear within this delay.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Capacity of each buffer of lines. A worker hands a buffer over once it is half full, so a
/// buffer grows (and allocates) only for a line longer than the other half, 32 KiB.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// Buffers that may wait for the writer at once, for all workers together. With 64 KiB
/// buffers this bounds the lines in flight to 2 MiB, about 14,000 lines of 150 bytes;
/// beyond it, lines are dropped and counted.
pub const QUEUE_BUFFERS: usize = 32;

/// Buffers allocated per worker at start: one being filled and one spare. More are allocated
/// only while every spare is still queued for the writer.
const BUFFERS_PER_WORKER: usize = 2;

/// How long the writer waits for a buffer before it checks for a reopen request.
const WRITER_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A buffer of complete lines from one worker.
struct Batch {
    worker: usize,
    bytes: Vec<u8>,
}

/// The writer thread and the handle to make it reopen its file.
pub struct AccessLogWriter {
    reopen: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AccessLogWriter {
    /// Opens the log and starts the writer thread. Returns one `AccessLog` per worker, or
    /// `None` when the access log is off.
    pub fn start(
        config: &AccessLogConfig,
        workers: usize,
    ) -> io::Result<Option<(AccessLogWriter, Vec<AccessLog>)>> {
        if !config.enabled {
            return Ok(None);
        }
        let output = Output::open(config.path.as_deref())?;
        let (sender, batches) = mpsc::sync_channel(QUEUE_BUFFERS);
        let mut returns = Vec::with_capacity(workers);
        let mut logs = Vec::with_capacity(workers);
        for worker in 0..workers {
            // The writer keeps returning at most this many buffers; buffers allocated during a
            // burst beyond it are freed once written, so memory returns to its idle level.
            let (give_back, spares) = mpsc::sync_channel(BUFFERS_PER_WORKER);
            for _ in 1..BUFFERS_PER_WORKER {
                let _ = give_back.try_send(Vec::with_capacity(BUFFER_BYTES));
            }
            returns.push(give_back);
            logs.push(AccessLog {
                worker,
                format: config.format,
                buf: RefCell::new(Vec::with_capacity(BUFFER_BYTES)),
                lines: Cell::new(0),
                sender: RefCell::new(Some(sender.clone())),
                spares,
                drop_log: RefCell::new(RateLimitedLog::new(REPEATED_LOG_INTERVAL)),
            });
        }
        let reopen = Arc::new(AtomicBool::new(false));
        let thread = {
            let reopen = Arc::clone(&reopen);
            let path = config.path.clone();
            std::thread::Builder::new()
                .name("ringway-access-log".to_owned())
                .spawn(move || run_writer(output, path, batches, returns, reopen))?
        };
        Ok(Some((
            AccessLogWriter {
                reopen,
                thread: Some(thread),
            },
            logs,
        )))
    }

    /// Makes the writer open its file again before the next write (log rotation). Standard
    /// output is left as it is.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Waits up to `limit` for the writer to write every buffer handed to it; it finishes once
    /// every worker's `AccessLog` is dropped.
    pub fn finish(mut self, limit: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

enum Output {
    Stdout,
    File(File),
}

impl Output {
    fn open(path: Option<&Path>) -> io::Result<Output> {
        match path {
            None => Ok(Output::Stdout),
            Some(path) => File::options()
                .append(true)
                .create(true)
                .open(path)
                .map(Output::File)
                .map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!(
                            "opening the access log {} failed: {err}; check the directory and its permissions or change access_log.path",
                            path.display()
                        ),
                    )
                }),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(bytes)?;
                stdout.flush()
            }
            Output::File(file) => file.write_all(bytes),
        }
    }
}

fn run_writer(
    mut output: Output,
    path: Option<PathBuf>,
    batches: Receiver<Batch>,
    returns: Vec<SyncSender<Vec<u8>>>,
    reopen: Arc<AtomicBool>,
) {
    let mut error_log = RateLimitedLog::new(REPEATED_LOG_INTERVAL);
    loop {
        if let (true, Some(path)) = (reopen.swap(false, Ordering::Relaxed), &path) {
            match Output::open(Some(path)) {
                Ok(reopened) => {
                    output = reopened;
                    info!(path = %path.display(), "reopened the access log");
                }
                Err(err) => error!("{err}; still writing to the file open before"),
            }
        }
        let mut batch = match batches.recv_timeout(WRITER_POLL_INTERVAL) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let written = output.write_all(&batch.bytes);
        if let (Err(err), Some(suppressed)) = (written, error_log.allow()) {
            error!(error = %err, suppressed, "writing the access log failed; these lines are lost");
        }
        batch.bytes.clear();
        if let Some(give_back) = returns.get(batch.worker) {
            let _ = give_back.try_send(batch.bytes);
        }
    }
}

/// One worker's end of the access log.
pub struct AccessLog {
    worker: usize,
    format: AccessLogFormat,
    buf: RefCell<Vec<u8>>,
    /// Lines in `buf`, to count them when they are dropped.
    lines: Cell<u64>,
    /// `None` once the worker has ended (`close`).
    sender: RefCell<Option<SyncSender<Batch>>>,
    /// Emptied buffers coming back from the writer.
    spares: Receiver<Vec<u8>>,
    drop_log: RefCell<RateLimitedLog>,
}

/// The fields of one access log line.
pub struct Entry<'a> {
    pub client: SocketAddr,
    /// When the request head was complete.
    pub time: SystemTime,
    pub method: &'a [u8],
    pub target: &'a [u8],
    /// The minor version of HTTP/1.x.
    pub minor_version: u8,
    /// 0 when no response was sent.
    pub status: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration: Duration,
    pub upstream: Option<SocketAddr>,
    pub upstream_duration: Option<Duration>,
    /// Empty until request ids exist.
    pub request_id: &'a [u8],
    /// Empty when no route matched.
    pub route: &'a str,
}

impl AccessLog {
    /// Formats one line into the worker's buffer and hands the buffer over once it is half full.
    pub fn write(&self, entry: &Entry<'_>, metrics: &WorkerMetrics) {
        {
            let mut buf = self.buf.borrow_mut();
            match self.format {
                AccessLogFormat::Text => format_text(&mut buf, entry),
                AccessLogFormat::Json => format_json(&mut buf, entry),
            }
            self.lines.set(self.lines.get() + 1);
            if buf.len() < BUFFER_BYTES / 2 {
                return;
            }
        }
        self.flush(metrics);
    }

    /// Hands the buffered lines to the writer and lets go of it, so that the writer can finish
    /// once every worker has closed. A worker calls this when it ends, because its runtime may
    /// leave tasks that hold the worker's state (and so this log) undropped.
    pub fn close(&self, metrics: &WorkerMetrics) {
        self.flush(metrics);
        self.sender.borrow_mut().take();
    }

    /// Hands the buffered lines to the writer; drops and counts them when its queue is full.
    pub fn flush(&self, metrics: &WorkerMetrics) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let spare = self
            .spares
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER_BYTES));
        let bytes = std::mem::replace(&mut *buf, spare);
        let lines = self.lines.replace(0);
        let batch = Batch {
            worker: self.worker,
            bytes,
        };
        let sent = match self.sender.borrow().as_ref() {
            Some(sender) => sender.try_send(batch),
            None => Err(TrySendError::Disconnected(batch)),
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                // Keep the full buffer for reuse and give the spare back.
                let mut bytes = batch.bytes;
                bytes.clear();
                let spare = std::mem::replace(&mut *buf, bytes);
                drop(spare);
                crate::metrics::add(&metrics.access_log_dropped, lines);
                if let Some(suppressed) = self.drop_log.borrow_mut().allow() {
                    warn!(
                        worker = self.worker,
                        dropped = lines,
                        suppressed,
                        "the access log writer is behind; dropped lines (see ringway_access_log_dropped_lines_total; use a faster disk or turn access_log off)"
                    );
                }
            }
        }
    }
}

/// Appends a text line: `client [time] "method target protocol" status bytes_sent
/// bytes_received duration_ms upstream upstream_ms request_id "route"`, with `-` for an
/// absent value. config/README.md documents the fields.
fn format_text(out: &mut Vec<u8>, entry: &Entry<'_>) {
    let _ = write!(out, "{} [", entry.client);
    write_time(out, entry.time);
    out.extend_from_slice(b"] \"");
    escape_text(out, entry.method, false);
    out.push(b' ');
    escape_text(out, entry.target, false);
    let _ = write!(out, " HTTP/1.{}\" ", entry.minor_version);
    if entry.status == 0 {
        out.push(b'-');
    } else {
        let _ = write!(out, "{}", entry.status);
    }
    let _ = write!(out, " {} {} ", entry.bytes_sent, entry.bytes_received);
    write_millis(out, entry.duration);
    out.push(b' ');
    match entry.upstream {
        Some(upstream) => {
            let _ = write!(out, "{upstream}");
        }
        None => out.push(b'-'),
    }
    out.push(b' ');
    match entry.upstream_duration {
        Some(duration) => write_millis(out, duration),
        None => out.push(b'-'),
    }
    out.push(b' ');
    if entry.request_id.is_empty() {
        out.push(b'-');
    } else {
        escape_text(out, entry.request_id, false);
    }
    out.extend_from_slice(b" \"");
    escape_text(out, entry.route.as_bytes(), true);
    out.extend_from_slice(b"\"\n");
}

/// Appends one JSON object and a newline.
fn format_json(out: &mut Vec<u8>, entry: &Entry<'_>) {
    let _ = write!(out, "{{\"client\":\"{}\",\"time\":\"", entry.client);
    write_time(out, entry.time);
    out.extend_from_slice(b"\",\"method\":\"");
    escape_json(out, entry.method);
    out.extend_from_slice(b"\",\"target\":\"");
    escape_json(out, entry.target);
    let _ = write!(
        out,
        "\",\"protocol\":\"HTTP/1.{}\",\"status\":",
        entry.minor_version
    );
    if entry.status == 0 {
        out.extend_from_slice(b"null");
    } else {
        let _ = write!(out, "{}", entry.status);
    }
    let _ = write!(
        out,
        ",\"bytes_sent\":{},\"bytes_received\":{},\"duration_ms\":",
        entry.bytes_sent, entry.bytes_received
    );
    write_millis(out, entry.duration);
    out.extend_from_slice(b",\"upstream\":");
    match entry.upstream {
        Some(upstream) => {
            let _ = write!(out, "\"{upstream}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"upstream_ms\":");
    match entry.upstream_duration {
        Some(duration) => write_millis(out, duration),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"request_id\":\"");
    escape_json(out, entry.request_id);
    out.extend_from_slice(b"\",\"route\":\"");
    escape_json(out, entry.route.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Appends milliseconds with three decimals (microsecond resolution).
fn write_millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = duration.as_micros();
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

/// Appends `time` in RFC 3339 form, UTC, with milliseconds: `2025-01-02T03:04:05.678Z`.
fn write_time(out: &mut Vec<u8>, time: SystemTime) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    );
}

/// Appends bytes for a text field, writing `\xHH` for `"`, `\`, controls, non-ASCII bytes and
/// (unless `space_allowed`, for fields in quotes) spaces, so that the line stays ASCII and
/// splits on spaces and quotes.
fn escape_text(out: &mut Vec<u8>, bytes: &[u8], space_allowed: bool) {
    for &byte in bytes {
        let plain = byte.is_ascii_graphic() || (space_allowed && byte == b' ');
        if plain && byte != b'"' && byte != b'\\' {
            out.push(byte);
        } else {
            let _ = write!(out, "\\x{byte:02X}");
        }
    }
}

/// Appends bytes as the inside of a JSON string (RFC 8259 section 7). Bytes above 0x7E are
/// written as `\u00HH`, that is read as Latin-1, so that the line stays valid JSON even when
/// a request target carries bytes that are not UTF-8.
fn escape_json(out: &mut Vec<u8>, bytes: &[u8]) {
    for &byte in bytes {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(byte),
            _ => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            client: "127.0.0.1:5000".parse().unwrap(),
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            method: b"GET",
            target: b"/a?b=\"c\"",
            minor_version: 1,
            status: 200,
            bytes_sent: 120,
            bytes_received: 40,
            duration: Duration::from_micros(1_234),
            upstream: Some("127.0.0.1:9090".parse().unwrap()),
            upstream_duration: Some(Duration::from_micros(1_000)),
            request_id: b"",
            route: "route 0",
        }
    }

    #[test]
    fn text_line_fields() {
        let mut out = Vec::new();
        format_text(&mut out, &entry());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1:5000 [2023-11-14T22:13:20.123Z] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 120 40 1.234 127.0.0.1:9090 1.000 - \"route 0\"\n"
        );
    }

    #[test]
    fn text_line_without_response() {
        let mut line = entry();
        line.status = 0;
        line.upstream = None;
        line.upstream_duration = None;
        line.route = "";
        let mut out = Vec::new();
        format_text(&mut out, &line);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\" - 120 40 1.234 - - - \"\"\n"), "{text}");
    }

    #[test]
    fn json_line_parses() {
        let mut line = entry();
        line.target = b"/\xff\x01\"\\";
        let mut out = Vec::new();
        format_json(&mut out, &line);
        assert_eq!(out.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["target"], "/\u{ff}\u{1}\"\\");
        assert_eq!(value["status"], 200);
        assert_eq!(value["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(value["upstream"], "127.0.0.1:9090");
        assert_eq!(value["duration_ms"], 1.234);
        assert_eq!(value["route"], "route 0");
    }

    #[test]
    fn json_absent_values_are_null() {
        let mut line = entry();
        line.status = 0;
        line.upstream = None;
        line.upstream_duration = None;
        let mut out = Vec::new();
        format_json(&mut out, &line);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(value["status"].is_null());
        assert!(value["upstream"].is_null());
        assert!(value["upstream_ms"].is_null());
    }
}
