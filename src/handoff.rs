//! Listener hand-off for binary upgrades: a running ringway passes its listening sockets to a
//! replacing process over a Unix socket, so no listening socket ever closes and no connection
//! is refused while the binary changes.
//!
//! The exchange on one Unix stream connection, from the new process N to the old process O:
//! 1. N sends the line `ringway-handoff-1`.
//! 2. O sends the line `ringway-handoff-1 pid=P driver=D sockets=S`.
//! 3. O sends the S listening sockets as SCM_RIGHTS, at most `MAX_FDS_PER_MESSAGE` per
//!    message, each message one payload byte `F`.
//! 4. N starts its workers on those sockets and sends `R` (ready).
//! 5. O sends `D` (draining) and stops through the same path as on SIGTERM.
//!
//! When N fails before step 4 it closes the connection, and O keeps serving. Both processes
//! accept from the same sockets between steps 3 and 5, which is harmless because each
//! connection is accepted by exactly one of them.
//!
//! In step 5 O drains as on SIGTERM: each worker cancels its pending accepts, serves any
//! connection they still return, and closes its listening descriptors, and then O closes the
//! copies this module kept. The sockets stay open in N, so connections queued on them wait for
//! N's accepts. shutdown(2) on a listening socket is never used, because it would stop N's
//! listeners as well.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::sys;
use crate::worker::{self, DriverKind, Inherited, Workers};

/// First word of every header line; a new version changes it, so mismatched binaries fail
/// with a clear error instead of misreading each other.
pub const PROTOCOL: &str = "ringway-handoff-1";

/// Bound for each step of the exchange other than the new process's start-up: connecting,
/// each read and each write. A step that takes longer fails with a timed-out error.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the old process waits for the new one to report its workers ready. Start-up
/// resolves upstream names and builds one runtime per worker, which takes well under this.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Maximum length in bytes of a header line, far above the longest one this module writes.
const MAX_HEADER_BYTES: usize = 256;

/// Maximum number of sockets a new process accepts: the worker maximum times a generous
/// number of listen addresses. It only guards against a malformed header.
const MAX_SOCKETS: usize = 1024 * 64;

/// Permissions of the hand-off socket file: only the owner may connect, because a peer
/// receives every listening socket.
const SOCKET_FILE_MODE: u32 = 0o600;

const READY: u8 = b'R';
const DRAINING: u8 = b'D';
const SOCKETS_FOLLOW: u8 = b'F';

/// The process's own copies of its listening sockets, which the hand-off thread sends to a
/// replacing process. The drain closes them once the workers closed theirs, so that after a
/// plain SIGTERM no descriptor keeps a socket open and new connections are refused.
#[derive(Clone, Default)]
pub struct ListenerCopies {
    sockets: Arc<Mutex<Option<Vec<OwnedFd>>>>,
}

impl ListenerCopies {
    fn new(sockets: Vec<OwnedFd>) -> ListenerCopies {
        ListenerCopies {
            sockets: Arc::new(Mutex::new(Some(sockets))),
        }
    }

    /// Closes the copies. A hand-off that starts later fails, and one past sending its
    /// sockets is not affected.
    pub fn close(&self) {
        let closed = self
            .sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(closed);
    }

    /// Duplicates the copies for one hand-off, so the lock is not held while sending them.
    fn duplicate(&self) -> io::Result<Vec<OwnedFd>> {
        let sockets = self
            .sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match sockets.as_ref() {
            Some(sockets) => sockets.iter().map(OwnedFd::try_clone).collect(),
            None => Err(io::Error::other(
                "this process is draining and has closed its listening sockets; start the new process without --takeover",
            )),
        }
    }
}

/// Starts the workers: on sockets taken over from the process at the configured hand-off
/// socket when `takeover` is set, else on newly bound ones. Then serves the hand-off socket
/// for the next upgrade, when the config has one. Returns the workers and the copies of their
/// listening sockets, which the caller closes when it drains (none without `"handoff"`).
///
/// The hand-off socket is bound before the workers start, and it is published under its path
/// before the old process receives the ready byte, so a listening process always serves one.
pub fn start_workers(
    config: Arc<Config>,
    driver: DriverKind,
    takeover: bool,
) -> io::Result<(Workers, ListenerCopies)> {
    let socket_path = config
        .handoff
        .as_ref()
        .map(|handoff| handoff.socket.clone());
    if !takeover {
        let Some(path) = socket_path else {
            let mut workers = worker::start(config)?;
            // Without a hand-off socket nothing sends the copies, so they close at once.
            workers.sockets.clear();
            return Ok((workers, ListenerCopies::default()));
        };
        check_no_live_process(&path)?;
        let listener = PendingSocket::bind(&path)?.publish()?;
        let mut workers = worker::start(config)?;
        let copies = ListenerCopies::new(std::mem::take(&mut workers.sockets));
        spawn_server(listener, &path, copies.clone(), driver)?;
        return Ok((workers, copies));
    }

    let Some(path) = socket_path else {
        return Err(io::Error::other(
            "--takeover needs \"handoff\": {\"socket\": PATH} in the config file; add the socket the running process serves",
        ));
    };
    let pending = PendingSocket::bind(&path)?;
    let mut takeover = Takeover::connect(&path, driver, &config.listen)?;
    let old_pid = takeover.old_pid;
    let mut workers = worker::start_with(config, takeover.take_inherited())?;
    let copies = ListenerCopies::new(std::mem::take(&mut workers.sockets));
    let listener = pending.publish()?;
    takeover.finish();
    spawn_server(listener, &path, copies.clone(), driver)?;
    info!(
        old_pid,
        "took over the listening sockets; the old process stops accepting"
    );
    Ok((workers, copies))
}

/// A hand-off in progress on the new process's side: the sockets are received, the workers
/// not yet started.
struct Takeover {
    stream: UnixStream,
    old_pid: u32,
    inherited: Inherited,
}

impl Takeover {
    /// Connects to the running process at `path`, receives its listening sockets and matches
    /// them to `listen` by their local address.
    fn connect(path: &Path, driver: DriverKind, listen: &[SocketAddr]) -> io::Result<Takeover> {
        let mut stream = UnixStream::connect(path).map_err(|err| connect_error(path, &err))?;
        stream.set_read_timeout(Some(HANDOFF_TIMEOUT))?;
        stream.set_write_timeout(Some(HANDOFF_TIMEOUT))?;
        let not_answering = |err: io::Error| {
            io::Error::new(
                err.kind(),
                format!(
                    "the process on hand-off socket {} did not answer within {HANDOFF_TIMEOUT:?} ({err}); check that a ringway of this version serves it",
                    path.display()
                ),
            )
        };
        stream
            .write_all(format!("{PROTOCOL}\n").as_bytes())
            .map_err(not_answering)?;
        let line = read_line(&mut stream).map_err(not_answering)?;
        let header = Header::parse(&line).map_err(|message| {
            io::Error::other(format!(
                "invalid hand-off header {line:?} from {}: {message}; upgrade across ringway versions with the same hand-off protocol ({PROTOCOL}) or restart",
                path.display()
            ))
        })?;
        if header.driver != driver.name() {
            return Err(io::Error::other(format!(
                "the running process {} uses driver {} and this one {}; the listening sockets' blocking mode is shared, so set \"driver\" to \"{}\" or restart instead",
                header.pid,
                header.driver,
                driver.name(),
                header.driver
            )));
        }
        let sockets = receive_sockets(&stream, header.sockets).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "receiving listening sockets from process {} failed: {err}",
                    header.pid
                ),
            )
        })?;
        info!(
            old_pid = header.pid,
            sockets = sockets.len(),
            "received {} listening sockets",
            sockets.len()
        );
        let inherited = match_sockets(sockets, listen)?;
        Ok(Takeover {
            stream,
            old_pid: header.pid,
            inherited,
        })
    }

    /// Moves the received sockets out for the workers; the connection stays for `finish`.
    fn take_inherited(&mut self) -> Inherited {
        std::mem::take(&mut self.inherited)
    }

    /// Tells the old process that the workers listen, and waits for it to confirm that it
    /// stops. A missing confirmation is logged, not fatal: the new process serves either way.
    fn finish(mut self) {
        let confirmed = self
            .stream
            .write_all(&[READY])
            .and_then(|()| read_byte(&mut self.stream));
        match confirmed {
            Ok(DRAINING) => info!(
                old_pid = self.old_pid,
                "the old process confirmed the hand-off and is stopping"
            ),
            Ok(other) => warn!(
                old_pid = self.old_pid,
                "the old process sent {other:#04x} instead of confirming the hand-off; both processes accept on the listening sockets until it stops (send it SIGTERM)"
            ),
            Err(err) => warn!(
                old_pid = self.old_pid,
                error = %err,
                "the old process did not confirm the hand-off; both processes accept on the listening sockets until it stops (send it SIGTERM)"
            ),
        }
    }
}

fn connect_error(path: &Path, err: &io::Error) -> io::Error {
    let message = match err.kind() {
        io::ErrorKind::NotFound => format!(
            "hand-off socket {} not found: no running ringway serves it; start without --takeover, or set \"handoff\".\"socket\" to the running process's socket",
            path.display()
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "no process listens on hand-off socket {} (left over by a stopped ringway?); start without --takeover",
            path.display()
        ),
        _ => format!(
            "connecting to hand-off socket {} failed: {err}; check the path and its permissions",
            path.display()
        ),
    };
    io::Error::new(err.kind(), message)
}

/// The old process's header line.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    pid: u32,
    driver: String,
    sockets: usize,
}

impl Header {
    fn format(&self) -> String {
        format!(
            "{PROTOCOL} pid={} driver={} sockets={}\n",
            self.pid, self.driver, self.sockets
        )
    }

    fn parse(line: &str) -> Result<Header, String> {
        let mut words = line.split(' ');
        if words.next() != Some(PROTOCOL) {
            return Err(format!("expected the protocol {PROTOCOL} first"));
        }
        let mut pid = None;
        let mut driver = None;
        let mut sockets = None;
        for word in words {
            match word.split_once('=') {
                Some(("pid", value)) => pid = value.parse::<u32>().ok(),
                Some(("driver", value)) => driver = Some(value.to_owned()),
                Some(("sockets", value)) => sockets = value.parse::<usize>().ok(),
                _ => return Err(format!("unexpected field {word:?}")),
            }
        }
        let (Some(pid), Some(driver), Some(sockets)) = (pid, driver, sockets) else {
            return Err("expected numeric pid, a driver and a numeric socket count".to_owned());
        };
        if sockets == 0 || sockets > MAX_SOCKETS {
            return Err(format!(
                "socket count {sockets} is outside 1 to {MAX_SOCKETS}"
            ));
        }
        Ok(Header {
            pid,
            driver,
            sockets,
        })
    }
}

/// Reads one line ending in `\n`, byte by byte, so that no byte of the next message (which
/// may carry descriptors) is consumed.
fn read_line(stream: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    loop {
        let byte = read_byte(stream)?;
        if byte == b'\n' {
            break;
        }
        if line.len() == MAX_HEADER_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("hand-off line longer than {MAX_HEADER_BYTES} bytes"),
            ));
        }
        line.push(byte);
    }
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "hand-off line is not UTF-8"))
}

fn read_byte(stream: &mut UnixStream) -> io::Result<u8> {
    let mut byte = [0u8];
    stream.read_exact(&mut byte)?;
    Ok(byte[0])
}

fn receive_sockets(stream: &UnixStream, count: usize) -> io::Result<Vec<OwnedFd>> {
    let mut sockets = Vec::with_capacity(count);
    while sockets.len() < count {
        let mut payload = [0u8];
        let (received, fds) = sys::recv_with_fds(stream, &mut payload, sys::MAX_FDS_PER_MESSAGE)?;
        if received == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the connection closed after {} of {count} sockets",
                    sockets.len()
                ),
            ));
        }
        if payload[0] != SOCKETS_FOLLOW || fds.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "expected a message carrying sockets",
            ));
        }
        sockets.extend(fds);
    }
    if sockets.len() > count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("received {} sockets, {count} announced", sockets.len()),
        ));
    }
    Ok(sockets)
}

/// Sorts received sockets by the entry of `listen` they serve, by their local address. A
/// `listen` entry with port 0 takes the sockets of the first unclaimed address with its IP,
/// so a process started on port 0 can be replaced by one with the same config. Sockets of
/// addresses no longer in `listen` are closed here. The kernel closes them once the old
/// process closes its copies as it stops.
fn match_sockets(sockets: Vec<OwnedFd>, listen: &[SocketAddr]) -> io::Result<Inherited> {
    let mut by_address: Vec<(SocketAddr, Vec<OwnedFd>)> = Vec::new();
    for socket in sockets {
        let listener = std::net::TcpListener::from(socket);
        let local = listener.local_addr().map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("a received socket has no local address ({err}); it is not a TCP listener"),
            )
        })?;
        let socket = OwnedFd::from(listener);
        match by_address.iter_mut().find(|(address, _)| *address == local) {
            Some((_, group)) => group.push(socket),
            None => by_address.push((local, vec![socket])),
        }
    }

    let mut claimed = HashSet::new();
    let mut per_address = Vec::with_capacity(listen.len());
    for wanted in listen {
        let exact = by_address
            .iter()
            .position(|(address, _)| address == wanted && !claimed.contains(address));
        let found = exact.or_else(|| {
            (wanted.port() == 0)
                .then(|| {
                    by_address.iter().position(|(address, _)| {
                        address.ip() == wanted.ip() && !claimed.contains(address)
                    })
                })
                .flatten()
        });
        match found {
            Some(index) => {
                let (address, group) = &mut by_address[index];
                claimed.insert(*address);
                info!(address = %address, sockets = group.len(), "taking over listening sockets");
                per_address.push(std::mem::take(group));
            }
            None => {
                info!(address = %wanted, "address not served by the old process; binding it");
                per_address.push(Vec::new());
            }
        }
    }
    for (address, group) in &by_address {
        if !claimed.contains(address) {
            info!(
                address = %address,
                sockets = group.len(),
                "address no longer in \"listen\"; closing its sockets here, and the old process closes its copies as it stops"
            );
        }
    }
    Ok(Inherited { per_address })
}

/// Fails when a process accepts connections on `path`, so two processes never serve one
/// hand-off socket. A file that rejects connections is left over by a stopped process, and
/// `PendingSocket::publish` replaces it.
fn check_no_live_process(path: &Path) -> io::Result<()> {
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another process serves hand-off socket {}; start with --takeover to replace it, or stop it first",
                path.display()
            ),
        )),
        Err(_) => Ok(()),
    }
}

/// A hand-off socket bound under a temporary name next to its path. `publish` renames it over
/// the path, which replaces a left-over file or the old process's socket in one step. Dropping
/// it unpublished removes the temporary file.
struct PendingSocket {
    listener: Option<UnixListener>,
    temporary: PathBuf,
    path: PathBuf,
}

impl PendingSocket {
    fn bind(path: &Path) -> io::Result<PendingSocket> {
        let temporary = temporary_path(path);
        let _ = std::fs::remove_file(&temporary);
        let listener = UnixListener::bind(&temporary).map_err(|err| bind_error(path, err))?;
        let pending = PendingSocket {
            listener: Some(listener),
            temporary,
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(
            &pending.temporary,
            std::fs::Permissions::from_mode(SOCKET_FILE_MODE),
        )
        .map_err(|err| bind_error(path, err))?;
        Ok(pending)
    }

    fn publish(mut self) -> io::Result<UnixListener> {
        std::fs::rename(&self.temporary, &self.path).map_err(|err| bind_error(&self.path, err))?;
        Ok(self
            .listener
            .take()
            .expect("a pending socket has a listener"))
    }
}

impl Drop for PendingSocket {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

fn bind_error(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!(
            "binding hand-off socket {} failed: {err}; check that its directory exists and is writable, or change \"handoff\".\"socket\"",
            path.display()
        ),
    )
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(name)
}

/// Serves the hand-off socket on its own thread, off the workers.
fn spawn_server(
    listener: UnixListener,
    path: &Path,
    sockets: ListenerCopies,
    driver: DriverKind,
) -> io::Result<()> {
    let path = path.to_path_buf();
    info!(socket = %path.display(), "serving listener hand-off");
    std::thread::Builder::new()
        .name("ringway-handoff".to_owned())
        .spawn(move || serve_connections(listener, path, sockets, driver))?;
    Ok(())
}

/// Hands the sockets to one new process after another until one of them takes over or this
/// process drains.
fn serve_connections(
    listener: UnixListener,
    path: PathBuf,
    sockets: ListenerCopies,
    driver: DriverKind,
) {
    for connection in listener.incoming() {
        let mut stream = match connection {
            Ok(stream) => stream,
            Err(err) => {
                error!(socket = %path.display(), error = %err, "accepting a hand-off connection failed");
                std::thread::sleep(HANDOFF_ACCEPT_BACKOFF);
                continue;
            }
        };
        let peer = match sys::peer_credentials(&stream) {
            Ok(peer) => peer,
            Err(err) => {
                warn!(error = %err, "reading the hand-off peer's credentials failed; closing the connection");
                continue;
            }
        };
        if peer.uid != sys::effective_uid() && peer.uid != 0 {
            warn!(
                peer_pid = peer.pid,
                peer_uid = peer.uid,
                "rejected a hand-off request from another user; run the new process as this process's user"
            );
            continue;
        }
        info!(
            new_pid = peer.pid,
            "a new process requests the listening sockets"
        );
        let result = sockets.duplicate().and_then(|copies| {
            let fds: Vec<RawFd> = copies.iter().map(AsRawFd::as_raw_fd).collect();
            hand_off(&mut stream, &fds, driver)
        });
        match result {
            Ok(()) => {
                info!(
                    new_pid = peer.pid,
                    "the new process took over the listening sockets; stopping as on SIGTERM"
                );
                if let Err(err) = sys::terminate_self() {
                    error!(error = %err, "sending SIGTERM to this process failed; stop it with SIGTERM");
                }
                return;
            }
            Err(err) => warn!(
                new_pid = peer.pid,
                error = %err,
                "the hand-off failed; this process goes on serving"
            ),
        }
    }
}

/// Pause after a failed accept on the hand-off socket, so a lasting error does not spin.
const HANDOFF_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs the old process's side of the exchange. Returns `Ok` once the new process reported
/// ready and received the draining byte.
fn hand_off(stream: &mut UnixStream, sockets: &[RawFd], driver: DriverKind) -> io::Result<()> {
    stream.set_read_timeout(Some(HANDOFF_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDOFF_TIMEOUT))?;
    let hello = read_line(stream)?;
    if hello != PROTOCOL {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {PROTOCOL:?}, received {hello:?}"),
        ));
    }
    let header = Header {
        pid: std::process::id(),
        driver: driver.name().to_owned(),
        sockets: sockets.len(),
    };
    stream.write_all(header.format().as_bytes())?;
    for batch in sockets.chunks(sys::MAX_FDS_PER_MESSAGE) {
        sys::send_with_fds(stream, &[SOCKETS_FOLLOW], batch)?;
    }
    info!(
        sockets = sockets.len(),
        "sent the listening sockets; waiting for the new process to listen"
    );

    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    match read_byte(stream) {
        Ok(READY) => {}
        Ok(other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected the ready byte, received {other:#04x}"),
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(io::Error::new(
                err.kind(),
                "the new process closed the connection before it was ready (see its log)",
            ));
        }
        Err(err) => return Err(err),
    }
    // The new process listens now, so a lost confirmation must not keep this one running.
    if let Err(err) = stream.write_all(&[DRAINING]) {
        warn!(error = %err, "confirming the hand-off failed; stopping anyway");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            pid: 42,
            driver: "epoll".to_owned(),
            sockets: 3,
        };
        let line = header.format();
        let parsed = Header::parse(line.trim_end_matches('\n')).expect("valid header");
        assert_eq!(parsed, header);
    }

    #[test]
    fn header_rejects_bad_lines() {
        let cases = [
            ("", "empty line"),
            (
                "ringway-handoff-0 pid=1 driver=epoll sockets=1",
                "other protocol",
            ),
            (
                "ringway-handoff-1 pid=x driver=epoll sockets=1",
                "non-numeric pid",
            ),
            ("ringway-handoff-1 pid=1 driver=epoll", "missing count"),
            (
                "ringway-handoff-1 pid=1 driver=epoll sockets=0",
                "zero sockets",
            ),
            (
                "ringway-handoff-1 pid=1 driver=epoll sockets=99999999",
                "too many sockets",
            ),
            (
                "ringway-handoff-1 pid=1 driver=epoll sockets=1 extra",
                "unknown field",
            ),
        ];
        for (line, case) in cases {
            assert!(
                Header::parse(line).is_err(),
                "{case}: {line:?} was accepted"
            );
        }
    }

    #[test]
    fn sockets_cross_a_unix_socket() {
        let (left, right) = UnixStream::pair().expect("socketpair");
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let fds: Vec<RawFd> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
        sys::send_with_fds(&left, &[SOCKETS_FOLLOW], &fds).expect("send");
        let received = receive_sockets(&right, fds.len()).expect("receive");
        let sent: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let got: Vec<SocketAddr> = received
            .into_iter()
            .map(|fd| std::net::TcpListener::from(fd).local_addr().unwrap())
            .collect();
        assert_eq!(got, sent);
    }

    #[test]
    fn sockets_match_listen_addresses() {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dropped = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let first_addr = first.local_addr().unwrap();
        let sockets = vec![
            OwnedFd::from(dropped),
            OwnedFd::from(first.try_clone().unwrap()),
            OwnedFd::from(first),
        ];
        let new_address: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let listen = [first_addr, new_address];
        let inherited = match_sockets(sockets, &listen).expect("match");
        assert_eq!(inherited.per_address.len(), 2);
        assert_eq!(
            inherited.per_address[0].len(),
            2,
            "both sockets of the kept address"
        );
        assert!(inherited.per_address[1].is_empty(), "the new address binds");
    }

    #[test]
    fn port_zero_matches_by_ip() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let listen: [SocketAddr; 1] = ["127.0.0.1:0".parse().unwrap()];
        let inherited = match_sockets(vec![OwnedFd::from(listener)], &listen).expect("match");
        assert_eq!(inherited.per_address[0].len(), 1);
    }
}
