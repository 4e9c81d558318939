//! ringway's resident memory stays flat whatever the body size: a 4 GiB download and then eight
//! parallel 512 MiB downloads go through the real binary with every byte checked, and its peak
//! resident memory stays under a fixed bound that does not depend on the body size.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{DRIVERS, Driver, Origin, Ringway, config_for};

/// Peak resident memory allowed for a one-worker ringway during the downloads.
///
/// About 10 MiB is there before the first request (binary pages, the runtime, the io_uring
/// rings, the allocator's arenas). Each transfer holds at most four 64 KiB buffers, so eight
/// transfers add 2 MiB; the rest is headroom for the allocator. A proxy that buffered bodies
/// would pass this bound within the first download.
const PEAK_BOUND_KIB: u64 = 24 * 1024;

/// How far above its idle level ringway's resident memory may stay once the downloads are done:
/// the pool keeps a few free buffers for reuse and the allocator keeps some freed pages.
const SETTLED_SLACK_KIB: u64 = 4 * 1024;

const SINGLE_BYTES: u64 = 4 << 30;
const PARALLEL_BYTES: u64 = 512 << 20;
const PARALLEL_DOWNLOADS: usize = 8;

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

/// Waits up to two seconds for ringway's resident memory to fall to `target_kib`.
fn settled_rss_kib(proxy: &Ringway, target_kib: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let rss = proxy.vm_rss_kib();
        if rss <= target_kib || Instant::now() >= deadline {
            return rss;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn check_flat_memory(driver: Driver) {
    let origin = Origin::start();
    let proxy = Ringway::start(&config_for(origin.addr, driver));
    // One small request first, so that lazily built state is counted in the idle level.
    fetch(&proxy, 100, 1);
    let idle_rss = proxy.vm_rss_kib();
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
        "{driver:?}: RSS {settled} KiB after the downloads, idle level {idle_rss} KiB"
    );
    // Upstream keep-alive connections may stay pooled, one per parallel download at most.
    let fds = proxy.open_fds();
    assert!(
        fds <= idle_fds + PARALLEL_DOWNLOADS,
        "{driver:?}: {fds} open descriptors after the downloads, {idle_fds} before"
    );
    eprintln!("{driver:?}: idle {idle_rss} KiB, peak {peak_parallel} KiB, settled {settled} KiB");
}

#[test]
fn memory_flat_under_large_downloads() {
    for driver in DRIVERS {
        check_flat_memory(driver);
    }
}
