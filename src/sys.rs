//! The only module with `unsafe` code: buffer traits for monoio, a stream split that does not
//! allocate, and a few libc calls.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use crate::buffer::PoolBuf;

// SAFETY: the pointer and length come from the inner `Vec<u8>`, which the `PoolBuf` owns and
// never reallocates while an operation holds it (the operation owns the `PoolBuf`). `bytes_init`
// is the vector's length, so every byte below it is initialised.
unsafe impl IoBuf for PoolBuf {
    fn read_ptr(&self) -> *const u8 {
        self.vec.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.vec.len()
    }
}

// SAFETY: `write_ptr` and `bytes_total` describe the vector's allocation (`capacity()` bytes), which
// stays put while the operation owns the buffer. The kernel writes `init_len` bytes from the start
// of the region it was given before `set_init` is called, and callers that read at an offset first
// make every byte below the offset initialised (`PoolBuf::ensure_len`), so `set_len` never exposes
// uninitialised memory.
unsafe impl IoBufMut for PoolBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.vec.as_mut_ptr()
    }

    fn bytes_total(&mut self) -> usize {
        self.vec.capacity()
    }

    unsafe fn set_init(&mut self, init_len: usize) {
        debug_assert!(init_len <= self.vec.capacity());
        // SAFETY: see the impl comment; `init_len` never exceeds the capacity.
        unsafe { self.vec.set_len(init_len) }
    }
}

/// Returns whether an idle connection can no longer carry a request: the peer closed or reset it,
/// or it sent bytes nobody asked for. A non-blocking one-byte `MSG_PEEK` answers without consuming
/// anything, which catches most upstream keep-alive closes before a request is written.
pub fn idle_connection_unusable(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call, and the
    // buffer is one valid, writable byte.
    let n = unsafe {
        libc::recv(fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return !matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR));
    }
    true
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it starts afterwards,
/// so that they queue for `wait_for_signal` instead of killing a worker mid-write.
pub fn block_signals() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: `set` is an initialised signal set and a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits for one of the signals blocked by `block_signals` and returns its number.
pub fn wait_for_signal() -> io::Result<i32> {
    let set = signal_set();
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is initialised and `signal` is a valid place for the result.
    let rc = unsafe { libc::sigwait(&set, &mut signal) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(signal)
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset fully initialises the set before sigaddset reads it; both only fail on
    // invalid signal numbers, which these constants are not.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        let mut set = set.assume_init();
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Returns the name of a signal number for the log.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// Raises the soft limit on open file descriptors to the hard limit, as nginx's
/// `worker_rlimit_nofile` does, because every connection costs one descriptor on each side and
/// the usual soft limit of 1024 would cap a worker at a few hundred clients. Returns the
/// (old, new) soft limits.
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit whose soft value does not exceed its hard value.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((old as u64, limit.rlim_cur as u64))
}

/// The reading side of a `TcpStream` while its writing side is in use elsewhere.
pub struct StreamReader<'a> {
    stream: NonNull<TcpStream>,
    _borrow: PhantomData<&'a mut TcpStream>,
}

/// The writing side of a `TcpStream` while its reading side is in use elsewhere.
pub struct StreamWriter<'a> {
    stream: NonNull<TcpStream>,
    _borrow: PhantomData<&'a mut TcpStream>,
}

/// Splits a stream into a reader and a writer that may run operations at the same time, for as
/// long as the stream is borrowed. Unlike monoio's `into_split`, it allocates nothing, which
/// keeps the request path free of per-request allocations.
pub fn split_stream(stream: &mut TcpStream) -> (StreamReader<'_>, StreamWriter<'_>) {
    let stream = NonNull::from(stream);
    (StreamReader { stream, _borrow: PhantomData }, StreamWriter { stream, _borrow: PhantomData })
}

impl AsyncReadRent for StreamReader<'_> {
    fn read<T: IoBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        // SAFETY: the pointer comes from a `&mut TcpStream` borrowed for this reader's lifetime.
        // `TcpStream` implements monoio's `Split`: its read and write operations are independent
        // (each owns a clone of the shared descriptor), so a read may run while the writer runs a
        // write. This is the access monoio's own `OwnedReadHalf` makes.
        unsafe { (*self.stream.as_ptr()).read(buf) }
    }

    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        // SAFETY: as in `read`.
        unsafe { (*self.stream.as_ptr()).readv(buf) }
    }
}

impl AsyncWriteRent for StreamWriter<'_> {
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        // SAFETY: as in `StreamReader::read`, with the roles swapped.
        unsafe { (*self.stream.as_ptr()).write(buf) }
    }

    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        // SAFETY: as in `StreamReader::read`, with the roles swapped.
        unsafe { (*self.stream.as_ptr()).writev(buf) }
    }

    fn flush(&mut self) -> impl Future<Output = io::Result<()>> {
        // SAFETY: as in `StreamReader::read`, with the roles swapped.
        unsafe { (*self.stream.as_ptr()).flush() }
    }

    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        // SAFETY: as in `StreamReader::read`, with the roles swapped.
        unsafe { (*self.stream.as_ptr()).shutdown() }
    }
}
