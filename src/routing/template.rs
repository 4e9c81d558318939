//! Path templates such as `/api/{version}/orders/{id}`, `/files/{name}.json` and
//! `/static/{*rest}`, matched segment by segment without regular expressions.
//!
//! A `{name}` placeholder captures one non-empty part of a single segment, so it never contains
//! '/'. A final `{*name}` captures the rest of the path, slashes included, and may be empty.
//! Everything else is literal and compares with the path as received, percent-encoding and all.

use std::cmp::Reverse;
use std::fmt;
use std::ops::Range;

/// Maximum number of placeholders in one template. `Captures` is a fixed array of this many
/// ranges, so that matching never allocates. Real routes use a handful.
pub const MAX_CAPTURES: usize = 16;

/// The byte ranges a template match captured, indexed like `PathTemplate::names`.
///
/// The ranges point into the path that was matched, and are valid only together with it.
#[derive(Debug, Clone)]
pub struct Captures {
    spans: [(usize, usize); MAX_CAPTURES],
    len: usize,
}

impl Default for Captures {
    fn default() -> Captures {
        Captures::new()
    }
}

impl Captures {
    pub const fn new() -> Captures {
        Captures {
            spans: [(0, 0); MAX_CAPTURES],
            len: 0,
        }
    }

    /// Returns the number of captures of the last match (0 for a prefix route or no match).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the range of capture `index` in the matched path.
    pub fn get(&self, index: usize) -> Option<Range<usize>> {
        if index < self.len {
            let (start, end) = self.spans[index];
            Some(start..end)
        } else {
            None
        }
    }

    /// Returns the bytes of capture `index`, given the path that was matched.
    pub fn value<'p>(&self, index: usize, path: &'p [u8]) -> Option<&'p [u8]> {
        self.get(index).and_then(|range| path.get(range))
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn reset(&mut self, len: usize) {
        self.spans = [(0, 0); MAX_CAPTURES];
        self.len = len;
    }

    fn set(&mut self, index: usize, start: usize, end: usize) {
        self.spans[index] = (start, end);
    }
}

/// One part of a template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Box<[u8]>),
    /// `{name}`: the index of the capture.
    Capture(usize),
    /// `{*name}`: the index of the capture. It is always the last piece of the last segment.
    CatchAll(usize),
}

/// A parsed path template.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    source: String,
    /// Capture names in order of appearance. A catch-all's name is stored without its '*'.
    names: Vec<String>,
    /// The segments after the leading '/', split at every '/' outside a catch-all.
    segments: Vec<Vec<Piece>>,
    literal_bytes: usize,
}

/// The problem found in a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateErrorKind {
    NotAbsolute,
    UnbalancedBrace,
    EmptyName,
    InvalidName(String),
    DuplicateName(String),
    CatchAllNotLast,
    AdjacentPlaceholders,
    TooManyCaptures,
    InvalidByte(u8),
}

/// A template that failed to parse, with the byte offset where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub template: String,
    pub at: usize,
    pub kind: TemplateErrorKind,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid path template {:?} at byte {}: ",
            self.template, self.at
        )?;
        match &self.kind {
            TemplateErrorKind::NotAbsolute => f.write_str("a template must start with '/'"),
            TemplateErrorKind::UnbalancedBrace => {
                f.write_str("unbalanced brace; write placeholders as {name} or a final {*name}")
            }
            TemplateErrorKind::EmptyName => {
                f.write_str("empty placeholder name; name it, as in {id}")
            }
            TemplateErrorKind::InvalidName(name) => write!(
                f,
                "invalid placeholder name {name:?}; use ASCII letters, digits and '_'"
            ),
            TemplateErrorKind::DuplicateName(name) => {
                write!(
                    f,
                    "placeholder {name:?} appears twice; give each one its own name"
                )
            }
            TemplateErrorKind::CatchAllNotLast => {
                f.write_str("a catch-all {*name} must end the template")
            }
            TemplateErrorKind::AdjacentPlaceholders => f.write_str(
                "two placeholders with no literal between them; separate them, as in {name}.{ext}",
            ),
            TemplateErrorKind::TooManyCaptures => {
                write!(f, "more than {MAX_CAPTURES} placeholders")
            }
            TemplateErrorKind::InvalidByte(byte) => write!(
                f,
                "byte 0x{byte:02x} cannot appear in a request path; percent-encode it"
            ),
        }
    }
}

impl std::error::Error for TemplateError {}

/// The rank of a route's path among routes of equal priority: greater is more specific. Fields compare in order: literal bytes (slashes included), then segments, then
/// fewer placeholders, then a closed end over a catch-all or prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    pub literal_bytes: usize,
    pub segments: usize,
    pub placeholders: Reverse<usize>,
    /// False for a template ending in a catch-all and for a path prefix.
    pub closed: bool,
}

impl Specificity {
    /// Returns the specificity of a path prefix, which ranks like the same literal followed by
    /// a catch-all.
    pub fn of_prefix(prefix: &str) -> Specificity {
        Specificity {
            literal_bytes: prefix.len(),
            segments: prefix.bytes().filter(|&byte| byte == b'/').count(),
            placeholders: Reverse(1),
            closed: false,
        }
    }
}

/// Returns whether `byte` may appear unencoded in the path of a request target: unreserved,
/// sub-delims, ':', '@', '/' and the '%' of percent-encoding (RFC 3986 section 3.3).
pub(crate) fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&byte)
}

/// Returns whether `name` is a valid placeholder name: ASCII letters, digits and '_'.
pub(crate) fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

struct Parser<'a> {
    source: &'a str,
    names: Vec<String>,
    segments: Vec<Vec<Piece>>,
    literal: Vec<u8>,
    literal_bytes: usize,
    /// The previous piece was a placeholder, so a placeholder here would be adjacent to it.
    after_placeholder: bool,
    catch_all_at: Option<usize>,
}

impl Parser<'_> {
    fn error(&self, at: usize, kind: TemplateErrorKind) -> TemplateError {
        TemplateError {
            template: self.source.to_string(),
            at,
            kind,
        }
    }

    fn current_segment(&mut self) -> &mut Vec<Piece> {
        self.segments
            .last_mut()
            .expect("the parser starts with one segment")
    }

    fn flush_literal(&mut self) {
        if !self.literal.is_empty() {
            let literal = std::mem::take(&mut self.literal).into_boxed_slice();
            self.current_segment().push(Piece::Literal(literal));
            self.after_placeholder = false;
        }
    }

    /// Parses the placeholder whose '{' is at `open` and returns the offset after its '}'.
    fn placeholder(&mut self, open: usize) -> Result<usize, TemplateError> {
        let bytes = self.source.as_bytes();
        let close = match bytes[open + 1..]
            .iter()
            .position(|&byte| matches!(byte, b'{' | b'}' | b'/'))
        {
            Some(offset) if bytes[open + 1 + offset] == b'}' => open + 1 + offset,
            _ => return Err(self.error(open, TemplateErrorKind::UnbalancedBrace)),
        };
        let inner = &self.source[open + 1..close];
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };

        if name.is_empty() {
            return Err(self.error(open, TemplateErrorKind::EmptyName));
        }
        if !is_placeholder_name(name) {
            return Err(self.error(open, TemplateErrorKind::InvalidName(name.to_string())));
        }
        if self.names.iter().any(|known| known == name) {
            return Err(self.error(open, TemplateErrorKind::DuplicateName(name.to_string())));
        }
        if self.names.len() == MAX_CAPTURES {
            return Err(self.error(open, TemplateErrorKind::TooManyCaptures));
        }

        self.flush_literal();
        if self.after_placeholder {
            return Err(self.error(open, TemplateErrorKind::AdjacentPlaceholders));
        }
        let index = self.names.len();
        self.names.push(name.to_string());
        let piece = if catch_all {
            self.catch_all_at = Some(open);
            Piece::CatchAll(index)
        } else {
            Piece::Capture(index)
        };
        self.current_segment().push(piece);
        self.after_placeholder = true;
        Ok(close + 1)
    }
}

impl PathTemplate {
    /// Parses a template. Errors name the problem and its byte offset.
    pub fn parse(source: &str) -> Result<PathTemplate, TemplateError> {
        let mut parser = Parser {
            source,
            names: Vec::new(),
            segments: vec![Vec::new()],
            literal: Vec::new(),
            literal_bytes: 1,
            after_placeholder: false,
            catch_all_at: None,
        };
        let bytes = source.as_bytes();
        if bytes.first() != Some(&b'/') {
            return Err(parser.error(0, TemplateErrorKind::NotAbsolute));
        }

        let mut at = 1;
        while at < bytes.len() {
            if let Some(catch_all) = parser.catch_all_at {
                return Err(parser.error(catch_all, TemplateErrorKind::CatchAllNotLast));
            }
            let byte = bytes[at];
            match byte {
                b'{' => {
                    at = parser.placeholder(at)?;
                    continue;
                }
                b'}' => return Err(parser.error(at, TemplateErrorKind::UnbalancedBrace)),
                b'/' => {
                    parser.flush_literal();
                    parser.segments.push(Vec::new());
                    parser.after_placeholder = false;
                }
                _ if is_path_byte(byte) => parser.literal.push(byte),
                _ => return Err(parser.error(at, TemplateErrorKind::InvalidByte(byte))),
            }
            parser.literal_bytes += 1;
            at += 1;
        }
        parser.flush_literal();

        Ok(PathTemplate {
            source: source.to_string(),
            names: parser.names,
            segments: parser.segments,
            literal_bytes: parser.literal_bytes,
        })
    }

    /// Returns the template as written in the configuration.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Returns the capture names in the order of `Captures`. A catch-all appears without '*'.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Returns the capture index of a placeholder name (a catch-all by its name without '*').
    pub fn capture_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|known| known == name)
    }

    pub fn specificity(&self) -> Specificity {
        let has_catch_all = self
            .segments
            .iter()
            .flatten()
            .any(|piece| matches!(piece, Piece::CatchAll(_)));
        Specificity {
            literal_bytes: self.literal_bytes,
            segments: self.segments.len(),
            placeholders: Reverse(self.names.len()),
            closed: !has_catch_all,
        }
    }

    /// Matches `path` (without the query) and fills `captures` with the placeholder ranges.
    ///
    /// Literals compare byte for byte, or ignoring ASCII case when `case_sensitive` is false.
    /// When several splits of a segment fit, as with `{name}.{ext}` on "a.b.c", each literal
    /// between placeholders takes its leftmost position, giving name "a" and ext "b.c". The
    /// time is linear in the path length times the literal length, so a hostile path cannot
    /// make matching backtrack. `captures` is left empty unless the path matches.
    pub fn matches(&self, path: &[u8], case_sensitive: bool, captures: &mut Captures) -> bool {
        captures.reset(self.names.len());
        let matched = self.match_segments(path, case_sensitive, captures);
        if !matched {
            captures.clear();
        }
        matched
    }

    fn match_segments(&self, path: &[u8], case_sensitive: bool, captures: &mut Captures) -> bool {
        if path.first() != Some(&b'/') {
            return false;
        }
        let mut start = 1;
        for (index, pieces) in self.segments.iter().enumerate() {
            let end = path[start..]
                .iter()
                .position(|&byte| byte == b'/')
                .map_or(path.len(), |offset| start + offset);
            let segment = &path[start..end];

            if let Some((Piece::CatchAll(capture), before)) = pieces.split_last() {
                let Some(consumed) =
                    match_pieces(before, segment, start, false, case_sensitive, captures)
                else {
                    return false;
                };
                captures.set(*capture, start + consumed, path.len());
                return true;
            }

            if match_pieces(pieces, segment, start, true, case_sensitive, captures).is_none() {
                return false;
            }
            let last = index + 1 == self.segments.len();
            if last {
                return end == path.len();
            }
            if end == path.len() {
                return false;
            }
            start = end + 1;
        }
        true
    }
}

/// Matches literals and single-segment captures against one path segment that starts at byte
/// `base` of the path, and returns the number of segment bytes consumed.
///
/// Literals and captures alternate because the parser rejects adjacent placeholders, and each
/// capture takes at least one byte. A literal after a capture is searched for leftmost, which
/// never rules out a match that a later position would allow, except the last literal of an
/// `anchored_end` segment, which must end the segment.
fn match_pieces(
    pieces: &[Piece],
    segment: &[u8],
    base: usize,
    anchored_end: bool,
    case_sensitive: bool,
    captures: &mut Captures,
) -> Option<usize> {
    let mut position = 0;
    let mut open_capture: Option<(usize, usize)> = None;
    for (index, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Literal(literal) => {
                let found = match open_capture.take() {
                    None => {
                        let rest = &segment[position..];
                        starts_with(rest, literal, case_sensitive).then_some(position)?
                    }
                    Some((capture, capture_start)) => {
                        let last = index + 1 == pieces.len();
                        let at = if last && anchored_end {
                            let at = segment.len().checked_sub(literal.len())?;
                            let suffix = &segment[at..];
                            (at > capture_start && equal(suffix, literal, case_sensitive))
                                .then_some(at)?
                        } else {
                            find(segment, literal, capture_start + 1, case_sensitive)?
                        };
                        captures.set(capture, base + capture_start, base + at);
                        at
                    }
                };
                position = found + literal.len();
            }
            Piece::Capture(capture) => open_capture = Some((*capture, position)),
            Piece::CatchAll(_) => unreachable!("a catch-all is matched by match_segments"),
        }
    }
    if let Some((capture, capture_start)) = open_capture {
        if segment.len() <= capture_start {
            return None;
        }
        captures.set(capture, base + capture_start, base + segment.len());
        position = segment.len();
    }
    if anchored_end && position != segment.len() {
        return None;
    }
    Some(position)
}

fn equal(a: &[u8], b: &[u8], case_sensitive: bool) -> bool {
    if case_sensitive {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

pub(crate) fn starts_with(haystack: &[u8], prefix: &[u8], case_sensitive: bool) -> bool {
    haystack.len() >= prefix.len() && equal(&haystack[..prefix.len()], prefix, case_sensitive)
}

/// Returns the first position at or after `from` where `needle` occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8], from: usize, case_sensitive: bool) -> Option<usize> {
    if from > haystack.len() || needle.len() > haystack.len() - from {
        return None;
    }
    (from..=haystack.len() - needle.len())
        .find(|&at| equal(&haystack[at..at + needle.len()], needle, case_sensitive))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(source: &str) -> (usize, TemplateErrorKind) {
        let error = PathTemplate::parse(source).expect_err(source);
        (error.at, error.kind)
    }

    /// Matches and returns the captures as strings, or None when the path does not match.
    fn captured(template: &str, path: &str, case_sensitive: bool) -> Option<Vec<String>> {
        let template = PathTemplate::parse(template).expect(template);
        let mut captures = Captures::new();
        if !template.matches(path.as_bytes(), case_sensitive, &mut captures) {
            assert!(captures.is_empty(), "captures left after a failed match");
            return None;
        }
        let values = (0..captures.len())
            .map(|index| {
                let value = captures.value(index, path.as_bytes()).expect("in range");
                String::from_utf8(value.to_vec()).expect("ASCII")
            })
            .collect();
        Some(values)
    }

    #[test]
    fn parse_errors_name_kind_and_offset() {
        use TemplateErrorKind::*;
        let cases: &[(&str, usize, TemplateErrorKind)] = &[
            ("", 0, NotAbsolute),
            ("api/{id}", 0, NotAbsolute),
            ("/a/{id", 3, UnbalancedBrace),
            ("/a/{id/x}", 3, UnbalancedBrace),
            ("/a/{i{d}}", 3, UnbalancedBrace),
            ("/a/id}", 5, UnbalancedBrace),
            ("/a/{}", 3, EmptyName),
            ("/a/{*}", 3, EmptyName),
            ("/a/{i-d}", 3, InvalidName("i-d".into())),
            ("/a/{ id}", 3, InvalidName(" id".into())),
            ("/{id}/{id}", 6, DuplicateName("id".into())),
            ("/{rest}/{*rest}", 8, DuplicateName("rest".into())),
            ("/{*rest}/x", 1, CatchAllNotLast),
            ("/{*rest}x", 1, CatchAllNotLast),
            ("/{a}{b}", 4, AdjacentPlaceholders),
            ("/x{a}{*rest}", 5, AdjacentPlaceholders),
            ("/a b", 2, InvalidByte(b' ')),
            ("/a?b", 2, InvalidByte(b'?')),
            ("/a#b", 2, InvalidByte(b'#')),
        ];
        for (source, at, kind) in cases {
            assert_eq!(
                parse_error(source),
                (*at, kind.clone()),
                "template {source:?}"
            );
        }
    }

    #[test]
    fn parse_rejects_too_many_captures() {
        let mut source = String::new();
        for index in 0..=MAX_CAPTURES {
            source.push_str(&format!("/{{p{index}}}"));
        }
        let (_, kind) = parse_error(&source);
        assert_eq!(kind, TemplateErrorKind::TooManyCaptures);

        let fits: String = (0..MAX_CAPTURES)
            .map(|index| format!("/{{p{index}}}"))
            .collect();
        let template = PathTemplate::parse(&fits).expect("exactly MAX_CAPTURES");
        let path: String = (0..MAX_CAPTURES)
            .map(|index| format!("/v{index}"))
            .collect();
        assert_eq!(
            captured(&fits, &path, true).expect("matches").len(),
            MAX_CAPTURES
        );
        assert_eq!(template.names().len(), MAX_CAPTURES);
    }

    #[test]
    fn parse_error_message_names_template() {
        let message = PathTemplate::parse("/a/{id").unwrap_err().to_string();
        assert!(message.contains("\"/a/{id\""), "{message}");
        assert!(message.contains("byte 3"), "{message}");
    }

    #[test]
    fn names_resolve_to_indexes() {
        let template = PathTemplate::parse("/api/{version}/files/{name}.{ext}/{*rest}").unwrap();
        assert_eq!(template.names(), ["version", "name", "ext", "rest"]);
        assert_eq!(template.capture_index("ext"), Some(2));
        assert_eq!(template.capture_index("rest"), Some(3));
        assert_eq!(template.capture_index("*rest"), None);
        assert_eq!(
            template.source(),
            "/api/{version}/files/{name}.{ext}/{*rest}"
        );
    }

    #[test]
    fn matches_table() {
        let cases: &[(&str, &str, Option<&[&str]>)] = &[
            ("/", "/", Some(&[])),
            ("/", "/a", None),
            ("/api/orders", "/api/orders", Some(&[])),
            ("/api/orders", "/api/orders/", None),
            ("/api/orders/", "/api/orders/", Some(&[])),
            ("/api/orders", "/api/order", None),
            ("/api/orders", "/api", None),
            (
                "/api/{version}/orders/{id}",
                "/api/v2/orders/17",
                Some(&["v2", "17"]),
            ),
            ("/api/{version}/orders/{id}", "/api/v2/orders/", None),
            ("/api/{version}/orders/{id}", "/api//orders/17", None),
            ("/api/{version}/orders/{id}", "/api/v2/orders/17/x", None),
            ("/{id}", "/%2F", Some(&["%2F"])),
            // Inside a segment.
            (
                "/files/{name}.json",
                "/files/report.json",
                Some(&["report"]),
            ),
            (
                "/files/{name}.json",
                "/files/a.json.json",
                Some(&["a.json"]),
            ),
            ("/files/{name}.json", "/files/.json", None),
            ("/files/{name}.json", "/files/report.jsonx", None),
            ("/files/{name}.json", "/files/report.json/x", None),
            ("/files/v{major}.{minor}", "/files/v1.2", Some(&["1", "2"])),
            (
                "/files/v{major}.{minor}",
                "/files/v1.2.3",
                Some(&["1", "2.3"]),
            ),
            ("/files/v{major}.{minor}", "/files/v1.", None),
            ("/files/v{major}.{minor}", "/files/x1.2", None),
            ("/files/{name}.{ext}", "/files/a..b", Some(&["a", ".b"])),
            ("/{a}-{b}-{c}", "/x-y-z-w", Some(&["x", "y", "z-w"])),
            ("/{a}-{b}-{c}", "/x--z", None),
            // Catch-all.
            ("/static/{*rest}", "/static/", Some(&[""])),
            ("/static/{*rest}", "/static/a/b/c.css", Some(&["a/b/c.css"])),
            ("/static/{*rest}", "/static//a", Some(&["/a"])),
            ("/static/{*rest}", "/static", None),
            ("/static/{*rest}", "/staticx/a", None),
            ("/{*rest}", "/", Some(&[""])),
            ("/{*rest}", "/a/b", Some(&["a/b"])),
            ("/v{*rest}", "/v1/x", Some(&["1/x"])),
            ("/{id}-{*rest}", "/a-b/c", Some(&["a", "b/c"])),
            ("/{id}-{*rest}", "/a/b-c", None),
            (
                "/{tenant}/static/{*rest}",
                "/blue/static/x",
                Some(&["blue", "x"]),
            ),
        ];
        for (template, path, expected) in cases {
            let expected =
                expected.map(|values| values.iter().map(|v| v.to_string()).collect::<Vec<_>>());
            assert_eq!(
                captured(template, path, true),
                expected,
                "template {template:?} on path {path:?}"
            );
        }
    }

    #[test]
    fn case_insensitive_literals() {
        let cases: &[(&str, &str, bool, Option<&[&str]>)] = &[
            ("/API/Orders", "/api/orders", true, None),
            ("/API/Orders", "/api/orders", false, Some(&[])),
            (
                "/files/{name}.JSON",
                "/FILES/Report.json",
                false,
                Some(&["Report"]),
            ),
            ("/files/{name}.JSON", "/files/Report.json", true, None),
            ("/a/{x}-B-{y}", "/A/1-b-2", false, Some(&["1", "2"])),
            (
                "/static/{*rest}",
                "/STATIC/Mixed/Case",
                false,
                Some(&["Mixed/Case"]),
            ),
            // Only ASCII letters fold, so percent-encoded bytes never compare equal to others.
            ("/%c3%a9", "/%C3%A9", true, None),
            ("/%c3%a9", "/%C3%A9", false, Some(&[])),
        ];
        for (template, path, case_sensitive, expected) in cases {
            let expected =
                expected.map(|values| values.iter().map(|v| v.to_string()).collect::<Vec<_>>());
            assert_eq!(
                captured(template, path, *case_sensitive),
                expected,
                "template {template:?} on path {path:?}, case_sensitive {case_sensitive}"
            );
        }
    }

    #[test]
    fn failed_match_clears_earlier_captures() {
        let template = PathTemplate::parse("/a/{x}/b").unwrap();
        let mut captures = Captures::new();
        assert!(template.matches(b"/a/1/b", true, &mut captures));
        assert_eq!(captures.len(), 1);
        assert!(!template.matches(b"/a/1/c", true, &mut captures));
        assert_eq!(captures.len(), 0);
        assert_eq!(captures.get(0), None);
    }

    #[test]
    fn hostile_path_matches_in_linear_time() {
        // With backtracking, each of the 15 literals could be tried at every position.
        let source: String = (0..MAX_CAPTURES - 1)
            .map(|i| format!("{{p{i}}}x"))
            .collect();
        let template = PathTemplate::parse(&format!("/{source}{{last}}y")).unwrap();
        let path = format!("/{}", "x".repeat(8000));
        let mut captures = Captures::new();
        let started = std::time::Instant::now();
        assert!(!template.matches(path.as_bytes(), true, &mut captures));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn specificity_orders_templates() {
        let specificity = |source: &str| PathTemplate::parse(source).unwrap().specificity();
        // Each pair: (more specific, less specific).
        let pairs = [
            ("/api/users/me", "/api/users/{id}"),
            ("/api/users/{id}", "/api/{*rest}"),
            ("/api/{id}", "/api/{*rest}"),
            ("/api/v1/{id}", "/api/{v}/{id}"),
            ("/a/{b}/{c}", "/a/{bc}"),
            ("/files/{name}.json", "/files/{name}"),
        ];
        for (more, less) in pairs {
            assert!(
                specificity(more) > specificity(less),
                "{more:?} vs {less:?}"
            );
        }
        assert!(Specificity::of_prefix("/api/") > Specificity::of_prefix("/api"));
        assert!(specificity("/api/") > Specificity::of_prefix("/api/"));
        assert!(Specificity::of_prefix("/api/") > specificity("/{*rest}"));
        assert_eq!(Specificity::of_prefix("/api/"), specificity("/api/{*rest}"));
    }
}
