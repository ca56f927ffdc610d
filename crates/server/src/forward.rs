//! Reaching another DC's servers: always through mesh gateways, with the SNI
//! `server.<dc>.<td>` as the routing key and mTLS end to end (the gateways never decrypt).

use crate::state::Server;
use anyhow::{Context, Result};
use http::Method;
use std::net::SocketAddr;
use std::time::Duration;
use strait_identity::spiffe;
use strait_rpc::mesh::Outgoing;
use strait_rpc::Response;
use strait_snapshot::InstanceKind;

pub use strait_snapshot::BOOTSTRAP_TRUST_DOMAIN;

/// Gateways through which this server reaches DC `dc`, best first: this DC's own gateways
/// (mode local), then `dc`'s gateways from the federation state, then (for the primary) the
/// configured `primary_gateways`.
pub fn routes_to(server: &Server, dc: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = server
        .catalog
        .mesh_instances()
        .into_iter()
        .filter(|i| i.kind == InstanceKind::MeshGateway && i.healthy)
        .map(|i| i.addr)
        .collect();
    for state in server.catalog.federation_states() {
        if state.datacenter == dc {
            out.extend(
                state
                    .mesh_gateways
                    .iter()
                    .filter_map(|g| g.parse::<SocketAddr>().ok()),
            );
        }
    }
    if dc == server.cfg.primary_datacenter {
        out.extend(server.live.primary_gateways());
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| seen.insert(*a));
    out
}

/// One mTLS request to the servers of `dc`.
pub async fn call(
    server: &Server,
    dc: &str,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response> {
    let req = Outgoing {
        method,
        path_and_query,
        body,
        headers: &[],
    };
    send(server, dc, req, timeout).await
}

/// [`call`] with extra headers (a caller's `X-Consul-Token`).
pub async fn send(
    server: &Server,
    dc: &str,
    req: Outgoing<'_>,
    timeout: Duration,
) -> Result<Response> {
    let addrs = routes_to(server, dc);
    if addrs.is_empty() {
        anyhow::bail!("no mesh gateway known through which to reach datacenter {dc}");
    }
    let tls = server.client_tls_for(dc)?;
    let sni = spiffe::server_sni(dc, &server.ca().trust_domain);
    strait_rpc::mesh::send_any(tls, &addrs, &sni, req, timeout)
        .await
        .with_context(|| format!("cannot reach the servers of datacenter {dc} through {addrs:?}"))
}
