//! Envoy proxies follow their snapshots over ADS (gRPC) on the agent's `grpc_addr`: the
//! same snapshots the built-in proxies get from `/v1/agent/proxy/snapshot/{id}`, rendered
//! to Envoy resources by `strait-envoy`.

use crate::state::Agent;
use std::sync::Arc;
use strait_snapshot::Snapshot;
use strait_systemd::lifecycle::Role;
use tokio::net::TcpListener;
use tokio::sync::watch;

struct AgentSnapshots(Arc<Agent>);

impl strait_envoy::SnapshotSource for AgentSnapshots {
    fn snapshot(&self, proxy_id: &str) -> Option<Arc<Snapshot>> {
        strait_base::sync::lock(&self.0.snapshots)
            .get(proxy_id)
            .cloned()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.0.snapshot_gen.subscribe()
    }
}

/// Serves ADS on the bound `listener` until the role stops, as the task `ads`.
pub fn start(agent: Arc<Agent>, listener: TcpListener, role: &Role) {
    let addr = listener.local_addr().ok();
    let shutdown = role.shutdown().clone();
    role.spawn(
        "ads",
        strait_envoy::serve(listener, Arc::new(AgentSnapshots(agent)), shutdown),
    );
    tracing::info!(addr = ?addr, "serving Envoy proxies over ADS");
}
