//! Request target rewriting: dot-segment removal, the upstream path of a route, and query rules.
//!
//! Everything except dot segments is forwarded as received: percent-encoding is never decoded
//! or re-encoded, so `%2F` stays `%2F` and the upstream receives the bytes the client sent.

use std::fmt;

use crate::routing::Sink;
use crate::routing::template::{
    Captures, PathTemplate, is_path_byte, is_placeholder_name, starts_with,
};

/// The reason a request path cannot be forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with '/'.
    NotAbsolute,
    /// A ".." segment would climb above the root.
    AboveRoot,
    /// A NUL byte, raw or as `%00`, which many origins treat as the end of the path.
    Nul,
    /// A rewritten path would contain a "." or ".." segment, which the upstream would resolve,
    /// for example a capture "..", or a stripped prefix that leaves "./".
    DotSegmentAfterRewrite,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "request path does not start with '/'",
            PathError::AboveRoot => "request path climbs above the root with '..'",
            PathError::Nul => "request path contains a NUL byte",
            PathError::DotSegmentAfterRewrite => {
                "rewritten request path would contain a '.' or '..' segment"
            }
        })
    }
}

impl std::error::Error for PathError {}

/// The result of `normalize_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalized {
    /// The path has no dot segment, so `out` was not touched and the original path applies.
    Unchanged,
    /// `out` contains the path with its dot segments removed.
    Rewritten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotSegment {
    Current,
    Parent,
}

/// Maximum length of a dot segment: ".." with both dots percent-encoded ("%2e%2e").
const MAX_DOT_SEGMENT_BYTES: usize = 6;

/// Classifies a segment as "." or "..", with each dot raw or encoded as `%2e` or `%2E`.
fn dot_segment(segment: &[u8]) -> Option<DotSegment> {
    if segment.is_empty() || segment.len() > MAX_DOT_SEGMENT_BYTES {
        return None;
    }
    let mut dots = 0;
    let mut rest = segment;
    while let Some(&first) = rest.first() {
        if first == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && first == b'%' && rest[1] == b'2' && rest[2] | 0x20 == b'e' {
            rest = &rest[3..];
        } else {
            return None;
        }
        dots += 1;
    }
    match dots {
        1 => Some(DotSegment::Current),
        2 => Some(DotSegment::Parent),
        _ => None,
    }
}

fn contains_nul(path: &[u8]) -> bool {
    path.contains(&0) || path.windows(3).any(|window| window == b"%00")
}

/// Returns the byte a `%XX` escape at the start of `bytes` stands for, when it is an unreserved
/// character (RFC 3986 section 2.3: letters, digits, '-', '.', '_', '~'), which RFC 3986 section
/// 6.2.2.2 recommends decoding before comparing paths.
fn unreserved_escape(bytes: &[u8]) -> Option<u8> {
    if bytes.len() < 3 || bytes[0] != b'%' {
        return None;
    }
    let hex = |digit: u8| (digit as char).to_digit(16);
    let value = (hex(bytes[1])? * 16 + hex(bytes[2])?) as u8;
    let unreserved = value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~');
    unreserved.then_some(value)
}

/// Normalizes a request path for routing (RFC 3986 section 6.2.2): decodes percent-encoded
/// unreserved characters, merges runs of '/' into one (as nginx's `merge_slashes` does), and
/// removes "." and ".." segments (section 5.2.4). So `/public/%2e%2e/admin`, `//admin` and
/// `/%61dmin` all become `/admin` and cannot get past a rule on `/admin` through another route.
///
/// Rejects a path that does not start with '/', that climbs above the root, or that contains
/// NUL raw or as `%00`. Every other byte stays as received: `%2F` and other reserved escapes are
/// not decoded. A path that needs none of this returns `Unchanged` without copying. Otherwise
/// `out` is cleared and receives the new path, which is never longer than `path`, so an `out`
/// with that much capacity never reallocates.
pub fn normalize_path(path: &[u8], out: &mut Vec<u8>) -> Result<Normalized, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if contains_nul(path) {
        return Err(PathError::Nul);
    }
    let segments = || path[1..].split(|&byte| byte == b'/');
    let has_escape = path
        .iter()
        .enumerate()
        .any(|(at, _)| unreserved_escape(&path[at..]).is_some());
    let has_double_slash = path.windows(2).any(|pair| pair == b"//");
    let has_dot_segment = segments().any(|segment| dot_segment(segment).is_some());
    if !has_escape && !has_double_slash && !has_dot_segment {
        return Ok(Normalized::Unchanged);
    }

    // First pass: decode unreserved escapes and merge slashes.
    out.clear();
    let mut at = 0;
    while at < path.len() {
        if let Some(decoded) = unreserved_escape(&path[at..]) {
            out.push(decoded);
            at += 3;
            continue;
        }
        let byte = path[at];
        if !(byte == b'/' && out.last() == Some(&b'/')) {
            out.push(byte);
        }
        at += 1;
    }

    // Second pass, in place: remove dot segments. `write` never passes `read`, and the kept
    // part `out[..write]` is made of "/segment" pairs, so removing its last segment truncates
    // at its last '/'.
    let len = out.len();
    let mut write = 0;
    let mut read = 1;
    loop {
        let end = out[read..len]
            .iter()
            .position(|&byte| byte == b'/')
            .map_or(len, |offset| read + offset);
        let last = end == len;
        match dot_segment(&out[read..end]) {
            None => {
                out.copy_within(read - 1..end, write);
                write += end - (read - 1);
            }
            Some(DotSegment::Current) => {
                if last {
                    out[write] = b'/';
                    write += 1;
                }
            }
            Some(DotSegment::Parent) => {
                let Some(slash) = out[..write].iter().rposition(|&byte| byte == b'/') else {
                    return Err(PathError::AboveRoot);
                };
                write = slash;
                if last {
                    out[write] = b'/';
                    write += 1;
                }
            }
        }
        if last {
            break;
        }
        read = end + 1;
    }
    out.truncate(write);
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(Normalized::Rewritten)
}

/// Detects "." and ".." segments in a path written in several pieces, without copying it.
struct DotSegmentScanner {
    segment: [u8; MAX_DOT_SEGMENT_BYTES],
    /// Bytes in the current segment so far, of which the first `MAX_DOT_SEGMENT_BYTES` are kept.
    len: usize,
    found: bool,
}

impl DotSegmentScanner {
    fn new() -> DotSegmentScanner {
        DotSegmentScanner {
            segment: [0; MAX_DOT_SEGMENT_BYTES],
            len: 0,
            found: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'/' {
                self.end_segment();
            } else {
                if self.len < MAX_DOT_SEGMENT_BYTES {
                    self.segment[self.len] = byte;
                }
                self.len += 1;
            }
        }
    }

    fn end_segment(&mut self) {
        if self.len <= MAX_DOT_SEGMENT_BYTES && dot_segment(&self.segment[..self.len]).is_some() {
            self.found = true;
        }
        self.len = 0;
    }

    fn finish(mut self) -> bool {
        self.end_segment();
        self.found
    }
}

/// A sink that passes bytes to the dot-segment scanner instead of writing them.
impl Sink for DotSegmentScanner {
    fn put(&mut self, bytes: &[u8]) {
        self.feed(bytes);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UpstreamPiece {
    Literal(Box<[u8]>),
    Capture(usize),
}

/// The upstream path of a route, such as `/v2/orders/{id}`, built from the captures of the
/// route's path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPath {
    pieces: Vec<UpstreamPiece>,
}

/// An upstream path template that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPathError {
    pub template: String,
    pub at: usize,
    pub reason: String,
}

impl fmt::Display for UpstreamPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid rewrite path {:?} at byte {}: {}",
            self.template, self.at, self.reason
        )
    }
}

impl std::error::Error for UpstreamPathError {}

impl UpstreamPath {
    /// Parses an upstream path whose placeholders name captures of `captures_of`, the route's
    /// path template. A catch-all `{*rest}` of the route is written `{rest}` (or `{*rest}`).
    pub fn parse(
        template: &str,
        captures_of: &PathTemplate,
    ) -> Result<UpstreamPath, UpstreamPathError> {
        let error = |at: usize, reason: String| UpstreamPathError {
            template: template.to_string(),
            at,
            reason,
        };
        let bytes = template.as_bytes();
        if bytes.first() != Some(&b'/') {
            return Err(error(0, "the path must start with '/'".to_string()));
        }

        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let byte = bytes[at];
            if byte == b'}' {
                return Err(error(
                    at,
                    "unbalanced '}'; write placeholders as {name}".to_string(),
                ));
            }
            if byte != b'{' {
                if !is_path_byte(byte) {
                    let reason = format!(
                        "byte 0x{byte:02x} cannot appear in a request path; percent-encode it"
                    );
                    return Err(error(at, reason));
                }
                literal.push(byte);
                at += 1;
                continue;
            }

            let close = bytes[at + 1..]
                .iter()
                .position(|&byte| matches!(byte, b'{' | b'}' | b'/'))
                .map(|offset| at + 1 + offset)
                .filter(|&close| bytes[close] == b'}')
                .ok_or_else(|| {
                    error(
                        at,
                        "unbalanced '{'; write placeholders as {name}".to_string(),
                    )
                })?;
            let inner = &template[at + 1..close];
            let name = inner.strip_prefix('*').unwrap_or(inner);
            if !is_placeholder_name(name) {
                return Err(error(at, format!("invalid placeholder name {name:?}")));
            }
            let Some(index) = captures_of.capture_index(name) else {
                let reason = format!(
                    "{{{name}}} is not a placeholder of the route path {:?}; use one of {:?}",
                    captures_of.source(),
                    captures_of.names()
                );
                return Err(error(at, reason));
            };
            if !literal.is_empty() {
                pieces.push(UpstreamPiece::Literal(
                    std::mem::take(&mut literal).into_boxed_slice(),
                ));
            }
            pieces.push(UpstreamPiece::Capture(index));
            at = close + 1;
        }
        if !literal.is_empty() {
            pieces.push(UpstreamPiece::Literal(literal.into_boxed_slice()));
        }
        Ok(UpstreamPath { pieces })
    }

    fn write(&self, path: &[u8], captures: &Captures, sink: &mut impl Sink) {
        for piece in &self.pieces {
            match piece {
                UpstreamPiece::Literal(literal) => sink.put(literal),
                UpstreamPiece::Capture(index) => {
                    sink.put(captures.value(*index, path).unwrap_or(b""))
                }
            }
        }
    }
}

/// Removes a leading prefix from the path, as in "/api/orders" to "/orders" for "/api".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripPrefix {
    prefix: Box<[u8]>,
    case_sensitive: bool,
}

impl StripPrefix {
    /// Creates the rule. `case_sensitive` should be the route's, so that a prefix the route
    /// matched ignoring case is also stripped ignoring case.
    pub fn new(prefix: &str, case_sensitive: bool) -> Result<StripPrefix, UpstreamPathError> {
        let error = |at: usize, reason: &str| UpstreamPathError {
            template: prefix.to_string(),
            at,
            reason: reason.to_string(),
        };
        if !prefix.starts_with('/') {
            return Err(error(0, "the prefix to strip must start with '/'"));
        }
        if let Some(at) = prefix.bytes().position(|byte| !is_path_byte(byte)) {
            return Err(error(at, "this byte cannot appear in a request path"));
        }
        Ok(StripPrefix {
            prefix: prefix.as_bytes().into(),
            case_sensitive,
        })
    }

    /// Writes the path without the prefix. The result always starts with '/': "/api" stripped
    /// from "/api" gives "/", and from "/apix" gives "/x". A path without the prefix is
    /// written unchanged.
    fn write(&self, path: &[u8], sink: &mut impl Sink) {
        if !starts_with(path, &self.prefix, self.case_sensitive) {
            sink.put(path);
            return;
        }
        let rest = &path[self.prefix.len()..];
        if rest.first() != Some(&b'/') {
            sink.put(b"/");
        }
        sink.put(rest);
    }
}

/// The path rule of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// Forward the path as given.
    Keep,
    Template(UpstreamPath),
    StripPrefix(StripPrefix),
}

impl PathRewrite {
    fn write(&self, path: &[u8], captures: &Captures, sink: &mut impl Sink) {
        match self {
            PathRewrite::Keep => sink.put(path),
            PathRewrite::Template(upstream) => upstream.write(path, captures, sink),
            PathRewrite::StripPrefix(strip) => strip.write(path, sink),
        }
    }
}

/// Maximum number of query parameters a route may set. `write_query` tracks which ones the
/// request already carried in a 64-bit mask, so that it needs no allocation.
pub const MAX_QUERY_SET_RULES: usize = 64;

/// Parameters that a route removes from, or sets in, the query.
///
/// Names match the raw name as received, before percent-decoding.
/// NOTE: a client can send `de%62ug=1` for a removed `debug`, and an upstream that decodes names
/// reads it as `debug`. Removing a parameter is a convenience, not an access control.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryRules {
    remove: Vec<Box<[u8]>>,
    set: Vec<QueryParameter>,
}

/// A parameter that a route sets, written as "name=value".
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueryParameter {
    name: Box<[u8]>,
    value: Box<[u8]>,
}

/// A query rule that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRuleError {
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for QueryRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid query rule for {:?}: {}", self.name, self.reason)
    }
}

impl std::error::Error for QueryRuleError {}

/// Returns whether `byte` may appear in a query parameter name or value as ringway writes it:
/// query characters (RFC 3986 section 3.4) other than the '&' and '=' that delimit parameters.
fn is_query_parameter_byte(byte: u8) -> bool {
    byte != b'&' && byte != b'=' && (is_path_byte(byte) || byte == b'?')
}

impl QueryRules {
    pub fn new(
        remove: Vec<String>,
        set: Vec<(String, String)>,
    ) -> Result<QueryRules, QueryRuleError> {
        let error = |name: &str, reason| QueryRuleError {
            name: name.to_string(),
            reason,
        };
        if set.len() > MAX_QUERY_SET_RULES {
            return Err(error(
                &set[MAX_QUERY_SET_RULES].0,
                "a route may set at most 64 query parameters",
            ));
        }
        let names: Vec<&String> = remove
            .iter()
            .chain(set.iter().map(|(name, _)| name))
            .collect();
        for (index, name) in names.iter().enumerate() {
            if name.is_empty() || !name.bytes().all(is_query_parameter_byte) {
                return Err(error(
                    name,
                    "a name must be non-empty query characters without '&', '=' or '#'; percent-encode others",
                ));
            }
            if names[..index].contains(name) {
                return Err(error(
                    name,
                    "the parameter is named twice; keep one remove or set rule",
                ));
            }
        }
        for (name, value) in &set {
            if !value.bytes().all(is_query_parameter_byte) {
                return Err(error(
                    name,
                    "the value must be query characters without '&', '=' or '#'; percent-encode others",
                ));
            }
        }
        Ok(QueryRules {
            remove: remove
                .into_iter()
                .map(|name| name.into_bytes().into())
                .collect(),
            set: set
                .into_iter()
                .map(|(name, value)| QueryParameter {
                    name: name.into_bytes().into(),
                    value: value.into_bytes().into(),
                })
                .collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty()
    }

    /// Writes the query, with its leading '?', for the given received query (`None` when the
    /// target had no '?').
    ///
    /// Without rules the query is written byte for byte. Otherwise parameters, split at '&',
    /// keep their order and bytes, except that a removed name is dropped, and a set name is
    /// replaced in place at its first occurrence and dropped at later ones. Set names the
    /// request lacked are appended in rule order. Empty parameters ("a=1&&b=2") stay, and no
    /// '?' is written when nothing remains.
    pub fn write_query(&self, query: Option<&[u8]>, sink: &mut impl Sink) {
        if self.is_empty() {
            if let Some(query) = query {
                sink.put(b"?");
                sink.put(query);
            }
            return;
        }

        let mut writer = QueryWriter {
            sink,
            started: false,
        };
        let mut seen: u64 = 0;
        let parameters = query.filter(|query| !query.is_empty()).into_iter();
        for parameter in parameters.flat_map(|query| query.split(|&byte| byte == b'&')) {
            let name = match parameter.iter().position(|&byte| byte == b'=') {
                Some(equals) => &parameter[..equals],
                None => parameter,
            };
            if self.remove.iter().any(|removed| **removed == *name) {
                continue;
            }
            match self.set.iter().position(|set| *set.name == *name) {
                None => writer.parameter(&[parameter]),
                Some(index) if seen & (1 << index) == 0 => {
                    seen |= 1 << index;
                    writer.parameter(&[name, b"=", &self.set[index].value]);
                }
                Some(_) => {}
            }
        }
        for (index, set) in self.set.iter().enumerate() {
            if seen & (1 << index) == 0 {
                writer.parameter(&[&set.name, b"=", &set.value]);
            }
        }
    }
}

/// Writes query parameters with '?' before the first and '&' between the others.
struct QueryWriter<'s, S: Sink> {
    sink: &'s mut S,
    started: bool,
}

impl<S: Sink> QueryWriter<'_, S> {
    fn parameter(&mut self, parts: &[&[u8]]) {
        self.sink.put(if self.started { b"&" } else { b"?" });
        self.started = true;
        for part in parts {
            self.sink.put(part);
        }
    }
}

/// The whole target rewrite of a route: its path rule and its query rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRewrite {
    pub path: PathRewrite,
    pub query: QueryRules,
}

impl TargetRewrite {
    /// Returns whether the rewrite forwards the target unchanged, so that the caller may copy
    /// the received target instead of calling `write_target`.
    pub fn is_identity(&self) -> bool {
        self.path == PathRewrite::Keep && self.query.is_empty()
    }

    /// Writes the upstream target (path and query) into `sink`.
    ///
    /// `path` is the path the route matched (normalized or as received), `captures` the result
    /// of that match, and `query` the received query without its '?'. A rewritten path that
    /// would contain a dot segment is rejected before anything is written, because the upstream
    /// would resolve it. `Keep` writes `path` as given.
    pub fn write_target(
        &self,
        path: &[u8],
        captures: &Captures,
        query: Option<&[u8]>,
        sink: &mut impl Sink,
    ) -> Result<(), PathError> {
        if self.path != PathRewrite::Keep {
            let mut scanner = DotSegmentScanner::new();
            self.path.write(path, captures, &mut scanner);
            if scanner.finish() {
                return Err(PathError::DotSegmentAfterRewrite);
            }
        }
        self.path.write(path, captures, sink);
        self.query.write_query(query, sink);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(path: &str) -> Result<String, PathError> {
        let mut out = Vec::with_capacity(path.len());
        let capacity = out.capacity();
        let result = normalize_path(path.as_bytes(), &mut out)?;
        assert_eq!(out.capacity(), capacity, "out reallocated for {path:?}");
        Ok(match result {
            Normalized::Unchanged => {
                assert!(out.is_empty(), "fast path wrote into out for {path:?}");
                path.to_string()
            }
            Normalized::Rewritten => String::from_utf8(out).unwrap(),
        })
    }

    #[test]
    fn normalize_path_table() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/a/b/c", Ok("/a/b/c")),
            ("/a/./b", Ok("/a/b")),
            ("/a/b/.", Ok("/a/b/")),
            ("/a/b/..", Ok("/a/")),
            ("/a/b/../c", Ok("/a/c")),
            ("/a/../../b", Err(PathError::AboveRoot)),
            ("/..", Err(PathError::AboveRoot)),
            ("/../a", Err(PathError::AboveRoot)),
            ("/.", Ok("/")),
            ("/./", Ok("/")),
            ("/a/..", Ok("/")),
            ("/a/../", Ok("/")),
            ("/a//../b", Ok("/b")),
            ("/a//b", Ok("/a/b")),
            ("///", Ok("/")),
            ("//a/./b", Ok("/a/b")),
            ("/public/../admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2E/admin", Ok("/admin")),
            ("/public/.%2e/admin", Ok("/admin")),
            ("/public/%2e./admin", Ok("/admin")),
            ("/public/%2e/admin", Ok("/public/admin")),
            ("/%2e%2e", Err(PathError::AboveRoot)),
            ("/a/...", Ok("/a/...")),
            ("/a/..b", Ok("/a/..b")),
            ("/a/%2e%2e%2e", Ok("/a/...")),
            ("/a/%2ex", Ok("/a/.x")),
            ("/%61dmin", Ok("/admin")),
            ("/%7Euser/%41%2D%5f", Ok("/~user/A-_")),
            ("/a%2fb", Ok("/a%2fb")),
            ("/a%20b%3F", Ok("/a%20b%3F")),
            ("/a/%2", Ok("/a/%2")),
            ("/a/..%2Fb", Ok("/a/..%2Fb")),
            ("/a/%2F../b", Ok("/a/%2F../b")),
            ("/a%2Fb/./c%20d", Ok("/a%2Fb/c%20d")),
            ("/a/%252e%252e/b", Ok("/a/%252e%252e/b")),
            ("/a\0b", Err(PathError::Nul)),
            ("/a%00b", Err(PathError::Nul)),
            ("/a/%00/../b", Err(PathError::Nul)),
            ("", Err(PathError::NotAbsolute)),
            ("a/b", Err(PathError::NotAbsolute)),
            ("../a", Err(PathError::NotAbsolute)),
            ("*", Err(PathError::NotAbsolute)),
        ];
        for (path, expected) in cases {
            let expected = expected.map(str::to_string);
            assert_eq!(normalized(path), expected, "path {path:?}");
        }
    }

    #[test]
    fn normalize_path_fast_path_leaves_out_alone() {
        let mut out = b"previous".to_vec();
        let result = normalize_path(b"/a/b%2Fc/d%20e", &mut out);
        assert_eq!(result, Ok(Normalized::Unchanged));
        assert_eq!(out, b"previous");
    }

    #[test]
    fn normalize_path_reuses_out() {
        let mut out = Vec::with_capacity(64);
        let pointer = out.as_ptr();
        for path in ["/a/../b", "/x/./y/./z", "/q/.."] {
            assert_eq!(
                normalize_path(path.as_bytes(), &mut out),
                Ok(Normalized::Rewritten)
            );
        }
        assert_eq!(out, b"/");
        assert_eq!(out.as_ptr(), pointer);
    }

    fn route(template: &str) -> PathTemplate {
        PathTemplate::parse(template).unwrap()
    }

    #[test]
    fn upstream_path_parse_errors() {
        let template = route("/api/{version}/orders/{id}/{*rest}");
        let cases: &[(&str, usize, &str)] = &[
            ("v2/{id}", 0, "start with '/'"),
            ("/v2/{idx}", 4, "not a placeholder"),
            ("/v2/{id", 4, "unbalanced"),
            ("/v2/id}", 6, "unbalanced"),
            ("/v2/{}", 4, "invalid placeholder name"),
            ("/v2/{a-b}", 4, "invalid placeholder name"),
            ("/v2 /{id}", 3, "percent-encode"),
            ("/v2?x=1", 3, "percent-encode"),
        ];
        for (source, at, reason) in cases {
            let error = UpstreamPath::parse(source, &template).expect_err(source);
            assert_eq!(error.at, *at, "{source:?}: {error}");
            assert!(error.to_string().contains(reason), "{source:?}: {error}");
        }
        let message = UpstreamPath::parse("/{idx}", &template)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("[\"version\", \"id\", \"rest\"]"),
            "{message}"
        );
    }

    fn target(
        route_template: &str,
        rewrite: PathRewrite,
        query_rules: QueryRules,
        path: &str,
        query: Option<&str>,
    ) -> Result<String, PathError> {
        let template = route(route_template);
        let mut captures = Captures::new();
        assert!(
            template.matches(path.as_bytes(), true, &mut captures),
            "{path:?}"
        );
        let rewrite = TargetRewrite {
            path: rewrite,
            query: query_rules,
        };
        let mut out = Vec::new();
        rewrite.write_target(
            path.as_bytes(),
            &captures,
            query.map(str::as_bytes),
            &mut out,
        )?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn upstream_path_writes_captures() {
        let route_template = "/api/{version}/orders/{id}/{*rest}";
        let cases: &[(&str, &str, &str)] = &[
            ("/v2/orders/{id}", "/api/v1/orders/17/", "/v2/orders/17"),
            (
                "/{version}/{id}/{rest}",
                "/api/v1/orders/17/a/b",
                "/v1/17/a/b",
            ),
            ("/x/{*rest}", "/api/v1/orders/17/a%2Fb", "/x/a%2Fb"),
            ("/x/{rest}", "/api/v1/orders/17/", "/x/"),
            ("/{id}{id}", "/api/v1/orders/17/", "/1717"),
        ];
        let template = route(route_template);
        for (upstream, path, expected) in cases {
            let upstream = UpstreamPath::parse(upstream, &template).unwrap();
            let written = target(
                route_template,
                PathRewrite::Template(upstream),
                QueryRules::default(),
                path,
                None,
            );
            assert_eq!(written.as_deref(), Ok(*expected), "path {path:?}");
        }
    }

    #[test]
    fn rewrite_rejects_dot_segments_it_creates() {
        let route_template = "/files/{name}.json";
        let upstream = UpstreamPath::parse("/storage/public/{name}/data", &route(route_template));
        let rewrite = PathRewrite::Template(upstream.unwrap());
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/files/report.json", Ok("/storage/public/report/data")),
            ("/files/...json", Err(PathError::DotSegmentAfterRewrite)),
            ("/files/%2e%2e.json", Err(PathError::DotSegmentAfterRewrite)),
            ("/files/.%2E.json", Err(PathError::DotSegmentAfterRewrite)),
            ("/files/...json.json", Ok("/storage/public/...json/data")),
        ];
        for (path, expected) in cases {
            let expected = expected.map(str::to_string);
            let written = target(
                route_template,
                rewrite.clone(),
                QueryRules::default(),
                path,
                None,
            );
            assert_eq!(written, expected, "path {path:?}");
        }

        let strip = PathRewrite::StripPrefix(StripPrefix::new("/ap", true).unwrap());
        let written = target("/{*rest}", strip, QueryRules::default(), "/ap./x", None);
        assert_eq!(written, Err(PathError::DotSegmentAfterRewrite));
    }

    #[test]
    fn strip_prefix_table() {
        let cases: &[(&str, bool, &str, &str)] = &[
            ("/api", true, "/api/orders", "/orders"),
            ("/api", true, "/api", "/"),
            ("/api", true, "/api/", "/"),
            ("/api/", true, "/api/orders", "/orders"),
            ("/api", true, "/apix", "/x"),
            ("/api", true, "/API/orders", "/API/orders"),
            ("/api", false, "/API/orders", "/orders"),
            ("/api", true, "/other", "/other"),
            ("/api", true, "/api//x", "//x"),
            ("/", true, "/a/b", "/a/b"),
        ];
        for (prefix, case_sensitive, path, expected) in cases {
            let strip = StripPrefix::new(prefix, *case_sensitive).unwrap();
            let written = target(
                "/{*rest}",
                PathRewrite::StripPrefix(strip),
                QueryRules::default(),
                path,
                None,
            );
            assert_eq!(written.as_deref(), Ok(*expected), "{prefix:?} on {path:?}");
        }
        assert!(StripPrefix::new("api", true).is_err());
        assert!(StripPrefix::new("/a b", true).is_err());
    }

    fn rules(remove: &[&str], set: &[(&str, &str)]) -> QueryRules {
        QueryRules::new(
            remove.iter().map(|name| name.to_string()).collect(),
            set.iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn query(rules: &QueryRules, query: Option<&str>) -> String {
        let mut out = Vec::new();
        rules.write_query(query.map(str::as_bytes), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn query_without_rules_is_byte_exact() {
        let none = QueryRules::default();
        let cases = [
            (None, ""),
            (Some(""), "?"),
            (Some("a=1&&b=%2F&a"), "?a=1&&b=%2F&a"),
            (Some("&"), "?&"),
            (Some("x=?/;"), "?x=?/;"),
        ];
        for (received, expected) in cases {
            assert_eq!(query(&none, received), expected, "query {received:?}");
        }
    }

    #[test]
    fn query_rules_table() {
        let remove_debug = rules(&["debug"], &[]);
        let set_source = rules(&[], &[("source", "gw")]);
        let both = rules(&["debug", "trace"], &[("source", "gw"), ("v", "2")]);
        let cases: &[(&QueryRules, Option<&str>, &str)] = &[
            (&remove_debug, None, ""),
            (&remove_debug, Some(""), ""),
            (&remove_debug, Some("debug=1"), ""),
            (&remove_debug, Some("debug"), ""),
            (&remove_debug, Some("a=1&debug=1&b=2"), "?a=1&b=2"),
            (&remove_debug, Some("debug=1&a=1&debug&b"), "?a=1&b"),
            (&remove_debug, Some("a=1&&b=2"), "?a=1&&b=2"),
            (&remove_debug, Some("&a=1&"), "?&a=1&"),
            (
                &remove_debug,
                Some("debugx=1&xdebug=1"),
                "?debugx=1&xdebug=1",
            ),
            (&remove_debug, Some("DEBUG=1"), "?DEBUG=1"),
            (&remove_debug, Some("de%62ug=1"), "?de%62ug=1"),
            (&remove_debug, Some("a=debug"), "?a=debug"),
            (&set_source, None, "?source=gw"),
            (&set_source, Some(""), "?source=gw"),
            (&set_source, Some("a=1"), "?a=1&source=gw"),
            (&set_source, Some("source=evil&a=1"), "?source=gw&a=1"),
            (&set_source, Some("a=1&source&b=2"), "?a=1&source=gw&b=2"),
            (&set_source, Some("source=x&source=y&a"), "?source=gw&a"),
            (&set_source, Some("a=%2F+b"), "?a=%2F+b&source=gw"),
            (&both, Some("trace=1&v=1&debug&x=y"), "?v=2&x=y&source=gw"),
            (&both, Some("debug=1"), "?source=gw&v=2"),
        ];
        for (rules, received, expected) in cases {
            assert_eq!(query(rules, *received), *expected, "query {received:?}");
        }
    }

    #[test]
    fn query_rule_validation() {
        // Each case: the remove list and the set list.
        type Rules = (
            &'static [&'static str],
            &'static [(&'static str, &'static str)],
        );
        let invalid: &[Rules] = &[
            (&[""], &[]),
            (&["a&b"], &[]),
            (&["a=b"], &[]),
            (&["a b"], &[]),
            (&["a#"], &[]),
            (&[], &[("", "x")]),
            (&[], &[("a", "x&y")]),
            (&[], &[("a", "x y")]),
            (&[], &[("a", "x\r\n")]),
            (&["a"], &[("a", "x")]),
            (&["a", "a"], &[]),
            (&[], &[("a", "x"), ("a", "y")]),
        ];
        for (remove, set) in invalid {
            let result = QueryRules::new(
                remove.iter().map(|name| name.to_string()).collect(),
                set.iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            );
            assert!(result.is_err(), "remove {remove:?} set {set:?} accepted");
        }
        let too_many = (0..=MAX_QUERY_SET_RULES).map(|i| (format!("p{i}"), "1".to_string()));
        assert!(QueryRules::new(Vec::new(), too_many.collect()).is_err());
        let all_fit = (0..MAX_QUERY_SET_RULES).map(|i| (format!("p{i}"), "1".to_string()));
        let full = QueryRules::new(Vec::new(), all_fit.collect()).unwrap();
        let written = query(&full, Some("p63=0&p0=0"));
        assert!(written.starts_with("?p63=1&p0=1&p1=1&"), "{written}");
        assert!(written.ends_with("&p62=1"), "{written}");
    }

    #[test]
    fn target_combines_path_and_query() {
        let route_template = "/api/{*rest}";
        let upstream = UpstreamPath::parse("/v2/{rest}", &route(route_template)).unwrap();
        let written = target(
            route_template,
            PathRewrite::Template(upstream),
            rules(&["debug"], &[]),
            "/api/orders",
            Some("debug=1&id=7"),
        );
        assert_eq!(written.as_deref(), Ok("/v2/orders?id=7"));

        let keep = TargetRewrite {
            path: PathRewrite::Keep,
            query: QueryRules::default(),
        };
        assert!(keep.is_identity());
        let mut out = Vec::new();
        let result = keep.write_target(b"/a/../b", &Captures::new(), Some(b"q"), &mut out);
        assert_eq!(result, Ok(()));
        assert_eq!(out, b"/a/../b?q");
    }
}
