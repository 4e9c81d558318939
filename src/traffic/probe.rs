//! Active health probes: one HTTP/1.1 GET on a fresh connection, judged by its status code.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Maximum number of response bytes a probe reads while looking for the end of the status line.
/// A status line is "HTTP/1.1 200 OK" plus a reason phrase, far below this, so a server that
/// sends 1 KiB without a line break is not an HTTP server.
pub const PROBE_RESPONSE_MAX_BYTES: usize = 1024;

/// Value of the User-Agent header of probes, so servers can tell them from client traffic.
pub const PROBE_USER_AGENT: &str = "ringway-health";

/// The reason a probe found no status code.
#[derive(Debug)]
pub enum ProbeError {
    /// The host or path would break the request line or Host header.
    InvalidRequest {
        reason: &'static str,
    },
    Connect(io::Error),
    Write(io::Error),
    Read(io::Error),
    /// The whole probe (connect, write, read) took longer than its timeout.
    TimedOut,
    /// The server closed the connection before a complete status line.
    ClosedBeforeStatus,
    /// The response does not start with a valid HTTP/1.x status line.
    InvalidStatusLine,
    /// `PROBE_RESPONSE_MAX_BYTES` arrived without the end of the status line.
    StatusLineTooLong,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::InvalidRequest { reason } => write!(f, "invalid probe request: {reason}"),
            ProbeError::Connect(err) => write!(f, "connect failed: {err}"),
            ProbeError::Write(err) => write!(f, "writing the probe request failed: {err}"),
            ProbeError::Read(err) => write!(f, "reading the probe response failed: {err}"),
            ProbeError::TimedOut => write!(f, "probe timed out"),
            ProbeError::ClosedBeforeStatus => {
                write!(
                    f,
                    "server closed the connection before sending a status line"
                )
            }
            ProbeError::InvalidStatusLine => write!(f, "response has an invalid status line"),
            ProbeError::StatusLineTooLong => write!(
                f,
                "status line longer than {PROBE_RESPONSE_MAX_BYTES} bytes"
            ),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Sends `GET path` with `Host: host` to `addr` on a new connection and returns the response's
/// status code. `timeout` bounds the whole probe. The connection is closed after the status
/// line, without reading headers or body. The runtime must have its timer enabled.
pub async fn probe(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, ProbeError> {
    let request = build_request(host, path)?;
    match monoio::time::timeout(timeout, exchange(addr, request)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::TimedOut),
    }
}

fn build_request(host: &str, path: &str) -> Result<Vec<u8>, ProbeError> {
    // Visible ASCII only: a space would end the request target early, and CR or LF would
    // start a new header line.
    let visible = |text: &str| text.bytes().all(|b| b.is_ascii_graphic());
    if !path.starts_with('/') || !visible(path) {
        return Err(ProbeError::InvalidRequest {
            reason: "the path must start with '/' and contain only visible ASCII characters",
        });
    }
    if host.is_empty() || !visible(host) {
        return Err(ProbeError::InvalidRequest {
            reason: "the host must be non-empty visible ASCII without spaces",
        });
    }
    Ok(format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         User-Agent: {PROBE_USER_AGENT}\r\n\r\n"
    )
    .into_bytes())
}

async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Result<u16, ProbeError> {
    let mut stream = TcpStream::connect_addr(addr)
        .await
        .map_err(ProbeError::Connect)?;
    let (written, _) = stream.write_all(request).await;
    written.map_err(ProbeError::Write)?;

    let mut received = Vec::with_capacity(PROBE_RESPONSE_MAX_BYTES);
    loop {
        let filled = received.len();
        let (read, slice) = stream
            .read(received.slice_mut(filled..PROBE_RESPONSE_MAX_BYTES))
            .await;
        received = slice.into_inner();
        if read.map_err(ProbeError::Read)? == 0 {
            return Err(ProbeError::ClosedBeforeStatus);
        }
        if let Some(status) = parse_status(&received)? {
            return Ok(status);
        }
        if received.len() == PROBE_RESPONSE_MAX_BYTES {
            return Err(ProbeError::StatusLineTooLong);
        }
    }
}

/// Returns the status code once `received` contains a complete status line, None while it may
/// still become one, and an error as soon as it cannot.
fn parse_status(received: &[u8]) -> Result<Option<u16>, ProbeError> {
    // The status line ends at the first LF. Parsing only up to there keeps headers out of
    // httparse, which would otherwise need room for them.
    let line_end = received.iter().position(|&b| b == b'\n');
    let line = match line_end {
        Some(end) => &received[..=end],
        None => received,
    };
    let mut no_headers = [];
    let mut response = httparse::Response::new(&mut no_headers);
    if response.parse(line).is_err() {
        return Err(ProbeError::InvalidStatusLine);
    }
    // httparse sets the reason phrase only after the line ending, so it marks a complete line.
    match (response.code, response.reason) {
        (Some(code), Some(_)) => Ok(Some(code)),
        _ if line_end.is_some() => Err(ProbeError::InvalidStatusLine),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::{self, JoinHandle};
    use std::time::Instant;

    /// Bound for each blocking step of the test servers.
    const TEST_IO_TIMEOUT: Duration = Duration::from_secs(5);

    /// Timeout of probes that expect a response, generous for a loaded machine.
    const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("build runtime")
            .block_on(future)
    }

    /// Starts a server that accepts one connection, reads the request head and hands the
    /// stream to `respond`. The handle returns the request bytes.
    fn serve_once(
        respond: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
    ) -> (SocketAddr, JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            stream.set_read_timeout(Some(TEST_IO_TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(TEST_IO_TIMEOUT)).unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") && request.len() < 64 * 1024 {
                let n = stream.read(&mut chunk).expect("read request");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
            }
            respond(&mut stream);
            request
        });
        (addr, handle)
    }

    fn answer(bytes: &'static [u8]) -> impl FnOnce(&mut std::net::TcpStream) + Send + 'static {
        move |stream| {
            // The probe may close once it has the status line, so a failed write is fine.
            let _ = stream.write_all(bytes);
        }
    }

    #[test]
    fn probe_reads_200() {
        let (addr, server) = serve_once(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        let status = run(probe(addr, "backend.internal", "/health", PROBE_TIMEOUT));
        assert_eq!(status.unwrap(), 200);
        assert_eq!(
            server.join().unwrap(),
            b"GET /health HTTP/1.1\r\nHost: backend.internal\r\nConnection: close\r\n\
              User-Agent: ringway-health\r\n\r\n"
        );
    }

    #[test]
    fn probe_reads_503() {
        let (addr, server) = serve_once(answer(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        ));
        let status = run(probe(addr, "h", "/ready?full=1", PROBE_TIMEOUT));
        assert_eq!(status.unwrap(), 503);
        assert!(
            server
                .join()
                .unwrap()
                .starts_with(b"GET /ready?full=1 HTTP/1.1\r\n")
        );
    }

    #[test]
    fn probe_status_without_reason() {
        let (addr, server) = serve_once(answer(b"HTTP/1.0 204\r\n\r\n"));
        assert_eq!(run(probe(addr, "h", "/", PROBE_TIMEOUT)).unwrap(), 204);
        server.join().unwrap();
    }

    #[test]
    fn probe_status_line_in_pieces() {
        let (addr, server) = serve_once(|stream| {
            // The probe closes once the status line is complete, so only its bytes are
            // written here.
            for byte in b"HTTP/1.1 200 OK\r\n" {
                stream.write_all(&[*byte]).expect("write");
                thread::sleep(Duration::from_millis(2));
            }
        });
        assert_eq!(run(probe(addr, "h", "/", PROBE_TIMEOUT)).unwrap(), 200);
        server.join().unwrap();
    }

    #[test]
    fn probe_rejects_garbage() {
        for garbage in [
            &b"hello world\r\n"[..],
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"\r\nHTTP/1.1 200 OK\r\n",
            b"\x16\x03\x01\x00",
        ] {
            let (addr, server) = serve_once(move |stream| {
                let _ = stream.write_all(garbage);
                // Keep the connection open, so only the bytes can end the probe.
                let mut rest = [0u8; 16];
                let _ = stream.read(&mut rest);
            });
            let result = run(probe(addr, "h", "/", PROBE_TIMEOUT));
            assert!(
                matches!(result, Err(ProbeError::InvalidStatusLine)),
                "{:?}: {result:?}",
                String::from_utf8_lossy(garbage)
            );
            server.join().unwrap();
        }
    }

    #[test]
    fn probe_close_without_answer() {
        let (addr, server) = serve_once(|_| {});
        let result = run(probe(addr, "h", "/", PROBE_TIMEOUT));
        assert!(
            matches!(result, Err(ProbeError::ClosedBeforeStatus)),
            "{result:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn probe_close_mid_status_line() {
        let (addr, server) = serve_once(answer(b"HTTP/1.1 20"));
        let result = run(probe(addr, "h", "/", PROBE_TIMEOUT));
        assert!(
            matches!(result, Err(ProbeError::ClosedBeforeStatus)),
            "{result:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn probe_times_out_on_silence() {
        let (addr, server) = serve_once(|stream| {
            // Wait until the probe gives up and closes its side.
            let mut rest = [0u8; 16];
            let _ = stream.read(&mut rest);
        });
        let started = Instant::now();
        let result = run(probe(addr, "h", "/", Duration::from_millis(200)));
        let elapsed = started.elapsed();
        assert!(matches!(result, Err(ProbeError::TimedOut)), "{result:?}");
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        server.join().unwrap();
    }

    #[test]
    fn probe_limits_status_line() {
        let (addr, server) = serve_once(|stream| {
            let mut long = b"HTTP/1.1 200 ".to_vec();
            long.resize(PROBE_RESPONSE_MAX_BYTES * 2, b'x');
            let _ = stream.write_all(&long);
            let mut rest = [0u8; 16];
            let _ = stream.read(&mut rest);
        });
        let result = run(probe(addr, "h", "/", PROBE_TIMEOUT));
        assert!(
            matches!(result, Err(ProbeError::StatusLineTooLong)),
            "{result:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn probe_connect_refused() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().unwrap()
        };
        let result = run(probe(addr, "h", "/", PROBE_TIMEOUT));
        assert!(matches!(result, Err(ProbeError::Connect(_))), "{result:?}");
    }

    #[test]
    fn probe_rejects_unsafe_request() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for (host, path) in [
            ("h", "health"),
            ("h", ""),
            ("h", "/a b"),
            ("h", "/a\r\nX: y"),
            ("", "/"),
            ("h\r\nX: y", "/"),
            ("h h", "/"),
        ] {
            let result = run(probe(addr, host, path, PROBE_TIMEOUT));
            assert!(
                matches!(result, Err(ProbeError::InvalidRequest { .. })),
                "{host:?} {path:?}: {result:?}"
            );
        }
    }

    #[test]
    fn status_parse_cases() {
        let cases: [(&[u8], Option<u16>); 6] = [
            (b"", None),
            (b"HTTP/1.1", None),
            (b"HTTP/1.1 200 O", None),
            (b"HTTP/1.1 200 OK\r", None),
            (b"HTTP/1.1 200 OK\r\n", Some(200)),
            (b"HTTP/1.1 404 Not Found\nServer: x\r\n", Some(404)),
        ];
        for (received, expected) in cases {
            let status = parse_status(received).unwrap();
            assert_eq!(status, expected, "{:?}", String::from_utf8_lossy(received));
        }
    }
}
