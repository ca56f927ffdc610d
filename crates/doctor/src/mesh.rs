//! Node-level checks: the local agent, its servers, and the federation (each DC's gateways
//! and, through them, its servers).

use crate::client::{tcp_probe_all, Http};
use crate::report::Report;
use std::net::SocketAddr;
use std::time::Duration;
use strait_catalog::FederationState;

/// What the local agent says about itself.
#[derive(Debug, Clone)]
pub(crate) struct Local {
    pub node: String,
    pub dc: String,
}

/// `local agent`: `/v1/agent/self` answers and `/v1/agent/ready` is 200. None stops the run:
/// every later check goes through the agent.
/// `found`: how the caller chose the agent, for the hint.
pub(crate) async fn local_agent(r: &mut Report, agent: &Http, found: &str) -> Option<Local> {
    const NAME: &str = "local agent";
    let me: serde_json::Value = match agent.json("/v1/agent/self").await {
        Ok(v) => v,
        Err(e) => {
            r.fail(
                NAME,
                format!("{e:#}"),
                format!(
                    "is `strait agent` running with http_addr {}? ({found}); pass --http-addr or set STRAIT_HTTP_ADDR",
                    agent.addr
                ),
            );
            return None;
        }
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let local = Local {
        node: text(&me["Config"]["NodeName"]),
        dc: text(&me["Config"]["Datacenter"]),
    };
    let what = format!("node {} in {} at {}", local.node, local.dc, agent.addr);
    match agent.get("/v1/agent/ready").await {
        Ok(resp) if resp.status.is_success() => r.pass(NAME, format!("{what}, ready")),
        Ok(resp) => r.fail(
            NAME,
            format!(
                "{what}, {}",
                String::from_utf8_lossy(&resp.body).trim()
            ),
            "the agent has not joined or synced yet: read its log for join/sync errors (token, servers list)",
        ),
        Err(e) => r.fail(NAME, format!("{e:#}"), "the agent stopped answering; read its log"),
    }
    Some(local)
}

/// `server`: the agent reaches one of its servers over mTLS (`/v1/status/leader` is forwarded).
pub(crate) async fn server(r: &mut Report, agent: &Http) {
    const NAME: &str = "server";
    match agent.json::<String>("/v1/status/leader").await {
        Ok(leader) => r.pass(NAME, format!("reachable through the agent (leader {leader})")),
        Err(e) => r.fail(
            NAME,
            format!("{e:#}"),
            "the agent cannot reach its servers: check `servers` in the agent config, that `strait server` runs and is ready (/v1/status/ready), and the agent log",
        ),
    }
}

/// `federation <dc>`: every DC in the federation states lists gateways that accept TCP, and
/// every other DC's servers answer through them. Returns the states for later checks.
pub(crate) async fn federation(
    r: &mut Report,
    agent: &Http,
    local: &Local,
    timeout: Duration,
) -> Vec<FederationState> {
    let states: Vec<FederationState> = match agent.json("/v1/internal/federation/states").await {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                "federation states",
                format!("{e:#}"),
                "the servers could not be asked for federation states; fix the `server` check first",
            );
            return Vec::new();
        }
    };
    if states.is_empty() {
        r.pass(
            "federation states",
            "none: a single datacenter without mesh gateways",
        );
        return states;
    }
    for st in &states {
        let name = format!("federation {} gateways", st.datacenter);
        let addrs = gateway_addrs(st);
        if addrs.is_empty() {
            r.fail(&name, "no mesh gateway in the federation state", format!("start a mesh gateway in {} (`strait gateway --mesh`) whose agent is joined; secondaries publish their state to the primary through a primary gateway", st.datacenter));
            continue;
        }
        match tcp_probe_all(&addrs, timeout).await {
            Ok(ok) => r.pass(&name, ok),
            Err(bad) => r.fail(
                &name,
                format!("refused or silent: {bad}"),
                format!("the gateway of {} is down or not listening: check its process and admin /ready (`strait lab status`)", st.datacenter),
            ),
        }
    }
    for st in states.iter().filter(|s| s.datacenter != local.dc) {
        let name = format!("federation {} servers", st.datacenter);
        let path = format!("/v1/status/leader?dc={}", st.datacenter);
        match agent.json::<String>(&path).await {
            Ok(leader) => r.pass(
                &name,
                format!("reachable through the gateways (leader {leader})"),
            ),
            Err(e) => r.fail(
                &name,
                format!("{e:#}"),
                format!("server -> local gateway -> {} gateway -> {} server is broken: check both gateways (above) and the servers' logs", st.datacenter, st.datacenter),
            ),
        }
    }
    states
}

/// The WAN addresses a federation state lists (unparsable entries are skipped).
pub(crate) fn gateway_addrs(st: &FederationState) -> Vec<SocketAddr> {
    st.mesh_gateways
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}
