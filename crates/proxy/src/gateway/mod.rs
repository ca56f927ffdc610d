//! The mesh gateway: read the ClientHello's SNI without decrypting ([`hello`]), route it with
//! [`GatewaySnapshot::route`] to a local service's sidecars, this DC's servers or another
//! DC's gateways, replay the buffered hello to the chosen endpoint, then splice bytes both
//! ways. A refused connection is closed and counted by reason; nothing else is affected.

pub mod hello;

use crate::cli::Options;
use crate::copy::log_end;
use crate::copy::splice::{splice_bidirectional, Mode};
use crate::listener::{accept_loop, connect};
use crate::metrics::{ListenerMetrics, Metrics};
use crate::reason::Refusal;
use crate::runtime::Runtime;
use crate::snapshot_source::SnapshotRx;
use hello::read_hello;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use strait_identity::spiffe;
use strait_snapshot::{GatewayRoute, GatewaySnapshot, Snapshot, WrongKind};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One route of the table (a local service, this DC's servers, a remote DC): its routed
/// counter and where its round-robin starts. One per route, so that routes taken in turn do
/// not leave one route's connections all on the same endpoint.
#[derive(Debug)]
struct Route {
    routed: Arc<AtomicU64>,
    next: AtomicUsize,
}

impl Route {
    fn new(routed: Arc<AtomicU64>) -> Route {
        Route {
            routed,
            next: AtomicUsize::new(0),
        }
    }
}

/// Routing table of one applied snapshot, with its counters resolved once.
#[derive(Debug)]
struct GatewayState {
    /// The applied snapshot's routing tables.
    gateway: GatewaySnapshot,
    /// The gateway's own, for [`GatewaySnapshot::route`].
    trust_domain: String,
    datacenter: String,
    /// Local service name -> its route.
    local: HashMap<String, Route>,
    servers: Route,
    /// Remote DC -> its route.
    remote: HashMap<String, Route>,
}

impl GatewayState {
    /// Refuses a sidecar's snapshot (a `--snapshot-file` written for another proxy).
    fn build(snapshot: &Snapshot, metrics: &Metrics) -> Result<GatewayState, WrongKind> {
        let gw = snapshot.gateway()?;
        let (dc, td) = (&snapshot.datacenter, &snapshot.trust_domain);
        let local = gw
            .local_services
            .keys()
            .map(|svc| {
                let sni = spiffe::service_sni(svc, spiffe::DEFAULT_NAMESPACE, dc, td);
                (svc.clone(), Route::new(metrics.routed_counter(dc, &sni)))
            })
            .collect();
        let servers = Route::new(metrics.routed_counter(dc, &spiffe::server_sni(dc, td)));
        let remote = gw
            .remote_gateways
            .keys()
            .map(|r| (r.clone(), Route::new(metrics.routed_counter(r, "*"))))
            .collect();
        Ok(GatewayState {
            local,
            servers,
            remote,
            gateway: gw.clone(),
            trust_domain: td.clone(),
            datacenter: dc.clone(),
        })
    }
}

/// What every connection task of the gateway reads.
struct Shared {
    options: Options,
    metrics: Arc<Metrics>,
    states: watch::Receiver<Option<Arc<GatewayState>>>,
}

/// A running gateway.
pub struct GatewayHandle {
    metrics: Arc<Metrics>,
    local_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    applied: SnapshotRx,
    task: tokio::task::JoinHandle<()>,
}

impl GatewayHandle {
    /// Bound addresses of the listeners, in the order they were given.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    /// Resolves once a snapshot is applied (the gateway can route).
    pub async fn ready(&self) {
        let mut applied = self.applied.clone();
        let _ = applied.wait_for(|s| s.is_some()).await;
    }
    /// Waits until shutdown and drain are complete.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("gateway task failed: {e}"))
    }
}

/// Starts a gateway on already-bound `listeners` (name, listener), following `snapshots`.
/// On `shutdown` it stops accepting and drains connections under `options.grace`.
pub async fn start_gateway(
    options: Options,
    listeners: Vec<(String, TcpListener)>,
    mut snapshots: SnapshotRx,
    shutdown: CancellationToken,
) -> anyhow::Result<GatewayHandle> {
    let runtime = Runtime::start("gateway", options.clone()).await?;
    let (states_tx, states) = watch::channel(None);
    let shared = Arc::new(Shared {
        options,
        metrics: runtime.metrics.clone(),
        states,
    });
    let mut local_addrs = Vec::with_capacity(listeners.len());
    let mut tasks = JoinSet::new();
    for (name, listener) in listeners {
        local_addrs.push(listener.local_addr()?);
        let lm = runtime.metrics.listener(&name);
        let shared = shared.clone();
        let conns = runtime.conns.clone();
        let stop = shutdown.clone();
        tasks.spawn(accept_loop(
            listener,
            lm.clone(),
            conns,
            stop,
            move |stream, peer| serve_conn(shared.clone(), lm.clone(), stream, peer),
        ));
    }
    let handle = GatewayHandle {
        metrics: runtime.metrics.clone(),
        local_addrs,
        admin_addr: runtime.admin_addr,
        applied: runtime.applied_rx(),
        task: tokio::spawn(async move {
            loop {
                let latest = snapshots.borrow_and_update().clone();
                if let Some(snapshot) = latest {
                    apply(&runtime, &states_tx, snapshot);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    changed = snapshots.changed() => if changed.is_err() {
                        shutdown.cancelled().await;
                        break;
                    },
                }
            }
            while tasks.join_next().await.is_some() {}
            runtime.shutdown(runtime.options.grace).await;
        }),
    };
    Ok(handle)
}

fn apply(
    runtime: &Runtime,
    states: &watch::Sender<Option<Arc<GatewayState>>>,
    snapshot: Arc<Snapshot>,
) {
    let current = runtime.applied.borrow().as_ref().map(|s| s.version);
    if current.is_some_and(|v| v >= snapshot.version) {
        return;
    }
    match GatewayState::build(&snapshot, &runtime.metrics) {
        Ok(state) => {
            let gw = &state.gateway;
            tracing::info!(
                version = snapshot.version,
                local_services = gw.local_services.len(),
                local_servers = gw.local_servers.len(),
                remote_dcs = gw.remote_gateways.len(),
                "gateway snapshot applied"
            );
            states.send_replace(Some(Arc::new(state)));
            runtime.applied.send_replace(Some(snapshot));
            runtime.metrics.snapshots_applied.fetch_add(1, Relaxed);
        }
        Err(err) => {
            tracing::error!(%err, "snapshot refused; keeping the current one");
            runtime.metrics.snapshots_rejected.fetch_add(1, Relaxed);
        }
    }
}

async fn serve_conn(
    shared: Arc<Shared>,
    lm: Arc<ListenerMetrics>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let span = tracing::info_span!("gateway", client = %peer, sni = tracing::field::Empty);
    let upstream = match route(&shared, &lm, &stream).instrument(span.clone()).await {
        Ok(Some(upstream)) => upstream,
        Ok(None) => return,
        Err(refusal) => {
            shared.metrics.hello_rejected.inc(&refusal);
            return;
        }
    };
    let options = &shared.options;
    let end =
        splice_bidirectional(&stream, &upstream, &lm, options.idle_timeout, Mode::Splice).await;
    log_end(&span, end);
}

/// Reads the hello, routes, connects and replays the hello upstream: the upstream to copy
/// to, None when it closed before the hello was replayed, or Err: why nothing was forwarded.
async fn route(
    shared: &Shared,
    lm: &ListenerMetrics,
    stream: &TcpStream,
) -> Result<Option<TcpStream>, Refusal> {
    let options = &shared.options;
    let mut buf = Vec::with_capacity(4096);
    let read = read_hello(stream, &mut buf, options.max_hello_size);
    let sni = match tokio::time::timeout(options.handshake_timeout, read).await {
        Err(_) => {
            tracing::debug!(bytes = buf.len(), "ClientHello timed out");
            return Err(Refusal::Timeout);
        }
        Ok(Err(err)) => {
            tracing::debug!(reason = err.as_str(), bytes = buf.len(), %err, "refused");
            return Err(Refusal::Hello(err));
        }
        Ok(Ok(sni)) => sni,
    };
    tracing::Span::current().record("sni", sni.as_str());
    let Some(state) = shared.states.borrow().clone() else {
        return Err(Refusal::NotReady);
    };
    let route = state
        .gateway
        .route(&sni, &state.trust_domain, &state.datacenter)
        .map_err(|err| {
            tracing::debug!(%err, "refused");
            Refusal::Route(err)
        })?;
    let (endpoints, slot, remote) = match route {
        GatewayRoute::LocalService { service, endpoints } => {
            (endpoints, state.local.get(service), false)
        }
        GatewayRoute::LocalServers(endpoints) => (endpoints, Some(&state.servers), false),
        GatewayRoute::RemoteDc { dc, gateways } => (gateways, state.remote.get(dc), true),
    };
    let start = slot.map_or(0, |s| s.next.fetch_add(1, Relaxed));
    let mut upstream = None;
    for i in 0..endpoints.len() {
        let endpoint = endpoints[(start + i) % endpoints.len()];
        match connect(endpoint, options.connect_timeout).await {
            Ok(s) => {
                upstream = Some(s);
                break;
            }
            Err(err) => {
                lm.connect_errors.fetch_add(1, Relaxed);
                tracing::warn!(%endpoint, %err, "endpoint unreachable; trying the next");
            }
        }
    }
    // Closing at once (rather than waiting for the client to give up) fails the caller's
    // handshake, so its sidecar moves on to the next target of its chain.
    let Some(mut upstream) = upstream else {
        return Err(if remote {
            Refusal::RemoteGatewaysUnreachable
        } else {
            Refusal::UpstreamUnreachable
        });
    };
    if let Some(slot) = slot {
        slot.routed.fetch_add(1, Relaxed);
    }
    drop(state);
    if let Err(err) = upstream.write_all(&buf).await {
        tracing::debug!(%err, "upstream closed before the hello was replayed");
        return Ok(None);
    }
    lm.bytes_rx.fetch_add(buf.len() as u64, Relaxed);
    Ok(Some(upstream))
}
