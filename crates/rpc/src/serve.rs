//! Serving an axum router on a bound listener, plain (loopback) or mutual TLS.
//!
//! With TLS, each connection's verified peer identity is attached to every request as a
//! [`Peer`] extension, so handlers authorise on an identity only a completed handshake can
//! produce. The server TLS configuration is read from a `watch` at each accept, so certificate
//! rotation needs no restart and drops no connection.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strait_identity::spiffe::SpiffeId;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The caller of a request: its address and, over mTLS, its verified SPIFFE ID.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub identity: Option<SpiffeId>,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must arrive within this (slow-header clients are cut off).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once per listener; more are closed at accept.
const MAX_CONNECTIONS: usize = 4096;

/// Binds a listener for the config field `field` (`http_addr`, ...); the error names both.
pub async fn bind(field: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {field} {addr}: {e}"))
}

/// Serves `router` over plain HTTP until `shutdown` fires. Requests carry a [`Peer`] with no
/// identity.
pub async fn serve_plain(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    accept_loop(listener, shutdown, move |tcp, addr| {
        let router = router.clone();
        async move {
            serve_conn(
                tcp,
                router,
                Peer {
                    addr,
                    identity: None,
                },
            )
            .await
        }
    })
    .await
}

/// Serves `router` over TLS with the current config of `tls` until `shutdown` fires.
pub async fn serve_tls(
    listener: TcpListener,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: CancellationToken,
) {
    accept_loop(listener, shutdown, move |tcp, addr| {
        let router = router.clone();
        let acceptor = TlsAcceptor::from(tls.borrow().clone());
        async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let identity = strait_identity::tls::peer_identity(stream.get_ref().1);
            serve_conn(stream, router, Peer { addr, identity }).await
        }
    })
    .await
}

async fn accept_loop<F, Fut>(listener: TcpListener, shutdown: CancellationToken, handle: F)
where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, addr) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, "{MAX_CONNECTIONS} connections open; closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = handle(tcp, addr);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn serve_conn<S>(stream: S, router: Router, peer: Peer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        req
    });
    let service = TowerToHyperService::new(service);
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "connection ended with error");
    }
}
