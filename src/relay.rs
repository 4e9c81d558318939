//! Streaming one message body from a reader to a writer through pooled buffers.
//!
//! The body never lives anywhere but in the one or two buffers in flight. A relay reads a piece,
//! frames it for the other side and writes it. When the pool has a buffer to spare, it reads the
//! next piece into that buffer while the write is in progress.
//!
//! Buffer layout: pending bytes are `buf[pos..buf.len()]`. Reads land at `HEADROOM` so that a
//! chunk-size line fits in front of the data, and stop `TAILROOM` bytes before the end so that the
//! CRLF after the data and the last chunk fit behind it. Chunked input is decoded in place: the
//! data bytes are moved together, so re-encoding needs neither a copy into another buffer nor a
//! vectored write.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::buffer::{BufferPool, PoolBuf};
use crate::http::body::{
    ChunkedDecoder, ChunkedError, LAST_CHUNK, LengthDecoder, MAX_CHUNK_HEADER_BYTES,
    encode_chunk_header,
};
use crate::sys::{Pipe, StreamReader, StreamWriter, splice_nonblocking};
use crate::timer::IoTimer;

/// Bytes kept free in front of every read, room for the longest chunk-size line ringway writes
/// for a piece of at most 16 MiB (the largest allowed buffer): six hex digits and CRLF.
pub const HEADROOM: usize = 16;

/// Bytes kept free behind every read: the CRLF that ends chunk data plus the last chunk
/// "0\r\n\r\n".
pub const TAILROOM: usize = 8;

/// The framing of the body as its sender sends it.
pub enum Source {
    Length(LengthDecoder),
    Chunked(ChunkedDecoder),
    /// Ends when the sender closes the connection.
    Close,
}

/// The framing of the relayed body for its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Data bytes as they are (Content-Length, or delimited by close).
    Raw,
    /// Re-encoded as chunked, ending with the last chunk.
    Chunked,
}

/// Timeouts and limits of one relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayParams {
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Most data bytes the body may have; more is `RelayFailure::TooLarge`.
    pub max_bytes: u64,
}

/// The timers that bound a relay's reads from its source and writes to its sink.
pub struct RelayTimers<'t> {
    pub read: Pin<&'t mut IoTimer>,
    pub write: Pin<&'t mut IoTimer>,
}

/// The reason a relay stopped before the end of the body.
#[derive(Debug)]
pub enum RelayFailure {
    /// The sender closed before the end its framing announced.
    SourceClosed,
    SourceError(io::Error),
    SourceTimeout,
    /// The chunked framing was invalid.
    SourceInvalid(ChunkedError),
    /// The body passed `RelayParams::max_bytes`.
    TooLarge,
    SinkError(io::Error),
    SinkTimeout,
}

/// A finished relay: the buffer with any bytes that followed the body at `buf[pos..]`, and the
/// number of data bytes relayed.
pub struct Relayed {
    pub buf: PoolBuf,
    pub pos: usize,
    pub bytes: u64,
}

/// One framed piece of output inside a buffer.
struct Piece {
    /// Bytes to write, as a range of the buffer.
    start: usize,
    end: usize,
    /// Start of unconsumed input (bytes after the body, when `done`).
    consumed_end: usize,
    data_bytes: u64,
    done: bool,
    /// The last chunk did not fit behind the data and goes in a write of its own.
    last_chunk_separate: bool,
}

/// Relays the body framed by `source` from `reader` to `writer`, starting with the bytes already
/// in `buf[pos..]`.
pub async fn relay<R: AsyncReadRent, W: AsyncWriteRent>(
    reader: &mut R,
    writer: &mut W,
    mut buf: PoolBuf,
    mut pos: usize,
    mut source: Source,
    sink: Sink,
    pool: &BufferPool,
    params: RelayParams,
    mut timers: RelayTimers<'_>,
) -> Result<Relayed, RelayFailure> {
    let mut spare: Option<PoolBuf> = None;
    let mut total: u64 = 0;
    loop {
        let piece =
            frame_piece(&mut buf, pos, &mut source, sink).map_err(RelayFailure::SourceInvalid)?;
        total = total.saturating_add(piece.data_bytes);
        if total > params.max_bytes {
            return Err(RelayFailure::TooLarge);
        }
        if piece.done {
            if piece.end > piece.start {
                let timer = timers.write.as_mut();
                buf = write_range(
                    writer,
                    buf,
                    piece.start,
                    piece.end,
                    timer,
                    params.write_timeout,
                )
                .await?;
            }
            if piece.last_chunk_separate {
                write_static(
                    writer,
                    LAST_CHUNK,
                    timers.write.as_mut(),
                    params.write_timeout,
                )
                .await?;
            }
            return Ok(Relayed {
                buf,
                pos: piece.consumed_end,
                bytes: total,
            });
        }
        if spare.is_none() && piece.end > piece.start {
            spare = pool.try_acquire();
        }
        let read_result = match spare.take() {
            Some(next) if piece.end > piece.start => {
                let written_range = (buf, piece.start, piece.end);
                let (written, read) =
                    write_while_reading(writer, written_range, reader, next, params, &mut timers)
                        .await?;
                spare = Some(written);
                read
            }
            other => {
                spare = other;
                if piece.end > piece.start {
                    let timer = timers.write.as_mut();
                    buf = write_range(
                        writer,
                        buf,
                        piece.start,
                        piece.end,
                        timer,
                        params.write_timeout,
                    )
                    .await?;
                }
                read_piece(reader, buf, timers.read.as_mut(), params.read_timeout).await?
            }
        };
        let (n, next_buf) = read_result;
        buf = next_buf;
        pos = HEADROOM;
        if n == 0 {
            return finish_at_eof(writer, buf, &source, sink, total, params, timers.write).await;
        }
    }
}

/// Handles the sender's close: the end of a close-delimited body, an error for any other.
async fn finish_at_eof<W: AsyncWriteRent>(
    writer: &mut W,
    buf: PoolBuf,
    source: &Source,
    sink: Sink,
    total: u64,
    params: RelayParams,
    write_timer: Pin<&mut IoTimer>,
) -> Result<Relayed, RelayFailure> {
    if !matches!(source, Source::Close) {
        return Err(RelayFailure::SourceClosed);
    }
    if sink == Sink::Chunked {
        write_static(writer, LAST_CHUNK, write_timer, params.write_timeout).await?;
    }
    Ok(Relayed {
        pos: buf.len(),
        buf,
        bytes: total,
    })
}

/// Frames the pending bytes `buf[pos..]` as one piece of output, decoding chunked input in place.
fn frame_piece(
    buf: &mut PoolBuf,
    pos: usize,
    source: &mut Source,
    sink: Sink,
) -> Result<Piece, ChunkedError> {
    let len = buf.len();
    let (data_start, data_end, consumed_end, done) = match source {
        Source::Length(decoder) => {
            let take = decoder.take(len - pos);
            (pos, pos + take, pos + take, decoder.is_done())
        }
        Source::Close => (pos, len, len, false),
        Source::Chunked(decoder) => {
            let step = decoder.decode_in_place(&mut buf[pos..len])?;
            (pos, pos + step.written, pos + step.consumed, step.done)
        }
    };
    let data_bytes = (data_end - data_start) as u64;
    if sink == Sink::Raw {
        return Ok(Piece {
            start: data_start,
            end: data_end,
            consumed_end,
            data_bytes,
            done,
            last_chunk_separate: false,
        });
    }
    let mut start = data_start;
    let mut end = data_end;
    if data_end > data_start {
        let mut header = [0u8; MAX_CHUNK_HEADER_BYTES];
        let header_len = encode_chunk_header(data_bytes, &mut header);
        // Bytes in front of `pos` are either the read headroom or a head already forwarded.
        assert!(
            data_start >= header_len,
            "no room for a chunk header in front of the data"
        );
        start = data_start - header_len;
        buf[start..data_start].copy_from_slice(&header[..header_len]);
        write_at(buf, end, b"\r\n");
        end += 2;
    }
    // Behind the output, bytes up to `consumed_end` are spent framing, and when the body used
    // every pending byte the tail room is free too; bytes after the body must stay intact.
    let free_until = if consumed_end == len {
        buf.capacity()
    } else {
        consumed_end
    };
    let mut last_chunk_separate = false;
    if done {
        if end + LAST_CHUNK.len() <= free_until {
            write_at(buf, end, LAST_CHUNK);
            end += LAST_CHUNK.len();
        } else {
            last_chunk_separate = true;
        }
    }
    Ok(Piece {
        start,
        end,
        consumed_end,
        data_bytes,
        done,
        last_chunk_separate,
    })
}

/// Writes `bytes` at `at`, growing the length if needed; `at + bytes.len()` stays within the
/// capacity by the headroom and tailroom rules.
fn write_at(buf: &mut PoolBuf, at: usize, bytes: &[u8]) {
    let end = at + bytes.len();
    assert!(
        end <= buf.capacity(),
        "framing bytes past the buffer capacity"
    );
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[at..end].copy_from_slice(bytes);
}

/// Prepares an emptied buffer for the next read and returns the readable range.
fn read_window(buf: &mut PoolBuf) -> (usize, usize) {
    buf.truncate(HEADROOM);
    buf.ensure_len(HEADROOM);
    (HEADROOM, buf.capacity() - TAILROOM)
}

async fn read_piece<R: AsyncReadRent>(
    reader: &mut R,
    mut buf: PoolBuf,
    timer: Pin<&mut IoTimer>,
    limit: Duration,
) -> Result<(usize, PoolBuf), RelayFailure> {
    let (start, end) = read_window(&mut buf);
    match timer
        .limit(limit, reader.read(buf.slice_mut(start..end)))
        .await
    {
        Err(_) => Err(RelayFailure::SourceTimeout),
        Ok((Err(err), _)) => Err(RelayFailure::SourceError(err)),
        Ok((Ok(n), slice)) => Ok((n, slice.into_inner())),
    }
}

async fn write_range<W: AsyncWriteRent>(
    writer: &mut W,
    buf: PoolBuf,
    start: usize,
    end: usize,
    timer: Pin<&mut IoTimer>,
    limit: Duration,
) -> Result<PoolBuf, RelayFailure> {
    match timer
        .limit(limit, writer.write_all(buf.slice(start..end)))
        .await
    {
        Err(_) => Err(RelayFailure::SinkTimeout),
        Ok((Err(err), _)) => Err(RelayFailure::SinkError(err)),
        Ok((Ok(_), slice)) => Ok(slice.into_inner()),
    }
}

async fn write_static<W: AsyncWriteRent>(
    writer: &mut W,
    bytes: &'static [u8],
    timer: Pin<&mut IoTimer>,
    limit: Duration,
) -> Result<(), RelayFailure> {
    match timer.limit(limit, writer.write_all(bytes)).await {
        Err(_) => Err(RelayFailure::SinkTimeout),
        Ok((Err(err), _)) => Err(RelayFailure::SinkError(err)),
        Ok((Ok(_), _)) => Ok(()),
    }
}

/// Writes bytes `start..end` of `buf` while reading the next piece into `next`.
/// Returns the written buffer (now free) and the read count with the buffer read into. A failure
/// on either side returns at once. The other operation is then cancelled, and its buffer goes
/// back to the pool when the kernel is done with it.
async fn write_while_reading<R: AsyncReadRent, W: AsyncWriteRent>(
    writer: &mut W,
    (buf, start, end): (PoolBuf, usize, usize),
    reader: &mut R,
    mut next: PoolBuf,
    params: RelayParams,
    timers: &mut RelayTimers<'_>,
) -> Result<(PoolBuf, (usize, PoolBuf)), RelayFailure> {
    let write_timer = timers.write.as_mut();
    let write = pin!(write_range(
        writer,
        buf,
        start,
        end,
        write_timer,
        params.write_timeout
    ));
    read_window(&mut next);
    let read = pin!(read_piece(
        reader,
        next,
        timers.read.as_mut(),
        params.read_timeout
    ));
    both_or_first_error(write, read).await
}

/// Awaits both futures, but returns as soon as either fails.
async fn both_or_first_error<A, B, T, U, E>(
    mut first: std::pin::Pin<&mut A>,
    mut second: std::pin::Pin<&mut B>,
) -> Result<(T, U), E>
where
    A: Future<Output = Result<T, E>>,
    B: Future<Output = Result<U, E>>,
{
    monoio::select! {
        a = &mut first => {
            let a = a?;
            Ok((a, second.await?))
        },
        b = &mut second => {
            let b = b?;
            Ok((first.await?, b))
        },
    }
}

/// Relays a body framed by Content-Length or by the sender's close with splice(2): bytes move
/// from `reader`'s socket through `pipe` to `writer`'s socket inside the kernel. The bytes
/// already in `buf[pos..]` go first, with a plain write.
///
/// Each splice is tried at once and waits for readiness only when it would block, so a busy
/// transfer costs one system call per direction per pipe-full. (io_uring's own splice would hold
/// a kernel worker thread for every splice that waits.) Only `Source::Length` and `Source::Close`
/// are accepted; chunked bodies are re-encoded and take `relay`.
pub async fn splice_relay(
    reader: &mut StreamReader<'_>,
    writer: &mut StreamWriter<'_>,
    mut buf: PoolBuf,
    pos: usize,
    mut source: Source,
    pipe: &Pipe,
    pipe_bytes: usize,
    params: RelayParams,
    mut timers: RelayTimers<'_>,
) -> Result<Relayed, RelayFailure> {
    let piece =
        frame_piece(&mut buf, pos, &mut source, Sink::Raw).map_err(RelayFailure::SourceInvalid)?;
    let mut total = piece.data_bytes;
    if piece.end > piece.start {
        let timer = timers.write.as_mut();
        buf = write_range(
            writer,
            buf,
            piece.start,
            piece.end,
            timer,
            params.write_timeout,
        )
        .await?;
    }
    if piece.done {
        return Ok(Relayed {
            buf,
            pos: piece.consumed_end,
            bytes: total,
        });
    }
    let len = buf.len();
    let upstream = reader.watcher();
    loop {
        let want = match &source {
            Source::Length(decoder) => decoder.remaining().min(pipe_bytes as u64) as usize,
            _ => pipe_bytes,
        };
        if want == 0 {
            return Ok(Relayed {
                buf,
                pos: len,
                bytes: total,
            });
        }
        let moved = loop {
            match splice_nonblocking(upstream.raw_fd(), pipe.write_fd(), want) {
                Ok(moved) => break moved,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let timer = timers.read.as_mut();
                    match timer.limit(params.read_timeout, upstream.readable()).await {
                        Err(_) => return Err(RelayFailure::SourceTimeout),
                        Ok(Err(err)) => return Err(RelayFailure::SourceError(err)),
                        Ok(Ok(())) => {}
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(RelayFailure::SourceError(err)),
            }
        };
        if moved == 0 {
            return match source {
                Source::Close => Ok(Relayed {
                    buf,
                    pos: len,
                    bytes: total,
                }),
                _ => Err(RelayFailure::SourceClosed),
            };
        }
        drain_pipe(
            pipe,
            writer,
            moved,
            timers.write.as_mut(),
            params.write_timeout,
        )
        .await?;
        total += moved as u64;
        if let Source::Length(decoder) = &mut source {
            decoder.take(moved);
        }
    }
}

/// Writes `len` bytes that sit in `pipe` to `writer`'s socket.
async fn drain_pipe(
    pipe: &Pipe,
    writer: &StreamWriter<'_>,
    mut len: usize,
    mut timer: Pin<&mut IoTimer>,
    limit: Duration,
) -> Result<(), RelayFailure> {
    while len > 0 {
        match splice_nonblocking(pipe.read_fd(), writer.raw_fd(), len) {
            Ok(0) => return Err(RelayFailure::SinkError(io::ErrorKind::WriteZero.into())),
            Ok(moved) => len -= moved,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                match timer.as_mut().limit(limit, writer.writable()).await {
                    Err(_) => return Err(RelayFailure::SinkTimeout),
                    Ok(Err(err)) => return Err(RelayFailure::SinkError(err)),
                    Ok(Ok(())) => {}
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(RelayFailure::SinkError(err)),
        }
    }
    Ok(())
}
