//! Service and upstream checks: registration and health, the sidecar (built-in or Envoy,
//! read by `sidecar.rs`): readiness, certificates, roots against the agent's, its upstream's
//! endpoints; then the gateways on the path, and an mTLS handshake with the destination's
//! exact identity.

use crate::client::{tcp_probe_all, Http, Probe};
use crate::mesh::{gateway_addrs, Local};
use crate::report::Report;
use crate::sidecar::{self, join, list, norm_serial, Sidecar, Target, Upstream};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use strait_catalog::{FederationState, ServiceInstance};
use strait_identity::spiffe;

/// What the service checks share.
pub(crate) struct Ctx<'a> {
    pub agent: &'a Http,
    /// `--admin`; `None`: the address the sidecar registered with the agent.
    pub admin: Option<Http>,
    pub local: &'a Local,
    pub states: &'a [FederationState],
    pub timeout: Duration,
}

pub(crate) async fn check(r: &mut Report, ctx: &Ctx<'_>, service: &str, upstream: Option<&str>) {
    registered(r, ctx, service).await;
    let Some(sidecar) = sidecar::ready(r, ctx.admin.clone(), ctx.agent, service).await else {
        return;
    };
    certificates(r, ctx, &sidecar, service).await;
    if let Some(upstream) = upstream {
        upstream_path(r, ctx, &sidecar, service, upstream).await;
    }
}

/// `service <name>` and `sidecar registration`: this node has the service and a sidecar for it
/// in the catalog, and no check of either is critical.
async fn registered(r: &mut Report, ctx: &Ctx<'_>, service: &str) {
    for (name, path, what) in [
        (
            format!("service {service}"),
            format!("/v1/health/service/{service}"),
            "service",
        ),
        (
            format!("sidecar of {service}"),
            format!("/v1/health/connect/{service}"),
            "sidecar",
        ),
    ] {
        let all: Vec<ServiceInstance> = match ctx.agent.json(&path).await {
            Ok(v) => v,
            Err(e) => {
                r.fail(
                    &name,
                    format!("{e:#}"),
                    "the catalog could not be read; fix the `server` check first",
                );
                continue;
            }
        };
        let mine: Vec<&ServiceInstance> = all
            .iter()
            .filter(|i| i.node.node == ctx.local.node)
            .collect();
        let Some(inst) = mine.first() else {
            r.fail(
                &name,
                format!("no {what} for {service} registered on node {} ({} elsewhere in {})", ctx.local.node, all.len(), ctx.local.dc),
                "register it with this agent (a definition in its config directory, or PUT /v1/agent/service/register with Connect.SidecarService) and check `strait catalog services`",
            );
            continue;
        };
        let critical: Vec<String> = inst
            .checks
            .iter()
            .filter(|c| c.status == strait_catalog::status::CRITICAL)
            .map(|c| format!("{} ({})", c.check_id, c.output.trim()))
            .collect();
        if critical.is_empty() {
            r.pass(
                &name,
                format!(
                    "{} registered, {} check(s) not critical",
                    inst.service.id,
                    inst.checks.len()
                ),
            );
        } else {
            r.fail(
                &name,
                format!("{} is unhealthy: {}", inst.service.id, critical.join("; ")),
                "the check says why: is the app (or the sidecar's app) running and answering its health check? GET /v1/agent/checks on the agent",
            );
        }
    }
}

/// `certificates` (the sidecar's leaf names the service and is not near expiry) and `roots`
/// (the sidecar trusts exactly the roots the agent's servers hand out).
async fn certificates(r: &mut Report, ctx: &Ctx<'_>, sidecar: &Sidecar, service: &str) {
    let held = match sidecar.held(ctx.agent).await {
        Ok(h) => h,
        Err(p) => {
            r.fail("certificates", p.detail, p.hint);
            return;
        }
    };
    match held.leaf {
        Err(p) => r.fail("certificates", p.detail, p.hint),
        Ok(leaf) => {
            let now = strait_base::unix_now();
            let id = leaf.spiffe_id;
            let lifetime = (leaf.not_after_unix - leaf.not_before_unix).max(1);
            let left = leaf.not_after_unix - now;
            if !id.ends_with(&spiffe::service_uri_suffix(service)) {
                r.fail("certificates", format!("the sidecar's leaf is for {id:?}, not service {service}"), "the sidecar at --admin fronts another service: pass the admin address of this service's sidecar")
            } else if now < leaf.not_before_unix || left <= 0 {
                r.fail("certificates", format!("leaf {} (serial {}) is not valid now: valid {}..{} (unix), now {now}", id, leaf.serial, leaf.not_before_unix, leaf.not_after_unix), format!("the sidecar runs with an expired certificate ({}): is the agent renewing (agent log), is the clock right?", sidecar.certs_page()))
            } else if left < lifetime / 4 {
                r.fail("certificates", format!("leaf {id} expires in {left}s ({}% of its lifetime left)", left * 100 / lifetime), format!("leaves are renewed at half life: the agent is failing to renew (agent log) or the sidecar stopped following it ({})", sidecar.certs_page()))
            } else {
                r.pass(
                    "certificates",
                    format!(
                        "leaf {id} serial {} valid for another {}h{}m",
                        leaf.serial,
                        left / 3600,
                        left % 3600 / 60
                    ),
                );
            }
        }
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Root {
        serial_number: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Roots {
        roots: Vec<Root>,
    }
    let have = match held.roots {
        Ok(have) => have,
        Err(p) => {
            r.fail("roots", p.detail, p.hint);
            return;
        }
    };
    let agent_roots: Roots = match ctx.agent.json("/v1/agent/connect/ca/roots").await {
        Ok(v) => v,
        Err(e) => {
            r.fail("roots", format!("{e:#}"), "the agent could not fetch the CA roots from its servers; fix the `server` check first");
            return;
        }
    };
    let want: BTreeSet<String> = agent_roots
        .roots
        .iter()
        .map(|x| norm_serial(&x.serial_number))
        .collect();
    if want == have {
        r.pass(
            "roots",
            format!(
                "sidecar and servers agree on {} root(s) (serial {})",
                want.len(),
                join(&want)
            ),
        );
    } else {
        r.fail(
            "roots",
            format!("the sidecar trusts root serial(s) [{}] but the servers hand out [{}]", join(&have), join(&want)),
            format!("the sidecar follows another CA (a stale --snapshot-file, or a server whose CA was recreated): restart it against this agent; compare {} with GET /v1/agent/connect/ca/roots", sidecar.certs_page()),
        );
    }
}

/// The upstream's path: for a single target, its checks; for a `service-resolver` chain,
/// the chain (in order, with the active target), then the checks of each target, each
/// check's name followed by `[<service> in <dc>]`.
async fn upstream_path(
    r: &mut Report,
    ctx: &Ctx<'_>,
    sidecar: &Sidecar,
    service: &str,
    upstream: &str,
) {
    let up = match sidecar.upstream(ctx.agent, service, upstream).await {
        Ok(up) => up,
        Err(p) => {
            r.fail(&format!("upstream {upstream} endpoints"), p.detail, p.hint);
            return;
        }
    };
    let targets = up.targets();
    if targets.len() < 2 {
        return target_path(r, ctx, sidecar, service, upstream, &up).await;
    }
    r.pass(
        &format!("upstream {upstream} chain"),
        describe_chain(&up, &targets),
    );
    for (i, t) in targets.iter().enumerate() {
        let scope = format!("{} in {}", t.service, t.datacenter);
        r.section(&format!(
            "upstream {upstream}, target {} of {}: {scope}",
            i + 1,
            targets.len()
        ));
        let mut sub = Report::new(false).with_sent_token(r.sent_token.clone());
        target_path(&mut sub, ctx, sidecar, service, upstream, &up.only(t)).await;
        r.extend_scoped(sub, &scope);
    }
}

/// `counting in dc2 (2 endpoints, 14 connections) -> counting in dc3 (active, 1 endpoint,
/// 3 connections, 3 failovers)`.
fn describe_chain(up: &Upstream, targets: &[Target]) -> String {
    let parts: Vec<String> = targets
        .iter()
        .map(|t| {
            let mut facts = Vec::new();
            if up.active.as_deref() == Some(t.sni.as_str()) {
                facts.push("active".to_string());
            }
            facts.push(match t.endpoints.len() {
                1 => "1 endpoint".to_string(),
                n => format!("{n} endpoints"),
            });
            if let Some(n) = t.connections {
                facts.push(format!("{n} connections"));
            }
            if let Some(n) = t.failovers.filter(|n| *n > 0) {
                facts.push(format!("{n} failovers"));
            }
            format!("{} in {} ({})", t.service, t.datacenter, facts.join(", "))
        })
        .collect();
    parts.join(" -> ")
}

/// One target's hops: `upstream <u> endpoints`, `<u> healthy in <dc>`, `local gateway`,
/// `remote gateway`, `intentions`, `mTLS handshake`.
async fn target_path(
    r: &mut Report,
    ctx: &Ctx<'_>,
    sidecar: &Sidecar,
    service: &str,
    upstream: &str,
    up: &Upstream,
) {
    let name = format!("upstream {upstream} endpoints");
    let remote_dc = up.datacenter != ctx.local.dc;
    let first_hop = match (remote_dc, up.mode.as_str()) {
        (true, "local") => "local gateway",
        (true, "remote") => "remote gateway",
        _ => "upstream sidecars",
    };
    if up.endpoints.is_empty() {
        r.fail(&name, format!("no endpoint for {} in {} (mode {}): the sidecar has nowhere to send", upstream, up.datacenter, up.mode), format!("the {first_hop} is missing from the catalog (for gateways: federation states; for sidecars: no healthy instance; {} lists none); see the checks below", sidecar.clusters_page()));
    } else {
        r.pass(
            &name,
            format!(
                "{} in {} via {first_hop} {} (mode {}, SNI {})",
                upstream,
                up.datacenter,
                list(&up.endpoints),
                up.mode,
                up.sni
            ),
        );
    }
    destination_health(r, ctx, up).await;
    if !up.endpoints.is_empty() {
        match tcp_probe_all(&up.endpoints, ctx.timeout).await {
            Ok(ok) => r.pass(first_hop, ok),
            Err(bad) => r.fail(first_hop, format!("refused or silent: {bad}"), format!("the {first_hop} the sidecar dials is down: check its process and admin /ready (`strait lab status`)")),
        }
    }
    if remote_dc && up.mode == "local" {
        let gws: Vec<SocketAddr> = ctx
            .states
            .iter()
            .find(|s| s.datacenter == up.datacenter)
            .map(gateway_addrs)
            .unwrap_or_default();
        if gws.is_empty() {
            r.fail("remote gateway", format!("no gateway of {} in the federation states", up.datacenter), format!("start a mesh gateway in {} and check that its server federates (`strait members`)", up.datacenter));
        } else {
            let probe = Probe::all(&gws, ctx.timeout).await;
            if !probe.failed.is_empty() {
                r.fail(
                    "remote gateway",
                    format!("{} gateway refused or silent: {}", up.datacenter, probe.failed.join("; ")),
                    format!(
                        "the gateway of {} is down (check its process and admin /ready there), or the WAN between this VM and it is cut",
                        up.datacenter
                    ),
                );
            } else if probe.no_route.is_empty() {
                r.pass(
                    "remote gateway",
                    format!(
                        "{} accept(s) TCP connections of {}",
                        list(&probe.accepting),
                        up.datacenter
                    ),
                );
            } else {
                r.pass(
                    "remote gateway",
                    format!(
                        "{} of {}: no route from this VM (only gateways are on the WAN; the handshake below goes through them)",
                        list(&probe.no_route),
                        up.datacenter
                    ),
                );
            }
        }
    }
    intentions(r, ctx, service, up).await;
    crate::handshake::check(r, ctx, service, up).await;
}

/// The destination DC's intentions allow `service` to call the upstream, as that DC's servers
/// decide (`/v1/connect/intentions/check`: the intention of highest precedence, else the
/// default, which ACLs' default deny turns to denied), what its sidecars enforce.
async fn intentions(r: &mut Report, ctx: &Ctx<'_>, service: &str, up: &Upstream) {
    let name = "intentions";
    let path = format!(
        "/v1/connect/intentions/check?source={service}&destination={}&dc={}",
        up.destination, up.datacenter
    );
    let verdict = format!("{service} -> {} in {}", up.destination, up.datacenter);
    match ctx.agent.json::<serde_json::Value>(&path).await {
        Ok(answer) if answer["Allowed"] == true => r.pass(name, format!("{verdict} allowed")),
        Ok(answer) if answer["Allowed"] == false => r.fail(
            name,
            format!("{verdict} denied"),
            format!(
                "`strait intention list --dc {}` on a server shows the rules (with ACLs' default deny, no rule is a denial); `strait intention allow {service} {}` allows it",
                up.datacenter, up.destination
            ),
        ),
        Ok(answer) => r.fail(
            name,
            format!("{path} answered without Allowed: {answer}"),
            "a server of a strait older than this doctor?".to_string(),
        ),
        Err(e) => r.fail(
            name,
            format!("{e:#}"),
            format!(
                "{}'s intentions could not be read: fix the `federation {} servers` check first",
                up.datacenter, up.datacenter
            ),
        ),
    }
}

/// `<u> in <dc>`: the destination has a healthy sidecar in its DC (asked with `?dc=`).
async fn destination_health(r: &mut Report, ctx: &Ctx<'_>, up: &Upstream) {
    let name = format!("{} healthy in {}", up.destination, up.datacenter);
    let path = if up.datacenter == ctx.local.dc {
        format!("/v1/health/connect/{}", up.destination)
    } else {
        format!("/v1/health/connect/{}?dc={}", up.destination, up.datacenter)
    };
    match ctx.agent.json::<Vec<ServiceInstance>>(&path).await {
        Ok(all) => {
            let healthy: Vec<String> = all
                .iter()
                .filter(|i| i.is_healthy())
                .map(|i| format!("{} on {}", i.service.id, i.node.node))
                .collect();
            if healthy.is_empty() {
                let why: Vec<String> = all
                    .iter()
                    .flat_map(|i| {
                        i.checks
                            .iter()
                            .filter(|c| c.status == strait_catalog::status::CRITICAL)
                    })
                    .map(|c| format!("{}: {}", c.check_id, c.output.trim()))
                    .collect();
                let detail = if all.is_empty() {
                    format!(
                        "no sidecar for {} is registered in {}",
                        up.destination, up.datacenter
                    )
                } else {
                    format!(
                        "{} instance(s), none healthy: {}",
                        all.len(),
                        why.join("; ")
                    )
                };
                r.fail(&name, detail, format!("{} is stopped or failing its health check in {}: start it, then read its checks there (GET /v1/agent/checks)", up.destination, up.datacenter));
            } else {
                r.pass(&name, healthy.join(", "));
            }
        }
        Err(e) => r.fail(
            &name,
            format!("{e:#}"),
            format!(
                "{}'s catalog could not be read: fix the `federation {} servers` check first",
                up.datacenter, up.datacenter
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in admin's `/clusters` shows the chain; Envoy's upstream comes from the
    /// agent's snapshot (primary flat, `failover` after): both read as the same chain.
    #[test]
    fn a_chain_reads_alike_from_the_builtin_admin_and_from_the_snapshot() {
        let builtin: Upstream = serde_json::from_value(serde_json::json!({
            "destination": "counting", "datacenter": "dc2", "mode": "local",
            "sni": "counting.default.dc2.internal.td", "spiffe_id": "spiffe://td/ns/default/dc/dc2/svc/counting",
            "endpoints": [],
            "active": "counting.default.dc3.internal.td",
            "chain": [
                {"service": "counting", "datacenter": "dc2", "sni": "counting.default.dc2.internal.td",
                 "spiffe_id": "spiffe://td/ns/default/dc/dc2/svc/counting", "endpoints": [],
                 "connections": 14, "failovers": 0},
                {"service": "counting", "datacenter": "dc3", "sni": "counting.default.dc3.internal.td",
                 "spiffe_id": "spiffe://td/ns/default/dc/dc3/svc/counting", "endpoints": ["127.0.0.1:8443"],
                 "connections": 3, "failovers": 3},
            ],
        }))
        .unwrap();
        assert_eq!(
            describe_chain(&builtin, &builtin.targets()),
            "counting in dc2 (0 endpoints, 14 connections) -> \
             counting in dc3 (active, 1 endpoint, 3 connections, 3 failovers)"
        );
        let snapshot: Upstream = serde_json::from_value(serde_json::json!({
            "destination": "counting", "datacenter": "dc2", "mode": "local", "bind": "127.0.0.1:5000",
            "sni": "counting.default.dc2.internal.td", "spiffe_id": "spiffe://td/ns/default/dc/dc2/svc/counting",
            "endpoints": ["127.0.0.1:8443"],
            "failover": [
                {"service": "counting", "datacenter": "dc3", "sni": "counting.default.dc3.internal.td",
                 "spiffe_id": "spiffe://td/ns/default/dc/dc3/svc/counting", "endpoints": ["127.0.0.1:8443"]},
            ],
        }))
        .unwrap();
        let targets = snapshot.targets();
        assert_eq!(
            describe_chain(&snapshot, &targets),
            "counting in dc2 (1 endpoint) -> counting in dc3 (1 endpoint)"
        );
        let dc3 = snapshot.only(&targets[1]);
        assert_eq!(
            (
                dc3.destination.as_str(),
                dc3.datacenter.as_str(),
                dc3.mode.as_str()
            ),
            ("counting", "dc3", "local")
        );
        assert!(
            dc3.targets().len() == 1,
            "one hop's checks see a single target"
        );
    }
}
