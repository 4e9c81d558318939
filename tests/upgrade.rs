//! Protocol upgrades (RFC 9110 section 7.8, RFC 6455 section 4): an upgrade request is
//! forwarded with its Upgrade offer, a 101 turns both connections into a byte tunnel, and any
//! other answer is an ordinary response. Runs under io_uring and epoll.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DRIVERS, RawOrigin, RecordingOrigin, Reply, Ringway, config_for, connect, ok_with_body,
    read_request_head, read_response, send,
};

/// The WebSocket handshake of RFC 6455 section 1.2, as a client sends it.
const UPGRADE_REQUEST: &[u8] = b"GET /hub HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The server's side of that handshake.
const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Bytes each side streams through the tunnel in the bulk test: more than a pooled buffer.
const BULK_BYTES: usize = 4 << 20;

/// `timeouts.tunnel_idle_ms` in the idle test.
const TUNNEL_IDLE_MS: u64 = 400;

/// Bound on the time ringway takes to close a quiet tunnel past its idle timeout.
const IDLE_CLOSE_SLACK: Duration = Duration::from_millis(1500);

/// Reads until the empty line that ends a head. Returns the head as text and the bytes read
/// past it, which already belong to the tunnel.
fn read_head_text(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut piece = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            let rest = bytes.split_off(end + 4);
            return (String::from_utf8_lossy(&bytes).into_owned(), rest);
        }
        let count = stream.read(&mut piece).expect("reading a head failed");
        assert!(count > 0, "connection closed inside a head: {bytes:?}");
        bytes.extend_from_slice(&piece[..count]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// Starts an origin that accepts every upgrade, echoes the tunnel's bytes until the client
/// half-closes, and then closes. The receiver gets each request head the origin read.
fn echo_origin() -> (RawOrigin, mpsc::Receiver<String>) {
    let (heads_tx, heads_rx) = mpsc::channel();
    let heads_tx = std::sync::Mutex::new(heads_tx);
    let origin = RawOrigin::start(move |mut stream, _| {
        let Ok(head) = read_request_head(&mut stream) else {
            return;
        };
        let _ = heads_tx
            .lock()
            .unwrap()
            .send(String::from_utf8_lossy(&head).into_owned());
        if stream.write_all(SWITCHING).is_err() {
            return;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut piece = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut piece) {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    if stream.write_all(&piece[..count]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
    });
    (origin, heads_rx)
}

#[test]
fn websocket_handshake_and_echo() {
    for driver in DRIVERS {
        let (origin, heads) = echo_origin();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        // The first frame travels in the same segment as the handshake, so it sits behind the
        // head in ringway's buffer and must reach the origin first.
        let mut first = UPGRADE_REQUEST.to_vec();
        first.extend_from_slice(b"early");
        send(&mut stream, &first);

        let (head, mut rest) = read_head_text(&mut stream);
        assert!(
            head.starts_with("HTTP/1.1 101 "),
            "{driver:?}: not a 101: {head}"
        );
        assert_eq!(header(&head, "Upgrade"), Some("websocket"), "{driver:?}");
        assert_eq!(
            header(&head, "Connection").map(str::to_ascii_lowercase),
            Some("upgrade".to_string()),
            "{driver:?}"
        );
        assert_eq!(
            header(&head, "Sec-WebSocket-Accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{driver:?}"
        );
        assert_eq!(header(&head, "Content-Length"), None, "{driver:?}");
        assert_eq!(header(&head, "Transfer-Encoding"), None, "{driver:?}");

        let seen = heads.recv_timeout(Duration::from_secs(5)).expect("origin saw no request");
        assert_eq!(header(&seen, "Upgrade"), Some("websocket"), "{driver:?}: {seen}");
        assert_eq!(
            header(&seen, "Connection").map(str::to_ascii_lowercase),
            Some("upgrade".to_string()),
            "{driver:?}: {seen}"
        );
        assert_eq!(
            header(&seen, "Sec-WebSocket-Key"),
            Some("dGhlIHNhbXBsZSBub25jZQ=="),
            "{driver:?}: {seen}"
        );

        while rest.len() < 5 {
            let mut piece = [0u8; 64];
            let count = stream.read(&mut piece).expect("reading the echo failed");
            assert!(count > 0, "{driver:?}: tunnel closed before the echo");
            rest.extend_from_slice(&piece[..count]);
        }
        assert_eq!(&rest[..], b"early", "{driver:?}: early bytes");

        for message in [&b"hello"[..], b"world", &[0u8, 255, 13, 10, 13, 10]] {
            send(&mut stream, message);
            let mut echoed = vec![0u8; message.len()];
            stream.read_exact(&mut echoed).expect("echo missing");
            assert_eq!(echoed, message, "{driver:?}: echo");
        }

        // A half-close passes through: the origin sees the end, closes, and so does ringway.
        stream.shutdown(Shutdown::Write).expect("half-close failed");
        let mut tail = Vec::new();
        stream.read_to_end(&mut tail).expect("reading to the close failed");
        assert!(tail.is_empty(), "{driver:?}: bytes after close: {tail:?}");
    }
}

#[test]
fn tunnel_carries_bulk_both_ways() {
    for driver in DRIVERS {
        let (origin, _heads) = echo_origin();
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(&mut stream, UPGRADE_REQUEST);
        let (head, rest) = read_head_text(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101 "), "{driver:?}: {head}");
        assert!(rest.is_empty(), "{driver:?}: unexpected bytes {rest:?}");

        let mut writer = stream.try_clone().expect("clone failed");
        let sender = thread::spawn(move || {
            let data: Vec<u8> = (0..BULK_BYTES).map(|i| (i % 251) as u8).collect();
            writer.write_all(&data).expect("sending bulk failed");
            writer.shutdown(Shutdown::Write).expect("half-close failed");
        });
        let mut received = Vec::with_capacity(BULK_BYTES);
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream.read_to_end(&mut received).expect("reading bulk failed");
        sender.join().expect("sender panicked");
        assert_eq!(received.len(), BULK_BYTES, "{driver:?}: bytes echoed");
        let intact = received
            .iter()
            .enumerate()
            .all(|(i, &byte)| byte == (i % 251) as u8);
        assert!(intact, "{driver:?}: echoed bytes differ");
    }
}

#[test]
fn refused_upgrade_is_ordinary_response() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(|_| Reply::keep_open(ok_with_body(b"no websockets here")));
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(&mut stream, UPGRADE_REQUEST);
        let response = read_response(&mut stream, false).expect("no response");
        assert_eq!(response.status, 200, "{driver:?}");
        assert_eq!(response.body, b"no websockets here", "{driver:?}");
        assert_eq!(response.header("Upgrade"), None, "{driver:?}");
        let seen = origin.next_request().request;
        assert_eq!(seen.header("Upgrade"), Some("websocket"), "{driver:?}");

        // The connection stays an HTTP connection.
        send(&mut stream, b"GET /next HTTP/1.1\r\nHost: gw.test\r\n\r\n");
        let response = read_response(&mut stream, false).expect("no second response");
        assert_eq!(response.status, 200, "{driver:?}");
        assert_eq!(origin.next_request().request.target, "/next", "{driver:?}");
    }
}

#[test]
fn upgrade_offer_dropped_unless_valid() {
    let cases: [(&str, &[u8]); 4] = [
        (
            "Connection does not list upgrade",
            b"GET / HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n\r\n",
        ),
        (
            "HTTP/1.0 request",
            b"GET / HTTP/1.0\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ),
        (
            "request with a body",
            b"POST / HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
              Content-Length: 2\r\n\r\nhi",
        ),
        (
            "h2c offer",
            b"GET / HTTP/1.1\r\nHost: gw.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        ),
    ];
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(|_| Reply::keep_open(ok_with_body(b"plain")));
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        for (case, request) in cases {
            let mut stream = connect(proxy.addr);
            send(&mut stream, request);
            let response = read_response(&mut stream, false).expect("no response");
            assert_eq!(response.status, 200, "{driver:?}: {case}");
            let seen = origin.next_request().request;
            assert_eq!(seen.header("Upgrade"), None, "{driver:?}: {case}");
            assert_eq!(seen.header("HTTP2-Settings"), None, "{driver:?}: {case}");
            let connection = seen.header("Connection").unwrap_or("").to_ascii_lowercase();
            assert!(!connection.contains("upgrade"), "{driver:?}: {case}: {connection}");
        }
    }
}

#[test]
fn switch_without_offer_is_bad_gateway() {
    for driver in DRIVERS {
        let origin = RawOrigin::start(|mut stream, _| {
            if read_request_head(&mut stream).is_ok() {
                let _ = stream.write_all(SWITCHING);
                thread::sleep(Duration::from_millis(500));
            }
        });
        let proxy = Ringway::start(&config_for(origin.addr, driver));
        let mut stream = connect(proxy.addr);
        send(&mut stream, b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n");
        let response = read_response(&mut stream, false).expect("no response");
        assert_eq!(response.status, 502, "{driver:?}");
    }
}

#[test]
fn quiet_tunnel_closes_after_idle_timeout() {
    for driver in DRIVERS {
        let (origin, _heads) = echo_origin();
        let mut config = config_for(origin.addr, driver);
        config["timeouts"] = serde_json::json!({ "tunnel_idle_ms": TUNNEL_IDLE_MS });
        let proxy = Ringway::start(&config);
        let mut stream = connect(proxy.addr);
        send(&mut stream, UPGRADE_REQUEST);
        let (head, _) = read_head_text(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101 "), "{driver:?}: {head}");

        // Traffic keeps it open past the timeout.
        let started = Instant::now();
        let mut quiet_since = Instant::now();
        while started.elapsed() < Duration::from_millis(TUNNEL_IDLE_MS * 2) {
            thread::sleep(Duration::from_millis(TUNNEL_IDLE_MS / 4));
            send(&mut stream, b"ping");
            let mut echoed = [0u8; 4];
            stream.read_exact(&mut echoed).expect("tunnel closed while in use");
            quiet_since = Instant::now();
        }

        stream
            .set_read_timeout(Some(Duration::from_millis(TUNNEL_IDLE_MS) + IDLE_CLOSE_SLACK))
            .expect("timeout");
        let mut piece = [0u8; 16];
        let count = stream.read(&mut piece).expect("tunnel was not closed in time");
        assert_eq!(count, 0, "{driver:?}: unexpected bytes");
        assert!(
            quiet_since.elapsed() >= Duration::from_millis(TUNNEL_IDLE_MS - 50),
            "{driver:?}: closed after {:?}, before the idle timeout",
            quiet_since.elapsed()
        );
    }
}

#[test]
fn upgrade_follows_route_rules() {
    for driver in DRIVERS {
        let (origin, heads) = echo_origin();
        let mut config = config_for(origin.addr, driver);
        config["routes"] = serde_json::json!([
            { "path_prefix": "/hub", "methods": ["GET"], "upstream": "origin" }
        ]);
        let proxy = Ringway::start(&config);
        let mut stream = connect(proxy.addr);
        let request = String::from_utf8_lossy(UPGRADE_REQUEST).replace("/hub", "/elsewhere");
        send(&mut stream, request.as_bytes());
        let response = read_response(&mut stream, false).expect("no response");
        assert_eq!(response.status, 404, "{driver:?}");
        assert!(
            heads.recv_timeout(Duration::from_millis(300)).is_err(),
            "{driver:?}: the origin saw an unrouted upgrade"
        );
    }
}
