//! Node-level checks: the local agent, its servers, and the federation (each DC's gateways
//! and, through them, its servers).

use crate::client::{Http, Probe};
use crate::report::Report;
use crate::sidecar::list;
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
    let mut probes = Vec::new();
    for st in &states {
        let name = format!("federation {} gateways", st.datacenter);
        let addrs = gateway_addrs(st);
        let probe = Probe::all(&addrs, timeout).await;
        if addrs.is_empty() {
            r.fail(&name, "no mesh gateway in the federation state", format!("start a mesh gateway in {} (`strait gateway --mesh`) whose agent is joined; secondaries publish their state to the primary through a primary gateway", st.datacenter));
        } else if !probe.failed.is_empty() {
            r.fail(
                &name,
                format!("refused or silent: {}", probe.failed.join("; ")),
                format!("the gateways of {} are down or not listening (check their process and admin /ready, `strait lab status`), or the WAN between this VM and them is cut (a partition, a firewall)", st.datacenter),
            );
        } else if probe.no_route.is_empty() {
            r.pass(
                &name,
                format!("{} accept(s) TCP connections", list(&probe.accepting)),
            );
        } else {
            // A VM off the WAN (servers, services) cannot probe the WAN addresses; the
            // servers' check below goes through the gateways.
            r.pass(
                &name,
                format!(
                    "{}: no route from this VM (only gateways are on the WAN; the path through them is checked below)",
                    list(&probe.no_route)
                ),
            );
        }
        probes.push((st.datacenter.clone(), probe));
    }
    let probe_of = |dc: &str| {
        probes
            .iter()
            .find(|(d, _)| d == dc)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    };
    for st in states.iter().filter(|s| s.datacenter != local.dc) {
        let name = format!("federation {} servers", st.datacenter);
        let path = format!("/v1/status/leader?dc={}", st.datacenter);
        match agent.json::<String>(&path).await {
            Ok(leader) => r.pass(
                &name,
                format!("reachable through the gateways (leader {leader})"),
            ),
            Err(e) => {
                let local_gateways = match probe_of(&local.dc) {
                    p if p.no_route.is_empty() => p,
                    _ => Probe::all(&lan_gateways(agent).await, timeout).await,
                };
                let (detail, hint) =
                    broken_hop(&local.dc, &local_gateways, st, &probe_of(&st.datacenter));
                r.fail(&name, format!("{detail} ({e:#})"), hint);
            }
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

/// The LAN addresses of this DC's mesh gateways (`mesh-gateway` in the catalog, the name
/// `strait gateway` registers by default): what this DC's VMs dial.
async fn lan_gateways(agent: &Http) -> Vec<SocketAddr> {
    let Ok(entries) = agent
        .json::<Vec<serde_json::Value>>("/v1/catalog/service/mesh-gateway")
        .await
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let lan = &e["ServiceTaggedAddresses"]["lan"];
            let (host, port) = match lan["Address"].as_str() {
                Some(host) => (host, lan["Port"].as_u64()),
                None => (e["ServiceAddress"].as_str()?, e["ServicePort"].as_u64()),
            };
            format!("{host}:{}", port?).parse().ok()
        })
        .collect()
}

/// When another DC's servers do not answer through the gateways: which hop of
/// server -> local gateway -> remote gateway -> remote server is broken, from what the
/// gateways' probes found (detail, hint).
fn broken_hop(
    local_dc: &str,
    local: &Probe,
    remote: &FederationState,
    remote_probe: &Probe,
) -> (String, String) {
    let dc = &remote.datacenter;
    let remote_addrs = list(&gateway_addrs(remote));
    if local.accepting.is_empty() {
        let seen = if local.failed.is_empty() {
            "none found in the catalog (mesh-gateway)".to_owned()
        } else {
            local.failed.join("; ")
        };
        return (
            format!("{dc}'s servers do not answer through the gateways, and {local_dc}'s gateways do not accept connections: {seen}"),
            format!("the first hop (server -> {local_dc} gateway) is broken: start {local_dc}'s gateway and check its admin /ready"),
        );
    }
    if !remote_probe.accepting.is_empty() && remote_probe.failed.is_empty() {
        return (
            format!("{dc}'s servers do not answer through {local_dc}'s gateways ({}) and {dc}'s gateways ({remote_addrs}), though both accept connections from this VM", list(&local.accepting)),
            format!("a gateway has no route for {dc}'s servers (its log: `gateway snapshot applied ... remote_dcs=`), or {dc}'s gateway cannot reach {dc}'s servers: read both gateways' logs and {dc}'s servers' logs"),
        );
    }
    (
        format!("{local_dc} gateway cannot reach {dc}'s gateways at {remote_addrs}: {local_dc}'s gateways ({}) accept connections, {dc}'s servers do not answer through them", list(&local.accepting)),
        format!("the WAN hop {local_dc} gateway -> {dc} gateway is broken: the WAN between them is cut (a partition, a firewall, `strait lab heal`) or {dc}'s gateways are down; from a {local_dc} gateway VM, `strait doctor` probes {remote_addrs} directly"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_broken_hop_is_named_from_the_gateway_probes() {
        let dc2 = FederationState {
            datacenter: "dc2".into(),
            mesh_gateways: vec!["10.213.0.11:8443".into()],
            updated_index: 1,
        };
        let accepting = |a: &str| Probe {
            accepting: vec![addr(a)],
            ..Probe::default()
        };
        // From a services VM off the WAN: dc2's gateways have no route, dc1's accept.
        let no_route = Probe {
            no_route: vec![addr("10.213.0.11:8443")],
            ..Probe::default()
        };
        let (detail, hint) = broken_hop("dc1", &accepting("10.213.1.11:8443"), &dc2, &no_route);
        assert!(
            detail.starts_with("dc1 gateway cannot reach dc2's gateways at 10.213.0.11:8443"),
            "{detail}"
        );
        assert!(
            hint.contains("the WAN hop dc1 gateway -> dc2 gateway"),
            "{hint}"
        );
        // dc1's gateways are down: the first hop, not the WAN.
        let down = Probe {
            failed: vec!["10.213.1.11:8443: Connection refused".into()],
            ..Probe::default()
        };
        let (detail, hint) = broken_hop("dc1", &down, &dc2, &no_route);
        assert!(detail.contains("Connection refused"), "{detail}");
        assert!(hint.contains("first hop (server -> dc1 gateway)"), "{hint}");
        // Both accept from here: the gateways' routes or dc2's side.
        let (detail, hint) = broken_hop(
            "dc1",
            &accepting("10.213.1.11:8443"),
            &dc2,
            &accepting("10.213.0.11:8443"),
        );
        assert!(
            detail.contains("though both accept connections"),
            "{detail}"
        );
        assert!(hint.contains("remote_dcs="), "{hint}");
    }
}
