//! Inbound: a caller's sidecar (or gateway-carried connection) -> plain TCP to the local app
//! -> mTLS handshake with `ClientAuth::Required` -> the caller's verified SPIFFE ID goes into
//! the connection's span and is checked against the intentions of the snapshot the
//! connection started under -> bytes both ways.
//!
//! The app is dialled before the handshake so that a dead app fails the caller's handshake
//! (closed before the ServerHello) rather than a completed connection: the caller's sidecar
//! then tries its next endpoint or failover target within the same attempt. No byte reaches
//! the app before the caller is authenticated and admitted.

use super::Shared;
use crate::copy::{copy_streams, log_end};
use crate::listener::connect;
use crate::metrics::{ListenerMetrics, Reason as _};
use crate::reason::HandshakeFailure;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use strait_identity::tls::{self, TlsFailure};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

pub(crate) async fn serve(
    shared: Arc<Shared>,
    lm: Arc<ListenerMetrics>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let span = tracing::info_span!("inbound", client = %peer, peer_id = tracing::field::Empty);
    let Some((tls_stream, app)) = admit(&shared, &lm, stream).instrument(span.clone()).await else {
        return;
    };
    let end = copy_streams(tls_stream, app, &lm, shared.options.idle_timeout).await;
    log_end(&span, end);
}

/// Dials the app, completes the handshake and checks the caller against the intentions:
/// the two ends to copy between, or None (logged) when the connection is refused.
async fn admit(
    shared: &Shared,
    lm: &ListenerMetrics,
    stream: TcpStream,
) -> Option<(TlsStream<TcpStream>, TcpStream)> {
    let options = &shared.options;
    let state = shared.states.borrow().clone()?;
    let acceptor = state.acceptor.clone();
    let local_app = state.local_app;
    let app = match connect(local_app, options.connect_timeout).await {
        Ok(app) => app,
        Err(err) => {
            lm.connect_errors.fetch_add(1, Relaxed);
            tracing::warn!(%local_app, %err, "local app unreachable; closed before the handshake");
            return None;
        }
    };
    let tls_stream =
        match tokio::time::timeout(options.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => tls_stream,
            Ok(Err(err)) => {
                let reason = HandshakeFailure::of(&err);
                shared.metrics.handshake_inbound.inc(&reason);
                if reason == HandshakeFailure::Eof {
                    // TCP health checks and port probes: connect, then close before a hello.
                    tracing::debug!("closed before the TLS handshake");
                } else {
                    tracing::info!(reason = reason.label(), %err, "inbound handshake refused");
                }
                return None;
            }
            Err(_) => {
                shared
                    .metrics
                    .handshake_inbound
                    .inc(&HandshakeFailure::Timeout);
                tracing::info!("inbound handshake timed out");
                return None;
            }
        };
    shared
        .metrics
        .handshakes_inbound
        .count(tls_stream.get_ref().1);
    match tls::peer_identity(tls_stream.get_ref().1) {
        Some(id) => {
            tracing::Span::current().record("peer_id", tracing::field::display(&id));
            if !state.admits(&id) {
                shared.metrics.intentions_denied.fetch_add(1, Relaxed);
                tracing::info!("denied by intentions; closed");
                return None;
            }
        }
        None => {
            // ClientAuth::Required makes this unreachable; refuse rather than forward anonymously.
            let no_certificate = HandshakeFailure::Tls(TlsFailure::NoCertificate);
            shared.metrics.handshake_inbound.inc(&no_certificate);
            tracing::warn!("handshake completed without a peer identity; closed");
            return None;
        }
    }
    tracing::debug!(%local_app, "forwarding to the local app");
    Some((tls_stream, app))
}
