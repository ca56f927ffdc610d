//! Inbound: a caller's sidecar (or gateway-carried connection) -> plain TCP to the local app
//! -> mTLS handshake with `ClientAuth::Required` -> the caller's verified SPIFFE ID goes into
//! the connection's span and is checked against the intentions of the snapshot the
//! connection started under -> bytes both ways.
//!
//! The app is dialled before the handshake so that a dead app fails the caller's handshake
//! (closed before the ServerHello) rather than a completed connection: the caller's sidecar
//! then tries its next endpoint or failover target within the same attempt. No byte reaches
//! the app before the caller is authenticated and admitted.
//!
//! A caller that offers a tunnel ([`super::tunnel`], seen in its ClientHello) gets one: the
//! app is dialled for each stream instead, after the stream is admitted, and a dead app
//! answers the stream `503`.

use super::state::SidecarState;
use super::tunnel;
use super::Shared;
use crate::copy::{copy_streams, log_end};
use crate::drain::Connections;
use crate::listener::connect;
use crate::metrics::{ListenerMetrics, Reason as _};
use crate::reason::HandshakeFailure;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use strait_identity::tls::{self, TlsFailure};
use strait_identity::SpiffeId;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub(crate) async fn serve(
    shared: Arc<Shared>,
    lm: Arc<ListenerMetrics>,
    conns: Arc<Connections>,
    stop: CancellationToken,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let span = tracing::info_span!("inbound", client = %peer, peer_id = tracing::field::Empty);
    let Some(admitted) = admit(&shared, &lm, stream).instrument(span.clone()).await else {
        return;
    };
    match admitted {
        Admitted::Connection(tls_stream, app) => {
            let end = copy_streams(tls_stream, app, &lm, shared.options.idle_timeout).await;
            log_end(&span, end);
        }
        Admitted::Tunnel(tls_stream, verified) => {
            serve_tunnel(shared, lm, conns, stop, tls_stream, verified, span).await
        }
    }
}

/// An authenticated caller.
enum Admitted {
    /// One connection, admitted by the intentions, and the app dialled for it.
    Connection(TlsStream<TcpStream>, TcpStream),
    /// A tunnel: each of its streams is admitted (and the app dialled) on its own.
    Tunnel(TlsStream<TcpStream>, Verified),
}

/// What a tunnel's handshake verified of its caller, and until when it holds: the tunnel
/// takes new streams until the caller's certificate expires or one of these roots is removed.
struct Verified {
    caller: SpiffeId,
    roots_pem: Vec<String>,
    not_after: SystemTime,
}

/// Completes the handshake and, for a connection of its own, dials the app and checks the
/// caller against the intentions; None (logged) when the connection is refused.
async fn admit(shared: &Shared, lm: &ListenerMetrics, stream: TcpStream) -> Option<Admitted> {
    let options = &shared.options;
    let state = shared.states.borrow().clone()?;
    let deadline = Instant::now() + options.handshake_timeout;
    let refused = |err: std::io::Error| -> Option<Admitted> {
        let reason = HandshakeFailure::of(&err);
        shared.metrics.handshake_inbound.inc(&reason);
        if reason == HandshakeFailure::Eof {
            // TCP health checks and port probes: connect, then close before a hello.
            tracing::debug!("closed before the TLS handshake");
        } else {
            tracing::info!(reason = reason.label(), %err, "inbound handshake refused");
        }
        None
    };
    let timed_out = || -> Option<Admitted> {
        shared
            .metrics
            .handshake_inbound
            .inc(&HandshakeFailure::Timeout);
        tracing::info!("inbound handshake timed out");
        None
    };
    let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = match tokio::time::timeout_at(deadline, hello).await {
        Ok(Ok(start)) => start,
        Ok(Err(err)) => return refused(err),
        Err(_) => return timed_out(),
    };
    let offers_tunnel = start
        .client_hello()
        .alpn()
        .is_some_and(|mut offered| offered.any(|p| p == tunnel::ALPN));
    let (config, app) = match &state.tunnel_server {
        Some(config) if offers_tunnel => (config.clone(), None),
        _ => (
            state.server.clone(),
            Some(dial_app(shared, lm, &state).await?),
        ),
    };
    let tls_stream = match tokio::time::timeout_at(deadline, start.into_stream(config)).await {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(err)) => return refused(err),
        Err(_) => return timed_out(),
    };
    let Some((id, not_after)) = tls::peer_identity_until(tls_stream.get_ref().1) else {
        // ClientAuth::Required makes this unreachable; refuse rather than forward anonymously.
        let no_certificate = HandshakeFailure::Tls(TlsFailure::NoCertificate);
        shared.metrics.handshake_inbound.inc(&no_certificate);
        tracing::warn!("handshake completed without a peer identity; closed");
        return None;
    };
    if not_after <= SystemTime::now() {
        // A resumed session: its certificate was verified at the first handshake, when it
        // was still valid.
        shared
            .metrics
            .handshake_inbound
            .inc(&HandshakeFailure::Tls(TlsFailure::Expired));
        tracing::info!(peer_id = %id, "caller's certificate expired (resumed session); refused");
        return None;
    }
    shared
        .metrics
        .handshakes_inbound
        .count(tls_stream.get_ref().1);
    tracing::Span::current().record("peer_id", tracing::field::display(&id));
    let Some(app) = app else {
        tracing::debug!("tunnel from the caller");
        let verified = Verified {
            caller: id,
            roots_pem: state.roots_pem.clone(),
            not_after,
        };
        return Some(Admitted::Tunnel(tls_stream, verified));
    };
    if !admits(shared, &state, &id) {
        return None;
    }
    tracing::debug!(local_app = %state.local_app, "forwarding to the local app");
    Some(Admitted::Connection(tls_stream, app))
}

/// The local app: dialled before the handshake of a connection of its own, so that a dead
/// app fails the caller's handshake; for a tunnel's stream, before its answer.
async fn dial_app(
    shared: &Shared,
    lm: &ListenerMetrics,
    state: &SidecarState,
) -> Option<TcpStream> {
    let local_app = state.local_app;
    match connect(local_app, shared.options.connect_timeout).await {
        Ok(app) => Some(app),
        Err(err) => {
            lm.connect_errors.fetch_add(1, Relaxed);
            tracing::warn!(%local_app, %err, "local app unreachable; refused");
            None
        }
    }
}

/// Whether the intentions of `state` let `id` in (counted and logged when not).
fn admits(shared: &Shared, state: &SidecarState, id: &SpiffeId) -> bool {
    if state.admits(id) {
        return true;
    }
    shared.metrics.intentions_denied.fetch_add(1, Relaxed);
    tracing::info!("denied by intentions; closed");
    false
}

/// Serves the streams of a tunnel until its client closes it, it carried no stream for the
/// idle timeout (the handshake deadline while no stream was admitted yet: a caller the
/// intentions refuse holds its slot no longer than an unfinished handshake would), the
/// proxy drains, a trust root the caller was verified under is removed or the caller's
/// certificate expires (what the handshake verified no longer holds: streams that arrive
/// after that are answered `421`). Each time it sends GOAWAY: streams in flight finish, new
/// ones go to a new connection, verified anew. Each stream takes a connection slot and runs
/// as a connection task of its own.
async fn serve_tunnel(
    shared: Arc<Shared>,
    lm: Arc<ListenerMetrics>,
    conns: Arc<Connections>,
    stop: CancellationToken,
    tls_stream: TlsStream<TcpStream>,
    verified: Verified,
    span: tracing::Span,
) {
    let tls_stream = tunnel::Coalesced::new(tls_stream.into());
    // The client's preface and settings, within the handshake deadline: a caller that
    // completes TLS and then says nothing holds no slot for longer.
    let handshake = tunnel::server_builder().handshake(tls_stream);
    let mut connection =
        match tokio::time::timeout(shared.options.handshake_timeout, handshake).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => {
                span.in_scope(|| tracing::debug!(%err, "tunnel setup failed"));
                return;
            }
            Err(_) => {
                span.in_scope(|| {
                    tracing::info!("no tunnel preface before the handshake deadline; closed")
                });
                return;
            }
        };
    let open_tunnels = &shared.metrics.tunnels_inbound;
    open_tunnels.fetch_add(1, Relaxed);
    let caller = Arc::new(verified.caller);
    let expires = verified
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let expiry = tokio::time::sleep(expires);
    tokio::pin!(expiry);
    // Not marked seen: a snapshot applied since `admit` read the roots is compared too.
    let mut states = shared.states.clone();
    let mut watching = true;
    // What the handshake verified no longer holds: GOAWAY sent, and a stream the client sent
    // before it saw that is answered `421` (it retries on a new connection, verified anew).
    let mut revoked = false;
    let streams = Arc::new(AtomicUsize::new(0));
    let carried = Arc::new(AtomicBool::new(false));
    let mut draining = false;
    let mut idle_since = Some(Instant::now());
    loop {
        let idle = match carried.load(Relaxed) {
            true => shared.options.idle_timeout,
            false => shared
                .options
                .idle_timeout
                .min(shared.options.handshake_timeout),
        };
        let tick = (idle / 4).max(Duration::from_millis(5));
        let accepted = tokio::select! {
            accepted = connection.accept() => accepted,
            _ = stop.cancelled(), if !draining => {
                draining = true;
                connection.graceful_shutdown();
                continue;
            }
            changed = states.changed(), if watching && !revoked => {
                watching = changed.is_ok();
                revoked = roots_removed(&mut states, &verified.roots_pem);
                if revoked {
                    span.in_scope(|| tracing::info!("a trust root the caller was verified under is gone; tunnel closing for new streams"));
                    if !draining {
                        draining = true;
                        connection.graceful_shutdown();
                    }
                }
                continue;
            }
            _ = &mut expiry, if !revoked => {
                revoked = true;
                span.in_scope(|| tracing::info!("caller's certificate expired; tunnel closing for new streams"));
                if !draining {
                    draining = true;
                    connection.graceful_shutdown();
                }
                continue;
            }
            _ = tokio::time::sleep(tick), if !draining => {
                if streams.load(Relaxed) > 0 {
                    idle_since = None;
                } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= idle {
                    draining = true;
                    span.in_scope(|| tracing::debug!(?idle, "tunnel idle; closing"));
                    connection.graceful_shutdown();
                }
                continue;
            }
        };
        let (request, mut respond) = match accepted {
            None => break,
            Some(Ok(pair)) => pair,
            Some(Err(err)) => {
                span.in_scope(|| tracing::debug!(%err, "tunnel ended"));
                break;
            }
        };
        if request.method() != http::Method::CONNECT {
            respond.send_reset(h2::Reason::PROTOCOL_ERROR);
            continue;
        }
        // A snapshot applied or the certificate expired since the last turn: judged first.
        if !revoked && watching && states.has_changed().unwrap_or(false) {
            revoked = roots_removed(&mut states, &verified.roots_pem);
        }
        revoked |= SystemTime::now() >= verified.not_after;
        if revoked {
            if !draining {
                draining = true;
                span.in_scope(|| tracing::info!("what the caller was verified under no longer holds; tunnel closing for new streams"));
                connection.graceful_shutdown();
            }
            if let Ok(misdirected) = http::Response::builder()
                .status(http::StatusCode::MISDIRECTED_REQUEST)
                .body(())
            {
                let _ = respond.send_response(misdirected, true);
            }
            continue;
        }
        let Some(guard) = conns.admit(&lm) else {
            lm.rejected_max_connections.fetch_add(1, Relaxed);
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        };
        lm.accepted.fetch_add(1, Relaxed);
        streams.fetch_add(1, Relaxed);
        idle_since = None;
        let stream = serve_stream(
            shared.clone(),
            lm.clone(),
            caller.clone(),
            request.into_body(),
            respond,
            span.clone(),
            carried.clone(),
        );
        let streams = streams.clone();
        conns.spawn(Box::pin(async move {
            stream.await;
            streams.fetch_sub(1, Relaxed);
            drop(guard);
        }));
    }
    open_tunnels.fetch_sub(1, Relaxed);
}

/// Whether the snapshot now current (marked seen) trusts no longer one of the roots a tunnel's
/// caller was verified under (a CA rotation's end: new roots alone change nothing).
fn roots_removed(
    states: &mut tokio::sync::watch::Receiver<Option<Arc<SidecarState>>>,
    verified_under: &[String],
) -> bool {
    states.borrow_and_update().as_ref().is_some_and(|state| {
        verified_under
            .iter()
            .any(|root| !state.roots_pem.contains(root))
    })
}

/// One stream of a tunnel: admitted by the intentions of the snapshot current now, then
/// the app dialled, answered `200` and bytes copied; `403` when denied, `503` when the app
/// is unreachable.
async fn serve_stream(
    shared: Arc<Shared>,
    lm: Arc<ListenerMetrics>,
    caller: Arc<SpiffeId>,
    rx: h2::RecvStream,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    tunnel: tracing::Span,
    carried: Arc<AtomicBool>,
) {
    let span = tracing::info_span!(parent: &tunnel, "stream");
    let answer = |status| http::Response::builder().status(status).body(());
    let app = async {
        let state = shared.states.borrow().clone()?;
        if !admits(&shared, &state, &caller) {
            if let Ok(denied) = answer(http::StatusCode::FORBIDDEN) {
                let _ = respond.send_response(denied, true);
            }
            return None;
        }
        let Some(app) = dial_app(&shared, &lm, &state).await else {
            if let Ok(unavailable) = answer(http::StatusCode::SERVICE_UNAVAILABLE) {
                let _ = respond.send_response(unavailable, true);
            }
            return None;
        };
        Some(app)
    }
    .instrument(span.clone())
    .await;
    let Some(app) = app else { return };
    let Ok(ok) = answer(http::StatusCode::OK) else {
        return;
    };
    let tx = match respond.send_response(ok, false) {
        Ok(tx) => tx,
        Err(err) => {
            return span.in_scope(|| tracing::debug!(%err, "stream reset before its answer"))
        }
    };
    shared.metrics.tunnel_streams_inbound.fetch_add(1, Relaxed);
    carried.store(true, Relaxed);
    let stream = tunnel::Stream::new(tx, rx);
    let end = copy_streams(stream, app, &lm, shared.options.idle_timeout).await;
    log_end(&span, end);
}
