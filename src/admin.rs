//! The admin listener: metrics, health and reload over plain HTTP/1.1, on a thread of its own.
//!
//! It runs off the workers with blocking I/O and serves one connection at a time, closing each
//! after one response. Every read and write is bounded by `IO_TIMEOUT`, so a stuck client
//! delays other admin requests by at most that long, and it never touches proxied traffic.
//!
//! - `GET /metrics`: Prometheus text format 0.0.4.
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 while the workers listen, 503 once ringway drains.
//! - `POST /reload`: reloads the configuration file, as SIGHUP does.
//!
//! A known path with another method gets 405; any other path gets 404.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, info};

use crate::control::{Controller, lock};

/// Bound on each read and write of an admin connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Maximum size of an admin request head. Admin requests carry no large headers.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Maximum header fields in an admin request head.
const MAX_HEADERS: usize = 32;

/// Binds the admin listener, so that a taken address fails start-up before any worker starts.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("binding the admin listener {addr} failed: {err}; stop whatever uses the address or change admin.listen"),
        )
    })
}

/// Serves the admin endpoints on `listener` in a thread of its own.
pub fn start(
    listener: TcpListener,
    controller: Arc<Mutex<Controller>>,
) -> io::Result<JoinHandle<()>> {
    let addr = listener.local_addr()?;
    info!("admin endpoints (/metrics, /healthz, /readyz, /reload) served on {addr}");
    std::thread::Builder::new()
        .name("ringway-admin".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Err(err) = serve(stream, &controller) {
                    debug!(error = %err, "admin connection failed");
                }
            }
        })
}

/// A response of the admin listener.
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    /// The `Allow` header of a 405 response.
    allow: Option<&'static str>,
    body: String,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            allow: None,
            body: body.into(),
        }
    }
}

fn serve(mut stream: TcpStream, controller: &Mutex<Controller>) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let response = match request.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {
            let method = request.method.unwrap_or("");
            let target = request.path.unwrap_or("");
            let path = target.split('?').next().unwrap_or("");
            respond(method, path, controller)
        }
        _ => Response::text(400, "Bad Request", "invalid request head\n"),
    };
    write_response(&mut stream, &response, request.method == Some("HEAD"))
}

/// Returns the response to `method` on `path`.
fn respond(method: &str, path: &str, controller: &Mutex<Controller>) -> Response {
    let (allowed, allow): (&[&str], &'static str) = match path {
        "/metrics" | "/healthz" | "/readyz" => (&["GET", "HEAD"], "GET, HEAD"),
        "/reload" => (&["POST"], "POST"),
        _ => {
            return Response::text(
                404,
                "Not Found",
                format!(
                    "no admin endpoint at {path}; try /metrics, /healthz, /readyz or POST /reload\n"
                ),
            );
        }
    };
    if !allowed.contains(&method) {
        let mut response = Response::text(
            405,
            "Method Not Allowed",
            format!("{path} accepts {allow}, not {method}\n"),
        );
        response.allow = Some(allow);
        return response;
    }
    match path {
        "/metrics" => Response {
            status: 200,
            reason: "OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            allow: None,
            body: lock(controller).metrics(),
        },
        "/healthz" => Response::text(200, "OK", "ok\n"),
        "/readyz" => {
            if lock(controller).draining() {
                Response::text(503, "Service Unavailable", "draining\n")
            } else {
                Response::text(200, "OK", "ready\n")
            }
        }
        _ => {
            let mut controller = lock(controller);
            if controller.draining() {
                return Response::text(
                    503,
                    "Service Unavailable",
                    "draining; the configuration is not reloaded\n",
                );
            }
            match controller.reload() {
                Ok(generation) => Response::text(
                    200,
                    "OK",
                    format!("configuration reloaded (generation {generation})\n"),
                ),
                // The file is the problem, not the request, so this is a server-side status.
                Err(errors) => Response::text(
                    500,
                    "Internal Server Error",
                    format!("reload failed, so the running configuration stays: {errors}\n"),
                ),
            }
        }
    }
}

/// Reads a request head up to its empty line. Any body is left unread: no endpoint takes one.
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut piece = [0u8; 512];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return Err(io::Error::other("admin request head too large"));
        }
        let read = stream.read(&mut piece)?;
        if read == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        head.extend_from_slice(&piece[..read]);
    }
    Ok(head)
}

fn write_response(stream: &mut TcpStream, response: &Response, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.reason,
        response.content_type,
        response.body.len()
    );
    if let Some(allow) = response.allow {
        out.push_str("Allow: ");
        out.push_str(allow);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&response.body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}
