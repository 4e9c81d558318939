//! ringway's resident memory stays flat whatever the body size, and returns to its idle level
//! after a burst. A 4 GiB download and then sixteen parallel 256 MiB downloads go through the
//! real binary with every byte checked, and 256 connections with a request in flight on each
//! run many rounds of small requests. The peaks stay under bounds that do not depend on the body
//! size or the number of requests, and the resident memory settles back near its idle level.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{DRIVERS, Driver, Origin, Ringway, config_for, connect, read_response};

/// Peak resident memory allowed for a one-worker ringway during the downloads: three quarters of
/// the 14.9 MiB that nginx 1.22 with one worker reached in scripts/loadtest's 16 parallel
/// downloads. ringway measured 7.6 MiB.
///
/// About 5 MiB is there before the first request (binary pages, the runtime, the io_uring
/// rings, the allocator's arenas). Each transfer leases at most four 64 KiB buffers, so sixteen
/// transfers add 4 MiB at most, and the rest is headroom for the allocator. A proxy that buffered
/// bodies would pass this bound within the first download.
const PEAK_BOUND_KIB: u64 = 11 * 1024;

/// Anonymous resident memory (heap, stacks) allowed for an idle worker. It measured 0.9 MiB on
/// Linux 6.18. With transparent huge pages, when mimalloc touched its first 4 KiB it mapped
/// 2 MiB, and an idle ringway had 8.3 MiB.
const IDLE_ANON_BOUND_KIB: u64 = 4 * 1024;

/// How far above its idle level ringway's resident memory may stay once a burst is over. The
/// burst's buffers, connection states and allocator pages are freed. What stays is what a burst
/// grows for good: the upstream keep-alive pool, the access log's buffers, the runtime's tables.
const SETTLED_SLACK_KIB: u64 = 2 * 1024;

/// How long ringway may take to settle. A worker frees its idle buffers once it has leased none
/// for a second, and mimalloc gives freed memory back after its purge delay of 1 s.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

const SINGLE_BYTES: u64 = 4 << 30;
const PARALLEL_BYTES: u64 = 256 << 20;
const PARALLEL_DOWNLOADS: usize = 16;

/// Client connections of the small-request burst, each with one request in flight at a time.
const BURST_CONNECTIONS: usize = 256;
/// Rounds of the burst: each sends one request on every connection, then reads every response.
const BURST_ROUNDS: usize = 20;
/// Bound on the whole burst, so that a stalled proxy fails the test instead of hanging it.
const BURST_TIMEOUT: Duration = Duration::from_secs(60);

/// How far the burst may raise ringway's peak resident memory over its idle level. Each request
/// in flight leases two 64 KiB buffers, of which a small request touches a page or two, and each
/// connection has about 14 KB of state. It measured 7.5 MiB for 256 connections, and 56 MiB
/// when mimalloc used transparent huge pages.
const BURST_PEAK_GROWTH_KIB: u64 = 16 * 1024;

const GET_SMALL: &[u8] = b"GET /small HTTP/1.1\r\nHost: test\r\n\r\n";

fn fetch(proxy: &Ringway, bytes: u64, parallel: usize) {
    let url = format!("http://{}/bytes/{bytes}", proxy.addr);
    let output = Command::new(env!("CARGO_BIN_EXE_ringway-origin"))
        .args([
            "fetch",
            &url,
            "--expect-bytes",
            &bytes.to_string(),
            "--parallel",
            &parallel.to_string(),
        ])
        .output()
        .expect("run ringway-origin fetch");
    assert!(
        output.status.success(),
        "download of {bytes} bytes x{parallel} failed:\n{}\n{}\nringway log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        proxy.logs()
    );
}

/// Waits up to `SETTLE_TIMEOUT` for ringway's resident memory to fall to `target_kib`.
fn settled_rss_kib(proxy: &Ringway, target_kib: u64) -> u64 {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let rss = proxy.vm_rss_kib();
        if rss <= target_kib || Instant::now() >= deadline {
            return rss;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Starts ringway in front of `origin`, sends one small request so that lazily built state
/// counts in the idle level, and returns ringway with its idle resident memory in KiB.
fn start_idle(origin: &Origin, driver: Driver) -> (Ringway, u64) {
    let proxy = Ringway::start(&config_for(origin.addr, driver));
    fetch(&proxy, 100, 1);
    let idle_anon = proxy.rss_anon_kib();
    assert!(
        idle_anon <= IDLE_ANON_BOUND_KIB,
        "{driver:?}: idle ringway has {idle_anon} KiB of anonymous memory, bound {IDLE_ANON_BOUND_KIB} KiB"
    );
    let idle_rss = proxy.vm_rss_kib();
    (proxy, idle_rss)
}

fn check_flat_memory(driver: Driver) {
    let origin = Origin::start();
    let (proxy, idle_rss) = start_idle(&origin, driver);
    let idle_fds = proxy.open_fds();

    fetch(&proxy, SINGLE_BYTES, 1);
    let peak_single = proxy.vm_hwm_kib();
    assert!(
        peak_single <= PEAK_BOUND_KIB,
        "{driver:?}: peak RSS {peak_single} KiB after a 4 GiB download, bound {PEAK_BOUND_KIB} KiB"
    );

    fetch(&proxy, PARALLEL_BYTES, PARALLEL_DOWNLOADS);
    let peak_parallel = proxy.vm_hwm_kib();
    assert!(
        peak_parallel <= PEAK_BOUND_KIB,
        "{driver:?}: peak RSS {peak_parallel} KiB after {PARALLEL_DOWNLOADS} parallel downloads, bound {PEAK_BOUND_KIB} KiB"
    );

    let settled = settled_rss_kib(&proxy, idle_rss + SETTLED_SLACK_KIB);
    assert!(
        settled <= idle_rss + SETTLED_SLACK_KIB,
        "{driver:?}: RSS {settled} KiB {SETTLE_TIMEOUT:?} after the downloads, idle level {idle_rss} KiB"
    );
    // Upstream keep-alive connections may stay pooled, one per parallel download at most.
    // Splice pipes are kept while the worker is busy and closed once it goes quiet.
    let fd_bound = idle_fds + PARALLEL_DOWNLOADS;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut fds = proxy.open_fds();
    while fds > fd_bound && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        fds = proxy.open_fds();
    }
    assert!(
        fds <= fd_bound,
        "{driver:?}: {fds} open descriptors {SETTLE_TIMEOUT:?} after the downloads, {idle_fds} before"
    );
    eprintln!(
        "{driver:?}: idle {idle_rss} KiB, peak {peak_single} KiB for one download, {peak_parallel} KiB for {PARALLEL_DOWNLOADS}, settled {settled} KiB"
    );
}

/// Runs `BURST_ROUNDS` rounds of one small request on each of `BURST_CONNECTIONS` connections,
/// with every request of a round written before the first response is read, so that ringway
/// has a request in flight on every connection at once.
fn run_small_request_burst(proxy: &Ringway) {
    let deadline = Instant::now() + BURST_TIMEOUT;
    let mut clients: Vec<TcpStream> = (0..BURST_CONNECTIONS)
        .map(|_| connect(proxy.addr))
        .collect();
    for round in 0..BURST_ROUNDS {
        assert!(
            Instant::now() < deadline,
            "the burst did not finish within {BURST_TIMEOUT:?}; it reached round {round}"
        );
        for client in &mut clients {
            client.write_all(GET_SMALL).expect("send a request");
        }
        for (index, client) in clients.iter_mut().enumerate() {
            let response = read_response(client, false).unwrap_or_else(|error| {
                panic!(
                    "round {round}, connection {index}: reading the response failed: {error}\nringway log:\n{}",
                    proxy.logs()
                )
            });
            assert_eq!(response.status, 200, "round {round}, connection {index}");
        }
    }
}

fn check_memory_after_burst(driver: Driver) {
    let origin = Origin::start();
    let (proxy, idle_rss) = start_idle(&origin, driver);
    proxy.reset_peak_rss();

    run_small_request_burst(&proxy);
    let peak = proxy.vm_hwm_kib();
    assert!(
        peak <= idle_rss + BURST_PEAK_GROWTH_KIB,
        "{driver:?}: peak RSS {peak} KiB with {BURST_CONNECTIONS} busy connections, idle level {idle_rss} KiB, allowed growth {BURST_PEAK_GROWTH_KIB} KiB"
    );

    let settled = settled_rss_kib(&proxy, idle_rss + SETTLED_SLACK_KIB);
    assert!(
        settled <= idle_rss + SETTLED_SLACK_KIB,
        "{driver:?}: RSS {settled} KiB {SETTLE_TIMEOUT:?} after {BURST_CONNECTIONS} connections closed, idle level {idle_rss} KiB"
    );
    eprintln!("{driver:?}: idle {idle_rss} KiB, burst peak {peak} KiB, settled {settled} KiB");
}

#[test]
fn memory_flat_under_large_downloads() {
    for driver in DRIVERS {
        check_flat_memory(driver);
    }
}

#[test]
fn memory_returns_after_connection_burst() {
    for driver in DRIVERS {
        check_memory_after_burst(driver);
    }
}
