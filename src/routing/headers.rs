//! Header rules of a route (set, add, remove, replace), value templates with request
//! variables, and request ids.
//!
//! The caller copies received fields one by one into the outgoing head, calls
//! `HeaderRules::action` for each, and then calls `write_added`. This code never merges repeated
//! fields such as Set-Cookie, so each received field stays its own line.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::routing::{Sink, is_token};

/// Header names that no rule may touch, because ringway writes the framing and connection
/// headers itself (RFC 9110 section 7.6.1, RFC 9112 section 6).
const RESERVED_NAMES: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "http2-settings",
];

/// Headers that ringway writes for every forwarded request, so rules on them would either be
/// lost or send a second, conflicting field.
pub const FORWARDING_NAMES: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "via",
];

/// Returns whether `byte` may appear in a field value: HTAB, SP, visible ASCII and obs-text
/// (RFC 9110 section 5.5). This excludes CR, LF and NUL, which could end the field or the head.
fn is_field_value_byte(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || (0x21..=0x7e).contains(&byte) || byte >= 0x80
}

fn is_field_value(value: &[u8]) -> bool {
    value.iter().all(|&byte| is_field_value_byte(byte))
}

/// A request variable that a value template can insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    ClientAddr,
    Host,
    Scheme,
    Route,
    RequestId,
}

impl Variable {
    const ALL: [(&'static str, Variable); 5] = [
        ("client_addr", Variable::ClientAddr),
        ("host", Variable::Host),
        ("scheme", Variable::Scheme),
        ("route", Variable::Route),
        ("request_id", Variable::RequestId),
    ];

    pub fn name(self) -> &'static str {
        Variable::ALL
            .iter()
            .find(|(_, variable)| *variable == self)
            .map_or("", |(name, _)| name)
    }
}

/// The values of the variables for one request, borrowed from the request and the worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// The client's IP address as text.
    pub client_addr: &'a [u8],
    /// The request authority as received (Host or absolute-form), empty when there is none.
    pub host: &'a [u8],
    /// "http" or "https".
    pub scheme: &'a [u8],
    /// The route name.
    pub route: &'a [u8],
    pub request_id: &'a [u8],
}

impl<'a> Vars<'a> {
    fn get(&self, variable: Variable) -> &'a [u8] {
        match variable {
            Variable::ClientAddr => self.client_addr,
            Variable::Host => self.host,
            Variable::Scheme => self.scheme,
            Variable::Route => self.route,
            Variable::RequestId => self.request_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ValuePiece {
    Literal(Box<[u8]>),
    Variable(Variable),
}

/// A header value with placeholders, such as "{scheme}://{host}".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTemplate {
    pieces: Vec<ValuePiece>,
}

/// A value template that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTemplateError {
    pub template: String,
    pub at: usize,
    pub reason: String,
}

impl fmt::Display for ValueTemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid header value {:?} at byte {}: {}",
            self.template, self.at, self.reason
        )
    }
}

impl std::error::Error for ValueTemplateError {}

impl ValueTemplate {
    /// Parses a value with the placeholders {client_addr}, {host}, {scheme}, {route} and
    /// {request_id}, where "{{" and "}}" are literal braces. Literal text must be visible
    /// ASCII, spaces or tabs.
    pub fn parse(template: &str) -> Result<ValueTemplate, ValueTemplateError> {
        let error = |at: usize, reason: String| ValueTemplateError {
            template: template.to_string(),
            at,
            reason,
        };
        let bytes = template.as_bytes();
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let byte = bytes[at];
            let next = bytes.get(at + 1).copied();
            match byte {
                b'{' if next == Some(b'{') => {
                    literal.push(b'{');
                    at += 2;
                }
                b'}' if next == Some(b'}') => {
                    literal.push(b'}');
                    at += 2;
                }
                b'}' => {
                    return Err(error(
                        at,
                        "unbalanced '}'; write a literal brace as \"}}\"".into(),
                    ));
                }
                b'{' => {
                    let close = bytes[at + 1..]
                        .iter()
                        .position(|&byte| byte == b'}')
                        .map(|offset| at + 1 + offset)
                        .ok_or_else(|| {
                            error(at, "unbalanced '{'; write a literal brace as \"{{\"".into())
                        })?;
                    let name = &template[at + 1..close];
                    let Some((_, variable)) =
                        Variable::ALL.iter().find(|(known, _)| *known == name)
                    else {
                        let reason = format!(
                            "unknown placeholder {{{name}}}; use {{client_addr}}, {{host}}, {{scheme}}, {{route}} or {{request_id}}"
                        );
                        return Err(error(at, reason));
                    };
                    if !literal.is_empty() {
                        let text = std::mem::take(&mut literal).into_boxed_slice();
                        pieces.push(ValuePiece::Literal(text));
                    }
                    pieces.push(ValuePiece::Variable(*variable));
                    at = close + 1;
                }
                b'\t' | b' ' | 0x21..=0x7e => {
                    literal.push(byte);
                    at += 1;
                }
                _ => {
                    let reason = format!(
                        "byte 0x{byte:02x} is not allowed; use visible ASCII, spaces and tabs"
                    );
                    return Err(error(at, reason));
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(ValuePiece::Literal(literal.into_boxed_slice()));
        }
        Ok(ValueTemplate { pieces })
    }

    /// Returns the first variable whose value cannot appear in a field value, if any.
    fn invalid_variable(&self, vars: &Vars<'_>) -> Option<Variable> {
        self.pieces.iter().find_map(|piece| match piece {
            ValuePiece::Variable(variable) if !is_field_value(vars.get(*variable)) => {
                Some(*variable)
            }
            _ => None,
        })
    }

    fn write(&self, vars: &Vars<'_>, sink: &mut impl Sink) {
        for piece in &self.pieces {
            match piece {
                ValuePiece::Literal(text) => sink.put(text),
                ValuePiece::Variable(variable) => sink.put(vars.get(*variable)),
            }
        }
    }
}

/// One header rule of a route, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRule {
    /// Drop every received field of this name and write one with this value.
    Set { name: String, value: ValueTemplate },
    /// Keep the received fields and write one more.
    Add { name: String, value: ValueTemplate },
    /// Drop every received field of this name.
    Remove { name: String },
    /// Replace every occurrence of `find` in the value of each received field of this name.
    Replace {
        name: String,
        find: String,
        with: String,
    },
}

impl HeaderRule {
    fn name(&self) -> &str {
        match self {
            HeaderRule::Set { name, .. }
            | HeaderRule::Add { name, .. }
            | HeaderRule::Remove { name }
            | HeaderRule::Replace { name, .. } => name,
        }
    }
}

/// A header rule that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRuleError {
    pub name: String,
    pub reason: &'static str,
}

impl fmt::Display for HeaderRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid header rule for {:?}: {}",
            self.name, self.reason
        )
    }
}

impl std::error::Error for HeaderRuleError {}

/// The find-and-replace rules on the value of received fields of one name, in configuration
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceRule {
    pairs: Vec<(Box<[u8]>, Box<[u8]>)>,
}

impl ReplaceRule {
    /// Writes `value` with every non-overlapping occurrence of any `find` text replaced, in
    /// one scan from left to right. Where several `find` texts start at the same byte, the one
    /// configured first wins. The comparison is byte for byte.
    pub fn write_value_replaced(&self, value: &[u8], sink: &mut impl Sink) {
        let mut start = 0;
        let mut at = 0;
        while at < value.len() {
            let found = self
                .pairs
                .iter()
                .find(|(find, _)| value[at..].starts_with(find));
            match found {
                Some((find, with)) => {
                    sink.put(&value[start..at]);
                    sink.put(with);
                    at += find.len();
                    start = at;
                }
                None => at += 1,
            }
        }
        sink.put(&value[start..]);
    }
}

/// The treatment of a received field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldAction<'r> {
    /// Copy it as received.
    Keep,
    /// Leave it out (a set or remove rule names it).
    Drop,
    /// Write its name, then its value through `ReplaceRule::write_value_replaced`.
    Replace(&'r ReplaceRule),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReceivedAction {
    Drop,
    Replace(ReplaceRule),
}

/// The fields a rule writes: the name as configured and the value template.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddedField {
    name: Box<[u8]>,
    value: ValueTemplate,
}

/// A header field that `write_added` skipped because a variable would have put a forbidden
/// byte (such as CR or LF from a client-controlled Host) into its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedField<'r> {
    pub name: &'r [u8],
    pub variable: Variable,
}

impl fmt::Display for SkippedField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "header {} not written: {{{}}} contains a byte not allowed in a field value",
            String::from_utf8_lossy(self.name),
            self.variable.name()
        )
    }
}

/// The header rules of a route for one direction (request or response), checked and indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Rules on received fields, one per name, names in lowercase.
    received: Vec<(Box<[u8]>, ReceivedAction)>,
    /// Set and add rules, in configuration order.
    added: Vec<AddedField>,
}

impl HeaderRules {
    /// Checks the rules and indexes them by name.
    ///
    /// Names must be tokens other than the framing and connection headers. Each name may have
    /// at most one set, remove or replace rule, because two of them would contradict each other.
    /// Add rules may repeat. Replace needs a non-empty `find`, and `find` and `with` must be
    /// valid field values.
    pub fn new(rules: Vec<HeaderRule>) -> Result<HeaderRules, HeaderRuleError> {
        let mut compiled = HeaderRules::default();
        for rule in rules {
            let name = rule.name().to_string();
            let error = |reason| HeaderRuleError {
                name: name.clone(),
                reason,
            };
            if !is_token(name.as_bytes()) {
                return Err(error(
                    "a header name must be a token: letters, digits and !#$%&'*+-.^_`|~",
                ));
            }
            let lowercase = name.to_ascii_lowercase();
            if RESERVED_NAMES.contains(&lowercase.as_str()) {
                return Err(error(
                    "ringway writes the framing and connection headers itself; remove this rule",
                ));
            }
            if FORWARDING_NAMES.contains(&lowercase.as_str()) {
                return Err(error(
                    "ringway writes the forwarding headers itself (it appends to X-Forwarded-For, Forwarded and Via, and sets X-Forwarded-Proto and X-Forwarded-Host); remove this rule",
                ));
            }
            if lowercase == "host" && matches!(rule, HeaderRule::Add { .. }) {
                return Err(error(
                    "a request carries exactly one Host; use \"set\" to replace it",
                ));
            }
            let action = match rule {
                HeaderRule::Set { name, value } => {
                    compiled.added.push(AddedField {
                        name: name.into_bytes().into(),
                        value,
                    });
                    ReceivedAction::Drop
                }
                HeaderRule::Add { name, value } => {
                    compiled.added.push(AddedField {
                        name: name.into_bytes().into(),
                        value,
                    });
                    continue;
                }
                HeaderRule::Remove { .. } => ReceivedAction::Drop,
                HeaderRule::Replace { find, with, .. } => {
                    if find.is_empty() {
                        return Err(error("replace needs a non-empty \"find\""));
                    }
                    if !is_field_value(find.as_bytes()) || !is_field_value(with.as_bytes()) {
                        return Err(error(
                            "\"find\" and \"with\" must not contain CR, LF, NUL or other control bytes",
                        ));
                    }
                    let pair = (find.into_bytes().into(), with.into_bytes().into());
                    let key = lowercase.as_bytes();
                    // Several replace rules on one name join into one rule.
                    let existing = compiled.received.iter_mut().find(|(known, _)| **known == *key);
                    match existing {
                        Some((_, ReceivedAction::Replace(rule))) => {
                            rule.pairs.push(pair);
                            continue;
                        }
                        Some(_) => {
                            return Err(error(
                                "a replace rule cannot follow a set or remove rule for the same header; keep one",
                            ));
                        }
                        None => {}
                    }
                    ReceivedAction::Replace(ReplaceRule { pairs: vec![pair] })
                }
            };
            let lowercase: Box<[u8]> = lowercase.into_bytes().into();
            if compiled
                .received
                .iter()
                .any(|(known, _)| *known == lowercase)
            {
                return Err(error(
                    "more than one set or remove rule, or a set or remove rule beside a replace rule, for this header; keep one",
                ));
            }
            compiled.received.push((lowercase, action));
        }
        Ok(compiled)
    }

    pub fn is_empty(&self) -> bool {
        self.received.is_empty() && self.added.is_empty()
    }

    /// Returns whether a set or add rule writes a field of this name (compared ignoring ASCII
    /// case).
    pub fn writes(&self, name: &[u8]) -> bool {
        self.added
            .iter()
            .any(|field| field.name.eq_ignore_ascii_case(name))
    }

    /// Returns what to do with a received field of this name (compared ignoring ASCII case).
    pub fn action(&self, name: &[u8]) -> FieldAction<'_> {
        let rule = self
            .received
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name));
        match rule {
            None => FieldAction::Keep,
            Some((_, ReceivedAction::Drop)) => FieldAction::Drop,
            Some((_, ReceivedAction::Replace(replace))) => FieldAction::Replace(replace),
        }
    }

    /// Writes every set and add field as "Name: value\r\n", in configuration order.
    ///
    /// A field whose value would contain a byte not allowed in a field value, which only a
    /// variable can bring in, is skipped and the others are still written. The first skipped
    /// field is returned so that the caller can log it.
    pub fn write_added(
        &self,
        vars: &Vars<'_>,
        sink: &mut impl Sink,
    ) -> Result<(), SkippedField<'_>> {
        let mut skipped = None;
        for field in &self.added {
            if let Some(variable) = field.value.invalid_variable(vars) {
                skipped.get_or_insert(SkippedField {
                    name: &field.name,
                    variable,
                });
                continue;
            }
            sink.put(&field.name);
            sink.put(b": ");
            field.value.write(vars, sink);
            sink.put(b"\r\n");
        }
        match skipped {
            None => Ok(()),
            Some(field) => Err(field),
        }
    }
}

/// Length of a generated request id: 16 hex digits of the process seed, 4 of the worker id
/// and 12 of the per-worker counter.
pub const REQUEST_ID_LEN: usize = 32;

/// Maximum length of a request id accepted from a client. A longer one is replaced, so that a
/// client cannot make every log line and upstream request carry a huge value.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Counter values per worker before ids repeat: 2^48, about 8.9 years at one million requests
/// per second per worker.
const REQUEST_COUNTER_MASK: u64 = (1 << 48) - 1;

/// Returns a random 64-bit seed for `RequestIdGenerator`, to be drawn once per process.
///
/// The standard library keys each `RandomState` from the operating system's random source
/// (getrandom on Linux), so hashing the time and process id with it gives a seed that differs
/// between processes and restarts.
pub fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Generates request ids for one worker without allocation or shared state.
///
/// An id is the hex of (process seed, worker id, counter), so ids differ across workers by the
/// worker id, across processes and restarts by the seed, and within a worker by the counter.
#[derive(Debug, Clone)]
pub struct RequestIdGenerator {
    /// The hex digits of the seed and the worker id, which every id of this worker starts with.
    prefix: [u8; 20],
    counter: u64,
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn write_hex(value: u64, out: &mut [u8]) {
    let mut rest = value;
    for byte in out.iter_mut().rev() {
        *byte = HEX_DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
    }
}

impl RequestIdGenerator {
    /// Creates the generator of one worker. Every worker gets the `seed` of one `random_seed`
    /// call per process.
    pub fn new(seed: u64, worker: u16) -> RequestIdGenerator {
        let mut prefix = [0; 20];
        write_hex(seed, &mut prefix[..16]);
        write_hex(u64::from(worker), &mut prefix[16..]);
        RequestIdGenerator { prefix, counter: 0 }
    }

    /// Writes the next id into `out` and returns it.
    pub fn generate<'o>(&mut self, out: &'o mut [u8; REQUEST_ID_LEN]) -> &'o [u8] {
        out[..20].copy_from_slice(&self.prefix);
        write_hex(self.counter, &mut out[20..]);
        self.counter = (self.counter + 1) & REQUEST_COUNTER_MASK;
        &out[..]
    }

    /// Returns the id the client sent if it is valid (`is_valid_request_id`), otherwise a new
    /// one written into `out`.
    pub fn accept_or_generate<'o>(
        &mut self,
        received: Option<&'o [u8]>,
        out: &'o mut [u8; REQUEST_ID_LEN],
    ) -> &'o [u8] {
        match received {
            Some(id) if is_valid_request_id(id) => id,
            _ => self.generate(out),
        }
    }
}

/// Returns whether a client-supplied request id may be forwarded and logged: 1 to
/// `MAX_REQUEST_ID_LEN` bytes of visible ASCII, so no spaces, controls or non-ASCII bytes.
pub fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn expand(template: &str, vars: &Vars<'_>) -> String {
        let template = ValueTemplate::parse(template).unwrap();
        let mut out = Vec::new();
        template.write(vars, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn vars() -> Vars<'static> {
        Vars {
            client_addr: b"192.0.2.7",
            host: b"api.example.com:8080",
            scheme: b"http",
            route: b"orders",
            request_id: b"abc123",
        }
    }

    #[test]
    fn value_template_expands_variables() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("{client_addr}", "192.0.2.7"),
            ("{scheme}://{host}/", "http://api.example.com:8080/"),
            ("route={route}; id={request_id}", "route=orders; id=abc123"),
            ("{{host}}", "{host}"),
            ("{{{host}}}", "{api.example.com:8080}"),
            ("a}}b{{c", "a}b{c"),
            ("tab\tand space", "tab\tand space"),
        ];
        for (template, expected) in cases {
            assert_eq!(expand(template, &vars()), expected, "template {template:?}");
        }
    }

    #[test]
    fn value_template_parse_errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("{hots}", 0, "unknown placeholder {hots}"),
            ("x{}", 1, "unknown placeholder {}"),
            ("{Host}", 0, "unknown placeholder {Host}"),
            ("{host", 0, "unbalanced '{'"),
            ("a}b", 1, "unbalanced '}'"),
            ("a\r\nX-Evil: 1", 1, "0x0d"),
            ("a\nb", 1, "0x0a"),
            ("a\0b", 1, "0x00"),
            ("a\x7fb", 1, "0x7f"),
            ("caf\u{e9}", 3, "0xc3"),
        ];
        for (template, at, reason) in cases {
            let error = ValueTemplate::parse(template).expect_err(template);
            assert_eq!(error.at, *at, "{template:?}: {error}");
            assert!(error.to_string().contains(reason), "{template:?}: {error}");
        }
    }

    fn set(name: &str, value: &str) -> HeaderRule {
        HeaderRule::Set {
            name: name.into(),
            value: ValueTemplate::parse(value).unwrap(),
        }
    }

    fn add(name: &str, value: &str) -> HeaderRule {
        HeaderRule::Add {
            name: name.into(),
            value: ValueTemplate::parse(value).unwrap(),
        }
    }

    fn remove(name: &str) -> HeaderRule {
        HeaderRule::Remove { name: name.into() }
    }

    fn replace(name: &str, find: &str, with: &str) -> HeaderRule {
        HeaderRule::Replace {
            name: name.into(),
            find: find.into(),
            with: with.into(),
        }
    }

    #[test]
    fn header_rules_validation() {
        let invalid: Vec<(Vec<HeaderRule>, &str)> = vec![
            (vec![set("X Name", "v")], "token"),
            (vec![set("", "v")], "token"),
            (vec![set("X-Name:", "v")], "token"),
            (vec![remove("X-A\r\nX-B")], "token"),
            (vec![set("Content-Length", "0")], "framing"),
            (vec![add("transfer-encoding", "chunked")], "framing"),
            (vec![remove("Connection")], "framing"),
            (vec![replace("Upgrade", "a", "b")], "framing"),
            (vec![replace("X-A", "", "b")], "non-empty"),
            (vec![replace("X-A", "a\r\n", "b")], "control"),
            (vec![replace("X-A", "a", "b\nX-Evil: 1")], "control"),
            (vec![set("X-A", "1"), set("x-a", "2")], "more than one"),
            (vec![add("Host", "a")], "exactly one Host"),
            (vec![set("X-Forwarded-For", "1")], "forwarding"),
            (vec![remove("via")], "forwarding"),
            (vec![replace("Forwarded", "a", "b")], "forwarding"),
            (vec![set("X-A", "1"), remove("X-A")], "more than one"),
            (
                vec![remove("X-A"), replace("X-A", "a", "b")],
                "cannot follow",
            ),
            (
                vec![replace("X-A", "a", "b"), remove("X-A")],
                "more than one",
            ),
        ];
        for (rules, reason) in invalid {
            let debug = format!("{rules:?}");
            let error = HeaderRules::new(rules).expect_err(&debug);
            assert!(error.to_string().contains(reason), "{debug}: {error}");
        }
        let valid = HeaderRules::new(vec![
            remove("X-A"),
            add("X-A", "1"),
            add("X-A", "2"),
            set("Host", "internal"),
        ]);
        assert!(valid.is_ok());
    }

    #[test]
    fn replace_rules_join() {
        let rules = HeaderRules::new(vec![
            replace("Location", "http://a.internal/", "https://gw/"),
            replace("location", "http://b.internal/", "https://gw/"),
            replace("Location", "http://a.", "never used"),
        ])
        .expect("replace rules on one name join");
        let FieldAction::Replace(rule) = rules.action(b"LOCATION") else {
            panic!("no replace action for Location");
        };
        for (value, expected) in [
            ("http://a.internal/x", "https://gw/x"),
            ("http://b.internal/y", "https://gw/y"),
            ("http://a.internal/http://b.internal/", "https://gw/https://gw/"),
            ("http://c.internal/", "http://c.internal/"),
        ] {
            let mut out = Vec::new();
            rule.write_value_replaced(value.as_bytes(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{value}");
        }
    }

    #[test]
    fn header_rules_actions() {
        let rules = HeaderRules::new(vec![
            set("X-Set", "v"),
            add("X-Add", "v"),
            remove("X-Remove"),
            replace("X-Replace", "a", "b"),
        ])
        .unwrap();
        let cases: [(&[u8], &str); 7] = [
            (b"X-Set", "drop"),
            (b"x-set", "drop"),
            (b"X-Add", "keep"),
            (b"X-REMOVE", "drop"),
            (b"x-replace", "replace"),
            (b"X-Other", "keep"),
            (b"X-Se", "keep"),
        ];
        for (name, expected) in cases {
            let action = match rules.action(name) {
                FieldAction::Keep => "keep",
                FieldAction::Drop => "drop",
                FieldAction::Replace(_) => "replace",
            };
            assert_eq!(action, expected, "name {:?}", String::from_utf8_lossy(name));
        }
        assert!(HeaderRules::new(Vec::new()).unwrap().is_empty());
        assert_eq!(HeaderRules::default().action(b"X-Any"), FieldAction::Keep);
    }

    #[test]
    fn replace_writes_every_occurrence() {
        let cases = [
            ("a", "b", "banana", "bbnbnb"),
            ("an", "AN", "banana", "bANANa"),
            ("aa", "x", "aaa", "xa"),
            (
                "internal.test",
                "example.com",
                "https://internal.test/x",
                "https://example.com/x",
            ),
            ("x", "", "xaxbx", "ab"),
            ("long-needle", "y", "short", "short"),
            ("a", "b", "", ""),
            ("A", "b", "a", "a"),
        ];
        for (find, with, value, expected) in cases {
            let rules = HeaderRules::new(vec![replace("X-A", find, with)]).unwrap();
            let FieldAction::Replace(rule) = rules.action(b"x-a") else {
                panic!("no replace action");
            };
            let mut out = Vec::new();
            rule.write_value_replaced(value.as_bytes(), &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected,
                "{find:?} in {value:?}"
            );
        }
    }

    #[test]
    fn write_added_in_order() {
        let rules = HeaderRules::new(vec![
            add("X-Forwarded-Route", "{route}"),
            set("X-Request-Id", "{request_id}"),
            remove("X-Debug"),
            add("X-Origin", "{scheme}://{host}"),
        ])
        .unwrap();
        let mut out = Vec::new();
        assert_eq!(rules.write_added(&vars(), &mut out), Ok(()));
        let expected = "X-Forwarded-Route: orders\r\n\
                        X-Request-Id: abc123\r\n\
                        X-Origin: http://api.example.com:8080\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn write_added_blocks_injection() {
        let rules = HeaderRules::new(vec![
            set("X-Host", "{host}"),
            add("X-Route", "{route}"),
            add("X-Client", "{client_addr}"),
        ])
        .unwrap();
        let hostile: [&[u8]; 5] = [
            b"evil.test\r\nX-Admin: 1",
            b"evil.test\nX-Admin: 1",
            b"evil.test\rX-Admin: 1",
            b"evil\0.test",
            b"evil\x7f.test",
        ];
        for host in hostile {
            let vars = Vars { host, ..vars() };
            let mut out = Vec::new();
            let skipped = rules
                .write_added(&vars, &mut out)
                .expect_err("injection written");
            assert_eq!(skipped.name, b"X-Host");
            assert_eq!(skipped.variable, Variable::Host);
            assert!(skipped.to_string().contains("{host}"), "{skipped}");
            let written = String::from_utf8(out).unwrap();
            assert_eq!(written, "X-Route: orders\r\nX-Client: 192.0.2.7\r\n");
        }

        // Tabs, spaces and obs-text are valid field-value bytes (RFC 9110 section 5.5).
        let vars = Vars {
            host: b"a\tb c\xff",
            ..vars()
        };
        let mut out = Vec::new();
        assert_eq!(rules.write_added(&vars, &mut out), Ok(()));
        assert!(out.starts_with(b"X-Host: a\tb c\xff\r\n"));
    }

    #[test]
    fn request_ids_unique_across_workers() {
        let seed = 0x0123_4567_89ab_cdef;
        let mut seen = HashSet::new();
        for worker in 0..4 {
            let mut generator = RequestIdGenerator::new(seed, worker);
            let mut out = [0; REQUEST_ID_LEN];
            for _ in 0..10_000 {
                let id = generator.generate(&mut out);
                assert_eq!(id.len(), REQUEST_ID_LEN);
                assert!(id.iter().all(|byte| HEX_DIGITS.contains(byte)), "{id:?}");
                assert!(seen.insert(id.to_vec()), "duplicate id {id:?}");
            }
        }
        assert_eq!(seen.len(), 40_000);
    }

    #[test]
    fn request_id_layout() {
        let mut generator = RequestIdGenerator::new(0xfeed, 3);
        let mut out = [0; REQUEST_ID_LEN];
        assert_eq!(
            generator.generate(&mut out),
            b"000000000000feed0003000000000000"
        );
        assert_eq!(
            generator.generate(&mut out),
            b"000000000000feed0003000000000001"
        );
        generator.counter = REQUEST_COUNTER_MASK;
        assert_eq!(
            generator.generate(&mut out),
            b"000000000000feed0003ffffffffffff"
        );
        assert_eq!(
            generator.generate(&mut out),
            b"000000000000feed0003000000000000"
        );
    }

    #[test]
    fn random_seeds_differ() {
        let seeds: HashSet<u64> = (0..100).map(|_| random_seed()).collect();
        assert_eq!(seeds.len(), 100);
        let first = RequestIdGenerator::new(random_seed(), 0)
            .generate(&mut [0; REQUEST_ID_LEN])
            .to_vec();
        let second = RequestIdGenerator::new(random_seed(), 0)
            .generate(&mut [0; REQUEST_ID_LEN])
            .to_vec();
        assert_ne!(first, second);
    }

    #[test]
    fn client_request_id_validation() {
        let long_valid = "a".repeat(MAX_REQUEST_ID_LEN);
        let too_long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        let cases: [(&[u8], bool); 11] = [
            (b"abc-123", true),
            (b"req:1/2_3.4~!", true),
            (long_valid.as_bytes(), true),
            (b"", false),
            (too_long.as_bytes(), false),
            (b"a b", false),
            (b"a\tb", false),
            (b"a\r\nX-Evil: 1", false),
            (b"a\0", false),
            (b"caf\xc3\xa9", false),
            (b"\x7f", false),
        ];
        for (id, expected) in cases {
            assert_eq!(
                is_valid_request_id(id),
                expected,
                "{:?}",
                String::from_utf8_lossy(id)
            );
        }

        let mut generator = RequestIdGenerator::new(1, 1);
        let mut out = [0; REQUEST_ID_LEN];
        assert_eq!(
            generator.accept_or_generate(Some(b"client-id"), &mut out),
            b"client-id"
        );
        let mut out = [0; REQUEST_ID_LEN];
        let generated = generator.accept_or_generate(Some(b"bad id"), &mut out);
        assert_eq!(generated, b"00000000000000010001000000000000");
        let mut out = [0; REQUEST_ID_LEN];
        let generated = generator.accept_or_generate(None, &mut out);
        assert_eq!(generated, b"00000000000000010001000000000001");
    }
}
