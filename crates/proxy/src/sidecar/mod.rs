//! The sidecar: one outbound listener per upstream (plain TCP from the local app -> mTLS to
//! the upstream, [`outbound`]) and the public mTLS listener (-> the local app, [`inbound`]).
//!
//! A supervisor follows the snapshot channel: each newer snapshot is turned into a
//! [`state::SidecarState`] (rustls configs built once), published through a `watch`, and
//! listeners are started or stopped for upstreams that appear, move or disappear.
//! Established connections keep the state they started with and are never dropped by a
//! snapshot change.

pub(crate) mod inbound;
pub(crate) mod outbound;
pub mod passive;
pub mod state;
pub(crate) mod tunnel;

use crate::cli::Options;
use crate::listener::{accept_loop, bind_with_retry};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::snapshot_source::SnapshotRx;
use state::{SidecarState, UpstreamKey};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use strait_snapshot::Snapshot;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What every sidecar connection task reads.
pub(crate) struct Shared {
    pub options: Options,
    pub metrics: Arc<Metrics>,
    pub states: watch::Receiver<Option<Arc<SidecarState>>>,
}

/// Addresses the sidecar's listeners are bound to (ports chosen by the OS when a snapshot
/// says `:0`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bound {
    pub public: Option<SocketAddr>,
    pub upstreams: BTreeMap<UpstreamKey, SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ListenerKey {
    Inbound,
    Upstream(Arc<UpstreamKey>),
}

/// A running sidecar.
pub struct SidecarHandle {
    metrics: Arc<Metrics>,
    admin_addr: Option<SocketAddr>,
    applied: SnapshotRx,
    bound: watch::Receiver<Bound>,
    task: tokio::task::JoinHandle<()>,
}

impl SidecarHandle {
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }
    /// Listener addresses as bound now; changes as snapshots arrive.
    pub fn bound(&self) -> watch::Receiver<Bound> {
        self.bound.clone()
    }
    /// Resolves once a snapshot is applied (certificate and configs are in).
    pub async fn ready(&self) {
        let mut applied = self.applied.clone();
        let _ = applied.wait_for(|s| s.is_some()).await;
    }
    /// Waits until `pred` holds for the bound addresses, and returns them.
    pub async fn wait_bound(&self, pred: impl FnMut(&Bound) -> bool) -> Bound {
        let mut bound = self.bound.clone();
        let result = bound.wait_for(pred).await.map(|b| b.clone());
        result.unwrap_or_default()
    }
    /// Waits until shutdown and drain are complete.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("sidecar task failed: {e}"))
    }
}

/// Starts a sidecar following `snapshots`. On `shutdown` it stops accepting and drains
/// connections under `options.grace`.
pub async fn start_sidecar(
    options: Options,
    snapshots: SnapshotRx,
    shutdown: CancellationToken,
) -> anyhow::Result<SidecarHandle> {
    let runtime = Runtime::start("sidecar", options.clone()).await?;
    let (states_tx, states) = watch::channel(None);
    let (bound_tx, bound) = watch::channel(Bound::default());
    let shared = Arc::new(Shared {
        options,
        metrics: runtime.metrics.clone(),
        states,
    });
    let supervisor = Supervisor {
        runtime,
        shared,
        states: states_tx,
        bound: Arc::new(bound_tx),
        listeners: HashMap::new(),
        tasks: JoinSet::new(),
    };
    Ok(SidecarHandle {
        metrics: supervisor.runtime.metrics.clone(),
        admin_addr: supervisor.runtime.admin_addr,
        applied: supervisor.runtime.applied_rx(),
        bound,
        task: tokio::spawn(supervisor.run(snapshots, shutdown)),
    })
}

struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
}

struct Supervisor {
    runtime: Runtime,
    shared: Arc<Shared>,
    states: watch::Sender<Option<Arc<SidecarState>>>,
    bound: Arc<watch::Sender<Bound>>,
    listeners: HashMap<ListenerKey, Running>,
    tasks: JoinSet<()>,
}

impl Supervisor {
    async fn run(mut self, mut snapshots: SnapshotRx, shutdown: CancellationToken) {
        loop {
            let latest = snapshots.borrow_and_update().clone();
            if let Some(snapshot) = latest {
                self.apply(snapshot, &shutdown);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = snapshots.changed() => if changed.is_err() {
                    shutdown.cancelled().await;
                    break;
                },
                // Listener tasks end only when stopped; reap them so the set stays small.
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        }
        for running in self.listeners.values() {
            running.stop.cancel();
        }
        while self.tasks.join_next().await.is_some() {}
        self.runtime.shutdown(self.runtime.options.grace).await;
    }

    fn apply(&mut self, snapshot: Arc<Snapshot>, shutdown: &CancellationToken) {
        let current = self.runtime.applied.borrow().as_ref().map(|s| s.version);
        if current.is_some_and(|v| v >= snapshot.version) {
            return;
        }
        let state = match SidecarState::build(
            &snapshot,
            &self.runtime.metrics,
            self.shared.options.multiplex,
        ) {
            Ok(state) => Arc::new(state),
            Err(err) => {
                tracing::error!(%err, "snapshot refused; keeping the current one");
                self.runtime
                    .metrics
                    .snapshots_rejected
                    .fetch_add(1, Relaxed);
                return;
            }
        };
        tracing::info!(
            version = snapshot.version,
            upstreams = state.upstreams.len(),
            public_listener = %state.public_listener,
            "sidecar snapshot applied"
        );
        self.states.send_replace(Some(state.clone()));
        self.runtime.applied.send_replace(Some(snapshot));
        self.runtime.metrics.snapshots_applied.fetch_add(1, Relaxed);
        self.reconcile(&state, shutdown);
    }

    /// Starts, moves and stops listeners to match `state`.
    fn reconcile(&mut self, state: &SidecarState, shutdown: &CancellationToken) {
        let mut desired: HashMap<ListenerKey, SocketAddr> = state
            .upstreams
            .iter()
            .map(|u| (ListenerKey::Upstream(Arc::new(u.key.clone())), u.bind))
            .collect();
        desired.insert(ListenerKey::Inbound, state.public_listener);
        self.listeners.retain(|key, running| {
            let keep = desired.get(key) == Some(&running.addr);
            if !keep {
                tracing::info!(?key, addr = %running.addr, "stopping listener");
                running.stop.cancel();
            }
            keep
        });
        for (key, addr) in desired {
            if self.listeners.contains_key(&key) {
                continue;
            }
            let stop = shutdown.child_token();
            self.listeners.insert(
                key.clone(),
                Running {
                    addr,
                    stop: stop.clone(),
                },
            );
            self.tasks.spawn(run_listener(
                key,
                addr,
                self.shared.clone(),
                self.runtime.conns.clone(),
                self.bound.clone(),
                stop,
            ));
        }
    }
}

async fn run_listener(
    key: ListenerKey,
    addr: SocketAddr,
    shared: Arc<Shared>,
    conns: Arc<crate::drain::Connections>,
    bound: Arc<watch::Sender<Bound>>,
    stop: CancellationToken,
) {
    let name = match &key {
        ListenerKey::Inbound => "inbound".to_string(),
        ListenerKey::Upstream(k) => k.listener_name(),
    };
    let Some(listener) = bind_with_retry(&name, addr, &stop).await else {
        return;
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(err) => {
            tracing::error!(listener = name, %err, "listener has no local address");
            return;
        }
    };
    tracing::info!(listener = name, %local, "listening");
    let set = |b: &mut Bound, value: Option<SocketAddr>| match &key {
        ListenerKey::Inbound => b.public = value,
        ListenerKey::Upstream(k) => {
            match value {
                Some(v) => b.upstreams.insert((**k).clone(), v),
                None => b.upstreams.remove(&**k),
            };
        }
    };
    bound.send_modify(|b| set(b, Some(local)));
    let lm = shared.metrics.listener(&name);
    match &key {
        ListenerKey::Inbound => {
            let handler_lm = lm.clone();
            let (handler_conns, handler_stop) = (conns.clone(), stop.clone());
            accept_loop(listener, lm, conns, stop, |stream, peer| {
                inbound::serve(
                    shared.clone(),
                    handler_lm.clone(),
                    handler_conns.clone(),
                    handler_stop.clone(),
                    stream,
                    peer,
                )
            })
            .await
        }
        ListenerKey::Upstream(upstream) => {
            let handler_lm = lm.clone();
            accept_loop(listener, lm, conns, stop, |stream, peer| {
                outbound::serve(
                    shared.clone(),
                    handler_lm.clone(),
                    upstream.clone(),
                    stream,
                    peer,
                )
            })
            .await
        }
    }
    // Forget the address unless a newer listener for the same key already replaced it.
    bound.send_if_modified(|b| {
        let current = match &key {
            ListenerKey::Inbound => b.public,
            ListenerKey::Upstream(k) => b.upstreams.get(&**k).copied(),
        };
        if current == Some(local) {
            set(b, None);
            true
        } else {
            false
        }
    });
}
