//! Worker threads: one per configured core, each pinned, each with its own monoio runtime,
//! `SO_REUSEPORT` listeners, buffer pool and upstream pool.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::net::{ListenerOpts, TcpListener};
use tracing::{debug, error, info, warn};

use crate::buffer::BufferPool;
use crate::config::{Config, Driver, RelayMode};
use crate::logging::{REPEATED_LOG_INTERVAL, RateLimitedLog};
use crate::proxy::{TEST_PANIC_PATH_ENV, WorkerContext, serve_client};
use crate::sys::{duplicate_fd, send_now};
use crate::upstream::Upstreams;

/// How often each worker closes idle upstream connections past `timeouts.upstream_idle_ms`.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Pause after an accept failure such as running out of file descriptors, so the accept loop
/// does not spin while the condition lasts.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Listen backlog of each listener: the kernel's usual maximum (`net.core.somaxconn`), so bursts
/// of connections queue instead of being refused while a worker is busy.
pub const LISTEN_BACKLOG: u32 = 4096;

/// The response to a connection over `limits.max_connections_per_worker`. It is ringway's own
/// refusal, so 503 with Retry-After (RFC 9110 section 15.6.4).
const OVERLOADED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 57\r\nRetry-After: 1\r\nConnection: close\r\n\r\n503 Service Unavailable: too many connections; try again\n";

/// The I/O driver a worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Epoll,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

/// Chooses the driver for `driver`; `auto` takes io_uring when this kernel allows it (and
/// `MONOIO_FORCE_LEGACY_DRIVER` is not set), else epoll.
pub fn choose_driver(driver: Driver) -> io::Result<DriverKind> {
    let uring = monoio::utils::detect_uring();
    match driver {
        Driver::Auto if uring => Ok(DriverKind::IoUring),
        Driver::Auto | Driver::Epoll => Ok(DriverKind::Epoll),
        Driver::IoUring if uring => Ok(DriverKind::IoUring),
        Driver::IoUring => Err(io::Error::other(
            "driver \"io_uring\" was configured but io_uring is not available on this kernel; set \"driver\" to \"auto\" or \"epoll\"",
        )),
    }
}

/// A running set of workers.
pub struct Workers {
    /// The addresses the workers listen on, with any port 0 resolved to the real port.
    pub listen: Vec<SocketAddr>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
    /// A duplicate of every listening socket of every worker, which the hand-off sends to a
    /// replacing process.
    pub sockets: Vec<OwnedFd>,
}

/// Listening sockets received from a running process, one list per entry of `listen` in the
/// config (the list may be empty).
#[derive(Default)]
pub struct Inherited {
    pub per_address: Vec<Vec<OwnedFd>>,
}

/// A worker's start-up report: its bound addresses and a duplicate of each listening socket.
type Ready = io::Result<(Vec<SocketAddr>, Vec<OwnedFd>)>;

/// Starts every worker and returns once all of them listen, or with the first start-up error.
pub fn start(config: Arc<Config>) -> io::Result<Workers> {
    start_with(config, Inherited::default())
}

/// Starts every worker on the `inherited` sockets where there are any, binding the rest.
///
/// Worker `w` of `n` takes the inherited sockets `w`, `w + n`, `w + 2n` ... of each address.
/// All of them stay in use: each socket has its own accept queue, so a socket that no worker
/// accepted on would hold its queued connections until they time out. A worker without an
/// inherited socket for an address binds a new `SO_REUSEPORT` one.
pub fn start_with(config: Arc<Config>, inherited: Inherited) -> io::Result<Workers> {
    let driver = choose_driver(config.driver)?;
    let count = config.workers.count();
    let mut listen = config.listen.clone();
    let mut threads = Vec::with_capacity(count);
    let mut sockets = Vec::new();
    let assigned = assign_inherited(inherited, config.listen.len(), count);
    for (worker, own) in assigned.into_iter().enumerate() {
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker_config = config.clone();
        let addresses: Vec<(SocketAddr, Vec<OwnedFd>)> = listen.iter().copied().zip(own).collect();
        let core = config.workers.core_for(worker);
        let thread = std::thread::Builder::new()
            .name(format!("ringway-worker-{worker}"))
            .spawn(move || run_worker(worker, core, driver, worker_config, addresses, ready_tx))?;
        // Worker 0 binds first, so that a port 0 becomes one real port that the other
        // workers then share through SO_REUSEPORT.
        match ready_rx.recv() {
            Ok(Ok((bound, copies))) => {
                listen = bound;
                sockets.extend(copies);
            }
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(io::Error::other(format!(
                    "worker {worker} exited during start-up"
                )));
            }
        }
        threads.push(thread);
    }
    Ok(Workers {
        listen,
        threads,
        sockets,
    })
}

/// Splits inherited sockets among `workers`: the result holds, per worker, one list of
/// sockets per listen address.
fn assign_inherited(
    inherited: Inherited,
    addresses: usize,
    workers: usize,
) -> Vec<Vec<Vec<OwnedFd>>> {
    let mut assigned: Vec<Vec<Vec<OwnedFd>>> = (0..workers)
        .map(|_| (0..addresses).map(|_| Vec::new()).collect())
        .collect();
    for (address, sockets) in inherited
        .per_address
        .into_iter()
        .enumerate()
        .take(addresses)
    {
        for (index, socket) in sockets.into_iter().enumerate() {
            assigned[index % workers][address].push(socket);
        }
    }
    assigned
}

fn run_worker(
    worker: usize,
    core: Option<usize>,
    driver: DriverKind,
    config: Arc<Config>,
    addresses: Vec<(SocketAddr, Vec<OwnedFd>)>,
    ready: mpsc::Sender<Ready>,
) {
    let pinned =
        core.is_some_and(|id| core_affinity::set_for_current(core_affinity::CoreId { id }));
    let main = worker_main(
        worker,
        core,
        pinned,
        driver,
        config.clone(),
        addresses,
        ready.clone(),
    );
    let result = match driver {
        DriverKind::IoUring => {
            build_uring_runtime(worker, &config).map(|mut runtime| runtime.block_on(main))
        }
        DriverKind::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut runtime| runtime.block_on(main)),
    };
    if let Err(err) = result {
        let _ = ready.send(Err(io::Error::other(format!(
            "worker {worker}: building the {} runtime failed: {err}",
            driver.name()
        ))));
    }
}

/// Builds an io_uring runtime with the ring settings of `io_uring`; if the kernel rejects the
/// optional flags, builds one without them and logs that it did.
fn build_uring_runtime(
    worker: usize,
    config: &Config,
) -> io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let settings = config.io_uring;
    let mut flags = io_uring::IoUring::builder();
    let any_flag = settings.coop_taskrun || settings.single_issuer || settings.sqpoll_idle_ms > 0;
    if settings.coop_taskrun {
        flags.setup_coop_taskrun();
    }
    if settings.single_issuer {
        flags.setup_single_issuer();
    }
    if settings.sqpoll_idle_ms > 0 {
        flags.setup_sqpoll(settings.sqpoll_idle_ms);
    }
    let build = |builder: io_uring::Builder| {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .uring_builder(builder)
            .with_entries(settings.entries)
            .enable_timer()
            .build()
    };
    match build(flags) {
        Err(err) if any_flag => {
            warn!(worker, error = %err, "the kernel rejected the io_uring flags in \"io_uring\"; running without them");
            build(io_uring::IoUring::builder())
        }
        result => result,
    }
}

async fn worker_main(
    worker: usize,
    core: Option<usize>,
    pinned: bool,
    driver: DriverKind,
    config: Arc<Config>,
    addresses: Vec<(SocketAddr, Vec<OwnedFd>)>,
    ready: mpsc::Sender<Ready>,
) {
    let (listeners, bound) = match open_listeners(addresses) {
        Ok(opened) => opened,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let copies = match listeners
        .iter()
        .map(|listener| duplicate_fd(listener.as_raw_fd()))
        .collect::<io::Result<Vec<_>>>()
    {
        Ok(copies) => copies,
        Err(err) => {
            let _ = ready.send(Err(io::Error::new(
                err.kind(),
                format!(
                    "worker {worker}: duplicating a listening socket for the hand-off failed: {err}"
                ),
            )));
            return;
        }
    };
    let ctx = Rc::new(WorkerContext {
        id: worker,
        panic_path: std::env::var_os(TEST_PANIC_PATH_ENV).map(|path| path.into_encoded_bytes()),
        splice: config.relay == RelayMode::Splice && driver == DriverKind::Epoll,
        pool: BufferPool::new(config.buffers.size_bytes, config.buffers.per_worker),
        upstreams: RefCell::new(Upstreams::new(&config)),
        connections: Cell::new(0),
        pool_log: RefCell::new(RateLimitedLog::new(REPEATED_LOG_INTERVAL)),
        client_error_log: RefCell::new(RateLimitedLog::new(REPEATED_LOG_INTERVAL)),
        pipes: RefCell::new(Vec::new()),
        config,
    });
    let core_text = match (core, pinned) {
        (Some(id), true) => format!("core {id}"),
        (Some(id), false) => format!("core {id} (pinning failed, running unpinned)"),
        (None, _) => "no core".to_string(),
    };
    for addr in &bound {
        info!(
            worker,
            driver = driver.name(),
            "listening on {addr} ({core_text}, driver {})",
            driver.name()
        );
    }
    let _ = ready.send(Ok((bound, copies)));

    monoio::spawn(reap_idle_upstreams(ctx.clone()));
    let mut accept_loops = Vec::new();
    for listener in listeners {
        accept_loops.push(monoio::spawn(accept_loop(ctx.clone(), listener)));
    }
    for accept in accept_loops {
        accept.await;
    }
}

/// Opens this worker's listeners: for each address, its inherited sockets, or a newly bound
/// `SO_REUSEPORT` socket where it inherited none. Returns the listeners and, per address, the
/// bound address.
fn open_listeners(
    addresses: Vec<(SocketAddr, Vec<OwnedFd>)>,
) -> io::Result<(Vec<TcpListener>, Vec<SocketAddr>)> {
    let mut listeners = Vec::with_capacity(addresses.len());
    let mut bound = Vec::with_capacity(addresses.len());
    for (addr, sockets) in addresses {
        if sockets.is_empty() {
            let opts = ListenerOpts::new()
                .reuse_port(true)
                .reuse_addr(true)
                .backlog(LISTEN_BACKLOG as i32);
            let listener = TcpListener::bind_with_config(addr, &opts).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("binding {addr} failed: {err}; stop whatever uses the address or change \"listen\""),
                )
            })?;
            bound.push(listener.local_addr().unwrap_or(addr));
            listeners.push(listener);
            continue;
        }
        let first_listener = listeners.len();
        for socket in sockets {
            let listener =
                TcpListener::from_std(std::net::TcpListener::from(socket)).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!("registering an inherited socket for {addr} failed: {err}"),
                    )
                })?;
            listeners.push(listener);
        }
        bound.push(listeners[first_listener].local_addr().unwrap_or(addr));
    }
    Ok((listeners, bound))
}

async fn reap_idle_upstreams(ctx: Rc<WorkerContext>) {
    loop {
        monoio::time::sleep(REAP_INTERVAL).await;
        let closed = ctx.upstreams.borrow_mut().reap();
        if closed > 0 {
            debug!(worker = ctx.id, closed, "closed idle upstream connections");
        }
    }
}

/// Accepts connections forever. `accept` is never raced against a timer or another future:
/// in monoio 0.2.4, dropping an accept whose operation already completed leaks the socket.
async fn accept_loop(ctx: Rc<WorkerContext>, listener: TcpListener) {
    let max_connections = ctx.config.limits.max_connections_per_worker;
    let mut limit_log = RateLimitedLog::new(REPEATED_LOG_INTERVAL);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(worker = ctx.id, error = %err, "accepting a connection failed; retrying shortly");
                monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if ctx.connections.get() >= max_connections {
            if let Some(suppressed) = limit_log.allow() {
                warn!(
                    worker = ctx.id,
                    client = %peer,
                    max_connections,
                    suppressed,
                    "limits.max_connections_per_worker reached; closing new connections until others end"
                );
            }
            // A best-effort response: the connection is closed right after, whatever was sent.
            let _ = send_now(stream.as_raw_fd(), OVERLOADED_RESPONSE);
            drop(stream);
            continue;
        }
        ctx.connections.set(ctx.connections.get() + 1);
        let connection_ctx = ctx.clone();
        monoio::spawn(async move {
            let guard = ConnectionCount(connection_ctx.clone());
            let outcome = CatchUnwind(Box::pin(serve_client(connection_ctx, stream, peer))).await;
            if outcome.is_err() {
                error!(worker = guard.0.id, client = %peer, "a panic ended this connection; the worker and its other connections go on");
            }
        });
    }
}

/// Decrements the worker's connection count when a connection task ends, however it ends.
struct ConnectionCount(Rc<WorkerContext>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

/// Runs a connection future and turns a panic inside it into an error, so one connection's
/// panic does not unwind the whole worker and its other connections.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OVERLOADED_RESPONSE;

    #[test]
    fn overloaded_response_length_matches() {
        let text = std::str::from_utf8(OVERLOADED_RESPONSE).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }
}
