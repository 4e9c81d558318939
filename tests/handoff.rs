//! Listener hand-off (`--takeover`) and `--version`: a new process takes the listening
//! sockets of a running one under load without a failed request, worker counts may change
//! across a hand-off, and a hand-off that cannot happen fails with a clear message.

mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{DRIVERS, Driver, Origin, Ringway, config_for, connect, read_response};
use serde_json::{Value, json};

/// Threads that send requests on keep-alive connections during a hand-off.
const KEEP_ALIVE_THREADS: usize = 2;

/// Threads that open a new connection for every request during a hand-off.
const FRESH_CONNECTION_THREADS: usize = 2;

/// Bound on the requests of one load thread, whatever the time.
const MAX_REQUESTS_PER_THREAD: usize = 20_000;

/// Bound on the time a load thread runs, even while its stop flag is unset.
const MAX_LOAD_TIME: Duration = Duration::from_secs(20);

/// Load before and after each hand-off, so requests cross both processes.
const LOAD_PHASE: Duration = Duration::from_millis(300);

/// Bound for the old process to exit after the new one took over.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Size of the body `ringway-origin` returns for `/small`.
const SMALL_BODY_BYTES: usize = 100;

const REQUEST: &[u8] = b"GET /small HTTP/1.1\r\nHost: test\r\n\r\n";

/// Returns a hand-off socket path unique to this test process and call.
fn socket_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "ringway-handoff-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn handoff_config(origin: SocketAddr, driver: Driver, workers: usize, socket: &Path) -> Value {
    let mut config = config_for(origin, driver);
    config["workers"] = json!(workers);
    config["handoff"] = json!({ "socket": socket.to_str().expect("UTF-8 temp path") });
    config
}

/// Requests, and the failures with their errors, counted by the load threads.
#[derive(Default)]
struct LoadCounts {
    sent: AtomicUsize,
    /// Requests repeated on a new connection after a reused keep-alive connection closed
    /// before any response byte.
    retried: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

/// Sends one request and checks its response.
fn exchange(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(REQUEST)?;
    let response = read_response(stream, false)?;
    if response.status != 200 || response.body.len() != SMALL_BODY_BYTES {
        return Err(io::Error::other(format!(
            "status {}, {} body bytes",
            response.status,
            response.body.len()
        )));
    }
    Ok(())
}

/// Returns whether a failure on a reused keep-alive connection is a close before any byte of
/// the response. A client may then repeat an idempotent request on a new connection (RFC 9110
/// section 9.2.2).
fn closed_before_response(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    ) || (error.kind() == io::ErrorKind::UnexpectedEof
        && error.to_string().contains("before a response head"))
}

fn run_load(addr: SocketAddr, keep_alive: bool, stop: Arc<AtomicBool>, counts: Arc<LoadCounts>) {
    let started = Instant::now();
    let mut reused: Option<TcpStream> = None;
    for _ in 0..MAX_REQUESTS_PER_THREAD {
        if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_LOAD_TIME {
            return;
        }
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let result = match reused.take() {
            Some(mut stream) => match exchange(&mut stream) {
                Err(error) if closed_before_response(&error) => {
                    counts.retried.fetch_add(1, Ordering::Relaxed);
                    let mut stream = connect(addr);
                    exchange(&mut stream).map(|()| stream)
                }
                result => result.map(|()| stream),
            },
            None => {
                let mut stream = connect(addr);
                exchange(&mut stream).map(|()| stream)
            }
        };
        match result {
            Ok(stream) if keep_alive => reused = Some(stream),
            Ok(_) => {}
            Err(error) => counts
                .failures
                .lock()
                .expect("failure list")
                .push(error.to_string()),
        }
    }
}

/// Starts the load threads and returns their handles.
fn start_load(
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
    counts: &Arc<LoadCounts>,
) -> Vec<thread::JoinHandle<()>> {
    let kinds = std::iter::repeat_n(true, KEEP_ALIVE_THREADS)
        .chain(std::iter::repeat_n(false, FRESH_CONNECTION_THREADS));
    kinds
        .map(|keep_alive| {
            let stop = Arc::clone(stop);
            let counts = Arc::clone(counts);
            thread::spawn(move || run_load(addr, keep_alive, stop, counts))
        })
        .collect()
}

/// Starts a process with `--takeover`, waits for `old` to exit and checks that it exited
/// with status 0 after logging the hand-off.
fn take_over(old: &mut Ringway, config: &Value) -> Ringway {
    let new = Ringway::start_with_args(config, &["--takeover"]);
    let status = old
        .wait_for_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("the old process still runs; its output:\n{}", old.logs()));
    assert!(
        status.success(),
        "old process exit status {status}:\n{}",
        old.logs()
    );
    assert!(
        old.logs().contains("took over the listening sockets"),
        "no hand-off line in the old process's output:\n{}",
        old.logs()
    );
    assert_eq!(new.addr, old.addr, "the new process listens elsewhere");
    new
}

#[test]
fn takeover_under_load_fails_nothing() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let socket = socket_path();
        let config = handoff_config(origin.addr, driver, 2, &socket);
        let mut first = Ringway::start(&config);
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(LoadCounts::default());
        let load = start_load(first.addr, &stop, &counts);

        thread::sleep(LOAD_PHASE);
        let mut second = take_over(&mut first, &config);
        thread::sleep(LOAD_PHASE);
        let third = take_over(&mut second, &config);
        thread::sleep(LOAD_PHASE);
        stop.store(true, Ordering::Relaxed);
        for thread in load {
            thread.join().expect("load thread panicked");
        }

        let failures = counts.failures.lock().expect("failure list");
        let sent = counts.sent.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{driver:?}: {} of {sent} requests failed, first: {:?}",
            failures.len(),
            failures.first()
        );
        assert!(sent > 0, "{driver:?}: no request was sent");
        let mut stream = connect(third.addr);
        exchange(&mut stream).unwrap_or_else(|error| {
            panic!(
                "{driver:?}: the last process does not serve: {error}\n{}",
                third.logs()
            )
        });
        assert!(
            third.logs().contains("received 2 listening sockets"),
            "{driver:?}: output:\n{}",
            third.logs()
        );
        let _ = std::fs::remove_file(&socket);
    }
}

/// Sends `count` requests, each on a new connection, and panics on the first failure. With
/// `SO_REUSEPORT` each connection lands on one of the sockets, so a socket that no worker
/// accepts on makes some of them time out.
fn assert_fresh_connections_served(addr: SocketAddr, count: usize, context: &str) {
    for index in 0..count {
        let mut stream = connect(addr);
        exchange(&mut stream)
            .unwrap_or_else(|error| panic!("{context}: request {index} failed: {error}"));
    }
}

#[test]
fn takeover_changes_worker_count() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let socket = socket_path();
        let mut two = Ringway::start(&handoff_config(origin.addr, driver, 2, &socket));

        // One worker keeps both received sockets and accepts on each of them.
        let mut one = take_over(&mut two, &handoff_config(origin.addr, driver, 1, &socket));
        let context = format!("{driver:?}, one worker on two sockets");
        assert_fresh_connections_served(one.addr, 50, &context);

        // Three workers take the two sockets and bind a third.
        let three = take_over(&mut one, &handoff_config(origin.addr, driver, 3, &socket));
        assert_fresh_connections_served(three.addr, 50, &format!("{driver:?}, three workers"));
        assert!(
            three.logs().contains("received 2 listening sockets"),
            "{driver:?}: output:\n{}",
            three.logs()
        );
        let _ = std::fs::remove_file(&socket);
    }
}

#[test]
fn takeover_without_socket_fails() {
    let origin = Origin::start();
    let socket = socket_path();
    let config = handoff_config(origin.addr, DRIVERS[0], 1, &socket);
    let (output, status) = Ringway::start_expecting_failure_with_args(&config, &["--takeover"]);
    assert_eq!(status.code(), Some(1), "output:\n{output}");
    assert!(
        output.contains(&format!("hand-off socket {} not found", socket.display())),
        "output:\n{output}"
    );
    assert!(
        output.contains("start without --takeover"),
        "output:\n{output}"
    );
}

#[test]
fn takeover_without_handoff_key_fails() {
    let origin = Origin::start();
    let config = config_for(origin.addr, DRIVERS[0]);
    let (output, status) = Ringway::start_expecting_failure_with_args(&config, &["--takeover"]);
    assert_eq!(status.code(), Some(1), "output:\n{output}");
    assert!(
        output.contains("--takeover needs \"handoff\""),
        "output:\n{output}"
    );
}

#[test]
fn second_process_without_takeover_fails() {
    let origin = Origin::start();
    let socket = socket_path();
    let config = handoff_config(origin.addr, DRIVERS[0], 1, &socket);
    let running = Ringway::start(&config);
    let (output, status) = Ringway::start_expecting_failure_with_args(&config, &[]);
    assert_eq!(status.code(), Some(1), "output:\n{output}");
    assert!(
        output.contains("another process serves hand-off socket"),
        "output:\n{output}"
    );
    let mut stream = connect(running.addr);
    exchange(&mut stream).expect("the running process still serves");
    drop(running);
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn stale_socket_file_is_replaced() {
    let origin = Origin::start();
    let socket = socket_path();
    // A socket file without a listener, as a killed process leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind a stale socket"));
    let config = handoff_config(origin.addr, DRIVERS[0], 1, &socket);
    let proxy = Ringway::start(&config);
    let mut stream = connect(proxy.addr);
    exchange(&mut stream).expect("the process serves");
    let handoff = std::os::unix::net::UnixStream::connect(&socket);
    assert!(handoff.is_ok(), "the hand-off socket refuses: {handoff:?}");
    drop(proxy);
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn version_names_release_and_commit() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("--version")
        .output()
        .expect("run ringway --version");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("ringway {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    // The commit line is there only when git could tell the commit at build time.
    if let Some(line) = lines.next() {
        let commit = line.strip_prefix("commit ").expect("a `commit HASH` line");
        assert_eq!(commit.len(), 12, "{line:?}");
        assert!(commit.bytes().all(|b| b.is_ascii_hexdigit()), "{line:?}");
    }
    assert_eq!(lines.next(), None, "unexpected output:\n{stdout}");
}

#[test]
fn short_version_is_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("-V")
        .output()
        .expect("run ringway -V");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert_eq!(stdout, format!("ringway {}\n", env!("CARGO_PKG_VERSION")));
}
