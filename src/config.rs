//! Loading and validation of ringway's JSON configuration file.
//!
//! `config/README.md` documents every key. [`load`] and [`parse`] check the whole file and
//! return every problem they find, each with its key path, the offending value and a fix,
//! so that an operator can correct a file in one pass. Host names in upstream server
//! addresses are resolved once, here, when the file is loaded.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

mod gateway;

pub use gateway::*;

/// Linux's default `fs.nr_open`: the most file descriptors one process can open unless an
/// administrator raises the sysctl. Connection counts above it cannot be reached.
const DEFAULT_NR_OPEN: usize = 1 << 20;

/// Allowed values of `workers`, as a count or as the length of a CPU list. 1024 is far
/// above the core count of current servers, so a larger value is almost certainly a typo.
pub const WORKER_COUNT_RANGE: RangeInclusive<usize> = 1..=1024;

/// Allowed values of every `timeouts.*_ms` key. Zero would expire every operation at once,
/// and a timeout longer than one day (86,400,000 ms) is almost certainly a unit mistake.
pub const TIMEOUT_RANGE_MS: RangeInclusive<u64> = 1..=86_400_000;

/// Default `timeouts.connect_ms`. RFC 6298 section 2.1 sets TCP's initial retransmission
/// timeout to 1 s, so an unanswered SYN is sent again after 1 s, and 3 s leaves 2 s for
/// the SYN-ACK to that retransmission. An upstream on the same network that has not
/// responded by then is better treated as down than waited for. nginx's
/// `proxy_connect_timeout` defaults to 60 s, which suits distant upstreams.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;

/// Default `timeouts.client_head_ms`, from the first byte of a request to the end of its
/// head. A client sends a head of a few KiB within one round trip, so 10 s only cuts off
/// clients that trickle the head to hold a connection open (slowloris). nginx's
/// `client_header_timeout` defaults to 60 s.
pub const DEFAULT_CLIENT_HEAD_TIMEOUT_MS: u64 = 10_000;

/// Default `timeouts.client_idle_ms`, the wait for the next request on a keep-alive client
/// connection. It is close to nginx's `keepalive_timeout` default of 75 s, which lets a
/// browser reuse the connection while a user reads a page.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT_MS: u64 = 60_000;

/// Default `timeouts.client_body_read_ms`, the maximum gap between two reads of a request
/// body. It is nginx's `client_body_timeout` default.
pub const DEFAULT_CLIENT_BODY_READ_TIMEOUT_MS: u64 = 60_000;

/// Default `timeouts.client_write_ms`, the maximum time one write to the client may stay
/// blocked. It is nginx's `send_timeout` default.
pub const DEFAULT_CLIENT_WRITE_TIMEOUT_MS: u64 = 60_000;

/// Default `timeouts.upstream_head_ms`, from the last byte of the request sent upstream to
/// the end of the response head. Upstreams may compute for a while before they respond,
/// so this matches nginx's `proxy_read_timeout` default.
pub const DEFAULT_UPSTREAM_HEAD_TIMEOUT_MS: u64 = 60_000;

/// Default `timeouts.upstream_read_ms`, the maximum gap between two reads of a response
/// body. It is nginx's `proxy_read_timeout` default.
pub const DEFAULT_UPSTREAM_READ_TIMEOUT_MS: u64 = 60_000;

/// Default `timeouts.upstream_idle_ms`, how long an idle pooled upstream connection is
/// kept. A pooled connection that the upstream has already closed fails the request that
/// reuses it, so this should stay below the upstream's own keep-alive timeout. 30 s is
/// well below nginx's default `keepalive_timeout` of 75 s, so an nginx upstream keeps its
/// side open longer than ringway does. Upstreams that close idle connections sooner need
/// a lower value.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS: u64 = 30_000;

/// Default `timeouts.tunnel_idle_ms`, how long an upgraded connection (a WebSocket, say) may
/// carry no byte in either direction before both sides are closed. 5 minutes is Envoy's
/// default stream idle timeout; WebSocket clients that ping more often than that stay open.
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT_MS: u64 = 300_000;

/// Allowed values of `limits.max_request_head_bytes` and `limits.max_response_head_bytes`
/// before the cross-check against `buffers.size_bytes`. The shortest request head with a
/// Host field is about 27 bytes, so a limit below 64 bytes would reject nearly every
/// message and is almost certainly a mistake.
pub const HEAD_SIZE_RANGE_BYTES: RangeInclusive<usize> = 64..=*BUFFER_SIZE_RANGE_BYTES.end();

/// Default `limits.max_request_head_bytes`: request line plus header section. It fits
/// large cookies and long URLs. nginx rejects a request line or one header field above
/// 8 KiB (`large_client_header_buffers 4 8k`), and Envoy rejects a request head above
/// 60 KiB (`max_request_headers_kb`).
pub const DEFAULT_MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// Default `limits.max_response_head_bytes`: status line plus header section. It is twice
/// the request limit because responses often carry more and larger fields, such as
/// several `Set-Cookie` lines and content security policies.
pub const DEFAULT_MAX_RESPONSE_HEAD_BYTES: usize = 32 * 1024;

/// Allowed values of `limits.max_header_count`. A limit of 0 would reject every request,
/// because an HTTP/1.1 request must carry Host (RFC 9112 section 3.2). 1000 is ten times
/// the default, and a higher limit would only widen the parser's work per head.
pub const HEADER_COUNT_RANGE: RangeInclusive<usize> = 1..=1000;

/// Default `limits.max_header_count`, per request or response head. Envoy's
/// `max_headers_count` defaults to 100 as well.
pub const DEFAULT_MAX_HEADER_COUNT: usize = 100;

/// Allowed values of `limits.max_request_body_bytes`. Zero rejects every request body.
pub const REQUEST_BODY_RANGE_BYTES: RangeInclusive<u64> = 0..=u64::MAX;

/// Default `limits.max_request_body_bytes`. ringway streams bodies instead of buffering
/// them, so this limit protects upstreams, not the proxy's memory. 1 GiB allows file
/// uploads, where nginx's default `client_max_body_size` of 1 MiB rejects them.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 1 << 30;

/// Allowed values of `limits.max_chunk_extension_bytes`. Zero rejects every chunk
/// extension. The maximum is half the smallest allowed buffer, so that a chunk-size line
/// with its extensions fits in one buffer whatever `buffers.size_bytes` is.
pub const CHUNK_EXTENSION_RANGE_BYTES: RangeInclusive<usize> =
    0..=*BUFFER_SIZE_RANGE_BYTES.start() / 2;

/// Default `limits.max_chunk_extension_bytes`, the extension bytes on one chunk-size line.
/// RFC 9112 section 7.1.1 says a server ought to limit chunk extensions, because a peer
/// can otherwise make the decoder read and skip unbounded data. 1 KiB is generous for the
/// short name=value pairs the grammar is meant for.
pub const DEFAULT_MAX_CHUNK_EXTENSION_BYTES: usize = 1024;

/// Allowed values of `limits.max_trailer_bytes` before the cross-check against
/// `buffers.size_bytes`. Zero rejects every trailer field.
pub const TRAILER_SIZE_RANGE_BYTES: RangeInclusive<usize> = 0..=*BUFFER_SIZE_RANGE_BYTES.end();

/// Default `limits.max_trailer_bytes`, the trailer section after the last chunk
/// (RFC 9112 section 7.1.2). A trailer section is a header section in another place, so
/// it gets the request head's default.
pub const DEFAULT_MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Allowed values of `limits.max_connections_per_worker`.
pub const CONNECTIONS_PER_WORKER_RANGE: RangeInclusive<usize> = 1..=DEFAULT_NR_OPEN;

/// Default `limits.max_connections_per_worker`, counting client connections. Each client
/// connection may hold an upstream connection too, so a worker at this limit needs about
/// 20,000 file descriptors, which `ulimit -n` must allow. nginx's `worker_connections`
/// defaults to 512 and counts both sides, which is low for a proxy that keeps idle
/// keep-alive clients.
pub const DEFAULT_MAX_CONNECTIONS_PER_WORKER: usize = 10_000;

/// Allowed values of `buffers.size_bytes`. 4 KiB is one memory page, and 16 MiB bounds the
/// memory a single buffer pins.
pub const BUFFER_SIZE_RANGE_BYTES: RangeInclusive<usize> = 4096..=16 * 1024 * 1024;

/// Default `buffers.size_bytes`. One 64 KiB read moves a bulk body in a sixteenth of the
/// system calls that 4 KiB reads need, and it leaves room for the head limits above.
pub const DEFAULT_BUFFER_SIZE_BYTES: usize = 64 * 1024;

/// Allowed values of `buffers.per_worker`. A proxied exchange reads from the client and
/// from the upstream, so if it uses one buffer per direction, four buffers let two
/// exchanges make progress at once. The maximum allows one buffer per file descriptor
/// that a process can open by default, more than a worker can keep busy.
pub const BUFFERS_PER_WORKER_RANGE: RangeInclusive<usize> = 4..=DEFAULT_NR_OPEN;

/// Default `buffers.per_worker`. With the default buffer size this caps a worker's body
/// memory at 64 MiB (allocated only as transfers need it). A request takes two buffers while
/// its head and body are read and keeps one while its response streams, so 1024 buffers keep
/// 512 requests busy at once, and about 1000 slow readers before the rest must wait.
pub const DEFAULT_BUFFERS_PER_WORKER: usize = 1024;

/// Allowed values of `upstreams.<name>.max_idle_connections_per_server`. Zero disables
/// keep-alive to that upstream.
pub const IDLE_CONNECTIONS_PER_SERVER_RANGE: RangeInclusive<usize> = 0..=DEFAULT_NR_OPEN;

/// Default `upstreams.<name>.max_idle_connections_per_server`, per worker. nginx has no
/// default for its upstream `keepalive`, and its documentation examples use 16 or 32.
/// 32 covers short bursts of concurrent requests without holding many idle sockets.
pub const DEFAULT_MAX_IDLE_CONNECTIONS_PER_SERVER: usize = 32;

/// Accepted values of `log.level`, from least to most verbose.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Default `log.level`, the usual production level: errors, warnings and informational
/// events, without debug output.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Maximum length, in characters, of a string value quoted in an error message. It keeps
/// one error on one terminal line even when the value is a long string.
const MAX_QUOTED_VALUE_CHARS: usize = 80;

const TOP_LEVEL_KEYS: &[&str] = &[
    "workers",
    "listen",
    "driver",
    "relay",
    "io_uring",
    "upstreams",
    "routes",
    "timeouts",
    "limits",
    "buffers",
    "log",
    "request_id",
    "admin",
    "access_log",
    "shutdown",
    "handoff",
];
const TIMEOUT_KEYS: &[&str] = &[
    "connect_ms",
    "client_head_ms",
    "client_idle_ms",
    "client_body_read_ms",
    "client_write_ms",
    "upstream_head_ms",
    "upstream_read_ms",
    "upstream_idle_ms",
    "tunnel_idle_ms",
];
const LIMIT_KEYS: &[&str] = &[
    "max_request_head_bytes",
    "max_response_head_bytes",
    "max_header_count",
    "max_request_body_bytes",
    "max_chunk_extension_bytes",
    "max_trailer_bytes",
    "max_connections_per_worker",
];
const BUFFER_KEYS: &[&str] = &["size_bytes", "per_worker"];
const LOG_KEYS: &[&str] = &["level"];
const IO_URING_KEYS: &[&str] = &["entries", "coop_taskrun", "single_issuer", "sqpoll_idle_ms"];
const HANDOFF_KEYS: &[&str] = &["socket"];

/// Maximum length in bytes of a Unix socket path: `sun_path` is 108 bytes on Linux,
/// including the terminating NUL.
pub const MAX_UNIX_SOCKET_PATH_BYTES: usize = 107;

const ADMIN_KEYS: &[&str] = &["listen"];
const ACCESS_LOG_KEYS: &[&str] = &["enabled", "path", "format"];
const SHUTDOWN_KEYS: &[&str] = &["grace_ms"];

/// Allowed drain periods on SIGTERM; 0 closes every connection at once.
pub const GRACE_RANGE_MS: RangeInclusive<u64> = 0..=*TIMEOUT_RANGE_MS.end();

/// Default drain period on SIGTERM: long enough for ordinary requests and short downloads to
/// finish, and short enough for a rolling restart. Kubernetes waits 30 s
/// (`terminationGracePeriodSeconds`) before it sends SIGKILL.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;

/// Allowed io_uring submission queue sizes: monoio's minimum and the kernel's maximum.
pub const IO_URING_ENTRIES_RANGE: RangeInclusive<u32> = 256..=32_768;

/// Default io_uring submission queue size: room for a few thousand operations in flight per
/// worker (two to four per busy connection) before submission has to wait.
pub const DEFAULT_IO_URING_ENTRIES: u32 = 4096;

/// Allowed SQPOLL idle times; 0 turns the kernel polling thread off.
pub const SQPOLL_IDLE_RANGE_MS: RangeInclusive<u32> = 0..=60_000;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub workers: Workers,
    /// Listening addresses, in file order and without duplicates (port 0 excepted).
    pub listen: Vec<SocketAddr>,
    pub driver: Driver,
    pub relay: RelayMode,
    pub io_uring: IoUring,
    /// Upstreams sorted by name. [`Route::upstream`] indexes this list.
    pub upstreams: Vec<Upstream>,
    /// Routes in file order. The first route that matches a request wins.
    pub routes: Vec<Route>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub buffers: Buffers,
    pub log: Log,
    pub request_id: RequestId,
    /// The admin listener (metrics, health, reload); `None` turns it off.
    pub admin: Option<Admin>,
    pub access_log: AccessLog,
    pub shutdown: Shutdown,
    /// Listener hand-off to a replacing process; `None` when the file has no `"handoff"`.
    pub handoff: Option<Handoff>,
}

/// Worker threads and their CPU placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workers {
    /// This many workers, placed round-robin on the CPUs. `"auto"` in the file becomes
    /// one worker per CPU that `std::thread::available_parallelism` reports.
    Count(usize),
    /// One worker per listed CPU id, in list order.
    Cores(Vec<usize>),
}

impl Workers {
    /// Returns the number of worker threads.
    pub fn count(&self) -> usize {
        match self {
            Workers::Count(count) => *count,
            Workers::Cores(cores) => cores.len(),
        }
    }

    /// Returns the CPU id that worker `worker` should be pinned to.
    ///
    /// For `Cores` this is the listed id. For `Count` it is `worker` modulo the CPU count
    /// that `std::thread::available_parallelism` reports. Returns `None` when `worker` is
    /// not below [`Workers::count`] or when the CPU count is unavailable.
    ///
    /// A count pins worker `i` to the `i`-th CPU of the process's affinity mask, wrapping around.
    pub fn core_for(&self, worker: usize) -> Option<usize> {
        match self {
            Workers::Cores(cores) => cores.get(worker).copied(),
            Workers::Count(count) => {
                if worker >= *count {
                    return None;
                }
                let cpus = crate::sys::allowed_cpus()
                    .ok()
                    .filter(|cpus| !cpus.is_empty())?;
                Some(cpus[worker % cpus.len()])
            }
        }
    }
}

/// The I/O driver that the workers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// The driver that measured fastest: epoll. With monoio 0.2.4, io_uring matched epoll on
    /// small requests and lost on downloads (docs/BENCHMARKS.md), so it runs only when asked for.
    #[default]
    Auto,
    IoUring,
    Epoll,
}

/// Settings of each worker's io_uring ring, used only with the io_uring driver. A flag the
/// kernel does not support makes the worker retry without the flags and log that it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoUring {
    pub entries: u32,
    /// IORING_SETUP_COOP_TASKRUN (Linux 5.19): completions run when the worker next enters the
    /// kernel instead of interrupting it.
    pub coop_taskrun: bool,
    /// IORING_SETUP_SINGLE_ISSUER (Linux 6.0): only the worker thread submits, which lets the
    /// kernel skip some locking.
    pub single_issuer: bool,
    /// IORING_SETUP_SQPOLL with this idle time in milliseconds; 0 is off. A kernel thread then
    /// polls the ring and costs a CPU of its own while busy.
    pub sqpoll_idle_ms: u32,
}

/// Both flags are on by default: in a quick run of scripts/loadtest (one worker, 2-core
/// machine, Linux 6.18), they raised small-response throughput from about 29,000 to 40,000
/// requests per second and cut CPU per request from 34 to 23 µs. Kernels without them fall back.
impl Default for IoUring {
    fn default() -> Self {
        IoUring {
            entries: DEFAULT_IO_URING_ENTRIES,
            coop_taskrun: true,
            single_issuer: true,
            sqpoll_idle_ms: 0,
        }
    }
}

/// The way response bodies with a known end move from the upstream socket to the client socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// Splice on epoll workers, copy on io_uring workers, where splice does not apply.
    #[default]
    Auto,
    /// Through pooled buffers in user space, overlapping each read with the previous write.
    Copy,
    /// With splice(2) through a per-worker pool of pipes, without copying into user space. It
    /// applies to Content-Length and close-delimited response bodies relayed as they are; chunked
    /// bodies, which ringway re-encodes, always take the copy path.
    Splice,
}

/// A named group of servers that routes send requests to.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    /// One entry per resolved address. A host name that resolves to several addresses
    /// yields several entries with the same `authority`, as in nginx's `upstream` block.
    pub servers: Vec<Server>,
    /// Idle keep-alive connections kept per server and per worker. Zero disables
    /// keep-alive to this upstream.
    pub max_idle_connections_per_server: usize,
    /// The policy that picks a server for each request.
    pub balance: Balance,
    /// Passive and active health checking of the servers.
    pub health: Health,
    /// `None` unless `circuit_breaker` is in the file.
    pub circuit_breaker: Option<CircuitBreaker>,
    pub retries: Retries,
}

/// One upstream server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Resolved address. For a host name, this is one of the addresses it resolved to at
    /// load time. Names are not resolved again while ringway runs.
    pub addr: SocketAddr,
    /// `host:port` exactly as configured, sent as Host when the client sent none.
    pub authority: String,
    /// Relative share of requests under [`Balance::WeightedRoundRobin`], at least 1. Every
    /// address of a host name gets the weight of its entry.
    pub weight: u32,
}

/// Server selection policy of an upstream (`upstreams.<name>.balance`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    /// Round robin in proportion to [`Server::weight`].
    WeightedRoundRobin,
    LeastConnections,
    /// The less busy of two servers picked at random.
    PowerOfTwo,
    /// A hash of this request property picks the server, so equal values reach the same server.
    Hash(ClientKey),
    /// A cookie that ringway sets pins each client to one server.
    StickyCookie(StickyCookie),
}

/// The request property that identifies a client, for hashing and rate limiting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientKey {
    /// The peer address of the client connection.
    #[default]
    ClientAddress,
    /// The value of this request header, written as in the file (`"header:X-User"`).
    Header(String),
}

/// Settings of [`Balance::StickyCookie`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyCookie {
    /// Cookie name, an HTTP token.
    pub name: String,
    /// Max-Age attribute of the cookie.
    pub max_age: Duration,
}

/// Health checking of an upstream's servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// Always on: failed requests eject a server for a while.
    pub passive: PassiveHealth,
    /// Periodic probe requests; `None` unless `health.active` is in the file.
    pub active: Option<ActiveHealth>,
}

/// Ejection of a server after failed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealth {
    /// Failures within `window` that eject the server.
    pub max_failures: u32,
    pub window: Duration,
    /// First ejection period. Repeated ejections grow up to `max_ejection`.
    pub ejection: Duration,
    pub max_ejection: Duration,
}

/// Probe requests sent to every server on a timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHealth {
    /// Request target of the probe, in origin form.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Response status codes that count as healthy.
    pub expected_status: Vec<u16>,
    /// Successful probes in a row that bring an ejected server back.
    pub healthy_threshold: u32,
    /// Failed probes in a row that eject a server.
    pub unhealthy_threshold: u32,
}

/// A breaker that stops sending requests to an upstream whose requests mostly fail.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitBreaker {
    /// Share of failed requests in `window`, in (0, 1], that opens the breaker.
    pub failure_ratio: f64,
    pub window: Duration,
    /// Requests in `window` below which the breaker stays closed whatever the ratio.
    pub min_requests: u32,
    /// How long the breaker stays open before it lets trial requests through.
    pub break_duration: Duration,
    /// Trial requests let through while half open.
    pub half_open_requests: u32,
}

/// Retries of failed requests on another server, bounded by a budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retries {
    /// Extra attempts per request; 0 turns retries off.
    pub attempts: u32,
    /// Retries allowed per request sent, in [0, 1], on top of `min_per_second`.
    pub budget_ratio: f64,
    /// Retries per second that are always allowed.
    pub min_per_second: u32,
}

/// A rule that sends matching requests to an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Literal prefix that every matching path starts with: the whole `path_prefix`, or the
    /// text of a `path` template before its first placeholder.
    pub path_prefix: String,
    /// The path as written in the file.
    pub path: RoutePath,
    /// Name in logs and the `{route}` placeholder: `name` from the file or `"route N"`,
    /// where N is the route's index. Unique among the routes.
    pub name: String,
    /// Host to match, lower-cased and without a port. IPv6 literals keep their brackets, and
    /// a wildcard keeps its `*.` prefix. `None` matches every host.
    pub host: Option<String>,
    /// Methods to match, as written in the file, because methods are case-sensitive
    /// (RFC 9110 section 9.1). `None` matches every method.
    pub methods: Option<Vec<String>>,
    /// Request headers that must be present with exactly these values.
    pub headers: Vec<HeaderMatch>,
    /// Higher priorities are tried first.
    pub priority: i32,
    /// Whether path matching distinguishes letter case.
    pub case_sensitive: bool,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub rewrite: Option<Rewrite>,
    pub query: QueryRules,
    /// Rules applied in order to the request sent upstream.
    pub request_headers: Vec<HeaderRule>,
    /// Rules applied in order to the response sent to the client.
    pub response_headers: Vec<HeaderRule>,
    /// Overrides of the global upstream timeouts.
    pub timeouts: RouteTimeouts,
    pub rate_limit: Option<RateLimit>,
    /// Client addresses allowed, as CIDRs or single addresses. Empty allows every client.
    pub allow: Vec<Cidr>,
    /// Client addresses rejected; a deny entry wins over an allow entry.
    pub deny: Vec<Cidr>,
    /// Overrides [`RequestId::header`] for this route.
    pub request_id_header: Option<String>,
}

impl Route {
    /// Returns a route that sends every path under `path_prefix` to `upstream`, with every
    /// other setting at its default.
    pub fn with_prefix(path_prefix: &str, upstream: usize) -> Route {
        Route {
            path_prefix: path_prefix.to_owned(),
            path: RoutePath::Prefix(path_prefix.to_owned()),
            name: String::new(),
            host: None,
            methods: None,
            headers: Vec::new(),
            priority: DEFAULT_ROUTE_PRIORITY,
            case_sensitive: DEFAULT_CASE_SENSITIVE,
            upstream,
            rewrite: None,
            query: QueryRules::default(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            timeouts: RouteTimeouts::default(),
            rate_limit: None,
            allow: Vec::new(),
            deny: Vec::new(),
            request_id_header: None,
        }
    }
}

/// The path a route matches, exactly as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePath {
    /// `path_prefix`: every path that starts with this text.
    Prefix(String),
    /// `path`: a template with `{name}` and a final `{*rest}` placeholder. Only its
    /// characters have been checked, not its placeholder syntax.
    Template(String),
}

/// A request header that a route requires (`routes[N].headers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Field name as written; names compare case-insensitively.
    pub name: String,
    /// Exact field value.
    pub value: String,
}

/// The change made to the path before the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// A path template filled from the route's captures. Only its characters have been
    /// checked, not its placeholders.
    Path(String),
    /// A literal prefix removed from the path.
    StripPrefix(String),
}

/// Changes to the query string. With both lists empty the query is forwarded byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryRules {
    /// Parameter names removed.
    pub remove: Vec<String>,
    /// Parameters set to a value, replacing every earlier occurrence, in file order.
    pub set: Vec<(String, String)>,
}

/// One header rewrite rule (`request_headers` and `response_headers` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    pub kind: HeaderRuleKind,
    /// Field name, an HTTP token.
    pub name: String,
    /// Value template for `Set` and `Add`, the replacement text for `Replace`, and empty for
    /// `Remove`. Its placeholders have not been checked.
    pub value: String,
}

/// What a [`HeaderRule`] does with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRuleKind {
    /// Replaces every field of that name with one field.
    Set,
    /// Adds a field and keeps the existing ones.
    Add,
    Remove,
    /// Replaces this text with [`HeaderRule::value`] in every field of that name.
    Replace {
        find: String,
    },
}

/// Per-route overrides of `timeouts`; `None` keeps the global value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTimeouts {
    pub connect: Option<Duration>,
    pub upstream_head: Option<Duration>,
    pub upstream_read: Option<Duration>,
}

/// A token bucket per client (`routes[N].rate_limit`).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Refill rate of each client's bucket, for the whole process.
    pub requests_per_second: f64,
    /// Bucket size: requests a client may send at once after a quiet period.
    pub burst: u32,
    pub key: ClientKey,
    /// Client addresses or header values that are never limited.
    pub whitelist: Vec<String>,
}

/// A CIDR such as `"10.0.0.0/8"` or a single address, as written in the file.
pub type Cidr = String;

/// Request id settings (top-level `request_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    /// Header that carries the id, to the upstream and back to the client.
    pub header: String,
    /// Whether ringway creates an id for requests that arrive without one.
    pub generate: bool,
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId {
            header: DEFAULT_REQUEST_ID_HEADER.to_owned(),
            generate: DEFAULT_REQUEST_ID_GENERATE,
        }
    }
}

/// Timeouts of client and upstream I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to an upstream server.
    pub connect: Duration,
    /// From the first byte of a request to the end of its head.
    pub client_head: Duration,
    /// Waiting for the next request on a keep-alive client connection.
    pub client_idle: Duration,
    /// Maximum gap between two reads of a request body.
    pub client_body_read: Duration,
    /// Maximum time one write to the client may stay blocked.
    pub client_write: Duration,
    /// From the request being fully sent upstream to the end of the response head.
    pub upstream_head: Duration,
    /// Maximum gap between two reads of a response body.
    pub upstream_read: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub upstream_idle: Duration,
    /// How long an upgraded connection may stay silent in both directions.
    pub tunnel_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
            client_head: Duration::from_millis(DEFAULT_CLIENT_HEAD_TIMEOUT_MS),
            client_idle: Duration::from_millis(DEFAULT_CLIENT_IDLE_TIMEOUT_MS),
            client_body_read: Duration::from_millis(DEFAULT_CLIENT_BODY_READ_TIMEOUT_MS),
            client_write: Duration::from_millis(DEFAULT_CLIENT_WRITE_TIMEOUT_MS),
            upstream_head: Duration::from_millis(DEFAULT_UPSTREAM_HEAD_TIMEOUT_MS),
            upstream_read: Duration::from_millis(DEFAULT_UPSTREAM_READ_TIMEOUT_MS),
            upstream_idle: Duration::from_millis(DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS),
            tunnel_idle: Duration::from_millis(DEFAULT_TUNNEL_IDLE_TIMEOUT_MS),
        }
    }
}

/// Size and count limits on HTTP messages and connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header section, including the CRLFs. At most `buffers.size_bytes`.
    pub max_request_head_bytes: usize,
    /// Status line plus header section, including the CRLFs. At most `buffers.size_bytes`.
    pub max_response_head_bytes: usize,
    /// Header fields in one request or response head.
    pub max_header_count: usize,
    /// Request body after transfer decoding.
    pub max_request_body_bytes: u64,
    /// Extension bytes on one chunk-size line.
    pub max_chunk_extension_bytes: usize,
    /// Trailer section of a chunked body. At most `buffers.size_bytes`.
    pub max_trailer_bytes: usize,
    /// Open client connections per worker.
    pub max_connections_per_worker: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
            max_response_head_bytes: DEFAULT_MAX_RESPONSE_HEAD_BYTES,
            max_header_count: DEFAULT_MAX_HEADER_COUNT,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            max_chunk_extension_bytes: DEFAULT_MAX_CHUNK_EXTENSION_BYTES,
            max_trailer_bytes: DEFAULT_MAX_TRAILER_BYTES,
            max_connections_per_worker: DEFAULT_MAX_CONNECTIONS_PER_WORKER,
        }
    }
}

/// The I/O buffer pool of each worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffers {
    pub size_bytes: usize,
    pub per_worker: usize,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            size_bytes: DEFAULT_BUFFER_SIZE_BYTES,
            per_worker: DEFAULT_BUFFERS_PER_WORKER,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// One of [`LOG_LEVELS`].
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

/// The admin listener: a plain HTTP/1.1 endpoint for `/metrics`, `/healthz`, `/readyz` and
/// `/reload`, served by its own thread, off the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// The access log: one line per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    pub enabled: bool,
    /// The output file; `None` is standard output (`"-"` in the file).
    pub path: Option<PathBuf>,
    pub format: AccessLogFormat,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            enabled: true,
            path: None,
            format: AccessLogFormat::Text,
        }
    }
}

/// The line format of the access log; `config/README.md` describes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// Space-separated fields, in the spirit of nginx's combined format.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the drain on SIGTERM or SIGINT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// How long requests in flight may run on after the listeners closed.
    pub grace: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            grace: Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS),
        }
    }
}

/// Listener hand-off settings (`"handoff"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// Unix socket on which a running process hands its listening sockets to a new one.
    pub socket: PathBuf,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `upstreams.origin.servers[1]` or `timeouts.connect_ms`, or empty
    /// when the problem concerns the whole file.
    pub path: String,
    /// Description of the problem, naming the offending value.
    pub message: String,
    /// Change that fixes the problem.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.message, self.fix)
        } else {
            write!(f, "{}: {}: {}", self.path, self.message, self.fix)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates the configuration file at `path`.
///
/// A leading UTF-8 byte order mark is skipped. On failure, returns every problem found.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        vec![ConfigError {
            path: String::new(),
            message: format!("failed to read config file {}: {error}", path.display()),
            fix: "check the path and that the file is readable UTF-8 text".to_owned(),
        }]
    })?;
    parse(text.strip_prefix('\u{feff}').unwrap_or(&text))
}

/// Parses and validates a configuration from JSON text.
///
/// Resolves upstream host names, and the CPU count for `"workers"`, on the calling
/// thread. On failure, returns every problem found.
pub fn parse(json: &str) -> Result<Config, Vec<ConfigError>> {
    parse_with(json, &SystemInfo::detect())
}

/// Facts about the machine that validation depends on, separate so tests can fix them.
struct SystemInfo {
    /// CPU count from `std::thread::available_parallelism`, or its error message.
    cpu_count: Result<usize, String>,
    /// CPUs in the process's affinity mask, or the error reading it.
    allowed_cpus: Result<Vec<usize>, String>,
}

impl SystemInfo {
    fn detect() -> Self {
        let cpu_count = std::thread::available_parallelism()
            .map(|count| count.get())
            .map_err(|error| error.to_string());
        let allowed_cpus = crate::sys::allowed_cpus().map_err(|error| error.to_string());
        SystemInfo {
            cpu_count,
            allowed_cpus,
        }
    }
}

/// Formats CPU ids as ranges, for example "0-3,8".
fn describe_cpus(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let start = cpus[index];
        let mut end = start;
        while index + 1 < cpus.len() && cpus[index + 1] == end + 1 {
            index += 1;
            end = cpus[index];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        index += 1;
    }
    parts.join(",")
}

fn parse_with(json: &str, system: &SystemInfo) -> Result<Config, Vec<ConfigError>> {
    let root: Json = serde_json::from_str(json).map_err(|error| vec![json_syntax_error(&error)])?;
    let mut checker = Checker {
        errors: Vec::new(),
        system,
    };
    match checker.check_config(&root) {
        Some(config) if checker.errors.is_empty() => {
            // Templates, addresses and header rules are parsed where they are used; a file
            // that passes here builds on every worker.
            let errors = crate::gateway::check(&config);
            if errors.is_empty() {
                Ok(config)
            } else {
                Err(errors)
            }
        }
        _ => {
            debug_assert!(
                !checker.errors.is_empty(),
                "a rejected config must report an error"
            );
            Err(checker.errors)
        }
    }
}

fn json_syntax_error(error: &serde_json::Error) -> ConfigError {
    // serde_json appends " at line L column C" to its message. The position is restated
    // here in the message's own words, so the suffix is removed.
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let reason = full.strip_suffix(&suffix).unwrap_or(&full);
    ConfigError {
        path: String::new(),
        message: format!(
            "invalid JSON at line {}, column {}: {reason}",
            error.line(),
            error.column()
        ),
        fix: "correct the JSON syntax at that position".to_owned(),
    }
}

/// A parsed JSON value that, unlike `serde_json::Value`, keeps object entries in file
/// order and keeps duplicate keys, so that validation can report them.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    /// A number without fraction or exponent that fits in `i64` or `u64`.
    Integer(i128),
    /// Any other number: with a fraction or exponent, or too large for `u64`.
    Float(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Json, E> {
        Ok(Json::Integer(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Json, E> {
        Ok(Json::Integer(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Json, E> {
        Ok(Json::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Json, E> {
        Ok(Json::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Json, E> {
        Ok(Json::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Json>()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

/// Describes a value for "expected X, found Y" messages.
fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".to_owned(),
        Json::Bool(value) => format!("boolean {value}"),
        Json::Integer(value) => format!("number {value}"),
        Json::Float(value) => format!("number {value}"),
        Json::String(value) => format!("string {}", quote(value)),
        Json::Array(_) => "an array".to_owned(),
        Json::Object(_) => "an object".to_owned(),
    }
}

/// Quotes a string value for an error message, escaped and shortened to
/// [`MAX_QUOTED_VALUE_CHARS`].
fn quote(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_VALUE_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(MAX_QUOTED_VALUE_CHARS).collect();
    format!("{head:?}...")
}

/// Appends `key` to a key path, in brackets and quotes when the key contains characters
/// other than ASCII letters, digits, `_` and `-`, so that the path stays unambiguous.
fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", quote(key)),
    }
}

fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The entries of a JSON object whose keys have been checked.
struct Object<'a> {
    entries: &'a [(String, Json)],
}

impl<'a> Object<'a> {
    /// Returns the value of the first entry named `key`.
    fn get(&self, key: &str) -> Option<&'a Json> {
        self.entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }
}

/// The validation pass: collects every error instead of stopping at the first.
///
/// Each `check_*` method returns `None` only after it has reported at least one error.
struct Checker<'s> {
    errors: Vec<ConfigError>,
    system: &'s SystemInfo,
}

impl Checker<'_> {
    fn report(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_owned(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn report_type(&mut self, path: &str, expected: &str, found: &Json, fix: impl Into<String>) {
        self.report(
            path,
            format!("expected {expected}, found {}", describe(found)),
            fix,
        );
    }

    /// Returns the entries of an object with arbitrary keys, reporting duplicate keys.
    fn entries<'a>(
        &mut self,
        path: &str,
        value: &'a Json,
        fix: &str,
    ) -> Option<&'a [(String, Json)]> {
        let Json::Object(entries) = value else {
            self.report_type(path, "an object", value, fix);
            return None;
        };
        for (index, (key, _)) in entries.iter().enumerate() {
            if entries[..index].iter().any(|(earlier, _)| earlier == key) {
                self.report(
                    &key_path(path, key),
                    format!("duplicate key {}", quote(key)),
                    "keep one entry with this key, because JSON parsers disagree on which one wins",
                );
            }
        }
        Some(entries)
    }

    /// Returns an object whose keys must come from `valid_keys`, reporting every unknown
    /// and duplicate key.
    fn object<'a>(
        &mut self,
        path: &str,
        value: &'a Json,
        valid_keys: &[&str],
    ) -> Option<Object<'a>> {
        let valid_list = valid_keys.join(", ");
        let entries = self.entries(
            path,
            value,
            &format!("write an object with the keys {valid_list}"),
        )?;
        for (key, _) in entries {
            if !valid_keys.contains(&key.as_str()) {
                self.report(
                    &key_path(path, key),
                    format!("unknown key {}", quote(key)),
                    format!("remove it or correct its spelling. Valid keys here: {valid_list}"),
                );
            }
        }
        Some(Object { entries })
    }

    fn required<'a>(
        &mut self,
        object: &Object<'a>,
        parent: &str,
        key: &str,
        fix: &str,
    ) -> Option<&'a Json> {
        let value = object.get(key);
        if value.is_none() {
            self.report(
                &key_path(parent, key),
                format!("missing required key {}", quote(key)),
                fix,
            );
        }
        value
    }

    fn string<'a>(&mut self, path: &str, value: &'a Json, fix: &str) -> Option<&'a str> {
        match value {
            Json::String(text) => Some(text),
            other => {
                self.report_type(path, "a string", other, fix);
                None
            }
        }
    }

    fn array<'a>(&mut self, path: &str, value: &'a Json, fix: &str) -> Option<&'a [Json]> {
        match value {
            Json::Array(items) => Some(items),
            other => {
                self.report_type(path, "an array", other, fix);
                None
            }
        }
    }

    /// Returns an integer in `min..=max`, reporting a non-integer or out-of-range value.
    fn integer(&mut self, path: &str, value: &Json, min: i128, max: i128) -> Option<i128> {
        let fix = format!("use an integer from {min} to {max}");
        let Json::Integer(number) = value else {
            self.report_type(path, "an integer", value, fix);
            return None;
        };
        if *number < min {
            self.report(
                path,
                format!("value {number} is below the minimum of {min}"),
                fix,
            );
            return None;
        }
        if *number > max {
            self.report(
                path,
                format!("value {number} is above the maximum of {max}"),
                fix,
            );
            return None;
        }
        Some(*number)
    }

    fn integer_u64(
        &mut self,
        path: &str,
        value: &Json,
        range: &RangeInclusive<u64>,
    ) -> Option<u64> {
        let number = self.integer(path, value, (*range.start()).into(), (*range.end()).into())?;
        // The range check above guarantees that the value fits.
        u64::try_from(number).ok()
    }

    fn integer_usize(
        &mut self,
        path: &str,
        value: &Json,
        range: &RangeInclusive<usize>,
    ) -> Option<usize> {
        let min = i128::try_from(*range.start()).unwrap_or(i128::MAX);
        let max = i128::try_from(*range.end()).unwrap_or(i128::MAX);
        let number = self.integer(path, value, min, max)?;
        usize::try_from(number).ok()
    }

    /// Validates the whole file. Sections are checked even after an earlier one failed,
    /// so that every error is reported.
    fn check_config(&mut self, root: &Json) -> Option<Config> {
        let top = self.object("", root, TOP_LEVEL_KEYS)?;

        let workers = self
            .required(
                &top,
                "",
                "workers",
                "add \"workers\": a count such as 1, \"auto\", or a list of CPU ids",
            )
            .and_then(|value| self.check_workers(value));
        let listen = self
            .required(
                &top,
                "",
                "listen",
                "add \"listen\": an address such as \"127.0.0.1:8080\"",
            )
            .and_then(|value| self.check_listen(value));
        let driver = match top.get("driver") {
            Some(value) => self.check_driver(value),
            None => Some(Driver::default()),
        };
        let relay = match top.get("relay") {
            Some(value) => self.check_relay(value),
            None => Some(RelayMode::default()),
        };
        let io_uring = self.check_io_uring(top.get("io_uring"));
        let upstream_value = self.required(
            &top,
            "",
            "upstreams",
            "add \"upstreams\", for example {\"origin\": {\"servers\": [\"127.0.0.1:9090\"]}}",
        );
        let upstream_names = upstream_value
            .map(collect_upstream_names)
            .unwrap_or_default();
        let upstreams = upstream_value.and_then(|value| self.check_upstreams(value));
        let routes = self
            .required(
                &top,
                "",
                "routes",
                "add \"routes\", for example [{\"path_prefix\": \"/\", \"upstream\": \"origin\"}]",
            )
            .and_then(|value| self.check_routes(value, &upstream_names));
        let timeouts = self.check_timeouts(top.get("timeouts"));
        let limits = self.check_limits(top.get("limits"));
        let buffers = self.check_buffers(top.get("buffers"));
        let log = self.check_log(top.get("log"));
        let request_id = self.check_request_id(top.get("request_id"));
        let admin = match top.get("admin") {
            Some(value) => self.check_admin(value, listen.as_deref()).map(Some),
            None => Some(None),
        };
        let access_log = self.check_access_log(top.get("access_log"));
        let shutdown = self.check_shutdown(top.get("shutdown"));
        let handoff = self.check_handoff(top.get("handoff"));

        if let (Some(limits), Some(buffers)) = (&limits, &buffers) {
            self.check_limits_fit_buffers(limits, buffers);
        }

        Some(Config {
            workers: workers?,
            listen: listen?,
            driver: driver?,
            relay: relay?,
            io_uring: io_uring?,
            upstreams: upstreams?,
            routes: routes?,
            timeouts: timeouts?,
            limits: limits?,
            buffers: buffers?,
            log: log?,
            request_id: request_id?,
            admin: admin?,
            access_log: access_log?,
            shutdown: shutdown?,
            handoff: handoff?,
        })
    }

    fn check_workers(&mut self, value: &Json) -> Option<Workers> {
        const PATH: &str = "workers";
        let max = *WORKER_COUNT_RANGE.end();
        match value {
            Json::Integer(_) => self
                .integer_usize(PATH, value, &WORKER_COUNT_RANGE)
                .map(Workers::Count),
            Json::String(text) if text == "auto" => match &self.system.cpu_count {
                // On a machine with more CPUs than the worker maximum, run the maximum
                // rather than reject a file that is valid on smaller machines.
                Ok(cpus) => Some(Workers::Count((*cpus).clamp(1, max))),
                Err(error) => {
                    self.report(
                        PATH,
                        format!("\"auto\" needs the CPU count, but std::thread::available_parallelism failed: {error}"),
                        format!("set workers to a count from 1 to {max}"),
                    );
                    None
                }
            },
            Json::Array(items) => self.check_worker_cpus(items),
            other => {
                self.report_type(
                    PATH,
                    "a worker count, \"auto\" or a list of CPU ids",
                    other,
                    format!("use a count from 1 to {max}, \"auto\", or CPU ids such as [0, 1]"),
                );
                None
            }
        }
    }

    fn check_worker_cpus(&mut self, items: &[Json]) -> Option<Workers> {
        const PATH: &str = "workers";
        let max_workers = *WORKER_COUNT_RANGE.end();
        if items.is_empty() {
            self.report(
                PATH,
                "the list of CPU ids is empty",
                "list at least one CPU id, such as [0], or use a count",
            );
            return None;
        }
        if items.len() > max_workers {
            self.report(
                PATH,
                format!(
                    "{} CPU ids listed, above the maximum of {max_workers} workers",
                    items.len()
                ),
                format!("list at most {max_workers} CPU ids"),
            );
            return None;
        }
        let allowed = match &self.system.allowed_cpus {
            Ok(allowed) => allowed.clone(),
            Err(error) => {
                self.report(
                    PATH,
                    format!("CPU ids cannot be checked because reading the CPU affinity mask failed: {error}"),
                    "set workers to a count instead of a list",
                );
                return None;
            }
        };

        let mut cores = Vec::with_capacity(items.len());
        let mut first_index_of: HashMap<usize, usize> = HashMap::new();
        let mut valid = true;
        for (index, item) in items.iter().enumerate() {
            let path = index_path(PATH, index);
            let Some(id) = self.integer_usize(&path, item, &(0..=usize::MAX)) else {
                valid = false;
                continue;
            };
            if !allowed.contains(&id) {
                self.report(
                    &path,
                    format!("CPU id {id} is not in this process's CPU affinity mask"),
                    format!("use ids from the mask: {}", describe_cpus(&allowed)),
                );
                valid = false;
                continue;
            }
            if let Some(first) = first_index_of.get(&id) {
                self.report(
                    &path,
                    format!("CPU id {id} is listed twice, first at workers[{first}]"),
                    "list each CPU id once, because each id starts one worker pinned to that CPU",
                );
                valid = false;
                continue;
            }
            first_index_of.insert(id, index);
            cores.push(id);
        }
        valid.then_some(Workers::Cores(cores))
    }

    fn check_listen(&mut self, value: &Json) -> Option<Vec<SocketAddr>> {
        const PATH: &str = "listen";
        match value {
            Json::String(text) => self
                .check_listen_address(PATH, text)
                .map(|address| vec![address]),
            Json::Array(items) => {
                if items.is_empty() {
                    self.report(
                        PATH,
                        "the list of addresses is empty",
                        "list at least one address, such as \"127.0.0.1:8080\"",
                    );
                    return None;
                }
                let mut addresses: Vec<SocketAddr> = Vec::with_capacity(items.len());
                let mut valid = true;
                for (index, item) in items.iter().enumerate() {
                    let path = index_path(PATH, index);
                    let Some(text) =
                        self.string(&path, item, "write an address such as \"127.0.0.1:8080\"")
                    else {
                        valid = false;
                        continue;
                    };
                    let Some(address) = self.check_listen_address(&path, text) else {
                        valid = false;
                        continue;
                    };
                    // Two port-0 entries bind two different ephemeral ports, so they are
                    // not duplicates.
                    let first = addresses
                        .iter()
                        .position(|earlier| *earlier == address && address.port() != 0);
                    if let Some(first) = first {
                        self.report(
                            &path,
                            format!(
                                "address {} is listed twice, first at listen[{first}]",
                                quote(text)
                            ),
                            "list each address once",
                        );
                        valid = false;
                        continue;
                    }
                    addresses.push(address);
                }
                valid.then_some(addresses)
            }
            other => {
                self.report_type(
                    PATH,
                    "an address string or a list of them",
                    other,
                    "write an address such as \"127.0.0.1:8080\" or a list such as [\"127.0.0.1:8080\", \"[::1]:8080\"]",
                );
                None
            }
        }
    }

    fn check_listen_address(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                self.report(
                    path,
                    format!("invalid listen address {}", quote(text)),
                    "write an IP address and port such as \"127.0.0.1:8080\" or \"[::1]:8080\". Host names are not accepted here",
                );
                None
            }
        }
    }

    fn check_driver(&mut self, value: &Json) -> Option<Driver> {
        const PATH: &str = "driver";
        let fix = "use \"auto\", \"io_uring\" or \"epoll\"";
        let name = self.string(PATH, value, fix)?;
        match name {
            "auto" => Some(Driver::Auto),
            "io_uring" => Some(Driver::IoUring),
            "epoll" => Some(Driver::Epoll),
            other => {
                self.report(PATH, format!("unknown driver {}", quote(other)), fix);
                None
            }
        }
    }

    fn check_io_uring(&mut self, value: Option<&Json>) -> Option<IoUring> {
        const PATH: &str = "io_uring";
        let defaults = IoUring::default();
        let Some(value) = value else {
            return Some(defaults);
        };
        let object = self.object(PATH, value, IO_URING_KEYS)?;
        let entries = match object.get("entries") {
            Some(value) => self
                .integer(
                    &key_path(PATH, "entries"),
                    value,
                    (*IO_URING_ENTRIES_RANGE.start()).into(),
                    (*IO_URING_ENTRIES_RANGE.end()).into(),
                )
                .and_then(|number| u32::try_from(number).ok()),
            None => Some(defaults.entries),
        };
        let coop_taskrun = match object.get("coop_taskrun") {
            Some(value) => self.boolean(&key_path(PATH, "coop_taskrun"), value),
            None => Some(defaults.coop_taskrun),
        };
        let single_issuer = match object.get("single_issuer") {
            Some(value) => self.boolean(&key_path(PATH, "single_issuer"), value),
            None => Some(defaults.single_issuer),
        };
        let sqpoll_idle_ms = match object.get("sqpoll_idle_ms") {
            Some(value) => self
                .integer(
                    &key_path(PATH, "sqpoll_idle_ms"),
                    value,
                    (*SQPOLL_IDLE_RANGE_MS.start()).into(),
                    (*SQPOLL_IDLE_RANGE_MS.end()).into(),
                )
                .and_then(|number| u32::try_from(number).ok()),
            None => Some(defaults.sqpoll_idle_ms),
        };
        Some(IoUring {
            entries: entries?,
            coop_taskrun: coop_taskrun?,
            single_issuer: single_issuer?,
            sqpoll_idle_ms: sqpoll_idle_ms?,
        })
    }

    fn boolean(&mut self, path: &str, value: &Json) -> Option<bool> {
        match value {
            Json::Bool(flag) => Some(*flag),
            other => {
                self.report_type(path, "true or false", other, "use true or false");
                None
            }
        }
    }

    fn check_relay(&mut self, value: &Json) -> Option<RelayMode> {
        const PATH: &str = "relay";
        let fix = "use \"auto\", \"copy\" or \"splice\"";
        let name = self.string(PATH, value, fix)?;
        match name {
            "auto" => Some(RelayMode::Auto),
            "copy" => Some(RelayMode::Copy),
            "splice" => Some(RelayMode::Splice),
            other => {
                self.report(PATH, format!("unknown relay mode {}", quote(other)), fix);
                None
            }
        }
    }

    fn check_upstreams(&mut self, value: &Json) -> Option<Vec<Upstream>> {
        const PATH: &str = "upstreams";
        let example = "write an object that maps names to upstreams, for example {\"origin\": {\"servers\": [\"127.0.0.1:9090\"]}}";
        let entries = self.entries(PATH, value, example)?;
        if entries.is_empty() {
            self.report(PATH, "no upstreams are defined", example);
            return None;
        }

        let mut upstreams = Vec::with_capacity(entries.len());
        let mut valid = true;
        for (name, definition) in entries {
            match self.check_upstream(name, definition) {
                Some(upstream) => upstreams.push(upstream),
                None => valid = false,
            }
        }
        if !valid {
            return None;
        }
        // Sorted by name, the order that route indexes refer to, so that they do not
        // depend on key order in the file.
        upstreams.sort_by(|a, b| a.name.cmp(&b.name));
        Some(upstreams)
    }

    fn check_upstream(&mut self, name: &str, value: &Json) -> Option<Upstream> {
        let path = key_path("upstreams", name);
        let mut valid = true;
        if !is_valid_upstream_name(name) {
            self.report(
                &path,
                format!("invalid upstream name {}", quote(name)),
                "use a non-empty name of ASCII letters, digits, '.', '_' and '-'",
            );
            valid = false;
        }
        let object = self.object(&path, value, UPSTREAM_KEYS)?;

        let servers = self
            .required(
                &object,
                &path,
                "servers",
                "add \"servers\": a list such as [\"127.0.0.1:9090\"]",
            )
            .and_then(|servers| self.check_servers(&key_path(&path, "servers"), servers));
        let max_idle = match object.get("max_idle_connections_per_server") {
            Some(value) => self.integer_usize(
                &key_path(&path, "max_idle_connections_per_server"),
                value,
                &IDLE_CONNECTIONS_PER_SERVER_RANGE,
            ),
            None => Some(DEFAULT_MAX_IDLE_CONNECTIONS_PER_SERVER),
        };
        let policies = self.check_upstream_policies(&path, &object);
        if let Some(policies) = &policies {
            self.check_weights_need_weighted_balance(&path, &object, &policies.balance);
        }

        if !valid {
            return None;
        }
        let policies = policies?;
        Some(Upstream {
            name: name.to_owned(),
            servers: servers?,
            max_idle_connections_per_server: max_idle?,
            balance: policies.balance,
            health: policies.health,
            circuit_breaker: policies.circuit_breaker,
            retries: policies.retries,
        })
    }

    fn check_servers(&mut self, path: &str, value: &Json) -> Option<Vec<Server>> {
        let items = self.array(path, value, "write a list such as [\"127.0.0.1:9090\"]")?;
        if items.is_empty() {
            self.report(
                path,
                "the list of servers is empty",
                "list at least one server, such as \"127.0.0.1:9090\"",
            );
            return None;
        }
        let mut servers = Vec::new();
        let mut seen: Vec<&str> = Vec::with_capacity(items.len());
        let mut valid = true;
        for (index, item) in items.iter().enumerate() {
            let item_path = index_path(path, index);
            let Some((text, weight, text_path)) = self.check_server_entry(&item_path, item) else {
                valid = false;
                continue;
            };
            if let Some(first) = seen
                .iter()
                .position(|earlier| earlier.eq_ignore_ascii_case(text))
            {
                self.report(
                    &text_path,
                    format!(
                        "server {} is listed twice, first at {}",
                        quote(text),
                        index_path(path, first)
                    ),
                    "list each server once",
                );
                valid = false;
                continue;
            }
            seen.push(text);
            match self.resolve_server(&text_path, text) {
                Some(resolved) => servers.extend(
                    resolved
                        .into_iter()
                        .map(|server| Server { weight, ..server }),
                ),
                None => valid = false,
            }
        }
        valid.then_some(servers)
    }

    /// Resolves one `host:port` entry into one [`Server`] per distinct address.
    fn resolve_server(&mut self, path: &str, text: &str) -> Option<Vec<Server>> {
        let address_fix = "write host:port, for example \"127.0.0.1:9090\"";
        if let Ok(address) = text.parse::<SocketAddr>() {
            if address.port() == 0 {
                self.report(
                    path,
                    format!("invalid port 0 in {}", quote(text)),
                    "use a port from 1 to 65535",
                );
                return None;
            }
            return Some(vec![Server {
                addr: address,
                authority: text.to_owned(),
                weight: DEFAULT_SERVER_WEIGHT,
            }]);
        }

        // Not an IP literal, so it must be host-name:port. A valid bracketed IPv6 literal
        // would have parsed above.
        if text.starts_with('[') {
            self.report(
                path,
                format!("invalid IPv6 address in {}", quote(text)),
                "write it as \"[::1]:9090\"",
            );
            return None;
        }
        let Some((host, port_text)) = text.rsplit_once(':') else {
            self.report(
                path,
                format!("invalid address {}", quote(text)),
                address_fix,
            );
            return None;
        };
        if host.contains(':') {
            self.report(
                path,
                format!("invalid address {}", quote(text)),
                "write an IPv6 address in brackets, for example \"[::1]:9090\"",
            );
            return None;
        }
        if !is_valid_host_name(host) {
            self.report(
                path,
                format!("invalid host name {} in {}", quote(host), quote(text)),
                "use a host name of ASCII letters, digits, '-', '_' and '.', or an IP address",
            );
            return None;
        }
        let port = match port_text.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => {
                self.report(
                    path,
                    format!("invalid port {} in {}", quote(port_text), quote(text)),
                    "use a port from 1 to 65535",
                );
                return None;
            }
        };

        let resolved = match (host, port).to_socket_addrs() {
            Ok(addresses) => addresses.collect::<Vec<_>>(),
            Err(error) => {
                self.report(
                    path,
                    format!("failed to resolve host name {}: {error}", quote(host)),
                    "check the name and the resolver configuration, or write an IP address",
                );
                return None;
            }
        };
        let mut servers: Vec<Server> = Vec::with_capacity(resolved.len());
        for address in resolved {
            if !servers.iter().any(|server| server.addr == address) {
                servers.push(Server {
                    addr: address,
                    authority: text.to_owned(),
                    weight: DEFAULT_SERVER_WEIGHT,
                });
            }
        }
        if servers.is_empty() {
            self.report(
                path,
                format!("host name {} resolved to no addresses", quote(host)),
                "check the name and the resolver configuration, or write an IP address",
            );
            return None;
        }
        Some(servers)
    }

    fn check_routes(&mut self, value: &Json, upstream_names: &[String]) -> Option<Vec<Route>> {
        const PATH: &str = "routes";
        let example = "write a list such as [{\"path_prefix\": \"/\", \"upstream\": \"origin\"}]";
        let items = self.array(PATH, value, example)?;
        if items.is_empty() {
            self.report(PATH, "the list of routes is empty", example);
            return None;
        }
        let mut routes: Vec<Route> = Vec::with_capacity(items.len());
        let mut valid = true;
        for (index, item) in items.iter().enumerate() {
            let path = index_path(PATH, index);
            let Some(route) = self.check_route(&path, index, item, upstream_names) else {
                valid = false;
                continue;
            };
            if let Some(first) = routes.iter().position(|earlier| earlier.name == route.name) {
                self.report(
                    &key_path(&path, "name"),
                    format!(
                        "route name {} is already used by routes[{first}]",
                        quote(&route.name)
                    ),
                    "give each route its own name, because logs and {route} placeholders tell routes apart by name",
                );
                valid = false;
                continue;
            }
            routes.push(route);
        }
        valid.then_some(routes)
    }

    fn check_route(
        &mut self,
        path: &str,
        index: usize,
        value: &Json,
        upstream_names: &[String],
    ) -> Option<Route> {
        let object = self.object(path, value, ROUTE_KEYS)?;

        let route_path = self.check_route_path(path, &object);
        let host = match object.get("host") {
            Some(value) => self
                .check_route_host(&key_path(path, "host"), value)
                .map(Some),
            None => Some(None),
        };
        let methods = match object.get("methods") {
            Some(value) => self
                .check_methods(&key_path(path, "methods"), value)
                .map(Some),
            None => Some(None),
        };
        let upstream = self
            .required(
                &object,
                path,
                "upstream",
                "add \"upstream\": the name of an entry in upstreams",
            )
            .and_then(|value| {
                self.check_route_upstream(&key_path(path, "upstream"), value, upstream_names)
            });
        let extras = self.check_route_extras(path, index, &object, route_path.as_ref());

        let (path_prefix, route_path) = route_path?;
        let extras = extras?;
        Some(Route {
            path_prefix,
            path: route_path,
            name: extras.name,
            host: host?,
            methods: methods?,
            headers: extras.headers,
            priority: extras.priority,
            case_sensitive: extras.case_sensitive,
            upstream: upstream?,
            rewrite: extras.rewrite,
            query: extras.query,
            request_headers: extras.request_headers,
            response_headers: extras.response_headers,
            timeouts: extras.timeouts,
            rate_limit: extras.rate_limit,
            allow: extras.allow,
            deny: extras.deny,
            request_id_header: extras.request_id_header,
        })
    }

    fn check_path_prefix(&mut self, path: &str, value: &Json) -> Option<String> {
        let prefix = self.string(path, value, "write a path such as \"/api/\"")?;
        if !prefix.starts_with('/') {
            self.report(
                path,
                format!("path prefix {} does not start with '/'", quote(prefix)),
                format!("write it as \"/{}\"", prefix.escape_debug()),
            );
            return None;
        }
        // The prefix is compared with the path of an origin-form request target
        // (RFC 9112 section 3.2.1), which contains only the characters of an RFC 3986
        // absolute path. Anything else, '?' and '#' included, could never match.
        if let Some(character) = prefix.chars().find(|&c| !is_path_char(c)) {
            self.report(
                path,
                format!("path prefix {} contains {character:?}, which cannot appear in a request path", quote(prefix)),
                "percent-encode the character, for example \" \" as \"%20\", and leave out any query",
            );
            return None;
        }
        if !has_valid_percent_encoding(prefix) {
            self.report(
                path,
                format!(
                    "path prefix {} has a '%' that is not followed by two hex digits",
                    quote(prefix)
                ),
                "write a literal '%' as \"%25\"",
            );
            return None;
        }
        Some(prefix.to_owned())
    }

    fn check_route_host(&mut self, path: &str, value: &Json) -> Option<String> {
        let text = self.string(path, value, "write a host name such as \"example.com\"")?;
        match normalize_route_host(text) {
            Ok(host) => Some(host),
            Err(reason) => {
                self.report(
                    path,
                    format!("invalid host {}: {reason}", quote(text)),
                    "write a host name such as \"example.com\" or an IP address, optionally with a port",
                );
                None
            }
        }
    }

    fn check_methods(&mut self, path: &str, value: &Json) -> Option<Vec<String>> {
        let items = self.array(path, value, "write a list such as [\"GET\", \"HEAD\"]")?;
        if items.is_empty() {
            self.report(
                path,
                "the list of methods is empty, so the route could never match",
                "list at least one method, or remove \"methods\" to match every method",
            );
            return None;
        }
        let mut methods: Vec<String> = Vec::with_capacity(items.len());
        let mut valid = true;
        for (index, item) in items.iter().enumerate() {
            let item_path = index_path(path, index);
            let Some(method) = self.string(&item_path, item, "write a method such as \"GET\"")
            else {
                valid = false;
                continue;
            };
            // A method is a token (RFC 9110 sections 9.1 and 5.6.2).
            if method.is_empty() || !method.bytes().all(is_token_byte) {
                self.report(
                    &item_path,
                    format!(
                        "invalid method {}: a method is an HTTP token",
                        quote(method)
                    ),
                    "use letters, digits and !#$%&'*+-.^_`|~ only, for example \"GET\"",
                );
                valid = false;
                continue;
            }
            if let Some(first) = methods.iter().position(|earlier| earlier == method) {
                self.report(
                    &item_path,
                    format!(
                        "method {} is listed twice, first at {}",
                        quote(method),
                        index_path(path, first)
                    ),
                    "list each method once",
                );
                valid = false;
                continue;
            }
            methods.push(method.to_owned());
        }
        valid.then_some(methods)
    }

    fn check_route_upstream(
        &mut self,
        path: &str,
        value: &Json,
        upstream_names: &[String],
    ) -> Option<usize> {
        let name = self.string(path, value, "write the name of an entry in upstreams")?;
        match upstream_names.binary_search_by(|candidate| candidate.as_str().cmp(name)) {
            Ok(index) => Some(index),
            Err(_) => {
                let fix = if upstream_names.is_empty() {
                    "define it under upstreams".to_owned()
                } else {
                    format!(
                        "use one of the names under upstreams: {}",
                        upstream_names.join(", ")
                    )
                };
                self.report(path, format!("unknown upstream {}", quote(name)), fix);
                None
            }
        }
    }

    fn check_timeouts(&mut self, value: Option<&Json>) -> Option<Timeouts> {
        const PATH: &str = "timeouts";
        let defaults = Timeouts::default();
        let Some(value) = value else {
            return Some(defaults);
        };
        let object = self.object(PATH, value, TIMEOUT_KEYS)?;

        let mut field = |key: &str, default: Duration| match object.get(key) {
            Some(value) => self
                .integer_u64(&key_path(PATH, key), value, &TIMEOUT_RANGE_MS)
                .map(Duration::from_millis),
            None => Some(default),
        };
        let connect = field("connect_ms", defaults.connect);
        let client_head = field("client_head_ms", defaults.client_head);
        let client_idle = field("client_idle_ms", defaults.client_idle);
        let client_body_read = field("client_body_read_ms", defaults.client_body_read);
        let client_write = field("client_write_ms", defaults.client_write);
        let upstream_head = field("upstream_head_ms", defaults.upstream_head);
        let upstream_read = field("upstream_read_ms", defaults.upstream_read);
        let upstream_idle = field("upstream_idle_ms", defaults.upstream_idle);
        let tunnel_idle = field("tunnel_idle_ms", defaults.tunnel_idle);

        Some(Timeouts {
            connect: connect?,
            client_head: client_head?,
            client_idle: client_idle?,
            client_body_read: client_body_read?,
            client_write: client_write?,
            upstream_head: upstream_head?,
            upstream_read: upstream_read?,
            upstream_idle: upstream_idle?,
            tunnel_idle: tunnel_idle?,
        })
    }

    fn check_limits(&mut self, value: Option<&Json>) -> Option<Limits> {
        const PATH: &str = "limits";
        let defaults = Limits::default();
        let Some(value) = value else {
            return Some(defaults);
        };
        let object = self.object(PATH, value, LIMIT_KEYS)?;

        let mut field =
            |key: &str, range: &RangeInclusive<usize>, default: usize| match object.get(key) {
                Some(value) => self.integer_usize(&key_path(PATH, key), value, range),
                None => Some(default),
            };
        let max_request_head_bytes = field(
            "max_request_head_bytes",
            &HEAD_SIZE_RANGE_BYTES,
            defaults.max_request_head_bytes,
        );
        let max_response_head_bytes = field(
            "max_response_head_bytes",
            &HEAD_SIZE_RANGE_BYTES,
            defaults.max_response_head_bytes,
        );
        let max_header_count = field(
            "max_header_count",
            &HEADER_COUNT_RANGE,
            defaults.max_header_count,
        );
        let max_chunk_extension_bytes = field(
            "max_chunk_extension_bytes",
            &CHUNK_EXTENSION_RANGE_BYTES,
            defaults.max_chunk_extension_bytes,
        );
        let max_trailer_bytes = field(
            "max_trailer_bytes",
            &TRAILER_SIZE_RANGE_BYTES,
            defaults.max_trailer_bytes,
        );
        let max_connections_per_worker = field(
            "max_connections_per_worker",
            &CONNECTIONS_PER_WORKER_RANGE,
            defaults.max_connections_per_worker,
        );
        // The body limit is a u64 even where usize is 32 bits, so it has its own helper.
        let max_request_body_bytes = match object.get("max_request_body_bytes") {
            Some(value) => self.integer_u64(
                &key_path(PATH, "max_request_body_bytes"),
                value,
                &REQUEST_BODY_RANGE_BYTES,
            ),
            None => Some(defaults.max_request_body_bytes),
        };

        Some(Limits {
            max_request_head_bytes: max_request_head_bytes?,
            max_response_head_bytes: max_response_head_bytes?,
            max_header_count: max_header_count?,
            max_request_body_bytes: max_request_body_bytes?,
            max_chunk_extension_bytes: max_chunk_extension_bytes?,
            max_trailer_bytes: max_trailer_bytes?,
            max_connections_per_worker: max_connections_per_worker?,
        })
    }

    fn check_buffers(&mut self, value: Option<&Json>) -> Option<Buffers> {
        const PATH: &str = "buffers";
        let defaults = Buffers::default();
        let Some(value) = value else {
            return Some(defaults);
        };
        let object = self.object(PATH, value, BUFFER_KEYS)?;
        let size_bytes = match object.get("size_bytes") {
            Some(value) => self.integer_usize(
                &key_path(PATH, "size_bytes"),
                value,
                &BUFFER_SIZE_RANGE_BYTES,
            ),
            None => Some(defaults.size_bytes),
        };
        let per_worker = match object.get("per_worker") {
            Some(value) => self.integer_usize(
                &key_path(PATH, "per_worker"),
                value,
                &BUFFERS_PER_WORKER_RANGE,
            ),
            None => Some(defaults.per_worker),
        };
        Some(Buffers {
            size_bytes: size_bytes?,
            per_worker: per_worker?,
        })
    }

    fn check_log(&mut self, value: Option<&Json>) -> Option<Log> {
        const PATH: &str = "log";
        let Some(value) = value else {
            return Some(Log::default());
        };
        let object = self.object(PATH, value, LOG_KEYS)?;
        let Some(level_value) = object.get("level") else {
            return Some(Log::default());
        };
        let level_path = key_path(PATH, "level");
        let fix = format!("use one of {}", LOG_LEVELS.join(", "));
        let level = self.string(&level_path, level_value, &fix)?;
        if !LOG_LEVELS.contains(&level) {
            self.report(
                &level_path,
                format!("unknown log level {}", quote(level)),
                fix,
            );
            return None;
        }
        Some(Log {
            level: level.to_owned(),
        })
    }

    /// Reports head and trailer limits larger than one buffer, because a head must be
    /// parsed from one buffer.
    ///
    /// NOTE: the trailer rule assumes that the chunked decoder also parses the whole
    /// trailer section from one buffer. Drop it if the decoder streams trailer fields.
    fn check_limits_fit_buffers(&mut self, limits: &Limits, buffers: &Buffers) {
        let checks = [
            ("max_request_head_bytes", limits.max_request_head_bytes),
            ("max_response_head_bytes", limits.max_response_head_bytes),
            ("max_trailer_bytes", limits.max_trailer_bytes),
        ];
        for (key, limit) in checks {
            if limit > buffers.size_bytes {
                self.report(
                    &key_path("limits", key),
                    format!(
                        "value {limit} is larger than buffers.size_bytes ({}), but it must fit in one buffer",
                        buffers.size_bytes
                    ),
                    format!("raise buffers.size_bytes to at least {limit} or lower limits.{key}"),
                );
            }
        }
    }
    /// Returns `Some(None)` when `"handoff"` is absent.
    fn check_handoff(&mut self, value: Option<&Json>) -> Option<Option<Handoff>> {
        const PATH: &str = "handoff";
        let Some(value) = value else {
            return Some(None);
        };
        let object = self.object(PATH, value, HANDOFF_KEYS)?;
        let fix = "add \"socket\": a Unix socket path such as \"/run/ringway/handoff.sock\"";
        let socket_value = self.required(&object, PATH, "socket", fix)?;
        let socket_path = key_path(PATH, "socket");
        let socket = self.string(&socket_path, socket_value, fix)?;
        if socket.is_empty() {
            self.report(&socket_path, "empty socket path", fix);
            return None;
        }
        if socket.len() > MAX_UNIX_SOCKET_PATH_BYTES {
            self.report(
                &socket_path,
                format!(
                    "socket path {} is {} bytes long, above the Unix socket maximum of {MAX_UNIX_SOCKET_PATH_BYTES}",
                    quote(socket),
                    socket.len()
                ),
                "use a shorter path, for example under /run",
            );
            return None;
        }
        if socket.contains('\0') {
            self.report(&socket_path, "socket path contains a NUL byte", fix);
            return None;
        }
        Some(Some(Handoff {
            socket: PathBuf::from(socket),
        }))
    }
}

impl Checker<'_> {
    /// Checks `admin`. Its address may not be one of the proxy's own `listen` addresses,
    /// because both would then share the port through SO_REUSEPORT.
    fn check_admin(&mut self, value: &Json, listen: Option<&[SocketAddr]>) -> Option<Admin> {
        const PATH: &str = "admin";
        let object = self.object(PATH, value, ADMIN_KEYS)?;
        let listen_path = key_path(PATH, "listen");
        let text = self.required(
            &object,
            PATH,
            "listen",
            "add \"listen\": an address such as \"127.0.0.1:9901\", or remove \"admin\"",
        )?;
        let text = self.string(
            &listen_path,
            text,
            "write an address such as \"127.0.0.1:9901\"",
        )?;
        let address = self.check_listen_address(&listen_path, text)?;
        let clash =
            address.port() != 0 && listen.is_some_and(|addresses| addresses.contains(&address));
        if clash {
            self.report(
                &listen_path,
                format!("address {} is also in \"listen\"", quote(text)),
                "give the admin listener an address of its own, such as 127.0.0.1:9901",
            );
            return None;
        }
        Some(Admin { listen: address })
    }

    fn check_access_log(&mut self, value: Option<&Json>) -> Option<AccessLog> {
        const PATH: &str = "access_log";
        let defaults = AccessLog::default();
        let Some(value) = value else {
            return Some(defaults);
        };
        let object = self.object(PATH, value, ACCESS_LOG_KEYS)?;
        let enabled = match object.get("enabled") {
            Some(value) => self.boolean(&key_path(PATH, "enabled"), value),
            None => Some(defaults.enabled),
        };
        let path = match object.get("path") {
            Some(value) => {
                let path = key_path(PATH, "path");
                let fix = "write \"-\" for standard output or a file path such as \"/var/log/ringway/access.log\"";
                match self.string(&path, value, fix) {
                    Some("-") => Some(None),
                    Some("") => {
                        self.report(&path, "the path is empty", fix);
                        None
                    }
                    Some(text) => Some(Some(PathBuf::from(text))),
                    None => None,
                }
            }
            None => Some(defaults.path),
        };
        let format = match object.get("format") {
            Some(value) => {
                let path = key_path(PATH, "format");
                let fix = "use \"text\" or \"json\"";
                match self.string(&path, value, fix) {
                    Some("text") => Some(AccessLogFormat::Text),
                    Some("json") => Some(AccessLogFormat::Json),
                    Some(other) => {
                        self.report(&path, format!("unknown format {}", quote(other)), fix);
                        None
                    }
                    None => None,
                }
            }
            None => Some(defaults.format),
        };
        Some(AccessLog {
            enabled: enabled?,
            path: path?,
            format: format?,
        })
    }

    fn check_shutdown(&mut self, value: Option<&Json>) -> Option<Shutdown> {
        const PATH: &str = "shutdown";
        let defaults = Shutdown::default();
        let Some(value) = value else {
            return Some(defaults);
        };
        let object = self.object(PATH, value, SHUTDOWN_KEYS)?;
        let grace = match object.get("grace_ms") {
            Some(value) => self
                .integer_u64(&key_path(PATH, "grace_ms"), value, &GRACE_RANGE_MS)
                .map(Duration::from_millis),
            None => Some(defaults.grace),
        };
        Some(Shutdown { grace: grace? })
    }
}

/// Returns the sorted, distinct upstream names, even when some upstream is invalid, so
/// that routes naming it are not reported as unknown as well.
fn collect_upstream_names(value: &Json) -> Vec<String> {
    let Json::Object(entries) = value else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries.iter().map(|(name, _)| name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

fn is_valid_upstream_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Accepts DNS-style names. The name is also sent as the Host field, so it must not
/// contain characters that a Host value cannot carry (RFC 3986 section 3.2.2 reg-name).
fn is_valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Lower-cases a route's host and removes its port, the form in which the proxy compares
/// it with the request's Host. The host is case-insensitive (RFC 3986 section 3.2.2).
///
/// A leading `*.` (a wildcard for one or more labels) is kept.
fn normalize_route_host(text: &str) -> Result<String, &'static str> {
    let lower = text.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("*.") {
        if rest.starts_with('[') || rest.starts_with('*') {
            return Err("a wildcard is one leading \"*.\" followed by a host name");
        }
        return normalize_route_host(rest).map(|host| format!("*.{host}"));
    }
    let (host, port) = if let Some(rest) = lower.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return Err("the IPv6 literal has no closing ']'");
        };
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err("the text in brackets is not an IPv6 address");
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("only \":port\" may follow the IPv6 literal")?,
            ),
        };
        (format!("[{literal}]"), port)
    } else {
        let (host, port) = match lower.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (lower.as_str(), None),
        };
        if host.is_empty() {
            return Err("the host is empty");
        }
        if host.contains(':') {
            return Err("an IPv6 address must be written in brackets, such as \"[::1]\"");
        }
        if !is_valid_host_name(host) {
            return Err("a host name contains only ASCII letters, digits, '-', '_' and '.'");
        }
        (host.to_owned(), port)
    };
    // RFC 3986 section 3.2.3 defines port as *DIGIT, so an empty port is allowed.
    if let Some(port) = port
        && !port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("the port is not a number");
    }
    Ok(host)
}

/// Returns whether `c` may appear in an RFC 3986 absolute path: pchar or '/'.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c)
}

fn has_valid_percent_encoding(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let digits = bytes.get(index + 1..index + 3);
            if !digits.is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            index += 3;
        } else {
            index += 1;
        }
    }
    true
}

/// tchar from RFC 9110 section 5.6.2.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::{Value, json};

    const MINIMAL: &str = r#"{ "workers": 1, "listen": "127.0.0.1:8080",
  "upstreams": { "origin": { "servers": ["127.0.0.1:9090"] } },
  "routes": [ { "path_prefix": "/", "upstream": "origin" } ] }"#;

    /// CPU count used by tests that need a fixed one.
    const TEST_CPUS: usize = 4;

    pub(super) fn system() -> SystemInfo {
        SystemInfo {
            cpu_count: Ok(TEST_CPUS),
            allowed_cpus: Ok((0..TEST_CPUS).collect()),
        }
    }

    /// Returns MINIMAL with the value at each JSON pointer replaced, creating missing
    /// objects on the way.
    pub(super) fn minimal_with(edits: &[(&str, Value)]) -> String {
        let mut root: Value = serde_json::from_str(MINIMAL).unwrap();
        for (pointer, value) in edits {
            let mut node = &mut root;
            let segments: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
            let (last, parents) = segments.split_last().unwrap();
            for segment in parents {
                node = match node {
                    Value::Array(items) => &mut items[segment.parse::<usize>().unwrap()],
                    Value::Object(map) => {
                        map.entry(segment.to_string()).or_insert_with(|| json!({}))
                    }
                    other => panic!("cannot descend into {other}"),
                };
            }
            match node {
                Value::Array(items) => items[last.parse::<usize>().unwrap()] = value.clone(),
                Value::Object(map) => {
                    map.insert(last.to_string(), value.clone());
                }
                other => panic!("cannot set a key in {other}"),
            }
        }
        root.to_string()
    }

    pub(super) fn parse_ok(json: &str) -> Config {
        match parse_with(json, &system()) {
            Ok(config) => config,
            Err(errors) => panic!("expected a valid config, got {errors:#?}"),
        }
    }

    pub(super) fn parse_errors(json: &str) -> Vec<ConfigError> {
        match parse_with(json, &system()) {
            Ok(config) => panic!("expected errors, got {config:#?}"),
            Err(errors) => errors,
        }
    }

    /// Asserts that `json` fails with exactly one error, at `path`, whose message
    /// contains `value`.
    #[track_caller]
    pub(super) fn assert_single_error(json: &str, path: &str, value: &str) -> ConfigError {
        let errors = parse_errors(json);
        assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
        let error = errors.into_iter().next().unwrap();
        assert_eq!(error.path, path, "wrong path in {error:#?}");
        assert!(
            error.message.contains(value),
            "message does not name {value}: {error:#?}"
        );
        assert!(!error.fix.is_empty(), "empty fix in {error:#?}");
        error
    }

    pub(super) fn paths(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|error| error.path.as_str()).collect()
    }

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn minimal_file_uses_defaults() {
        let config = parse_ok(MINIMAL);

        assert_eq!(config.workers, Workers::Count(1));
        assert_eq!(config.listen, vec![loopback(8080)]);
        assert_eq!(config.driver, Driver::Auto);
        assert_eq!(
            config.upstreams,
            vec![Upstream {
                name: "origin".to_owned(),
                servers: vec![Server {
                    addr: loopback(9090),
                    authority: "127.0.0.1:9090".to_owned(),
                    weight: 1,
                }],
                max_idle_connections_per_server: DEFAULT_MAX_IDLE_CONNECTIONS_PER_SERVER,
                balance: Balance::RoundRobin,
                health: Health::default(),
                circuit_breaker: None,
                retries: Retries::default(),
            }]
        );
        assert_eq!(
            config.routes,
            vec![Route {
                name: "route 0".to_owned(),
                ..Route::with_prefix("/", 0)
            }]
        );
        assert_eq!(config.request_id, RequestId::default());
        assert_eq!(config.timeouts, Timeouts::default());
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.buffers, Buffers::default());
        assert_eq!(config.log, Log::default());
    }

    #[test]
    fn minimal_file_parses_on_this_machine() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.workers, Workers::Count(1));
    }

    #[test]
    fn defaults_match_documented_values() {
        let timeouts = Timeouts::default();
        assert_eq!(timeouts.connect, Duration::from_secs(3));
        assert_eq!(timeouts.client_head, Duration::from_secs(10));
        assert_eq!(timeouts.client_idle, Duration::from_secs(60));
        assert_eq!(timeouts.client_body_read, Duration::from_secs(60));
        assert_eq!(timeouts.client_write, Duration::from_secs(60));
        assert_eq!(timeouts.upstream_head, Duration::from_secs(60));
        assert_eq!(timeouts.upstream_read, Duration::from_secs(60));
        assert_eq!(timeouts.upstream_idle, Duration::from_secs(30));
        assert_eq!(timeouts.tunnel_idle, Duration::from_secs(300));

        let limits = Limits::default();
        assert_eq!(limits.max_request_head_bytes, 16384);
        assert_eq!(limits.max_response_head_bytes, 32768);
        assert_eq!(limits.max_header_count, 100);
        assert_eq!(limits.max_request_body_bytes, 1_073_741_824);
        assert_eq!(limits.max_chunk_extension_bytes, 1024);
        assert_eq!(limits.max_trailer_bytes, 16384);
        assert_eq!(limits.max_connections_per_worker, 10_000);

        assert_eq!(
            Buffers::default(),
            Buffers {
                size_bytes: 65536,
                per_worker: 1024
            }
        );
        assert_eq!(Log::default().level, "info");
    }

    #[test]
    fn every_key_set_explicitly() {
        let json = r#"{
            "workers": [1, 0],
            "listen": ["0.0.0.0:80", "[::]:80"],
            "driver": "epoll",
            "upstreams": {
                "web": { "servers": ["10.0.0.2:8080", "10.0.0.1:8080"], "max_idle_connections_per_server": 0 },
                "api": { "servers": ["[fd00::1]:9000"], "max_idle_connections_per_server": 8 }
            },
            "routes": [
                { "path_prefix": "/api/", "host": "API.Example.com:443", "methods": ["GET", "post"], "upstream": "api" },
                { "path_prefix": "/", "upstream": "web" }
            ],
            "timeouts": { "connect_ms": 1, "client_head_ms": 2, "client_idle_ms": 3, "client_body_read_ms": 4,
                          "client_write_ms": 5, "upstream_head_ms": 6, "upstream_read_ms": 7, "upstream_idle_ms": 86400000,
                          "tunnel_idle_ms": 8 },
            "limits": { "max_request_head_bytes": 4096, "max_response_head_bytes": 8192, "max_header_count": 1000,
                        "max_request_body_bytes": 0, "max_chunk_extension_bytes": 0, "max_trailer_bytes": 0,
                        "max_connections_per_worker": 1 },
            "buffers": { "size_bytes": 8192, "per_worker": 4 },
            "log": { "level": "trace" }
        }"#;
        let config = parse_ok(json);

        assert_eq!(config.workers, Workers::Cores(vec![1, 0]));
        assert_eq!(
            config.listen,
            vec!["0.0.0.0:80".parse().unwrap(), "[::]:80".parse().unwrap()]
        );
        assert_eq!(config.driver, Driver::Epoll);

        let names: Vec<&str> = config
            .upstreams
            .iter()
            .map(|upstream| upstream.name.as_str())
            .collect();
        assert_eq!(names, ["api", "web"]);
        let api = &config.upstreams[0];
        assert_eq!(api.servers[0].addr, "[fd00::1]:9000".parse().unwrap());
        assert_eq!(api.servers[0].authority, "[fd00::1]:9000");
        assert_eq!(api.max_idle_connections_per_server, 8);
        let web = &config.upstreams[1];
        let web_addrs: Vec<SocketAddr> = web.servers.iter().map(|server| server.addr).collect();
        assert_eq!(
            web_addrs,
            [
                "10.0.0.2:8080".parse().unwrap(),
                "10.0.0.1:8080".parse().unwrap()
            ]
        );
        assert_eq!(web.max_idle_connections_per_server, 0);

        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.routes[0].path_prefix, "/api/");
        assert_eq!(config.routes[0].host.as_deref(), Some("api.example.com"));
        assert_eq!(
            config.routes[0].methods,
            Some(vec!["GET".to_owned(), "post".to_owned()])
        );
        assert_eq!(config.routes[0].upstream, 0);
        assert_eq!(config.routes[1].path_prefix, "/");
        assert_eq!(config.routes[1].upstream, 1);

        assert_eq!(config.timeouts.connect, Duration::from_millis(1));
        assert_eq!(config.timeouts.client_head, Duration::from_millis(2));
        assert_eq!(config.timeouts.client_idle, Duration::from_millis(3));
        assert_eq!(config.timeouts.client_body_read, Duration::from_millis(4));
        assert_eq!(config.timeouts.client_write, Duration::from_millis(5));
        assert_eq!(config.timeouts.upstream_head, Duration::from_millis(6));
        assert_eq!(config.timeouts.upstream_read, Duration::from_millis(7));
        assert_eq!(config.timeouts.upstream_idle, Duration::from_secs(86_400));
        assert_eq!(config.timeouts.tunnel_idle, Duration::from_millis(8));

        assert_eq!(
            config.limits,
            Limits {
                max_request_head_bytes: 4096,
                max_response_head_bytes: 8192,
                max_header_count: 1000,
                max_request_body_bytes: 0,
                max_chunk_extension_bytes: 0,
                max_trailer_bytes: 0,
                max_connections_per_worker: 1,
            }
        );
        assert_eq!(
            config.buffers,
            Buffers {
                size_bytes: 8192,
                per_worker: 4
            }
        );
        assert_eq!(config.log.level, "trace");
    }

    #[test]
    fn workers_count_and_auto() {
        let config = parse_ok(&minimal_with(&[("/workers", json!(1024))]));
        assert_eq!(config.workers, Workers::Count(1024));

        let config = parse_ok(&minimal_with(&[("/workers", json!("auto"))]));
        assert_eq!(config.workers, Workers::Count(TEST_CPUS));

        let config = parse(&minimal_with(&[("/workers", json!("auto"))])).unwrap();
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.workers, Workers::Count(cpus.min(1024)));
    }

    #[test]
    fn workers_auto_caps_at_maximum() {
        let many = SystemInfo {
            cpu_count: Ok(5000),
            allowed_cpus: Ok((0..5000).collect()),
        };
        let config = parse_with(&minimal_with(&[("/workers", json!("auto"))]), &many).unwrap();
        assert_eq!(config.workers, Workers::Count(1024));
    }

    #[test]
    fn workers_auto_without_cpu_count() {
        let unknown = SystemInfo {
            cpu_count: Err("not supported".to_owned()),
            allowed_cpus: Err("not supported".to_owned()),
        };
        let errors =
            parse_with(&minimal_with(&[("/workers", json!("auto"))]), &unknown).unwrap_err();
        assert_eq!(paths(&errors), ["workers"]);
        assert!(errors[0].message.contains("not supported"), "{errors:#?}");
    }

    #[test]
    fn workers_cpu_list() {
        let config = parse_ok(&minimal_with(&[("/workers", json!([3, 1]))]));
        assert_eq!(config.workers, Workers::Cores(vec![3, 1]));
        assert_eq!(config.workers.count(), 2);
        assert_eq!(config.workers.core_for(0), Some(3));
        assert_eq!(config.workers.core_for(1), Some(1));
        assert_eq!(config.workers.core_for(2), None);
    }

    #[test]
    fn workers_count_core_for_wraps() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        let workers = Workers::Count(cpus + 1);
        assert_eq!(workers.count(), cpus + 1);
        assert_eq!(workers.core_for(0), Some(0));
        assert_eq!(workers.core_for(cpus - 1), Some(cpus - 1));
        assert_eq!(workers.core_for(cpus), Some(0));
        assert_eq!(workers.core_for(cpus + 1), None);
    }

    #[test]
    fn listen_forms() {
        let config = parse_ok(&minimal_with(&[("/listen", json!("[::1]:8080"))]));
        assert_eq!(
            config.listen,
            vec!["[::1]:8080".parse::<SocketAddr>().unwrap()]
        );

        let config = parse_ok(&minimal_with(&[("/listen", json!("127.0.0.1:0"))]));
        assert_eq!(config.listen, vec![loopback(0)]);

        let config = parse_ok(&minimal_with(&[(
            "/listen",
            json!(["127.0.0.1:8080", "[::1]:8080"]),
        )]));
        assert_eq!(
            config.listen,
            vec![loopback(8080), "[::1]:8080".parse().unwrap()]
        );

        let config = parse_ok(&minimal_with(&[(
            "/listen",
            json!(["127.0.0.1:0", "127.0.0.1:0"]),
        )]));
        assert_eq!(config.listen, vec![loopback(0), loopback(0)]);
    }

    #[test]
    fn io_uring_settings() {
        assert_eq!(parse_ok(&minimal_with(&[])).io_uring, IoUring::default());
        let config = parse_ok(&minimal_with(&[
            ("/io_uring/entries", json!(1024)),
            ("/io_uring/coop_taskrun", json!(true)),
            ("/io_uring/single_issuer", json!(true)),
            ("/io_uring/sqpoll_idle_ms", json!(100)),
        ]));
        assert_eq!(
            config.io_uring,
            IoUring {
                entries: 1024,
                coop_taskrun: true,
                single_issuer: true,
                sqpoll_idle_ms: 100
            }
        );
        let errors = parse_with(
            &minimal_with(&[
                ("/io_uring/entries", json!(16)),
                ("/io_uring/coop_taskrun", json!("yes")),
                ("/io_uring/sqpoll", json!(1)),
            ]),
            &system(),
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|error| error.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "io_uring.sqpoll",
                "io_uring.entries",
                "io_uring.coop_taskrun"
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn relay_modes() {
        assert_eq!(parse_ok(&minimal_with(&[])).relay, RelayMode::Auto);
        for (name, mode) in [
            ("auto", RelayMode::Auto),
            ("copy", RelayMode::Copy),
            ("splice", RelayMode::Splice),
        ] {
            let config = parse_ok(&minimal_with(&[("/relay", json!(name))]));
            assert_eq!(config.relay, mode, "relay {name}");
        }
        let errors =
            parse_with(&minimal_with(&[("/relay", json!("sendfile"))]), &system()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "relay");
        assert!(errors[0].message.contains("\"sendfile\""), "{errors:#?}");
    }

    #[test]
    fn driver_names() {
        for (name, driver) in [
            ("auto", Driver::Auto),
            ("io_uring", Driver::IoUring),
            ("epoll", Driver::Epoll),
        ] {
            let config = parse_ok(&minimal_with(&[("/driver", json!(name))]));
            assert_eq!(config.driver, driver, "driver {name}");
        }
    }

    #[test]
    fn host_name_resolves() {
        let config = parse_ok(&minimal_with(&[(
            "/upstreams/origin/servers",
            json!(["localhost:9090"]),
        )]));
        let servers = &config.upstreams[0].servers;
        assert!(!servers.is_empty());
        for server in servers {
            assert_eq!(server.authority, "localhost:9090");
            assert_eq!(server.addr.port(), 9090);
            assert!(
                server.addr.ip().is_loopback(),
                "localhost resolved to {}",
                server.addr
            );
        }
    }

    #[test]
    fn route_host_is_normalized() {
        let cases = [
            ("Example.COM", "example.com"),
            ("example.com:8080", "example.com"),
            ("example.com:", "example.com"),
            ("[::1]:8080", "[::1]"),
            ("[FE80::1]", "[fe80::1]"),
            ("*.Example.com:443", "*.example.com"),
            ("10.0.0.1:80", "10.0.0.1"),
        ];
        for (written, stored) in cases {
            let config = parse_ok(&minimal_with(&[("/routes/0/host", json!(written))]));
            assert_eq!(
                config.routes[0].host.as_deref(),
                Some(stored),
                "host {written}"
            );
        }
    }

    #[test]
    fn routes_keep_file_order() {
        let json = minimal_with(&[
            (
                "/upstreams",
                json!({ "zeta": { "servers": ["127.0.0.1:1"] }, "alpha": { "servers": ["127.0.0.1:2"] } }),
            ),
            (
                "/routes",
                json!([
                    { "path_prefix": "/z", "upstream": "zeta" },
                    { "path_prefix": "/a", "upstream": "alpha" },
                    { "path_prefix": "/", "upstream": "zeta" }
                ]),
            ),
        ]);
        let config = parse_ok(&json);
        let prefixes: Vec<&str> = config
            .routes
            .iter()
            .map(|route| route.path_prefix.as_str())
            .collect();
        assert_eq!(prefixes, ["/z", "/a", "/"]);
        let targets: Vec<&str> = config
            .routes
            .iter()
            .map(|route| config.upstreams[route.upstream].name.as_str())
            .collect();
        assert_eq!(targets, ["zeta", "alpha", "zeta"]);
    }

    #[test]
    fn display_format() {
        let error = assert_single_error(
            &minimal_with(&[(
                "/upstreams/origin/servers",
                json!(["127.0.0.1:9090", "localhost"]),
            )]),
            "upstreams.origin.servers[1]",
            "\"localhost\"",
        );
        assert_eq!(
            error.to_string(),
            r#"upstreams.origin.servers[1]: invalid address "localhost": write host:port, for example "127.0.0.1:9090""#
        );

        let whole_file = ConfigError {
            path: String::new(),
            message: "m".to_owned(),
            fix: "f".to_owned(),
        };
        assert_eq!(whole_file.to_string(), "m: f");
    }

    #[test]
    fn rejected_values_name_path_and_value() {
        let big_head = DEFAULT_BUFFER_SIZE_BYTES + 1;
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("/workers", json!(0), "workers", "0"),
            ("/workers", json!(1025), "workers", "1025"),
            ("/workers", json!(1.5), "workers", "1.5"),
            ("/workers", json!("two"), "workers", "\"two\""),
            ("/workers", json!([]), "workers", "empty"),
            ("/workers", json!([0, 2, 0]), "workers[2]", "0"),
            ("/workers", json!([-1]), "workers[0]", "-1"),
            ("/workers", json!(["0"]), "workers[0]", "\"0\""),
            (
                "/listen",
                json!("localhost:8080"),
                "listen",
                "\"localhost:8080\"",
            ),
            ("/listen", json!("::1:8080"), "listen", "\"::1:8080\""),
            ("/listen", json!("127.0.0.1"), "listen", "\"127.0.0.1\""),
            ("/listen", json!([]), "listen", "empty"),
            ("/listen", json!(8080), "listen", "8080"),
            ("/listen", json!(["127.0.0.1:1", 2]), "listen[1]", "2"),
            (
                "/listen",
                json!(["127.0.0.1:1", "127.0.0.1:1"]),
                "listen[1]",
                "\"127.0.0.1:1\"",
            ),
            ("/driver", json!("kqueue"), "driver", "\"kqueue\""),
            ("/driver", json!(1), "driver", "1"),
            (
                "/upstreams/origin/servers",
                json!([]),
                "upstreams.origin.servers",
                "empty",
            ),
            (
                "/upstreams/origin/servers",
                json!("127.0.0.1:9090"),
                "upstreams.origin.servers",
                "\"127.0.0.1:9090\"",
            ),
            (
                "/upstreams/origin/servers",
                json!(["::1:9090"]),
                "upstreams.origin.servers[0]",
                "\"::1:9090\"",
            ),
            (
                "/upstreams/origin/servers",
                json!(["[::g]:9090"]),
                "upstreams.origin.servers[0]",
                "\"[::g]:9090\"",
            ),
            (
                "/upstreams/origin/servers",
                json!(["127.0.0.1:0"]),
                "upstreams.origin.servers[0]",
                "\"127.0.0.1:0\"",
            ),
            (
                "/upstreams/origin/servers",
                json!(["localhost:0"]),
                "upstreams.origin.servers[0]",
                "\"0\"",
            ),
            (
                "/upstreams/origin/servers",
                json!(["localhost:http"]),
                "upstreams.origin.servers[0]",
                "\"http\"",
            ),
            (
                "/upstreams/origin/servers",
                json!(["a b:80"]),
                "upstreams.origin.servers[0]",
                "\"a b\"",
            ),
            (
                "/upstreams/origin/servers",
                json!(["ringway-test.invalid:80"]),
                "upstreams.origin.servers[0]",
                "\"ringway-test.invalid\"",
            ),
            (
                "/upstreams/origin/servers",
                json!(["127.0.0.1:9090", "127.0.0.1:9090"]),
                "upstreams.origin.servers[1]",
                "\"127.0.0.1:9090\"",
            ),
            (
                "/upstreams/origin/max_idle_connections_per_server",
                json!(-1),
                "upstreams.origin.max_idle_connections_per_server",
                "-1",
            ),
            (
                "/upstreams/origin",
                json!([]),
                "upstreams.origin",
                "an array",
            ),
            ("/routes", json!([]), "routes", "empty"),
            ("/routes", json!({}), "routes", "an object"),
            ("/routes/0", json!("origin"), "routes[0]", "\"origin\""),
            (
                "/routes/0/path_prefix",
                json!("api"),
                "routes[0].path_prefix",
                "\"api\"",
            ),
            (
                "/routes/0/path_prefix",
                json!("/a b"),
                "routes[0].path_prefix",
                "\"/a b\"",
            ),
            (
                "/routes/0/path_prefix",
                json!("/a?b=1"),
                "routes[0].path_prefix",
                "\"/a?b=1\"",
            ),
            (
                "/routes/0/path_prefix",
                json!("/100%"),
                "routes[0].path_prefix",
                "\"/100%\"",
            ),
            (
                "/routes/0/upstream",
                json!("nope"),
                "routes[0].upstream",
                "\"nope\"",
            ),
            ("/routes/0/host", json!(""), "routes[0].host", "\"\""),
            (
                "/routes/0/host",
                json!("*.*.example.com"),
                "routes[0].host",
                "\"*.*.example.com\"",
            ),
            (
                "/routes/0/host",
                json!("*.[::1]"),
                "routes[0].host",
                "\"*.[::1]\"",
            ),
            ("/routes/0/host", json!("::1"), "routes[0].host", "\"::1\""),
            (
                "/routes/0/host",
                json!("[::1"),
                "routes[0].host",
                "\"[::1\"",
            ),
            (
                "/routes/0/host",
                json!("example.com:http"),
                "routes[0].host",
                "\"example.com:http\"",
            ),
            ("/routes/0/methods", json!([]), "routes[0].methods", "empty"),
            (
                "/routes/0/methods",
                json!(["GET", "GE T"]),
                "routes[0].methods[1]",
                "\"GE T\"",
            ),
            (
                "/routes/0/methods",
                json!(["GET", ""]),
                "routes[0].methods[1]",
                "\"\"",
            ),
            (
                "/routes/0/methods",
                json!(["GET", "GET"]),
                "routes[0].methods[1]",
                "\"GET\"",
            ),
            ("/timeouts/connect_ms", json!(0), "timeouts.connect_ms", "0"),
            (
                "/timeouts/client_idle_ms",
                json!(86_400_001),
                "timeouts.client_idle_ms",
                "86400001",
            ),
            (
                "/timeouts/upstream_read_ms",
                json!("60000"),
                "timeouts.upstream_read_ms",
                "\"60000\"",
            ),
            ("/timeouts", json!(5), "timeouts", "5"),
            (
                "/limits/max_header_count",
                json!(0),
                "limits.max_header_count",
                "0",
            ),
            (
                "/limits/max_header_count",
                json!(1001),
                "limits.max_header_count",
                "1001",
            ),
            (
                "/limits/max_request_head_bytes",
                json!(63),
                "limits.max_request_head_bytes",
                "63",
            ),
            (
                "/limits/max_request_body_bytes",
                json!(-5),
                "limits.max_request_body_bytes",
                "-5",
            ),
            (
                "/limits/max_chunk_extension_bytes",
                json!(2049),
                "limits.max_chunk_extension_bytes",
                "2049",
            ),
            (
                "/limits/max_connections_per_worker",
                json!(0),
                "limits.max_connections_per_worker",
                "0",
            ),
            (
                "/limits/max_request_head_bytes",
                json!(big_head),
                "limits.max_request_head_bytes",
                "65537",
            ),
            (
                "/limits/max_response_head_bytes",
                json!(big_head),
                "limits.max_response_head_bytes",
                "65537",
            ),
            (
                "/limits/max_trailer_bytes",
                json!(big_head),
                "limits.max_trailer_bytes",
                "65537",
            ),
            (
                "/buffers/size_bytes",
                json!(4095),
                "buffers.size_bytes",
                "4095",
            ),
            (
                "/buffers/size_bytes",
                json!(16 * 1024 * 1024 + 1),
                "buffers.size_bytes",
                "16777217",
            ),
            ("/buffers/per_worker", json!(3), "buffers.per_worker", "3"),
            ("/log/level", json!("verbose"), "log.level", "\"verbose\""),
            ("/log/level", json!("INFO"), "log.level", "\"INFO\""),
            ("/log", json!("info"), "log", "\"info\""),
        ];
        for (pointer, value, path, named) in cases {
            let json = minimal_with(&[(pointer, value.clone())]);
            let errors = parse_errors(&json);
            assert_eq!(
                paths(&errors),
                [path],
                "setting {pointer} to {value}: {errors:#?}"
            );
            assert!(
                errors[0].message.contains(named),
                "setting {pointer} to {value}: message does not name {named}: {errors:#?}"
            );
            assert!(
                !errors[0].fix.is_empty(),
                "setting {pointer} to {value}: empty fix"
            );
        }
    }

    #[test]
    fn cpu_id_error_names_the_bound() {
        let error = assert_single_error(
            &minimal_with(&[("/workers", json!([0, 9]))]),
            "workers[1]",
            "9",
        );
        assert!(error.message.contains("affinity mask"), "{error:#?}");
        assert!(error.fix.contains("0-3"), "{error:#?}");
    }

    #[test]
    fn cpu_ids_checked_against_mask() {
        // Under `taskset -c 2,4-5` the ids the process may use are not 0..count.
        let masked = SystemInfo {
            cpu_count: Ok(3),
            allowed_cpus: Ok(vec![2, 4, 5]),
        };
        let config = parse_with(&minimal_with(&[("/workers", json!([4, 2]))]), &masked).unwrap();
        assert_eq!(config.workers, Workers::Cores(vec![4, 2]));
        let errors = parse_with(&minimal_with(&[("/workers", json!([0]))]), &masked).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].fix, "use ids from the mask: 2,4-5");
    }

    #[test]
    fn missing_required_keys() {
        let errors = parse_errors("{}");
        assert_eq!(paths(&errors), ["workers", "listen", "upstreams", "routes"]);
        for error in &errors {
            assert!(error.message.contains("missing required key"), "{error:#?}");
        }

        let json = minimal_with(&[
            ("/routes", json!([{ "host": "a" }])),
            ("/upstreams/origin", json!({})),
        ]);
        let errors = parse_errors(&json);
        assert_eq!(
            paths(&errors),
            [
                "upstreams.origin.servers",
                "routes[0].path_prefix",
                "routes[0].upstream"
            ]
        );
    }

    #[test]
    fn top_level_must_be_object() {
        assert_single_error("[1, 2]", "", "an array");
    }

    #[test]
    fn empty_upstreams_rejected() {
        let errors = parse_errors(&minimal_with(&[("/upstreams", json!({}))]));
        assert_eq!(paths(&errors), ["upstreams", "routes[0].upstream"]);
    }

    #[test]
    fn invalid_upstream_name_is_quoted_in_path() {
        let json = minimal_with(&[
            (
                "/upstreams",
                json!({ "bad name": { "servers": ["127.0.0.1:1"] } }),
            ),
            ("/routes/0/upstream", json!("bad name")),
        ]);
        assert_single_error(&json, "upstreams[\"bad name\"]", "\"bad name\"");
    }

    #[test]
    fn route_to_broken_upstream_not_reported_twice() {
        let json = minimal_with(&[("/upstreams/origin/servers", json!([]))]);
        let errors = parse_errors(&json);
        assert_eq!(paths(&errors), ["upstreams.origin.servers"]);
    }

    #[test]
    fn several_errors_all_reported() {
        let json = minimal_with(&[
            ("/workers", json!(0)),
            ("/listen", json!(["127.0.0.1:80", "nowhere"])),
            (
                "/upstreams/origin/servers",
                json!(["127.0.0.1:9090", "localhost"]),
            ),
            ("/routes/0/upstream", json!("missing")),
            ("/timeouts/connect_ms", json!(0)),
            ("/timeouts/client_write_ms", json!(-1)),
            ("/buffers/per_worker", json!(1)),
            ("/log/level", json!("loud")),
        ]);
        let errors = parse_errors(&json);
        assert_eq!(
            paths(&errors),
            [
                "workers",
                "listen[1]",
                "upstreams.origin.servers[1]",
                "routes[0].upstream",
                "timeouts.connect_ms",
                "timeouts.client_write_ms",
                "buffers.per_worker",
                "log.level",
            ]
        );
    }

    #[test]
    fn unknown_keys_at_every_level() {
        let json = minimal_with(&[
            ("/worker", json!(2)),
            ("/upstreams/origin/server", json!(["127.0.0.1:1"])),
            ("/routes/0/prefix", json!("/")),
            ("/timeouts/connect", json!(100)),
            ("/limits/max_body_bytes", json!(1)),
            ("/buffers/count", json!(1)),
            ("/log/format", json!("json")),
        ]);
        let errors = parse_errors(&json);
        let mut found = paths(&errors);
        found.sort_unstable();
        assert_eq!(
            found,
            [
                "buffers.count",
                "limits.max_body_bytes",
                "log.format",
                "routes[0].prefix",
                "timeouts.connect",
                "upstreams.origin.server",
                "worker",
            ]
        );
        for error in &errors {
            assert!(error.message.starts_with("unknown key"), "{error:#?}");
        }

        let timeouts_error = errors
            .iter()
            .find(|error| error.path == "timeouts.connect")
            .unwrap();
        assert!(
            timeouts_error.message.contains("\"connect\""),
            "{timeouts_error:#?}"
        );
        assert!(
            timeouts_error.fix.contains(
                "connect_ms, client_head_ms, client_idle_ms, client_body_read_ms, client_write_ms, \
                 upstream_head_ms, upstream_read_ms, upstream_idle_ms, tunnel_idle_ms"
            ),
            "{timeouts_error:#?}"
        );
        let top_error = errors.iter().find(|error| error.path == "worker").unwrap();
        assert!(
            top_error
                .fix
                .contains("workers, listen, driver, relay, io_uring"),
            "{top_error:#?}"
        );
        let upstream_error = errors
            .iter()
            .find(|error| error.path == "upstreams.origin.server")
            .unwrap();
        assert!(
            upstream_error
                .fix
                .contains("servers, max_idle_connections_per_server"),
            "{upstream_error:#?}"
        );
        let route_error = errors
            .iter()
            .find(|error| error.path == "routes[0].prefix")
            .unwrap();
        assert!(
            route_error
                .fix
                .contains("path_prefix, path, host, methods, upstream, name"),
            "{route_error:#?}"
        );
    }

    #[test]
    fn duplicate_keys_rejected() {
        let json = r#"{ "workers": 1, "workers": 2, "listen": "127.0.0.1:8080",
            "upstreams": { "origin": { "servers": ["127.0.0.1:9090"] }, "origin": { "servers": ["127.0.0.1:9091"] } },
            "routes": [ { "path_prefix": "/", "upstream": "origin", "upstream": "origin" } ] }"#;
        let errors = parse_errors(json);
        assert_eq!(
            paths(&errors),
            ["workers", "upstreams.origin", "routes[0].upstream"]
        );
        for error in &errors {
            assert!(error.message.starts_with("duplicate key"), "{error:#?}");
        }
    }

    #[test]
    fn head_limits_must_fit_buffer() {
        let json = minimal_with(&[
            ("/limits/max_request_head_bytes", json!(131_072)),
            ("/limits/max_response_head_bytes", json!(131_072)),
        ]);
        let errors = parse_errors(&json);
        assert_eq!(
            paths(&errors),
            [
                "limits.max_request_head_bytes",
                "limits.max_response_head_bytes"
            ]
        );
        for error in &errors {
            assert!(error.message.contains("131072"), "{error:#?}");
            assert!(error.message.contains("65536"), "{error:#?}");
            assert!(error.fix.contains("buffers.size_bytes"), "{error:#?}");
        }

        let raised = minimal_with(&[
            ("/limits/max_request_head_bytes", json!(131_072)),
            ("/limits/max_response_head_bytes", json!(131_072)),
            ("/buffers/size_bytes", json!(131_072)),
        ]);
        let config = parse_ok(&raised);
        assert_eq!(config.limits.max_request_head_bytes, 131_072);
        assert_eq!(config.buffers.size_bytes, 131_072);

        let smaller_buffer = minimal_with(&[("/buffers/size_bytes", json!(16_384))]);
        assert_single_error(&smaller_buffer, "limits.max_response_head_bytes", "32768");
    }

    #[test]
    fn json_syntax_error_has_position() {
        let error = assert_single_error(
            "{\n  \"workers\": 1,\n  \"listen\": }",
            "",
            "line 3, column",
        );
        assert!(error.message.starts_with("invalid JSON"), "{error:#?}");
        assert_eq!(
            error.message.matches("line").count(),
            1,
            "position stated twice: {error:#?}"
        );
    }

    #[test]
    fn load_reports_unreadable_file() {
        let path = Path::new("/nonexistent/ringway-config-test.json");
        let errors = load(path).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "");
        assert!(
            errors[0]
                .message
                .contains("/nonexistent/ringway-config-test.json"),
            "{errors:#?}"
        );
        assert!(errors[0].message.contains("No such file"), "{errors:#?}");
    }

    #[test]
    fn load_reads_file_with_byte_order_mark() {
        let path =
            std::env::temp_dir().join(format!("ringway-config-test-{}.json", std::process::id()));
        std::fs::write(&path, format!("\u{feff}{MINIMAL}")).unwrap();
        let result = load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(result.unwrap().listen, vec![loopback(8080)]);
    }

    #[test]
    fn shipped_config_parses() {
        let config = parse(include_str!("../config/ringway.json")).unwrap();
        assert_eq!(config.workers, Workers::Count(1));
        assert_eq!(config.listen, vec![loopback(8080)]);
        assert_eq!(config.upstreams[0].name, "origin");
        assert_eq!(config.upstreams[0].servers[0].addr, loopback(9090));
    }

    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../config/README.md");
        let start = readme.find("```json\n").expect("README has a json block") + "```json\n".len();
        let length = readme[start..].find("```").expect("json block is closed");
        let config = parse_ok(&readme[start..start + length]);
        assert!(config.routes.len() > 1);
    }

    #[test]
    fn operations_keys_default() {
        let config = parse_ok(MINIMAL);
        assert_eq!(config.admin, None);
        assert_eq!(config.access_log, AccessLog::default());
        assert!(config.access_log.enabled);
        assert_eq!(config.access_log.path, None);
        assert_eq!(
            config.shutdown.grace,
            Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS)
        );
    }

    #[test]
    fn operations_keys_parse() {
        let config = parse_ok(&minimal_with(&[
            ("/admin", json!({"listen": "127.0.0.1:9901"})),
            (
                "/access_log",
                json!({"enabled": false, "path": "/var/log/a.log", "format": "json"}),
            ),
            ("/shutdown", json!({"grace_ms": 0})),
        ]));
        assert_eq!(
            config.admin,
            Some(Admin {
                listen: loopback(9901)
            })
        );
        assert!(!config.access_log.enabled);
        assert_eq!(
            config.access_log.path,
            Some(PathBuf::from("/var/log/a.log"))
        );
        assert_eq!(config.access_log.format, AccessLogFormat::Json);
        assert_eq!(config.shutdown.grace, Duration::ZERO);
        let stdout = parse_ok(&minimal_with(&[("/access_log", json!({"path": "-"}))]));
        assert_eq!(stdout.access_log.path, None);
    }

    #[test]
    fn operations_keys_errors() {
        let cases = [
            ("/admin", json!({}), "admin.listen", "missing"),
            (
                "/admin",
                json!({"listen": "localhost:1"}),
                "admin.listen",
                "localhost:1",
            ),
            (
                "/admin",
                json!({"listen": "127.0.0.1:8080"}),
                "admin.listen",
                "also in",
            ),
            (
                "/admin",
                json!({"listen": "127.0.0.1:1", "port": 2}),
                "admin.port",
                "port",
            ),
            (
                "/access_log",
                json!({"enabled": "yes"}),
                "access_log.enabled",
                "yes",
            ),
            (
                "/access_log",
                json!({"path": ""}),
                "access_log.path",
                "empty",
            ),
            ("/access_log", json!({"path": 1}), "access_log.path", "1"),
            (
                "/access_log",
                json!({"format": "xml"}),
                "access_log.format",
                "xml",
            ),
            (
                "/shutdown",
                json!({"grace_ms": -1}),
                "shutdown.grace_ms",
                "-1",
            ),
            ("/shutdown", json!({"grace": 1}), "shutdown.grace", "grace"),
        ];
        for (pointer, value, path, named) in cases {
            assert_single_error(&minimal_with(&[(pointer, value)]), path, named);
        }
    }

    #[test]
    fn admin_port_zero_may_repeat_listen() {
        let config = parse_ok(&minimal_with(&[
            ("/listen", json!("127.0.0.1:0")),
            ("/admin", json!({"listen": "127.0.0.1:0"})),
        ]));
        assert_eq!(config.admin.unwrap().listen.port(), 0);
    }
}
