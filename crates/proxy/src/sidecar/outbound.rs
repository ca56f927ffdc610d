//! Outbound: the local app -> a plain listener on the upstream's `bind` -> the upstream's
//! chain of targets, in order: the first target with healthy endpoints, an endpoint picked
//! round-robin (on connect or handshake failure the next one, up to all of them); when every
//! endpoint of a target fails, the next target, all within one attempt bounded by the
//! resolver's `ConnectTimeout` -> mTLS with SNI = the target's name, expecting exactly its
//! SPIFFE ID.
//!
//! Each dial and each handshake has its own short deadline (`--connect-timeout`,
//! `--upstream-handshake-timeout`), so a gateway that accepts into its backlog but never
//! answers (a stopped process) costs one deadline, not the client's patience. With passive
//! health configured ([`super::passive`]), an endpoint that failed `MaxFailures` times in a
//! row is skipped by new connections until its ejection ends; a target whose endpoints are
//! all ejected is passed over like one without healthy endpoints.

use super::passive::{now_ms, Outlier};
use super::state::{TargetState, UpstreamKey, UpstreamState};
use super::tunnel::{self, OpenError};
use super::Shared;
use crate::copy::{copy_streams, log_end};
use crate::listener::connect;
use crate::metrics::ListenerMetrics;
use crate::metrics::Reason as _;
use crate::reason::HandshakeFailure;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
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
        target = tracing::field::Empty,
        endpoint = tracing::field::Empty,
    );
    let Some(upstream) = connect_upstream(&shared, &lm, &key)
        .instrument(span.clone())
        .await
    else {
        return;
    };
    let idle = shared.options.idle_timeout;
    let end = match upstream {
        Upstream::Tls(tls) => copy_streams(stream, tls, &lm, idle).await,
        Upstream::Tunnel(tunnel) => copy_streams(stream, tunnel, &lm, idle).await,
    };
    log_end(&span, end);
}

/// The upstream end of an outbound connection. Unboxed: it lives in the connection's future,
/// which `accept_loop` boxes once.
#[allow(clippy::large_enum_variant)]
enum Upstream {
    /// A TLS connection of its own (the peer does not speak tunnels, or `--multiplex off`).
    Tls(TlsStream<TcpStream>),
    /// A stream of the endpoint's tunnel.
    Tunnel(tunnel::Stream),
}

/// What dialling one endpoint gave.
#[allow(clippy::large_enum_variant)]
enum Dialled {
    Connected(Upstream),
    /// The endpoint failed (counted); the next one may do.
    Failed,
    /// The upstream refused the caller (intentions): nothing else is tried.
    Denied,
}

async fn connect_upstream(
    shared: &Shared,
    lm: &ListenerMetrics,
    key: &UpstreamKey,
) -> Option<Upstream> {
    let state = shared.states.borrow().clone()?;
    let Some(upstream) = state.upstream(key) else {
        tracing::debug!("upstream no longer configured; closed");
        return None;
    };
    dial_chain(shared, lm, upstream).await
}

/// Tries the chain's targets in order until one completes a handshake, within the
/// upstream's attempt deadline; counts the target that serves (and whether it is a failover).
async fn dial_chain(
    shared: &Shared,
    lm: &ListenerMetrics,
    upstream: &UpstreamState,
) -> Option<Upstream> {
    let options = &shared.options;
    let deadline = Instant::now() + upstream.connect_timeout.unwrap_or(options.attempt_timeout);
    let mut passed_over = false;
    // Ejected endpoints only when nothing else answered (Envoy's panic routing).
    let passes: &[Pass] = match upstream.passive_health {
        Some(_) => &[Pass::NotEjected, Pass::Ejected],
        None => &[Pass::All],
    };
    // Each pass over the targets in order (indexing, not nested iterators, whose closures'
    // lifetimes keep the connection's future from being `Send`).
    let chain = (0..passes.len() * upstream.targets.len()).map(|i| {
        let n = upstream.targets.len();
        (passes[i / n], &upstream.targets[i % n])
    });
    for (pass, target) in chain {
        if target.endpoints.is_empty() {
            passed_over = true;
            continue;
        }
        let passive = upstream.passive_health.as_ref().map(|config| Outlier {
            config,
            endpoints: &target.health,
        });
        let dialled = dial_target(shared, lm, target, passive.as_ref(), pass, deadline).await;
        if let Dialled::Denied = dialled {
            return None;
        }
        if let Dialled::Connected(connected) = dialled {
            let m = &target.metrics;
            m.connections.fetch_add(1, Relaxed);
            if passed_over {
                m.failovers.fetch_add(1, Relaxed);
                tracing::info!(target = %sni_of(target), "failed over");
            }
            m.last_seq
                .store(shared.metrics.next_connection_seq(), Relaxed);
            return Some(connected);
        }
        passed_over = true;
        if Instant::now() >= deadline {
            tracing::warn!("connect timeout of the upstream reached; closed");
            return None;
        }
        if pass != Pass::Ejected {
            tracing::warn!(target = %sni_of(target), "every endpoint of the target failed; trying the next target");
        }
    }
    if passed_over {
        tracing::warn!("no target of the upstream could be reached; closed");
    } else {
        lm.connect_errors.fetch_add(1, Relaxed);
        tracing::warn!("no healthy endpoints; closed");
    }
    None
}

fn sni_of(target: &TargetState) -> &str {
    match &target.sni {
        rustls_pki_types::ServerName::DnsName(name) => name.as_ref(),
        _ => "",
    }
}

/// Which endpoints of a target a pass over the chain dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Passive health off: every endpoint.
    All,
    NotEjected,
    /// After every target's other endpoints failed: the ejected ones, as a last resort.
    Ejected,
}

/// Each endpoint of `target` that `pass` selects once, round-robin, until one gives a
/// connection: a stream of its tunnel when one is open, else a new TLS connection (which
/// becomes the endpoint's tunnel when the peer selects [`tunnel::ALPN`]). Each failure and
/// success is reported to `passive`.
async fn dial_target(
    shared: &Shared,
    lm: &ListenerMetrics,
    target: &TargetState,
    passive: Option<&Outlier<'_>>,
    pass: Pass,
    deadline: Instant,
) -> Dialled {
    let options = &shared.options;
    let endpoints = &target.endpoints;
    let start = target.next.fetch_add(1, Relaxed);
    let failed = |index: usize, endpoint: SocketAddr| {
        if passive.is_some_and(|p| p.failure(index, now_ms())) {
            target.metrics.ejections.fetch_add(1, Relaxed);
            tracing::warn!(%endpoint, "endpoint ejected by passive health");
        }
    };
    for i in 0..endpoints.len() {
        let index = (start + i) % endpoints.len();
        let endpoint = endpoints[index];
        let selected = match pass {
            Pass::All => true,
            Pass::NotEjected => !target.health[index].is_ejected(now_ms()),
            Pass::Ejected => target.health[index].is_ejected(now_ms()),
        };
        if !selected {
            continue;
        }
        let done = |upstream| connected(passive.is_some(), target, index, endpoint, upstream);
        if let Some((pooled, slot)) = target.tunnels[index].get(options.tunnel_max_age) {
            let limit = limit(options, deadline);
            let opened =
                tokio::time::timeout(limit, open_stream(shared, target, pooled.send, slot)).await;
            match opened {
                Ok(Ok(stream)) => return done(Upstream::Tunnel(stream)),
                Ok(Err(err @ (OpenError::Tunnel(_) | OpenError::Misdirected))) => {
                    // Closed by its server (idle, draining, new roots) or cut: a new
                    // connection may work.
                    target.tunnels[index].remove(pooled.generation);
                    tracing::debug!(%endpoint, %err, "tunnel closed; dialling a new connection");
                }
                Ok(Err(OpenError::Denied)) => return denied(shared),
                Ok(Err(err)) => {
                    failed(index, endpoint);
                    tracing::warn!(%endpoint, %err, "endpoint refused the stream; trying the next");
                    continue;
                }
                Err(_) => {
                    target.tunnels[index].remove(pooled.generation);
                    failed(index, endpoint);
                    tracing::warn!(%endpoint, "no answer on the endpoint's tunnel; trying the next");
                    continue;
                }
            }
        }
        // A new tunnel's first stream may meet its server closing it (GOAWAY: a drain, a
        // trust root removed), before serving it: that is no failure of the endpoint, and a
        // second new connection gets the stream served.
        for _ in 0..2 {
            if Instant::now() >= deadline {
                // The attempt's time is up: no fault of this endpoint's.
                return Dialled::Failed;
            }
            match dial_endpoint(shared, lm, target, index, endpoint, deadline).await {
                Attempt::Connected(upstream) => return done(upstream),
                Attempt::Denied => return denied(shared),
                Attempt::Failed => {
                    failed(index, endpoint);
                    break;
                }
                Attempt::Closing => {}
            }
        }
    }
    Dialled::Failed
}

/// The time one step with the endpoint may take: `--upstream-handshake-timeout`, within what
/// is left of the upstream's attempt.
fn limit(options: &crate::cli::Options, deadline: Instant) -> Duration {
    options
        .upstream_handshake_timeout
        .min(deadline.saturating_duration_since(Instant::now()))
        .max(Duration::from_millis(1))
}

/// What one new connection to an endpoint gave.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Connected(Upstream),
    /// The endpoint failed (logged, not counted yet).
    Failed,
    Denied,
    /// A new tunnel that its server closed before serving the first stream.
    Closing,
}

/// A new TLS connection to `endpoint`; when its server selects [`tunnel::ALPN`], it becomes
/// one of the endpoint's tunnels and the connection a stream of it.
async fn dial_endpoint(
    shared: &Shared,
    lm: &ListenerMetrics,
    target: &TargetState,
    index: usize,
    endpoint: SocketAddr,
    deadline: Instant,
) -> Attempt {
    let options = &shared.options;
    let left = deadline.saturating_duration_since(Instant::now());
    let tcp = match connect(endpoint, options.connect_timeout.min(left)).await {
        Ok(tcp) => tcp,
        Err(err) => {
            lm.connect_errors.fetch_add(1, Relaxed);
            tracing::warn!(%endpoint, %err, "endpoint unreachable; trying the next");
            return Attempt::Failed;
        }
    };
    let handshake = target.connector.connect(target.sni.clone(), tcp);
    let limit = limit(options, deadline);
    let tls = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(err)) => {
            let reason = HandshakeFailure::of(&err);
            shared.metrics.handshake_outbound.inc(&reason);
            tracing::warn!(%endpoint, reason = reason.label(), %err, "upstream handshake failed; trying the next");
            return Attempt::Failed;
        }
        Err(_) => {
            shared
                .metrics
                .handshake_outbound
                .inc(&HandshakeFailure::Timeout);
            tracing::warn!(%endpoint, ?limit, "upstream handshake timed out; trying the next");
            return Attempt::Failed;
        }
    };
    // A resumed session brings the certificate of its first handshake, not verified again.
    let conn = tls.get_ref().1;
    if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
        && strait_identity::tls::peer_identity_until(conn)
            .is_none_or(|(_, until)| until <= std::time::SystemTime::now())
    {
        let expired = HandshakeFailure::Tls(strait_identity::tls::TlsFailure::Expired);
        shared.metrics.handshake_outbound.inc(&expired);
        tracing::warn!(%endpoint, "upstream's certificate expired (resumed session); trying the next");
        return Attempt::Failed;
    }
    // Full or resumed (session tickets are on by default on both sides).
    shared.metrics.handshakes_outbound.count(tls.get_ref().1);
    tracing::debug!(handshake = ?tls.get_ref().1.handshake_kind(), "connected");
    if tls.get_ref().1.alpn_protocol() != Some(tunnel::ALPN) {
        return Attempt::Connected(Upstream::Tls(tls));
    }
    let tls = tunnel::Coalesced::new(tls.into());
    let (send, connection) = match tunnel::client_builder().handshake(tls).await {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(%endpoint, %err, "tunnel setup failed; trying the next");
            return Attempt::Failed;
        }
    };
    let metrics = shared.metrics.clone();
    metrics.tunnels_outbound.fetch_add(1, Relaxed);
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%endpoint, %err, "tunnel ended");
        }
        metrics.tunnels_outbound.fetch_sub(1, Relaxed);
    });
    let pool = &target.tunnels[index];
    let (slot, generation) = pool.offer(&send, options.tunnel_max_age);
    let opened = tokio::time::timeout(limit, open_stream(shared, target, send, slot)).await;
    if matches!(
        opened,
        Err(_) | Ok(Err(OpenError::Tunnel(_) | OpenError::Misdirected))
    ) {
        // Closing, failed or silent: no later connection should try it.
        pool.remove(generation);
    }
    match opened {
        Ok(Ok(stream)) => Attempt::Connected(Upstream::Tunnel(stream)),
        Ok(Err(OpenError::Denied)) => Attempt::Denied,
        Ok(Err(err)) if err.tunnel_closing() => {
            tracing::debug!(%endpoint, %err, "new tunnel closing before its first stream; dialling again");
            Attempt::Closing
        }
        Ok(Err(err)) => {
            tracing::warn!(%endpoint, %err, "endpoint refused the stream; trying the next");
            Attempt::Failed
        }
        Err(_) => {
            tracing::warn!(%endpoint, ?limit, "no answer on a new tunnel; trying the next");
            Attempt::Failed
        }
    }
}

/// Opens a stream to `target` on the tunnel `send`, counted.
async fn open_stream(
    shared: &Shared,
    target: &TargetState,
    send: h2::client::SendRequest<bytes::Bytes>,
    slot: tunnel::Slot,
) -> Result<tunnel::Stream, OpenError> {
    let stream = tunnel::open(send, slot, &target.authority).await?;
    shared.metrics.tunnel_streams_outbound.fetch_add(1, Relaxed);
    Ok(stream)
}

/// Records the endpoint that gave the connection.
fn connected(
    passive: bool,
    target: &TargetState,
    index: usize,
    endpoint: SocketAddr,
    upstream: Upstream,
) -> Dialled {
    if passive {
        target.health[index].success(now_ms());
    }
    let span = tracing::Span::current();
    span.record("endpoint", tracing::field::display(endpoint));
    span.record("target", sni_of(target));
    Dialled::Connected(upstream)
}

fn denied(shared: &Shared) -> Dialled {
    shared.metrics.tunnel_streams_denied.fetch_add(1, Relaxed);
    tracing::info!("denied by the upstream's intentions; closed");
    Dialled::Denied
}
