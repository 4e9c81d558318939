//! Operations: configuration reload (SIGHUP and POST /reload), drain on SIGTERM, the admin
//! endpoints, metrics after known traffic, and the access log.

mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{
    DRIVERS, Driver, RawOrigin, RecordingOrigin, Reply, Ringway, TIMEOUT, config_for, connect,
    ok_with_body, read_request_head, read_response, send, wait_for_close,
};

/// Client threads of the reload test, each with its own keep-alive connection.
const LOAD_THREADS: usize = 4;

/// Upper bound on requests per load thread, so the load loop ends even if a check hangs.
const MAX_REQUESTS_PER_THREAD: usize = 5_000;

/// How long the logs may take to show an expected line.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// Starts an origin that responds to every request with 200 and `body`, keeping connections open.
fn origin_answering(body: &'static [u8]) -> RecordingOrigin {
    RecordingOrigin::start(move |_| Reply::keep_open(ok_with_body(body)))
}

/// Sends one GET on `stream` and returns the response status and body.
fn get(stream: &mut TcpStream, path: &str) -> io::Result<(u16, Vec<u8>)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let response = read_response(stream, false)?;
    Ok((response.status, response.body))
}

/// Sends one request to the admin listener and returns (status, headers, body).
fn admin_request(admin: SocketAddr, method: &str, path: &str) -> (u16, common::Response) {
    let mut stream = connect(admin);
    let request = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    send(&mut stream, request.as_bytes());
    let response = read_response(&mut stream, method == "HEAD")
        .unwrap_or_else(|error| panic!("{method} {path}: no response: {error}"));
    (response.status, response)
}

fn metrics_text(admin: SocketAddr) -> String {
    let (status, response) = admin_request(admin, "GET", "/metrics");
    assert_eq!(status, 200, "GET /metrics");
    response.body_text()
}

/// Returns the value of the metric line that starts with `series` followed by a space.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

fn with_admin(mut config: Value) -> Value {
    config["admin"] = json!({ "listen": "127.0.0.1:0" });
    config
}

#[test]
fn reload_under_load_switches_route() {
    for driver in DRIVERS {
        let first = origin_answering(b"first");
        let second = origin_answering(b"second");
        let mut config = config_for(first.addr, driver);
        config["workers"] = json!(2);
        let ringway = Ringway::start(&config);

        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let seen_second = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for _ in 0..LOAD_THREADS {
            let (stop, failures, seen_second) =
                (stop.clone(), failures.clone(), seen_second.clone());
            let addr = ringway.addr;
            threads.push(thread::spawn(move || {
                let mut stream = connect(addr);
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) && sent < MAX_REQUESTS_PER_THREAD {
                    sent += 1;
                    match get(&mut stream, "/load") {
                        Ok((200, body)) if body == b"second" => {
                            seen_second.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((200, body)) if body == b"first" => {}
                        _ => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            stream = connect(addr);
                        }
                    }
                }
                sent
            }));
        }

        thread::sleep(Duration::from_millis(200));
        config["upstreams"]["origin"]["servers"] = json!([second.addr.to_string()]);
        config["workers"] = json!(1);
        ringway.rewrite_config(&config);
        ringway.signal(libc::SIGHUP);
        assert!(
            ringway
                .wait_for_log("configuration reloaded (generation 2)", LOG_WAIT)
                .is_some(),
            "{driver:?}: no reload line; output:\n{}",
            ringway.logs()
        );
        assert!(
            ringway
                .wait_for_log("restart needed for workers", LOG_WAIT)
                .is_some(),
            "{driver:?}: a changed worker count must be reported"
        );

        // A bad file is rejected and the second origin keeps serving.
        thread::sleep(Duration::from_millis(200));
        let mut bad = config.clone();
        bad["timeouts"] = json!({ "connect_ms": 0 });
        bad["routes"][0]["upstream"] = json!("missing");
        ringway.rewrite_config(&bad);
        ringway.signal(libc::SIGHUP);
        let error_line = ringway
            .wait_for_log("running configuration stays", LOG_WAIT)
            .unwrap_or_else(|| panic!("{driver:?}: no reload error; output:\n{}", ringway.logs()));
        assert!(error_line.contains("timeouts.connect_ms"), "{error_line}");
        assert!(error_line.contains("routes[0].upstream"), "{error_line}");
        thread::sleep(Duration::from_millis(200));
        let after_bad_reload = seen_second.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(200));

        stop.store(true, Ordering::SeqCst);
        let total: usize = threads
            .into_iter()
            .map(|t| t.join().expect("load thread"))
            .sum();
        assert_eq!(
            failures.load(Ordering::SeqCst),
            0,
            "{driver:?}: failed requests out of {total}"
        );
        assert!(
            after_bad_reload > 0,
            "{driver:?}: the reloaded route never took effect"
        );
        assert!(
            seen_second.load(Ordering::SeqCst) > after_bad_reload,
            "{driver:?}: requests stopped reaching the reloaded route after a bad file"
        );
        let mut stream = connect(ringway.addr);
        assert_eq!(
            get(&mut stream, "/after").unwrap(),
            (200, b"second".to_vec()),
            "{driver:?}"
        );
    }
}

#[test]
fn reload_through_admin_endpoint() {
    let first = origin_answering(b"first");
    let second = origin_answering(b"second");
    let mut config = with_admin(config_for(first.addr, Driver::Epoll));
    let ringway = Ringway::start(&config);
    let admin = ringway.admin_addr();
    let mut stream = connect(ringway.addr);
    assert_eq!(get(&mut stream, "/").unwrap(), (200, b"first".to_vec()));

    config["upstreams"]["origin"]["servers"] = json!([second.addr.to_string()]);
    ringway.rewrite_config(&config);
    let (status, response) = admin_request(admin, "POST", "/reload");
    assert_eq!(status, 200, "{}", response.body_text());
    assert!(
        response.body_text().contains("generation 2"),
        "{}",
        response.body_text()
    );
    // The same keep-alive connection takes the new generation for its next request.
    assert_eq!(get(&mut stream, "/").unwrap(), (200, b"second".to_vec()));

    ringway.rewrite_config(&json!({ "workers": 1 }));
    let (status, response) = admin_request(admin, "POST", "/reload");
    assert_eq!(status, 500);
    assert!(
        response.body_text().contains("listen"),
        "{}",
        response.body_text()
    );
    assert_eq!(get(&mut stream, "/").unwrap(), (200, b"second".to_vec()));

    let text = metrics_text(admin);
    assert_eq!(
        metric(&text, "ringway_config_generation"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "ringway_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "ringway_config_reloads_total{result=\"failed\"}"),
        Some(1.0)
    );
}

#[test]
fn reload_keeps_idle_upstream_connections() {
    let origin = origin_answering(b"kept");
    let other = origin_answering(b"other");
    let mut config = config_for(origin.addr, Driver::IoUring);
    let ringway = Ringway::start(&config);
    let mut stream = connect(ringway.addr);
    assert_eq!(get(&mut stream, "/").unwrap().0, 200);

    // A second upstream is added; the first keeps its server, so its pooled connection stays.
    config["upstreams"]["other"] = json!({ "servers": [other.addr.to_string()] });
    config["routes"] = json!([
        { "path_prefix": "/other", "upstream": "other" },
        { "path_prefix": "/", "upstream": "origin" },
    ]);
    ringway.rewrite_config(&config);
    ringway.signal(libc::SIGHUP);
    assert!(ringway.wait_for_log("generation 2", LOG_WAIT).is_some());
    assert_eq!(get(&mut stream, "/").unwrap(), (200, b"kept".to_vec()));
    assert_eq!(
        get(&mut stream, "/other").unwrap(),
        (200, b"other".to_vec())
    );
    assert_eq!(
        origin.connections(),
        1,
        "the idle upstream connection was not reused"
    );
}

/// Starts an origin that sends its response head after `head_delay`, then a body of
/// `BODY_PIECES` pieces, one per `piece_delay`.
fn slow_origin(head_delay: Duration, piece_delay: Duration) -> RawOrigin {
    RawOrigin::start(move |mut stream, _| {
        while read_request_head(&mut stream).is_ok() {
            thread::sleep(head_delay);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                BODY_PIECES * 10
            );
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            for _ in 0..BODY_PIECES {
                thread::sleep(piece_delay);
                if stream.write_all(b"0123456789").is_err() {
                    return;
                }
            }
        }
    })
}

const BODY_PIECES: usize = 5;

#[test]
fn drain_finishes_in_flight_requests() {
    for driver in DRIVERS {
        let origin = slow_origin(Duration::from_millis(300), Duration::from_millis(100));
        let config = with_admin(config_for(origin.addr, driver));
        let mut ringway = Ringway::start(&config);
        let admin = ringway.admin_addr();

        // An idle keep-alive connection, which the drain closes at once.
        let mut idle = connect(ringway.addr);
        send(&mut idle, b"GET /first HTTP/1.1\r\nHost: test\r\n\r\n");
        let first = read_response(&mut idle, false).expect("first response");
        assert_eq!(first.status, 200);

        // A download whose head is out, and a request still waiting for its head.
        let mut downloading = connect(ringway.addr);
        send(
            &mut downloading,
            b"GET /download HTTP/1.1\r\nHost: test\r\n\r\n",
        );
        thread::sleep(Duration::from_millis(400));
        let mut waiting = connect(ringway.addr);
        send(&mut waiting, b"GET /waiting HTTP/1.1\r\nHost: test\r\n\r\n");
        thread::sleep(Duration::from_millis(50));

        ringway.signal(libc::SIGTERM);
        assert!(
            ringway.wait_for_log("draining", LOG_WAIT).is_some(),
            "{driver:?}: no drain line; output:\n{}",
            ringway.logs()
        );
        let (status, _) = admin_request(admin, "GET", "/readyz");
        assert_eq!(status, 503, "{driver:?}: /readyz while draining");
        let (status, _) = admin_request(admin, "GET", "/healthz");
        assert_eq!(status, 200, "{driver:?}: /healthz while draining");

        let closed = wait_for_close(&mut idle, Duration::from_secs(1));
        assert_eq!(
            closed,
            Some(Vec::new()),
            "{driver:?}: the idle connection was not closed at once"
        );
        let refused = TcpStream::connect_timeout(&ringway.addr, Duration::from_secs(1));
        assert!(
            refused.is_err(),
            "{driver:?}: a new connection was accepted while draining"
        );

        let download = read_response(&mut downloading, false).expect("the download");
        assert_eq!(download.status, 200, "{driver:?}");
        assert_eq!(
            download.body.len(),
            BODY_PIECES * 10,
            "{driver:?}: download cut short"
        );
        let waited = read_response(&mut waiting, false).expect("the waiting request");
        assert_eq!(waited.status, 200, "{driver:?}");
        assert_eq!(waited.header("Connection"), Some("close"), "{driver:?}");
        assert_eq!(waited.body.len(), BODY_PIECES * 10, "{driver:?}");
        assert_eq!(
            wait_for_close(&mut downloading, Duration::from_secs(2)),
            Some(Vec::new())
        );

        let status = ringway
            .wait_for_exit(TIMEOUT)
            .expect("ringway exits after the drain");
        assert!(status.success(), "{driver:?}: exit status {status:?}");
        assert!(
            ringway.wait_for_log("drain complete", LOG_WAIT).is_some(),
            "{}",
            ringway.logs()
        );
    }
}

#[test]
fn drain_grace_expiry_cuts_connections() {
    let origin = slow_origin(Duration::from_secs(5), Duration::ZERO);
    let mut config = config_for(origin.addr, Driver::IoUring);
    config["shutdown"] = json!({ "grace_ms": 300 });
    let mut ringway = Ringway::start(&config);
    let mut stream = connect(ringway.addr);
    send(&mut stream, b"GET /stuck HTTP/1.1\r\nHost: test\r\n\r\n");
    thread::sleep(Duration::from_millis(100));

    let signalled = Instant::now();
    ringway.signal(libc::SIGTERM);
    let status = ringway
        .wait_for_exit(TIMEOUT)
        .expect("ringway exits at the end of the grace");
    assert!(status.success(), "exit status {status:?}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "exited after {took:?}, before the grace ended"
    );
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
    assert!(
        ringway
            .wait_for_log("cutting 1 open connections", LOG_WAIT)
            .is_some(),
        "{}",
        ringway.logs()
    );
}

#[test]
fn quiet_workers_drain_at_once() {
    // Workers with no connection used to end before replying to the drain command, so the main
    // thread waited out its reply timeout (2 s) per worker and logged them as failed.
    let origin = origin_answering(b"ok");
    for driver in DRIVERS {
        let mut config = config_for(origin.addr, driver);
        config["workers"] = json!(2);
        let mut ringway = Ringway::start(&config);
        let signalled = Instant::now();
        ringway.signal(libc::SIGTERM);
        let status = ringway
            .wait_for_exit(TIMEOUT)
            .expect("ringway exits after the drain");
        let took = signalled.elapsed();
        assert!(status.success(), "{driver:?}: exit status {status:?}");
        assert!(
            took < Duration::from_secs(1),
            "{driver:?}: exited {took:?} after SIGTERM\n{}",
            ringway.logs()
        );
        assert!(
            !ringway.logs().contains("drain failed"),
            "{driver:?}: {}",
            ringway.logs()
        );
    }
}

#[test]
fn second_signal_exits_at_once() {
    let origin = slow_origin(Duration::from_secs(5), Duration::ZERO);
    let config = config_for(origin.addr, Driver::Epoll);
    let mut ringway = Ringway::start(&config);
    let mut stream = connect(ringway.addr);
    send(&mut stream, b"GET /stuck HTTP/1.1\r\nHost: test\r\n\r\n");
    thread::sleep(Duration::from_millis(100));

    ringway.signal(libc::SIGTERM);
    assert!(ringway.wait_for_log("draining", LOG_WAIT).is_some());
    ringway.signal(libc::SIGINT);
    let status = ringway
        .wait_for_exit(Duration::from_secs(2))
        .expect("a second signal exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        ringway
            .wait_for_log("second shutdown signal", LOG_WAIT)
            .is_some()
    );
}

#[test]
fn admin_endpoints_status_codes() {
    let origin = origin_answering(b"ok");
    let ringway = Ringway::start(&with_admin(config_for(origin.addr, Driver::IoUring)));
    let admin = ringway.admin_addr();
    let cases = [
        ("GET", "/healthz", 200, None),
        ("GET", "/readyz", 200, None),
        ("GET", "/metrics", 200, None),
        ("HEAD", "/metrics", 200, None),
        ("GET", "/metrics?x=1", 200, None),
        ("POST", "/metrics", 405, Some("GET, HEAD")),
        ("DELETE", "/healthz", 405, Some("GET, HEAD")),
        ("GET", "/reload", 405, Some("POST")),
        ("GET", "/", 404, None),
        ("GET", "/metricsx", 404, None),
        ("POST", "/reload", 200, None),
    ];
    for (method, path, expected, allow) in cases {
        let (status, response) = admin_request(admin, method, path);
        assert_eq!(status, expected, "{method} {path}");
        assert_eq!(response.header("Allow"), allow, "{method} {path}");
    }
    let (_, response) = admin_request(admin, "GET", "/metrics");
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
}

#[test]
fn metrics_count_known_traffic() {
    for driver in DRIVERS {
        let origin = origin_answering(b"0123456789");
        let mut config = with_admin(config_for(origin.addr, driver));
        config["routes"] = json!([{ "path_prefix": "/api/", "upstream": "origin" }]);
        let ringway = Ringway::start(&config);
        let admin = ringway.admin_addr();
        let mut stream = connect(ringway.addr);
        for _ in 0..10 {
            assert_eq!(get(&mut stream, "/api/x").unwrap().0, 200);
        }
        let mut unrouted = connect(ringway.addr);
        assert_eq!(get(&mut unrouted, "/other").unwrap().0, 404);

        let text = metrics_text(admin);
        let requests = "ringway_requests_total{route=\"route 0\",upstream=\"origin\",status_class";
        assert_eq!(
            metric(&text, &format!("{requests}=\"2xx\"}}")),
            Some(10.0),
            "{driver:?}\n{text}"
        );
        assert_eq!(
            metric(&text, &format!("{requests}=\"5xx\"}}")),
            Some(0.0),
            "{driver:?}"
        );
        assert_eq!(
            metric(
                &text,
                "ringway_requests_total{route=\"\",upstream=\"\",status_class=\"4xx\"}"
            ),
            Some(1.0),
            "{driver:?}"
        );
        assert_eq!(
            metric(&text, "ringway_request_duration_seconds_count"),
            Some(11.0),
            "{driver:?}"
        );
        assert_eq!(
            metric(
                &text,
                "ringway_upstream_response_duration_seconds_count{upstream=\"origin\"}"
            ),
            Some(10.0),
            "{driver:?}"
        );
        assert_eq!(
            metric(
                &text,
                "ringway_upstream_pool_misses_total{upstream=\"origin\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &text,
                "ringway_upstream_pool_hits_total{upstream=\"origin\"}"
            ),
            Some(9.0)
        );
        assert_eq!(
            metric(&text, "ringway_upstream_retries_total{upstream=\"origin\"}"),
            Some(0.0)
        );
        assert!(
            metric(&text, "ringway_sent_bytes_total").unwrap() >= 100.0,
            "{driver:?}"
        );
        assert!(
            metric(&text, "ringway_received_bytes_total").unwrap() >= 100.0,
            "{driver:?}"
        );
        // The keep-alive connection waits for its next request; the one that got the 404
        // is closing and still reads what the client sends, so it counts as active.
        assert_eq!(
            metric(&text, "ringway_client_connections_idle"),
            Some(1.0),
            "{driver:?}"
        );
        assert_eq!(
            metric(&text, "ringway_client_connections_active"),
            Some(1.0),
            "{driver:?}"
        );
        assert_eq!(
            metric(&text, "ringway_upstream_connections_idle"),
            Some(1.0),
            "{driver:?}"
        );
        assert_eq!(
            metric(&text, "ringway_buffers_capacity"),
            Some(1024.0),
            "{driver:?}"
        );
        let info = format!(
            "ringway_worker_info{{worker=\"0\",driver=\"{}\"}}",
            driver.config_value()
        );
        assert_eq!(metric(&text, &info), Some(1.0), "{driver:?}\n{text}");
        assert_eq!(metric(&text, "ringway_config_generation"), Some(1.0));
    }
}

/// Sends `count` GETs for `path` on one connection.
fn send_gets(addr: SocketAddr, path: &str, count: usize) {
    let mut stream = connect(addr);
    for _ in 0..count {
        assert_eq!(get(&mut stream, path).unwrap().0, 200);
    }
}

/// Returns the lines of `logs` that contain `needle`, waiting up to `LOG_WAIT` for `count`.
fn wait_for_lines(ringway: &Ringway, needle: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let lines: Vec<String> = ringway
            .logs()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect();
        if lines.len() >= count || Instant::now() >= deadline {
            return lines;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn access_log_text_lines() {
    let origin = origin_answering(b"0123456789");
    let ringway = Ringway::start(&config_for(origin.addr, Driver::IoUring));
    send_gets(ringway.addr, "/logged?q=1", 3);
    let lines = wait_for_lines(&ringway, "/logged?q=1", 3);
    assert_eq!(lines.len(), 3, "{}", ringway.logs());
    for line in &lines {
        // client [time] "GET /logged?q=1 HTTP/1.1" status sent received ms upstream ms id "route"
        let (client, rest) = line.split_once(" [").expect("client and time");
        assert!(client.parse::<SocketAddr>().is_ok(), "{line}");
        let (time, rest) = rest.split_once("] ").expect("time");
        assert!(time.ends_with('Z'), "{line}");
        assert!(time.contains('T'), "{line}");
        assert!(
            rest.starts_with("\"GET /logged?q=1 HTTP/1.1\" 200 "),
            "{line}"
        );
        let fields: Vec<&str> = rest.rsplit_once('"').unwrap().0.split(' ').collect();
        let after_request = &fields[3..];
        assert_eq!(after_request[0], "200", "{line}");
        assert!(
            after_request[1].parse::<u64>().unwrap() > 10,
            "bytes sent in {line}"
        );
        assert!(
            after_request[2].parse::<u64>().unwrap() > 0,
            "bytes received in {line}"
        );
        assert!(
            after_request[3].parse::<f64>().is_ok(),
            "duration in {line}"
        );
        assert_eq!(after_request[4], origin.addr.to_string(), "{line}");
        assert!(
            after_request[5].parse::<f64>().is_ok(),
            "upstream ms in {line}"
        );
        let request_id = after_request[6];
        assert_eq!(request_id.len(), 32, "generated request id in {line}");
        assert!(
            request_id.bytes().all(|byte| byte.is_ascii_hexdigit()),
            "generated request id in {line}"
        );
        assert!(line.ends_with("\"route 0\""), "{line}");
    }
}

#[test]
fn access_log_json_lines() {
    let origin = origin_answering(b"0123456789");
    let mut config = config_for(origin.addr, Driver::Epoll);
    config["access_log"] = json!({ "format": "json" });
    config["routes"] = json!([{ "path_prefix": "/json", "upstream": "origin" }]);
    let ringway = Ringway::start(&config);
    send_gets(ringway.addr, "/json/%22quoted%22", 2);
    let mut stream = connect(ringway.addr);
    assert_eq!(get(&mut stream, "/nowhere").unwrap().0, 404);

    let lines = wait_for_lines(&ringway, "\"method\":\"GET\"", 3);
    assert_eq!(lines.len(), 3, "{}", ringway.logs());
    let entries: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let routed: Vec<&Value> = entries.iter().filter(|e| e["status"] == 200).collect();
    assert_eq!(routed.len(), 2);
    for entry in routed {
        assert_eq!(entry["target"], "/json/%22quoted%22");
        assert_eq!(entry["protocol"], "HTTP/1.1");
        assert_eq!(entry["upstream"], origin.addr.to_string());
        assert_eq!(entry["route"], "route 0");
        assert!(entry["bytes_sent"].as_u64().unwrap() > 10);
        assert!(entry["duration_ms"].as_f64().is_some());
        assert!(entry["upstream_ms"].as_f64().is_some());
    }
    let unrouted = entries
        .iter()
        .find(|e| e["status"] == 404)
        .expect("the 404 line");
    assert_eq!(unrouted["route"], "");
    assert!(unrouted["upstream"].is_null());
}

#[test]
fn access_log_off_writes_nothing() {
    let origin = origin_answering(b"0123456789");
    let mut config = config_for(origin.addr, Driver::IoUring);
    config["access_log"] = json!({ "enabled": false });
    let ringway = Ringway::start(&config);
    send_gets(ringway.addr, "/silent", 3);
    thread::sleep(Duration::from_millis(400));
    assert_eq!(ringway.count_log_lines("/silent"), 0, "{}", ringway.logs());
}

#[test]
fn access_log_file_reopens_on_sigusr1() {
    let origin = origin_answering(b"0123456789");
    let dir = std::env::temp_dir().join(format!("ringway-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let mut config = config_for(origin.addr, Driver::IoUring);
    config["access_log"] = json!({ "path": path.to_str().unwrap() });
    let ringway = Ringway::start(&config);

    send_gets(ringway.addr, "/before", 2);
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    let deadline = Instant::now() + LOG_WAIT;
    while read(&path).matches("/before").count() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read(&path).matches("/before").count(), 2);

    std::fs::rename(&path, &rotated).unwrap();
    ringway.signal(libc::SIGUSR1);
    assert!(
        ringway
            .wait_for_log("reopened the access log", LOG_WAIT)
            .is_some(),
        "{}",
        ringway.logs()
    );
    send_gets(ringway.addr, "/after", 2);
    let deadline = Instant::now() + LOG_WAIT;
    while read(&path).matches("/after").count() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let (current, old) = (read(&path), read(&rotated));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(current.matches("/after").count(), 2, "{current}");
    assert_eq!(current.matches("/before").count(), 0, "{current}");
    assert_eq!(old.matches("/after").count(), 0, "{old}");
    assert_eq!(ringway.count_log_lines("/after"), 0, "lines went to stdout");
}
