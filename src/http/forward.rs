//! Serialization of the heads ringway sends: the request to the upstream, interim and final
//! responses to the client, and ringway's own error responses.
//!
//! Headers are copied in their received order, case and repetition, except the hop-by-hop and
//! framing headers, which ringway always writes itself (RFC 9110 section 7.6.1).

use std::net::IpAddr;

use crate::error::{Kind, ProxyError};
use crate::http::body::BodyKind;
use crate::http::date::with_date;
use crate::http::head::{Field, FieldRole, RequestHead, ResponseHead, Span};
use crate::routing::headers::{FieldAction, HeaderRules, Vars};

/// The pseudonym ringway adds to Via (RFC 9110 section 7.6.3).
pub const VIA_PSEUDONYM: &[u8] = b"ringway";

/// Appends bytes to a head buffer without ever growing it past `limit`, so that a head written
/// into a pooled buffer can never reallocate it.
pub struct HeadWriter<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
    overflow: bool,
}

impl<'a> HeadWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>, limit: usize) -> HeadWriter<'a> {
        HeadWriter {
            out,
            limit,
            overflow: false,
        }
    }

    pub fn put(&mut self, bytes: &[u8]) {
        if self.out.len() + bytes.len() > self.limit {
            self.overflow = true;
        } else {
            self.out.extend_from_slice(bytes);
        }
    }

    fn put_decimal(&mut self, value: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.put(&digits[at..]);
    }

    fn put_field(&mut self, name: &[u8], value: &[u8]) {
        self.put(name);
        self.put(b": ");
        self.put(value);
        self.put(b"\r\n");
    }

    /// Returns whether everything fit under the limit.
    pub fn finish(self) -> bool {
        !self.overflow
    }
}

fn named_in_connection(buf: &[u8], name: Span, tokens: &[Span]) -> bool {
    let name = name.of(buf);
    tokens
        .iter()
        .any(|token| token.of(buf).eq_ignore_ascii_case(name))
}

/// Writes one combined line for a list-valued header (X-Forwarded-For, Via): the received values
/// in order, then ringway's entry.
fn put_appended_list(
    writer: &mut HeadWriter<'_>,
    name: &[u8],
    buf: &[u8],
    fields: &[Field],
    role: FieldRole,
    entry: &[&[u8]],
) {
    writer.put(name);
    writer.put(b": ");
    for field in fields.iter().filter(|field| field.role == role) {
        let value = field.value.of(buf);
        if !value.is_empty() {
            writer.put(value);
            writer.put(b", ");
        }
    }
    for part in entry {
        writer.put(part);
    }
    writer.put(b"\r\n");
}

/// Bytes of the longest IP address text: an IPv6 address with an embedded IPv4 address is at
/// most 45 characters.
const MAX_IP_TEXT_BYTES: usize = 48;

/// A client's IP address together with its text form. A connection formats its address once,
/// because going through `core::fmt` per request cost about 1,000 instructions each time
/// (measured with scripts/callgrind).
#[derive(Clone, Copy)]
pub struct ClientIp {
    ip: IpAddr,
    text: [u8; MAX_IP_TEXT_BYTES],
    len: usize,
}

impl ClientIp {
    /// Formats `ip` as text.
    pub fn new(ip: IpAddr) -> Self {
        use std::io::Write;
        let mut text = [0u8; MAX_IP_TEXT_BYTES];
        let mut cursor = std::io::Cursor::new(&mut text[..]);
        // The text is at most 45 bytes, so this cannot fail.
        let _ = write!(cursor, "{ip}");
        let len = cursor.position() as usize;
        Self { ip, text, len }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Returns the address as text, as `Display` writes it.
    pub fn text(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

/// The request details `write_request_head` needs besides the parsed head.
pub struct RequestContext<'a> {
    pub client_ip: &'a ClientIp,
    /// Used as Host when an HTTP/1.0 client sent none.
    pub upstream_authority: &'a str,
    /// The target to send in place of the received one, after path normalization or a
    /// route's rewrite.
    pub target: Option<&'a [u8]>,
    /// The route's rules for request headers, and the values of their placeholders.
    pub rules: Option<(&'a HeaderRules, Vars<'a>)>,
    /// The request id header and its value. A received field of that name is replaced.
    pub request_id: Option<(&'a [u8], &'a [u8])>,
}

/// The fields ringway adds to or changes in a final response head besides the framing.
#[derive(Clone, Copy, Default)]
pub struct ResponseExtras<'a> {
    /// The route's rules for response headers, and the values of their placeholders.
    pub rules: Option<(&'a HeaderRules, Vars<'a>)>,
    /// The request id header and its value. A received field of that name is replaced.
    pub request_id: Option<(&'a [u8], &'a [u8])>,
    /// A sticky-session cookie to set: name, value and Max-Age in seconds.
    pub set_cookie: Option<(&'a [u8], &'a [u8], u64)>,
}

/// Copies one received end-to-end field under the header rules: as received, with its value
/// rewritten, or not at all. A field named `replaced_name` is left out, because the caller
/// writes its own.
fn put_ruled_field(
    writer: &mut HeadWriter<'_>,
    name: &[u8],
    value: &[u8],
    rules: Option<&HeaderRules>,
    replaced_name: Option<&[u8]>,
) {
    if replaced_name.is_some_and(|replaced| replaced.eq_ignore_ascii_case(name)) {
        return;
    }
    match rules.map_or(FieldAction::Keep, |rules| rules.action(name)) {
        FieldAction::Keep => writer.put_field(name, value),
        FieldAction::Drop => {}
        FieldAction::Replace(rule) => {
            writer.put(name);
            writer.put(b": ");
            rule.write_value_replaced(value, writer);
            writer.put(b"\r\n");
        }
    }
}

/// Writes a received field line as `put_ruled_field` does, but collects lines that go out
/// unchanged in `run`, so that a run of them is copied in one piece.
fn put_received_field(
    writer: &mut HeadWriter<'_>,
    run: &mut UnchangedLines,
    buf: &[u8],
    field: &Field,
    rules: Option<&HeaderRules>,
    replaced_name: Option<&[u8]>,
) {
    let name = field.name.of(buf);
    let keep = !replaced_name.is_some_and(|replaced| replaced.eq_ignore_ascii_case(name))
        && rules.is_none_or(|rules| matches!(rules.action(name), FieldAction::Keep));
    if !(keep && run.push(writer, buf, field)) {
        run.flush(writer, buf);
        put_ruled_field(writer, name, field.value.of(buf), rules, replaced_name);
    }
}

/// Consecutive field lines of a received head that are forwarded byte for byte, as a range of
/// that head. Copying the range once costs much less than writing each line in four pieces.
#[derive(Default)]
struct UnchangedLines {
    start: usize,
    end: usize,
}

impl UnchangedLines {
    /// Adds the line of `field` when it is written exactly as ringway would write it (`name`,
    /// colon, one space, `value`, CRLF). Returns false for any other line, which the caller
    /// writes itself after `flush`.
    fn push(&mut self, writer: &mut HeadWriter<'_>, buf: &[u8], field: &Field) -> bool {
        let name_end = field.name.end as usize;
        let value_end = field.value.end as usize;
        let canonical = field.value.start as usize == name_end + 2
            && buf.get(name_end..name_end + 2) == Some(b": ")
            && buf.get(value_end..value_end + 2) == Some(b"\r\n");
        if !canonical {
            return false;
        }
        let start = field.name.start as usize;
        if start != self.end {
            self.flush(writer, buf);
            self.start = start;
        }
        self.end = value_end + 2;
        true
    }

    /// Writes the collected lines.
    fn flush(&mut self, writer: &mut HeadWriter<'_>, buf: &[u8]) {
        if self.end > self.start {
            writer.put(&buf[self.start..self.end]);
        }
        self.start = 0;
        self.end = 0;
    }
}

/// Writes the fields that header rules add and the request id line.
fn put_added_fields(
    writer: &mut HeadWriter<'_>,
    rules: Option<(&HeaderRules, Vars<'_>)>,
    request_id: Option<(&[u8], &[u8])>,
) {
    if let Some((rules, vars)) = rules {
        // A skipped field had a client-controlled value with a byte not allowed in a field;
        // the request goes on without it, as if the placeholder were unset.
        if let Err(skipped) = rules.write_added(&vars, writer) {
            tracing::debug!("{skipped}");
        }
    }
    if let Some((name, value)) = request_id.filter(|(_, value)| !value.is_empty()) {
        writer.put_field(name, value);
    }
}

/// Writes the request head for the upstream into `out`: an HTTP/1.1 request line with the target
/// bytes exactly as received, the end-to-end headers in order, Host, the forwarding headers,
/// and ringway's own framing header for `head.body`.
pub fn write_request_head(
    out: &mut Vec<u8>,
    limit: usize,
    buf: &[u8],
    head: &RequestHead,
    context: &RequestContext<'_>,
) -> Result<(), ProxyError> {
    let mut writer = HeadWriter::new(out, limit);
    writer.put(head.method.of(buf));
    writer.put(b" ");
    writer.put(context.target.unwrap_or(head.target.of(buf)));
    writer.put(b" HTTP/1.1\r\n");
    let rules = context.rules.map(|(rules, _)| rules);
    let id_name = context.request_id.map(|(name, _)| name);
    let mut saw_forwarded_for = false;
    let mut saw_forwarded = false;
    let mut saw_via = false;
    let mut run = UnchangedLines::default();
    for field in &head.fields {
        match field.role {
            FieldRole::HopByHop | FieldRole::ForwardedReplaced => {}
            FieldRole::ForwardedFor => saw_forwarded_for = true,
            FieldRole::Forwarded => saw_forwarded = true,
            FieldRole::Via => saw_via = true,
            // An absolute-form target's authority replaces Host (RFC 9112 section 3.2.2).
            FieldRole::Host if head.target_authority.is_some() => {}
            // Host stays even when Connection names it, because every HTTP/1.1 request carries
            // exactly one (RFC 9112 section 3.2). A route's rules may still replace it.
            FieldRole::Host => put_received_field(&mut writer, &mut run, buf, field, rules, None),
            FieldRole::EndToEnd => {
                if !named_in_connection(buf, field.name, &head.connection_tokens) {
                    put_received_field(&mut writer, &mut run, buf, field, rules, id_name);
                }
            }
        }
    }
    run.flush(&mut writer, buf);
    put_added_fields(&mut writer, context.rules, context.request_id);
    // A remove rule on Host sends the upstream's own authority, as nginx's default
    // `proxy_set_header Host $proxy_host` does; a set rule wrote its Host above.
    let host_rule = rules.filter(|rules| matches!(rules.action(b"host"), FieldAction::Drop));
    match (head.target_authority, head.host, host_rule) {
        (_, _, Some(rules)) if rules.writes(b"host") => {}
        (_, _, Some(_)) | (None, None, None) => {
            writer.put_field(b"Host", context.upstream_authority.as_bytes())
        }
        (Some(authority), _, None) => {
            put_ruled_field(&mut writer, b"Host", authority.of(buf), rules, None)
        }
        (None, Some(_), None) => {}
    }
    let ip = context.client_ip.text();
    if saw_forwarded_for {
        put_appended_list(
            &mut writer,
            b"X-Forwarded-For",
            buf,
            &head.fields,
            FieldRole::ForwardedFor,
            &[ip],
        );
    } else {
        writer.put_field(b"X-Forwarded-For", ip);
    }
    // A client-sent Forwarded gets ringway's element appended, so the upstream can trust the
    // last element. Without one, X-Forwarded-For carries the same facts and Forwarded is left
    // out to keep heads small, as nginx and Envoy do by default.
    if saw_forwarded {
        let ipv6 = context.client_ip.ip().is_ipv6();
        let (open, close): (&[u8], &[u8]) = if ipv6 { (b"\"[", b"]\"") } else { (b"", b"") };
        let mut element: [&[u8]; 8] = [b"for=", open, ip, close, b";proto=http", b"", b"", b""];
        if let Some(authority) = head.authority(buf) {
            // Host validation admits no quote or backslash, so quoting needs no escapes.
            element[5] = b";host=\"";
            element[6] = authority;
            element[7] = b"\"";
        }
        put_appended_list(
            &mut writer,
            b"Forwarded",
            buf,
            &head.fields,
            FieldRole::Forwarded,
            &element,
        );
    }
    writer.put_field(b"X-Forwarded-Proto", b"http");
    if let Some(authority) = head.authority(buf) {
        writer.put_field(b"X-Forwarded-Host", authority);
    }
    let protocol: &[u8] = if head.minor_version == 0 {
        b"1.0 "
    } else {
        b"1.1 "
    };
    if saw_via {
        put_appended_list(
            &mut writer,
            b"Via",
            buf,
            &head.fields,
            FieldRole::Via,
            &[protocol, VIA_PSEUDONYM],
        );
    } else {
        put_appended_list(
            &mut writer,
            b"Via",
            buf,
            &[],
            FieldRole::Via,
            &[protocol, VIA_PSEUDONYM],
        );
    }
    match head.body {
        Some(BodyKind::Length(length)) => {
            writer.put(b"Content-Length: ");
            writer.put_decimal(length);
            writer.put(b"\r\n");
        }
        Some(BodyKind::Chunked) => writer.put(b"Transfer-Encoding: chunked\r\n"),
        Some(BodyKind::None | BodyKind::CloseDelimited) | None => {}
    }
    // Upgrade and Connection are hop-by-hop, so an honoured upgrade offer is written anew for
    // this hop rather than copied.
    if let Some(protocols) = head.upgrade {
        writer.put_field(b"Upgrade", protocols.of(buf));
        writer.put(b"Connection: upgrade\r\n");
    }
    writer.put(b"\r\n");
    if writer.finish() {
        Ok(())
    } else {
        Err(ProxyError::new(
            Kind::HeadTooLarge,
            "request head too large once forwarding headers are added; send smaller headers or raise buffers.size_bytes",
        ))
    }
}

/// The framing ringway uses for a response body toward the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body follows (HEAD, 1xx, 204, 304, or an empty body).
    None,
    /// Content-Length as received.
    Length(u64),
    /// Re-encoded as chunked (an HTTP/1.1 client and a chunked or close-delimited upstream body).
    Chunked,
    /// Delimited by closing the connection (an HTTP/1.0 client without a known length).
    Close,
}

/// Writes the final response head for the client into `out` (which it clears first).
///
/// `content_length_header` is the length to announce on a bodiless response that had one (HEAD
/// and 304 keep it, because it describes the representation, RFC 9110 section 8.6).
pub fn write_response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    framing: ClientFraming,
    close: bool,
    client_minor_version: u8,
    extras: &ResponseExtras<'_>,
) {
    out.clear();
    let mut writer = HeadWriter::new(out, usize::MAX);
    write_status_and_fields(&mut writer, buf, head, Some(extras));
    if let Some((name, value, max_age)) = extras.set_cookie {
        writer.put(b"Set-Cookie: ");
        writer.put(name);
        writer.put(b"=");
        writer.put(value);
        writer.put(b"; Path=/; HttpOnly; Max-Age=");
        writer.put_decimal(max_age);
        writer.put(b"\r\n");
    }
    match framing {
        ClientFraming::Length(length) => {
            writer.put(b"Content-Length: ");
            writer.put_decimal(length);
            writer.put(b"\r\n");
        }
        ClientFraming::Chunked => writer.put(b"Transfer-Encoding: chunked\r\n"),
        ClientFraming::None => {
            if let Some(length) = head
                .content_length
                .filter(|_| head.status != 204 && head.status >= 200)
            {
                writer.put(b"Content-Length: ");
                writer.put_decimal(length);
                writer.put(b"\r\n");
            }
        }
        ClientFraming::Close => {}
    }
    // A Date that Connection named was dropped with it, and a proxy must then add its own
    // (RFC 9110 section 6.6.1).
    let date_forwarded = head.has_date
        && !head
            .connection_tokens
            .iter()
            .any(|token| token.of(buf).eq_ignore_ascii_case(b"date"));
    if !date_forwarded {
        with_date(|date| writer.put_field(b"Date", date));
    }
    if head.status == 101 {
        // The switch is relayed as the upstream made it: the connection now carries the
        // protocol named in Upgrade, in both directions.
        if let Some(protocol) = head.upgrade {
            writer.put_field(b"Upgrade", protocol.of(buf));
        }
        writer.put(b"Connection: upgrade\r\n");
    } else if close {
        writer.put(b"Connection: close\r\n");
    } else if client_minor_version == 0 {
        writer.put(b"Connection: keep-alive\r\n");
    }
    writer.put(b"\r\n");
    writer.finish();
}

/// Writes an interim (1xx) response for the client into `out` (which it clears first).
pub fn write_interim_head(out: &mut Vec<u8>, buf: &[u8], head: &ResponseHead) {
    out.clear();
    let mut writer = HeadWriter::new(out, usize::MAX);
    write_status_and_fields(&mut writer, buf, head, None);
    writer.put(b"\r\n");
    writer.finish();
}

/// Writes the status line and the forwarded fields. `extras` applies a route's response
/// header rules and request id to a final response; interim responses pass `None`.
fn write_status_and_fields(
    writer: &mut HeadWriter<'_>,
    buf: &[u8],
    head: &ResponseHead,
    extras: Option<&ResponseExtras<'_>>,
) {
    let rules = extras.and_then(|extras| extras.rules.map(|(rules, _)| rules));
    let id_name = extras.and_then(|extras| extras.request_id.map(|(name, _)| name));
    writer.put(b"HTTP/1.1 ");
    writer.put_decimal(u64::from(head.status));
    writer.put(b" ");
    writer.put(head.reason.of(buf));
    writer.put(b"\r\n");
    let mut saw_via = false;
    let mut run = UnchangedLines::default();
    for field in &head.fields {
        match field.role {
            FieldRole::HopByHop => {}
            FieldRole::Via => saw_via = true,
            _ => {
                if !named_in_connection(buf, field.name, &head.connection_tokens) {
                    put_received_field(writer, &mut run, buf, field, rules, id_name);
                }
            }
        }
    }
    run.flush(writer, buf);
    if let Some(extras) = extras {
        put_added_fields(writer, extras.rules, extras.request_id);
    }
    let protocol: &[u8] = if head.minor_version == 0 {
        b"1.0 "
    } else {
        b"1.1 "
    };
    let fields: &[Field] = if saw_via { &head.fields } else { &[] };
    put_appended_list(
        writer,
        b"Via",
        buf,
        fields,
        FieldRole::Via,
        &[protocol, VIA_PSEUDONYM],
    );
}

/// Writes ringway's own response for an error into `out` (which it clears first): a one-line
/// plain-text body naming the problem, and `Connection: close` where the connection ends.
pub fn write_error_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    detail: &str,
    close: bool,
    head_only: bool,
    extra_fields: &[u8],
) {
    use std::io::Write;
    out.clear();
    let body_len = 3 + 1 + reason.len() + 2 + detail.len() + 1;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {body_len}\r\n"
    );
    with_date(|date| {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    });
    out.extend_from_slice(extra_fields);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        let _ = writeln!(out, "{status} {reason}: {detail}");
    }
}

#[cfg(test)]
mod tests;
