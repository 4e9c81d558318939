//! Invariants of ringway's HTTP parsers and serializers, checked on one input at a time.
//!
//! The stable fuzz tests (`tests/fuzz.rs`) include this file with `#[path]`, and the cargo-fuzz
//! targets (`fuzz/fuzz_targets`) use it through the `ringway_fuzz` library, so both check the
//! same properties. Each check returns `Err` with a description of the first violated invariant.
//! A panic inside ringway propagates to the caller, which reports it together with the input.

use std::net::IpAddr;

use ringway::error::{Kind, ProxyError};
use ringway::http::body::{
    BodyKind, CHUNK_TRAILER_CRLF, ChunkedDecoder, ChunkedError, ChunkedLimits, LAST_CHUNK,
    MAX_CHUNK_HEADER_BYTES, encode_chunk_header,
};
use ringway::http::forward::{
    ClientFraming, ClientIp, RequestContext, ResponseExtras, VIA_PSEUDONYM, write_interim_head,
    write_request_head, write_response_head,
};
use ringway::http::head::{
    FieldRole, HeadLimits, MAX_HEADER_COUNT, RequestHead, ResponseHead, Span, is_valid_host,
    parse_request, parse_response,
};

/// The upstream authority that `write_request_head` sends as Host when an HTTP/1.0 request has
/// neither a Host header nor an absolute-form target.
pub const UPSTREAM_AUTHORITY: &str = "backend.internal:8080";

/// Inputs up to this many bytes have every prefix parsed. Longer inputs get a sample of
/// prefixes (see `prefix_lengths`), because parsing every prefix costs time quadratic in the
/// input length, and a libFuzzer run with quadratic checks on 4 KiB inputs is too slow to
/// explore much.
pub const EXHAUSTIVE_PREFIX_MAX_BYTES: usize = 256;

/// Number of evenly spaced prefix lengths sampled from an input longer than
/// `EXHAUSTIVE_PREFIX_MAX_BYTES`, besides those at line ends and at the head limit.
const SAMPLED_PREFIX_COUNT: usize = 64;

/// Maximum number of line ends of a long input whose neighbouring prefix lengths are checked.
/// Line ends are where httparse switches state, so they find the most prefix bugs per parse.
const SAMPLED_LINE_END_COUNT: usize = 128;

/// Byte that fills the part of the output buffer that exists before `write_request_head`
/// appends to it, so that a write over those bytes shows up.
const PREFILL_BYTE: u8 = 0xa5;

/// Bytes appended after a re-encoded chunked body. The decoder must stop before them, because
/// they belong to the next message.
const NEXT_MESSAGE: &[u8] = b"GET /next HTTP/1.1\r\n";

/// Length in bytes of an IMF-fixdate such as "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110
/// section 5.6.7), the only Date format ringway writes.
const IMF_FIXDATE_LEN: usize = 29;

/// Result of one parse, reduced to what the fuzz tests count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOutcome {
    /// The parser needs more bytes.
    Incomplete,
    /// The head was accepted with this body framing.
    Accepted(BodyKind),
    /// The head was rejected with this error kind.
    Rejected(Kind),
}

/// Result of decoding one chunked input, reduced to what the fuzz tests count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedOutcome {
    /// The input ended before the last chunk and the trailer section.
    Incomplete,
    /// The body was complete.
    Done,
    Rejected(ChunkedError),
}

/// Parameters of one request-head check.
#[derive(Debug, Clone, Copy)]
pub struct RequestParams {
    pub limits: HeadLimits,
    /// Limit in bytes passed to `write_request_head`, counting `prefill`.
    pub forward_limit: usize,
    /// Bytes already in the output buffer when `write_request_head` appends to it.
    pub prefill: usize,
    pub client_ip: IpAddr,
}

/// Parameters of one response-head check.
#[derive(Debug, Clone, Copy)]
pub struct ResponseParams {
    pub limits: HeadLimits,
    pub request_was_head: bool,
}

/// Parameters of one chunked-body check.
#[derive(Debug, Clone)]
pub struct ChunkedParams {
    pub limits: ChunkedLimits,
    /// Ends of the pieces the input is fed in, as offsets into the input. Offsets past the end
    /// are clamped, and the input's end is always added.
    pub piece_ends: Vec<usize>,
    /// Sizes in bytes of the output buffers that successive `decode` calls get, used in turn.
    /// Zero sizes are raised to one, because a decoder with no room for data cannot progress.
    pub out_lens: Vec<usize>,
    /// Chunk sizes in bytes used in turn to re-encode accepted data. Zero sizes are raised to
    /// one, because a chunk of size zero is the last chunk.
    pub rechunk_lens: Vec<usize>,
}

/// Checks `parse_request` and `write_request_head` on `input`.
///
/// The parse must not panic, and it must give the same result into `reused` (a head left over
/// from earlier parses) as into a fresh head. Prefixes of `input` must give consistent results,
/// because the proxy parses whatever part of the head has arrived. An accepted head must be
/// well formed, and the head written for the upstream must parse again to the same request.
pub fn check_request(
    input: &[u8],
    params: &RequestParams,
    reused: &mut RequestHead,
) -> Result<HeadOutcome, String> {
    let mut head = RequestHead::default();
    let result = parse_request(input, params.limits, &mut head);
    let reused_result = parse_request(input, params.limits, reused);
    compare_reused("parse_request", &result, &reused_result, &head, reused)?;
    check_request_prefixes(input, params.limits, &result, &head)?;

    match result {
        Ok(false) => Ok(HeadOutcome::Incomplete),
        Err(error) => Ok(HeadOutcome::Rejected(error.kind)),
        Ok(true) => {
            check_request_shape(input, params.limits, &head)?;
            let body = head.body.ok_or("accepted request has no body framing")?;
            let forwarded = check_forward_limit(input, params, &head)?;
            check_forwarded_request(input, params, &head, &forwarded)?;
            Ok(HeadOutcome::Accepted(body))
        }
    }
}

/// Checks `parse_response` and the response serializers on `input`.
///
/// The parse must not panic, must not depend on a reused head or on how the bytes arrived, and
/// an accepted head must be well formed. Every client-side framing that the proxy may choose
/// for it must serialize to a head that httparse and `parse_response` read back with the same
/// status, the same end-to-end fields and that framing.
pub fn check_response(
    input: &[u8],
    params: &ResponseParams,
    reused: &mut ResponseHead,
) -> Result<HeadOutcome, String> {
    let mut head = ResponseHead::default();
    let result = parse_response(input, params.limits, params.request_was_head, &mut head);
    let reused_result = parse_response(input, params.limits, params.request_was_head, reused);
    compare_reused("parse_response", &result, &reused_result, &head, reused)?;
    check_response_prefixes(input, params, &result, &head)?;

    match result {
        Ok(false) => Ok(HeadOutcome::Incomplete),
        Err(error) => Ok(HeadOutcome::Rejected(error.kind)),
        Ok(true) => {
            check_response_shape(input, params, &head)?;
            let body = head.body.ok_or("accepted response has no body framing")?;
            if head.status < 200 {
                let mut out = Vec::new();
                write_interim_head(&mut out, input, &head);
                check_serialized_response(input, params, &head, &out, None)?;
            } else {
                for client_minor_version in [0, 1] {
                    for close in [false, true] {
                        let framing = client_framing(body, client_minor_version);
                        let serialized = SerializedFinal {
                            framing,
                            close,
                            client_minor_version,
                        };
                        let mut out = Vec::new();
                        write_response_head(
                            &mut out,
                            input,
                            &head,
                            framing,
                            close,
                            client_minor_version,
                            &ResponseExtras::default(),
                        );
                        check_serialized_response(input, params, &head, &out, Some(serialized))?;
                    }
                }
            }
            Ok(HeadOutcome::Accepted(body))
        }
    }
}

/// Checks `ChunkedDecoder::decode` and `decode_in_place` on `input`.
///
/// Both must give the same result whole and split into the pieces and output sizes of
/// `params`: the same error, or the same data, consumed length and completion. Decoded data
/// re-encoded with `encode_chunk_header`, CRLF and `LAST_CHUNK` must decode to the same data.
pub fn check_chunked(input: &[u8], params: &ChunkedParams) -> Result<ChunkedOutcome, String> {
    let whole_end = [input.len()];
    let piece_ends = clamped_piece_ends(&params.piece_ends, input.len());
    let whole_out = [input.len().max(1)];
    let out_lens: Vec<usize> = params.out_lens.iter().map(|&len| len.max(1)).collect();
    let out_lens = if out_lens.is_empty() {
        vec![1]
    } else {
        out_lens
    };

    let reference = decode_copying(input, &whole_end, &whole_out, params.limits)?;
    let runs = [
        (
            "decode in pieces",
            decode_copying(input, &piece_ends, &out_lens, params.limits)?,
        ),
        (
            "decode_in_place whole",
            decode_in_place(input, &whole_end, params.limits)?,
        ),
        (
            "decode_in_place in pieces",
            decode_in_place(input, &piece_ends, params.limits)?,
        ),
    ];
    for (name, run) in &runs {
        let agrees = match (&reference, run) {
            (Err(expected), Err(actual)) => expected == actual,
            (Ok(expected), Ok(actual)) => expected == actual,
            _ => false,
        };
        if !agrees {
            return Err(format!(
                "{name} (pieces ending at {piece_ends:?}, output sizes {out_lens:?}) gives {}, but decode of the whole \
                 input gives {}",
                describe_decoded(run),
                describe_decoded(&reference)
            ));
        }
    }

    match reference {
        Err(error) => Ok(ChunkedOutcome::Rejected(error)),
        Ok(decoded) if !decoded.done => Ok(ChunkedOutcome::Incomplete),
        Ok(decoded) => {
            check_rechunked(&decoded.data, &params.rechunk_lens)?;
            Ok(ChunkedOutcome::Done)
        }
    }
}

/// Compares a parse into a fresh head with the same parse into a reused head. Only accepted
/// heads are compared field by field, because a rejected parse leaves the head unspecified.
fn compare_reused<H: std::fmt::Debug>(
    parser: &str,
    fresh: &Result<bool, ProxyError>,
    reused: &Result<bool, ProxyError>,
    fresh_head: &H,
    reused_head: &H,
) -> Result<(), String> {
    if !same_result(fresh, reused) {
        return Err(format!(
            "{parser} gives {} into a fresh head but {} into a reused head",
            describe_result(fresh),
            describe_result(reused)
        ));
    }
    if matches!(fresh, Ok(true)) {
        let fresh_text = format!("{fresh_head:?}");
        let reused_text = format!("{reused_head:?}");
        if fresh_text != reused_text {
            return Err(format!(
                "{parser} fills a reused head as {reused_text} but a fresh head as {fresh_text}"
            ));
        }
    }
    Ok(())
}

fn same_result(a: &Result<bool, ProxyError>, b: &Result<bool, ProxyError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.kind == b.kind && a.detail == b.detail,
        _ => false,
    }
}

fn describe_result(result: &Result<bool, ProxyError>) -> String {
    match result {
        Ok(true) => "Ok(true)".to_owned(),
        Ok(false) => "Ok(false)".to_owned(),
        Err(error) => format!("{:?} ({})", error.kind, error.detail),
    }
}

/// Returns `bytes` with control, quote, backslash and non-ASCII bytes escaped.
pub fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Returns the prefix lengths of `input` to parse, in increasing order and each shorter than
/// the input. The proxy never parses an empty buffer, so zero is left out.
///
/// A long input gets its first few lengths, the lengths around line ends and around
/// `max_head_bytes`, and evenly spaced lengths in between.
pub fn prefix_lengths(input: &[u8], max_head_bytes: usize) -> Vec<usize> {
    let len = input.len();
    if len <= EXHAUSTIVE_PREFIX_MAX_BYTES {
        return (1..len).collect();
    }
    let mut lengths: Vec<usize> = (1..SAMPLED_PREFIX_COUNT.min(len)).collect();

    let line_ends: Vec<usize> = input
        .iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == b'\n')
        .map(|(at, _)| at)
        .collect();
    let line_end_step = line_ends.len().div_ceil(SAMPLED_LINE_END_COUNT).max(1);
    for &at in line_ends.iter().step_by(line_end_step) {
        lengths.extend([at, at + 1, at + 2]);
    }

    lengths.extend([
        max_head_bytes.saturating_sub(1),
        max_head_bytes,
        max_head_bytes.saturating_add(1),
    ]);
    let stride = len.div_ceil(SAMPLED_PREFIX_COUNT).max(1);
    lengths.extend((stride..len).step_by(stride));

    lengths.retain(|&length| length > 0 && length < len);
    lengths.sort_unstable();
    lengths.dedup();
    lengths
}

/// Checks that each prefix of `input` is incomplete or gives the whole input's result: the
/// same error kind for a rejected input, and the same head once the prefix contains all of an
/// accepted head. Otherwise a client could get a different response depending on how its bytes
/// were split into reads.
fn check_request_prefixes(
    input: &[u8],
    limits: HeadLimits,
    whole: &Result<bool, ProxyError>,
    whole_head: &RequestHead,
) -> Result<(), String> {
    let mut head = RequestHead::default();
    let whole_text = format!("{whole_head:?}");
    for len in prefix_lengths(input, limits.max_head_bytes) {
        let result = parse_request(&input[..len], limits, &mut head);
        let consistent = match (&result, whole) {
            (Ok(false), Ok(true)) => len < whole_head.head_len,
            (Ok(false), _) => true,
            (Ok(true), Ok(true)) => len >= whole_head.head_len && format!("{head:?}") == whole_text,
            (Err(prefix_error), Err(whole_error)) => prefix_error.kind == whole_error.kind,
            _ => false,
        };
        if !consistent {
            return Err(format!(
                "parse_request gives {} for the first {len} bytes but {} for all {} bytes",
                describe_result(&result),
                describe_result(whole),
                input.len()
            ));
        }
    }
    Ok(())
}

/// Checks the prefixes of a response input, with the rules of `check_request_prefixes`.
fn check_response_prefixes(
    input: &[u8],
    params: &ResponseParams,
    whole: &Result<bool, ProxyError>,
    whole_head: &ResponseHead,
) -> Result<(), String> {
    let mut head = ResponseHead::default();
    let whole_text = format!("{whole_head:?}");
    for len in prefix_lengths(input, params.limits.max_head_bytes) {
        let result = parse_response(
            &input[..len],
            params.limits,
            params.request_was_head,
            &mut head,
        );
        let consistent = match (&result, whole) {
            (Ok(false), Ok(true)) => len < whole_head.head_len,
            (Ok(false), _) => true,
            (Ok(true), Ok(true)) => len >= whole_head.head_len && format!("{head:?}") == whole_text,
            (Err(prefix_error), Err(whole_error)) => prefix_error.kind == whole_error.kind,
            _ => false,
        };
        if !consistent {
            return Err(format!(
                "parse_response gives {} for the first {len} bytes but {} for all {} bytes",
                describe_result(&result),
                describe_result(whole),
                input.len()
            ));
        }
    }
    Ok(())
}

/// Checks the fields of an accepted request head against each other and against the input.
fn check_request_shape(input: &[u8], limits: HeadLimits, head: &RequestHead) -> Result<(), String> {
    check_head_bounds(input, limits, head.head_len, head.fields.len())?;
    let mut spans = vec![
        ("method", head.method),
        ("target", head.target),
        ("path", head.path),
    ];
    spans.extend(head.target_authority.map(|span| ("target authority", span)));
    spans.extend(head.host.map(|span| ("host", span)));
    spans.extend(
        head.fields
            .iter()
            .flat_map(|field| [("field name", field.name), ("field value", field.value)]),
    );
    spans.extend(
        head.connection_tokens
            .iter()
            .map(|&span| ("connection token", span)),
    );
    check_spans(&spans, head.head_len)?;

    if head.path.start < head.target.start || head.path.end > head.target.end {
        return Err(format!(
            "path {:?} is not inside target {:?}",
            head.path, head.target
        ));
    }
    if head.minor_version > 1 {
        return Err(format!("accepted HTTP/1.{}", head.minor_version));
    }
    // Methods are case-sensitive (RFC 9110 section 9.1), so "connect" is another method.
    if head.method(input) == b"CONNECT" {
        return Err("accepted CONNECT, which ringway does not implement".to_owned());
    }
    if matches!(head.body, Some(BodyKind::CloseDelimited)) {
        return Err("accepted a close-delimited request body (RFC 9112 section 6.3 allows it only for responses)".to_owned());
    }
    // A server must reject an HTTP/1.1 request without a valid Host (RFC 9112 section 3.2).
    if head.minor_version == 1 && head.host.is_none() {
        return Err("accepted an HTTP/1.1 request without Host".to_owned());
    }
    if let Some(authority) = head.authority(input)
        && !is_valid_host(authority)
    {
        return Err(format!(
            "accepted the invalid authority \"{}\"",
            escaped(authority)
        ));
    }
    let absolute = head.target_form == Some(ringway::http::head::TargetForm::Absolute);
    if head.target_form.is_none() || absolute != head.target_authority.is_some() {
        return Err(format!(
            "target form {:?} does not match target authority {:?}",
            head.target_form, head.target_authority
        ));
    }
    Ok(())
}

fn check_response_shape(
    input: &[u8],
    params: &ResponseParams,
    head: &ResponseHead,
) -> Result<(), String> {
    check_head_bounds(input, params.limits, head.head_len, head.fields.len())?;
    let mut spans = vec![("reason", head.reason)];
    spans.extend(
        head.fields
            .iter()
            .flat_map(|field| [("field name", field.name), ("field value", field.value)]),
    );
    spans.extend(
        head.connection_tokens
            .iter()
            .map(|&span| ("connection token", span)),
    );
    check_spans(&spans, head.head_len)?;

    if !(100..=599).contains(&head.status) {
        return Err(format!("accepted status {}", head.status));
    }
    if head.minor_version > 1 {
        return Err(format!("accepted HTTP/1.{}", head.minor_version));
    }
    // RFC 9112 section 6.3: these responses end at the head regardless of their framing fields,
    // and every other response has a body with some framing.
    let bodiless = is_bodiless(head.status, params.request_was_head);
    match head.body {
        Some(BodyKind::None) if !bodiless => {
            return Err(format!(
                "status {} without framing fields got no body instead of a close-delimited one",
                head.status
            ));
        }
        Some(body) if bodiless && body != BodyKind::None => {
            return Err(format!(
                "bodiless status {} (HEAD: {}) got body {body:?}",
                head.status, params.request_was_head
            ));
        }
        Some(BodyKind::Length(length)) if head.content_length != Some(length) => {
            return Err(format!(
                "body length {length} differs from content_length {:?}",
                head.content_length
            ));
        }
        Some(BodyKind::CloseDelimited) if head.keep_alive => {
            return Err(
                "a close-delimited body leaves the upstream connection reusable".to_owned(),
            );
        }
        _ => {}
    }
    Ok(())
}

fn is_bodiless(status: u16, request_was_head: bool) -> bool {
    request_was_head || (100..200).contains(&status) || status == 204 || status == 304
}

fn check_head_bounds(
    input: &[u8],
    limits: HeadLimits,
    head_len: usize,
    field_count: usize,
) -> Result<(), String> {
    if head_len == 0 || head_len > input.len() || head_len > limits.max_head_bytes {
        return Err(format!(
            "head_len {head_len} is outside 1..={} (input length {}, limit {})",
            input.len().min(limits.max_head_bytes),
            input.len(),
            limits.max_head_bytes
        ));
    }
    if input[head_len - 1] != b'\n' {
        return Err(format!(
            "head_len {head_len} does not end after a line feed"
        ));
    }
    let max_fields = limits.max_header_count.min(MAX_HEADER_COUNT);
    if field_count > max_fields {
        return Err(format!(
            "{field_count} fields accepted with a limit of {max_fields}"
        ));
    }
    Ok(())
}

fn check_spans(spans: &[(&str, Span)], head_len: usize) -> Result<(), String> {
    for &(name, span) in spans {
        if span.start > span.end || span.end as usize > head_len {
            return Err(format!(
                "{name} span {span:?} is outside the head of {head_len} bytes"
            ));
        }
    }
    Ok(())
}

/// Writes the forwarded head once without a limit and once under `params.forward_limit` after
/// `params.prefill` bytes, checks that the limit is enforced exactly, and returns the head.
fn check_forward_limit(
    input: &[u8],
    params: &RequestParams,
    head: &RequestHead,
) -> Result<Vec<u8>, String> {
    let context = RequestContext {
        client_ip: &ClientIp::new(params.client_ip),
        upstream_authority: UPSTREAM_AUTHORITY,
        target: None,
        rules: None,
        request_id: None,
    };
    let mut forwarded = Vec::new();
    write_request_head(&mut forwarded, usize::MAX, input, head, &context)
        .map_err(|error| format!("write_request_head without a limit failed: {error}"))?;

    let mut out = vec![PREFILL_BYTE; params.prefill];
    let result = write_request_head(&mut out, params.forward_limit, input, head, &context);
    let needed = params.prefill + forwarded.len();
    let fits = needed <= params.forward_limit;
    if out[..params.prefill.min(out.len())]
        .iter()
        .any(|&byte| byte != PREFILL_BYTE)
        || out.len() < params.prefill
    {
        return Err(
            "write_request_head changed the bytes that were already in its output".to_owned(),
        );
    }
    match result {
        Ok(()) if !fits => Err(format!(
            "write_request_head succeeded although {needed} bytes exceed its limit of {}",
            params.forward_limit
        )),
        Ok(()) if out[params.prefill..] != forwarded[..] => Err(format!(
            "write_request_head under a limit wrote \"{}\" but without a limit \"{}\"",
            escaped(&out[params.prefill..]),
            escaped(&forwarded)
        )),
        Ok(()) => Ok(forwarded),
        Err(error) if fits => Err(format!(
            "write_request_head failed although {needed} bytes fit its limit of {}: {error}",
            params.forward_limit
        )),
        Err(error) if error.kind != Kind::HeadTooLarge => Err(format!(
            "write_request_head over its limit failed with {:?} instead of HeadTooLarge",
            error.kind
        )),
        Err(_) if out.len() > params.forward_limit.max(params.prefill) => Err(format!(
            "write_request_head grew its output to {} bytes past its limit of {}",
            out.len(),
            params.forward_limit
        )),
        Err(_) => Ok(forwarded),
    }
}

/// Parses the head written for the upstream and checks it against the request it came from.
fn check_forwarded_request(
    input: &[u8],
    params: &RequestParams,
    head: &RequestHead,
    forwarded: &[u8],
) -> Result<(), String> {
    let forwarded_text = escaped(forwarded);
    if line_count(forwarded) > MAX_HEADER_COUNT + 2 {
        // ringway's parser has no room for that many fields, and neither would an upstream with
        // the same limit. The request had nearly MAX_HEADER_COUNT fields to begin with.
        return Ok(());
    }
    let limits = HeadLimits {
        max_head_bytes: forwarded.len(),
        max_header_count: MAX_HEADER_COUNT,
    };
    let mut again = RequestHead::default();
    match parse_request(forwarded, limits, &mut again) {
        Ok(true) if again.head_len == forwarded.len() => {}
        Ok(true) => {
            return Err(format!(
                "forwarded head \"{forwarded_text}\" ends at byte {} of {}",
                again.head_len,
                forwarded.len()
            ));
        }
        other => {
            return Err(format!(
                "forwarded head \"{forwarded_text}\" does not parse again: {}",
                describe_result(&other)
            ));
        }
    }

    if again.method(forwarded) != head.method(input)
        || again.target.of(forwarded) != head.target.of(input)
    {
        return Err(format!(
            "forwarded head \"{forwarded_text}\" changed the method or the target"
        ));
    }
    if again.minor_version != 1 {
        return Err(format!(
            "forwarded head \"{forwarded_text}\" is not HTTP/1.1"
        ));
    }
    if again.body != head.body {
        return Err(format!(
            "forwarded head \"{forwarded_text}\" has body {:?} instead of {:?}",
            again.body, head.body
        ));
    }

    let expected_fields = end_to_end_fields(input, &head.fields, &head.connection_tokens, false);
    let forwarded_fields =
        end_to_end_fields(forwarded, &again.fields, &again.connection_tokens, false);
    if forwarded_fields != expected_fields {
        return Err(format!(
            "forwarded head \"{forwarded_text}\" has end-to-end fields {} instead of {}",
            describe_fields(&forwarded_fields),
            describe_fields(&expected_fields)
        ));
    }

    let framing_names: Vec<Vec<u8>> = again
        .fields
        .iter()
        .filter(|field| field.role == FieldRole::HopByHop)
        .map(|field| field.name.of(forwarded).to_ascii_lowercase())
        .collect();
    let mut expected_framing: Vec<&[u8]> = match head.body {
        Some(BodyKind::Length(_)) => vec![b"content-length"],
        Some(BodyKind::Chunked) => vec![b"transfer-encoding"],
        _ => Vec::new(),
    };
    // An honoured upgrade offer is written anew, after the framing field.
    if head.upgrade.is_some() {
        expected_framing.extend([&b"upgrade"[..], b"connection"]);
    }
    if framing_names != expected_framing {
        return Err(format!(
            "forwarded head \"{forwarded_text}\" has the hop-by-hop fields {framing_names:?}; only ringway's framing field \
             and an honoured upgrade offer may be there"
        ));
    }
    if let Some(offer) = head.upgrade {
        if again.upgrade.map(|value| value.of(forwarded)) != Some(offer.of(input)) {
            return Err(format!(
                "forwarded head \"{forwarded_text}\" does not carry the upgrade offer {:?}",
                String::from_utf8_lossy(offer.of(input))
            ));
        }
    }

    let expected_host: &[u8] = match (head.target_authority, head.host) {
        // An absolute-form target's authority replaces Host (RFC 9112 section 3.2.2).
        (Some(authority), _) => authority.of(input),
        (None, Some(host)) => host.of(input),
        (None, None) => UPSTREAM_AUTHORITY.as_bytes(),
    };
    let hosts = values_named(forwarded, &again, b"host");
    if hosts != [expected_host] {
        return Err(format!(
            "forwarded head \"{forwarded_text}\" must have exactly one Host \"{}\"",
            escaped(expected_host)
        ));
    }

    let client_ip = params.client_ip.to_string();
    let mut expected_for = Vec::new();
    for value in values_named(input, head, b"x-forwarded-for")
        .into_iter()
        .filter(|value| !value.is_empty())
    {
        expected_for.extend_from_slice(value);
        expected_for.extend_from_slice(b", ");
    }
    expected_for.extend_from_slice(client_ip.as_bytes());
    expect_single_value(forwarded, &again, b"x-forwarded-for", Some(&expected_for))?;
    expect_single_value(forwarded, &again, b"x-forwarded-proto", Some(b"http"))?;
    match head.authority(input) {
        Some(authority) => {
            expect_single_value(forwarded, &again, b"x-forwarded-host", Some(authority))?
        }
        None => expect_single_value(forwarded, &again, b"x-forwarded-host", None)?,
    }
    let expected_via = appended_via(input, &head.fields, head.minor_version);
    expect_single_value(forwarded, &again, b"via", Some(&expected_via))
}

/// Checks that `head` has exactly one field `name` with value `expected`, or none when
/// `expected` is `None`.
fn expect_single_value(
    buf: &[u8],
    head: &RequestHead,
    name: &[u8],
    expected: Option<&[u8]>,
) -> Result<(), String> {
    let values = values_named(buf, head, name);
    let expected_values: Vec<&[u8]> = expected.into_iter().collect();
    if values != expected_values {
        let shown_values: Vec<String> = values.iter().map(|value| escaped(value)).collect();
        return Err(format!(
            "forwarded head \"{}\" has {} values {shown_values:?} instead of {:?}",
            escaped(buf),
            String::from_utf8_lossy(name),
            expected.map(escaped)
        ));
    }
    Ok(())
}

fn values_named<'a>(buf: &'a [u8], head: &RequestHead, name: &[u8]) -> Vec<&'a [u8]> {
    head.fields
        .iter()
        .filter(|field| field.name.of(buf).eq_ignore_ascii_case(name))
        .map(|field| field.value.of(buf))
        .collect()
}

/// Returns the Via value a proxy writes after the received Via fields: their non-empty values
/// in order, then its own entry (RFC 9110 section 7.6.3).
fn appended_via(buf: &[u8], fields: &[ringway::http::head::Field], minor_version: u8) -> Vec<u8> {
    let mut via = Vec::new();
    for field in fields.iter().filter(|field| field.role == FieldRole::Via) {
        let value = field.value.of(buf);
        if !value.is_empty() {
            via.extend_from_slice(value);
            via.extend_from_slice(b", ");
        }
    }
    via.extend_from_slice(if minor_version == 0 { b"1.0 " } else { b"1.1 " });
    via.extend_from_slice(VIA_PSEUDONYM);
    via
}

/// Returns the (name, value) pairs a proxy forwards unchanged: fields that are neither
/// hop-by-hop nor named in Connection (RFC 9110 section 7.6.1), and none of the fields the
/// proxy rewrites. In a response only Via is rewritten, so Host and the X-Forwarded fields
/// count as end-to-end there.
fn end_to_end_fields(
    buf: &[u8],
    fields: &[ringway::http::head::Field],
    connection_tokens: &[Span],
    response: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    fields
        .iter()
        .filter(|field| match field.role {
            FieldRole::EndToEnd => true,
            FieldRole::Host
            | FieldRole::ForwardedFor
            | FieldRole::Forwarded
            | FieldRole::ForwardedReplaced => response,
            FieldRole::HopByHop | FieldRole::Via => false,
        })
        .filter(|field| {
            let name = field.name.of(buf);
            !connection_tokens
                .iter()
                .any(|token| token.of(buf).eq_ignore_ascii_case(name))
        })
        .map(|field| (field.name.of(buf).to_vec(), field.value.of(buf).to_vec()))
        .collect()
}

fn describe_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> String {
    let lines: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}: {}", escaped(name), escaped(value)))
        .collect();
    format!("{lines:?}")
}

fn line_count(head: &[u8]) -> usize {
    head.iter().filter(|&&byte| byte == b'\n').count()
}

/// Returns the framing the proxy uses toward a client for an upstream body: chunked for an
/// HTTP/1.1 client and close-delimited for an HTTP/1.0 client whenever the length is unknown
/// (RFC 9112 sections 6.1 and 6.3).
fn client_framing(body: BodyKind, client_minor_version: u8) -> ClientFraming {
    match body {
        BodyKind::None => ClientFraming::None,
        BodyKind::Length(length) => ClientFraming::Length(length),
        BodyKind::Chunked | BodyKind::CloseDelimited if client_minor_version >= 1 => {
            ClientFraming::Chunked
        }
        BodyKind::Chunked | BodyKind::CloseDelimited => ClientFraming::Close,
    }
}

/// Client-side settings that a final response head was written with.
#[derive(Debug, Clone, Copy)]
struct SerializedFinal {
    framing: ClientFraming,
    close: bool,
    client_minor_version: u8,
}

/// Checks a response head written for the client: with httparse for the exact field list, and
/// with `parse_response` for the framing. `serialized` is `None` for an interim head.
fn check_serialized_response(
    input: &[u8],
    params: &ResponseParams,
    head: &ResponseHead,
    out: &[u8],
    serialized: Option<SerializedFinal>,
) -> Result<(), String> {
    let context = format!("head \"{}\" written with {serialized:?}", escaped(out));
    let mut slots = vec![httparse::EMPTY_HEADER; line_count(out)];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(out) {
        Ok(httparse::Status::Complete(len)) if len == out.len() => {}
        other => {
            return Err(format!(
                "{context} does not parse with httparse as one head: {other:?}"
            ));
        }
    }
    if response.version != Some(1) || response.code != Some(head.status) {
        return Err(format!(
            "{context} has version {:?} and status {:?}",
            response.version, response.code
        ));
    }
    if response.reason.map(str::as_bytes) != Some(head.reason.of(input)) {
        return Err(format!("{context} changed the reason phrase"));
    }

    let mut expected: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        end_to_end_fields(input, &head.fields, &head.connection_tokens, true)
            .into_iter()
            .map(|(name, value)| (name, Some(value)))
            .collect();
    let forwards_date = expected
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(b"date"));
    expected.push((
        b"Via".to_vec(),
        Some(appended_via(input, &head.fields, head.minor_version)),
    ));
    if let Some(SerializedFinal {
        framing,
        close,
        client_minor_version,
    }) = serialized
    {
        match framing {
            ClientFraming::Length(length) => expected.push((
                b"Content-Length".to_vec(),
                Some(length.to_string().into_bytes()),
            )),
            ClientFraming::Chunked => {
                expected.push((b"Transfer-Encoding".to_vec(), Some(b"chunked".to_vec())))
            }
            // HEAD and 304 responses keep the representation's Content-Length, but 1xx and 204
            // responses must not carry one (RFC 9110 section 8.6).
            ClientFraming::None => {
                if let Some(length) = head
                    .content_length
                    .filter(|_| head.status != 204 && head.status >= 200)
                {
                    expected.push((
                        b"Content-Length".to_vec(),
                        Some(length.to_string().into_bytes()),
                    ));
                }
            }
            ClientFraming::Close => {}
        }
        // A proxy adds Date when the response it forwards has none (RFC 9110 section 6.6.1).
        if !forwards_date {
            expected.push((b"Date".to_vec(), None));
        }
        if close {
            expected.push((b"Connection".to_vec(), Some(b"close".to_vec())));
        } else if client_minor_version == 0 {
            expected.push((b"Connection".to_vec(), Some(b"keep-alive".to_vec())));
        }
    }

    let actual: Vec<(&[u8], &[u8])> = response
        .headers
        .iter()
        .map(|header| (header.name.as_bytes(), header.value))
        .collect();
    let matches = actual.len() == expected.len()
        && actual
            .iter()
            .zip(&expected)
            .all(|((name, value), (expected_name, expected_value))| {
                name == expected_name
                    && match expected_value {
                        Some(expected_value) => value == expected_value,
                        None => value.len() == IMF_FIXDATE_LEN && value.ends_with(b" GMT"),
                    }
            });
    if !matches {
        let expected_lines: Vec<String> = expected
            .iter()
            .map(|(name, value)| {
                format!(
                    "{}: {}",
                    escaped(name),
                    value.as_deref().map_or("<date>".to_owned(), escaped)
                )
            })
            .collect();
        return Err(format!(
            "{context} does not have the fields {expected_lines:?}"
        ));
    }

    check_response_reparse(params, head, out, serialized, &context)
}

fn check_response_reparse(
    params: &ResponseParams,
    head: &ResponseHead,
    out: &[u8],
    serialized: Option<SerializedFinal>,
    context: &str,
) -> Result<(), String> {
    if line_count(out) > MAX_HEADER_COUNT + 2 {
        return Ok(());
    }
    let limits = HeadLimits {
        max_head_bytes: out.len(),
        max_header_count: MAX_HEADER_COUNT,
    };
    let mut again = ResponseHead::default();
    let result = parse_response(out, limits, params.request_was_head, &mut again);
    if !matches!(result, Ok(true)) || again.head_len != out.len() || again.status != head.status {
        return Err(format!(
            "{context} does not parse again to the same status: {}",
            describe_result(&result)
        ));
    }
    let Some(SerializedFinal { framing, close, .. }) = serialized else {
        return Ok(());
    };
    let expected_body = match framing {
        _ if is_bodiless(head.status, params.request_was_head) => BodyKind::None,
        ClientFraming::Length(length) => BodyKind::Length(length),
        ClientFraming::Chunked => BodyKind::Chunked,
        ClientFraming::Close => BodyKind::CloseDelimited,
        ClientFraming::None => BodyKind::None,
    };
    if again.body != Some(expected_body) {
        return Err(format!(
            "{context} parses again with body {:?} instead of {expected_body:?}",
            again.body
        ));
    }
    if close && again.keep_alive {
        return Err(format!("{context} does not close the connection"));
    }
    Ok(())
}

/// Chunked decoding results compared across decoders: data, consumed length and completion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decoded {
    data: Vec<u8>,
    consumed: usize,
    done: bool,
}

fn describe_decoded(result: &Result<Decoded, ChunkedError>) -> String {
    match result {
        Err(error) => format!("error {error:?}"),
        Ok(decoded) => format!(
            "{} data bytes \"{}\", {} bytes consumed, done: {}",
            decoded.data.len(),
            escaped(&decoded.data),
            decoded.consumed,
            decoded.done
        ),
    }
}

fn clamped_piece_ends(piece_ends: &[usize], len: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = piece_ends.iter().map(|&end| end.min(len)).collect();
    ends.push(len);
    ends.sort_unstable();
    ends.dedup();
    ends
}

/// Feeds `input` to `decode` in the pieces ending at `piece_ends`, draining each piece with
/// output buffers of the sizes in `out_lens`, taken in turn. The outer `Err` is a violated
/// invariant, the inner one the decoder's error.
fn decode_copying(
    input: &[u8],
    piece_ends: &[usize],
    out_lens: &[usize],
    limits: ChunkedLimits,
) -> Result<Result<Decoded, ChunkedError>, String> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut data = Vec::new();
    let mut consumed = 0;
    let mut call = 0;
    for &end in piece_ends {
        while consumed < end {
            let mut out = vec![0; out_lens[call % out_lens.len()]];
            call += 1;
            let progress = match decoder.decode(&input[consumed..end], &mut out) {
                Ok(progress) => progress,
                Err(error) => {
                    return check_sticky_error(&mut decoder, error, &input[consumed..])
                        .map(|()| Err(error));
                }
            };
            if progress.consumed > end - consumed || progress.written > out.len() {
                return Err(format!(
                    "decode reported {progress:?} for {} input and {} output bytes",
                    end - consumed,
                    out.len()
                ));
            }
            if progress.done != decoder.is_done() {
                return Err(format!(
                    "decode reported done: {} but is_done() is {}",
                    progress.done,
                    decoder.is_done()
                ));
            }
            data.extend_from_slice(&out[..progress.written]);
            consumed += progress.consumed;
            if progress.done {
                return finish_decoded(&mut decoder, data, consumed, &input[consumed..]);
            }
            if progress.consumed == 0 && progress.written == 0 {
                return Err(format!(
                    "decode made no progress at offset {consumed} with {} bytes of output room",
                    out.len()
                ));
            }
        }
    }
    finish_decoded(&mut decoder, data, consumed, &[])
}

/// Feeds `input` to `decode_in_place` in the pieces ending at `piece_ends`, each piece in a
/// copy as a relay's read buffer would hold it.
fn decode_in_place(
    input: &[u8],
    piece_ends: &[usize],
    limits: ChunkedLimits,
) -> Result<Result<Decoded, ChunkedError>, String> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut data = Vec::new();
    let mut consumed = 0;
    for &end in piece_ends {
        if consumed >= end {
            continue;
        }
        let mut piece = input[consumed..end].to_vec();
        let progress = match decoder.decode_in_place(&mut piece) {
            Ok(progress) => progress,
            Err(error) => {
                return check_sticky_error(&mut decoder, error, &input[consumed..])
                    .map(|()| Err(error));
            }
        };
        if progress.written > progress.consumed || progress.consumed > piece.len() {
            return Err(format!(
                "decode_in_place reported {progress:?} for a piece of {} bytes",
                piece.len()
            ));
        }
        if piece[progress.written..] != input[consumed + progress.written..end] {
            return Err(format!(
                "decode_in_place changed bytes after the {} data bytes it wrote",
                progress.written
            ));
        }
        if progress.done != decoder.is_done() {
            return Err(format!(
                "decode_in_place reported done: {} but is_done() is {}",
                progress.done,
                decoder.is_done()
            ));
        }
        data.extend_from_slice(&piece[..progress.written]);
        consumed += progress.consumed;
        if progress.done {
            return finish_decoded(&mut decoder, data, consumed, &input[consumed..]);
        }
        if consumed != end {
            return Err(format!(
                "decode_in_place stopped at offset {consumed} before the end of its piece at {end}"
            ));
        }
    }
    finish_decoded(&mut decoder, data, consumed, &[])
}

/// Checks that a failed decoder returns the same error again, whatever it is given next.
fn check_sticky_error(
    decoder: &mut ChunkedDecoder,
    error: ChunkedError,
    rest: &[u8],
) -> Result<(), String> {
    let mut out = [0; 16];
    let again = decoder.decode(rest, &mut out);
    if again != Err(error) {
        return Err(format!(
            "decode after {error:?} returned {again:?} instead of the same error"
        ));
    }
    Ok(())
}

/// Checks the decoder's counters at the end of a run, and that a finished decoder consumes
/// nothing of the bytes after the body.
fn finish_decoded(
    decoder: &mut ChunkedDecoder,
    data: Vec<u8>,
    consumed: usize,
    after: &[u8],
) -> Result<Result<Decoded, ChunkedError>, String> {
    if decoder.data_bytes_total() != data.len() as u64 {
        return Err(format!(
            "data_bytes_total() is {} after {} data bytes",
            decoder.data_bytes_total(),
            data.len()
        ));
    }
    let done = decoder.is_done();
    if done {
        let mut out = [0; 16];
        let after_done = decoder.decode(after, &mut out);
        if after_done.map(|progress| (progress.consumed, progress.written, progress.done))
            != Ok((0, 0, true))
        {
            return Err(format!(
                "decode after the end of the body returned {after_done:?}"
            ));
        }
    }
    Ok(Ok(Decoded {
        data,
        consumed,
        done,
    }))
}

/// Re-encodes `data` the way the proxy does, in chunks of the sizes in `rechunk_lens` taken in
/// turn, and checks that it decodes to the same data. The encoding carries no extensions or
/// trailer fields, so it must decode even with both limits at zero.
fn check_rechunked(data: &[u8], rechunk_lens: &[usize]) -> Result<(), String> {
    let mut encoded = Vec::new();
    let mut header = [0; MAX_CHUNK_HEADER_BYTES];
    let mut rest = data;
    let mut chunk = 0;
    while !rest.is_empty() {
        let chunk_len = rechunk_lens
            .get(chunk % rechunk_lens.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .max(1);
        let len = chunk_len.min(rest.len());
        chunk += 1;
        let header_len = encode_chunk_header(len as u64, &mut header);
        encoded.extend_from_slice(&header[..header_len]);
        encoded.extend_from_slice(&rest[..len]);
        encoded.extend_from_slice(CHUNK_TRAILER_CRLF);
        rest = &rest[len..];
    }
    encoded.extend_from_slice(LAST_CHUNK);
    let body_len = encoded.len();
    encoded.extend_from_slice(NEXT_MESSAGE);

    let limits = ChunkedLimits {
        max_extension_bytes: 0,
        max_trailer_bytes: 0,
    };
    let decoded = decode_copying(&encoded, &[encoded.len()], &[encoded.len()], limits)?;
    let expected = Decoded {
        data: data.to_vec(),
        consumed: body_len,
        done: true,
    };
    if decoded != Ok(expected.clone()) {
        return Err(format!(
            "re-encoded body \"{}\" decodes to {} instead of {}",
            escaped(&encoded),
            describe_decoded(&decoded),
            describe_decoded(&Ok(expected))
        ));
    }
    Ok(())
}
