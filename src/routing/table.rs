//! The route table: finds the route for a request by host, method, headers and path.
//!
//! Routes are tried in one order, computed when the table is built. Higher priority comes first.
//! Among equal priorities, the more specific host comes first (exact, then wildcard by length,
//! then any), then the more specific path (`Specificity`), then the route with more method and
//! header conditions. File order breaks the remaining ties.

use std::cmp::Reverse;
use std::fmt;
use std::net::Ipv6Addr;

use crate::routing::template::{Captures, PathTemplate, Specificity, starts_with};

/// The hosts a route accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// No host condition: every request, with or without a host.
    Any,
    /// One name or IPv4 address, stored in lowercase.
    Exact(Box<[u8]>),
    /// `*.example.com`: one or more labels before the suffix, stored as ".example.com" in
    /// lowercase. The bare suffix "example.com" does not match.
    Wildcard(Box<[u8]>),
    /// A bracketed IPv6 literal, compared as an address so that "[::1]" matches "[0:0::1]".
    Ipv6(Ipv6Addr),
}

/// A host pattern that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl fmt::Display for HostPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid host pattern {:?}: {}",
            self.pattern, self.reason
        )
    }
}

impl std::error::Error for HostPatternError {}

/// Returns whether `name` is a dot-separated list of non-empty labels of ASCII letters, digits,
/// '-' and '_' (RFC 1123 host names, plus the '_' that service names use).
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

impl HostPattern {
    /// Parses "api.example.com", "*.example.com", "192.0.2.1" or "[2001:db8::1]". A pattern
    /// has no port, because the port of the request is ignored, and one trailing dot is dropped.
    pub fn parse(pattern: &str) -> Result<HostPattern, HostPatternError> {
        let error = |reason| HostPatternError {
            pattern: pattern.to_string(),
            reason,
        };

        if let Some(inner) = pattern.strip_prefix('[') {
            let address = inner
                .strip_suffix(']')
                .and_then(|address| address.parse::<Ipv6Addr>().ok())
                .ok_or_else(|| {
                    error("an IPv6 literal must be one address in brackets, as in [2001:db8::1]")
                })?;
            return Ok(HostPattern::Ipv6(address));
        }
        if pattern.parse::<Ipv6Addr>().is_ok() {
            return Err(error("write an IPv6 address in brackets, as in [::1]"));
        }
        if pattern.contains(':') {
            return Err(error("remove the port; the port of the request is ignored"));
        }

        let name = pattern.strip_suffix('.').unwrap_or(pattern);
        if let Some(suffix) = name.strip_prefix("*.") {
            if !is_host_name(suffix) {
                return Err(error(
                    "a wildcard must be \"*.\" followed by a host name, as in *.example.com",
                ));
            }
            let stored = format!(".{}", suffix.to_ascii_lowercase());
            return Ok(HostPattern::Wildcard(
                stored.into_bytes().into_boxed_slice(),
            ));
        }
        if name.contains('*') {
            return Err(error(
                "'*' may only stand for the leftmost labels, as in *.example.com",
            ));
        }
        if !is_host_name(name) {
            return Err(error(
                "use a host name of letters, digits, '-' and '.', an IPv4 address or a bracketed IPv6 address",
            ));
        }
        Ok(HostPattern::Exact(
            name.to_ascii_lowercase().into_bytes().into_boxed_slice(),
        ))
    }

    /// Returns whether the request authority (Host header or absolute-form authority, with or
    /// without a port) matches. `None` means the request named no host.
    pub fn matches(&self, authority: Option<&[u8]>) -> bool {
        if *self == HostPattern::Any {
            return true;
        }
        let Some(authority) = authority else {
            return false;
        };
        let host = host_without_port(authority);
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(name) => without_trailing_dot(host).eq_ignore_ascii_case(name),
            HostPattern::Wildcard(suffix) => {
                let host = without_trailing_dot(host);
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            HostPattern::Ipv6(address) => parse_ipv6_literal(host) == Some(*address),
        }
    }

    /// Ranks host conditions for route order: greater is more specific.
    fn specificity(&self) -> (u8, usize) {
        match self {
            HostPattern::Exact(_) | HostPattern::Ipv6(_) => (2, 0),
            HostPattern::Wildcard(suffix) => (1, suffix.len()),
            HostPattern::Any => (0, 0),
        }
    }
}

/// Strips an optional ":port" from an authority, leaving a bracketed IPv6 literal whole.
fn host_without_port(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|&byte| byte == b']') {
            Some(close) => &authority[..=close],
            None => authority,
        };
    }
    match authority.iter().rposition(|&byte| byte == b':') {
        Some(colon) => &authority[..colon],
        None => authority,
    }
}

/// Drops the dot of a fully qualified name ("example.com."), which names the same host.
fn without_trailing_dot(host: &[u8]) -> &[u8] {
    host.strip_suffix(b".").unwrap_or(host)
}

fn parse_ipv6_literal(host: &[u8]) -> Option<Ipv6Addr> {
    let inner = host.strip_prefix(b"[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// The path condition of a route.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path starts with these bytes ("/api" also matches "/apiary").
    Prefix(String),
    Template(PathTemplate),
}

impl PathMatch {
    pub fn specificity(&self) -> Specificity {
        match self {
            PathMatch::Prefix(prefix) => Specificity::of_prefix(prefix),
            PathMatch::Template(template) => template.specificity(),
        }
    }
}

/// The conditions of one route, as configured.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub host: HostPattern,
    pub path: PathMatch,
    /// Accepted methods, compared case-sensitively (RFC 9110 section 9.1). `None` accepts all.
    pub methods: Option<Vec<String>>,
    /// Headers the request must carry with exactly these values.
    pub headers: Vec<(String, String)>,
    pub priority: i32,
    /// Whether path literals compare byte for byte. False compares ASCII letters ignoring case.
    pub case_sensitive: bool,
}

impl RouteSpec {
    fn matches<'v>(
        &self,
        host: Option<&[u8]>,
        method: &[u8],
        path: &[u8],
        header: &impl Fn(&[u8]) -> Option<&'v [u8]>,
        captures: &mut Captures,
    ) -> bool {
        if !self.host.matches(host) {
            return false;
        }
        let method_ok = self
            .methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|known| known.as_bytes() == method));
        if !method_ok {
            return false;
        }
        let path_ok = match &self.path {
            PathMatch::Prefix(prefix) => starts_with(path, prefix.as_bytes(), self.case_sensitive),
            PathMatch::Template(template) => template.matches(path, self.case_sensitive, captures),
        };
        // Headers come last because each lookup scans the request's fields.
        path_ok
            && self
                .headers
                .iter()
                .all(|(name, value)| header(name.as_bytes()) == Some(value.as_bytes()))
    }
}

/// The routes of a configuration with their matching order, computed once.
#[derive(Debug, Clone)]
pub struct RouteTable {
    specs: Vec<RouteSpec>,
    /// Indexes into `specs` in the order `find` tries them.
    order: Vec<usize>,
}

impl RouteTable {
    pub fn new(specs: Vec<RouteSpec>) -> RouteTable {
        let mut order: Vec<usize> = (0..specs.len()).collect();
        // A stable sort keeps file order among routes that rank the same.
        order.sort_by_key(|&index| {
            let spec = &specs[index];
            let conditions = usize::from(spec.methods.is_some()) + spec.headers.len();
            Reverse((
                spec.priority,
                spec.host.specificity(),
                spec.path.specificity(),
                conditions,
            ))
        });
        RouteTable { specs, order }
    }

    /// Returns the routes in file order.
    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    /// Returns the route indexes in the order `find` tries them.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Finds the first route, in table order, that matches the request, and returns its index
    /// in file order. `captures` then contains the template captures (none for a prefix route).
    ///
    /// `host` is the request authority (a port is ignored), `path` the path without the query,
    /// and `header` returns the value of the first request header with the given name, which it
    /// must compare ignoring ASCII case. Header values compare exactly.
    pub fn find<'v>(
        &self,
        host: Option<&[u8]>,
        method: &[u8],
        path: &[u8],
        header: impl Fn(&[u8]) -> Option<&'v [u8]>,
        captures: &mut Captures,
    ) -> Option<usize> {
        for &index in &self.order {
            captures.clear();
            if self.specs[index].matches(host, method, path, &header, captures) {
                return Some(index);
            }
        }
        captures.clear();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str) -> RouteSpec {
        let path = if path.contains('{') {
            PathMatch::Template(PathTemplate::parse(path).unwrap())
        } else {
            PathMatch::Prefix(path.to_string())
        };
        RouteSpec {
            host: HostPattern::Any,
            path,
            methods: None,
            headers: Vec::new(),
            priority: 0,
            case_sensitive: true,
        }
    }

    fn with_host(mut spec: RouteSpec, host: &str) -> RouteSpec {
        spec.host = HostPattern::parse(host).unwrap();
        spec
    }

    fn no_headers(_: &[u8]) -> Option<&'static [u8]> {
        None
    }

    fn find(table: &RouteTable, host: Option<&str>, path: &str) -> Option<usize> {
        let mut captures = Captures::new();
        table.find(
            host.map(str::as_bytes),
            b"GET",
            path.as_bytes(),
            no_headers,
            &mut captures,
        )
    }

    #[test]
    fn host_pattern_parse_errors() {
        let invalid = [
            "",
            "*",
            "*.",
            "a.*.com",
            "*example.com",
            "api.example.com:8080",
            "::1",
            "[::1",
            "[::1]:80",
            "[not-an-address]",
            "a..b",
            "exa mple.com",
            "ex/ample.com",
        ];
        for pattern in invalid {
            assert!(HostPattern::parse(pattern).is_err(), "{pattern:?} parsed");
        }
        let message = HostPattern::parse("a.test:80").unwrap_err().to_string();
        assert!(message.contains("\"a.test:80\""), "{message}");
        assert!(message.contains("remove the port"), "{message}");
    }

    #[test]
    fn host_pattern_matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("api.example.com", "api.example.com", true),
            ("api.example.com", "API.Example.COM", true),
            ("API.example.com", "api.example.com", true),
            ("api.example.com", "api.example.com:8080", true),
            ("api.example.com", "api.example.com.", true),
            ("api.example.com.", "api.example.com", true),
            ("api.example.com", "example.com", false),
            ("api.example.com", "xapi.example.com", false),
            ("api.example.com", "api.example.com.evil", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "A.EXAMPLE.com:443", true),
            ("*.example.com", "a.example.com.", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "a.example.org", false),
            ("192.0.2.1", "192.0.2.1:80", true),
            ("192.0.2.1", "192.0.2.10", false),
            ("[::1]", "[::1]", true),
            ("[::1]", "[::1]:8080", true),
            ("[::1]", "[0:0:0:0:0:0:0:1]:8080", true),
            ("[2001:DB8::1]", "[2001:db8::1]", true),
            ("[::1]", "[::2]", false),
            ("[::1]", "::1", false),
            ("[::1]", "[::1", false),
            ("[::1]", "localhost", false),
        ];
        for (pattern, authority, expected) in cases {
            let host = HostPattern::parse(pattern).unwrap();
            assert_eq!(
                host.matches(Some(authority.as_bytes())),
                *expected,
                "pattern {pattern:?} on authority {authority:?}"
            );
        }
    }

    #[test]
    fn host_pattern_without_request_host() {
        assert!(HostPattern::Any.matches(None));
        assert!(!HostPattern::parse("a.test").unwrap().matches(None));
        assert!(!HostPattern::parse("*.test").unwrap().matches(None));
    }

    #[test]
    fn priority_wins_over_specificity() {
        let mut low = spec("/api/orders");
        low.priority = -1;
        let mut high = spec("/");
        high.priority = 5;
        let table = RouteTable::new(vec![low, high, spec("/api")]);
        assert_eq!(find(&table, None, "/api/orders"), Some(1));
        assert_eq!(table.order(), [1, 2, 0]);
    }

    #[test]
    fn specific_path_wins_over_file_order() {
        let table = RouteTable::new(vec![
            spec("/"),
            spec("/api/{*rest}"),
            spec("/api/users/{id}"),
            spec("/api/users/me"),
        ]);
        let cases = [
            ("/api/users/me", Some(3)),
            ("/api/users/42", Some(2)),
            ("/api/users/42/x", Some(1)),
            ("/api/", Some(1)),
            ("/other", Some(0)),
        ];
        for (path, expected) in cases {
            assert_eq!(find(&table, None, path), expected, "path {path:?}");
        }
    }

    #[test]
    fn equal_rank_keeps_file_order() {
        let table = RouteTable::new(vec![spec("/a/{x}"), spec("/a/{y}"), spec("/b"), spec("/b")]);
        assert_eq!(find(&table, None, "/a/1"), Some(0));
        assert_eq!(find(&table, None, "/b"), Some(2));
        assert_eq!(table.order(), [0, 1, 2, 3]);
    }

    #[test]
    fn host_ranks_before_path() {
        let table = RouteTable::new(vec![
            spec("/api"),
            with_host(spec("/"), "*.example.com"),
            with_host(spec("/"), "api.example.com"),
            with_host(spec("/"), "*.eu.example.com"),
        ]);
        let cases = [
            (Some("api.example.com"), "/api", Some(2)),
            (Some("x.eu.example.com"), "/api", Some(3)),
            (Some("x.example.com"), "/api", Some(1)),
            (Some("other.test"), "/api", Some(0)),
            (None, "/api", Some(0)),
            (None, "/", None),
        ];
        for (host, path, expected) in cases {
            assert_eq!(find(&table, host, path), expected, "{host:?} {path:?}");
        }
    }

    #[test]
    fn methods_are_case_sensitive() {
        let mut get = spec("/");
        get.methods = Some(vec!["GET".into(), "HEAD".into()]);
        let table = RouteTable::new(vec![get]);
        let mut captures = Captures::new();
        let cases: [(&[u8], Option<usize>); 4] = [
            (b"GET", Some(0)),
            (b"HEAD", Some(0)),
            (b"get", None),
            (b"POST", None),
        ];
        for (method, expected) in cases {
            let found = table.find(None, method, b"/", no_headers, &mut captures);
            assert_eq!(
                found,
                expected,
                "method {:?}",
                String::from_utf8_lossy(method)
            );
        }
    }

    #[test]
    fn headers_match_name_any_case_value_exact() {
        // Received header fields as (name, value) pairs.
        type Fields = &'static [(&'static [u8], &'static [u8])];
        let mut blue = spec("/");
        blue.headers = vec![("X-Tenant".into(), "blue".into())];
        let mut blue_prod = spec("/");
        blue_prod.headers = vec![
            ("X-Tenant".into(), "blue".into()),
            ("x-env".into(), "prod".into()),
        ];
        let table = RouteTable::new(vec![spec("/"), blue, blue_prod]);

        let lookup = |fields: Fields| {
            move |name: &[u8]| {
                fields
                    .iter()
                    .find(|(field, _)| field.eq_ignore_ascii_case(name))
                    .map(|(_, value)| *value)
            }
        };
        let mut captures = Captures::new();

        let cases: [(Fields, usize); 7] = [
            (&[(b"x-tenant", b"blue")], 1),
            (&[(b"X-Tenant", b"blue"), (b"X-Env", b"prod")], 2),
            (&[(b"X-Env", b"prod"), (b"X-Tenant", b"blue")], 2),
            (&[(b"X-Env", b"prod")], 0),
            (&[(b"X-TENANT", b"blue")], 1),
            (&[(b"X-Tenant", b"Blue")], 0),
            (&[(b"X-Tenant", b"blue ")], 0),
        ];
        for (fields, expected) in cases {
            let found = table.find(None, b"GET", b"/", lookup(fields), &mut captures);
            assert_eq!(found, Some(expected), "headers {fields:?}");
        }
        assert_eq!(find(&table, None, "/"), Some(0));
    }

    #[test]
    fn prefix_respects_case_sensitivity() {
        let mut insensitive = spec("/Admin");
        insensitive.case_sensitive = false;
        let table = RouteTable::new(vec![spec("/API"), insensitive]);
        let cases = [
            ("/API/x", Some(0)),
            ("/api/x", None),
            ("/admin/x", Some(1)),
            ("/ADMIN", Some(1)),
            ("/adm", None),
        ];
        for (path, expected) in cases {
            assert_eq!(find(&table, None, path), expected, "path {path:?}");
        }
    }

    #[test]
    fn find_returns_captures_of_matched_route() {
        let table = RouteTable::new(vec![
            spec("/orders/{id}/items/{item}"),
            spec("/orders/{id}"),
            spec("/"),
        ]);
        let mut captures = Captures::new();
        let path = b"/orders/17";
        let found = table.find(None, b"GET", path, no_headers, &mut captures);
        assert_eq!(found, Some(1));
        assert_eq!(captures.len(), 1);
        assert_eq!(captures.value(0, path), Some(&b"17"[..]));

        let path = b"/orders/17/items/3";
        let found = table.find(None, b"GET", path, no_headers, &mut captures);
        assert_eq!(found, Some(0));
        assert_eq!(captures.value(1, path), Some(&b"3"[..]));

        let found = table.find(None, b"GET", b"/x", no_headers, &mut captures);
        assert_eq!(found, Some(2));
        assert!(captures.is_empty());
    }

    #[test]
    fn no_match_returns_none() {
        let table = RouteTable::new(vec![spec("/api"), with_host(spec("/"), "a.test")]);
        assert_eq!(find(&table, None, "/"), None);
        assert_eq!(find(&table, Some("b.test"), "/"), None);
        assert_eq!(find(&RouteTable::new(Vec::new()), None, "/"), None);
    }
}
