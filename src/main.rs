//! The `ringway` command: `ringway --config FILE` runs the proxy, `ringway --check-config FILE`
//! validates a configuration and exits, and `ringway convert-ocelot FILE` prints an Ocelot
//! ocelot.json as a ringway configuration. The first two accept an ocelot.json as well.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use ringway::config;
use ringway::ocelot::{self, Note, Severity};
use ringway::sys;
use ringway::worker;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A streaming thread-per-core HTTP/1.1 reverse proxy.
#[derive(Parser)]
#[command(
    version,
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
    let (config, notes) = match load(&path) {
        Ok(loaded) => loaded,
        Err(failure) => {
            failure.print(&path);
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log.level);
    for note in &notes {
        warn!(path = %note.path, "converted from Ocelot: {}; instead, {}", note.message, note.instead);
    }
    run(config)
}

/// Reason a configuration file could not be used.
enum LoadFailure {
    /// ringway's validation rejected the file, or the file converted from Ocelot.
    Invalid {
        errors: Vec<config::ConfigError>,
        converted: bool,
    },
    /// An ocelot.json with settings ringway cannot honour; every note is printed.
    Ocelot(Vec<Note>),
}

impl LoadFailure {
    fn print(&self, path: &Path) {
        match self {
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
}

/// Loads a ringway configuration file, or converts an ocelot.json. Returns the
/// configuration and the warnings of the conversion.
fn load(path: &Path) -> Result<(config::Config, Vec<Note>), LoadFailure> {
    let root = std::fs::read_to_string(path).ok().and_then(|text| {
        serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}')).ok()
    });
    let Some(root) = root.filter(ocelot::is_ocelot) else {
        // config::load reports unreadable files and JSON syntax errors with their position.
        return config::load(path)
            .map(|config| (config, Vec::new()))
            .map_err(|errors| LoadFailure::Invalid {
                errors,
                converted: false,
            });
    };
    let conversion = ocelot::convert(&root);
    if conversion.has_errors() {
        return Err(LoadFailure::Ocelot(conversion.notes));
    }
    match config::parse(&conversion.config.to_string()) {
        Ok(config) => Ok((config, conversion.notes)),
        Err(errors) => Err(LoadFailure::Invalid {
            errors,
            converted: true,
        }),
    }
}

fn check_config(path: &Path) -> ExitCode {
    match load(path) {
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
            failure.print(path);
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

fn run(config: config::Config) -> ExitCode {
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
    let workers = match worker::start(config) {
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
