//! The command line: `--check-config`, the minimal configuration operators rely on, start-up
//! errors, the start-up log, and shutdown on SIGTERM.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{DRIVERS, Origin, Ringway, config_for, connect, read_response};
use serde_json::json;

/// The minimal configuration from the README, byte for byte. It must stay valid in every release.
const MINIMAL_CONFIG: &str = r#"{ "workers": 1, "listen": "127.0.0.1:8080",
  "upstreams": { "origin": { "servers": ["127.0.0.1:9090"] } },
  "routes": [ { "path_prefix": "/", "upstream": "origin" } ] }
"#;

fn write_temp(contents: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "ringway-cli-{}-{}.json",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = std::fs::File::create(&path).expect("create temp config");
    file.write_all(contents.as_bytes())
        .expect("write temp config");
    path
}

fn check_config(contents: &str) -> Output {
    let path = write_temp(contents);
    let output = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .expect("run ringway --check-config");
    let _ = std::fs::remove_file(&path);
    output
}

#[test]
fn minimal_config_is_valid() {
    let output = check_config(MINIMAL_CONFIG);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid"));
}

#[test]
fn shipped_config_is_valid() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args([
            "--check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/ringway.json"),
        ])
        .output()
        .expect("run ringway --check-config");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn check_config_lists_every_error() {
    let output = check_config(
        r#"{ "workers": 0, "listen": "nowhere",
             "upstreams": { "origin": { "servers": ["127.0.0.1:9090"], "colour": "red" } },
             "routes": [ { "path_prefix": "api", "upstream": "missing" } ],
             "timeouts": { "connect_ms": 0 } }"#,
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for path in [
        "workers",
        "listen",
        "upstreams.origin.colour",
        "routes[0].path_prefix",
        "routes[0].upstream",
        "timeouts.connect_ms",
    ] {
        assert!(
            stderr.contains(&format!("{path}: ")),
            "no error for {path} in:\n{stderr}"
        );
    }
}

#[test]
fn check_config_reports_syntax_position() {
    let output = check_config("{ \"workers\": 1,\n  \"listen\": }");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "no line number in:\n{stderr}");
}

#[test]
fn missing_config_file_is_reported() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["--check-config", "/nonexistent/ringway.json"])
        .output()
        .expect("run ringway");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/ringway.json"));
}

#[test]
fn minimal_config_serves_requests() {
    let origin = Origin::start();
    for driver in DRIVERS {
        // The minimal file with only the addresses changed to free ports.
        let text = MINIMAL_CONFIG
            .replace("127.0.0.1:8080", "127.0.0.1:0")
            .replace("127.0.0.1:9090", &origin.addr.to_string());
        let mut config: serde_json::Value =
            serde_json::from_str(&text).expect("minimal config is JSON");
        config["driver"] = json!(driver.config_value());
        let proxy = Ringway::start(&config);
        let mut stream = connect(proxy.addr);
        stream
            .write_all(b"GET /small HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("write request");
        let response = read_response(&mut stream, false).expect("read response");
        assert_eq!(response.status, 200, "{driver:?}");
        assert_eq!(response.body.len(), 100, "{driver:?}");
        let logs = proxy.logs();
        assert!(
            logs.contains(&format!("driver {}", driver.config_value())),
            "{driver:?}: driver not logged:\n{logs}"
        );
        assert!(
            logs.contains("route"),
            "{driver:?}: routes not logged:\n{logs}"
        );
    }
}

#[test]
fn busy_address_fails_startup() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin = Origin::start();
    let mut config = config_for(origin.addr, DRIVERS[0]);
    config["listen"] = json!(taken.local_addr().expect("addr").to_string());
    // SO_REUSEPORT lets a second listener share a port only with the same owner and the option
    // set on both; std's listener has it unset, so ringway must fail and say why.
    let output = Ringway::start_expecting_failure(&config);
    assert!(
        output.contains("binding") && output.contains("Address already in use"),
        "output:\n{output}"
    );
}

#[test]
fn sigterm_exits_cleanly() {
    let origin = Origin::start();
    for driver in DRIVERS {
        let mut proxy = Ringway::start(&config_for(origin.addr, driver));
        let pid = proxy.pid() as libc::pid_t;
        // SAFETY: sending a signal to a child process this test started and still owns.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill failed");
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = proxy.try_exit_status() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{driver:?}: ringway did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{driver:?}: exit status {status}");
        assert!(
            proxy.logs().contains("shutting down"),
            "{driver:?}: no shutdown line:\n{}",
            proxy.logs()
        );
    }
}
