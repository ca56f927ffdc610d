//! `GET /v1/agent/metrics`: the server's state and API traffic in Prometheus text format.
//!
//! The path is Consul's (where servers are agents too), so a scrape config written for Consul
//! (`/v1/agent/metrics?format=prometheus`) works unchanged against strait servers and agents.
//! Only the Prometheus format is served.

use super::{authorize, ApiResult, AppState, Origin, Params};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Extension;
use std::collections::BTreeMap;
use strait_rpc::metrics::{Exposition, Kind};
use strait_rpc::serve::Peer;

/// The route whose 2xx answers are leaf certificates signed.
const SIGN_ROUTE: &str = "/v1/internal/sign";
/// Agents join (and renew their own certificate) through this route.
const JOIN_ROUTE: &str = "/v1/internal/join";

pub async fn metrics(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: super::authz::Caller,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    authorize(origin, &peer, "read metrics", |_| true)?;
    caller.check(|a| a.agent_read(&s.cfg.node_name))?;
    Ok(strait_rpc::metrics::response(
        q.get("format").map(String::as_str),
        || render(&s),
    ))
}

fn render(s: &AppState) -> String {
    let mut e = Exposition::new();
    let dc = s.cfg.datacenter.as_str();
    e.single(
        "strait_server_ready",
        Kind::Gauge,
        "1 once the server is ready (CA up, federation joined), else 0.",
        u8::from(s.is_ready()),
    );
    e.single(
        "strait_server_catalog_index",
        Kind::Gauge,
        "Current catalog index (the X-Consul-Index of blocking queries).",
        s.catalog.index(),
    );
    e.single(
        "strait_server_catalog_nodes",
        Kind::Gauge,
        "Nodes registered in this datacenter's catalog.",
        s.catalog.nodes().len(),
    );
    let services = s.catalog.services();
    e.single(
        "strait_server_catalog_services",
        Kind::Gauge,
        "Distinct service names registered in this datacenter's catalog.",
        services.len(),
    );
    let mut members: BTreeMap<String, u64> = ["alive", "failed", "unknown"]
        .iter()
        .map(|st| (st.to_string(), 0))
        .collect();
    for m in s.members() {
        *members.entry(m.status).or_insert(0) += 1;
    }
    let mut f = e.family(
        "strait_server_members",
        Kind::Gauge,
        "Members of this datacenter by liveness (alive: synced in the last 20s).",
    );
    for (status, n) in &members {
        f.sample(&[("dc", dc), ("status", status)], n);
    }
    let gateways = s.catalog.federation_gateways();
    e.single(
        "strait_server_federation_states",
        Kind::Gauge,
        "Datacenters with a federation state (this one included once it has gateways).",
        gateways.len(),
    );
    let mut f = e.family(
        "strait_server_federation_gateways",
        Kind::Gauge,
        "Mesh gateways each datacenter's federation state lists.",
    );
    for (peer_dc, addrs) in &gateways {
        f.sample(&[("dc", peer_dc)], addrs.len());
    }
    if let Some(ca) = s.ca_opt() {
        e.single(
            "strait_server_ca_roots",
            Kind::Gauge,
            "Root certificates of the federation this server trusts.",
            ca.roots_pem.len(),
        );
    }
    e.single(
        "strait_server_leaf_certificates_signed_total",
        Kind::Counter,
        "Leaf certificates signed for agents' services since start.",
        s.http_requests.succeeded(SIGN_ROUTE),
    );
    e.single(
        "strait_server_agent_joins_total",
        Kind::Counter,
        "Successful agent joins and agent certificate renewals since start.",
        s.http_requests.succeeded(JOIN_ROUTE),
    );
    s.http_requests.write("strait_server", &mut e);
    e.finish()
}
