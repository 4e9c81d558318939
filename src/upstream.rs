//! Upstream connections for one worker: connecting and the keep-alive pool of idle connections.
//!
//! Everything here belongs to one worker thread, so it needs no locks. Idle connections are kept
//! last-in first-out (the most recently used one is the least likely to have been closed by the
//! upstream), checked for a close before reuse, and reaped after `timeouts.upstream_idle_ms`.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::config::Config;
use crate::error::{Kind, ProxyError};
use crate::sys::idle_connection_unusable;

/// A connection to one upstream server.
pub struct UpstreamConnection {
    pub stream: TcpStream,
    pub server: ServerId,
    /// It carried an earlier request, so a failure before any response byte may mean the
    /// upstream closed it while idle, and the request may be sent again on a new connection.
    pub reused: bool,
}

/// A server of an upstream group: (group index, server index) in one generation's config, and
/// the index of the server's idle pool in [`Upstreams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerId {
    pub group: usize,
    pub server: usize,
    pub pool: usize,
}

struct IdleConnection {
    stream: TcpStream,
    since: Instant,
}

/// The idle connections to one server address.
struct ServerPool {
    addr: SocketAddr,
    max_idle: usize,
    /// Newest last.
    idle: Vec<IdleConnection>,
}

/// The idle upstream connections of one worker, one pool per distinct server address.
///
/// Pools are keyed by address rather than by (group, server) so that a reload keeps the idle
/// connections of every server that the new configuration still names. A request that started
/// before a reload carries a `ServerId` of the old generation, so `take_idle` and `put_idle`
/// check the pool's address and look the address up again when it moved.
pub struct Upstreams {
    pools: Vec<ServerPool>,
    idle_timeout: Duration,
}

impl Upstreams {
    pub fn new(config: &Config) -> Upstreams {
        let mut upstreams = Upstreams {
            pools: Vec::new(),
            idle_timeout: config.timeouts.upstream_idle,
        };
        upstreams.reconfigure(config);
        upstreams
    }

    /// Rebuilds the pools for `config`: pools of addresses still configured keep their idle
    /// connections, the others are closed. Returns how many idle connections were closed.
    pub fn reconfigure(&mut self, config: &Config) -> usize {
        let mut old = std::mem::take(&mut self.pools);
        for upstream in &config.upstreams {
            for server in &upstream.servers {
                let max_idle = upstream.max_idle_connections_per_server;
                // An address in two groups shares one pool, sized for the larger group setting.
                if let Some(pool) = self.pools.iter_mut().find(|pool| pool.addr == server.addr) {
                    pool.max_idle = pool.max_idle.max(max_idle);
                    continue;
                }
                let idle = match old.iter().position(|pool| pool.addr == server.addr) {
                    Some(index) => old.swap_remove(index).idle,
                    None => Vec::new(),
                };
                self.pools.push(ServerPool {
                    addr: server.addr,
                    max_idle,
                    idle,
                });
            }
        }
        for pool in &mut self.pools {
            pool.idle.truncate(pool.max_idle);
        }
        self.idle_timeout = config.timeouts.upstream_idle;
        old.iter().map(|pool| pool.idle.len()).sum()
    }

    /// Returns the index of the pool for `addr`.
    pub fn pool_index(&self, addr: SocketAddr) -> Option<usize> {
        self.pools.iter().position(|pool| pool.addr == addr)
    }

    /// Returns the pool of `server` at `addr`, found again by address when a reload moved it.
    fn pool_mut(&mut self, server: ServerId, addr: SocketAddr) -> Option<&mut ServerPool> {
        let index = match self.pools.get(server.pool) {
            Some(pool) if pool.addr == addr => server.pool,
            _ => self.pool_index(addr)?,
        };
        self.pools.get_mut(index)
    }

    /// Takes the newest usable idle connection to `server` at `addr`, closing stale ones on
    /// the way.
    pub fn take_idle(&mut self, server: ServerId, addr: SocketAddr) -> Option<UpstreamConnection> {
        let idle_timeout = self.idle_timeout;
        let idle = &mut self.pool_mut(server, addr)?.idle;
        let now = Instant::now();
        while let Some(candidate) = idle.pop() {
            if now.duration_since(candidate.since) >= idle_timeout {
                continue;
            }
            if idle_connection_unusable(candidate.stream.as_raw_fd()) {
                continue;
            }
            return Some(UpstreamConnection {
                stream: candidate.stream,
                server,
                reused: true,
            });
        }
        None
    }

    /// Keeps a connection to `addr` whose last exchange ended cleanly, if its pool has room.
    /// A connection to an address that a reload removed is closed.
    pub fn put_idle(&mut self, connection: UpstreamConnection, addr: SocketAddr) {
        let Some(pool) = self.pool_mut(connection.server, addr) else {
            return;
        };
        if pool.idle.len() < pool.max_idle {
            pool.idle.push(IdleConnection {
                stream: connection.stream,
                since: Instant::now(),
            });
        }
    }

    /// Returns the number of idle connections in every pool.
    pub fn idle_count(&self) -> usize {
        self.pools.iter().map(|pool| pool.idle.len()).sum()
    }

    /// Closes idle connections older than the idle timeout; returns how many it closed.
    pub fn reap(&mut self) -> usize {
        let now = Instant::now();
        let timeout = self.idle_timeout;
        let mut closed = 0;
        for pool in &mut self.pools {
            let before = pool.idle.len();
            pool.idle
                .retain(|connection| now.duration_since(connection.since) < timeout);
            closed += before - pool.idle.len();
        }
        closed
    }
}

/// Opens a new connection to `addr` within `limit`, with Nagle's algorithm off so that small
/// heads and chunks leave at once.
pub async fn connect(
    addr: SocketAddr,
    server: ServerId,
    limit: Duration,
) -> Result<UpstreamConnection, ProxyError> {
    match monoio::time::timeout(limit, TcpStream::connect_addr(addr)).await {
        Err(_) => Err(ProxyError::new(
            Kind::ConnectTimeout,
            format!(
                "connecting to {addr} timed out after {} ms; check the server or raise timeouts.connect_ms",
                limit.as_millis()
            ),
        )),
        Ok(Err(err)) => Err(ProxyError::new(
            Kind::ConnectFailed,
            format!("connecting to {addr} failed: {err}"),
        )),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(UpstreamConnection {
                stream,
                server,
                reused: false,
            })
        }
    }
}
