//! Ocelot files through the real binary: `convert-ocelot`, `--check-config` and `--config`
//! with an ocelot.json.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Origin, RecordingOrigin, Ringway, connect, read_response, reply_with_target};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ocelot")
        .join(name)
}

fn ringway(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .output()
        .expect("run ringway")
}

fn write_temp(contents: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "ringway-ocelot-{}-{}.json",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = std::fs::File::create(&path).expect("create temp file");
    file.write_all(contents.as_bytes())
        .expect("write temp file");
    path
}

/// Returns an ocelot.json with one catch-all route to `origin`, listening on a free loopback
/// port.
fn catch_all_ocelot(origin: std::net::SocketAddr) -> Value {
    json!({
        "Routes": [{
            "DownstreamPathTemplate": "/{everything}",
            "DownstreamScheme": "http",
            "DownstreamHostAndPorts": [{ "Host": origin.ip().to_string(), "Port": origin.port() }],
            "UpstreamPathTemplate": "/{everything}",
            "UpstreamHttpMethod": ["Get"]
        }],
        "GlobalConfiguration": { "BaseUrl": "http://127.0.0.1:0" }
    })
}

#[test]
fn converted_fixtures_pass_check_config() {
    for name in ["plain.json", "gateway.json", "reroutes.json"] {
        let output = ringway(&["convert-ocelot".as_ref(), fixture(name).as_os_str()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{name}: convert-ocelot failed:\n{stderr}"
        );
        assert!(
            stderr.contains("warning: "),
            "{name}: no notes on stderr:\n{stderr}"
        );
        assert!(
            !stderr.contains("error: "),
            "{name}: error notes:\n{stderr}"
        );
        let converted = String::from_utf8(output.stdout).expect("UTF-8 output");
        let parsed: Value = serde_json::from_str(&converted).expect("stdout is JSON");
        assert!(parsed["routes"].is_array(), "{name}: {converted}");

        let path = write_temp(&converted);
        let check = ringway(&["--check-config".as_ref(), path.as_os_str()]);
        let _ = std::fs::remove_file(&path);
        assert!(
            check.status.success(),
            "{name}: converted file rejected:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn check_config_accepts_ocelot_file() {
    let output = ringway(&[
        "--check-config".as_ref(),
        fixture("gateway.json").as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr:\n{stderr}");
    assert!(
        stdout.contains("after conversion from Ocelot"),
        "stdout:\n{stdout}"
    );
    assert!(stdout.contains("3 routes"), "stdout:\n{stdout}");
    assert!(
        stderr.contains("warning: Routes[0].QoSOptions"),
        "stderr:\n{stderr}"
    );
}

/// Every key of rejected.json that ringway cannot honour, as the notes name it.
const REJECTED_KEYS: [&str; 8] = [
    "error: Routes[0].AuthenticationOptions: ",
    "error: Routes[0].RouteClaimsRequirement: ",
    "error: Routes[0].AddHeadersToRequest: ",
    "error: Routes[1].ServiceName: ",
    "error: Routes[1].DownstreamScheme: ",
    "error: Routes[2].AddQueriesToRequest: ",
    "error: Aggregates: ",
    "error: GlobalConfiguration.ServiceDiscoveryProvider: ",
];

#[test]
fn rejected_file_names_every_key() {
    let path = fixture("rejected.json");
    for args in [["convert-ocelot", ""], ["--check-config", ""]] {
        let output = ringway(&[args[0].as_ref(), path.as_os_str()]);
        assert_eq!(output.status.code(), Some(1), "{}", args[0]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        for key in REJECTED_KEYS {
            assert!(
                stderr.contains(key),
                "{}: {key} missing in:\n{stderr}",
                args[0]
            );
        }
        assert!(
            stderr.contains("; instead, "),
            "{}: no advice in:\n{stderr}",
            args[0]
        );
        assert!(
            stderr.contains("warning: Routes[2].UnknownSetting: "),
            "{}: unknown key not named in:\n{stderr}",
            args[0]
        );
    }
}

#[test]
fn config_refuses_rejected_file() {
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("rejected.json")).unwrap()).unwrap();
    let output = Ringway::start_expecting_failure(&config);
    for key in REJECTED_KEYS {
        assert!(output.contains(key), "{key} missing in:\n{output}");
    }
}

#[test]
fn config_ocelot_proxies_get() {
    let origin = Origin::start();
    let proxy = Ringway::start(&catch_all_ocelot(origin.addr));
    let mut stream = connect(proxy.addr);
    stream
        .write_all(b"GET /small HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write request");
    let response = read_response(&mut stream, false).expect("read response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), 100);
    let logs = proxy.logs();
    assert!(
        logs.contains("converted from Ocelot") && logs.contains("BaseUrl"),
        "conversion warnings not logged:\n{logs}"
    );
}

#[test]
fn convert_ocelot_reports_bad_json() {
    let path = write_temp("{ \"Routes\": [ }");
    let output = ringway(&["convert-ocelot".as_ref(), path.as_os_str()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid JSON"));
}

/// Sends `request` through ringway started with `ocelot` and returns the target the
/// origin saw and the response.
fn exchange(
    ocelot: &Value,
    origin: &RecordingOrigin,
    request: &[u8],
) -> (String, common::Response) {
    let proxy = Ringway::start(ocelot);
    let mut stream = connect(proxy.addr);
    stream.write_all(request).expect("write request");
    let response = read_response(&mut stream, false).expect("read response");
    let seen = origin.next_request();
    (seen.request.target, response)
}

#[test]
fn template_rewrite_reaches_downstream_path() {
    let origin = RecordingOrigin::start(reply_with_target);
    let ocelot = json!({
        "Routes": [{
            "DownstreamPathTemplate": "/api/products/{id}/reviews",
            "DownstreamHostAndPorts": [{ "Host": "127.0.0.1", "Port": origin.addr.port() }],
            "UpstreamPathTemplate": "/products/{id}/reviews"
        }],
        "GlobalConfiguration": { "BaseUrl": "http://127.0.0.1:0" }
    });
    let (target, response) = exchange(
        &ocelot,
        &origin,
        b"GET /PRODUCTS/7/reviews?page=2 HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(target, "/api/products/7/reviews?page=2");
}

#[test]
fn header_transforms_apply() {
    let origin = RecordingOrigin::start(|_| {
        common::Reply::keep_open(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/next\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
    });
    let ocelot = json!({
        "Routes": [{
            "DownstreamPathTemplate": "/{everything}",
            "DownstreamHostAndPorts": [{ "Host": "127.0.0.1", "Port": origin.addr.port() }],
            "UpstreamPathTemplate": "/{everything}",
            "UpstreamHeaderTransform": { "X-Gateway": "ringway" },
            "DownstreamHeaderTransform": { "Location": "http://127.0.0.1:1, https://api.example.com" }
        }],
        "GlobalConfiguration": { "BaseUrl": "http://127.0.0.1:0" }
    });
    let proxy = Ringway::start(&ocelot);
    let mut stream = connect(proxy.addr);
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("write request");
    let response = read_response(&mut stream, false).expect("read response");
    let seen = origin.next_request();
    assert_eq!(seen.request.header("X-Gateway"), Some("ringway"));
    assert_eq!(
        response.header("Location"),
        Some("https://api.example.com/next")
    );
}

#[test]
fn method_and_priority_pick_route() {
    let first = RecordingOrigin::start(reply_with_target);
    let second = RecordingOrigin::start(reply_with_target);
    let ocelot = json!({
        "Routes": [
            {
                "DownstreamPathTemplate": "/{everything}",
                "DownstreamHostAndPorts": [{ "Host": "127.0.0.1", "Port": first.addr.port() }],
                "UpstreamPathTemplate": "/{everything}"
            },
            {
                "DownstreamPathTemplate": "/special",
                "DownstreamHostAndPorts": [{ "Host": "127.0.0.1", "Port": second.addr.port() }],
                "UpstreamPathTemplate": "/special",
                "UpstreamHttpMethod": ["Post"]
            }
        ],
        "GlobalConfiguration": { "BaseUrl": "http://127.0.0.1:0" }
    });
    let (target, _) = exchange(
        &ocelot,
        &second,
        b"POST /special HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        target, "/special",
        "the specific route outranks the catch-all"
    );
}
