//! Byte tunnels for upgraded connections: after a 101 Switching Protocols, the client and the
//! upstream talk a protocol ringway does not parse (WebSocket, say), so their bytes are copied
//! both ways until either side closes or the tunnel goes quiet.
//!
//! A direction holds a pooled buffer only while it moves data: it waits for readiness with no
//! buffer, takes one for the read and the write that follows, and gives it back. A thousand
//! idle WebSockets therefore hold no buffer at all.

use std::cell::Cell;
use std::io;
use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::buffer::{BufferPool, PoolBuf};
use crate::error::Side;
use crate::relay::RelayTimers;
use crate::sys::{StreamReader, StreamWriter};
use crate::timer::IoTimer;

/// Bytes that arrived behind a head and already belong to the tunnel: `buf[start..]`.
pub struct Early {
    pub buf: PoolBuf,
    pub start: usize,
}

/// Settings of one tunnel.
#[derive(Clone, Copy)]
pub struct TunnelParams {
    /// Maximum silence in both directions together before the tunnel closes.
    pub idle_timeout: Duration,
    /// Maximum time one write may stay blocked.
    pub write_timeout: Duration,
}

/// The end of a tunnel: its reason and the bytes each direction carried.
#[derive(Debug)]
pub struct TunnelEnd {
    pub client_to_upstream: u64,
    pub upstream_to_client: u64,
    pub reason: TunnelEndReason,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TunnelEndReason {
    /// Both sides closed their sending halves.
    Closed,
    /// No byte moved in either direction within the idle timeout.
    Idle,
    /// A read or write failed or a write timed out, on the named side.
    Failed { side: Side, error: String },
}

/// Copies bytes between the client and the upstream until both have closed, one fails, or
/// the tunnel stays idle for `params.idle_timeout`. A side that closes its sending half has
/// that close passed on (a TCP half-close), and the other direction goes on. Each direction
/// waits and writes under the timers of its source and sink.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client_read: &mut StreamReader<'_>,
    client_write: &mut StreamWriter<'_>,
    upstream_read: &mut StreamReader<'_>,
    upstream_write: &mut StreamWriter<'_>,
    from_client: Option<Early>,
    from_upstream: Option<Early>,
    pool: &BufferPool,
    params: TunnelParams,
    up_timers: RelayTimers<'_>,
    down_timers: RelayTimers<'_>,
) -> TunnelEnd {
    let last_activity = Cell::new(Instant::now());
    let mut up = pin!(pump(
        client_read,
        upstream_write,
        from_client,
        pool,
        params,
        &last_activity,
        Side::Client,
        up_timers,
    ));
    let mut down = pin!(pump(
        upstream_read,
        client_write,
        from_upstream,
        pool,
        params,
        &last_activity,
        Side::Upstream,
        down_timers,
    ));
    let (first, up_finished) = monoio::select! {
        result = &mut up => (result, true),
        result = &mut down => (result, false),
    };
    let (up_result, down_result) = match first {
        Ok(_) if up_finished => (first, down.await),
        Ok(_) => {
            let up_result = up.await;
            (up_result, first)
        }
        // One direction failed or idled out, which ends the other too.
        Err(_) if up_finished => (first, Ok(0)),
        Err(_) => (Ok(0), first),
    };
    let mut end = TunnelEnd {
        client_to_upstream: 0,
        upstream_to_client: 0,
        reason: TunnelEndReason::Closed,
    };
    for (result, bytes) in [
        (up_result, &mut end.client_to_upstream),
        (down_result, &mut end.upstream_to_client),
    ] {
        match result {
            Ok(count) => *bytes = count,
            Err(PumpError { bytes: count, reason }) => {
                *bytes = count;
                if end.reason == TunnelEndReason::Closed {
                    end.reason = reason;
                }
            }
        }
    }
    end
}

struct PumpError {
    bytes: u64,
    reason: TunnelEndReason,
}

/// Copies one direction until its source closes; returns the bytes copied.
#[allow(clippy::too_many_arguments)]
async fn pump(
    from: &mut StreamReader<'_>,
    to: &mut StreamWriter<'_>,
    early: Option<Early>,
    pool: &BufferPool,
    params: TunnelParams,
    last_activity: &Cell<Instant>,
    source: Side,
    mut timers: RelayTimers<'_>,
) -> Result<u64, PumpError> {
    let sink = match source {
        Side::Client => Side::Upstream,
        Side::Upstream | Side::Internal => Side::Client,
    };
    let mut bytes = 0u64;
    if let Some(Early { buf, start }) = early {
        let len = buf.len();
        if start < len {
            bytes += (len - start) as u64;
            write_all(
                to,
                buf.slice(start..len),
                timers.write.as_mut(),
                params.write_timeout,
            )
            .await
            .map_err(|error| failed(bytes, sink, error))?;
            last_activity.set(Instant::now());
        }
    }
    let watch = from.watcher();
    loop {
        // Wait for bytes without a buffer. The timeout restarts while the other direction
        // is busy, so a one-way stream (server push, say) is not cut as idle.
        loop {
            let deadline = last_activity.get() + params.idle_timeout;
            match timers.read.as_mut().until(deadline, watch.readable()).await {
                Ok(Ok(())) => break,
                Ok(Err(error)) => return Err(failed(bytes, source, error)),
                Err(_) if last_activity.get() + params.idle_timeout <= Instant::now() => {
                    return Err(PumpError {
                        bytes,
                        reason: TunnelEndReason::Idle,
                    });
                }
                Err(_) => {}
            }
        }
        let [mut buf] = pool.acquire::<1>().await;
        buf.clear();
        let capacity = buf.capacity();
        let (result, slice) = from.read(buf.slice_mut(0..capacity)).await;
        let buf = slice.into_inner();
        let count = match result {
            Ok(0) => {
                // The source finished sending: pass the half-close on and stop this direction.
                let _ = to.shutdown().await;
                return Ok(bytes);
            }
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(failed(bytes, source, error)),
        };
        last_activity.set(Instant::now());
        bytes += count as u64;
        write_all(
            to,
            buf.slice(0..count),
            timers.write.as_mut(),
            params.write_timeout,
        )
        .await
        .map_err(|error| failed(bytes, sink, error))?;
        last_activity.set(Instant::now());
    }
}

fn failed(bytes: u64, side: Side, error: io::Error) -> PumpError {
    PumpError {
        bytes,
        reason: TunnelEndReason::Failed {
            side,
            error: error.to_string(),
        },
    }
}

async fn write_all<T: IoBuf + 'static>(
    to: &mut StreamWriter<'_>,
    bytes: T,
    timer: Pin<&mut IoTimer>,
    limit: Duration,
) -> io::Result<()> {
    match timer.limit(limit, to.write_all(bytes)).await {
        Ok((result, _)) => result.map(|_| ()),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("a write stayed blocked for {} ms", limit.as_millis()),
        )),
    }
}
