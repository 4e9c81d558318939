//! The `ringway` command: `ringway --config FILE` runs the proxy, `ringway --check-config FILE`
//! validates a configuration and exits.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info, warn};

use ringway::access_log::AccessLogWriter;
use ringway::admin;
use ringway::config;
use ringway::control::{Controller, lock};
use ringway::sys;
use ringway::worker;

/// How often the main thread checks on draining workers while it waits for signals.
const DRAIN_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// How long ringway waits at exit for the access log writer to write the last lines.
const ACCESS_LOG_FINISH_TIMEOUT: Duration = Duration::from_secs(2);

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A streaming thread-per-core HTTP/1.1 reverse proxy.
#[derive(Parser)]
#[command(version, about)]
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
    run(config, path)
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

fn run(config: config::Config, path: PathBuf) -> ExitCode {
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
    // The admin address is bound before the workers start, so that a taken address fails
    // start-up instead of leaving ringway running without its metrics.
    let admin_listener = match config.admin.as_ref().map(|admin| admin::bind(admin.listen)) {
        Some(Ok(listener)) => Some(listener),
        Some(Err(err)) => {
            error!("{err}");
            return ExitCode::FAILURE;
        }
        None => None,
    };
    let workers = match worker::start(config.clone()) {
        Ok(workers) => workers,
        Err(err) => {
            error!("start-up failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    info!(listeners = ?workers.listen, "ringway is ready");
    let worker::Workers {
        threads,
        controls,
        access_log,
        ..
    } = workers;
    let controller = Arc::new(Mutex::new(Controller::new(
        path,
        config,
        controls,
        driver.name(),
    )));
    if let Some(listener) = admin_listener
        && let Err(err) = admin::start(listener, Arc::clone(&controller))
    {
        error!("starting the admin thread failed: {err}");
        return ExitCode::FAILURE;
    }
    loop {
        match sys::wait_for_signal() {
            Ok(libc::SIGHUP) => {
                info!("SIGHUP received; reloading the configuration");
                // The controller logs the outcome.
                let _ = lock(&controller).reload();
            }
            Ok(libc::SIGUSR1) => reopen_access_log(access_log.as_ref()),
            Ok(signal) => {
                return drain(&controller, threads, access_log, sys::signal_name(signal));
            }
            Err(err) => {
                error!("waiting for signals failed: {err}; draining");
                return drain(&controller, threads, access_log, "a signal error");
            }
        }
    }
}

fn reopen_access_log(access_log: Option<&AccessLogWriter>) {
    match access_log {
        Some(writer) => {
            info!("SIGUSR1 received; reopening the access log");
            writer.reopen();
        }
        None => info!("SIGUSR1 received, but the access log is off; nothing to reopen"),
    }
}

/// Stops accepting, lets requests in flight finish for up to `shutdown.grace_ms`, and exits.
/// A second SIGTERM or SIGINT, or the end of the grace period, exits at once.
fn drain(
    controller: &Mutex<Controller>,
    threads: Vec<std::thread::JoinHandle<()>>,
    access_log: Option<AccessLogWriter>,
    cause: &str,
) -> ExitCode {
    let grace = lock(controller).config().shutdown.grace;
    info!(
        grace_ms = grace.as_millis() as u64,
        "{cause} received; shutting down by draining: listeners and idle connections are closed, busy connections finish their current response"
    );
    lock(controller).drain();
    let deadline = Instant::now() + grace;
    loop {
        if threads.iter().all(|thread| thread.is_finished()) {
            info!("drain complete; every connection finished; exiting");
            if let Some(writer) = access_log {
                writer.finish(ACCESS_LOG_FINISH_TIMEOUT);
            }
            return ExitCode::SUCCESS;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            let cut = lock(controller).open_connections();
            warn!(
                connections = cut,
                "drain grace period (shutdown.grace_ms) over; exiting and cutting {cut} open connections"
            );
            return ExitCode::SUCCESS;
        }
        match sys::wait_for_signal_timeout(remaining.min(DRAIN_CHECK_INTERVAL)) {
            Ok(Some(libc::SIGTERM | libc::SIGINT)) => {
                let cut = lock(controller).open_connections();
                warn!(
                    connections = cut,
                    "second shutdown signal received while draining; exiting now and cutting {cut} open connections"
                );
                return ExitCode::SUCCESS;
            }
            Ok(Some(libc::SIGHUP)) => {
                warn!("SIGHUP received while draining; the configuration is not reloaded")
            }
            Ok(Some(libc::SIGUSR1)) => reopen_access_log(access_log.as_ref()),
            Ok(_) => {}
            Err(err) => {
                error!("waiting for signals failed: {err}; exiting without waiting for the drain");
                return ExitCode::SUCCESS;
            }
        }
    }
}
