//! Matching a request to a route: the first route, in file order, whose host, method and path
//! prefix all match.

use crate::config::Route;

/// Returns the index of the first route that matches, if any.
///
/// `authority` is the request's host (absolute-form authority or Host header), possibly with a
/// port, which is ignored; hosts compare case-insensitively (RFC 3986 section 3.2.2). Methods
/// compare case-sensitively (RFC 9110 section 9.1). The path prefix compares byte for byte on the
/// target as received, so percent-encoded bytes are not decoded before matching.
pub fn find_route(
    routes: &[Route],
    authority: Option<&[u8]>,
    method: &[u8],
    path: &[u8],
) -> Option<usize> {
    let host = authority.map(host_without_port);
    routes.iter().position(|route| {
        let host_ok = match (&route.host, host) {
            (None, _) => true,
            (Some(expected), Some(host)) => host.eq_ignore_ascii_case(expected.as_bytes()),
            (Some(_), None) => false,
        };
        let method_ok = route
            .methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m.as_bytes() == method));
        host_ok && method_ok && path.starts_with(route.path_prefix.as_bytes())
    })
}

/// Strips an optional ":port" from an authority, leaving bracketed IPv6 literals whole.
pub fn host_without_port(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|&b| b == b']') {
            Some(close) => &authority[..=close],
            None => authority,
        };
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => &authority[..colon],
        None => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(
        path_prefix: &str,
        host: Option<&str>,
        methods: Option<&[&str]>,
        upstream: usize,
    ) -> Route {
        Route {
            host: host.map(str::to_string),
            methods: methods.map(|list| list.iter().map(|m| m.to_string()).collect()),
            ..Route::with_prefix(path_prefix, upstream)
        }
    }

    #[test]
    fn first_match_wins() {
        let routes = [route("/api", None, None, 0), route("/", None, None, 1)];
        assert_eq!(find_route(&routes, None, b"GET", b"/api/orders"), Some(0));
        assert_eq!(find_route(&routes, None, b"GET", b"/other"), Some(1));
    }

    #[test]
    fn no_match_returns_none() {
        let routes = [route("/api", None, None, 0)];
        assert_eq!(find_route(&routes, None, b"GET", b"/"), None);
    }

    #[test]
    fn host_match_ignores_case_and_port() {
        let routes = [route("/", Some("api.example.test"), None, 0)];
        assert_eq!(
            find_route(&routes, Some(b"API.Example.TEST:8080"), b"GET", b"/"),
            Some(0)
        );
        assert_eq!(find_route(&routes, Some(b"other.test"), b"GET", b"/"), None);
        assert_eq!(find_route(&routes, None, b"GET", b"/"), None);
    }

    #[test]
    fn ipv6_host_keeps_brackets() {
        assert_eq!(host_without_port(b"[::1]:8080"), b"[::1]");
        assert_eq!(host_without_port(b"[::1]"), b"[::1]");
        assert_eq!(host_without_port(b"example.test"), b"example.test");
    }

    #[test]
    fn methods_are_case_sensitive() {
        let routes = [route("/", None, Some(&["GET", "HEAD"]), 0)];
        assert_eq!(find_route(&routes, None, b"GET", b"/"), Some(0));
        assert_eq!(find_route(&routes, None, b"get", b"/"), None);
        assert_eq!(find_route(&routes, None, b"POST", b"/"), None);
    }

    #[test]
    fn percent_encoding_is_not_decoded() {
        let routes = [route("/a/b", None, None, 0)];
        assert_eq!(find_route(&routes, None, b"GET", b"/a%2Fb"), None);
    }
}
