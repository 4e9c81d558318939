//! Heap allocations per proxied request in steady state, counted by a wrapping global allocator
//! around an in-process ringway worker. The origin runs in its own process and the client
//! thread only reuses buffers it allocated up front, so every allocation counted during the
//! measured requests is ringway's.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};

use common::{DRIVERS, Driver, Origin, config_for};
use ringway::worker::Workers;

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Held by each test while it counts, because the counter is global and the test harness runs
/// tests in parallel.
static COUNTING: Mutex<()> = Mutex::new(());

// SAFETY: every call is forwarded unchanged to the system allocator; the counter has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` comes from the caller's valid request.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const WARM_UP_REQUESTS: usize = 200;
const MEASURED_REQUESTS: u64 = 2000;

/// Allocations per request allowed in steady state: none. The tolerance only absorbs a rare
/// one-off growth of a runtime structure during the measured requests.
const MAX_ALLOCATIONS_PER_REQUEST: f64 = 0.01;

const GET_SMALL: &[u8] = b"GET /small HTTP/1.1\r\nHost: test\r\n\r\n";
const POST_ECHO: &[u8] = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n\
0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

/// Sends one keep-alive request and reads its 100-byte response into `buf` without allocating.
fn round_trip(stream: &mut TcpStream, request: &[u8], buf: &mut [u8]) {
    stream.write_all(request).expect("write request");
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).expect("read response");
        assert!(n > 0, "ringway closed the connection");
        filled += n;
        let text = &buf[..filled];
        if let Some(head_end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
            if filled >= head_end + 4 + 100 {
                assert!(text.starts_with(b"HTTP/1.1 200 "), "unexpected response");
                return;
            }
        }
    }
}

/// Starts an origin and, in this process, a ringway worker in front of it.
fn start_in_process(driver: Driver) -> (Origin, Workers) {
    let origin = Origin::start();
    let mut json = config_for(origin.addr, driver);
    json["listen"] = serde_json::json!("127.0.0.1:0");
    let config = ringway::config::parse(&json.to_string()).expect("valid config");
    let workers = ringway::worker::start(Arc::new(config)).expect("start ringway in-process");
    (origin, workers)
}

fn allocations_per_request(driver: Driver, request: &[u8]) -> f64 {
    let (_origin, workers) = start_in_process(driver);
    let mut stream = TcpStream::connect(workers.listen[0]).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 4096];
    for _ in 0..WARM_UP_REQUESTS {
        round_trip(&mut stream, request, &mut buf);
    }
    allocations_per_call(MEASURED_REQUESTS, || round_trip(&mut stream, request, &mut buf))
}

/// Calls `call` `count` times and returns the allocations counted per call.
fn allocations_per_call(count: u64, mut call: impl FnMut()) -> f64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..count {
        call();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / count as f64
}

#[test]
fn no_allocations_per_request() {
    let _counting = COUNTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for driver in DRIVERS {
        for (name, request) in [("GET", GET_SMALL), ("POST with a body", POST_ECHO)] {
            let per_request = allocations_per_request(driver, request);
            eprintln!("{driver:?}, {name}: {per_request:.3} allocations per request");
            assert!(
                per_request <= MAX_ALLOCATIONS_PER_REQUEST,
                "{driver:?}, {name}: {per_request:.3} allocations per request in steady state"
            );
        }
    }
}

/// Allocations allowed for each new client connection in steady state. Heads, buffers and
/// the other per-connection state are reused from closed connections, which leaves the
/// connection's task and the runtime's records of its socket and accept: 5 were counted with
/// monoio 0.2.4, against 21 without the reuse.
const MAX_ALLOCATIONS_PER_CONNECTION: f64 = 6.0;

const GET_SMALL_CLOSE: &[u8] = b"GET /small HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

fn allocations_per_connection(driver: Driver) -> f64 {
    const WARM_UP_CONNECTIONS: usize = 100;
    const MEASURED_CONNECTIONS: u64 = 500;
    let (_origin, workers) = start_in_process(driver);
    let mut buf = vec![0u8; 4096];
    let mut one_connection = || {
        let mut stream = TcpStream::connect(workers.listen[0]).expect("connect");
        round_trip(&mut stream, GET_SMALL_CLOSE, &mut buf);
        // Waiting for ringway's close makes sure the connection's task has ended.
        let mut rest = [0u8; 64];
        while stream.read(&mut rest).expect("read until close") > 0 {}
    };
    for _ in 0..WARM_UP_CONNECTIONS {
        one_connection();
    }
    allocations_per_call(MEASURED_CONNECTIONS, one_connection)
}

#[test]
fn few_allocations_per_connection() {
    let _counting = COUNTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for driver in DRIVERS {
        let per_connection = allocations_per_connection(driver);
        eprintln!("{driver:?}: {per_connection:.2} allocations per connection");
        assert!(
            per_connection <= MAX_ALLOCATIONS_PER_CONNECTION,
            "{driver:?}: {per_connection:.2} allocations per new connection in steady state"
        );
    }
}
