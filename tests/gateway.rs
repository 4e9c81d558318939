//! Gateway features through the real binary: path templates and rewrites, route order, path
//! normalization, header rules, request ids, access lists, rate limits, balancing, passive
//! health with retries, circuit breakers and per-route timeouts.
//!
//! Origins are in-process servers on loopback port 0. The cheap exchanges run under io_uring
//! and epoll; tests that wait for timers or count failures run once, on the default driver.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DRIVERS, Driver, RawOrigin, RecordingOrigin, Reply, Response, Ringway, connect, ok_with_body,
    read_request_head, read_response, reply_with_target, send,
};
use serde_json::{Value, json};

/// The body of ringway's own 503 when no server of an upstream may take a request.
const NO_SERVER_BODY: &str =
    "503 Service Unavailable: no upstream server is available; try again later\n";

/// Length of the request ids ringway generates.
const GENERATED_ID_LEN: usize = 32;

/// Returns a config with one worker on 127.0.0.1 port 0 and the given upstreams and routes.
fn gateway_config(upstreams: Value, routes: Value) -> Value {
    json!({
        "workers": 1,
        "listen": "127.0.0.1:0",
        "upstreams": upstreams,
        "routes": routes,
    })
}

/// Like `gateway_config`, on the given I/O driver.
fn config_on(driver: Driver, upstreams: Value, routes: Value) -> Value {
    let mut config = gateway_config(upstreams, routes);
    config["driver"] = json!(driver.config_value());
    config
}

/// Returns an `upstreams` object with one upstream named `origin` and one server.
fn single(origin: SocketAddr) -> Value {
    json!({ "origin": { "servers": [origin.to_string()] } })
}

/// Returns a GET request for `target` with `Host: gw.test` and the header lines `extra`, each
/// ending in CRLF.
fn get_with(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{extra}\r\n")
}

fn get(target: &str) -> String {
    get_with(target, "")
}

/// Sends `request` on a new connection and returns the response.
fn round_trip(proxy: &Ringway, request: &str) -> Response {
    let mut stream = connect(proxy.addr);
    send(&mut stream, request.as_bytes());
    read_response(&mut stream, false)
        .unwrap_or_else(|error| panic!("no response to {request:?}: {error}"))
}

/// Starts an origin that responds to every request with 200 and `body`.
fn fixed_origin(body: &'static str) -> RecordingOrigin {
    RecordingOrigin::start(move |_| Reply::keep_open(ok_with_body(body.as_bytes())))
}

/// Returns an address on loopback where nothing listens: the port of a listener that is
/// closed again at once.
fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a probe listener");
    listener
        .local_addr()
        .expect("failed to read the probe address")
}

/// Counts the requests an origin records until none arrives for `within`.
fn drain_requests(origin: &RecordingOrigin, within: Duration) -> usize {
    let mut count = 0;
    while origin.next_request_within(within).is_some() {
        count += 1;
    }
    count
}

/// Sends one request to the admin listener and returns the body of its 200 response.
fn metrics_text(admin: SocketAddr) -> String {
    let mut stream = connect(admin);
    send(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n",
    );
    let response = read_response(&mut stream, false).expect("no metrics response");
    assert_eq!(response.status, 200, "GET /metrics");
    response.body_text()
}

/// Returns the value of the metric line that starts with `series` followed by a space.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[test]
fn templates_rewrite_paths_and_queries() {
    // (request target, target the origin must see)
    let cases = [
        ("/api/v1/orders/42", "/v2/orders/42"),
        ("/api/v1/orders/42?a=%2F&b", "/v2/orders/42?a=%2F&b"),
        ("/api/v9/orders/a%2Fb", "/v2/orders/a%2Fb"),
        ("/static/css/site.css", "/assets/css/site.css"),
        ("/static/", "/assets/"),
        ("/files/report.json", "/blobs/report"),
        ("/files/a%2Fb.json?x=%20", "/blobs/a%2Fb?x=%20"),
        ("/query?debug=1&a=%2F&v=1", "/query?a=%2F&v=2"),
        ("/query", "/query?v=2"),
        ("/svc/users?id=7&&x", "/users?id=7&&x"),
        ("/svc", "/"),
        ("/plain/a%2F%zz?q=%2f", "/plain/a%2F%zz?q=%2f"),
    ];
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(reply_with_target);
        let routes = json!([
            { "path": "/api/{version}/orders/{id}", "upstream": "origin",
              "rewrite": { "path": "/v2/orders/{id}" } },
            { "path": "/static/{*rest}", "upstream": "origin",
              "rewrite": { "path": "/assets/{rest}" } },
            { "path": "/files/{name}.json", "upstream": "origin",
              "rewrite": { "path": "/blobs/{name}" } },
            { "path_prefix": "/query", "upstream": "origin",
              "query": { "remove": ["debug"], "set": { "v": "2" } } },
            { "path_prefix": "/svc", "upstream": "origin",
              "rewrite": { "strip_prefix": "/svc" } },
            { "path_prefix": "/plain/", "upstream": "origin" },
        ]);
        let proxy = Ringway::start(&config_on(driver, single(origin.addr), routes));
        for (target, expected) in cases {
            let response = round_trip(&proxy, &get(target));
            assert_eq!(response.status, 200, "{driver:?} {target}: status");
            let seen = origin.next_request();
            assert_eq!(
                seen.request.target, expected,
                "{driver:?} {target}: target at the origin"
            );
        }

        // A placeholder inside a segment needs the literal suffix, and `{name}` one non-empty
        // segment, so these fall through to no route.
        for target in ["/files/report.xml", "/files/.json", "/api/v1/orders/"] {
            let response = round_trip(&proxy, &get(target));
            assert_eq!(response.status, 404, "{driver:?} {target}: no route");
        }
    }
}

#[test]
fn route_order_and_conditions() {
    let names = [
        "catch-all",
        "api",
        "canary",
        "exact-host",
        "wildcard-host",
        "post-only",
        "docs",
        "exact-case",
    ];
    let origins: Vec<RecordingOrigin> = names.iter().map(|name| fixed_origin(name)).collect();
    let mut upstreams = serde_json::Map::new();
    for (name, origin) in names.iter().zip(&origins) {
        upstreams.insert(
            (*name).to_owned(),
            json!({ "servers": [origin.addr.to_string()] }),
        );
    }
    // File order puts the catch-all first, so only specificity can take "/api/" past it.
    let routes = json!([
        { "name": "catch-all", "path_prefix": "/", "upstream": "catch-all" },
        { "name": "api", "path_prefix": "/api/", "upstream": "api" },
        { "name": "canary", "path_prefix": "/", "priority": 5,
          "headers": { "X-Canary": "1" }, "upstream": "canary" },
        { "name": "exact-host", "path_prefix": "/h/", "host": "shop.example.test",
          "upstream": "exact-host" },
        { "name": "wildcard-host", "path_prefix": "/h/", "host": "*.example.test",
          "upstream": "wildcard-host" },
        { "name": "post-only", "path_prefix": "/m/", "methods": ["POST"], "upstream": "post-only" },
        { "name": "docs", "path_prefix": "/Docs/", "case_sensitive": false, "upstream": "docs" },
        { "name": "exact-case", "path_prefix": "/Exact/", "upstream": "exact-case" },
    ]);
    let proxy = Ringway::start(&gateway_config(Value::Object(upstreams), routes));

    let request = |method: &str, target: &str, host: &str, extra: &str| {
        let body = if method == "POST" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n{body}{extra}\r\n")
    };
    // (method, target, Host, extra header lines, route expected)
    let cases = [
        ("GET", "/other", "gw.test", "", "catch-all"),
        ("GET", "/api/x", "gw.test", "", "api"),
        ("GET", "/api/x", "gw.test", "X-Canary: 1\r\n", "canary"),
        ("GET", "/api/x", "gw.test", "X-Canary: 2\r\n", "api"),
        ("GET", "/h/a", "shop.example.test", "", "exact-host"),
        ("GET", "/h/a", "SHOP.Example.TEST:8080", "", "exact-host"),
        ("GET", "/h/a", "a.example.test", "", "wildcard-host"),
        ("GET", "/h/a", "a.b.Example.test:81", "", "wildcard-host"),
        ("GET", "/h/a", "example.test", "", "catch-all"),
        ("GET", "/h/a", "shop.example.test.evil", "", "catch-all"),
        ("POST", "/m/a", "gw.test", "", "post-only"),
        ("GET", "/m/a", "gw.test", "", "catch-all"),
        ("GET", "/docs/a", "gw.test", "", "docs"),
        ("GET", "/DOCS/a", "gw.test", "", "docs"),
        ("GET", "/Exact/a", "gw.test", "", "exact-case"),
        ("GET", "/exact/a", "gw.test", "", "catch-all"),
    ];
    for (method, target, host, extra, expected) in cases {
        let response = round_trip(&proxy, &request(method, target, host, extra));
        assert_eq!(
            response.status, 200,
            "{method} {target} Host {host}: status"
        );
        assert_eq!(
            response.body_text(),
            expected,
            "{method} {target} Host {host} {extra:?}: route"
        );
    }
}

#[test]
fn dot_segments_route_as_resolved_path() {
    let origin = RecordingOrigin::start(reply_with_target);
    let routes = json!([
        { "path_prefix": "/admin/secret", "deny": ["127.0.0.0/8"], "upstream": "origin" },
        { "path_prefix": "/admin/", "upstream": "origin" },
        { "path_prefix": "/public/", "upstream": "origin" },
    ]);
    let proxy = Ringway::start(&gateway_config(single(origin.addr), routes));

    for target in [
        "/public/../admin/secret",
        "/public/%2e%2e/admin/secret",
        "/public/./../admin/secret/x",
    ] {
        let response = round_trip(&proxy, &get(target));
        assert_eq!(
            response.status, 403,
            "{target} must match the deny route of its resolved path"
        );
    }
    assert!(
        origin
            .next_request_within(Duration::from_millis(200))
            .is_none(),
        "a denied request reached the origin"
    );

    let response = round_trip(&proxy, &get("/public/../admin/page?q=%2F"));
    assert_eq!(response.status, 200, "resolved /admin/page: status");
    assert_eq!(
        origin.next_request().request.target,
        "/admin/page?q=%2F",
        "the origin must see the resolved path"
    );

    for target in ["/..", "/public/../../x", "/%2e%2e/x"] {
        let response = round_trip(&proxy, &get(target));
        assert_eq!(response.status, 400, "{target} climbs above the root");
    }
}

#[test]
fn header_rules_and_placeholders() {
    for driver in DRIVERS {
        let origin = RecordingOrigin::start(|_| {
            Reply::keep_open(
                &b"HTTP/1.1 200 OK\r\nServer: origin\r\nX-Served-By: spoofed\r\n\
X-Resp-Add: one\r\nLocation: http://127.0.0.1:1/next\r\nSet-Cookie: a=1; Path=/\r\n\
Set-Cookie: b=2, c=3\r\nContent-Length: 2\r\n\r\nok"[..],
            )
        });
        let routes = json!([{
            "name": "headers", "path_prefix": "/", "upstream": "origin",
            "request_headers": [
                { "set": "X-Set", "value": "v-{route}" },
                { "add": "X-Add", "value": "{client_addr}" },
                { "remove": "X-Remove" },
                { "replace": "X-Replace", "find": "internal", "with": "public" },
                { "set": "X-Host", "value": "{host}" },
                { "set": "X-Id", "value": "{request_id}" },
            ],
            "response_headers": [
                { "set": "X-Served-By", "value": "{route}" },
                { "remove": "Server" },
                { "add": "X-Resp-Add", "value": "two" },
                { "replace": "Location", "find": "http://127.0.0.1:1", "with": "https://api.example.test" },
            ],
        }]);
        let proxy = Ringway::start(&config_on(driver, single(origin.addr), routes));
        let response = round_trip(
            &proxy,
            &get_with(
                "/x",
                "X-Set: old\r\nX-Set: older\r\nX-Add: first\r\nX-Remove: gone\r\n\
X-Replace: http://internal/a\r\n",
            ),
        );
        let seen = origin.next_request().request;

        assert_eq!(
            seen.headers_named("X-Set"),
            ["v-headers"],
            "{driver:?}: set"
        );
        assert_eq!(
            seen.headers_named("X-Add"),
            ["first", "127.0.0.1"],
            "{driver:?}: add keeps the client's field"
        );
        assert!(
            seen.headers_named("X-Remove").is_empty(),
            "{driver:?}: remove"
        );
        assert_eq!(
            seen.header("X-Replace"),
            Some("http://public/a"),
            "{driver:?}: replace"
        );
        assert_eq!(
            seen.header("X-Host"),
            Some("gw.test"),
            "{driver:?}: {{host}}"
        );
        let id = seen
            .header("X-Request-Id")
            .expect("request id at the origin");
        assert_eq!(seen.header("X-Id"), Some(id), "{driver:?}: {{request_id}}");

        assert_eq!(response.status, 200, "{driver:?}: status");
        assert_eq!(
            response.headers_named("X-Served-By"),
            ["headers"],
            "{driver:?}: response set"
        );
        assert!(
            response.header("Server").is_none(),
            "{driver:?}: response remove"
        );
        assert_eq!(
            response.headers_named("X-Resp-Add"),
            ["one", "two"],
            "{driver:?}: response add"
        );
        assert_eq!(
            response.header("Location"),
            Some("https://api.example.test/next"),
            "{driver:?}: response replace"
        );
        assert_eq!(
            response.headers_named("Set-Cookie"),
            ["a=1; Path=/", "b=2, c=3"],
            "{driver:?}: Set-Cookie lines stay apart"
        );
        assert_eq!(response.body_text(), "ok", "{driver:?}: body");
    }
}

#[test]
fn request_ids_generated_kept_replaced() {
    let origin = RecordingOrigin::start(reply_with_target);
    let routes = json!([
        { "path_prefix": "/custom/", "request_id_header": "X-Correlation-Id", "upstream": "origin" },
        { "path_prefix": "/", "upstream": "origin" },
    ]);
    let proxy = Ringway::start(&gateway_config(single(origin.addr), routes));

    let response = round_trip(&proxy, &get("/a"));
    let at_origin = origin.next_request().request;
    let id = at_origin
        .header("X-Request-Id")
        .expect("no generated id at the origin");
    assert_eq!(id.len(), GENERATED_ID_LEN, "generated id {id:?}: length");
    assert!(
        id.bytes().all(|byte| byte.is_ascii_graphic()),
        "generated id {id:?}: visible ASCII"
    );
    assert_eq!(
        response.header("X-Request-Id"),
        Some(id),
        "the response must carry the id the origin saw"
    );

    let response = round_trip(&proxy, &get("/b"));
    let second = origin.next_request().request;
    assert_ne!(
        second.header("X-Request-Id"),
        Some(id),
        "two requests got the same generated id"
    );
    assert_eq!(
        response.header("X-Request-Id"),
        second.header("X-Request-Id")
    );

    let response = round_trip(&proxy, &get_with("/c", "X-Request-Id: client-42.a/b\r\n"));
    let at_origin = origin.next_request().request;
    assert_eq!(
        at_origin.headers_named("X-Request-Id"),
        ["client-42.a/b"],
        "a valid client id is kept"
    );
    assert_eq!(response.header("X-Request-Id"), Some("client-42.a/b"));

    let response = round_trip(&proxy, &get_with("/d", "X-Request-Id: has space\r\n"));
    let at_origin = origin.next_request().request;
    let ids = at_origin.headers_named("X-Request-Id");
    assert_eq!(
        ids.len(),
        1,
        "an invalid id is replaced, not added to: {ids:?}"
    );
    assert_eq!(
        ids[0].len(),
        GENERATED_ID_LEN,
        "replacement id {:?}",
        ids[0]
    );
    assert_eq!(response.header("X-Request-Id"), Some(ids[0]));

    let response = round_trip(&proxy, &get("/custom/e"));
    let at_origin = origin.next_request().request;
    let id = at_origin
        .header("X-Correlation-Id")
        .expect("no id in the route's header");
    assert_eq!(id.len(), GENERATED_ID_LEN, "route header id {id:?}");
    assert!(
        at_origin.header("X-Request-Id").is_none(),
        "the global header must not be added on a route with its own"
    );
    assert_eq!(response.header("X-Correlation-Id"), Some(id));

    let mut config = gateway_config(
        single(origin.addr),
        json!([{ "path_prefix": "/", "upstream": "origin" }]),
    );
    config["request_id"] = json!({ "header": "X-Trace", "generate": false });
    let proxy = Ringway::start(&config);
    let response = round_trip(&proxy, &get("/f"));
    let at_origin = origin.next_request().request;
    assert!(
        at_origin.header("X-Trace").is_none() && at_origin.header("X-Request-Id").is_none(),
        "generate false: the origin got an id: {:?}",
        at_origin.headers
    );
    assert!(
        response.header("X-Trace").is_none(),
        "generate false: the response got an id"
    );
    let response = round_trip(&proxy, &get_with("/g", "X-Trace: t-1\r\n"));
    assert_eq!(
        origin.next_request().request.header("X-Trace"),
        Some("t-1"),
        "generate false: a client id is still forwarded"
    );
    assert_eq!(response.header("X-Trace"), Some("t-1"));
}

/// The WebSocket handshake of RFC 6455 section 1.2, for the path `PATH`.
const UPGRADE_REQUEST: &str = "GET PATH HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn access_lists_apply_to_upgrades() {
    let origin = RecordingOrigin::start(|request| {
        if request.header("Upgrade").is_some() {
            Reply::keep_open(
                &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"[..],
            )
        } else {
            reply_with_target(request)
        }
    });
    let routes = json!([
        { "path_prefix": "/denied/", "deny": ["127.0.0.1"], "upstream": "origin" },
        { "path_prefix": "/allowed/", "allow": ["127.0.0.0/8"], "upstream": "origin" },
        { "path_prefix": "/both/", "allow": ["127.0.0.0/8"], "deny": ["127.0.0.1/32"], "upstream": "origin" },
        { "path_prefix": "/elsewhere/", "allow": ["10.0.0.0/8", "::1"], "upstream": "origin" },
    ]);
    let proxy = Ringway::start(&gateway_config(single(origin.addr), routes));

    // (target, status expected)
    let cases = [
        ("/denied/x", 403),
        ("/allowed/x", 200),
        ("/both/x", 403),
        ("/elsewhere/x", 403),
    ];
    for (target, expected) in cases {
        let response = round_trip(&proxy, &get(target));
        assert_eq!(response.status, expected, "GET {target} from 127.0.0.1");
        if expected == 200 {
            assert_eq!(origin.next_request().request.target, target);
        }
    }

    let response = round_trip(&proxy, &UPGRADE_REQUEST.replace("PATH", "/denied/ws"));
    assert_eq!(response.status, 403, "upgrade on a denied route");
    assert!(
        origin
            .next_request_within(Duration::from_millis(200))
            .is_none(),
        "a denied request reached the origin"
    );

    let response = round_trip(&proxy, &UPGRADE_REQUEST.replace("PATH", "/allowed/ws"));
    assert_eq!(response.status, 101, "upgrade on an allowed route");
    assert_eq!(
        origin.next_request().request.header("Upgrade"),
        Some("websocket")
    );
}

#[test]
fn rate_limit_burst_then_429() {
    let origin = RecordingOrigin::start(reply_with_target);
    // One token per 10 s, so no token comes back while the test runs.
    let routes = json!([
        { "path_prefix": "/limited/", "upstream": "origin",
          "rate_limit": { "requests_per_second": 0.1, "burst": 3 } },
        { "path_prefix": "/exempt/", "upstream": "origin",
          "rate_limit": { "requests_per_second": 0.1, "burst": 1, "whitelist": ["127.0.0.1"] } },
        { "path_prefix": "/keyed/", "upstream": "origin",
          "rate_limit": { "requests_per_second": 0.1, "burst": 2, "key": "header:X-Api-Key" } },
    ]);
    let proxy = Ringway::start(&gateway_config(single(origin.addr), routes));

    for attempt in 1..=3 {
        let response = round_trip(&proxy, &get("/limited/x"));
        assert_eq!(response.status, 200, "request {attempt} within the burst");
    }
    let response = round_trip(&proxy, &get("/limited/x"));
    assert_eq!(response.status, 429, "request 4 is over the burst");
    let retry_after: u64 = response
        .header("Retry-After")
        .and_then(|value| value.parse().ok())
        .expect("429 without a numeric Retry-After");
    assert!(
        (1..=10).contains(&retry_after),
        "Retry-After {retry_after} for one token per 10 s"
    );
    assert_eq!(
        response.header("RateLimit-Limit"),
        Some("3"),
        "RateLimit-Limit"
    );
    assert_eq!(
        response.header("RateLimit-Remaining"),
        Some("0"),
        "RateLimit-Remaining"
    );
    let reset: u64 = response
        .header("RateLimit-Reset")
        .and_then(|value| value.parse().ok())
        .expect("429 without a numeric RateLimit-Reset");
    assert!((1..=30).contains(&reset), "RateLimit-Reset {reset}");

    for attempt in 1..=5 {
        let response = round_trip(&proxy, &get("/exempt/x"));
        assert_eq!(response.status, 200, "whitelisted request {attempt}");
    }

    for attempt in 1..=2 {
        let response = round_trip(&proxy, &get_with("/keyed/x", "X-Api-Key: alpha\r\n"));
        assert_eq!(response.status, 200, "key alpha, request {attempt}");
    }
    let response = round_trip(&proxy, &get_with("/keyed/x", "X-Api-Key: alpha\r\n"));
    assert_eq!(response.status, 429, "key alpha, request 3");
    let response = round_trip(&proxy, &get_with("/keyed/x", "X-Api-Key: beta\r\n"));
    assert_eq!(response.status, 200, "key beta has a bucket of its own");
}

/// Starts two or three origins whose bodies are their names, and returns them with an
/// `upstreams` object of one upstream `pool` with `settings` added.
fn pool(names: &[&'static str], settings: Value) -> (Vec<RecordingOrigin>, Value) {
    let origins: Vec<RecordingOrigin> = names.iter().map(|name| fixed_origin(name)).collect();
    let servers: Vec<String> = origins
        .iter()
        .map(|origin| origin.addr.to_string())
        .collect();
    let mut upstream = settings;
    upstream["servers"] = json!(servers);
    (origins, json!({ "pool": upstream }))
}

fn pool_route() -> Value {
    json!([{ "path_prefix": "/", "upstream": "pool" }])
}

#[test]
fn round_robin_alternates() {
    let (_origins, upstreams) = pool(&["a", "b"], json!({}));
    let proxy = Ringway::start(&gateway_config(upstreams, pool_route()));
    let picks: Vec<String> = (0..10)
        .map(|_| round_trip(&proxy, &get("/")).body_text())
        .collect();
    for pair in picks.windows(2) {
        assert_ne!(pair[0], pair[1], "round robin repeated a server: {picks:?}");
    }
}

#[test]
fn weighted_round_robin_shares() {
    let (origins, mut upstreams) = pool(&["a", "b"], json!({ "balance": "weighted_round_robin" }));
    upstreams["pool"]["servers"] = json!([
        { "address": origins[0].addr.to_string(), "weight": 2 },
        { "address": origins[1].addr.to_string(), "weight": 1 },
    ]);
    let proxy = Ringway::start(&gateway_config(upstreams, pool_route()));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        *counts
            .entry(round_trip(&proxy, &get("/")).body_text())
            .or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&20), "weight 2 of 3: {counts:?}");
    assert_eq!(counts.get("b"), Some(&10), "weight 1 of 3: {counts:?}");
}

#[test]
fn hash_on_header_is_stable() {
    let (_origins, upstreams) = pool(
        &["a", "b", "c"],
        json!({ "balance": "hash", "hash_key": "header:X-User" }),
    );
    let proxy = Ringway::start(&gateway_config(upstreams, pool_route()));
    let mut used = HashMap::new();
    for user in 0..20 {
        let request = get_with("/", &format!("X-User: user-{user}\r\n"));
        let first = round_trip(&proxy, &request).body_text();
        for repeat in 1..4 {
            let again = round_trip(&proxy, &request).body_text();
            assert_eq!(again, first, "user-{user}, repeat {repeat}: server changed");
        }
        *used.entry(first).or_insert(0) += 1;
    }
    // 20 keys all on one of three servers would mean the key is not hashed at all.
    assert!(used.len() >= 2, "20 keys went to one server: {used:?}");
}

#[test]
fn sticky_cookie_pins_client() {
    let (_origins, upstreams) = pool(
        &["a", "b"],
        json!({ "balance": "sticky_cookie", "sticky_cookie": { "name": "gw_pin", "max_age_s": 600 } }),
    );
    let proxy = Ringway::start(&gateway_config(upstreams, pool_route()));

    // New clients are spread over the servers, so collect one cookie per server.
    let mut cookies: HashMap<String, String> = HashMap::new();
    for attempt in 0..20 {
        if cookies.len() == 2 {
            break;
        }
        let response = round_trip(&proxy, &get("/"));
        let set_cookie = response
            .header("Set-Cookie")
            .unwrap_or_else(|| panic!("attempt {attempt}: no Set-Cookie for a new client"))
            .to_owned();
        assert!(
            set_cookie.starts_with("gw_pin=") && set_cookie.contains("Max-Age=600"),
            "Set-Cookie {set_cookie:?}"
        );
        let pair = set_cookie.split(';').next().unwrap_or_default().to_owned();
        cookies.insert(response.body_text(), pair);
    }
    assert_eq!(
        cookies.len(),
        2,
        "new clients all went to one server: {cookies:?}"
    );

    for (server, cookie) in &cookies {
        for repeat in 0..5 {
            let request = get_with("/", &format!("Cookie: theme=dark; {cookie}\r\n"));
            let response = round_trip(&proxy, &request);
            assert_eq!(
                &response.body_text(),
                server,
                "cookie {cookie}, repeat {repeat}: the client left its server"
            );
        }
    }
}

#[test]
fn dead_server_retried_and_ejected() {
    let live = fixed_origin("live");
    let dead = dead_addr();
    let upstreams = json!({ "pair": {
        "servers": [dead.to_string(), live.addr.to_string()],
        "health": { "passive": { "max_failures": 2, "ejection_ms": 60000 } },
    }});
    let routes = json!([{ "path_prefix": "/", "upstream": "pair" }]);
    let mut config = gateway_config(upstreams, routes);
    config["admin"] = json!({ "listen": "127.0.0.1:0" });
    let proxy = Ringway::start(&config);
    let admin = proxy.admin_addr();

    for attempt in 0..10 {
        let response = round_trip(&proxy, &get(&format!("/get/{attempt}")));
        assert_eq!(
            response.status, 200,
            "GET {attempt}: a connect failure must be retried on the live server"
        );
        assert_eq!(response.body_text(), "live", "GET {attempt}: body");
    }
    let text = metrics_text(admin);
    let ejections = metric(&text, "ringway_upstream_ejections_total{upstream=\"pair\"}");
    assert_eq!(
        ejections,
        Some(1.0),
        "ejections of the dead server:\n{text}"
    );
    let retries = metric(&text, "ringway_upstream_retries_total{upstream=\"pair\"}");
    assert!(
        retries.is_some_and(|count| (1.0..=2.0).contains(&count)),
        "retries before the ejection: {retries:?}"
    );
    assert!(
        proxy
            .wait_for_log("server ejected", Duration::from_secs(2))
            .is_some(),
        "no ejection log line:\n{}",
        proxy.logs()
    );
}

#[test]
fn post_retried_after_connect_failure() {
    let live = RecordingOrigin::start(|request| {
        Reply::keep_open(ok_with_body(&request.body))
    });
    let dead = dead_addr();
    // The budget allows 3 retries a second by default, and every POST here may need one.
    let upstreams = json!({ "pair": {
        "servers": [dead.to_string(), live.addr.to_string()],
        "health": { "passive": { "max_failures": 1000 } },
        "retries": { "min_per_second": 10 },
    }});
    let routes = json!([{ "path_prefix": "/", "upstream": "pair" }]);
    let proxy = Ringway::start(&gateway_config(upstreams, routes));

    // Round robin picks the dead server for every second POST. A refused connection sent
    // nothing, so the POST goes to the live server with its body intact.
    for attempt in 0..4 {
        let post = format!(
            "POST /submit HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 6\r\n\r\nbody-{attempt}"
        );
        let response = round_trip(&proxy, &post);
        assert_eq!(response.status, 200, "POST {attempt}");
        assert_eq!(
            response.body_text(),
            format!("body-{attempt}"),
            "POST {attempt}: body at the origin"
        );
    }
}

#[test]
fn all_servers_dead_502_then_503() {
    let upstreams = json!({ "dead": {
        "servers": [dead_addr().to_string(), dead_addr().to_string()],
        "health": { "passive": { "max_failures": 1, "ejection_ms": 60000 } },
    }});
    let routes = json!([{ "path_prefix": "/", "upstream": "dead" }]);
    let proxy = Ringway::start(&gateway_config(upstreams, routes));

    let response = round_trip(&proxy, &get("/first"));
    assert_eq!(response.status, 502, "first GET: both connects fail");

    let response = round_trip(&proxy, &get("/second"));
    assert_eq!(response.status, 503, "second GET: both servers are ejected");
    assert_eq!(
        response.body_text(),
        NO_SERVER_BODY,
        "body of ringway's 503"
    );
    let retry_after: u64 = response
        .header("Retry-After")
        .and_then(|value| value.parse().ok())
        .expect("503 without a numeric Retry-After");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After {retry_after} for a 60 s ejection"
    );
}

#[test]
fn breaker_opens_and_sheds_requests() {
    const MIN_REQUESTS: usize = 4;
    let origin = RecordingOrigin::start(|_| {
        Reply::keep_open(
            &b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 11\r\n\r\norigin down"[..],
        )
    });
    let upstreams = json!({ "flaky": {
        "servers": [origin.addr.to_string()],
        // A high failure count keeps passive health from ejecting the server first.
        "health": { "passive": { "max_failures": 10000 } },
        "retries": { "attempts": 0 },
        "circuit_breaker": {
            "min_requests": MIN_REQUESTS, "failure_ratio": 0.5,
            "window_ms": 60000, "break_ms": 60000,
        },
    }});
    let routes = json!([{ "path_prefix": "/", "upstream": "flaky" }]);
    let proxy = Ringway::start(&gateway_config(upstreams, routes));

    for attempt in 1..=MIN_REQUESTS {
        let response = round_trip(&proxy, &get("/x"));
        assert_eq!(response.status, 503, "request {attempt}: the origin's 503");
        assert_eq!(
            response.body_text(),
            "origin down",
            "request {attempt}: body"
        );
    }
    assert_eq!(
        drain_requests(&origin, Duration::from_millis(200)),
        MIN_REQUESTS,
        "requests at the origin before the breaker opened"
    );
    assert!(
        proxy
            .wait_for_log("circuit breaker opened", Duration::from_secs(2))
            .is_some(),
        "no breaker log line:\n{}",
        proxy.logs()
    );

    for attempt in 1..=3 {
        let response = round_trip(&proxy, &get("/x"));
        assert_eq!(response.status, 503, "open breaker, request {attempt}");
        assert_eq!(
            response.body_text(),
            NO_SERVER_BODY,
            "open breaker, request {attempt}: the 503 must come from ringway"
        );
    }
    assert_eq!(
        drain_requests(&origin, Duration::from_millis(200)),
        0,
        "an open breaker let requests through to the origin"
    );
}

#[test]
fn route_head_timeout_gives_504() {
    let requests_held = Arc::new(AtomicUsize::new(0));
    let origin = {
        let requests_held = Arc::clone(&requests_held);
        RawOrigin::start(move |mut stream: TcpStream, _| {
            if read_request_head(&mut stream).is_ok() {
                requests_held.fetch_add(1, Ordering::SeqCst);
                // Respond only after ringway's head timeout, holding the connection until then.
                thread::sleep(Duration::from_secs(3));
                let _ = stream.write_all(&ok_with_body(b"late"));
            }
        })
    };
    let routes = json!([
        { "path_prefix": "/", "upstream": "origin", "timeouts": { "upstream_head_ms": 300 } },
    ]);
    let proxy = Ringway::start(&gateway_config(single(origin.addr), routes));

    let started = Instant::now();
    let response = round_trip(&proxy, &get("/slow"));
    let elapsed = started.elapsed();
    assert_eq!(
        response.status, 504,
        "silent origin behind a 300 ms head timeout"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(1),
        "504 after {elapsed:?}, expected about 300 ms"
    );
    assert_eq!(
        requests_held.load(Ordering::SeqCst),
        1,
        "the request reached the origin once"
    );
}

/// Probes sent every `ACTIVE_INTERVAL_MS` in the active health test.
const ACTIVE_INTERVAL_MS: u64 = 100;

/// Time for the failed or passed probes in a row that change a server's state, with room for
/// a loaded machine.
const ACTIVE_SETTLE: Duration = Duration::from_millis(1500);

#[test]
fn active_checks_take_server_out_and_back() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let healthy = Arc::new(AtomicBool::new(false));
    let a = fixed_origin("a");
    let b = {
        let healthy = Arc::clone(&healthy);
        RecordingOrigin::start(move |request| {
            let status_ok = healthy.load(Ordering::SeqCst);
            if request.target == "/health" && !status_ok {
                Reply::keep_open(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec(),
                )
            } else {
                Reply::keep_open(ok_with_body(b"b"))
            }
        })
    };
    let upstreams = json!({ "pool": {
        "servers": [a.addr.to_string(), b.addr.to_string()],
        "health": { "active": {
            "path": "/health",
            "interval_ms": ACTIVE_INTERVAL_MS,
            "timeout_ms": ACTIVE_INTERVAL_MS,
            "unhealthy_threshold": 2,
            "healthy_threshold": 2,
        } },
    } });
    let proxy = Ringway::start(&gateway_config(upstreams, pool_route()));
    thread::sleep(ACTIVE_SETTLE);

    let probe = b.next_request().request;
    assert_eq!(probe.target, "/health", "first request at b is a probe");
    assert_eq!(
        probe.header("User-Agent"),
        Some("ringway-health"),
        "probe user agent"
    );
    for _ in 0..10 {
        let response = round_trip(&proxy, &get("/work"));
        assert_eq!(response.status, 200, "status while b fails its checks");
        assert_eq!(response.body_text(), "a", "b got a request while unhealthy");
    }
    assert!(
        proxy.logs().contains("server failed its health checks"),
        "no log line for the failed checks: {}",
        proxy.logs()
    );

    healthy.store(true, Ordering::SeqCst);
    thread::sleep(ACTIVE_SETTLE);
    let picks: Vec<String> = (0..10)
        .map(|_| round_trip(&proxy, &get("/work")).body_text())
        .collect();
    assert!(
        picks.iter().any(|pick| pick == "b"),
        "b got no request after passing its checks again: {picks:?}"
    );
}

#[test]
fn host_rules_send_one_host() {
    let origin = RecordingOrigin::start(reply_with_target);
    let upstreams = single(origin.addr);
    let routes = json!([
        { "path_prefix": "/set/", "upstream": "origin",
          "request_headers": [{ "set": "Host", "value": "internal.svc" }] },
        { "path_prefix": "/remove/", "upstream": "origin",
          "request_headers": [{ "remove": "Host" }] },
        { "path_prefix": "/replace/", "upstream": "origin",
          "request_headers": [{ "replace": "Host", "find": "gw", "with": "backend" }] },
    ]);
    let proxy = Ringway::start(&gateway_config(upstreams, routes));
    let cases = [
        ("/set/x", "internal.svc".to_string()),
        ("/remove/x", origin.addr.to_string()),
        ("/replace/x", "backend.test".to_string()),
    ];
    for (target, expected) in cases {
        let response = round_trip(&proxy, &get(target));
        assert_eq!(response.status, 200, "{target}: status");
        let seen = origin.next_request().request;
        assert_eq!(seen.headers_named("Host"), vec![expected.as_str()], "{target}: Host");
        assert_eq!(
            seen.headers_named("X-Forwarded-Host"),
            vec!["gw.test"],
            "{target}: X-Forwarded-Host keeps the client's host"
        );
    }
}

#[test]
fn ringway_errors_carry_request_id() {
    let upstreams = json!({ "dead": { "servers": [dead_addr().to_string()] } });
    let routes = json!([{ "path_prefix": "/", "upstream": "dead" }]);
    let proxy = Ringway::start(&gateway_config(upstreams, routes));

    let response = round_trip(&proxy, &get_with("/", "X-Request-Id: client-id-1\r\n"));
    assert_eq!(response.status, 502, "refused upstream");
    assert_eq!(
        response.header("X-Request-Id"),
        Some("client-id-1"),
        "the client's id on ringway's 502"
    );

    let response = round_trip(&proxy, &get("/"));
    assert_eq!(response.status, 502, "refused upstream");
    let generated = response.header("X-Request-Id").unwrap_or("");
    assert_eq!(generated.len(), GENERATED_ID_LEN, "generated id on ringway's 502: {generated:?}");
}
