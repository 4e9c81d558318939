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
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelHandle, Canceller};
use monoio::net::{ListenerOpts, TcpListener, UnixStream};
use tracing::{debug, error, info, warn};

use crate::access_log::{self, AccessLog, AccessLogWriter};
use crate::buffer::BufferPool;
use crate::config::{Config, Driver, RelayMode};
use crate::control::{self, Command, WorkerEnd, WorkerHandle, lock};
use crate::generation::Generation;
use crate::logging::{REPEATED_LOG_INTERVAL, RateLimitedLog};
use crate::metrics::{WorkerMetrics, WorkerSnapshot};
use crate::proxy::{ClientRegistry, TEST_PANIC_PATH_ENV, WorkerContext, serve_client};
use crate::sys::{self, duplicate_fd, send_now};
use crate::upstream::Upstreams;

/// How often each worker closes idle upstream connections past `timeouts.upstream_idle_ms`.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// How often each worker frees its idle pool buffers, pipes and spare connection states, if it
/// used none since the previous time, and hands freed allocator memory back to the kernel (`sys::release_freed_memory`). With
/// mimalloc's purge delay of 1 s, a burst's memory is returned within about three intervals
/// of the last lease: one without a lease, the purge delay, and the wait for the next call.
pub const FREED_MEMORY_RELEASE_INTERVAL: Duration = Duration::from_secs(1);

/// Pause after an accept failure such as running out of file descriptors, so the accept loop
/// does not spin while the condition lasts.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Listen backlog of each listener: the kernel's usual maximum (`net.core.somaxconn`), so bursts
/// of connections queue instead of being refused while a worker is busy.
pub const LISTEN_BACKLOG: u32 = 4096;

/// How often a draining worker checks whether its last connection has ended.
pub const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How often a draining worker checks whether its cancelled accepts have returned. A
/// cancellation completes within one turn of the event loop, so this is short.
const LISTENER_CLOSE_POLL_INTERVAL: Duration = Duration::from_millis(1);

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

/// Chooses the driver for `driver`: `auto` is epoll, the faster one in ringway's benchmarks,
/// and `io_uring` fails when this kernel does not allow it.
pub fn choose_driver(driver: Driver) -> io::Result<DriverKind> {
    match driver {
        Driver::Auto | Driver::Epoll => Ok(DriverKind::Epoll),
        Driver::IoUring if monoio::utils::detect_uring() => Ok(DriverKind::IoUring),
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
    pub driver: DriverKind,
    /// The controller's ends of the workers' control channels, in worker order.
    pub controls: Vec<WorkerHandle>,
    /// The access log writer thread, when the access log is on.
    pub access_log: Option<AccessLogWriter>,
    /// A duplicate of every listening socket of every worker, which the hand-off sends to a
    /// replacing process.
    pub sockets: Vec<OwnedFd>,
}

/// The start-up inputs of a worker thread besides its configuration.
struct WorkerStart {
    worker: usize,
    core: Option<usize>,
    driver: DriverKind,
    /// Per `listen` entry: its address and the inherited sockets to accept on, if any.
    addresses: Vec<(SocketAddr, Vec<OwnedFd>)>,
    control: WorkerEnd,
    access_log: Option<AccessLog>,
    ready: mpsc::Sender<Ready>,
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
    let (access_log, mut worker_logs) = match AccessLogWriter::start(&config.access_log, count)? {
        Some((writer, logs)) => (Some(writer), logs.into_iter().map(Some).collect()),
        None => (None, (0..count).map(|_| None).collect::<Vec<_>>()),
    };
    let mut listen = config.listen.clone();
    let mut threads = Vec::with_capacity(count);
    let mut controls = Vec::with_capacity(count);
    let mut sockets = Vec::new();
    let assigned = assign_inherited(inherited, config.listen.len(), count);
    for ((worker, log), own) in worker_logs.iter_mut().enumerate().zip(assigned) {
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker_config = config.clone();
        let (handle, control) = control::channel(worker)?;
        controls.push(handle);
        let start = WorkerStart {
            worker,
            core: config.workers.core_for(worker),
            driver,
            addresses: listen.iter().copied().zip(own).collect(),
            control,
            access_log: log.take(),
            ready: ready_tx,
        };
        let thread = std::thread::Builder::new()
            .name(format!("ringway-worker-{worker}"))
            .spawn(move || run_worker(start, worker_config))?;
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
        driver,
        controls,
        access_log,
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

fn run_worker(start: WorkerStart, config: Arc<Config>) {
    let pinned = start
        .core
        .is_some_and(|id| core_affinity::set_for_current(core_affinity::CoreId { id }));
    let (worker, driver, ready) = (start.worker, start.driver, start.ready.clone());
    let main = worker_main(start, pinned, config.clone());
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

async fn worker_main(start: WorkerStart, pinned: bool, config: Arc<Config>) {
    let WorkerStart {
        worker,
        core,
        driver,
        addresses,
        control,
        access_log,
        ready,
    } = start;
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
    let control_socket = match control_socket(control.socket, driver) {
        Ok(socket) => socket,
        Err(err) => {
            let _ = ready.send(Err(io::Error::new(
                err.kind(),
                format!("worker {worker}: registering the control channel failed: {err}"),
            )));
            return;
        }
    };
    let upstreams = Upstreams::new(&config);
    let metrics = WorkerMetrics::default();
    let generation = Generation::new(1, config.clone(), &upstreams, &metrics, worker);
    let ctx = Rc::new(WorkerContext {
        id: worker,
        driver,
        panic_path: std::env::var_os(TEST_PANIC_PATH_ENV).map(|path| path.into_encoded_bytes()),
        splice: config.relay != RelayMode::Copy && driver == DriverKind::Epoll,
        pool: BufferPool::new(config.buffers.size_bytes, config.buffers.per_worker),
        upstreams: RefCell::new(upstreams),
        generation: RefCell::new(Rc::new(generation)),
        metrics,
        access_log,
        connections: Cell::new(0),
        clients: ClientRegistry::default(),
        draining: Cell::new(false),
        drain_replied: Cell::new(false),
        accept_canceller: RefCell::new(Some(Canceller::new())),
        open_listeners: Cell::new(listeners.len()),
        pool_log: RefCell::new(RateLimitedLog::new(REPEATED_LOG_INTERVAL)),
        client_error_log: RefCell::new(RateLimitedLog::new(REPEATED_LOG_INTERVAL)),
        upstream_error_log: RefCell::new(RateLimitedLog::new(REPEATED_LOG_INTERVAL)),
        pipes: RefCell::new(Vec::new()),
        spare_states: RefCell::new(Vec::new()),
        spares_taken: Cell::new(false),
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
    monoio::spawn(release_freed_memory(ctx.clone()));
    monoio::spawn(probe_servers(ctx.clone()));
    monoio::spawn(serve_control(
        ctx.clone(),
        control_socket,
        control.slots.clone(),
    ));
    if ctx.access_log.is_some() {
        monoio::spawn(flush_access_log(ctx.clone()));
    }
    let cancel = match ctx.accept_canceller.borrow().as_ref() {
        Some(canceller) => canceller.handle(),
        None => return,
    };
    let mut accept_loops = Vec::new();
    for listener in listeners {
        accept_loops.push(monoio::spawn(accept_loop(
            ctx.clone(),
            listener,
            cancel.clone(),
        )));
    }
    for accept in accept_loops {
        accept.await;
    }

    // The accept loops end only when the worker drains: wait for the connections in flight.
    let open = &control.slots.open_connections;
    while ctx.connections.get() > 0 {
        open.store(ctx.connections.get(), Ordering::Relaxed);
        monoio::time::sleep(DRAIN_POLL_INTERVAL).await;
    }
    open.store(0, Ordering::Relaxed);
    // A worker without connections gets here before its control task has answered the drain
    // command. Ending now would drop that task, and the controller would wait out its reply
    // timeout and report the worker as failed.
    let answer_deadline = Instant::now() + control::REPLY_TIMEOUT;
    while !ctx.drain_replied.get() && Instant::now() < answer_deadline {
        monoio::time::sleep(DRAIN_POLL_INTERVAL).await;
    }
    if let Some(log) = &ctx.access_log {
        log.close(&ctx.metrics);
    }
    debug!(worker, "worker drained");
}

/// Registers the worker's end of its control channel with the worker's runtime. The epoll
/// driver needs a non-blocking socket; the io_uring driver works with blocking sockets, as
/// monoio's own sockets are on it.
fn control_socket(
    socket: std::os::unix::net::UnixStream,
    driver: DriverKind,
) -> io::Result<UnixStream> {
    socket.set_nonblocking(driver == DriverKind::Epoll)?;
    UnixStream::from_std(socket)
}

/// Carries out the commands of the control channel until the controller's end closes.
async fn serve_control(
    ctx: Rc<WorkerContext>,
    mut socket: UnixStream,
    slots: Arc<control::ControlSlots>,
) {
    let mut buf = Vec::with_capacity(1);
    loop {
        let (result, returned) = socket.read(buf).await;
        buf = returned;
        match result {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(command) = Command::from_byte(buf[0]) else {
            warn!(
                worker = ctx.id,
                byte = buf[0],
                "unknown control command ignored"
            );
            continue;
        };
        match command {
            Command::Reload => {
                if let Some((number, config)) = lock(&slots.config).take() {
                    apply_config(&ctx, number, config);
                }
            }
            Command::Drain => {
                start_drain(&ctx, &slots);
                // The reply tells the controller that this worker holds no listener any more,
                // so the process may close its own copies of the sockets.
                listeners_closed(&ctx).await;
            }
            Command::Metrics => {
                let snapshot = snapshot(&ctx);
                *lock(&slots.snapshot) = Some(snapshot);
            }
        }
        let (result, _) = socket.write_all(vec![command as u8]).await;
        if command == Command::Drain {
            ctx.drain_replied.set(true);
        }
        if result.is_err() {
            return;
        }
    }
}

/// Makes `config` the worker's current generation. Requests in flight keep the generation they
/// started with; idle upstream connections to servers still configured stay pooled.
fn apply_config(ctx: &WorkerContext, number: u64, config: Arc<Config>) {
    let closed = ctx.upstreams.borrow_mut().reconfigure(&config);
    let generation = Generation::new(number, config, &ctx.upstreams.borrow(), &ctx.metrics, ctx.id);
    *ctx.generation.borrow_mut() = Rc::new(generation);
    debug!(
        worker = ctx.id,
        generation = number,
        closed_idle_upstream = closed,
        "switched to a reloaded configuration"
    );
}

/// Stops accepting and closes idle client connections. Busy connections close after their
/// current response (see `proxy`), and `worker_main` returns once none is left.
///
/// The pending accepts are cancelled rather than failed with shutdown(2), because after a
/// hand-off the replacing process accepts on the same sockets (the same open file
/// descriptions), and shutdown(2) would stop its listeners as well.
fn start_drain(ctx: &WorkerContext, slots: &control::ControlSlots) {
    if ctx.draining.replace(true) {
        return;
    }
    slots
        .open_connections
        .store(ctx.connections.get(), Ordering::Relaxed);
    if let Some(canceller) = ctx.accept_canceller.borrow_mut().take() {
        canceller.cancel();
    }
    let closed_idle = ctx.clients.close_idle();
    debug!(
        worker = ctx.id,
        closed_idle,
        busy = ctx.connections.get() - closed_idle,
        "worker draining"
    );
}

/// Waits until every accept loop of a draining worker has ended and closed its listener.
async fn listeners_closed(ctx: &WorkerContext) {
    while ctx.open_listeners.get() > 0 {
        monoio::time::sleep(LISTENER_CLOSE_POLL_INTERVAL).await;
    }
}

fn snapshot(ctx: &WorkerContext) -> WorkerSnapshot {
    let mut snapshot = ctx.metrics.snapshot();
    snapshot.generation = ctx.generation.borrow().number;
    let pool = ctx.pool.stats();
    snapshot.gauges.client_connections_active = ctx.connections.get() as u64;
    snapshot.gauges.client_connections_idle = ctx.clients.idle_count() as u64;
    snapshot.gauges.upstream_connections_idle = ctx.upstreams.borrow().idle_count() as u64;
    snapshot.gauges.buffers_in_use = pool.leased as u64;
    snapshot.gauges.buffers_capacity = ctx.config.buffers.per_worker as u64;
    snapshot.gauges.buffer_waits = pool.waits;
    snapshot
}

async fn flush_access_log(ctx: Rc<WorkerContext>) {
    loop {
        monoio::time::sleep(access_log::FLUSH_INTERVAL).await;
        if let Some(log) = &ctx.access_log {
            log.flush(&ctx.metrics);
        }
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

async fn release_freed_memory(ctx: Rc<WorkerContext>) {
    loop {
        monoio::time::sleep(FREED_MEMORY_RELEASE_INTERVAL).await;
        ctx.pool.free_if_unused();
        ctx.release_unused_spares();
        sys::release_freed_memory();
    }
}

/// How often each worker checks whether an upstream's active health probe is due. Probe
/// intervals shorter than this tick are rounded up to it.
pub const PROBE_TICK: Duration = Duration::from_millis(100);

/// Sends the active health probes of every upstream that has `health.active`, each at its
/// interval, from this worker. Every worker probes on its own, so a server sees one probe per
/// worker per interval, and each worker's view of health needs no shared state.
///
/// NOTE: probes of one worker run one after another, so a round over many silent servers takes
/// up to their count times the probe timeout, and later servers are probed late.
async fn probe_servers(ctx: Rc<WorkerContext>) {
    loop {
        monoio::time::sleep(PROBE_TICK).await;
        if ctx.draining.get() {
            return;
        }
        let generation = ctx.current_generation();
        let now = std::time::Instant::now();
        for (group, upstream) in generation.config.upstreams.iter().enumerate() {
            let Some(active) = &upstream.health.active else {
                continue;
            };
            let next = &generation.gateway.next_probe[group];
            if next.get() > now {
                continue;
            }
            next.set(now + active.interval);
            for (index, server) in upstream.servers.iter().enumerate() {
                let result = crate::traffic::probe::probe(
                    server.addr,
                    &server.authority,
                    &active.path,
                    active.timeout,
                )
                .await;
                let change = generation.gateway.upstreams.borrow_mut()[group].health[index]
                    .active
                    .as_mut()
                    .and_then(|health| health.record_probe(&result, &active.expected_status));
                match change {
                    Some(crate::traffic::health::HealthChange::BecameUnhealthy) => {
                        match &result {
                            Ok(status) => warn!(worker = ctx.id, upstream = %upstream.name, server = %server.addr, status, "server failed its health checks; it gets no requests until it passes again"),
                            Err(error) => warn!(worker = ctx.id, upstream = %upstream.name, server = %server.addr, %error, "server failed its health checks; it gets no requests until it passes again"),
                        }
                    }
                    Some(crate::traffic::health::HealthChange::BecameHealthy) => {
                        info!(worker = ctx.id, upstream = %upstream.name, server = %server.addr, "server passed its health checks again");
                    }
                    None => {}
                }
            }
        }
    }
}

/// Accepts connections until the worker drains, then closes the listener.
///
/// `accept` is never raced against a timer or dropped while pending: in monoio 0.2.4, dropping
/// an accept whose operation already completed leaks the socket. Draining instead cancels the
/// accept through `cancel` and this loop awaits its result. A connection that the accept still
/// returns (io_uring completed it before the cancellation arrived) is served like any other.
async fn accept_loop(ctx: Rc<WorkerContext>, listener: TcpListener, cancel: CancelHandle) {
    let mut limit_log = RateLimitedLog::new(REPEATED_LOG_INTERVAL);
    loop {
        let (stream, peer) = match listener.cancelable_accept(cancel.clone()).await {
            Ok(accepted) => accepted,
            // ECANCELED, or an error of a cancelled accept: either way it is the last one.
            Err(_) if ctx.draining.get() => break,
            Err(err) => {
                warn!(worker = ctx.id, error = %err, "accepting a connection failed; retrying shortly");
                monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let max_connections = ctx
            .generation
            .borrow()
            .config
            .limits
            .max_connections_per_worker;
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
            // The box is allocated before the future is created, so that only the future's
            // arguments are written into it. `Box::pin(serve_client(..))` copied the whole
            // 16 KB future from the stack.
            let slot = Box::new_uninit();
            let future = Box::write(slot, serve_client(connection_ctx, stream, peer));
            let outcome = CatchUnwind(Box::into_pin(future)).await;
            if outcome.is_err() {
                error!(worker = guard.0.id, client = %peer, "a panic ended this connection; the worker and its other connections go on");
            }
        });
        if ctx.draining.get() {
            break;
        }
    }
    // Closes this worker's descriptor. The socket itself stays open while another descriptor
    // refers to it: the process's hand-off copy, or a replacing process's.
    drop(listener);
    ctx.open_listeners.set(ctx.open_listeners.get() - 1);
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
