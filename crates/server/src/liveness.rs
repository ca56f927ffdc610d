//! Node liveness, Consul's `serfHealth` without gossip: every agent syncs its node through the
//! Raft log every 5 s (anti-entropy), so every server knows when it last applied one
//! ([`crate::replicated::CatalogApp::synced`]). The leader's task `node-liveness` marks a node
//! whose agent has not synced for [`NODE_TIMEOUT`] with a critical node check `serfHealth`
//! ("Agent alive"): a node check counts for every service of the node, so a stopped, paused or
//! cut-off VM's services (a hung gateway's too) leave the mesh view. The agent's next sync
//! replaces its node's checks, which removes the mark.
//!
//! A server that just became leader, or started, gives every node it has not seen sync a full
//! [`NODE_TIMEOUT`] from then on. Servers' own nodes are not marked (they sync once). Nodes are
//! marked only while they are fewer than half of the agents (autopilot's rule for dead
//! servers): when most agents go silent at once, the server is more likely the one cut off,
//! and marking them all would take the DC's services out of the mesh the moment the
//! partition heals. So a DC of one or two agents never marks.

use crate::replicated::Command;
use crate::state::Server;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_catalog::{status, Catalog, Check};
use strait_systemd::lifecycle::Role;

/// How long an agent may go without syncing before its node is marked: two missed syncs and
/// some slack (agents sync every 5 s).
pub const NODE_TIMEOUT: Duration = Duration::from_secs(12);

/// Consul's name for the node check that says whether the node's agent is alive.
pub const CHECK_ID: &str = "serfHealth";

/// Starts the leader's task `node-liveness`.
pub fn spawn(server: &Arc<Server>, role: &Role) {
    role.spawn_cancellable("node-liveness", watch(server.clone()));
}

async fn watch(server: Arc<Server>) -> anyhow::Result<()> {
    // Nodes this server has not seen sync: when it started to wait for them.
    let mut waiting: HashMap<String, Instant> = HashMap::new();
    let mut warned = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some((consensus, _)) = server.leading() else {
            waiting.clear();
            continue;
        };
        let now = Instant::now();
        let synced = strait_base::sync::lock(&consensus.app().synced).clone();
        let agents: Vec<String> = server
            .catalog
            .nodes()
            .into_iter()
            .filter(|n| {
                n.meta.get("strait-role").map(String::as_str) != Some("server")
                    && n.node != server.cfg.node_name
            })
            .map(|n| n.node)
            .collect();
        let silent: Vec<(String, Duration)> = agents
            .iter()
            .filter_map(|node| {
                let last = match synced.get(node) {
                    Some(at) => *at,
                    None => *waiting.entry(node.clone()).or_insert(now),
                };
                let silent = now.saturating_duration_since(last);
                (silent >= NODE_TIMEOUT).then(|| (node.clone(), silent))
            })
            .collect();
        if silent.is_empty() {
            continue;
        }
        // Half of the agents or more silent at once: more likely this server is the one cut
        // off (a partition, its own network) than they all died; marking them would take the
        // DC's services out of the mesh the moment it is back, until each agent syncs again.
        if silent.len() * 2 >= agents.len() {
            if !warned {
                tracing::warn!(
                    silent = silent.len(),
                    agents = agents.len(),
                    "most agents have not synced for 12 s: not marking their nodes (this server may be the one cut off)"
                );
                warned = true;
            }
            continue;
        }
        warned = false;
        for (node, silent) in silent {
            if is_marked(&server.catalog, &node) {
                continue;
            }
            let output = format!(
                "the node's agent has not synced for {} s: stopped, paused or cut off",
                silent.as_secs()
            );
            tracing::warn!(%node, silent_s = silent.as_secs(), "node unreachable: its services leave the mesh until its agent syncs again");
            if let Err(e) = server
                .write(Command::NodeUnreachable {
                    node: node.clone(),
                    output,
                })
                .await
            {
                tracing::info!(%node, error = %e, "cannot mark the node unreachable yet");
            }
        }
    }
}

/// Whether `node` already carries a critical `serfHealth` check.
fn is_marked(catalog: &Catalog, node: &str) -> bool {
    catalog.node_checks(node).is_some_and(|checks| {
        checks
            .iter()
            .any(|c| c.check_id == CHECK_ID && c.status == status::CRITICAL)
    })
}

/// Applies [`Command::NodeUnreachable`]: adds the critical node check (a node the catalog no
/// longer has is left alone).
pub fn mark_unreachable(
    catalog: &Catalog,
    node: &str,
    output: String,
) -> Result<u64, strait_catalog::CatalogError> {
    let Some(record) = catalog.nodes().into_iter().find(|n| n.node == node) else {
        return Ok(catalog.index());
    };
    let check = Check {
        node: node.to_owned(),
        check_id: CHECK_ID.into(),
        name: "Agent alive".into(),
        status: status::CRITICAL.into(),
        output,
        ..Check::default()
    };
    catalog.register(record, vec![], vec![check])
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_catalog::{Node, Service};

    /// A marked node's services are unhealthy in the mesh view; its agent's next sync
    /// removes the mark.
    #[test]
    fn a_marked_node_leaves_the_mesh_until_its_agent_syncs() {
        let catalog = Catalog::replicated();
        let node = Node {
            node: "web-node".into(),
            address: "10.0.0.5".into(),
            datacenter: "dc1".into(),
            ..Node::default()
        };
        let web = Service {
            id: "web".into(),
            service: "web".into(),
            port: 8080,
            ..Service::default()
        };
        catalog
            .sync_node(node.clone(), vec![web.clone()], vec![])
            .unwrap();
        let healthy = |c: &Catalog| c.mesh_instances().iter().all(|i| i.healthy);
        assert!(healthy(&catalog));
        mark_unreachable(&catalog, "web-node", "not synced for 12 s".into()).unwrap();
        assert!(is_marked(&catalog, "web-node"));
        assert!(!healthy(&catalog));
        catalog.sync_node(node, vec![web], vec![]).unwrap();
        assert!(!is_marked(&catalog, "web-node"));
        assert!(healthy(&catalog));
        // A node that is gone is left alone.
        assert!(mark_unreachable(&catalog, "gone", String::new()).is_ok());
    }
}
