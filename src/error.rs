//! The one error type of the request path.
//!
//! Every failure records which side caused it and what the client should see, so that a single
//! function (`proxy::respond_error`) turns any error into the client's response and one log line.

use std::fmt;

/// The party whose behaviour caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The downstream client: bad input, a timeout waiting for it, or a closed connection.
    Client,
    /// The upstream server: refused, reset, timed out, or sent an invalid response.
    Upstream,
    /// ringway itself: a route that does not exist or a request it does not implement.
    Internal,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Internal => "ringway",
        })
    }
}

/// The kind of failure, at the level the response and the log need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Malformed or ambiguous request (RFC 9112 framing rules, invalid Host): 400.
    BadRequest,
    /// Request line longer than the head limit: 414.
    UriTooLong,
    /// Request head over the byte or header-count limit: 431.
    HeadTooLarge,
    /// Request body over `limits.max_request_body_bytes`: 413.
    BodyTooLarge,
    /// A transfer coding other than chunked: 501.
    UnsupportedTransferCoding,
    /// A method ringway cannot proxy (CONNECT): 501.
    MethodNotImplemented,
    /// An `Expect` value other than 100-continue: 417.
    ExpectationFailed,
    /// HTTP version other than 1.0 or 1.1: 505.
    VersionNotSupported,
    /// No route matches: 404.
    NoRoute,
    /// The route's allow and deny lists reject the client address: 403.
    Forbidden,
    /// The client went over the route's rate limit: 429.
    RateLimited,
    /// Every server of the upstream is ejected, failing its health checks or behind an open
    /// circuit breaker: 503.
    NoAvailableServer,
    /// The client sent nothing, or not the whole head, in time: 408 if it started a request.
    ClientTimeout,
    /// The client closed or reset its connection.
    ClientClosed,
    /// Connecting to the upstream failed (refused, unreachable, reset): 502.
    ConnectFailed,
    /// Connecting to the upstream timed out: 504.
    ConnectTimeout,
    /// The upstream sent no response head in time: 504.
    UpstreamTimeout,
    /// The upstream closed or reset before the response was complete: 502 if nothing was sent yet.
    UpstreamClosed,
    /// The upstream sent a response ringway cannot relay safely: 502.
    InvalidResponse,
}

/// An error on the request path: its kind, the side at fault and a one-line detail for the log
/// and the response body.
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub kind: Kind,
    pub side: Side,
    pub detail: String,
}

impl ProxyError {
    pub fn new(kind: Kind, detail: impl Into<String>) -> ProxyError {
        let side = match kind {
            Kind::BadRequest
            | Kind::UriTooLong
            | Kind::HeadTooLarge
            | Kind::BodyTooLarge
            | Kind::UnsupportedTransferCoding
            | Kind::ExpectationFailed
            | Kind::VersionNotSupported
            | Kind::ClientTimeout
            | Kind::ClientClosed
            | Kind::Forbidden
            | Kind::RateLimited => Side::Client,
            Kind::MethodNotImplemented | Kind::NoRoute => Side::Internal,
            Kind::ConnectFailed
            | Kind::ConnectTimeout
            | Kind::UpstreamTimeout
            | Kind::UpstreamClosed
            | Kind::InvalidResponse
            | Kind::NoAvailableServer => Side::Upstream,
        };
        ProxyError {
            kind,
            side,
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ProxyError {
        ProxyError::new(Kind::BadRequest, detail)
    }

    pub fn invalid_response(detail: impl Into<String>) -> ProxyError {
        ProxyError::new(Kind::InvalidResponse, detail)
    }

    /// Returns the status code and reason phrase the client gets, or `None` where no response is
    /// possible or useful (the client is gone, or it never started a request).
    pub fn status(&self) -> Option<(u16, &'static str)> {
        Some(match self.kind {
            Kind::BadRequest => (400, "Bad Request"),
            Kind::UriTooLong => (414, "URI Too Long"),
            Kind::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Kind::BodyTooLarge => (413, "Content Too Large"),
            Kind::UnsupportedTransferCoding | Kind::MethodNotImplemented => {
                (501, "Not Implemented")
            }
            Kind::ExpectationFailed => (417, "Expectation Failed"),
            Kind::VersionNotSupported => (505, "HTTP Version Not Supported"),
            Kind::NoRoute => (404, "Not Found"),
            Kind::Forbidden => (403, "Forbidden"),
            Kind::RateLimited => (429, "Too Many Requests"),
            Kind::NoAvailableServer => (503, "Service Unavailable"),
            Kind::ClientTimeout => (408, "Request Timeout"),
            Kind::ClientClosed => return None,
            Kind::ConnectFailed | Kind::UpstreamClosed | Kind::InvalidResponse => {
                (502, "Bad Gateway")
            }
            Kind::ConnectTimeout | Kind::UpstreamTimeout => (504, "Gateway Timeout"),
        })
    }
}

impl ProxyError {
    /// Returns the detail to show the client. Client and routing errors explain what to change
    /// in the request; upstream errors get a fixed text, because addresses and OS errors of
    /// internal servers are for the log, not for the client that sent the request.
    pub fn public_detail(&self) -> &str {
        match self.kind {
            Kind::ConnectFailed => "the upstream server could not be reached",
            Kind::ConnectTimeout => "connecting to the upstream server timed out",
            Kind::UpstreamTimeout => "the upstream server did not respond in time",
            Kind::UpstreamClosed => {
                "the upstream server closed the connection without a complete response"
            }
            Kind::InvalidResponse => "the upstream server sent an invalid response",
            Kind::NoAvailableServer => "no upstream server is available; try again later",
            _ => &self.detail,
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.side, self.detail)
    }
}

impl std::error::Error for ProxyError {}

/// Shows at most `MAX_SHOWN_VALUE_BYTES` of a received value in a message, with control and
/// non-ASCII bytes escaped, so that logs and error bodies never carry raw attacker bytes.
pub fn shown(value: &[u8]) -> String {
    /// Enough to recognise a header value or target; longer values are cut with "...".
    const MAX_SHOWN_VALUE_BYTES: usize = 64;
    let mut out = String::with_capacity(value.len().min(MAX_SHOWN_VALUE_BYTES) + 2);
    out.push('"');
    for &byte in value.iter().take(MAX_SHOWN_VALUE_BYTES) {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(byte as char);
            }
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push('"');
    if value.len() > MAX_SHOWN_VALUE_BYTES {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_control_bytes() {
        assert_eq!(shown(b"a\r\nb\"\x00"), "\"a\\x0d\\x0ab\\\"\\x00\"");
    }

    #[test]
    fn shown_cuts_long_values() {
        let long = vec![b'x'; 100];
        let text = shown(&long);
        assert!(text.ends_with("\"..."));
        assert_eq!(text.len(), 64 + 2 + 3);
    }

    #[test]
    fn upstream_details_stay_private() {
        let err = ProxyError::new(
            Kind::ConnectFailed,
            "connecting to 10.0.0.7:8080 failed: Connection refused",
        );
        assert!(!err.public_detail().contains("10.0.0.7"));
        let err = ProxyError::bad_request("missing Host header");
        assert_eq!(err.public_detail(), "missing Host header");
    }

    #[test]
    fn statuses_match_sides() {
        assert_eq!(
            ProxyError::new(Kind::ConnectTimeout, "").status(),
            Some((504, "Gateway Timeout"))
        );
        assert_eq!(
            ProxyError::new(Kind::ConnectFailed, "").side,
            Side::Upstream
        );
        assert_eq!(ProxyError::new(Kind::ClientClosed, "").status(), None);
        assert_eq!(ProxyError::new(Kind::NoRoute, "").side, Side::Internal);
    }
}
