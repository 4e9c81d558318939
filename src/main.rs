//! The `ringway` command: `ringway --config FILE` runs the proxy, `ringway --config FILE
//! --takeover` replaces a running one without closing its listening sockets, `ringway
//! --check-config FILE` validates a configuration and exits, and `ringway convert-ocelot FILE`
//! prints an Ocelot ocelot.json as a ringway configuration. `--config` and `--check-config`
//! accept an ocelot.json as well.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use ringway::access_log::AccessLogWriter;
use ringway::admin;
use ringway::config;
use ringway::control::{Controller, lock};
use ringway::handoff;
use ringway::ocelot::{self, LoadFailure, Severity};
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
// build.rs adds the git commit of the build to `--version` when git could tell it.
#[command(
    version,
    long_version = include_str!(concat!(env!("OUT_DIR"), "/long_version.txt")),
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    /// Run the proxy with this JSON configuration file (ringway's format or an Ocelot
    /// ocelot.json, which is converted at start).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "check_config",
        required_unless_present = "check_config"
    )]
    config: Option<PathBuf>,
    /// Validate this configuration file (ringway's format or an Ocelot ocelot.json), print
    /// every error with its key path, and exit (0 when the file is valid, 1 otherwise).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Take the listening sockets over from the ringway serving the "handoff" socket of the
    /// config, then tell it to stop: a binary upgrade that refuses no connection.
    #[arg(long, requires = "config")]
    takeover: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print an Ocelot ocelot.json as ringway JSON on stdout and every setting that did not
    /// carry over on stderr. Exits with 1 when a setting cannot be honoured or the result
    /// fails ringway's validation on this machine (host names must resolve), 0 otherwise.
    ConvertOcelot {
        /// The ocelot.json to convert.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // With transparent huge pages, the first touch of a 64 KiB buffer or of a connection's state
    // can map a whole 2 MiB page. A one-worker ringway measured 12.6 MiB resident when idle and
    // 68 MiB with 256 busy connections, against 5 and 12 MiB with 4 KiB pages (mimalloc 3.3.2,
    // Linux 6.18, THP "madvise"). The mimalloc crate's `no_thp` feature stops mimalloc from
    // asking for huge pages, which is enough under "madvise". This call keeps them off under
    // "always" too, for every page fault after it.
    let huge_pages_off = sys::disable_transparent_huge_pages();
    let args = Args::parse();
    if let Some(Command::ConvertOcelot { file }) = args.command {
        return convert_ocelot(&file);
    }
    if let Some(path) = args.check_config {
        return check_config(&path);
    }
    let Some(path) = args.config else {
        return ExitCode::FAILURE;
    };
    let (config, notes) = match ocelot::load(&path) {
        Ok(loaded) => loaded,
        Err(failure) => {
            print_load_failure(&failure, &path);
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log.level);
    if let Err(err) = huge_pages_off {
        warn!(
            "turning transparent huge pages off failed: {err}; ringway goes on, but its resident memory may grow in 2 MiB steps"
        );
    }
    for note in &notes {
        warn!(path = %note.path, "converted from Ocelot: {}; instead, {}", note.message, note.instead);
    }
    run(config, path, args.takeover)
}

/// Prints why a configuration file could not be used.
fn print_load_failure(failure: &LoadFailure, path: &Path) {
    match failure {
        LoadFailure::Invalid { errors, converted } => {
            if *converted {
                eprintln!(
                    "{}: converted from Ocelot, but the result is not a valid ringway configuration",
                    path.display()
                );
            }
            print_errors(path, errors);
        }
        LoadFailure::Ocelot(notes) => {
            let errors = notes
                .iter()
                .filter(|note| note.severity == Severity::Error)
                .count();
            eprintln!(
                "{}: {errors} Ocelot setting{} that ringway cannot honour",
                path.display(),
                if errors == 1 { "" } else { "s" }
            );
            for note in notes {
                eprintln!("  {note}");
            }
        }
    }
}

fn check_config(path: &Path) -> ExitCode {
    match ocelot::load(path) {
        Ok((config, notes)) => {
            for note in &notes {
                eprintln!("{note}");
            }
            println!(
                "{}: valid{} ({} workers, {} listeners, {} upstreams, {} routes)",
                path.display(),
                if notes.is_empty() {
                    ""
                } else {
                    " after conversion from Ocelot"
                },
                config.workers.count(),
                config.listen.len(),
                config.upstreams.len(),
                config.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            print_load_failure(&failure, path);
            ExitCode::FAILURE
        }
    }
}

fn convert_ocelot(path: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("{}: failed to read the file: {error}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let root: serde_json::Value = match serde_json::from_str(text.trim_start_matches('\u{feff}')) {
        Ok(root) => root,
        Err(error) => {
            eprintln!(
                "{}: invalid JSON: {error}; correct the syntax at that position",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let conversion = ocelot::convert(&root);
    match serde_json::to_string_pretty(&conversion.config) {
        Ok(pretty) => println!("{pretty}"),
        Err(error) => {
            eprintln!("failed to format the converted configuration: {error}");
            return ExitCode::FAILURE;
        }
    }
    for note in &conversion.notes {
        eprintln!("{note}");
    }
    let mut failed = conversion.has_errors();
    if !failed && let Err(errors) = config::parse(&conversion.config.to_string()) {
        eprintln!(
            "the converted configuration does not pass ringway's validation on this machine:"
        );
        for error in &errors {
            eprintln!("error: {error}");
        }
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_errors(path: &Path, errors: &[config::ConfigError]) {
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

fn run(config: config::Config, path: PathBuf, takeover: bool) -> ExitCode {
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
    let (workers, listener_copies) = match handoff::start_workers(config.clone(), driver, takeover) {
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
                return drain(
                    &controller,
                    &listener_copies,
                    threads,
                    access_log,
                    sys::signal_name(signal),
                );
            }
            Err(err) => {
                error!("waiting for signals failed: {err}; draining");
                return drain(
                    &controller,
                    &listener_copies,
                    threads,
                    access_log,
                    "a signal error",
                );
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
    listener_copies: &handoff::ListenerCopies,
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
    // The workers have closed their listening descriptors, so closing these copies closes
    // the sockets, unless a process that took them over still has them open.
    listener_copies.close();
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
