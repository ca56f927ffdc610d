//! Envoy proxies follow their snapshots over ADS (gRPC) on the agent's `grpc_addr`: the
//! same snapshots the built-in proxies get from `/v1/agent/proxy/snapshot/{id}`, rendered
//! to Envoy resources by `strait-envoy`. With ACLs on, a stream's token (gRPC metadata
//! `x-consul-token`, else the agent's `acl.tokens.default`) needs `service:write` on the
//! proxy's service (a sidecar's destination, a gateway's own), as for its snapshot over HTTP.

use crate::state::Agent;
use std::sync::Arc;
use strait_envoy::Authorizing;
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

    fn authorize(&self, proxy_id: &str, token: Option<String>) -> Authorizing {
        let agent = self.0.clone();
        let proxy_id = proxy_id.to_owned();
        Box::pin(async move {
            let secret = agent.acl.or_default(token.as_deref());
            let auth = agent
                .authorizer(secret.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if auth.is_management() {
                return Ok(());
            }
            let proxies = agent.local.proxies();
            let Some(p) = proxies.iter().find(|p| p.proxy_id == proxy_id) else {
                return Err(format!(
                    "no proxy {proxy_id:?} is registered with this agent: with ACLs on, its \
                     registration says which service's token the stream needs"
                ));
            };
            auth.service_write(&p.service).map_err(|d| d.to_string())
        })
    }

    /// With ACLs on, every `token_ttl`: a revoked token ends its stream within about twice
    /// that, even when no snapshot changes.
    fn recheck_every(&self) -> Option<std::time::Duration> {
        self.0.cfg.acl.enabled.then(|| self.0.cfg.acl.token_ttl())
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
