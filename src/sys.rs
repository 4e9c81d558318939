//! The only module with `unsafe` code: buffer traits for monoio, a stream split that does not
//! allocate, descriptor passing (SCM_RIGHTS) for the listener hand-off, and a few libc calls.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
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

/// Turns transparent huge pages off for the whole process (`PR_SET_THP_DISABLE`, Linux 3.15 and
/// later). Page faults after the call map 4 KiB pages, also in mappings made before it, but huge
/// pages that are already mapped stay.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and reads no memory of the caller.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Hands the calling thread's empty mimalloc pages back to the arena, and gives arena memory that
/// has stayed free for mimalloc's purge delay (1 s by default in mimalloc 3.3) back to the kernel
/// with `MADV_DONTNEED`. mimalloc does this by itself only while the thread keeps allocating, so
/// without this call a worker that goes quiet after a burst keeps the burst's pages resident. On
/// a thread that has never allocated through mimalloc, as under another global allocator, the
/// call returns at once.
pub fn release_freed_memory() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(false) }
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

/// Maximum number of descriptors Linux accepts in one SCM_RIGHTS message (`SCM_MAX_FD` in
/// include/net/scm.h); more fail with EINVAL, so larger sets go in several messages.
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Sends `payload` with `fds` attached as SCM_RIGHTS on a Unix stream socket. `payload` must
/// not be empty, because ancillary data travels with at least one byte. The receiver gets
/// new descriptors for the same open files; the caller's descriptors stay open.
pub fn send_with_fds(socket: &UnixStream, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(
        !payload.is_empty(),
        "SCM_RIGHTS needs at least one payload byte"
    );
    assert!(
        fds.len() <= MAX_FDS_PER_MESSAGE,
        "too many descriptors for one message"
    );
    let fds_bytes = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fds_bytes) } as usize;
    // u64 elements give the buffer the alignment of `cmsghdr` (at most 8 on Linux).
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null name, no iovecs, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg_control` points to `space` writable, aligned bytes, which is room for one
        // header with `fds_bytes` of data, so CMSG_FIRSTHDR is non-null and CMSG_DATA has room
        // for every descriptor. `copy_nonoverlapping` writes unaligned-safe bytes.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(fds_bytes) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(header),
                fds_bytes as usize,
            );
        }
    }
    // SAFETY: `msg` points to a live iovec over `payload` and, when set, to the control buffer.
    // Both outlive the call, and the socket is open while borrowed.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if (sent as usize) < payload.len() {
        // Unix stream sockets send a message this small whole or not at all; report rather
        // than resend, because the descriptors went with the first byte.
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "sendmsg sent part of a hand-off message",
        ));
    }
    Ok(())
}

/// Receives up to `payload.len()` bytes and up to `max_fds` SCM_RIGHTS descriptors, which are
/// marked close-on-exec. Returns the byte count (0 at end of stream) and the descriptors.
/// Fails when the sender attached more descriptors than `max_fds`, since the kernel then
/// drops the rest.
pub fn recv_with_fds(
    socket: &UnixStream,
    payload: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let fds_bytes = (max_fds * std::mem::size_of::<RawFd>()) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fds_bytes) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null name, no iovecs, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points to a writable iovec over `payload` and a writable, aligned control
    // buffer of `space` bytes. Both live for the call, and the socket is open while borrowed.
    let received = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: after a successful recvmsg the kernel has filled `msg_controllen` bytes of the
    // control buffer with well-formed headers, which CMSG_FIRSTHDR/CMSG_NXTHDR walk within
    // bounds. Each SCM_RIGHTS header carries `(cmsg_len - CMSG_LEN(0)) / 4` descriptors that
    // are new in this process and owned by no other code, so wrapping them in `OwnedFd` is
    // sound. They are read with `read_unaligned` because CMSG_DATA need not be aligned for i32.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                let count = ((*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for index in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(index).read_unaligned()));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the peer sent more than {max_fds} descriptors in one message"),
        ));
    }
    Ok((received as usize, fds))
}

/// The process on the other end of a Unix socket, as it was when it connected.
#[derive(Debug, Clone, Copy)]
pub struct PeerCredentials {
    pub pid: i32,
    pub uid: u32,
}

/// Returns the process id and user id of a Unix socket's peer (SO_PEERCRED).
pub fn peer_credentials(socket: &UnixStream) -> io::Result<PeerCredentials> {
    // SAFETY: an all-zero ucred is a valid value for getsockopt to overwrite.
    let mut credentials: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `credentials` and `len` are valid, writable and sized for SO_PEERCRED.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCredentials {
        pid: credentials.pid,
        uid: credentials.uid,
    })
}

/// Returns the effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments and touches no memory of this process.
    unsafe { libc::geteuid() }
}

/// Duplicates a descriptor (close-on-exec), so the copy stays open when the original closes.
pub fn duplicate_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller passes a descriptor it keeps open for the duration of this call;
    // the borrow ends before this function returns.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned()
}

/// Sends SIGTERM to this process, so the main thread's signal loop runs its usual shutdown.
pub fn terminate_self() -> io::Result<()> {
    // SAFETY: kill with this process's own id and a valid signal number has no memory effects.
    if unsafe { libc::kill(libc::getpid(), libc::SIGTERM) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
