//! Outbound: the local app -> a plain listener on the upstream's `bind` -> an endpoint
//! picked round-robin (on connect or handshake failure the next one, up to all of them)
//! -> mTLS with SNI = the upstream's name, expecting exactly its SPIFFE ID.

use super::state::UpstreamKey;
use super::Shared;
use crate::copy::copy_streams;
use crate::listener::connect;
use crate::metrics::ListenerMetrics;
use crate::metrics::Reason as _;
use crate::reason::HandshakeFailure;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::net::TcpStream;
use tracing::Instrument;

pub(crate) async fn serve(
    shared: Arc<Shared>,
    lm: Arc<ListenerMetrics>,
    key: Arc<UpstreamKey>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let span = tracing::info_span!(
        "outbound",
        client = %peer,
        upstream = %key.destination,
        dc = %key.datacenter,
        endpoint = tracing::field::Empty,
    );
    serve_inner(&shared, &lm, &key, stream)
        .instrument(span)
        .await
}

async fn serve_inner(shared: &Shared, lm: &ListenerMetrics, key: &UpstreamKey, stream: TcpStream) {
    let options = &shared.options;
    let Some(state) = shared.states.borrow().clone() else {
        return;
    };
    let Some(upstream) = state.upstream(key) else {
        tracing::debug!("upstream no longer configured; closed");
        return;
    };
    let endpoints = &upstream.endpoints;
    if endpoints.is_empty() {
        lm.connect_errors.fetch_add(1, Relaxed);
        tracing::warn!("no healthy endpoints; closed");
        return;
    }
    let start = upstream.next.fetch_add(1, Relaxed);
    let mut tls_stream = None;
    for i in 0..endpoints.len() {
        let endpoint = endpoints[(start + i) % endpoints.len()];
        let tcp = match connect(endpoint, options.connect_timeout).await {
            Ok(tcp) => tcp,
            Err(err) => {
                lm.connect_errors.fetch_add(1, Relaxed);
                tracing::warn!(%endpoint, %err, "endpoint unreachable; trying the next");
                continue;
            }
        };
        let handshake = upstream.connector.connect(upstream.sni.clone(), tcp);
        match tokio::time::timeout(options.handshake_timeout, handshake).await {
            Ok(Ok(s)) => {
                tracing::Span::current().record("endpoint", tracing::field::display(endpoint));
                // Full or resumed (session tickets are on by default on both sides).
                tracing::debug!(handshake = ?s.get_ref().1.handshake_kind(), "connected");
                tls_stream = Some(s);
                break;
            }
            Ok(Err(err)) => {
                let reason = HandshakeFailure::of(&err);
                shared.metrics.handshake_outbound.inc(&reason);
                tracing::warn!(%endpoint, reason = reason.label(), %err, "upstream handshake failed; trying the next");
            }
            Err(_) => {
                shared
                    .metrics
                    .handshake_outbound
                    .inc(&HandshakeFailure::Timeout);
                tracing::warn!(%endpoint, "upstream handshake timed out; trying the next");
            }
        }
    }
    drop(state);
    let Some(tls_stream) = tls_stream else {
        tracing::warn!("every endpoint failed; closed");
        return;
    };
    match copy_streams(stream, tls_stream, lm, options.idle_timeout).await {
        Ok(moved) => tracing::debug!(rx = moved.rx, tx = moved.tx, "closed"),
        Err(err) => tracing::debug!(%err, "connection ended"),
    }
}
