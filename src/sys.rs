//! The only module with `unsafe` code: buffer traits for monoio, a stream split that does not
//! allocate, and a few libc calls.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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

/// The state of a connection as a non-blocking peek reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Open, with nothing to read.
    Quiet,
    /// Bytes are waiting to be read.
    Data,
    /// The peer closed or reset the connection.
    Closed,
}

/// Peeks at a connection with a non-blocking one-byte `MSG_PEEK`, which consumes nothing.
pub fn peek_peer(fd: RawFd) -> PeerState {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call, and the
    // buffer is one valid, writable byte.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => PeerState::Closed,
        n if n > 0 => PeerState::Data,
        _ => match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => PeerState::Quiet,
            _ => PeerState::Closed,
        },
    }
}

/// Returns whether an idle connection can no longer carry a request: the peer closed or reset
/// it, or it sent bytes that no request asked for. This catches most upstream keep-alive
/// closes before a request is written.
pub fn idle_connection_unusable(fd: RawFd) -> bool {
    peek_peer(fd) != PeerState::Quiet
}

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR1 in the calling thread and every thread it starts afterwards,
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

/// Waits up to `limit` for one of the signals blocked by `block_signals`; returns its number, or
/// `None` when none arrived in time.
pub fn wait_for_signal_timeout(limit: std::time::Duration) -> io::Result<Option<i32>> {
    let set = signal_set();
    let timeout = libc::timespec {
        tv_sec: limit.as_secs() as libc::time_t,
        tv_nsec: limit.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `timeout` are initialised, and a null info pointer is allowed.
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
    if signal >= 0 {
        return Ok(Some(signal));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => Err(err),
    }
}

/// Shuts both directions of a socket down. On a listening socket this fails the pending
/// accept. On a connection it wakes a pending read with an end of stream and sends a FIN.
pub fn shutdown_socket(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fd` is an open socket owned by the caller; shutdown does not close it.
    if unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } != 0 {
        return Err(io::Error::last_os_error());
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
        libc::sigaddset(&mut set, libc::SIGUSR1);
        set
    }
}

/// Returns the name of a signal number for the log.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "signal",
    }
}

/// Raises the soft limit on open file descriptors to the hard limit, as nginx's
/// `worker_rlimit_nofile` does, because every connection costs one descriptor on each side and
/// the usual soft limit of 1024 would cap a worker at a few hundred clients. Returns the
/// (old, new) soft limits.
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
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
    (
        StreamReader {
            stream,
            _borrow: PhantomData,
        },
        StreamWriter {
            stream,
            _borrow: PhantomData,
        },
    )
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

impl<'a> StreamReader<'a> {
    /// Returns a handle that can wait for readiness and peek while this reader is lent out.
    pub fn watcher(&self) -> StreamWatcher<'a> {
        StreamWatcher {
            stream: self.stream,
            _borrow: PhantomData,
        }
    }
}

/// A handle on a `TcpStream`'s reading side that only waits for readiness and peeks, so it can
/// watch for a close while no read is in progress.
pub struct StreamWatcher<'a> {
    stream: NonNull<TcpStream>,
    _borrow: PhantomData<&'a mut TcpStream>,
}

impl StreamWatcher<'_> {
    pub fn raw_fd(&self) -> RawFd {
        // SAFETY: see `StreamReader::read`; only the descriptor number is read.
        unsafe { (*self.stream.as_ptr()).as_raw_fd() }
    }

    /// Waits until the stream has bytes to read or an end of stream to report.
    pub async fn readable(&self) -> io::Result<()> {
        // SAFETY: see `StreamReader::read`; a readiness wait only uses the shared descriptor.
        unsafe { (*self.stream.as_ptr()).readable(false).await }
    }
}

impl StreamWriter<'_> {
    pub fn raw_fd(&self) -> RawFd {
        // SAFETY: see `StreamReader::read`; only the descriptor number is read.
        unsafe { (*self.stream.as_ptr()).as_raw_fd() }
    }

    /// Waits until the stream can take more bytes.
    pub async fn writable(&self) -> io::Result<()> {
        // SAFETY: see `StreamReader::read`; a readiness wait only uses the shared descriptor.
        unsafe { (*self.stream.as_ptr()).writable(false).await }
    }
}

/// A non-blocking pipe for splice(2).
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// Creates a pipe and requests a kernel buffer of `size` bytes (it may round up, or keep
    /// its default of 64 KiB where `fs.pipe-max-size` is lower).
    pub fn new(size: usize) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by no other code.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ takes an int argument on an open pipe descriptor. A failure
        // leaves the default size, which works too.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
        Ok(Pipe { read, write })
    }

    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }
}

/// Moves up to `len` bytes from `from` to `to` with splice(2), one of which must be a pipe,
/// without blocking: `WouldBlock` means the caller waits for readiness and tries again.
pub fn splice_nonblocking(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call and the offsets are null,
    // as splice requires for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sets the accept backlog of a socket that already listens (Linux applies a second listen(2)
/// to the queue length), for listeners made by `std`, whose backlog is fixed at 128.
pub fn set_listen_backlog(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: `fd` is an open listening socket owned by the caller.
    if unsafe { libc::listen(fd, backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `bytes` on a socket without waiting, as far as its send buffer takes them, and
/// returns how many went. For a last word on a connection about to be closed.
pub fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `fd` is an open socket owned by the caller and `bytes` is a valid slice.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Returns the CPUs this process may run on (its affinity mask), in increasing order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let cpus = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the number of CPUs a cpu_set_t holds.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    Ok(cpus)
}
