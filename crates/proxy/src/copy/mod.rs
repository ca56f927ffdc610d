//! Moving bytes both ways once a connection is set up, with byte counters and the idle
//! timeout. Two paths:
//! - [`splice::splice_bidirectional`]: TCP to TCP (the gateway): small messages through a
//!   user-space buffer, bulk through a pipe with splice(2) so its bytes never enter user
//!   space (switching per direction on the first read that fills the buffer);
//! - [`copy_streams`]: anything else (the sidecar's TLS to plain TCP), through user space.
//!
//! Both half-close: when one side reaches EOF the other side's write half is shut down, and
//! the connection ends once both directions are done (or on the first error).

pub(crate) mod splice;

use crate::metrics::ListenerMetrics;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Read size of the gateway's user-space copy (a read that fills it switches to splice).
const COPY_BUF: usize = 16 * 1024;

/// Size of [`SCRATCH`]: what [`copy_streams`] gathers from its source before one write.
/// Four TLS records: the client sidecar reads that much plaintext in one `recv` and writes
/// four records in one `writev`; the server sidecar takes up to four decrypted records and
/// writes them in one `send` (with 16 KiB, one system call per record on the plain side:
/// bench/README.md, "Bulk").
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    /// The read buffer of every connection copied on this thread: filled by reads and
    /// written on at once with no await in between, so no connection holds it while it
    /// waits. An idle connection thus holds no copy buffer at all, and no connection pays for
    /// allocating and zeroing its own (two of 16 KiB each before: 32 of a gateway's 41 KiB
    /// of private memory per idle connection, bench/README.md).
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH_LEN].into_boxed_slice());
}

/// Bytes moved by one connection, per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Downstream -> upstream.
    pub rx: u64,
    /// Upstream -> downstream.
    pub tx: u64,
}

/// Per-connection progress counter the idle watchdog looks at.
#[derive(Debug, Default)]
pub(crate) struct Activity(AtomicU64);

impl Activity {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Resolves once no byte has moved for `idle`. Checks four times per period, so a
    /// connection is closed between `idle` and `1.25 * idle` after its last byte.
    pub(crate) async fn idle(&self, idle: Duration) {
        let tick = (idle / 4).max(Duration::from_millis(5));
        let mut seen = self.get();
        let mut last_change = Instant::now();
        loop {
            tokio::time::sleep(tick).await;
            let now = self.get();
            if now != seen {
                seen = now;
                last_change = Instant::now();
            } else if last_change.elapsed() >= idle {
                return;
            }
        }
    }
}

/// An I/O object that counts the bytes read from it into a listener-wide counter and the
/// connection's [`Activity`].
struct Counted<'a, S> {
    inner: S,
    total: &'a AtomicU64,
    activity: &'a Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.total.fetch_add(n, Relaxed);
            self.activity.add(n);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies between `downstream` (the accepted side) and `upstream` until both directions are
/// done, an error occurs, or nothing moves for `idle`. Each read goes into the thread's
/// [`SCRATCH`] and is written on at once; only what the other side does not take right away
/// is kept, per direction, until it is written.
pub(crate) async fn copy_streams<D, U>(
    downstream: D,
    upstream: U,
    metrics: &ListenerMetrics,
    idle: Duration,
) -> io::Result<Moved>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::default();
    let mut down = Counted {
        inner: downstream,
        total: &metrics.bytes_rx,
        activity: &activity,
    };
    let mut up = Counted {
        inner: upstream,
        total: &metrics.bytes_tx,
        activity: &activity,
    };
    let (mut rx, mut tx) = (OneWay::default(), OneWay::default());
    let (mut rx_done, mut tx_done) = (None, None);
    let both = poll_fn(|cx| {
        if rx_done.is_none() {
            if let Poll::Ready(r) = rx.poll(cx, Pin::new(&mut down), Pin::new(&mut up)) {
                rx_done = Some(r?);
            }
        }
        if tx_done.is_none() {
            if let Poll::Ready(r) = tx.poll(cx, Pin::new(&mut up), Pin::new(&mut down)) {
                tx_done = Some(r?);
            }
        }
        match (rx_done, tx_done) {
            (Some(rx), Some(tx)) => Poll::Ready(Ok(Moved { rx, tx })),
            _ => Poll::Pending,
        }
    });
    tokio::select! {
        r = both => r,
        _ = activity.idle(idle) => Err(idle_error(idle)),
    }
}

/// One direction of [`copy_streams`].
#[derive(Default)]
struct OneWay {
    /// Read but not yet taken by the destination (empty, and unallocated, most of the time).
    unsent: Vec<u8>,
    /// How much of `unsent` is written.
    sent: usize,
    /// Written since the last flush.
    need_flush: bool,
    /// The source reached EOF: shut the destination's write half down, then done.
    eof: bool,
    moved: u64,
}

impl OneWay {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut src: Pin<&mut R>,
        mut dst: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            while self.sent < self.unsent.len() {
                let n = ready!(dst.as_mut().poll_write(cx, &self.unsent[self.sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.sent += n;
                self.need_flush = true;
            }
            if !self.unsent.is_empty() {
                // Written: give the memory back rather than keep it for an idle connection.
                (self.unsent, self.sent) = (Vec::new(), 0);
            }
            if self.eof {
                // Half-close; a TLS stream sends its close_notify (shutdown flushes first).
                ready!(dst.as_mut().poll_shutdown(cx))?;
                return Poll::Ready(Ok(self.moved));
            }
            let read = SCRATCH.with_borrow_mut(|buf| {
                let n = ready!(fill(cx, src.as_mut(), buf, &mut self.eof))?;
                if n == 0 {
                    return Poll::Ready(Ok(0));
                }
                let sent = match dst.as_mut().poll_write(cx, &buf[..n]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(m)) => m,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => 0,
                };
                self.unsent.extend_from_slice(&buf[sent..n]);
                Poll::Ready(Ok(n))
            });
            match read {
                Poll::Pending => {
                    // Nothing to read now: push out what was written (a TLS stream may hold
                    // records it could not write yet).
                    if self.need_flush {
                        ready!(dst.as_mut().poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => {
                    self.moved += n as u64;
                    self.need_flush = true;
                }
            }
        }
    }
}

/// Reads from `src` into `buf` until it is full, `src` has nothing more ready, or a read
/// brings less than a full TLS record ([`COPY_BUF`]: a message rather than bulk, so no
/// second read for it): a TLS stream yields one record per read, so one write can carry
/// several. `Ready(Ok(n))` with
/// `n > 0` may come with `eof` set (the source ended after those bytes); `Ready(Ok(0))` is
/// EOF with nothing read. A read that is pending after some bytes has registered the waker,
/// which is harmless: the caller goes on with what it has and reads again.
fn fill<R: AsyncRead + ?Sized>(
    cx: &mut Context<'_>,
    mut src: Pin<&mut R>,
    buf: &mut [u8],
    eof: &mut bool,
) -> Poll<io::Result<usize>> {
    let mut into = ReadBuf::new(buf);
    while into.remaining() > 0 {
        let before = into.filled().len();
        match src.as_mut().poll_read(cx, &mut into) {
            Poll::Ready(Ok(())) if into.filled().len() == before => {
                *eof = before > 0;
                break;
            }
            Poll::Ready(Ok(())) if into.filled().len() - before < COPY_BUF => break,
            Poll::Ready(Ok(())) => {}
            // The connection failed: what came before it is not worth delivering.
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending if before == 0 => return Poll::Pending,
            Poll::Pending => break,
        }
    }
    Poll::Ready(Ok(into.filled().len()))
}

/// Logs, in the connection's `span`, how its copy ended. The copy itself runs outside the
/// span: an instrumented future enters and exits its span on every poll, which cost about
/// 8 % of a proxy's instructions per keep-alive request (bench/README.md); the span still
/// covers the connection's setup and its end.
pub(crate) fn log_end(span: &tracing::Span, end: io::Result<Moved>) {
    span.in_scope(|| match end {
        Ok(moved) => tracing::debug!(rx = moved.rx, tx = moved.tx, "closed"),
        Err(err) => tracing::debug!(%err, "connection ended"),
    })
}

pub(crate) fn idle_error(idle: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no byte in either direction for {idle:?} (--idle-timeout)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copy_streams_half_closes_and_counts() {
        let (mut client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, mut server) = tokio::io::duplex(1024);
        let metrics = ListenerMetrics::default();
        let copy = copy_streams(proxy_down, proxy_up, &metrics, Duration::from_secs(5));
        let peers = async {
            client.write_all(b"hello").await.expect("write");
            client.shutdown().await.expect("shutdown");
            let mut got = Vec::new();
            server
                .read_to_end(&mut got)
                .await
                .expect("server reads to EOF");
            assert_eq!(got, b"hello");
            server
                .write_all(b"world!")
                .await
                .expect("reply after half-close");
            server.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("client reads");
            assert_eq!(back, b"world!");
        };
        let (moved, ()) = tokio::join!(copy, peers);
        assert_eq!(moved.expect("copy"), Moved { rx: 5, tx: 6 });
        assert_eq!(metrics.bytes_rx.load(Relaxed), 5);
        assert_eq!(metrics.bytes_tx.load(Relaxed), 6);
    }

    /// The destination takes at most 100 bytes at a time while reads bring up to 16 KiB:
    /// what it does not take waits in the direction's own buffer, and every byte arrives in
    /// order, both ways at once.
    #[tokio::test]
    async fn a_slow_destination_gets_every_byte_in_order() {
        let (mut client, proxy_down) = tokio::io::duplex(64 * 1024);
        let (proxy_up, mut server) = tokio::io::duplex(100);
        let metrics = ListenerMetrics::default();
        let up: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        let down: Vec<u8> = (0..50_000u32).map(|i| (i % 239) as u8).collect();
        let copy = copy_streams(proxy_down, proxy_up, &metrics, Duration::from_secs(5));
        let peers = async {
            let (mut client_r, mut client_w) = tokio::io::split(&mut client);
            let (mut server_r, mut server_w) = tokio::io::split(&mut server);
            let mut got_up = Vec::new();
            let mut got_down = Vec::new();
            tokio::join!(
                async {
                    client_w.write_all(&up).await.expect("client write");
                    client_w.shutdown().await.expect("client half-close");
                },
                async {
                    server_r
                        .read_to_end(&mut got_up)
                        .await
                        .expect("server read");
                },
                async {
                    server_w.write_all(&down).await.expect("server write");
                    server_w.shutdown().await.expect("server half-close");
                },
                async {
                    client_r
                        .read_to_end(&mut got_down)
                        .await
                        .expect("client read");
                },
            );
            (got_up, got_down)
        };
        let (moved, (got_up, got_down)) = tokio::join!(copy, peers);
        assert!(got_up == up, "upstream bytes corrupted or reordered");
        assert!(got_down == down, "downstream bytes corrupted or reordered");
        assert_eq!(
            moved.expect("copy"),
            Moved {
                rx: up.len() as u64,
                tx: down.len() as u64
            }
        );
    }

    /// A source that has `chunks` reads of `len` bytes ready (a TLS stream gives one record
    /// per read), then EOF.
    struct Chunks {
        chunks: usize,
        len: usize,
        left: usize,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.chunks > 0 {
                let n = self.left.min(buf.remaining());
                buf.put_slice(&vec![7u8; n]);
                self.left -= n;
                if self.left == 0 {
                    self.chunks -= 1;
                    self.left = self.len;
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Chunks {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Records the size of every write, and whether it was shut down.
    #[derive(Default)]
    struct Writes {
        sizes: Vec<usize>,
        shut: bool,
    }

    impl AsyncRead for Writes {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.sizes.push(b.len());
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// Copies `chunks` reads of `len` bytes; the sizes of the writes.
    async fn writes_of(chunks: usize, len: usize) -> Vec<usize> {
        let mut src = Chunks {
            chunks,
            len,
            left: len,
        };
        let mut dst = Writes::default();
        let mut one_way = OneWay::default();
        let moved = poll_fn(|cx| one_way.poll(cx, Pin::new(&mut src), Pin::new(&mut dst)))
            .await
            .expect("copy");
        assert_eq!(moved, (chunks * len) as u64);
        assert!(dst.shut, "EOF after the last bytes half-closes");
        dst.sizes
    }

    /// Full records that are ready back to back are gathered into one write of up to
    /// [`SCRATCH_LEN`]; the EOF that ends a gathered read still half-closes, after its
    /// bytes. Smaller reads (messages) are written at once, with no second read.
    #[tokio::test]
    async fn ready_records_are_gathered_into_one_write() {
        let writes = writes_of(10, COPY_BUF).await;
        assert_eq!(
            writes,
            [SCRATCH_LEN, SCRATCH_LEN, 10 * COPY_BUF - 2 * SCRATCH_LEN]
        );
        assert_eq!(writes_of(3, 1000).await, [1000, 1000, 1000]);
    }

    #[tokio::test]
    async fn idle_connections_are_closed() {
        let (_client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, _server) = tokio::io::duplex(1024);
        let metrics = ListenerMetrics::default();
        let started = Instant::now();
        let err = copy_streams(proxy_down, proxy_up, &metrics, Duration::from_millis(80))
            .await
            .expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(80));
    }
}
