//! The client connection loop: read a request head, route it, exchange it with an upstream, and
//! repeat while both sides keep the connection alive.
//!
//! Buffers: a client connection waits for its next request with no pooled buffer, only a small
//! read buffer of its own. It then takes two pooled buffers together: `inbound` for the client's
//! bytes and `upstream` for the upstream's. Once the response head has arrived and the request is
//! sent, a drained `inbound` goes back early, and the rest goes back when the connection is idle
//! again. A connection never waits for a buffer while it holds one, which keeps the pool free of
//! deadlocks, and relays add a buffer only when one is free at once.
//!
//! Errors: every failure on the request path is a `ProxyError`, and `Client::respond_error` is
//! the one place that turns it into the client's response and a log line.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Canceller};
use monoio::net::TcpStream;
use pin_project_lite::pin_project;
use tracing::{debug, info, warn};

use crate::access_log::{self, AccessLog};
use crate::buffer::{BufferPool, PoolBuf};
use crate::config::Config;
use crate::error::{Kind, ProxyError, Side, shown};
use crate::generation::Generation;
use crate::http::body::{BodyKind, ChunkedDecoder, ChunkedLimits, LengthDecoder};
use crate::config::{ClientKey, Timeouts};
use crate::gateway;
use crate::http::forward::{self, ClientFraming, ClientIp, RequestContext, ResponseExtras};
use crate::routing::headers::{REQUEST_ID_LEN, Vars, is_valid_request_id};
use crate::routing::rewrite::{Normalized, normalize_path};
use crate::routing::template::Captures;
use crate::traffic::balance::{PickRequest, find_cookie};
use crate::traffic::limiter::{address_key, write_rate_limit_headers};
use crate::traffic::retry::{FailureStage, retryable};
use crate::http::head::{self, HeadLimits, RequestHead, ResponseHead};
use crate::logging::RateLimitedLog;
use crate::metrics::{self, WorkerMetrics};
use crate::relay::{
    self, RelayFailure, RelayParams, RelayTimers, Relayed, Sink, Source, TAILROOM,
};
use crate::sys::{
    PeerState, Pipe, StreamReader, StreamWatcher, StreamWriter, peek_peer, shutdown_socket,
    split_stream,
};
use crate::timer::IoTimer;
use crate::tunnel;
use crate::upstream::{self, UpstreamConnection, Upstreams};
use crate::worker::DriverKind;

/// How long ringway keeps reading (and discarding) a client's unread request body after an error
/// response before it closes the connection. Closing a socket with unread input makes the kernel
/// send a reset, which can destroy the error response before the client reads it.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes a connection reads while it waits for its next request, before it takes pooled
/// buffers. Most request heads fit (browsers send a few hundred bytes); a larger head goes on in
/// the pooled buffer. nginx's `client_header_buffer_size` has the same default.
pub const IDLE_READ_BYTES: usize = 1024;

/// Maximum request-body bytes ringway discards while lingering before it closes anyway.
pub const LINGER_MAX_BYTES: usize = 1 << 20;

/// How long an upstream may work on a request before ringway starts watching the client for a
/// close. Most responses start sooner, and a client that left is still noticed this long after.
pub const CLIENT_WATCH_DELAY: Duration = Duration::from_millis(50);

/// Empty pipes a worker keeps for reuse by splice relays; a busier moment creates more and
/// closes them when done. Each pipe is two descriptors and up to one buffer of kernel memory.
pub const MAX_IDLE_PIPES: usize = 16;

/// Closed connections' growable state that a worker keeps for new connections, so that a
/// client opening a connection per request costs no allocations for its heads. Each is a few
/// KiB, at most `MAX_SPARE_STATE_BYTES`.
pub const MAX_SPARE_STATES: usize = 32;

/// Largest state kept for reuse, in bytes of vector capacity. A connection that grew its
/// vectors for unusually large heads frees them instead of keeping them for others.
pub const MAX_SPARE_STATE_BYTES: usize = 16 * 1024;

/// The environment variable that sets `WorkerContext::panic_path`. It is meant for tests only:
/// nothing reads it unless it is set, and then only the exact path panics.
pub const TEST_PANIC_PATH_ENV: &str = "RINGWAY_TEST_PANIC_PATH";

/// The state one worker shares between its connections. Nothing here is shared across
/// threads except the read-only configurations.
pub struct WorkerContext {
    pub id: usize,
    pub driver: DriverKind,
    /// A request path that makes its connection panic, set from `TEST_PANIC_PATH_ENV` at start.
    /// Tests use it to prove that a panic ends only its own connection.
    pub panic_path: Option<Vec<u8>>,
    /// Response bodies with a known end go through `relay::splice_relay`: `relay` is "splice"
    /// and the worker runs the epoll driver. monoio's io_uring driver keeps its sockets in
    /// blocking mode, where a splice(2) from a quiet upstream would block the whole worker, so
    /// io_uring workers copy.
    pub splice: bool,
    /// The configuration the worker started with. Only settings that need a restart to change
    /// (buffers, relay, listeners) are read from it; requests read `generation`.
    pub config: Arc<Config>,
    /// The current configuration generation; a reload replaces it.
    pub generation: RefCell<Rc<Generation>>,
    pub pool: BufferPool,
    pub upstreams: RefCell<Upstreams>,
    pub metrics: WorkerMetrics,
    /// `None` when the access log is off.
    pub access_log: Option<AccessLog>,
    /// Open client connections.
    pub connections: Cell<usize>,
    pub clients: ClientRegistry,
    /// Set once the worker drains: connections close after their current response.
    pub draining: Cell<bool>,
    /// Set once the worker has replied to the drain command, so that it does not end before
    /// the controller learns that its listeners are closed.
    pub drain_replied: Cell<bool>,
    /// Cancels the pending accept of every listener when the worker drains; `None` once used.
    pub accept_canceller: RefCell<Option<Canceller>>,
    /// Listeners whose accept loop has not ended yet.
    pub open_listeners: Cell<usize>,
    /// Rate limit for the warning that the buffer pool is exhausted.
    pub pool_log: RefCell<RateLimitedLog>,
    /// Rate limit for the log lines about requests rejected as the client's fault.
    pub client_error_log: RefCell<RateLimitedLog>,
    /// Rate limit for the log lines about failed upstream exchanges.
    pub upstream_error_log: RefCell<RateLimitedLog>,
    /// Empty pipes kept for splice relays (`relay: "splice"`), at most `MAX_IDLE_PIPES`.
    pub pipes: RefCell<Vec<Pipe>>,
    /// State of closed connections kept for new ones, at most `MAX_SPARE_STATES`.
    pub spare_states: RefCell<Vec<ConnectionState>>,
    /// A pipe or a spare state was taken since the last `release_unused_spares`.
    pub spares_taken: Cell<bool>,
}

fn request_limits(config: &Config) -> HeadLimits {
    let limits = &config.limits;
    HeadLimits {
        max_head_bytes: limits.max_request_head_bytes,
        max_header_count: limits.max_header_count,
    }
}

fn response_limits(config: &Config) -> HeadLimits {
    let limits = &config.limits;
    HeadLimits {
        max_head_bytes: limits.max_response_head_bytes,
        max_header_count: limits.max_header_count,
    }
}

fn chunked_limits(config: &Config) -> ChunkedLimits {
    let limits = &config.limits;
    ChunkedLimits {
        max_extension_bytes: limits.max_chunk_extension_bytes,
        max_trailer_bytes: limits.max_trailer_bytes,
    }
}

impl WorkerContext {
    /// Returns the current configuration generation.
    pub fn current_generation(&self) -> Rc<Generation> {
        self.generation.borrow().clone()
    }

    /// Takes an idle pipe or creates one; `None` when the system has no descriptors to spare,
    /// and then the relay copies instead.
    fn take_pipe(&self) -> Option<Pipe> {
        self.spares_taken.set(true);
        if let Some(pipe) = self.pipes.borrow_mut().pop() {
            return Some(pipe);
        }
        match Pipe::new(self.config.buffers.size_bytes) {
            Ok(pipe) => Some(pipe),
            Err(err) => {
                debug!(worker = self.id, error = %err, "creating a pipe for splice failed; copying instead");
                None
            }
        }
    }

    /// Closes the idle pipes and frees the spare connection states if none was taken since
    /// the previous call, so that a quiet worker keeps no descriptors or memory for a load
    /// that has passed. Called periodically, like `BufferPool::free_if_unused`.
    pub fn release_unused_spares(&self) {
        if self.spares_taken.replace(false) {
            return;
        }
        self.pipes.borrow_mut().clear();
        self.spare_states.borrow_mut().clear();
    }

    /// Takes the state of a closed connection, or a new one.
    fn take_state(&self) -> ConnectionState {
        self.spares_taken.set(true);
        let mut state = self.spare_states.borrow_mut().pop().unwrap_or_default();
        state.idle_buf.reserve_exact(IDLE_READ_BYTES);
        state
    }

    /// Keeps a closed connection's state for a new connection, unless enough are kept or it
    /// grew too large.
    fn return_state(&self, mut state: ConnectionState) {
        let mut spares = self.spare_states.borrow_mut();
        if spares.len() < MAX_SPARE_STATES && state.capacity_bytes() <= MAX_SPARE_STATE_BYTES {
            state.clear();
            spares.push(state);
        }
    }

    fn return_pipe(&self, pipe: Pipe) {
        let mut pipes = self.pipes.borrow_mut();
        if pipes.len() < MAX_IDLE_PIPES {
            pipes.push(pipe);
        }
    }
}

/// Largest body that goes out in the same write as its head. A small body that arrived whole
/// with its head is copied behind it, which saves a system call, a TCP segment and a wake-up of
/// the receiver per message. The head buffer of a connection grows by at most this much.
pub const COALESCE_BODY_BYTES: usize = 4096;

/// Appends a body of `length` bytes (a Content-Length body) to the head in `head` when
/// `buffered` contains all of it, it is at most `COALESCE_BODY_BYTES` and `head` stays within
/// `room` bytes. Returns the body bytes appended, 0 when the body streams on its own.
fn coalesce_body(head: &mut Vec<u8>, room: usize, buffered: &[u8], length: Option<u64>) -> usize {
    match length.and_then(|length| usize::try_from(length).ok()) {
        Some(length)
            if length > 0
                && length <= COALESCE_BODY_BYTES
                && length <= buffered.len()
                && head.len() + length <= room =>
        {
            head.extend_from_slice(&buffered[..length]);
            length
        }
        _ => 0,
    }
}

fn source_for(kind: BodyKind, config: &Config) -> Source {
    match kind {
        BodyKind::None => Source::Length(LengthDecoder::new(0)),
        BodyKind::Length(length) => Source::Length(LengthDecoder::new(length)),
        BodyKind::Chunked => Source::Chunked(ChunkedDecoder::new(chunked_limits(config))),
        BodyKind::CloseDelimited => Source::Close,
    }
}

/// The worker's client connections, so that a drain can close the idle ones at once. Slots
/// are reused, so a warm worker registers connections without allocating.
#[derive(Default)]
pub struct ClientRegistry {
    slots: RefCell<Vec<Option<ClientSlot>>>,
    free: RefCell<Vec<usize>>,
}

#[derive(Clone, Copy)]
struct ClientSlot {
    fd: RawFd,
    /// Waiting for the first byte of its next request.
    idle: bool,
    /// Has served a request, so its client may expect it to close while idle.
    kept_alive: bool,
}

impl ClientRegistry {
    fn register(&self, fd: RawFd) -> usize {
        let slot = Some(ClientSlot {
            fd,
            idle: false,
            kept_alive: false,
        });
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(index) => {
                slots[index] = slot;
                index
            }
            None => {
                slots.push(slot);
                slots.len() - 1
            }
        }
    }

    fn unregister(&self, index: usize) {
        self.slots.borrow_mut()[index] = None;
        self.free.borrow_mut().push(index);
    }

    fn set_idle(&self, index: usize, idle: bool, kept_alive: bool) {
        if let Some(slot) = self.slots.borrow_mut()[index].as_mut() {
            slot.idle = idle;
            slot.kept_alive = kept_alive;
        }
    }

    /// Returns the number of connections waiting for their next request.
    pub fn idle_count(&self) -> usize {
        self.slots
            .borrow()
            .iter()
            .flatten()
            .filter(|slot| slot.idle)
            .count()
    }

    /// Shuts down every idle kept-alive connection, which ends its pending read, and returns
    /// how many. A new connection still waiting for its first request is left to send it: its
    /// client has not had a response yet, so it could not tell a close from a failure. Such a
    /// connection is served once with `Connection: close`, bounded by `timeouts.client_head_ms`.
    ///
    /// NOTE: a request whose first bytes arrived in the same event-loop turn still counts as
    /// idle here, so it is cut. Its client sees the connection close without a response, as
    /// with any server that closes idle keep-alive connections.
    pub fn close_idle(&self) -> usize {
        let mut closed = 0;
        for slot in self
            .slots
            .borrow()
            .iter()
            .flatten()
            .filter(|slot| slot.idle && slot.kept_alive)
        {
            // The connection task still owns the descriptor; shutdown does not close it.
            if shutdown_socket(slot.fd).is_ok() {
                closed += 1;
            }
        }
        closed
    }
}

/// The two pooled buffers of a connection with a request in progress.
struct Buffers {
    inbound: PoolBuf,
    upstream: PoolBuf,
}

/// Serves one client connection until it closes, fails, or idles out.
pub async fn serve_client(ctx: Rc<WorkerContext>, stream: TcpStream, peer: SocketAddr) {
    // This await never suspends. With a single await, rustc 1.95 lays the future out as one
    // struct, the 128-byte-aligned `run` future first and the arguments behind it, so creating
    // the future for a new connection copied 16 KB. With two awaits the arguments come first,
    // and the copy is 120 bytes (-Zprint-type-sizes). The locals below come after this await:
    // created before it, the 128-byte-aligned timers lived across both awaits, and creating the
    // future copied them too (about 480 instructions per connection in scripts/callgrind).
    std::future::ready(()).await;
    let _ = stream.set_nodelay(true);
    let registry_slot = ctx.clients.register(stream.as_raw_fd());
    let ConnectionState {
        request_line,
        request,
        response,
        head_out,
        idle_buf,
        path_buf,
        scratch,
        request_id,
        error_fields,
    } = ctx.take_state();
    let timers = pin!(ConnectionTimers::default());
    let mut client = Client {
        timers: TimerSlot(Some(timers)),
        generation: ctx.current_generation(),
        registry_slot,
        record: RequestRecord::default(),
        request_line,
        ctx,
        peer,
        client_ip: ClientIp::new(peer.ip()),
        stream: Some(stream),
        buffers: None,
        pos: 0,
        request,
        response,
        head_out,
        idle_buf,
        is_head: false,
        served: 0,
        captures: Captures::new(),
        path_buf,
        path_rewritten: false,
        scratch,
        request_id,
        error_fields,
        timeouts: Timeouts::default(),
    };
    client.run().await;
    debug!(client = %peer, requests = client.served, "client connection closed");
    client.ctx.return_state(ConnectionState {
        request_line: std::mem::take(&mut client.request_line),
        request: std::mem::take(&mut client.request),
        response: std::mem::take(&mut client.response),
        head_out: std::mem::take(&mut client.head_out),
        idle_buf: std::mem::take(&mut client.idle_buf),
        path_buf: std::mem::take(&mut client.path_buf),
        scratch: std::mem::take(&mut client.scratch),
        request_id: std::mem::take(&mut client.request_id),
        error_fields: std::mem::take(&mut client.error_fields),
    });
}

/// The parts of a connection that grow to fit its heads and are reused across its requests.
/// A closed connection's state goes back to its worker for the next connection.
#[derive(Default)]
pub struct ConnectionState {
    request_line: Vec<u8>,
    request: RequestHead,
    response: ResponseHead,
    head_out: Vec<u8>,
    idle_buf: Vec<u8>,
    path_buf: Vec<u8>,
    scratch: Scratch,
    request_id: Vec<u8>,
    error_fields: Vec<u8>,
}

impl ConnectionState {
    /// Returns its byte vectors, those of `scratch` included.
    fn byte_vectors(&mut self) -> [&mut Vec<u8>; 10] {
        let Scratch {
            target,
            host,
            request_id: scratch_id,
            cookie,
        } = &mut self.scratch;
        [
            &mut self.request_line,
            &mut self.head_out,
            &mut self.idle_buf,
            &mut self.path_buf,
            target,
            host,
            scratch_id,
            cookie,
            &mut self.request_id,
            &mut self.error_fields,
        ]
    }

    /// Returns the bytes of capacity its vectors hold.
    fn capacity_bytes(&mut self) -> usize {
        let bytes: usize = self.byte_vectors().iter().map(|vec| vec.capacity()).sum();
        bytes + self.request.capacity_bytes() + self.response.capacity_bytes()
    }

    /// Empties the vectors and resets the heads, so nothing of the closed connection is seen
    /// by the next.
    fn clear(&mut self) {
        self.request.reset();
        self.response.reset();
        for vec in self.byte_vectors() {
            vec.clear();
        }
    }
}

pin_project! {
    /// The timers of one client connection, one per direction of each side, reused by every
    /// request on it. At any time an exchange runs at most one operation in each direction.
    #[project = ConnectionTimersProj]
    #[derive(Default)]
    struct ConnectionTimers {
        #[pin]
        client_read: IoTimer,
        #[pin]
        client_write: IoTimer,
        #[pin]
        upstream_read: IoTimer,
        #[pin]
        upstream_write: IoTimer,
        // Delays watching the client for a close while the upstream works on a request.
        // A plain comment, because pin_project! rejects doc comments on fields.
        #[pin]
        client_watch: IoTimer,
    }
}

/// The connection's timers, which `Client::run_exchange` takes out while the exchange's
/// futures borrow them, so that `Client::duplex` can borrow the rest of the client.
struct TimerSlot<'t>(Option<Pin<&'t mut ConnectionTimers>>);

impl TimerSlot<'_> {
    fn get(&mut self) -> ConnectionTimersProj<'_> {
        self.0
            .as_mut()
            .expect("connection timers are out only inside run_exchange")
            .as_mut()
            .project()
    }
}

struct Client<'t> {
    timers: TimerSlot<'t>,
    ctx: Rc<WorkerContext>,
    /// The generation of the request in progress; between requests, of the last one.
    generation: Rc<Generation>,
    /// This connection's entry in `WorkerContext::clients`.
    registry_slot: usize,
    /// The record of the request in progress, for metrics and the access log.
    record: RequestRecord,
    /// Method, a space and target of the request in progress, copied for the access log
    /// because the inbound buffer may go back to the pool before the response ends. Kept for
    /// the connection's life, so it stops allocating once it fits the longest target.
    request_line: Vec<u8>,
    peer: SocketAddr,
    /// The peer's IP address, formatted once for the headers that carry it.
    client_ip: ClientIp,
    /// The connection, whole between requests (split into halves during an exchange).
    stream: Option<TcpStream>,
    buffers: Option<Buffers>,
    /// Start of unprocessed client bytes in `buffers.inbound`.
    pos: usize,
    request: RequestHead,
    response: ResponseHead,
    /// Response heads for the client are written here, reused across requests.
    head_out: Vec<u8>,
    /// The read buffer of an idle connection (`IDLE_READ_BYTES`), kept for the connection's life.
    idle_buf: Vec<u8>,
    /// The current request is a HEAD request, so an error response has no body.
    is_head: bool,
    served: u64,
    /// The captures of the matched route's path template.
    captures: Captures,
    /// The request path with dot segments removed, when that changed it.
    path_buf: Vec<u8>,
    /// `path_buf` contains the path routes match, not the received one.
    path_rewritten: bool,
    /// Per-request byte buffers that outlive the inbound buffer, reused across requests.
    scratch: Scratch,
    /// The request id of the request in progress, for the upstream, the response, ringway's
    /// own error responses and the access log. Empty when there is none.
    request_id: Vec<u8>,
    /// Extra header lines for ringway's own error response (Retry-After, RateLimit-*).
    error_fields: Vec<u8>,
    /// The timeouts of the matched route.
    timeouts: Timeouts,
}

/// Bytes an exchange needs after the inbound buffer may have gone back to the pool. They live
/// in the connection, so they stop allocating once they fit the largest request seen.
#[derive(Default)]
struct Scratch {
    /// The rewritten upstream target.
    target: Vec<u8>,
    /// The request authority, for the `{host}` placeholder of response rules.
    host: Vec<u8>,
    /// The request id sent upstream and back to the client.
    request_id: Vec<u8>,
    /// The sticky-session cookie value to set on the response.
    cookie: Vec<u8>,
}

/// Counts a request as in flight to one server for the balancer, until dropped.
struct InFlight {
    generation: Rc<Generation>,
    group: usize,
    server: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut upstreams = self.generation.gateway.upstreams.borrow_mut();
        upstreams[self.group].balancer.finished(self.server);
    }
}

/// Returns the first value of header `name` in a request.
fn header_value<'b>(request: &RequestHead, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
    request
        .fields
        .iter()
        .find(|field| field.name.of(buf).eq_ignore_ascii_case(name))
        .map(|field| field.value.of(buf))
}

/// Returns what the upstream's balancer may use from a request: the hash key and the sticky
/// cookie.
fn pick_request<'b>(
    upstream: &gateway::UpstreamRuntime,
    request: &RequestHead,
    buf: &'b [u8],
    address: &'b [u8; 16],
) -> PickRequest<'b> {
    let hash_key = match &upstream.hash_key {
        Some(ClientKey::ClientAddress) => Some(&address[..]),
        Some(ClientKey::Header(name)) => header_value(request, buf, name.as_bytes()),
        None => None,
    };
    let sticky = upstream.sticky.as_ref().and_then(|(name, _)| {
        request
            .fields
            .iter()
            .filter(|field| field.name.of(buf).eq_ignore_ascii_case(b"cookie"))
            .find_map(|field| find_cookie(field.value.of(buf), name))
    });
    PickRequest { hash_key, sticky }
}

/// Returns the query of a request target, without its '?'.
fn query_of(target: &[u8]) -> Option<&[u8]> {
    let at = target.iter().position(|&byte| byte == b'?')?;
    Some(&target[at + 1..])
}

/// Returns the path routes match: "/" for an absolute-form target without a path and for
/// "OPTIONS *" (RFC 9110 section 4.2.3), which concerns the server as a whole.
fn routed_path<'b>(request: &RequestHead, buf: &'b [u8]) -> &'b [u8] {
    match request.path.of(buf) {
        b"" | b"*" => b"/",
        path => path,
    }
}

impl Drop for Client<'_> {
    fn drop(&mut self) {
        self.ctx.clients.unregister(self.registry_slot);
    }
}

/// The outcome of one request, for metrics and the access log.
#[derive(Default)]
struct RequestRecord {
    /// When the request head was complete.
    started: Option<Instant>,
    wall_time: Option<SystemTime>,
    /// Length of the method in `Client::request_line`.
    method_len: usize,
    route: Option<usize>,
    /// The final status sent to the client; 0 for none.
    status: u16,
    bytes_sent: u64,
    bytes_received: u64,
    upstream: Option<SocketAddr>,
    /// Index of the upstream group in the request's generation.
    upstream_group: Option<usize>,
    /// When the current upstream attempt started.
    upstream_started: Option<Instant>,
    /// From the start of the upstream attempt to the final response head.
    upstream_duration: Option<Duration>,
}

/// The connection loop's next step after an exchange.
enum Next {
    /// Both sides are clean: read the next request.
    KeepAlive,
    Close,
}

impl Client<'_> {
    async fn run(&mut self) {
        loop {
            // A draining worker lets each connection finish its current response, then closes
            // it. A connection accepted while the worker began draining has its first request
            // served, because its client cannot tell a close from a failure.
            if self.ctx.draining.get() && self.served > 0 {
                return;
            }
            self.generation = self.ctx.current_generation();
            match self.read_request_head().await {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => {
                    self.begin_request(false);
                    self.respond_error(&err, None).await;
                    return;
                }
            }
            self.served += 1;
            self.begin_request(true);
            let next = self.handle_request().await;
            self.finish_request();
            match next {
                Next::KeepAlive => {}
                Next::Close => return,
            }
        }
    }

    /// Starts the record of a request whose head is complete (`parsed`) or failed, and takes
    /// the current generation for it.
    fn begin_request(&mut self, parsed: bool) {
        self.generation = self.ctx.current_generation();
        self.record = RequestRecord {
            started: Some(Instant::now()),
            ..RequestRecord::default()
        };
        self.request_id.clear();
        self.request_line.clear();
        if self.ctx.access_log.is_none() {
            return;
        }
        self.record.wall_time = Some(SystemTime::now());
        let (Some(buffers), true) = (self.buffers.as_ref(), parsed) else {
            return;
        };
        let buf = &buffers.inbound[..];
        let method = self.request.method(buf);
        self.record.method_len = method.len();
        self.request_line.extend_from_slice(method);
        self.request_line.push(b' ');
        self.request_line
            .extend_from_slice(self.request.target.of(buf));
    }

    /// Counts the finished request and writes its access log line, once per request.
    fn finish_request(&mut self) {
        let Some(started) = self.record.started.take() else {
            return;
        };
        let record = &self.record;
        let duration = started.elapsed();
        let metrics = &self.ctx.metrics;
        let generation = &self.generation;
        let route_metrics = record
            .route
            .and_then(|route| generation.route_metrics.get(route).copied());
        metrics.count_request(route_metrics, record.status, duration);
        metrics::add(&metrics.bytes_received, record.bytes_received);
        metrics::add(&metrics.bytes_sent, record.bytes_sent);
        let Some(log) = &self.ctx.access_log else {
            return;
        };
        let (method, target) = match self.request_line.split_at_checked(record.method_len) {
            Some((method, rest)) if !method.is_empty() => (method, rest.get(1..).unwrap_or(b"")),
            _ => (&b"-"[..], &b"-"[..]),
        };
        let route = self.route_name();
        let entry = access_log::Entry {
            client: self.peer,
            time: record.wall_time.unwrap_or_else(SystemTime::now),
            method,
            target,
            minor_version: self.request.minor_version,
            status: record.status,
            bytes_sent: record.bytes_sent,
            bytes_received: record.bytes_received,
            duration,
            upstream: record.upstream,
            upstream_duration: record.upstream_duration,
            request_id: &self.request_id,
            route,
        };
        log.write(&entry, metrics);
    }

    fn has_pending_bytes(&self) -> bool {
        self.buffers
            .as_ref()
            .is_some_and(|buffers| self.pos < buffers.inbound.len())
    }

    /// Reads the next request head into `inbound`. Returns `Ok(false)` when the client closed or
    /// went quiet between requests, which ends the connection without a response.
    async fn read_request_head(&mut self) -> Result<bool, ProxyError> {
        let generation = self.generation.clone();
        let timeouts = &generation.config.timeouts;
        self.is_head = false;
        let deadline = if self.has_pending_bytes() {
            // Pipelined bytes of the next request: move them to the front of `inbound`.
            let Some(buffers) = self.buffers.as_mut() else {
                return Ok(false);
            };
            let len = buffers.inbound.len();
            buffers.inbound.copy_within(self.pos..len, 0);
            buffers.inbound.truncate(len - self.pos);
            self.pos = 0;
            Instant::now() + timeouts.client_head
        } else {
            let Some(deadline) = self.read_head_start().await? else {
                return Ok(false);
            };
            self.take_buffers().await;
            deadline
        };
        let limits = request_limits(&generation.config);
        let (Some(stream), Some(buffers)) = (self.stream.as_mut(), self.buffers.as_mut()) else {
            return Ok(false);
        };
        let inbound = &mut buffers.inbound;
        loop {
            if !inbound.is_empty() && head::parse_request(inbound, limits, &mut self.request)? {
                self.is_head = self.request.is_head(inbound);
                return Ok(true);
            }
            let window_end = inbound.capacity() - TAILROOM;
            let start = inbound.len();
            if start >= window_end {
                return Err(ProxyError::new(
                    Kind::HeadTooLarge,
                    "request head does not fit in one buffer; raise buffers.size_bytes",
                ));
            }
            let taken = std::mem::replace(inbound, PoolBuf::detached());
            let read = self
                .timers
                .get()
                .client_read
                .until(deadline, stream.read(taken.slice_mut(start..window_end)))
                .await;
            let Ok((result, slice)) = read else {
                return Err(head_timeout(timeouts.client_head));
            };
            *inbound = slice.into_inner();
            match result {
                Ok(0) => {
                    return Err(ProxyError::new(
                        Kind::ClientClosed,
                        "client closed the connection inside a request head",
                    ));
                }
                Ok(_) => {}
                Err(err) => {
                    return Err(ProxyError::new(
                        Kind::ClientClosed,
                        format!("reading the request head failed: {err}"),
                    ));
                }
            }
        }
    }

    /// Waits for the start of the next request in the connection's small idle buffer, and keeps
    /// reading there until the head is complete or the buffer is full. Returns the deadline for
    /// the rest of the head, or `None` when the client closed or stayed quiet.
    ///
    /// An idle connection holds no pooled buffer: the read into the idle buffer costs no extra
    /// system call, and a slow client trickling its head in does not tie up the pool.
    async fn read_head_start(&mut self) -> Result<Option<Instant>, ProxyError> {
        let generation = self.generation.clone();
        let timeouts = &generation.config.timeouts;
        self.buffers = None;
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        let wait = if self.served == 0 {
            timeouts.client_head
        } else {
            timeouts.client_idle
        };
        let idle_buf = std::mem::take(&mut self.idle_buf);
        let kept_alive = self.served > 0;
        self.ctx
            .clients
            .set_idle(self.registry_slot, true, kept_alive);
        let read = self
            .timers
            .get()
            .client_read
            .limit(wait, stream.read(idle_buf))
            .await;
        self.ctx
            .clients
            .set_idle(self.registry_slot, false, kept_alive);
        let mut idle_buf = match read {
            Ok((Ok(n), idle_buf)) if n > 0 => idle_buf,
            _ => return Ok(None),
        };
        let deadline = Instant::now() + timeouts.client_head;
        while !contains_head_end(&idle_buf)
            && idle_buf.len() < idle_buf.capacity()
            && !head::is_invalid_request_start(&idle_buf)
        {
            let start = idle_buf.len();
            let capacity = idle_buf.capacity();
            let read = self
                .timers
                .get()
                .client_read
                .until(deadline, stream.read(idle_buf.slice_mut(start..capacity)))
                .await;
            idle_buf = match read {
                Err(_) => return Err(head_timeout(timeouts.client_head)),
                Ok((Ok(0), _)) => {
                    return Err(ProxyError::new(
                        Kind::ClientClosed,
                        "client closed the connection inside a request head",
                    ));
                }
                Ok((Err(err), _)) => {
                    return Err(ProxyError::new(
                        Kind::ClientClosed,
                        format!("reading the request head failed: {err}"),
                    ));
                }
                Ok((Ok(_), slice)) => slice.into_inner(),
            };
        }
        self.idle_buf = idle_buf;
        Ok(Some(deadline))
    }

    /// Takes the two pooled buffers of a request, waiting while the pool is exhausted, and moves
    /// the bytes read so far from the idle buffer into `inbound`.
    async fn take_buffers(&mut self) {
        if self.ctx.pool.free() < 2 {
            if let Some(suppressed) = self.ctx.pool_log.borrow_mut().allow() {
                let stats = self.ctx.pool.stats();
                warn!(
                    worker = self.ctx.id,
                    leased = stats.leased,
                    waiting = stats.waiting,
                    suppressed,
                    "buffers.per_worker exhausted; requests wait for buffers (raise buffers.per_worker if this persists)"
                );
            }
        }
        let [mut inbound, mut upstream] = self.ctx.pool.acquire::<2>().await;
        inbound.clear();
        upstream.clear();
        inbound.extend_from_slice(&self.idle_buf);
        self.buffers = Some(Buffers { inbound, upstream });
        self.pos = 0;
    }

    /// Routes the parsed request and runs the exchange; returns what the connection does next.
    async fn handle_request(&mut self) -> Next {
        let Some(buffers) = self.buffers.as_ref() else {
            return Next::Close;
        };
        self.record.bytes_received = self.request.head_len as u64;
        self.error_fields.clear();
        let path = routed_path(&self.request, &buffers.inbound);
        if self.ctx.panic_path.as_deref() == Some(path) {
            panic!("{TEST_PANIC_PATH_ENV} matched the request path");
        }
        match self.route_request() {
            Ok(route) => {
                self.timeouts = self.generation.gateway.routes[route].timeouts;
                self.exchange(route).await
            }
            Err(err) => {
                self.respond_error(&err, None).await;
                Next::Close
            }
        }
    }

    /// Finds the request's route and applies its checks that need no I/O: the access list, the
    /// rate limit and the body size limit.
    fn route_request(&mut self) -> Result<usize, ProxyError> {
        let Some(buffers) = self.buffers.as_ref() else {
            return Err(ProxyError::new(Kind::ClientClosed, "no request in progress"));
        };
        let buf = &buffers.inbound[..];
        let request = &self.request;
        let generation = &self.generation;
        let gateway = &generation.gateway;
        let path = routed_path(request, buf);

        // Routes match the path with its dot segments resolved, so "/public/../admin" is matched
        // (and forwarded) as "/admin", the path the upstream would serve.
        self.path_buf.clear();
        self.path_rewritten = match normalize_path(path, &mut self.path_buf) {
            Ok(Normalized::Unchanged) => false,
            Ok(Normalized::Rewritten) => true,
            Err(problem) => {
                return Err(ProxyError::bad_request(format!(
                    "invalid request path {}: {problem}",
                    shown(path)
                )));
            }
        };
        let match_path: &[u8] = if self.path_rewritten {
            &self.path_buf
        } else {
            path
        };
        self.captures.clear();
        let route = gateway.table.find(
            request.authority(buf),
            request.method(buf),
            match_path,
            |name| header_value(request, buf, name),
            &mut self.captures,
        );
        let Some(route) = route else {
            return Err(ProxyError::new(
                Kind::NoRoute,
                format!(
                    "no route matches {} {}",
                    String::from_utf8_lossy(request.method(buf)),
                    shown(request.target.of(buf))
                ),
            ));
        };
        self.record.route = Some(route);
        let runtime = &gateway.routes[route];
        let client_ip = self.peer.ip();

        // The id goes on every response from here on, ringway's own errors included, so a
        // failed request can be found in the upstream's logs.
        let received_id = header_value(request, buf, &runtime.request_id_header);
        if runtime.generate_request_id {
            let mut generated = [0u8; REQUEST_ID_LEN];
            let mut ids = gateway.request_ids.borrow_mut();
            let id = ids.accept_or_generate(received_id, &mut generated);
            self.request_id.extend_from_slice(id);
        } else if let Some(id) = received_id.filter(|id| is_valid_request_id(id)) {
            self.request_id.extend_from_slice(id);
        }
        if !self.request_id.is_empty() {
            self.error_fields.extend_from_slice(&runtime.request_id_header);
            self.error_fields.extend_from_slice(b": ");
            self.error_fields.extend_from_slice(&self.request_id);
            self.error_fields.extend_from_slice(b"\r\n");
        }

        if let Some(acl) = &runtime.acl {
            if !acl.permits(client_ip) {
                return Err(ProxyError::new(
                    Kind::Forbidden,
                    format!(
                        "client address {client_ip} is not allowed on route {:?}",
                        generation.route_names[route]
                    ),
                ));
            }
        }

        if let Some(limiter) = gateway.limiters.borrow_mut()[route].as_mut() {
            let address = address_key(client_ip);
            // A request without the key header is counted by its address, so leaving the header
            // out is no way around the limit.
            let key = match &limiter.key {
                ClientKey::ClientAddress => &address[..],
                ClientKey::Header(name) => {
                    header_value(request, buf, name.as_bytes()).unwrap_or(&address[..])
                }
            };
            let decision = limiter.limiter.check(key, Instant::now());
            if !decision.allowed {
                write_rate_limit_headers(&decision, &mut self.error_fields);
                if let Some(counters) = self.ctx.metrics.routes.borrow().get(generation.route_metrics[route]) {
                    metrics::add(&counters.limiter_rejections, 1);
                }
                return Err(ProxyError::new(
                    Kind::RateLimited,
                    format!(
                        "rate limit of route {:?} reached; retry after {} s",
                        generation.route_names[route], decision.retry_after_secs
                    ),
                ));
            }
        }

        if let Some(BodyKind::Length(length)) = request.body {
            let max = generation.config.limits.max_request_body_bytes;
            if length > max {
                return Err(ProxyError::new(
                    Kind::BodyTooLarge,
                    format!(
                        "Content-Length {length} is over the limit of {max} bytes; send less or raise limits.max_request_body_bytes"
                    ),
                ));
            }
        }
        Ok(route)
    }

    /// Sends the request to a server of the route's upstream and relays the response.
    async fn exchange(&mut self, route: usize) -> Next {
        let mut scratch = std::mem::take(&mut self.scratch);
        let next = self.exchange_with(route, &mut scratch).await;
        self.scratch = scratch;
        next
    }

    /// Prepares the upstream target, request id and server choice, then runs attempts until
    /// one gets a response or no retry is left.
    async fn exchange_with(&mut self, route: usize, scratch: &mut Scratch) -> Next {
        let generation = self.generation.clone();
        let config = &generation.config;
        let gateway = &generation.gateway;
        let runtime = &gateway.routes[route];
        let group = runtime.upstream;
        let now = Instant::now();
        let Some(buffers) = self.buffers.as_ref() else {
            return Next::Close;
        };
        let buf = &buffers.inbound[..];
        let request = &self.request;

        // The upstream target: the received one unless normalization or the route changed it.
        let rewritten = self.path_rewritten || !runtime.target.is_identity();
        if rewritten {
            let match_path: &[u8] = if self.path_rewritten {
                &self.path_buf
            } else {
                routed_path(request, buf)
            };
            scratch.target.clear();
            let query = query_of(request.target.of(buf));
            let written =
                runtime
                    .target
                    .write_target(match_path, &self.captures, query, &mut scratch.target);
            if let Err(problem) = written {
                let err = ProxyError::bad_request(format!(
                    "request path {} cannot be rewritten: {problem}",
                    shown(match_path)
                ));
                self.respond_error(&err, None).await;
                return Next::Close;
            }
        }

        scratch.request_id.clear();
        scratch.request_id.extend_from_slice(&self.request_id);
        scratch.host.clear();
        scratch
            .host
            .extend_from_slice(request.authority(buf).unwrap_or(b""));

        let address = address_key(self.peer.ip());
        let pick = {
            let mut upstreams = gateway.upstreams.borrow_mut();
            let upstream = &mut upstreams[group];
            let pick_request = pick_request(upstream, request, buf, &address);
            let pick = upstream.choose(&pick_request, None, now);
            if let Some(pick) = pick {
                upstream.budget.record_request(now);
                scratch.cookie.clear();
                if pick.set_cookie {
                    scratch
                        .cookie
                        .extend_from_slice(upstream.balancer.cookie_value(pick.server));
                }
            } else {
                let wait = gateway::retry_after(upstream, now);
                let _ = write!(self.error_fields, "Retry-After: {wait}\r\n");
            }
            pick
        };
        let Some(pick) = pick else {
            let err = ProxyError::new(
                Kind::NoAvailableServer,
                format!(
                    "no server of upstream {:?} is available (ejected, failing health checks or behind an open circuit breaker)",
                    config.upstreams[group].name
                ),
            );
            self.respond_error(&err, None).await;
            return Next::Close;
        };
        let mut in_flight = InFlight {
            generation: generation.clone(),
            group,
            server: pick.server,
        };
        self.attempts(route, scratch, &mut in_flight, rewritten).await
    }

    /// Runs the attempts of an exchange, starting with the server in `in_flight`.
    async fn attempts(
        &mut self,
        route: usize,
        scratch: &Scratch,
        in_flight: &mut InFlight,
        rewritten: bool,
    ) -> Next {
        let ctx = self.ctx.clone();
        let generation = self.generation.clone();
        let config = &generation.config;
        let gateway = &generation.gateway;
        let runtime = &gateway.routes[route];
        let group = runtime.upstream;
        let (Some(mut buffers), Some(stream)) = (self.buffers.take(), self.stream.take()) else {
            return Next::Close;
        };
        let upstream_metrics = generation.upstream_metrics[group];
        let request_body = self.request.body.unwrap_or(BodyKind::None);
        let bodiless = matches!(request_body, BodyKind::None | BodyKind::Length(0));
        let retry_allowed = bodiless && self.request.is_idempotent(&buffers.inbound);

        let client_ip = self.client_ip;
        let vars = Vars {
            client_addr: client_ip.text(),
            host: &scratch.host,
            scheme: b"http",
            route: &runtime.name,
            request_id: &scratch.request_id,
        };
        let request_id = (!scratch.request_id.is_empty())
            .then_some((&runtime.request_id_header[..], &scratch.request_id[..]));
        let extras = ResponseExtras {
            rules: (!runtime.response_headers.is_empty())
                .then_some((&runtime.response_headers, vars)),
            request_id,
            set_cookie: gateway.sticky_cookies[group]
                .as_ref()
                .filter(|_| !scratch.cookie.is_empty())
                .map(|(name, max_age)| (&name[..], &scratch.cookie[..], *max_age)),
        };

        let mut server_index = in_flight.server;
        let mut attempt = 0;
        let mut retries = 0;
        let mut client = Some(stream);
        loop {
            attempt += 1;
            let server = &config.upstreams[group].servers[server_index];
            let server_id = generation.server_id(group, server_index);
            self.record.upstream = Some(server.addr);
            self.record.upstream_group = Some(group);
            let context = RequestContext {
                client_ip: &client_ip,
                upstream_authority: &server.authority,
                target: rewritten.then_some(&scratch.target[..]),
                rules: (!runtime.request_headers.is_empty())
                    .then_some((&runtime.request_headers, vars)),
                request_id,
            };
            buffers.upstream.clear();
            let limit = buffers.upstream.capacity();
            if let Err(err) = forward::write_request_head(
                &mut buffers.upstream,
                limit,
                &buffers.inbound,
                &self.request,
                &context,
            ) {
                self.stream = client.take();
                self.buffers = Some(buffers);
                self.respond_error(&err, None).await;
                return Next::Close;
            }
            let head_end = buffers.upstream.len();
            let request_body_sent = coalesce_body(
                &mut buffers.upstream,
                limit,
                &buffers.inbound[self.request.head_len..],
                match self.request.body {
                    Some(BodyKind::Length(length)) => Some(length),
                    _ => None,
                },
            );
            let request_head_len = head_end + request_body_sent;

            let fresh_only = attempt > 1;
            self.record.upstream_started = Some(Instant::now());
            let connection = match self.connect(server_id, server.addr, fresh_only).await {
                Ok(connection) => connection,
                Err(err) => {
                    let stage = if err.kind == Kind::ConnectTimeout {
                        FailureStage::ConnectTimeout
                    } else {
                        FailureStage::ConnectFailed
                    };
                    let now = Instant::now();
                    let next = {
                        let mut upstreams = gateway.upstreams.borrow_mut();
                        let upstream = &mut upstreams[group];
                        let recorded = upstream.record(server_index, false, now);
                        self.count_recorded(upstream_metrics, recorded, server.addr);
                        let may_retry = retries < upstream.retries
                            && retryable(self.request.method(&buffers.inbound), stage)
                            && upstream.budget.can_retry(now);
                        if may_retry {
                            let address = address_key(self.peer.ip());
                            let pick_request =
                                pick_request(upstream, &self.request, &buffers.inbound, &address);
                            upstream.choose(&pick_request, Some(server_index), now)
                        } else {
                            None
                        }
                    };
                    if let Some(next) = next {
                        debug!(client = %self.peer, upstream = %server.addr, error = %err, "connecting failed; retrying on another server");
                        ctx.metrics.with_upstream(upstream_metrics, |counters| {
                            metrics::add(&counters.retries, 1);
                        });
                        // The new server is counted as started by `choose`; the old one ends.
                        let previous = std::mem::replace(&mut in_flight.server, next.server);
                        gateway.upstreams.borrow_mut()[group]
                            .balancer
                            .finished(previous);
                        server_index = next.server;
                        retries += 1;
                        attempt = 0;
                        continue;
                    }
                    self.stream = client.take();
                    self.buffers = Some(buffers);
                    self.respond_error(&err, Some(server.addr)).await;
                    return Next::Close;
                }
            };
            ctx.metrics.with_upstream(upstream_metrics, |counters| {
                let counter = if connection.reused {
                    &counters.pool_hits
                } else {
                    &counters.pool_misses
                };
                metrics::add(counter, 1);
            });
            let active = &ctx.metrics.upstream_connections_active;
            active.set(active.get() + 1);
            let outcome = self
                .run_exchange(
                    connection,
                    client.take().expect("client stream"),
                    buffers,
                    server.addr,
                    request_head_len,
                    request_body_sent,
                    &extras,
                )
                .await;
            active.set(active.get() - 1);
            match outcome {
                Exchanged::Done(next) => {
                    // ringway's own 502 and 504, and the same statuses from the upstream, count
                    // against the server. A request that ended without a status counts neither way.
                    let status = self.record.status;
                    if status != 0 {
                        let ok = !matches!(status, 502..=504);
                        let mut upstreams = gateway.upstreams.borrow_mut();
                        let recorded = upstreams[group].record(server_index, ok, Instant::now());
                        self.count_recorded(upstream_metrics, recorded, server.addr);
                    }
                    return next;
                }
                Exchanged::RetryFresh {
                    stream,
                    buffers: returned,
                    nothing_sent,
                } if attempt == 1 && (nothing_sent || retry_allowed) => {
                    debug!(client = %self.peer, upstream = %server.addr, "pooled upstream connection was closed; retrying on a new one");
                    client = Some(stream);
                    buffers = returned;
                }
                Exchanged::RetryFresh {
                    stream,
                    buffers: returned,
                    ..
                } => {
                    self.stream = Some(stream);
                    self.buffers = Some(returned);
                    let err = ProxyError::new(
                        Kind::UpstreamClosed,
                        "upstream closed the connection without a response",
                    );
                    self.respond_error(&err, Some(server.addr)).await;
                    return Next::Close;
                }
            }
        }
    }

    /// Counts and logs what recording an outcome changed.
    fn count_recorded(
        &self,
        upstream_metrics: usize,
        recorded: gateway::Recorded,
        server: SocketAddr,
    ) {
        if recorded.ejected {
            warn!(worker = self.ctx.id, upstream = %server, "server ejected after repeated failures; it gets requests again after its back-off");
        }
        if recorded.breaker_opened {
            warn!(worker = self.ctx.id, upstream = %server, "circuit breaker opened; the server gets no requests until the break ends");
        }
        self.ctx.metrics.with_upstream(upstream_metrics, |counters| {
            metrics::add(&counters.ejections, u64::from(recorded.ejected));
            metrics::add(&counters.breaker_opens, u64::from(recorded.breaker_opened));
        });
    }

    async fn connect(
        &self,
        server: upstream::ServerId,
        addr: SocketAddr,
        fresh_only: bool,
    ) -> Result<UpstreamConnection, ProxyError> {
        if !fresh_only {
            if let Some(connection) = self.ctx.upstreams.borrow_mut().take_idle(server, addr) {
                return Ok(connection);
            }
        }
        upstream::connect(addr, server, self.timeouts.connect).await
    }

    /// Runs one attempt at an exchange on one upstream connection.
    async fn run_exchange(
        &mut self,
        connection: UpstreamConnection,
        stream: TcpStream,
        buffers: Buffers,
        upstream_addr: SocketAddr,
        request_head_len: usize,
        request_body_sent: usize,
        extras: &ResponseExtras<'_>,
    ) -> Exchanged {
        let ctx = self.ctx.clone();
        let generation = self.generation.clone();
        let config = &generation.config;
        let timeouts = self.timeouts;
        let Buffers {
            inbound,
            upstream: upstream_buf,
        } = buffers;
        let reused = connection.reused;
        let server_id = connection.server;
        let mut upstream_stream = connection.stream;

        // The request head goes out first, with at most a small body copied behind it: nothing
        // of the client's body has been consumed from `inbound` yet, so a failure before its
        // first byte left may be retried.
        let deadline = Instant::now() + timeouts.upstream_read;
        let mut upstream_buf = upstream_buf;
        let mut sent = 0;
        while sent < request_head_len {
            let write = upstream_stream.write(upstream_buf.slice(sent..request_head_len));
            let timer = self.timers.get().upstream_write;
            let err = match timer.until(deadline, write).await {
                Err(_) => {
                    let err = ProxyError::new(
                        Kind::UpstreamTimeout,
                        "sending the request head timed out",
                    );
                    drop(inbound);
                    return self.fail(stream, err, upstream_addr).await;
                }
                Ok((Ok(n), slice)) if n > 0 => {
                    sent += n;
                    upstream_buf = slice.into_inner();
                    continue;
                }
                Ok((Ok(_), slice)) => {
                    upstream_buf = slice.into_inner();
                    std::io::Error::from(std::io::ErrorKind::WriteZero)
                }
                Ok((Err(err), slice)) => {
                    upstream_buf = slice.into_inner();
                    err
                }
            };
            if reused && sent == 0 {
                debug!(upstream = %upstream_addr, error = %err, "writing to a pooled upstream connection failed");
                let buffers = Buffers {
                    inbound,
                    upstream: upstream_buf,
                };
                return Exchanged::RetryFresh {
                    stream,
                    buffers,
                    nothing_sent: true,
                };
            }
            let err = ProxyError::new(
                Kind::UpstreamClosed,
                format!("sending the request failed: {err}"),
            );
            drop(inbound);
            return self.fail(stream, err, upstream_addr).await;
        }

        let request_was_head = self.request.is_head(&inbound);
        let client_minor = self.request.minor_version;
        let client_keep_alive = self.request.keep_alive;
        let request_body_kind = self.request.body.unwrap_or(BodyKind::None);
        let body_source = source_for(request_body_kind, config);
        let body_sink = if matches!(self.request.body, Some(BodyKind::Chunked)) {
            Sink::Chunked
        } else {
            Sink::Raw
        };
        let head_len = self.request.head_len;

        let mut stream = stream;
        let (mut client_read, mut client_write) = split_stream(&mut stream);
        let client_watch = client_read.watcher();
        let (mut upstream_read, mut upstream_write) = split_stream(&mut upstream_stream);
        let request_params = RelayParams {
            read_timeout: timeouts.client_body_read,
            write_timeout: timeouts.upstream_read,
            max_bytes: config.limits.max_request_body_bytes,
        };
        let head_params = HeadReadParams {
            limits: response_limits(config),
            request_was_head,
            client_minor,
            write_timeout: timeouts.client_write,
            upgrade_offered: self.request.upgrade.is_some(),
        };

        // A small body went out with the head, and the request is complete already.
        let request_relayed = Relayed {
            buf: inbound,
            pos: head_len + request_body_sent,
            bytes: request_body_sent as u64,
        };
        let mut timers = self
            .timers
            .0
            .take()
            .expect("connection timers are out only inside run_exchange");
        let ConnectionTimersProj {
            client_read: client_read_timer,
            client_write: client_write_timer,
            upstream_read: upstream_read_timer,
            upstream_write: upstream_write_timer,
            client_watch: client_watch_timer,
        } = timers.as_mut().project();
        let duplex = Duplex {
            client_write: &mut client_write,
            client_watch: &client_watch,
            upstream_read: &mut upstream_read,
            upstream_buf,
            head_params,
            client_keep_alive,
            extras,
            client_write_timer,
            upstream_read_timer,
            client_watch_timer,
        };
        // A bodiless request is complete before anything is sent back, as its relay would find
        // on its first poll, so it gets no relay future. A relay future is pinned here, where
        // it lives across one await only, so that it shares space with the other branches'
        // state. Pinned inside `duplex` it made each connection's future 16.5 KB instead of
        // 13.6 KB (rustc 1.95, -Zprint-type-sizes).
        let bodiless = request_body_sent > 0
            || matches!(request_body_kind, BodyKind::None | BodyKind::Length(0));
        let end = if bodiless {
            let request_relay = pin!(std::future::pending());
            self.duplex(duplex, request_relay, Some(Ok(request_relayed)))
                .await
        } else {
            let request_relay = relay::relay(
                &mut client_read,
                &mut upstream_write,
                request_relayed.buf,
                head_len,
                body_source,
                body_sink,
                &ctx.pool,
                request_params,
                RelayTimers {
                    read: client_read_timer,
                    write: upstream_write_timer,
                },
            );
            let request_relay = pin!(request_relay);
            self.duplex(duplex, request_relay, None).await
        };
        self.timers.0 = Some(timers);

        match end {
            DuplexEnd::Upgraded {
                upstream_buf,
                body_start,
                request_result,
            } => {
                // A bodiless request's relay is complete before any response, so its buffer
                // contains whatever the client sent after the head: the first tunnel bytes.
                let Some(Ok(request)) = request_result else {
                    return Exchanged::Done(Next::Close);
                };
                forward::write_response_head(
                    &mut self.head_out,
                    &upstream_buf[..body_start],
                    &self.response,
                    ClientFraming::None,
                    false,
                    client_minor,
                    &ResponseExtras::default(),
                );
                let head_bytes = std::mem::take(&mut self.head_out);
                let written = self
                    .timers
                    .get()
                    .client_write
                    .limit(timeouts.client_write, client_write.write_all(head_bytes))
                    .await;
                match written {
                    Ok((Ok(_), head_bytes)) => self.head_out = head_bytes,
                    _ => return Exchanged::Done(Next::Close),
                }
                let from_client = tunnel::Early {
                    buf: request.buf,
                    start: request.pos,
                };
                let from_upstream = tunnel::Early {
                    buf: upstream_buf,
                    start: body_start,
                };
                let params = tunnel::TunnelParams {
                    idle_timeout: timeouts.tunnel_idle,
                    write_timeout: timeouts.client_write,
                };
                let timers = self.timers.get();
                let up_timers = RelayTimers {
                    read: timers.client_read,
                    write: timers.upstream_write,
                };
                let down_timers = RelayTimers {
                    read: timers.upstream_read,
                    write: timers.client_write,
                };
                let ended = tunnel::run(
                    &mut client_read,
                    &mut client_write,
                    &mut upstream_read,
                    &mut upstream_write,
                    Some(from_client),
                    Some(from_upstream),
                    &ctx.pool,
                    params,
                    up_timers,
                    down_timers,
                )
                .await;
                debug!(
                    client = %self.peer,
                    upstream = %upstream_addr,
                    client_to_upstream = ended.client_to_upstream,
                    upstream_to_client = ended.upstream_to_client,
                    reason = ?ended.reason,
                    "tunnel closed"
                );
                Exchanged::Done(Next::Close)
            }
            DuplexEnd::ClientGone => {
                debug!(client = %self.peer, "client closed before the response head was written");
                Exchanged::Done(Next::Close)
            }
            DuplexEnd::NoResponse {
                head_end: HeadEnd::ClientLeft,
                ..
            } => {
                debug!(client = %self.peer, upstream = %upstream_addr, "client closed before the response head; closing the upstream connection");
                Exchanged::Done(Next::Close)
            }
            DuplexEnd::NoResponse {
                head_end: HeadEnd::RequestFailed(err),
                ..
            } => self.fail(stream, err, upstream_addr).await,
            DuplexEnd::NoResponse {
                head_end: HeadEnd::Failed(failure),
                request_result,
            } => {
                let stale = !failure.received_any && reused;
                if let (true, Some(Ok(relayed)), Some(buf)) = (stale, request_result, failure.buf) {
                    if relayed.bytes == 0 {
                        self.pos = relayed.pos;
                        let buffers = Buffers {
                            inbound: relayed.buf,
                            upstream: buf,
                        };
                        return Exchanged::RetryFresh {
                            stream,
                            buffers,
                            nothing_sent: false,
                        };
                    }
                }
                self.fail(stream, failure.error, upstream_addr).await
            }
            DuplexEnd::Responded {
                response_result: Err(failure),
                request_result,
                ..
            } => {
                self.count_request_body(&request_result);
                self.log_response_failure(&failure, upstream_addr);
                Exchanged::Done(Next::Close)
            }
            DuplexEnd::Responded {
                response_result: Ok(relayed),
                request_result,
                close_client,
            } => {
                self.count_request_body(&request_result);
                self.record.bytes_sent += relayed.bytes;
                let request_relayed = match request_result {
                    Some(Ok(relayed)) => Some(relayed),
                    _ => None,
                };
                // The upstream connection is clean only if both messages ended exactly at their
                // framing and the upstream did not ask to close.
                let upstream_clean = self.response.keep_alive
                    && request_relayed.is_some()
                    && relayed.pos == relayed.buf.len();
                if upstream_clean {
                    let connection = UpstreamConnection {
                        stream: upstream_stream,
                        server: server_id,
                        reused: true,
                    };
                    ctx.upstreams
                        .borrow_mut()
                        .put_idle(connection, upstream_addr);
                }
                match request_relayed {
                    Some(request) if !close_client => {
                        self.stream = Some(stream);
                        self.pos = request.pos;
                        // A drained inbound buffer went back to the pool already, and a
                        // connection holds both buffers or none, so the other goes too.
                        self.buffers = (request.buf.capacity() > 0).then_some(Buffers {
                            inbound: request.buf,
                            upstream: relayed.buf,
                        });
                        Exchanged::Done(Next::KeepAlive)
                    }
                    _ => Exchanged::Done(Next::Close),
                }
            }
        }
    }

    /// Runs the concurrent part of an exchange: the request body (if any) streams to the
    /// upstream while the response head is awaited, and goes on streaming while the response
    /// body flows back, because an upstream may respond early (an error, or a 100 Continue the
    /// client waits for). `request_result` is set already for a bodiless request, and then
    /// `request_relay` is never polled.
    ///
    /// It is a function of its own, awaited once, so that its large futures are not locals
    /// kept across several of `run_exchange`'s awaits. That keeps `run_exchange`'s arguments
    /// at the front of its state, and creating a `run_exchange` future copies 312 bytes where
    /// it copied 9.4 KB per attempt.
    async fn duplex<R>(
        &mut self,
        duplex: Duplex<'_, '_, '_>,
        mut request_relay: Pin<&mut R>,
        mut request_result: Option<Result<Relayed, RelayFailure>>,
    ) -> DuplexEnd
    where
        R: Future<Output = Result<Relayed, RelayFailure>>,
    {
        let Duplex {
            client_write,
            client_watch,
            upstream_read,
            upstream_buf,
            head_params,
            client_keep_alive,
            extras,
            mut client_write_timer,
            mut upstream_read_timer,
            client_watch_timer,
        } = duplex;
        let ctx = self.ctx.clone();
        let generation = self.generation.clone();
        let config = &generation.config;
        let timeouts = self.timeouts;
        let client_minor = head_params.client_minor;
        let head_result = {
            let read_head = read_response_head(
                &mut *upstream_read,
                &mut *client_write,
                upstream_buf,
                &mut self.response,
                &mut self.head_out,
                head_params,
                client_write_timer.as_mut(),
            );
            let mut read_head = pin!(read_head);
            // Biased, so that a request body that is already complete (always the case for a
            // bodiless request) counts as complete even when the head is ready too.
            let early = if request_result.is_some() {
                None
            } else {
                monoio::select! {
                    biased;
                    done = &mut request_relay => {
                        request_result = Some(done);
                        None
                    },
                    head = &mut read_head => Some(head),
                }
            };
            match (early, &request_result) {
                (Some(head), _) => head.map_err(HeadEnd::Failed),
                (None, Some(Err(failure))) if request_failure_is_clients(failure) => Err(
                    HeadEnd::RequestFailed(request_failure_error(failure, config)),
                ),
                (None, _) => {
                    // The request is sent: while the upstream works on it, a client that
                    // closes ends the exchange at once instead of at the head timeout.
                    let now = Instant::now();
                    let timed_head = upstream_read_timer
                        .as_mut()
                        .until(now + timeouts.upstream_head, &mut read_head);
                    let watch_from = now + CLIENT_WATCH_DELAY;
                    let client_closed =
                        client_closed_after(watch_from, client_watch_timer, client_watch);
                    let waited = monoio::select! {
                        head = timed_head => Some(head),
                        () = client_closed => None,
                    };
                    match waited {
                        None => Err(HeadEnd::ClientLeft),
                        Some(Ok(head)) => head.map_err(HeadEnd::Failed),
                        Some(Err(_)) => Err(HeadEnd::Failed(HeadFailure {
                            error: ProxyError::new(
                                Kind::UpstreamTimeout,
                                format!(
                                    "no response head within {} ms; check the upstream or raise timeouts.upstream_head_ms",
                                    timeouts.upstream_head.as_millis()
                                ),
                            ),
                            buf: None,
                            received_any: true,
                        })),
                    }
                }
            }
        };
        match head_result {
            Err(head_end) => DuplexEnd::NoResponse {
                head_end,
                request_result,
            },
            Ok((upstream_buf, body_start)) if self.response.status == 101 => {
                DuplexEnd::Upgraded {
                    upstream_buf,
                    body_start,
                    request_result,
                }
            }
            Ok((upstream_buf, body_start)) => {
                self.record_upstream_head();
                // From here on nothing retries the request, so a drained inbound buffer can
                // go back to the pool while the response streams (to a slow reader, maybe).
                release_drained(&mut request_result);
                let request_complete = matches!(request_result, Some(Ok(_)));
                let response_body = self.response.body.unwrap_or(BodyKind::None);
                let client_framing = match response_body {
                    BodyKind::None => ClientFraming::None,
                    BodyKind::Length(length) => ClientFraming::Length(length),
                    BodyKind::Chunked | BodyKind::CloseDelimited if client_minor >= 1 => {
                        ClientFraming::Chunked
                    }
                    BodyKind::Chunked | BodyKind::CloseDelimited => ClientFraming::Close,
                };
                // If the client is still sending its body, the connection cannot be reused,
                // and the head must announce that because it goes out first.
                let close_client = !client_keep_alive
                    || client_framing == ClientFraming::Close
                    || !request_complete
                    || ctx.draining.get();
                forward::write_response_head(
                    &mut self.head_out,
                    &upstream_buf[..body_start],
                    &self.response,
                    client_framing,
                    close_client,
                    client_minor,
                    extras,
                );
                let mut head_bytes = std::mem::take(&mut self.head_out);
                let coalesced = coalesce_body(
                    &mut head_bytes,
                    usize::MAX,
                    &upstream_buf[body_start..],
                    match client_framing {
                        ClientFraming::Length(length) => Some(length),
                        _ => None,
                    },
                );
                let body_start = body_start + coalesced;
                let written = client_write_timer
                    .as_mut()
                    .limit(timeouts.client_write, client_write.write_all(head_bytes))
                    .await;
                match written {
                    Ok((Ok(_), head_bytes)) => {
                        self.record.status = self.response.status;
                        self.record.bytes_sent += head_bytes.len() as u64;
                        self.head_out = head_bytes;
                        let response_sink = if client_framing == ClientFraming::Chunked {
                            Sink::Chunked
                        } else {
                            Sink::Raw
                        };
                        let response_params = RelayParams {
                            read_timeout: timeouts.upstream_read,
                            write_timeout: timeouts.client_write,
                            max_bytes: u64::MAX,
                        };
                        let response_source = if coalesced > 0 {
                            Source::Length(LengthDecoder::new(0))
                        } else {
                            source_for(response_body, config)
                        };
                        let splice = ctx.splice
                            && coalesced == 0
                            && response_sink == Sink::Raw
                            && matches!(response_source, Source::Length(_) | Source::Close);
                        let pipe = if splice { ctx.take_pipe() } else { None };
                        let response_result = {
                            let response_relay = async {
                                match &pipe {
                                    Some(pipe) => {
                                        let pipe_bytes = ctx.config.buffers.size_bytes;
                                        let relayed = relay::splice_relay(
                                            &mut *upstream_read,
                                            &mut *client_write,
                                            upstream_buf,
                                            body_start,
                                            response_source,
                                            pipe,
                                            pipe_bytes,
                                            response_params,
                                            RelayTimers {
                                                read: upstream_read_timer,
                                                write: client_write_timer,
                                            },
                                        )
                                        .await;
                                        relayed
                                    }
                                    None => {
                                        relay::relay(
                                            &mut *upstream_read,
                                            &mut *client_write,
                                            upstream_buf,
                                            body_start,
                                            response_source,
                                            response_sink,
                                            &ctx.pool,
                                            response_params,
                                            RelayTimers {
                                                read: upstream_read_timer,
                                                write: client_write_timer,
                                            },
                                        )
                                        .await
                                    }
                                }
                            };
                            let mut response_relay = pin!(response_relay);
                            // One await point for both relays, so that neither future is kept
                            // across several in the exchange's state.
                            std::future::poll_fn(|cx| {
                                if request_result.is_none() {
                                    if let Poll::Ready(done) = request_relay.as_mut().poll(cx) {
                                        request_result = Some(done);
                                        release_drained(&mut request_result);
                                    }
                                }
                                response_relay.as_mut().poll(cx)
                            })
                            .await
                        };
                        // A pipe is clean again only after a complete transfer.
                        if let (Some(pipe), Ok(_)) = (pipe, &response_result) {
                            ctx.return_pipe(pipe);
                        }
                        DuplexEnd::Responded {
                            response_result,
                            request_result,
                            close_client,
                        }
                    }
                    _ => DuplexEnd::ClientGone,
                }
            }
        }
    }

    /// Records when the final response head arrived, for the access log and the upstream
    /// latency histogram.
    fn record_upstream_head(&mut self) {
        let Some(started) = self.record.upstream_started else {
            return;
        };
        let elapsed = started.elapsed();
        self.record.upstream_duration = Some(elapsed);
        if let Some(group) = self.record.upstream_group {
            let index = self.generation.upstream_metrics[group];
            self.ctx
                .metrics
                .with_upstream(index, |counters| counters.response_latency.observe(elapsed));
        }
    }

    fn count_request_body(&mut self, request_result: &Option<Result<Relayed, RelayFailure>>) {
        if let Some(Ok(relayed)) = request_result {
            self.record.bytes_received += relayed.bytes;
        }
    }

    /// Returns the name of the request's route, empty before routing or when none matched.
    fn route_name(&self) -> &str {
        self.record
            .route
            .and_then(|route| self.generation.route_names.get(route))
            .map_or("", String::as_str)
    }

    /// Logs why a response body ended early. Upstream failures share the worker's rate limit
    /// for upstream errors.
    fn log_response_failure(&self, failure: &RelayFailure, upstream_addr: SocketAddr) {
        let status = self.response.status;
        let (client, route) = (self.peer, self.route_name());
        let upstream_failure = !matches!(
            failure,
            RelayFailure::SinkError(_) | RelayFailure::SinkTimeout | RelayFailure::TooLarge
        );
        let suppressed = if upstream_failure {
            match self.ctx.upstream_error_log.borrow_mut().allow() {
                Some(suppressed) => suppressed,
                None => return,
            }
        } else {
            0
        };
        match failure {
            RelayFailure::SinkError(err) => {
                debug!(client = %client, route, upstream = %upstream_addr, error = %err, "client closed during the response body; closing the upstream connection");
            }
            RelayFailure::SinkTimeout => {
                info!(client = %client, route, upstream = %upstream_addr, "client stopped reading the response body; closing both connections");
            }
            RelayFailure::SourceClosed => {
                warn!(client = %client, route, upstream = %upstream_addr, status, suppressed, "upstream closed before the end of the response body; the client connection is closed so the body is not taken as complete");
            }
            RelayFailure::SourceError(err) => {
                warn!(client = %client, route, upstream = %upstream_addr, status, suppressed, error = %err, "reading the response body failed; closing the client connection");
            }
            RelayFailure::SourceTimeout => {
                warn!(client = %client, route, upstream = %upstream_addr, status, suppressed, "upstream sent no body bytes within timeouts.upstream_read_ms; closing both connections");
            }
            RelayFailure::SourceInvalid(err) => {
                warn!(client = %client, route, upstream = %upstream_addr, status, suppressed, error = %err, "invalid chunked response body; closing both connections");
            }
            RelayFailure::TooLarge => {}
        }
    }

    /// Responds to an error after giving the buffers back, then closes.
    async fn fail(
        &mut self,
        stream: TcpStream,
        err: ProxyError,
        upstream_addr: SocketAddr,
    ) -> Exchanged {
        self.stream = Some(stream);
        self.respond_error(&err, Some(upstream_addr)).await;
        Exchanged::Done(Next::Close)
    }

    /// Turns an error into the client's response and a log line: the one place that does so. The response
    /// always closes the connection, since the request may not have been read to its end.
    async fn respond_error(&mut self, err: &ProxyError, upstream: Option<SocketAddr>) {
        log_error(&self.ctx, self.peer, self.route_name(), err, upstream);
        let Some((status, reason)) = err.status() else {
            return;
        };
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        forward::write_error_response(
            &mut self.head_out,
            status,
            reason,
            err.public_detail(),
            true,
            self.is_head,
            &self.error_fields,
        );
        let response = std::mem::take(&mut self.head_out);
        let write_timeout = self.generation.config.timeouts.client_write;
        let written = self
            .timers
            .get()
            .client_write
            .limit(write_timeout, stream.write_all(response))
            .await;
        if let Ok((Ok(_), response)) = written {
            self.record.status = status;
            self.record.bytes_sent += response.len() as u64;
            self.head_out = response;
            // The response is complete: lingering is the connection's business, not the request's.
            self.finish_request();
            linger(
                &mut stream,
                self.buffers.take().map(|buffers| buffers.inbound),
                self.timers.get().client_read,
            )
            .await;
        }
        self.buffers = None;
    }
}

fn head_timeout(limit: Duration) -> ProxyError {
    ProxyError::new(
        Kind::ClientTimeout,
        format!(
            "request head not received within {} ms; raise timeouts.client_head_ms for slow clients",
            limit.as_millis()
        ),
    )
}

/// Returns whether `bytes` contain the empty line that ends a head (CRLF CRLF, or bare LFs,
/// which httparse also accepts). It only decides when to stop reading; the parser decides the rest.
fn contains_head_end(bytes: &[u8]) -> bool {
    let mut from = 0;
    while let Some(offset) = bytes[from..].iter().position(|&byte| byte == b'\n') {
        let at = from + offset;
        match bytes.get(at + 1) {
            Some(b'\n') => return true,
            Some(b'\r') if bytes.get(at + 2) == Some(&b'\n') => return true,
            _ => from = at + 1,
        }
    }
    false
}

/// Returns a completed request body relay's buffer to the pool when no pipelined bytes wait in
/// it, leaving a detached placeholder behind.
fn release_drained(request_result: &mut Option<Result<Relayed, RelayFailure>>) {
    if let Some(Ok(relayed)) = request_result {
        if relayed.pos >= relayed.buf.len() {
            relayed.buf = PoolBuf::detached();
            relayed.pos = 0;
        }
    }
}

/// Waits until `from` (so that a fast response never starts a watch whose cancellation would
/// cost an allocation in monoio), then completes when the client closes or resets its connection.
async fn client_closed_after(from: Instant, timer: Pin<&mut IoTimer>, watch: &StreamWatcher<'_>) {
    timer.sleep_until(from).await;
    client_closed(watch).await;
}

/// Completes when the client closes or resets its connection. Bytes from the client (a
/// pipelined request) are left for later, and then this waits forever.
async fn client_closed(watch: &StreamWatcher<'_>) {
    loop {
        if watch.readable().await.is_err() {
            return;
        }
        match peek_peer(watch.raw_fd()) {
            PeerState::Closed => return,
            PeerState::Data => std::future::pending::<()>().await,
            PeerState::Quiet => {}
        }
    }
}

/// Reads and discards what the client still sends, for at most `LINGER_TIMEOUT` and
/// `LINGER_MAX_BYTES`, after the write side was shut down, so that closing with unread input
/// does not reset the connection before the client has read the response.
async fn linger(stream: &mut TcpStream, buf: Option<PoolBuf>, mut timer: Pin<&mut IoTimer>) {
    let Some(mut buf) = buf else { return };
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut discarded = 0;
    while discarded < LINGER_MAX_BYTES {
        buf.clear();
        let capacity = buf.capacity();
        let read = stream.read(buf.slice_mut(0..capacity));
        match timer.as_mut().until(deadline, read).await {
            Ok((Ok(n), slice)) if n > 0 => {
                discarded += n;
                buf = slice.into_inner();
            }
            _ => return,
        }
    }
}

/// Logs a request error with the client, route and upstream where known. Repeated errors are
/// rate-limited per worker (one line a second per kind of side, with a count of the lines held
/// back), because a failing upstream or a flood of bad requests would otherwise log per request.
fn log_error(
    ctx: &WorkerContext,
    client: SocketAddr,
    route: &str,
    err: &ProxyError,
    upstream: Option<SocketAddr>,
) {
    let status = err.status().map_or(0, |(status, _)| status);
    match (err.side, err.kind) {
        (_, Kind::ClientClosed | Kind::NoRoute) => {
            debug!(worker = ctx.id, client = %client, route, status, "{err}");
        }
        (Side::Upstream, _) => {
            let Some(suppressed) = ctx.upstream_error_log.borrow_mut().allow() else {
                return;
            };
            match upstream {
                Some(upstream) => {
                    warn!(worker = ctx.id, client = %client, route, upstream = %upstream, status, suppressed, "{err}")
                }
                None => {
                    warn!(worker = ctx.id, client = %client, route, status, suppressed, "{err}")
                }
            }
        }
        _ => {
            if let Some(suppressed) = ctx.client_error_log.borrow_mut().allow() {
                info!(worker = ctx.id, client = %client, route, status, suppressed, "{err}");
            }
        }
    }
}

/// Returns whether a request-body relay failed because of the client (then the client gets the error)
/// or because of the upstream (then the upstream may still have sent a response worth relaying).
fn request_failure_is_clients(failure: &RelayFailure) -> bool {
    !matches!(
        failure,
        RelayFailure::SinkError(_) | RelayFailure::SinkTimeout
    )
}

fn request_failure_error(failure: &RelayFailure, config: &Config) -> ProxyError {
    let timeouts = &config.timeouts;
    match failure {
        RelayFailure::SourceClosed => ProxyError::new(
            Kind::ClientClosed,
            "client closed the connection inside the request body",
        ),
        RelayFailure::SourceError(err) => ProxyError::new(
            Kind::ClientClosed,
            format!("reading the request body failed: {err}"),
        ),
        RelayFailure::SourceTimeout => ProxyError::new(
            Kind::ClientTimeout,
            format!(
                "no request body bytes within {} ms; raise timeouts.client_body_read_ms for slow clients",
                timeouts.client_body_read.as_millis()
            ),
        ),
        RelayFailure::SourceInvalid(err) => {
            ProxyError::bad_request(format!("invalid chunked request body: {err}"))
        }
        RelayFailure::TooLarge => ProxyError::new(
            Kind::BodyTooLarge,
            format!(
                "request body larger than {} bytes; send less or raise limits.max_request_body_bytes",
                config.limits.max_request_body_bytes
            ),
        ),
        RelayFailure::SinkError(err) => ProxyError::new(
            Kind::UpstreamClosed,
            format!("sending the request body failed: {err}"),
        ),
        RelayFailure::SinkTimeout => ProxyError::new(
            Kind::UpstreamTimeout,
            "upstream stopped reading the request body",
        ),
    }
}

/// The connection halves and settings that `Client::duplex` uses besides the request relay.
struct Duplex<'d, 'io, 'x> {
    client_write: &'d mut StreamWriter<'io>,
    client_watch: &'d StreamWatcher<'io>,
    upstream_read: &'d mut StreamReader<'io>,
    upstream_buf: PoolBuf,
    head_params: HeadReadParams,
    client_keep_alive: bool,
    extras: &'d ResponseExtras<'x>,
    client_write_timer: Pin<&'d mut IoTimer>,
    upstream_read_timer: Pin<&'d mut IoTimer>,
    client_watch_timer: Pin<&'d mut IoTimer>,
}

/// The outcome of the concurrent part of an exchange.
enum DuplexEnd {
    /// The client closed before the response head reached it.
    ClientGone,
    /// No final response head was relayed.
    NoResponse {
        head_end: HeadEnd,
        request_result: Option<Result<Relayed, RelayFailure>>,
    },
    /// The upstream switched protocols: the 101 head is at the start of `upstream_buf`.
    Upgraded {
        upstream_buf: PoolBuf,
        body_start: usize,
        request_result: Option<Result<Relayed, RelayFailure>>,
    },
    /// The response head was relayed; the body relay ended with `response_result`.
    Responded {
        response_result: Result<Relayed, RelayFailure>,
        request_result: Option<Result<Relayed, RelayFailure>>,
        close_client: bool,
    },
}

enum HeadEnd {
    /// The client closed its connection while the upstream worked on the request.
    ClientLeft,
    /// The client failed while sending its body (its error, for the response).
    RequestFailed(ProxyError),
    Failed(HeadFailure),
}

enum Exchanged {
    Done(Next),
    /// A pooled connection was found closed before any response byte: the request may go again
    /// on a new connection.
    RetryFresh {
        stream: TcpStream,
        buffers: Buffers,
        /// No byte of the request reached the connection, so any method may be sent again.
        nothing_sent: bool,
    },
}

/// Settings for reading a response head.
#[derive(Clone, Copy)]
struct HeadReadParams {
    limits: HeadLimits,
    request_was_head: bool,
    client_minor: u8,
    write_timeout: Duration,
    /// The request offered an upgrade, so a 101 is its final response.
    upgrade_offered: bool,
}

struct HeadFailure {
    error: ProxyError,
    /// The upstream buffer, when the failure left it with us.
    buf: Option<PoolBuf>,
    /// Whether any response byte had arrived (a stale pooled connection sends none).
    received_any: bool,
}

/// Reads response heads from the upstream until a final one, forwarding interim responses to
/// HTTP/1.1 clients (RFC 9110 section 15.2), a 100 Continue only once. Returns the buffer with the final head at its start and the
/// offset where the body begins.
async fn read_response_head<R: AsyncReadRent, W: AsyncWriteRent>(
    upstream: &mut R,
    client: &mut W,
    mut buf: PoolBuf,
    response: &mut ResponseHead,
    head_out: &mut Vec<u8>,
    params: HeadReadParams,
    mut write_timer: Pin<&mut IoTimer>,
) -> Result<(PoolBuf, usize), HeadFailure> {
    buf.clear();
    let mut sent_continue = false;
    let mut received_any = false;
    loop {
        if !buf.is_empty() {
            let parsed =
                head::parse_response(&buf, params.limits, params.request_was_head, response);
            match parsed {
                Err(error) => {
                    return Err(HeadFailure {
                        error,
                        buf: Some(buf),
                        received_any: true,
                    });
                }
                Ok(false) => {}
                Ok(true) if response.status >= 200 => {
                    let body_start = response.head_len;
                    return Ok((buf, body_start));
                }
                Ok(true) if response.status == 101 && params.upgrade_offered => {
                    let body_start = response.head_len;
                    return Ok((buf, body_start));
                }
                Ok(true) => {
                    if response.status == 101 {
                        let error = ProxyError::invalid_response(
                            "101 Switching Protocols without an upgrade request",
                        );
                        return Err(HeadFailure {
                            error,
                            buf: Some(buf),
                            received_any: true,
                        });
                    }
                    // A repeated 100 Continue means nothing to the client, so only the first goes on.
                    let forward = params.client_minor >= 1
                        && (response.status != 100 || !std::mem::replace(&mut sent_continue, true));
                    if forward {
                        forward::write_interim_head(head_out, &buf, response);
                        let bytes = std::mem::take(head_out);
                        let timer = write_timer.as_mut();
                        let written = timer.limit(params.write_timeout, client.write_all(bytes));
                        match written.await {
                            Ok((Ok(_), bytes)) => *head_out = bytes,
                            _ => {
                                let error = ProxyError::new(
                                    Kind::ClientClosed,
                                    "client closed while an interim response was written",
                                );
                                return Err(HeadFailure {
                                    error,
                                    buf: Some(buf),
                                    received_any: true,
                                });
                            }
                        }
                    }
                    let consumed = response.head_len;
                    let len = buf.len();
                    buf.copy_within(consumed..len, 0);
                    buf.truncate(len - consumed);
                    continue;
                }
            }
        }
        let start = buf.len();
        let window_end = buf.capacity() - TAILROOM;
        if start >= window_end {
            let error = ProxyError::invalid_response(
                "response head does not fit in one buffer; raise buffers.size_bytes",
            );
            return Err(HeadFailure {
                error,
                buf: Some(buf),
                received_any: true,
            });
        }
        let (result, slice) = upstream.read(buf.slice_mut(start..window_end)).await;
        buf = slice.into_inner();
        match result {
            Ok(0) => {
                let error = if received_any {
                    ProxyError::new(
                        Kind::UpstreamClosed,
                        "upstream closed the connection inside the response head",
                    )
                } else {
                    ProxyError::new(
                        Kind::UpstreamClosed,
                        "upstream closed the connection without a response",
                    )
                };
                return Err(HeadFailure {
                    error,
                    buf: Some(buf),
                    received_any,
                });
            }
            Ok(_) => received_any = true,
            Err(err) => {
                let error = ProxyError::new(
                    Kind::UpstreamClosed,
                    format!("reading the response head failed: {err}"),
                );
                return Err(HeadFailure {
                    error,
                    buf: Some(buf),
                    received_any,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{COALESCE_BODY_BYTES, coalesce_body, contains_head_end};

    #[test]
    fn head_end_detection() {
        assert!(contains_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(contains_head_end(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(contains_head_end(b"GET / HTTP/1.1\r\n\r\nbody"));
        assert!(!contains_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!contains_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r"));
        assert!(!contains_head_end(b""));
    }

    #[test]
    fn small_complete_bodies_join_their_head() {
        let body = vec![b'x'; COALESCE_BODY_BYTES + 1];
        let max = COALESCE_BODY_BYTES as u64;
        // (room, buffered bytes, length, bytes appended)
        let cases: [(usize, usize, Option<u64>, usize); 8] = [
            (usize::MAX, 100, Some(100), 100),
            (usize::MAX, 150, Some(100), 100),
            (usize::MAX, 99, Some(100), 0),
            (usize::MAX, 0, Some(0), 0),
            (usize::MAX, 100, None, 0),
            (usize::MAX, COALESCE_BODY_BYTES + 1, Some(max), COALESCE_BODY_BYTES),
            (usize::MAX, COALESCE_BODY_BYTES + 1, Some(max + 1), 0),
            (4 + 99, 100, Some(100), 0),
        ];
        for (room, buffered, length, appended) in cases {
            let mut head = b"HEAD".to_vec();
            let got = coalesce_body(&mut head, room, &body[..buffered], length);
            assert_eq!(got, appended, "room {room}, buffered {buffered}, length {length:?}");
            assert_eq!(head.len(), 4 + appended);
            assert!(head[4..].iter().all(|&b| b == b'x'));
        }
    }
}
