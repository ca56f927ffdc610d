//! Service and upstream checks: registration and health, the sidecar's admin endpoint
//! (`/ready`, `/certs`, `/clusters`), roots against the agent's, the gateways on the path, and
//! an mTLS handshake with the destination's exact identity.

use crate::client::{tcp_probe_all, Http};
use crate::mesh::{gateway_addrs, Local};
use crate::report::Report;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use strait_catalog::{FederationState, ServiceInstance};

/// What the service checks share.
pub(crate) struct Ctx<'a> {
    pub agent: &'a Http,
    pub admin: Http,
    pub local: &'a Local,
    pub states: &'a [FederationState],
    pub timeout: Duration,
}

/// An upstream as the sidecar's admin `/clusters` shows it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Upstream {
    pub destination: String,
    pub datacenter: String,
    pub sni: String,
    pub spiffe_id: String,
    pub mode: String,
    pub endpoints: Vec<SocketAddr>,
}

#[derive(Debug, Deserialize)]
struct Clusters {
    #[serde(default)]
    upstreams: Vec<Upstream>,
}

#[derive(Debug, Deserialize)]
struct CertFacts {
    spiffe_id: Option<String>,
    serial: String,
    not_before_unix: i64,
    not_after_unix: i64,
}

#[derive(Debug, Deserialize)]
struct Certs {
    leaf: Option<CertFacts>,
    roots: Vec<CertFacts>,
}

pub(crate) async fn check(r: &mut Report, ctx: &Ctx<'_>, service: &str, upstream: Option<&str>) {
    registered(r, ctx, service).await;
    let admin = ctx.admin.addr;
    let ready = match ctx.admin.get("/ready").await {
        Ok(resp) if resp.status.is_success() => {
            r.pass("sidecar ready", format!("admin {admin}/ready is 200"));
            true
        }
        Ok(resp) => {
            r.fail(
                "sidecar ready",
                format!("admin {admin}/ready: {} {}", resp.status.as_u16(), String::from_utf8_lossy(&resp.body).trim()),
                "the sidecar has no usable snapshot yet: read its log (agent unreachable, snapshot rejected)",
            );
            false
        }
        Err(e) => {
            r.fail(
                "sidecar ready",
                format!("{e:#}"),
                format!("no sidecar admin endpoint at {admin}: start `strait proxy --sidecar-for {service}` or pass its --admin address with --admin"),
            );
            false
        }
    };
    if !ready {
        return;
    }
    certificates(r, ctx, service).await;
    if let Some(upstream) = upstream {
        upstream_path(r, ctx, service, upstream).await;
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

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `certificates` (the sidecar's leaf names the service and is not near expiry) and `roots`
/// (the sidecar trusts exactly the roots the agent's servers hand out).
async fn certificates(r: &mut Report, ctx: &Ctx<'_>, service: &str) {
    let admin = ctx.admin.addr;
    let certs: Certs = match ctx.admin.json("/certs").await {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "certificates",
                format!("{e:#}"),
                "the sidecar's admin /certs did not answer; read its log",
            );
            return;
        }
    };
    match &certs.leaf {
        None => r.fail(
            "certificates",
            format!("admin {admin}/certs shows no leaf"),
            "the agent has not issued a leaf for this service: read the agent log (signing errors)",
        ),
        Some(leaf) => {
            let now = unix_now();
            let id = leaf.spiffe_id.clone().unwrap_or_default();
            let lifetime = (leaf.not_after_unix - leaf.not_before_unix).max(1);
            let left = leaf.not_after_unix - now;
            if !id.ends_with(&format!("/svc/{service}")) {
                r.fail("certificates", format!("the sidecar's leaf is for {id:?}, not service {service}"), "the sidecar at --admin fronts another service: pass the admin address of this service's sidecar")
            } else if now < leaf.not_before_unix || left <= 0 {
                r.fail("certificates", format!("leaf {} (serial {}) is not valid now: valid {}..{} (unix), now {now}", id, leaf.serial, leaf.not_before_unix, leaf.not_after_unix), "the sidecar runs with an expired certificate: is the agent renewing (agent log), is the clock right?")
            } else if left < lifetime / 4 {
                r.fail("certificates", format!("leaf {id} expires in {left}s ({}% of its lifetime left)", left * 100 / lifetime), "leaves are renewed at half life: the agent is failing to renew (agent log) or the sidecar stopped following its snapshot")
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
    let agent_roots: Roots = match ctx.agent.json("/v1/agent/connect/ca/roots").await {
        Ok(v) => v,
        Err(e) => {
            r.fail("roots", format!("{e:#}"), "the agent could not fetch the CA roots from its servers; fix the `server` check first");
            return;
        }
    };
    let want: BTreeSet<String> = agent_roots
        .roots
        .into_iter()
        .map(|x| x.serial_number)
        .collect();
    let have: BTreeSet<String> = certs.roots.into_iter().map(|x| x.serial).collect();
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
            "the sidecar follows another CA (a stale --snapshot-file, or a server whose CA was recreated): restart it against this agent; compare admin /certs with GET /v1/agent/connect/ca/roots",
        );
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// `upstream <u> endpoints`, `<u> in <dc>`, `local gateway`, `remote gateway`, `mTLS handshake`.
async fn upstream_path(r: &mut Report, ctx: &Ctx<'_>, service: &str, upstream: &str) {
    let name = format!("upstream {upstream} endpoints");
    let clusters: Clusters = match ctx.admin.json("/clusters").await {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                &name,
                format!("{e:#}"),
                "the sidecar's admin /clusters did not answer; read its log",
            );
            return;
        }
    };
    let Some(up) = clusters
        .upstreams
        .iter()
        .find(|u| u.destination == upstream)
    else {
        let known: Vec<&str> = clusters
            .upstreams
            .iter()
            .map(|u| u.destination.as_str())
            .collect();
        r.fail(&name, format!("{service}'s sidecar has no upstream {upstream} (it has: {})", known.join(", ")), "add the upstream to the service definition (Connect.SidecarService.Proxy.Upstreams) and re-register it");
        return;
    };
    let remote_dc = up.datacenter != ctx.local.dc;
    let first_hop = match (remote_dc, up.mode.as_str()) {
        (true, "local") => "local gateway",
        (true, "remote") => "remote gateway",
        _ => "upstream sidecars",
    };
    if up.endpoints.is_empty() {
        r.fail(&name, format!("no endpoint for {} in {} (mode {}): the sidecar has nowhere to send", upstream, up.datacenter, up.mode), format!("the {first_hop} is missing from the catalog (for gateways: federation states; for sidecars: no healthy instance); see the checks below"));
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
            match tcp_probe_all(&gws, ctx.timeout).await {
                Ok(ok) => r.pass("remote gateway", format!("{} of {}", ok, up.datacenter)),
                Err(bad) => r.fail(
                    "remote gateway",
                    format!("{} gateway refused or silent: {bad}", up.datacenter),
                    format!(
                        "the gateway of {} is down: check its process and admin /ready there",
                        up.datacenter
                    ),
                ),
            }
        }
    }
    intentions(r, ctx, service, up).await;
    crate::handshake::check(r, ctx, service, up).await;
}

/// The destination DC's intentions allow `service` to call the upstream (evaluated with the
/// function the destination's snapshot uses).
async fn intentions(r: &mut Report, ctx: &Ctx<'_>, service: &str, up: &Upstream) {
    let name = "intentions";
    let path = format!(
        "/v1/config/{}?dc={}",
        strait_catalog::config_kind::SERVICE_INTENTIONS,
        up.datacenter
    );
    match ctx.agent.json::<Vec<strait_catalog::ConfigEntry>>(&path).await {
        Ok(entries) => {
            let mut view = strait_snapshot::MeshView::default();
            for e in entries {
                view.intentions.insert(e.name.clone(), e.intention_rules());
            }
            let rules = strait_snapshot::resolve_intentions(&view, &up.destination);
            let verdict = format!("{service} -> {} in {}", up.destination, up.datacenter);
            if rules.allows(service) {
                r.pass(name, format!("{verdict} allowed ({} rule(s))", rules.rules.len()));
            } else {
                r.fail(
                    name,
                    format!("{verdict} denied"),
                    format!(
                        "`strait intention list --dc {}` on a server shows the rule; `strait intention allow {service} {}` lifts it",
                        up.datacenter, up.destination
                    ),
                );
            }
        }
        Err(e) => r.fail(
            name,
            format!("{e:#}"),
            format!(
                "{}'s config entries could not be read: fix the `federation {} servers` check first",
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

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
