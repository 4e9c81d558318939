//! Request and response head parsing: httparse for the syntax, then the framing and connection
//! rules of RFC 9112 that an intermediary must enforce before it forwards a single byte.
//!
//! Parsed heads keep offsets into the buffer they were read into, never copies, and their header
//! lists are reused across the requests of a connection.

use std::mem::MaybeUninit;

use crate::error::{Kind, ProxyError, shown};
use crate::http::body::BodyKind;

/// Most header lines any configuration may allow; `limits.max_header_count` is checked against
/// the same bound. The parser's scratch array has this many slots and lives on the stack only
/// while one head is parsed.
pub const MAX_HEADER_COUNT: usize = 1000;

/// A byte range into the buffer a head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    fn within(outer: &[u8], inner: &[u8]) -> Span {
        let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + inner.len()) as u32,
        }
    }

    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The role a header field plays for a proxy, decided once while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRole {
    /// End-to-end: forwarded as received.
    EndToEnd,
    /// Hop-by-hop or framing (RFC 9110 section 7.6.1, RFC 9112 section 6): never forwarded,
    /// because ringway writes its own framing and connection headers.
    HopByHop,
    Host,
    /// X-Forwarded-For and Via: forwarded as one combined line with ringway's entry appended.
    ForwardedFor,
    /// Forwarded (RFC 7239): forwarded as one combined line with ringway's element appended,
    /// so the last element always describes the hop ringway saw, whatever the client claimed.
    Forwarded,
    Via,
    /// X-Forwarded-Proto and X-Forwarded-Host: replaced by ringway's own values, because a
    /// client could otherwise tell the upstream any scheme or host it likes.
    ForwardedReplaced,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: Span,
    pub value: Span,
    pub role: FieldRole,
}

/// Limits that apply while a head is parsed.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_head_bytes: usize,
    pub max_header_count: usize,
}

/// The form of a request target (RFC 9112 section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    Origin,
    Absolute,
    Asterisk,
}

/// A parsed request head.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub method: Span,
    pub target: Span,
    pub target_form: Option<TargetForm>,
    /// The path of the target, without the query (for absolute-form, after the authority).
    pub path: Span,
    /// The authority of an absolute-form target, which replaces Host (RFC 9112 section 3.2.2).
    pub target_authority: Option<Span>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub fields: Vec<Field>,
    pub head_len: usize,
    pub body: Option<BodyKind>,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub host: Option<Span>,
    /// Header names listed in Connection (other than close and keep-alive): hop-by-hop too.
    pub connection_tokens: Vec<Span>,
    /// The Upgrade value of a bodiless HTTP/1.1 request whose Connection lists `upgrade`
    /// (RFC 9110 section 7.8): the protocols the client offers, forwarded so that the upstream
    /// may switch with a 101. `None` for every other request, which loses its Upgrade header.
    pub upgrade: Option<Span>,
}

/// A parsed response head.
#[derive(Debug, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Span,
    pub minor_version: u8,
    pub fields: Vec<Field>,
    pub head_len: usize,
    pub body: Option<BodyKind>,
    /// The upstream allows reuse of the connection after this response.
    pub keep_alive: bool,
    /// The value of the first Content-Length, kept for HEAD and 304 responses.
    pub content_length: Option<u64>,
    pub has_date: bool,
    pub connection_tokens: Vec<Span>,
    /// The Upgrade value, which a 101 response carries to name the protocol switched to.
    pub upgrade: Option<Span>,
}

/// Gives a head type, whose vectors are `fields` and `connection_tokens`, the methods that let
/// a worker reuse it for another connection.
macro_rules! reusable_head {
    ($head:ident) => {
        impl $head {
            /// Returns the head to its default state, keeping the capacity of its vectors.
            pub fn reset(&mut self) {
                let mut fields = std::mem::take(&mut self.fields);
                let mut connection_tokens = std::mem::take(&mut self.connection_tokens);
                fields.clear();
                connection_tokens.clear();
                *self = $head {
                    fields,
                    connection_tokens,
                    ..$head::default()
                };
            }

            /// Returns the bytes of capacity its vectors hold.
            pub fn capacity_bytes(&self) -> usize {
                self.fields.capacity() * size_of::<Field>()
                    + self.connection_tokens.capacity() * size_of::<Span>()
            }
        }
    };
}

reusable_head!(RequestHead);
reusable_head!(ResponseHead);

impl RequestHead {
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.method.of(buf)
    }

    pub fn is_head(&self, buf: &[u8]) -> bool {
        self.method(buf) == b"HEAD"
    }

    /// Returns the host the request is for: the absolute-form authority, else the Host header.
    pub fn authority<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.target_authority.or(self.host).map(|span| span.of(buf))
    }

    /// Returns whether the method is idempotent (RFC 9110 section 9.2.2), so that a request that
    /// failed before any response byte may be sent again.
    pub fn is_idempotent(&self, buf: &[u8]) -> bool {
        is_idempotent_method(self.method(buf))
    }
}

/// Returns whether `method` is idempotent (RFC 9110 section 9.2.2). Methods compare
/// case-sensitively, as RFC 9110 section 9.1 requires.
pub fn is_idempotent_method(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// Parses a request head from the start of `buf` into `head`.
///
/// Returns `Ok(false)` when more bytes are needed and the limits still allow them, `Ok(true)` with
/// `head` filled when the head is complete and acceptable, and the error to respond with otherwise.
pub fn parse_request(
    buf: &[u8],
    limits: HeadLimits,
    head: &mut RequestHead,
) -> Result<bool, ProxyError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_COUNT];
    let slots = &mut slots[..limits.max_header_count.min(MAX_HEADER_COUNT)];
    let mut request = httparse::Request::new(&mut []);
    // Only the bytes the limit allows are parsed, so the outcome never depends on what follows
    // them (a pipelined request or more of an oversized head).
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        window,
        slots,
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial_request(buf, limits),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::new(
                Kind::HeadTooLarge,
                format!(
                    "more than {} header lines; send fewer or raise limits.max_header_count",
                    limits.max_header_count
                ),
            ));
        }
        Err(httparse::Error::Version) => return Err(version_error(window)),
        Err(err) => {
            return Err(ProxyError::bad_request(format!(
                "malformed request head: {}",
                describe(err)
            )));
        }
    };
    if head_len > limits.max_head_bytes {
        return Err(over_limit(buf, limits));
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(ProxyError::bad_request("incomplete request line"));
    };
    head.method = Span::within(buf, method.as_bytes());
    head.target = Span::within(buf, target.as_bytes());
    head.minor_version = version;
    head.head_len = head_len;
    classify_target(buf, head)?;
    read_request_fields(buf, request.headers, head)?;
    Ok(true)
}

/// Returns whether the start of a request head is already invalid, so that a client sending
/// garbage (TLS to a plain port, say) gets its 400 without waiting for an empty line that may
/// never come. Header lines are not checked here: the full parse does that.
pub fn is_invalid_request_start(buf: &[u8]) -> bool {
    let mut request = httparse::Request::new(&mut []);
    matches!(request.parse(buf), Err(err) if err != httparse::Error::TooManyHeaders)
}

fn partial_request(buf: &[u8], limits: HeadLimits) -> Result<bool, ProxyError> {
    if buf.len() < limits.max_head_bytes {
        return Ok(false);
    }
    Err(over_limit(buf, limits))
}

/// Chooses 414 or 431 for a head over the limit from its first `max_head_bytes` bytes only, so
/// the error is the same whether the head arrived whole or in pieces. `buf` must hold at least
/// that many bytes.
fn over_limit(buf: &[u8], limits: HeadLimits) -> ProxyError {
    if !buf[..limits.max_head_bytes].contains(&b'\n') {
        return ProxyError::new(
            Kind::UriTooLong,
            format!(
                "request line longer than {} bytes; shorten the target or raise limits.max_request_head_bytes",
                limits.max_head_bytes
            ),
        );
    }
    head_too_large(limits)
}

/// Chooses the error for a request line whose version httparse rejected. A version field that
/// starts like an HTTP-version ("HTTP/" and a digit, RFC 9112 section 2.3) names a version
/// ringway does not speak, so it gets 505. Anything else, such as a space inside the target or
/// "http/1.1" in lower case, makes the request line invalid, which gets 400 (RFC 9112 section 3).
/// Only the first six bytes of the field decide, because httparse may stop at any byte after
/// them.
fn version_error(buf: &[u8]) -> ProxyError {
    let line_end = buf
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(buf.len());
    let version = buf[..line_end]
        .split(|&b| b == b' ')
        .nth(2)
        .unwrap_or_default();
    if version.len() > 5 && version.starts_with(b"HTTP/") && version[5].is_ascii_digit() {
        ProxyError::new(
            Kind::VersionNotSupported,
            format!(
                "unsupported version {}; only HTTP/1.0 and HTTP/1.1 are supported",
                shown(version)
            ),
        )
    } else {
        ProxyError::bad_request(
            "malformed request line: send the method, the target and the HTTP version separated by single spaces",
        )
    }
}

fn head_too_large(limits: HeadLimits) -> ProxyError {
    ProxyError::new(
        Kind::HeadTooLarge,
        format!(
            "request head larger than {} bytes; send smaller headers or raise limits.max_request_head_bytes",
            limits.max_head_bytes
        ),
    )
}

fn describe(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => {
            "invalid header line: whitespace before the colon, a folded (obs-fold) continuation line, or a forbidden byte in the name"
        }
        httparse::Error::HeaderValue => {
            "invalid byte in a header value (CR, LF and NUL are not allowed)"
        }
        httparse::Error::NewLine => "invalid line ending (obsolete line folding is not allowed)",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::TooManyHeaders => "too many header lines",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

fn classify_target(buf: &[u8], head: &mut RequestHead) -> Result<(), ProxyError> {
    let target = head.target.of(buf);
    let method = head.method.of(buf);
    if method == b"CONNECT" {
        return Err(ProxyError::new(
            Kind::MethodNotImplemented,
            "CONNECT is not supported by this reverse proxy",
        ));
    }
    if target.first() == Some(&b'/') {
        head.target_form = Some(TargetForm::Origin);
        head.target_authority = None;
        let path_len = target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(target.len());
        head.path = Span::within(buf, &target[..path_len]);
        return Ok(());
    }
    if target == b"*" {
        if method != b"OPTIONS" {
            return Err(ProxyError::bad_request(
                "the asterisk target \"*\" is only valid with OPTIONS",
            ));
        }
        head.target_form = Some(TargetForm::Asterisk);
        head.target_authority = None;
        head.path = head.target;
        return Ok(());
    }
    let rest = strip_scheme(target).ok_or_else(|| {
        ProxyError::bad_request(format!(
            "invalid request target {}: use a path starting with \"/\" or an absolute http URL",
            shown(target)
        ))
    })?;
    let authority_len = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    if authority.is_empty() || authority.contains(&b'@') || !is_valid_host(authority) {
        return Err(ProxyError::bad_request(format!(
            "invalid authority in request target {}",
            shown(target)
        )));
    }
    let after = &rest[authority_len..];
    let path_len = after.iter().position(|&b| b == b'?').unwrap_or(after.len());
    head.target_form = Some(TargetForm::Absolute);
    head.target_authority = Some(Span::within(buf, authority));
    // An empty path here means "/" (RFC 9110 section 4.2.3), but a span can only point into
    // `buf`, so the path stays empty and route matching reads it as "/".
    head.path = Span::within(buf, &after[..path_len]);
    Ok(())
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// Checks a Host value or authority: reg-name, IPv4 or bracketed IPv6, optional port
/// (RFC 9110 section 7.2, RFC 3986 section 3.2.2), without userinfo.
pub fn is_valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return false;
    }
    let (host, port) = if value[0] == b'[' {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match &value[close + 1..] {
            [] => (&value[..=close], None),
            [b':', port @ ..] => (&value[..=close], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    let host_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host.iter().all(|&b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'_'
                            | b'~'
                            | b'%'
                            | b'!'
                            | b'$'
                            | b'&'
                            | b'\''
                            | b'('
                            | b')'
                            | b'*'
                            | b'+'
                            | b','
                            | b';'
                            | b'='
                    )
            }));
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    host_ok && port_ok
}

fn role_of(name: &[u8]) -> FieldRole {
    // Dispatching on the length first compares each name with at most two known names.
    let named = |known: &[u8]| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if named(b"te") => FieldRole::HopByHop,
        3 if named(b"via") => FieldRole::Via,
        4 if named(b"host") => FieldRole::Host,
        7 if named(b"trailer") || named(b"upgrade") => FieldRole::HopByHop,
        9 if named(b"forwarded") => FieldRole::Forwarded,
        10 if named(b"connection") || named(b"keep-alive") => FieldRole::HopByHop,
        // http2-settings only means something with an h2c upgrade, which is never forwarded.
        14 if named(b"content-length") || named(b"http2-settings") => FieldRole::HopByHop,
        15 if named(b"x-forwarded-for") => FieldRole::ForwardedFor,
        16 if named(b"proxy-connection") => FieldRole::HopByHop,
        16 if named(b"x-forwarded-host") => FieldRole::ForwardedReplaced,
        17 if named(b"transfer-encoding") => FieldRole::HopByHop,
        17 if named(b"x-forwarded-proto") => FieldRole::ForwardedReplaced,
        _ => FieldRole::EndToEnd,
    }
}

/// Framing headers seen in one head, before the rules that combine them are applied.
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    content_length_lines: usize,
    /// Transfer codings in order, across every Transfer-Encoding line.
    chunked_count: usize,
    last_is_chunked: bool,
    codings: usize,
    unknown_coding: Option<Span>,
    transfer_encoding_lines: usize,
}

impl Framing {
    fn add_content_length(&mut self, value: &[u8]) -> Result<(), String> {
        self.content_length_lines += 1;
        // A list of identical values is one length (RFC 9110 section 8.6); anything else is fatal.
        for element in value.split(|&b| b == b',') {
            let element = trim_ows(element);
            let length = parse_content_length(element).ok_or_else(|| {
                format!(
                    "invalid Content-Length {}: send one decimal number",
                    shown(value)
                )
            })?;
            match self.content_length {
                Some(previous) if previous != length => {
                    return Err(format!(
                        "conflicting Content-Length values {previous} and {length}"
                    ));
                }
                _ => self.content_length = Some(length),
            }
        }
        Ok(())
    }

    fn add_transfer_encoding(&mut self, buf: &[u8], value: Span) {
        self.transfer_encoding_lines += 1;
        let bytes = value.of(buf);
        for element in bytes.split(|&b| b == b',') {
            let coding = trim_ows(element);
            if coding.is_empty() {
                continue;
            }
            self.codings += 1;
            self.last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.last_is_chunked {
                self.chunked_count += 1;
            } else if self.unknown_coding.is_none() {
                self.unknown_coding = Some(Span::within(buf, coding));
            }
        }
    }

    /// Applies RFC 9112 section 6.1 and 6.3 to a request: a body is chunked, has a length, or is
    /// absent. Every ambiguity is an error, because an upstream that resolves it differently
    /// would see a different request boundary (request smuggling).
    fn request_body(&self, buf: &[u8], minor_version: u8) -> Result<BodyKind, ProxyError> {
        if self.transfer_encoding_lines == 0 {
            // Content-Length: 0 stays a length, so a POST with an empty body still carries it.
            return Ok(self.content_length.map_or(BodyKind::None, BodyKind::Length));
        }
        if minor_version == 0 {
            return Err(ProxyError::bad_request(
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            ));
        }
        if self.content_length_lines > 0 {
            return Err(ProxyError::bad_request(
                "Content-Length and Transfer-Encoding together; send only one",
            ));
        }
        if self.codings == 0 {
            return Err(ProxyError::bad_request("empty Transfer-Encoding"));
        }
        if self.chunked_count > 1 {
            return Err(ProxyError::bad_request(
                "chunked is applied more than once in Transfer-Encoding",
            ));
        }
        if !self.last_is_chunked {
            return Err(ProxyError::bad_request(
                "the last transfer coding of a request must be chunked",
            ));
        }
        if let Some(coding) = self.unknown_coding {
            return Err(ProxyError::new(
                Kind::UnsupportedTransferCoding,
                format!(
                    "transfer coding {} is not supported; use chunked only",
                    shown(coding.of(buf))
                ),
            ));
        }
        Ok(BodyKind::Chunked)
    }
}

/// Parses a Content-Length element: one or more ASCII digits that fit in a u64 (RFC 9110 section
/// 8.6). No sign, no whitespace, no hex.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut length: u64 = 0;
    for &byte in value {
        if !byte.is_ascii_digit() {
            return None;
        }
        length = length
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    Some(length)
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// Reads Connection tokens: returns (close, keep-alive) and collects other names.
fn read_connection(buf: &[u8], value: Span, tokens: &mut Vec<Span>) -> (bool, bool) {
    let (mut close, mut keep_alive) = (false, false);
    for element in value.of(buf).split(|&b| b == b',') {
        let token = trim_ows(element);
        if token.is_empty() {
            continue;
        }
        if token.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            keep_alive = true;
        } else {
            tokens.push(Span::within(buf, token));
        }
    }
    (close, keep_alive)
}

fn read_request_fields(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    head: &mut RequestHead,
) -> Result<(), ProxyError> {
    head.fields.clear();
    head.connection_tokens.clear();
    head.host = None;
    head.expect_continue = false;
    head.upgrade = None;
    let mut framing = Framing::default();
    let (mut close, mut keep_alive) = (false, false);
    let mut host_lines = 0;
    let mut upgrade = None;
    for header in headers {
        let name = Span::within(buf, header.name.as_bytes());
        let value = Span::within(buf, header.value);
        let role = role_of(header.name.as_bytes());
        head.fields.push(Field { name, value, role });
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            framing
                .add_content_length(header.value)
                .map_err(ProxyError::bad_request)?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            framing.add_transfer_encoding(buf, value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            let (c, k) = read_connection(buf, value, &mut head.connection_tokens);
            close |= c;
            keep_alive |= k;
        } else if role == FieldRole::Host {
            host_lines += 1;
            head.host = Some(Span::within(buf, trim_ows(header.value)));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            // Several Upgrade lines would have to be combined; offering none is the safe reading.
            upgrade = match upgrade {
                None => Some(Span::within(buf, trim_ows(header.value))),
                Some(_) => Some(Span::default()),
            };
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !trim_ows(header.value).eq_ignore_ascii_case(b"100-continue") {
                return Err(ProxyError::new(
                    Kind::ExpectationFailed,
                    format!(
                        "unsupported Expect value {}; only 100-continue is supported",
                        shown(header.value)
                    ),
                ));
            }
            head.expect_continue = head.minor_version >= 1;
        }
    }
    // A server must reject a request without exactly one valid Host (RFC 9112 section 3.2).
    if host_lines > 1 {
        return Err(ProxyError::bad_request("more than one Host header"));
    }
    match head.host {
        None if head.minor_version >= 1 => {
            return Err(ProxyError::bad_request("missing Host header"));
        }
        Some(host) if !is_valid_host(host.of(buf)) => {
            return Err(ProxyError::bad_request(format!(
                "invalid Host header {}",
                shown(host.of(buf))
            )));
        }
        _ => {}
    }
    head.body = Some(framing.request_body(buf, head.minor_version)?);
    head.keep_alive = if head.minor_version >= 1 {
        !close
    } else {
        keep_alive && !close
    };
    head.upgrade = upgrade.filter(|value| is_tunnel_upgrade(buf, head, *value));
    Ok(())
}

/// Returns whether a request's Upgrade `value` is honoured: the request is HTTP/1.1 (a server
/// must ignore Upgrade from HTTP/1.0, RFC 9110 section 7.8), Connection lists `upgrade`, it has
/// no body (the switch happens right after the head, so a body would be mistaken for the new
/// protocol), and no offered protocol is h2c, which ringway does not speak to clients.
fn is_tunnel_upgrade(buf: &[u8], head: &RequestHead, value: Span) -> bool {
    let listed = head
        .connection_tokens
        .iter()
        .any(|token| token.of(buf).eq_ignore_ascii_case(b"upgrade"));
    let bodiless = matches!(head.body, Some(BodyKind::None | BodyKind::Length(0)));
    let offers_h2c = value
        .of(buf)
        .split(|&b| b == b',')
        .any(|protocol| trim_ows(protocol).eq_ignore_ascii_case(b"h2c"));
    head.minor_version >= 1 && listed && bodiless && !value.is_empty() && !offers_h2c
}

/// Parses a response head from the start of `buf`, for a request whose method was HEAD or not.
///
/// Returns `Ok(false)` when more bytes are needed and the limit allows them. Interim (1xx)
/// responses parse like any other; the caller forwards them and reads on.
pub fn parse_response(
    buf: &[u8],
    limits: HeadLimits,
    request_was_head: bool,
    head: &mut ResponseHead,
) -> Result<bool, ProxyError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADER_COUNT];
    let slots = &mut slots[..limits.max_header_count.min(MAX_HEADER_COUNT)];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        slots,
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < limits.max_head_bytes => return Ok(false),
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return Err(ProxyError::invalid_response(format!(
                "response head over {} bytes or {} header lines; raise limits.max_response_head_bytes or limits.max_header_count",
                limits.max_head_bytes, limits.max_header_count
            )));
        }
        Err(err) => {
            return Err(ProxyError::invalid_response(format!(
                "malformed response head: {}",
                describe(err)
            )));
        }
    };
    if head_len > limits.max_head_bytes {
        return Err(ProxyError::invalid_response(format!(
            "response head over {} bytes; raise limits.max_response_head_bytes",
            limits.max_head_bytes
        )));
    }
    let (Some(version), Some(status)) = (response.version, response.code) else {
        return Err(ProxyError::invalid_response("incomplete status line"));
    };
    if !(100..=599).contains(&status) {
        return Err(ProxyError::invalid_response(format!(
            "invalid status code {status}"
        )));
    }
    head.status = status;
    head.minor_version = version;
    // httparse may return an empty reason that points outside `buf`, so only a non-empty
    // reason becomes a span.
    head.reason = match response.reason {
        Some(reason) if !reason.is_empty() => Span::within(buf, reason.as_bytes()),
        _ => Span::default(),
    };
    head.head_len = head_len;
    read_response_fields(buf, response.headers, request_was_head, head)?;
    Ok(true)
}

fn read_response_fields(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    request_was_head: bool,
    head: &mut ResponseHead,
) -> Result<(), ProxyError> {
    head.fields.clear();
    head.connection_tokens.clear();
    head.has_date = false;
    head.upgrade = None;
    let mut framing = Framing::default();
    let (mut close, mut keep_alive) = (false, false);
    for header in headers {
        let name = Span::within(buf, header.name.as_bytes());
        let value = Span::within(buf, header.value);
        let role = match role_of(header.name.as_bytes()) {
            // Host and the forwarding headers mean nothing special in a response.
            FieldRole::Host
            | FieldRole::ForwardedFor
            | FieldRole::Forwarded
            | FieldRole::ForwardedReplaced => {
                FieldRole::EndToEnd
            }
            role => role,
        };
        head.fields.push(Field { name, value, role });
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            framing
                .add_content_length(header.value)
                .map_err(ProxyError::invalid_response)?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            framing.add_transfer_encoding(buf, value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            let (c, k) = read_connection(buf, value, &mut head.connection_tokens);
            close |= c;
            keep_alive |= k;
        } else if name.eq_ignore_ascii_case(b"date") {
            head.has_date = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") && head.upgrade.is_none() {
            head.upgrade = Some(Span::within(buf, trim_ows(header.value)));
        }
    }
    head.content_length = framing.content_length;
    head.body = Some(response_body(buf, head.status, request_was_head, &framing)?);
    let persistent = if head.minor_version >= 1 {
        !close
    } else {
        keep_alive && !close
    };
    // RFC 9112 section 6.1: the connection closes after an HTTP/1.0 message with
    // Transfer-Encoding, because its framing may be faulty and leftover bytes would be read as
    // the next response.
    let faulty_framing = head.minor_version == 0 && framing.transfer_encoding_lines > 0;
    head.keep_alive = persistent && !faulty_framing && head.body != Some(BodyKind::CloseDelimited);
    Ok(())
}

/// Applies RFC 9112 section 6.3 to a response. Bodiless responses end at the head whatever their
/// framing headers state. An ambiguous framing is an error rather than a guess, because relaying a
/// guess could splice one response into the next.
fn response_body(
    buf: &[u8],
    status: u16,
    request_was_head: bool,
    framing: &Framing,
) -> Result<BodyKind, ProxyError> {
    if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyKind::None);
    }
    if framing.transfer_encoding_lines > 0 {
        if framing.content_length_lines > 0 {
            return Err(ProxyError::invalid_response(
                "Content-Length and Transfer-Encoding together",
            ));
        }
        if framing.chunked_count > 1 {
            return Err(ProxyError::invalid_response(
                "chunked is applied more than once",
            ));
        }
        if let Some(coding) = framing.unknown_coding {
            return Err(ProxyError::invalid_response(format!(
                "unsupported transfer coding {}",
                shown(coding.of(buf))
            )));
        }
        if framing.codings == 0 {
            return Err(ProxyError::invalid_response("empty Transfer-Encoding"));
        }
        return Ok(BodyKind::Chunked);
    }
    Ok(framing
        .content_length
        .map_or(BodyKind::CloseDelimited, BodyKind::Length))
}

#[cfg(test)]
mod tests;
