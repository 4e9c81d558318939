//! The per-worker buffer pool under pressure: idle keep-alive connections hold no buffer, and
//! when the pool is exhausted, connections wait for buffers instead of failing or allocating.

mod common;

use std::io::Write;
use std::thread;

use common::{DRIVERS, Driver, Origin, Ringway, config_for, connect, pattern_ok, read_response};
use serde_json::json;

/// The smallest pool the configuration allows: two requests in progress at a time.
const TINY_POOL_BUFFERS: usize = 4;

fn tiny_pool_proxy(origin: &Origin, driver: Driver) -> Ringway {
    let mut config = config_for(origin.addr, driver);
    config["buffers"] = json!({ "per_worker": TINY_POOL_BUFFERS });
    Ringway::start(&config)
}

#[test]
fn idle_connections_hold_no_buffers() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let proxy = tiny_pool_proxy(&origin, driver);
        // Ten keep-alive connections, five times more than the pool could serve at once if an
        // idle connection kept its buffers.
        let mut streams: Vec<_> = (0..10).map(|_| connect(proxy.addr)).collect();
        for round in 0..2 {
            for (index, stream) in streams.iter_mut().enumerate() {
                stream
                    .write_all(b"GET /small HTTP/1.1\r\nHost: test\r\n\r\n")
                    .expect("write request");
                let response = read_response(stream, false).unwrap_or_else(|err| {
                    panic!("{driver:?}: round {round}, connection {index}: {err}")
                });
                assert_eq!(
                    response.status, 200,
                    "{driver:?}: round {round}, connection {index}"
                );
            }
        }
    }
}

#[test]
fn exhausted_pool_makes_requests_wait() {
    const DOWNLOADS: usize = 6;
    const BYTES: usize = 8 << 20;
    let origin = Origin::start();
    for driver in DRIVERS {
        let proxy = tiny_pool_proxy(&origin, driver);
        let addr = proxy.addr;
        let downloads: Vec<_> = (0..DOWNLOADS)
            .map(|_| {
                thread::spawn(move || {
                    let mut stream = connect(addr);
                    let request = format!(
                        "GET /bytes/{BYTES} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
                    );
                    stream.write_all(request.as_bytes()).expect("write request");
                    read_response(&mut stream, false).expect("read response")
                })
            })
            .collect();
        for (index, download) in downloads.into_iter().enumerate() {
            let response = download.join().expect("download thread");
            assert_eq!(response.status, 200, "{driver:?}: download {index}");
            assert!(response.complete, "{driver:?}: download {index} incomplete");
            assert_eq!(response.body.len(), BYTES, "{driver:?}: download {index}");
            assert!(
                pattern_ok(&response.body, 0),
                "{driver:?}: download {index} corrupted"
            );
        }
    }
}
