//! The `ringway` command: `ringway --config FILE` runs the proxy, `ringway --config FILE
//! --takeover` replaces a running one without closing its listening sockets, and
//! `ringway --check-config FILE` validates a configuration and exits.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing::{error, info, warn};

use ringway::config;
use ringway::handoff;
use ringway::sys;
use ringway::worker;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A streaming thread-per-core HTTP/1.1 reverse proxy.
#[derive(Parser)]
// build.rs adds the git commit of the build to `--version` when git could tell it.
#[command(
    version,
    long_version = include_str!(concat!(env!("OUT_DIR"), "/long_version.txt")),
    about
)]
struct Args {
    /// Run the proxy with this JSON configuration file.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "check_config",
        required_unless_present = "check_config"
    )]
    config: Option<PathBuf>,
    /// Validate this configuration file, print every error with its key path, and exit
    /// (0 when the file is valid, 1 otherwise).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Take the listening sockets over from the ringway serving the "handoff" socket of the
    /// config, then tell it to stop: a binary upgrade that refuses no connection.
    #[arg(long, requires = "config")]
    takeover: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return check_config(&path);
    }
    let Some(path) = args.config else {
        return ExitCode::FAILURE;
    };
    let config = match config::load(&path) {
        Ok(config) => config,
        Err(errors) => {
            print_errors(&path, &errors);
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log.level);
    run(config, args.takeover)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            println!(
                "{}: valid ({} workers, {} listeners, {} upstreams, {} routes)",
                path.display(),
                config.workers.count(),
                config.listen.len(),
                config.upstreams.len(),
                config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(path, &errors);
            ExitCode::FAILURE
        }
    }
}

fn print_errors(path: &std::path::Path, errors: &[config::ConfigError]) {
    eprintln!(
        "{}: {} configuration error{}",
        path.display(),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for err in errors {
        eprintln!("  {err}");
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGWAY_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("ringway={level},ringway_origin={level},warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(config: config::Config, takeover: bool) -> ExitCode {
    // Signals are blocked before any worker starts, so every thread inherits the mask and only
    // the main thread receives them through sigwait.
    if let Err(err) = sys::block_signals() {
        error!("blocking signals failed: {err}");
        return ExitCode::FAILURE;
    }
    match sys::raise_open_file_limit() {
        Ok((old, new)) if old != new => info!(old, new, "raised the open file limit"),
        Ok(_) => {}
        Err(err) => error!(
            "raising the open file limit failed: {err}; ringway goes on with the current limit"
        ),
    }
    let config = Arc::new(config);
    let driver = match worker::choose_driver(config.driver) {
        Ok(driver) => driver,
        Err(err) => {
            error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    if config.relay == config::RelayMode::Splice && driver == worker::DriverKind::IoUring {
        warn!(
            "relay \"splice\" applies only with the epoll driver; these io_uring workers copy instead (set \"driver\": \"epoll\" to splice)"
        );
    }
    info!(
        version = env!("CARGO_PKG_VERSION"),
        workers = config.workers.count(),
        driver = driver.name(),
        buffer_bytes = config.buffers.size_bytes,
        buffers_per_worker = config.buffers.per_worker,
        "starting ringway"
    );
    for (index, route) in config.routes.iter().enumerate() {
        let upstream = &config.upstreams[route.upstream];
        let servers: Vec<String> = upstream
            .servers
            .iter()
            .map(|server| server.addr.to_string())
            .collect();
        info!(
            route = index,
            path_prefix = %route.path_prefix,
            host = route.host.as_deref().unwrap_or("*"),
            methods = %route.methods.as_ref().map_or("*".to_string(), |methods| methods.join(",")),
            upstream = %upstream.name,
            servers = %servers.join(","),
            "route"
        );
    }
    let workers = match handoff::start_workers(config, driver, takeover) {
        Ok(workers) => workers,
        Err(err) => {
            error!("start-up failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    info!(listeners = ?workers.listen, "ringway is ready");
    loop {
        match sys::wait_for_signal() {
            // Operators send SIGHUP to reload; stopping instead would be an outage.
            Ok(libc::SIGHUP) => warn!(
                "reloading the configuration is not supported yet; SIGHUP ignored (restart ringway to apply changes)"
            ),
            Ok(signal) => {
                info!(signal = sys::signal_name(signal), "shutting down");
                return ExitCode::SUCCESS;
            }
            Err(err) => {
                error!("waiting for signals failed: {err}; shutting down");
                return ExitCode::SUCCESS;
            }
        }
    }
}
