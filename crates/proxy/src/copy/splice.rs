//! TCP-to-TCP pass-through for the mesh gateway, which never decrypts: small messages
//! through a user-space buffer (one read, one write), bulk with splice(2) (socket -> pipe ->
//! socket, so payload bytes never enter user space), switching per direction on the first
//! read that fills the buffer.
//!
//! Readiness comes from tokio (`readable()` / `writable()` + `try_io`), so a would-block
//! from splice clears exactly the readiness it should. The pipe is always drained before
//! the next read from the socket, hence an EAGAIN from a socket->pipe splice can only mean
//! "socket empty" and one from pipe->socket only "socket full". Where splice is not
//! supported (EINVAL/ENOSYS on the first call) that direction copies through user space.
#![allow(unsafe_code)]

use super::{idle_error, Activity, Moved, COPY_BUF, SCRATCH};
use crate::metrics::ListenerMetrics;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Asked of each socket->pipe splice; the kernel moves at most the pipe's capacity.
const SPLICE_LEN: usize = 1 << 20;

/// How bytes are moved; user space exists for tests and for kernels without splice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Splice,
    UserSpace,
}

/// Copies between two TCP streams until both directions reach EOF, an error occurs, or no
/// byte moves for `idle`. `rx` counts downstream -> upstream.
pub(crate) async fn splice_bidirectional(
    downstream: &TcpStream,
    upstream: &TcpStream,
    metrics: &ListenerMetrics,
    idle: Duration,
    mode: Mode,
) -> io::Result<Moved> {
    let activity = Activity::default();
    let both = async {
        tokio::try_join!(
            one_way(downstream, upstream, &metrics.bytes_rx, &activity, mode),
            one_way(upstream, downstream, &metrics.bytes_tx, &activity, mode),
        )
    };
    tokio::select! {
        r = both => r.map(|(rx, tx)| Moved { rx, tx }),
        _ = activity.idle(idle) => Err(idle_error(idle)),
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a writable array of two c_ints, exactly what pipe2(2) fills in.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nothing else;
        // each OwnedFd becomes their only owner and closes it on drop.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe { read, write })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are borrowed from live owners (a TcpStream and a Pipe) for
    // the whole call; null offsets mean "use the file position", which sockets and pipes
    // require; splice(2) touches no memory of ours.
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

/// Half-close: tells the peer of `stream` that no more bytes will come.
fn shutdown_write(stream: &TcpStream) {
    // SAFETY: the descriptor is valid while `stream` is borrowed; shutdown(2) takes no
    // pointers. An error (ENOTCONN: the peer is gone) leaves nothing to do.
    let _ = unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) };
}

fn unsupported(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS))
}

async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    total: &AtomicU64,
    activity: &Activity,
    mode: Mode,
) -> io::Result<u64> {
    buffered(src, dst, total, activity, mode != Mode::UserSpace, 0).await
}

/// Small messages (requests, responses) go through a user-space buffer: one read and one
/// write each. A TCP read takes everything queued up to the buffer's size, so a short read
/// means the socket is drained and its readiness is cleared without another (EAGAIN) read;
/// splice cannot tell that (a socket->pipe splice also stops when the pipe runs out of
/// slots). The read goes into the thread's [`SCRATCH`] and is written on at once; only what
/// the destination does not take right away is kept, in a buffer of the connection's own
/// that lives until it is written. With `then_splice`, a read that fills the buffer means
/// bulk: the direction switches to splice for the rest of the connection, and only then is
/// a pipe created. `moved` counts what this direction carried before.
async fn buffered(
    src: &TcpStream,
    dst: &TcpStream,
    total: &AtomicU64,
    activity: &Activity,
    mut then_splice: bool,
    mut moved: u64,
) -> io::Result<u64> {
    let src_fd = src.as_raw_fd();
    loop {
        src.readable().await?;
        let mut unsent = Vec::new();
        let Some(n) = SCRATCH.with_borrow_mut(|buf| {
            read_and_send(src, src_fd, dst, &mut buf[..COPY_BUF], &mut unsent)
        })?
        else {
            continue;
        };
        if n == 0 {
            shutdown_write(dst);
            return Ok(moved);
        }
        total.fetch_add(n as u64, Relaxed);
        activity.add(n as u64);
        moved += n as u64;
        write_all(dst, &unsent).await?;
        drop(unsent);
        if then_splice && n == COPY_BUF {
            match splice_rest(src, dst, total, activity, moved).await? {
                Spliced::Done(all) => return Ok(all),
                // No splice here after all: go on through the buffer.
                Spliced::Unsupported(so_far) => (then_splice, moved) = (false, so_far),
            }
        }
    }
}

/// One `recv` from `src` into `buf` and one `send` of it to `dst`, without waiting; what
/// `dst` did not take goes to `unsent`. `Ok(None)`: nothing to read after all (readiness
/// cleared); `Ok(Some(0))`: EOF.
fn read_and_send(
    src: &TcpStream,
    src_fd: RawFd,
    dst: &TcpStream,
    buf: &mut [u8],
    unsent: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    let mut got = 0usize;
    let read = src.try_io(Interest::READABLE, || {
        got = recv(src_fd, buf)?;
        if got > 0 && got < buf.len() {
            // Drained: clear readiness now (tokio keeps it if an event came meanwhile).
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    let n = match read {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => got,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    if n > 0 {
        let sent = match dst.try_write(&buf[..n]) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        unsent.extend_from_slice(&buf[sent..n]);
    }
    Ok(Some(n))
}

/// recv(2) without blocking into `buf`.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, writable slice for its whole length during the call, and
    // `fd` is borrowed from a live TcpStream.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

async fn write_all(dst: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        dst.writable().await?;
        match dst.try_write(bytes) {
            Ok(m) => bytes = &bytes[m..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How the bulk phase ended.
enum Spliced {
    /// EOF: the direction's byte count.
    Done(u64),
    /// No pipe, or splice unsupported before any byte moved: the count so far.
    Unsupported(u64),
}

/// The bulk phase: socket -> pipe -> socket until EOF. `moved` counts what came before.
async fn splice_rest(
    src: &TcpStream,
    dst: &TcpStream,
    total: &AtomicU64,
    activity: &Activity,
    mut moved: u64,
) -> io::Result<Spliced> {
    let pipe = match Pipe::new() {
        Ok(pipe) => pipe,
        Err(err) => {
            tracing::debug!(%err, "no pipe for splice; copying through user space");
            return Ok(Spliced::Unsupported(moved));
        }
    };
    let (pipe_r, pipe_w) = (pipe.read.as_raw_fd(), pipe.write.as_raw_fd());
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut spliced = false;
    loop {
        // The pipe is empty here: fill it from the source socket.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || splice(src_fd, pipe_w, SPLICE_LEN)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if !spliced && unsupported(&e) => {
                    tracing::debug!(err = %e, "splice unsupported; copying through user space");
                    return Ok(Spliced::Unsupported(moved));
                }
                Err(e) => return Err(e),
            }
        };
        spliced = true;
        if n == 0 {
            shutdown_write(dst);
            return Ok(Spliced::Done(moved));
        }
        total.fetch_add(n as u64, Relaxed);
        activity.add(n as u64);
        moved += n as u64;
        // Drain the pipe completely into the destination socket.
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || splice(pipe_r, dst_fd, left)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// (client end, proxy's downstream end) and (proxy's upstream end, server end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }

    async fn carries_both_ways(mode: Mode) {
        let (mut client, down) = pair().await;
        let (up, mut server) = pair().await;
        let metrics = ListenerMetrics::default();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let proxy = splice_bidirectional(&down, &up, &metrics, Duration::from_secs(10), mode);
        let peers = async {
            let send = async {
                client.write_all(&payload).await.expect("client write");
                client.shutdown().await.expect("client half-close");
            };
            let echo = async {
                let mut got = Vec::new();
                server.read_to_end(&mut got).await.expect("server read");
                server.write_all(&got[..1000]).await.expect("server reply");
                server.shutdown().await.expect("server half-close");
                got
            };
            let ((), got) = tokio::join!(send, echo);
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("client read");
            (got, back)
        };
        let (moved, (got, back)) = tokio::join!(proxy, peers);
        assert!(got == payload, "payload corrupted ({mode:?})");
        assert_eq!(back, payload[..1000]);
        let moved = moved.expect("copy");
        assert_eq!(
            moved,
            Moved {
                rx: payload.len() as u64,
                tx: 1000
            }
        );
        assert_eq!(metrics.bytes_rx.load(Relaxed), payload.len() as u64);
    }

    #[tokio::test]
    async fn splice_carries_both_ways_with_half_close() {
        carries_both_ways(Mode::Splice).await;
    }

    #[tokio::test]
    async fn user_space_carries_both_ways_with_half_close() {
        carries_both_ways(Mode::UserSpace).await;
    }

    fn small_buffer(stream: &TcpStream, option: libc::c_int) {
        let size: libc::c_int = 4096;
        // SAFETY: the descriptor is valid while `stream` is borrowed; the option value is a
        // c_int that lives for the call, and its size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt: {}", io::Error::last_os_error());
    }

    /// A destination that takes less than a read at once (a small send buffer, a reader that
    /// takes 1000 bytes at a time): what it did not take waits in the connection's own
    /// buffer while the thread's scratch serves the other direction, and every byte arrives
    /// in order.
    #[tokio::test]
    async fn a_slow_destination_gets_every_byte_in_order() {
        let (mut client, down) = pair().await;
        let (up, mut server) = pair().await;
        small_buffer(&up, libc::SO_SNDBUF);
        let metrics = ListenerMetrics::default();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let proxy = splice_bidirectional(
            &down,
            &up,
            &metrics,
            Duration::from_secs(10),
            Mode::UserSpace,
        );
        let peers = async {
            let send = async {
                client.write_all(&payload).await.expect("client write");
                client.shutdown().await.expect("client half-close");
            };
            let slow = async {
                let mut got = Vec::new();
                let mut chunk = [0u8; 1000];
                loop {
                    let n = server.read(&mut chunk).await.expect("server read");
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&chunk[..n]);
                    server
                        .write_all(&chunk[..n.min(10)])
                        .await
                        .expect("server reply");
                    tokio::task::yield_now().await;
                }
                server.shutdown().await.expect("server half-close");
                got
            };
            let ((), got) = tokio::join!(send, slow);
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("client read");
            (got, back)
        };
        let (moved, (got, back)) = tokio::join!(proxy, peers);
        assert!(got == payload, "payload corrupted or reordered");
        let moved = moved.expect("copy");
        assert_eq!(moved.rx, payload.len() as u64);
        assert_eq!(moved.tx, back.len() as u64);
    }

    #[tokio::test]
    async fn idle_timeout_ends_the_copy() {
        let (_client, down) = pair().await;
        let (up, _server) = pair().await;
        let metrics = ListenerMetrics::default();
        let err = splice_bidirectional(
            &down,
            &up,
            &metrics,
            Duration::from_millis(60),
            Mode::Splice,
        )
        .await
        .expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
