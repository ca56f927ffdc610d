//! What a sidecar and a gateway process share around their listeners: counters, the
//! connection cap, the applied-snapshot channel, the admin endpoint, and the shutdown
//! sequence (stop accepting -> `/ready` 503 -> drain under grace -> stop admin).

use crate::admin::{self, AdminState};
use crate::cli::Options;
use crate::drain::Connections;
use crate::metrics::Metrics;
use crate::snapshot_source::{SnapshotRx, SnapshotTx};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Shared pieces of one proxy process.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub options: Options,
    pub metrics: Arc<Metrics>,
    pub conns: Arc<Connections>,
    /// The snapshot whose configs the data path runs with.
    pub applied: SnapshotTx,
    pub admin_addr: Option<SocketAddr>,
    admin: Option<Arc<AdminState>>,
    admin_stop: CancellationToken,
    /// The admin endpoint's task, joined at the end of [`Runtime::shutdown`].
    admin_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Runtime {
    /// Builds the shared pieces and starts the admin endpoint if `options.admin` is set.
    pub(crate) async fn start(
        component: &'static str,
        options: Options,
    ) -> anyhow::Result<Runtime> {
        let metrics = Metrics::new(component);
        let (applied, applied_rx) = watch::channel(None);
        let admin_stop = CancellationToken::new();
        let mut admin_task = None;
        let (admin_addr, admin) = match options.admin {
            Some(addr) => {
                if !addr.ip().is_loopback() {
                    anyhow::bail!(
                        "admin address {addr}: the admin endpoint only listens on loopback"
                    );
                }
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("admin endpoint: cannot listen on {addr}: {e}"))?;
                let bound = listener.local_addr()?;
                let state = Arc::new(AdminState {
                    metrics: metrics.clone(),
                    applied: applied_rx,
                    draining: Default::default(),
                });
                admin_task = Some(tokio::spawn(admin::serve(
                    listener,
                    state.clone(),
                    admin_stop.clone(),
                )));
                tracing::info!(admin = %bound, "admin endpoint listening");
                (Some(bound), Some(state))
            }
            None => (None, None),
        };
        Ok(Runtime {
            conns: Connections::new(options.max_connections),
            options,
            metrics,
            applied,
            admin_addr,
            admin,
            admin_stop,
            admin_task: std::sync::Mutex::new(admin_task),
        })
    }

    pub(crate) fn applied_rx(&self) -> SnapshotRx {
        self.applied.subscribe()
    }

    /// After listeners stopped accepting: drain connections, then stop the admin endpoint.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        if let Some(admin) = &self.admin {
            admin.draining.store(true, Ordering::Relaxed);
        }
        self.conns.drain(grace).await;
        self.admin_stop.cancel();
        let task = strait_base::sync::lock(&self.admin_task).take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the admin endpoint's task failed");
            }
        }
    }
}
