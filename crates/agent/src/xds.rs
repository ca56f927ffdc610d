//! Envoy proxies follow their snapshots over ADS (gRPC) on the agent's `grpc_addr`: the
//! same snapshots the built-in proxies get from `/v1/agent/proxy/snapshot/{id}`, rendered
//! to Envoy resources by `strait-envoy`.

use crate::state::Agent;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use strait_snapshot::Snapshot;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct AgentSnapshots(Arc<Agent>);

impl strait_envoy::SnapshotSource for AgentSnapshots {
    fn snapshot(&self, proxy_id: &str) -> Option<Arc<Snapshot>> {
        self.0
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(proxy_id)
            .cloned()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.0.snapshot_gen.subscribe()
    }
}

/// Binds `addr` (so a taken port fails the start) and serves ADS until `shutdown`.
pub async fn start(agent: Arc<Agent>, addr: SocketAddr, shutdown: CancellationToken) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind grpc_addr {addr}"))?;
    tokio::spawn(async move {
        if let Err(e) =
            strait_envoy::serve(listener, Arc::new(AgentSnapshots(agent)), shutdown).await
        {
            tracing::error!(%addr, error = %e, "the ADS server stopped");
        }
    });
    tracing::info!(%addr, "serving Envoy proxies over ADS");
    Ok(())
}
