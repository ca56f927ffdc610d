//! Anti-entropy: what the agent holds is what the catalog shows. The agent sends its complete
//! node state on every local change and every few seconds (the server does not bump its index
//! when nothing changed, so this is cheap); after either side restarts, the next round heals.

use crate::state::Agent;
use http::Method;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use strait_catalog::Node;
use strait_proto::SyncRequest;
use tokio_util::sync::CancellationToken;

/// How often the full state is re-sent without local changes (also the liveness heartbeat).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(agent: Arc<Agent>, shutdown: CancellationToken) {
    let mut changes = agent.local.subscribe();
    loop {
        let req = SyncRequest {
            node: Node {
                node: agent.cfg.node_name.clone(),
                address: agent.cfg.advertise_addr.to_string(),
                datacenter: agent.cfg.datacenter.clone(),
                ..Default::default()
            },
            services: agent.local.services(),
            checks: agent.local.checks(),
        };
        let path = "/v1/internal/sync";
        let result = match serde_json::to_vec(&req) {
            Ok(body) => {
                agent
                    .call(Method::PUT, path, Some(body), Duration::from_secs(5))
                    .await
            }
            Err(e) => Err(e.into()),
        };
        let wait = match result.and_then(|r| Ok(r.ok()?)) {
            Ok(()) => {
                agent.counters.sync_ok.fetch_add(1, Relaxed);
                agent.mark_synced();
                SYNC_INTERVAL
            }
            Err(e) => {
                agent.counters.sync_failed.fetch_add(1, Relaxed);
                tracing::warn!(error = %format!("{e:#}"), "anti-entropy sync failed; retrying");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
