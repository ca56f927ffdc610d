//! `GET /v1/agent/metrics`: the agent's state and work in Prometheus text format (Consul's
//! path; `?format=prometheus` accepted, no other format served).

use crate::state::Agent;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use strait_catalog::CheckStatus;
use strait_rpc::metrics::{Exposition, Kind};

/// Counters the agent's background loops bump.
#[derive(Debug, Default)]
pub struct Counters {
    /// Anti-entropy rounds the servers accepted.
    pub sync_ok: AtomicU64,
    /// Anti-entropy rounds that failed (server unreachable or refusing).
    pub sync_failed: AtomicU64,
}

pub async fn metrics(
    State(a): State<Arc<Agent>>,
    caller: crate::acl::Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(denied) = caller.check(|z| z.agent_read(&a.cfg.node_name)) {
        return denied.into_response();
    }
    strait_rpc::metrics::response(q.get("format").map(String::as_str), || render(&a))
}

fn render(a: &Agent) -> String {
    let mut e = Exposition::new();
    e.single(
        "strait_agent_joined",
        Kind::Gauge,
        "1 once the agent holds a certificate from its datacenter's servers, else 0.",
        u8::from(a.conn().is_some()),
    );
    e.single(
        "strait_agent_ready",
        Kind::Gauge,
        "1 when joined, synced once and holding a mesh view (/v1/agent/ready is 200), else 0.",
        u8::from(a.readiness().is_ok()),
    );
    e.single(
        "strait_agent_services",
        Kind::Gauge,
        "Services registered with this agent (sidecars and gateways included).",
        a.local.services().len(),
    );
    let mut checks: BTreeMap<CheckStatus, u64> = CheckStatus::ALL.map(|s| (s, 0)).into();
    for c in a.local.checks() {
        *checks.entry(CheckStatus::parse(&c.status)).or_insert(0) += 1;
    }
    let mut f = e.family(
        "strait_agent_checks",
        Kind::Gauge,
        "Health checks of this agent's services by status.",
    );
    for (st, n) in &checks {
        f.sample(&[("status", st.as_str())], n);
    }
    e.single(
        "strait_agent_proxies",
        Kind::Gauge,
        "Proxies (sidecars, gateways) registered with this agent.",
        a.local.proxies().len(),
    );
    let snapshots = strait_base::sync::lock(&a.snapshots).len();
    e.single(
        "strait_agent_proxy_snapshots",
        Kind::Gauge,
        "Proxy snapshots built and ready to serve.",
        snapshots,
    );
    let leaves: Vec<(String, i64)> = strait_base::sync::lock(&a.leaves)
        .iter()
        .map(|(svc, l)| (svc.clone(), l.not_after_unix))
        .collect();
    e.single(
        "strait_agent_leaf_certificates",
        Kind::Gauge,
        "Leaf certificates held for local services.",
        leaves.len(),
    );
    let now = strait_base::unix_now();
    let mut f = e.family(
        "strait_agent_leaf_certificate_expiry_seconds",
        Kind::Gauge,
        "Seconds until each held leaf certificate expires (negative: expired).",
    );
    for (svc, not_after) in &leaves {
        f.sample(&[("service", svc)], not_after - now);
    }
    let mut f = e.family(
        "strait_agent_sync_runs_total",
        Kind::Counter,
        "Anti-entropy rounds (full node state sent to the servers) by result.",
    );
    f.sample(&[("result", "ok")], a.counters.sync_ok.load(Relaxed));
    f.sample(
        &[("result", "failed")],
        a.counters.sync_failed.load(Relaxed),
    );
    a.http_requests.write("strait_agent", &mut e);
    e.finish()
}
