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
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Per-direction buffer of the user-space copy: one TLS record.
const COPY_BUF: usize = 16 * 1024;

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
/// done, an error occurs, or nothing moves for `idle`.
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
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut down, &mut up, COPY_BUF, COPY_BUF) => {
            r.map(|(rx, tx)| Moved { rx, tx })
        }
        _ = activity.idle(idle) => Err(idle_error(idle)),
    }
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
