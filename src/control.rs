//! The control channel between the main thread and each worker, and the `Controller` that
//! reloads, drains and scrapes the workers through it.
//!
//! Each worker has a Unix socket pair. The worker reads its end in a task of its own runtime
//! (`worker::serve_control`), so commands reach it without any lock or atomic on the request
//! path. A command is one byte; the worker carries it out between two polls of its other tasks
//! and replies with the same byte. Payloads travel beside the socket in `ControlSlots`,
//! whose mutexes only the two ends of the channel take, and only around a command:
//!
//! - `Reload`: the controller puts `(generation, config)` into `ControlSlots::config` first.
//! - `Metrics`: the worker puts its `WorkerSnapshot` into `ControlSlots::snapshot` before it
//!   replies.
//! - `Drain`: the worker stops accepting, closes idle connections and, from then on, publishes
//!   its open connection count in `ControlSlots::open_connections` until it exits.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::metrics::{self, ProcessValues, WorkerSnapshot};

/// How long the controller waits for a worker's reply to a command. A worker replies between
/// two polls of its tasks, so only a worker stuck in a blocking call (or gone) takes this long.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// A command to a worker, sent as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// Switch to the configuration in `ControlSlots::config`.
    Reload = b'R',
    /// Stop accepting and finish the connections in flight, then exit.
    Drain = b'D',
    /// Put a `WorkerSnapshot` into `ControlSlots::snapshot`.
    Metrics = b'M',
}

impl Command {
    pub fn from_byte(byte: u8) -> Option<Command> {
        match byte {
            b'R' => Some(Command::Reload),
            b'D' => Some(Command::Drain),
            b'M' => Some(Command::Metrics),
            _ => None,
        }
    }
}

/// Payloads of commands, shared by the controller and one worker.
#[derive(Default)]
pub struct ControlSlots {
    /// The generation number and configuration for the next `Reload`.
    pub config: Mutex<Option<(u64, Arc<Config>)>>,
    /// The reply to the last `Metrics`.
    pub snapshot: Mutex<Option<WorkerSnapshot>>,
    /// Client connections still open, published by a draining worker.
    pub open_connections: AtomicUsize,
}

/// Locks a slot, ignoring poisoning: a slot only holds a value handed from one thread to
/// another, so a panic elsewhere cannot leave it half-written.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The worker's end of its control channel, moved into the worker thread.
pub struct WorkerEnd {
    pub socket: UnixStream,
    pub slots: Arc<ControlSlots>,
}

/// The controller's end of one worker's control channel.
pub struct WorkerHandle {
    pub worker: usize,
    socket: UnixStream,
    pub slots: Arc<ControlSlots>,
    /// Set once the worker failed to reply; later commands skip it.
    gone: bool,
}

/// Creates the control channel of worker `worker`.
pub fn channel(worker: usize) -> io::Result<(WorkerHandle, WorkerEnd)> {
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let slots = Arc::new(ControlSlots::default());
    Ok((
        WorkerHandle {
            worker,
            socket: ours,
            slots: Arc::clone(&slots),
            gone: false,
        },
        WorkerEnd {
            socket: theirs,
            slots,
        },
    ))
}

impl WorkerHandle {
    /// Sends `command` and waits for the worker's reply.
    pub fn send(&mut self, command: Command) -> io::Result<()> {
        if self.gone {
            return Err(io::Error::other(
                "the worker stopped replying to earlier commands",
            ));
        }
        let result = self.exchange(command);
        if result.is_err() {
            self.gone = true;
        }
        result
    }

    fn exchange(&mut self, command: Command) -> io::Result<()> {
        self.socket.write_all(&[command as u8])?;
        let mut reply = [0u8; 1];
        self.socket.read_exact(&mut reply)?;
        if reply[0] != command as u8 {
            return Err(io::Error::other(format!(
                "the worker replied {:?} to {command:?}",
                reply[0] as char
            )));
        }
        Ok(())
    }
}

/// Reloads, drains and scrapes the workers. The main thread (signals) and the admin thread
/// share it behind a mutex.
pub struct Controller {
    config_path: PathBuf,
    config: Arc<Config>,
    workers: Vec<WorkerHandle>,
    driver: &'static str,
    generation: u64,
    reloads_ok: u64,
    reloads_failed: u64,
    draining: bool,
}

impl Controller {
    pub fn new(
        config_path: PathBuf,
        config: Arc<Config>,
        workers: Vec<WorkerHandle>,
        driver: &'static str,
    ) -> Controller {
        Controller {
            config_path,
            config,
            workers,
            driver,
            generation: 1,
            reloads_ok: 0,
            reloads_failed: 0,
            draining: false,
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Reads and validates the configuration file again and hands it to every worker. A bad
    /// file changes nothing and is logged as one error line; settings that only apply at start
    /// keep their running values and are logged as "restart needed". Returns the new
    /// generation number, or the errors as one line.
    pub fn reload(&mut self) -> Result<u64, String> {
        if self.draining {
            return Err("ringway is draining; the configuration is not reloaded".to_owned());
        }
        let path = self.config_path.display().to_string();
        // An ocelot.json is converted again, so a reload picks up its edits too.
        let loaded = crate::ocelot::load(&self.config_path)
            .map_err(crate::ocelot::LoadFailure::into_config_errors)
            .and_then(|(new, _)| {
            let new = keep_restart_only_settings(&self.config, new);
            check_fits_running_buffers(&new).map(|()| new)
        });
        let new = match loaded {
            Ok(new) => new,
            Err(errors) => {
                self.reloads_failed += 1;
                let joined = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                error!("reloading {path} failed, so the running configuration stays: {joined}");
                return Err(joined);
            }
        };
        let generation = self.generation + 1;
        let new = Arc::new(new);
        for worker in &mut self.workers {
            *lock(&worker.slots.config) = Some((generation, Arc::clone(&new)));
            if let Err(err) = worker.send(Command::Reload) {
                error!(worker = worker.worker, error = %err, "handing the reloaded configuration to a worker failed");
            }
        }
        self.generation = generation;
        self.config = new;
        self.reloads_ok += 1;
        info!(
            path,
            generation, "configuration reloaded (generation {generation})"
        );
        Ok(generation)
    }

    /// Tells every worker to drain. The workers exit on their own once their connections end.
    pub fn drain(&mut self) {
        self.draining = true;
        for worker in &mut self.workers {
            if let Err(err) = worker.send(Command::Drain) {
                warn!(worker = worker.worker, error = %err, "telling a worker to drain failed");
            }
        }
    }

    /// Returns the client connections still open in draining workers.
    pub fn open_connections(&self) -> usize {
        self.workers
            .iter()
            .map(|worker| worker.slots.open_connections.load(Ordering::Relaxed))
            .sum()
    }

    /// Collects every worker's counters and renders them as Prometheus text. A worker that
    /// does not reply (one that finished draining) is left out.
    pub fn metrics(&mut self) -> String {
        let mut snapshots = Vec::with_capacity(self.workers.len());
        for worker in &mut self.workers {
            if worker.send(Command::Metrics).is_err() {
                continue;
            }
            if let Some(mut snapshot) = lock(&worker.slots.snapshot).take() {
                snapshot.worker = worker.worker;
                snapshot.driver = self.driver;
                snapshots.push(snapshot);
            }
        }
        let process = ProcessValues {
            generation: self.generation,
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            draining: self.draining,
        };
        metrics::render(&snapshots, process)
    }
}

/// Returns `new` with the settings that cannot change while ringway runs set to their running
/// values, after logging "restart needed" for each one that differs.
fn keep_restart_only_settings(running: &Config, mut new: Config) -> Config {
    let keep = |key: &str, differs: bool| {
        if differs {
            warn!(
                "restart needed for {key}: the reloaded file changes it, but the running value stays until ringway restarts"
            );
        }
    };
    keep("listen", new.listen != running.listen);
    keep("workers", new.workers != running.workers);
    keep("driver", new.driver != running.driver);
    keep("relay", new.relay != running.relay);
    keep("io_uring", new.io_uring != running.io_uring);
    keep("buffers", new.buffers != running.buffers);
    keep("log", new.log != running.log);
    keep("admin", new.admin != running.admin);
    keep("access_log", new.access_log != running.access_log);
    keep("handoff", new.handoff != running.handoff);
    new.listen = running.listen.clone();
    new.workers = running.workers.clone();
    new.driver = running.driver;
    new.relay = running.relay;
    new.io_uring = running.io_uring;
    new.buffers = running.buffers;
    new.log = running.log.clone();
    new.admin = running.admin.clone();
    new.access_log = running.access_log.clone();
    new.handoff = running.handoff.clone();
    new
}

/// Checks the reloaded head and trailer limits against the running buffer size, which the file
/// was validated against only if it kept `buffers` unchanged.
fn check_fits_running_buffers(config: &Config) -> Result<(), Vec<config::ConfigError>> {
    let size = config.buffers.size_bytes;
    let limits = &config.limits;
    let errors: Vec<config::ConfigError> = [
        ("max_request_head_bytes", limits.max_request_head_bytes),
        ("max_response_head_bytes", limits.max_response_head_bytes),
        ("max_trailer_bytes", limits.max_trailer_bytes),
    ]
    .into_iter()
    .filter(|&(_, limit)| limit > size)
    .map(|(key, limit)| config::ConfigError {
        path: format!("limits.{key}"),
        message: format!(
            "value {limit} is larger than the running buffers.size_bytes ({size}), but it must fit in one buffer"
        ),
        fix: format!("lower limits.{key}, or change buffers.size_bytes and restart ringway"),
    })
    .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
