//! Heap allocations per proxied request in steady state, counted by a wrapping global allocator
//! around an in-process ringway worker. The origin runs in its own process and the client
//! thread only reuses buffers it allocated up front, so every allocation counted during the
//! measured requests is ringway's.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{DRIVERS, Driver, Origin, config_for};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

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

fn allocations_per_request(driver: Driver, request: &[u8]) -> f64 {
    let origin = Origin::start();
    let mut json = config_for(origin.addr, driver);
    json["listen"] = serde_json::json!("127.0.0.1:0");
    let config = ringway::config::parse(&json.to_string()).expect("valid config");
    let workers = ringway::worker::start(Arc::new(config)).expect("start ringway in-process");
    let mut stream = TcpStream::connect(workers.listen[0]).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 4096];
    for _ in 0..WARM_UP_REQUESTS {
        round_trip(&mut stream, request, &mut buf);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..MEASURED_REQUESTS {
        round_trip(&mut stream, request, &mut buf);
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    (after - before) as f64 / MEASURED_REQUESTS as f64
}

#[test]
fn no_allocations_per_request() {
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
