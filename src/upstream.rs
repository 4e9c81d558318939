//! Upstream servers for one worker: round-robin choice and a keep-alive pool of idle connections.
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

/// A server of an upstream group: (group index, server index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerId {
    pub group: usize,
    pub server: usize,
}

struct IdleConnection {
    stream: TcpStream,
    since: Instant,
}

struct Group {
    next: usize,
    max_idle: usize,
    /// Idle connections per server, newest last.
    idle: Vec<Vec<IdleConnection>>,
}

/// The upstream state of one worker.
pub struct Upstreams {
    groups: Vec<Group>,
    idle_timeout: Duration,
}

impl Upstreams {
    pub fn new(config: &Config) -> Upstreams {
        let groups = config
            .upstreams
            .iter()
            .map(|upstream| Group {
                next: 0,
                max_idle: upstream.max_idle_connections_per_server,
                idle: upstream.servers.iter().map(|_| Vec::new()).collect(),
            })
            .collect();
        Upstreams {
            groups,
            idle_timeout: config.timeouts.upstream_idle,
        }
    }

    /// Picks the next server of a group in round-robin order.
    pub fn pick(&mut self, group: usize) -> ServerId {
        let state = &mut self.groups[group];
        let server = state.next % state.idle.len();
        state.next = state.next.wrapping_add(1);
        ServerId { group, server }
    }

    /// Takes the newest usable idle connection to `server`, closing stale ones on the way.
    pub fn take_idle(&mut self, server: ServerId) -> Option<UpstreamConnection> {
        let idle = &mut self.groups[server.group].idle[server.server];
        let now = Instant::now();
        while let Some(candidate) = idle.pop() {
            if now.duration_since(candidate.since) >= self.idle_timeout {
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

    /// Keeps a connection whose last exchange ended cleanly, if the pool has room.
    pub fn put_idle(&mut self, connection: UpstreamConnection) {
        let group = &mut self.groups[connection.server.group];
        let idle = &mut group.idle[connection.server.server];
        if idle.len() < group.max_idle {
            idle.push(IdleConnection {
                stream: connection.stream,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections older than the idle timeout; returns how many it closed.
    pub fn reap(&mut self) -> usize {
        let now = Instant::now();
        let timeout = self.idle_timeout;
        let mut closed = 0;
        for group in &mut self.groups {
            for idle in &mut group.idle {
                let before = idle.len();
                idle.retain(|connection| now.duration_since(connection.since) < timeout);
                closed += before - idle.len();
            }
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
