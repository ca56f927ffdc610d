//! The accept loop every listener shares: count, cap, set TCP_NODELAY, spawn the
//! connection under the process's [`Connections`], stop when told to.

use crate::drain::{ConnGuard, Connections};
use crate::metrics::ListenerMetrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Accepts on `listener` until `stop`; each admitted connection runs `handler` as its own
/// task. The guard is dropped when the handler's future ends.
pub(crate) async fn accept_loop<H, F>(
    listener: TcpListener,
    metrics: Arc<ListenerMetrics>,
    conns: Arc<Connections>,
    stop: CancellationToken,
    handler: H,
) where
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %metrics.name, %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        metrics.accepted.fetch_add(1, Relaxed);
        let Some(guard) = conns.admit(&metrics) else {
            metrics.rejected_max_connections.fetch_add(1, Relaxed);
            tracing::debug!(listener = %metrics.name, %peer, "at --max-connections; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Boxed: a connection's future (TLS state, copy state) is about 13 KB, and a task
        // holding it inline had it memcpy'd five times per connection (spawn, the task cell,
        // the output stage): 14 % of a sidecar's instructions per new connection in callgrind
        // (bench/README.md, "Where the cycles go"). Boxed, it is written once, in place.
        let conn = Box::pin(handler(stream, peer));
        conns.spawn(run_guarded(conn, guard));
    }
}

async fn run_guarded<F: Future<Output = ()>>(conn: F, guard: ConnGuard) {
    conn.await;
    drop(guard);
}

/// Binds `addr`, retrying with backoff (the address may still be held by a previous
/// process), until `stop`. Returns `None` if stopped first.
pub(crate) async fn bind_with_retry(
    name: &str,
    addr: SocketAddr,
    stop: &CancellationToken,
) -> Option<TcpListener> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Some(listener),
            Err(err) => {
                tracing::error!(listener = name, %addr, %err, "cannot listen; retrying");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Connects to `addr` within `timeout`.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out after {timeout:?}"),
            )
        })??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
