//! The sidecar at `--admin` (default: the admin address it registered with the agent),
//! whichever data plane answers there: strait's built-in proxy
//! (admin `/ready`, `/certs`, `/clusters` of crates/proxy/src/admin.rs) or Envoy (see
//! [`crate::envoy`]). Both are read into the same facts, so the checks of `service.rs` do
//! not care which one runs; only details and hints name the pages of the one found.

use crate::client::Http;
use crate::envoy;
use crate::report::Report;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// A check's failure: what was found and the one-line hint.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub detail: String,
    pub hint: String,
}

impl Problem {
    pub fn new(detail: impl Into<String>, hint: impl Into<String>) -> Problem {
        Problem {
            detail: detail.into(),
            hint: hint.into(),
        }
    }
}

/// An upstream of the sidecar, in the built-in admin `/clusters` shape (Envoy's is
/// assembled from its `/clusters` and the agent's snapshot).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Upstream {
    pub destination: String,
    pub datacenter: String,
    pub sni: String,
    pub spiffe_id: String,
    pub mode: String,
    pub endpoints: Vec<SocketAddr>,
    /// The whole chain, primary target first (the built-in admin's `/clusters`).
    #[serde(default)]
    pub chain: Vec<Target>,
    /// The failover targets (the agent's snapshot, read for Envoy).
    #[serde(default)]
    pub failover: Vec<Target>,
    /// The SNI of the target that served the latest connection (built-in admin only).
    #[serde(default)]
    pub active: Option<String>,
}

/// One target of an upstream's chain (a `service-resolver`'s primary or failover target).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Target {
    pub service: String,
    pub datacenter: String,
    pub sni: String,
    pub spiffe_id: String,
    pub endpoints: Vec<SocketAddr>,
    /// Connections it served and, of those, failovers (built-in admin only).
    #[serde(default)]
    pub connections: Option<u64>,
    #[serde(default)]
    pub failovers: Option<u64>,
}

impl Upstream {
    /// The chain in order: the built-in admin's, else the primary target (the upstream's own
    /// fields) followed by the failover targets.
    pub fn targets(&self) -> Vec<Target> {
        if !self.chain.is_empty() {
            return self.chain.clone();
        }
        let primary = Target {
            service: self.destination.clone(),
            datacenter: self.datacenter.clone(),
            sni: self.sni.clone(),
            spiffe_id: self.spiffe_id.clone(),
            endpoints: self.endpoints.clone(),
            connections: None,
            failovers: None,
        };
        std::iter::once(primary)
            .chain(self.failover.iter().cloned())
            .collect()
    }

    /// The upstream as if `t` were its only target, for the checks of one hop.
    pub fn only(&self, t: &Target) -> Upstream {
        Upstream {
            destination: t.service.clone(),
            datacenter: t.datacenter.clone(),
            sni: t.sni.clone(),
            spiffe_id: t.spiffe_id.clone(),
            mode: self.mode.clone(),
            endpoints: t.endpoints.clone(),
            chain: Vec::new(),
            failover: Vec::new(),
            active: None,
        }
    }
}

/// The sidecar's leaf certificate.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub spiffe_id: String,
    pub serial: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

/// The certificates the sidecar holds: its leaf, and the serials of the roots it trusts.
pub(crate) struct Held {
    pub leaf: Result<Leaf, Problem>,
    pub roots: Result<BTreeSet<String>, Problem>,
}

/// Which data plane answers at `--admin`.
pub(crate) enum Plane {
    Builtin,
    Envoy(envoy::Info),
}

pub(crate) struct Sidecar {
    pub admin: Http,
    pub plane: Plane,
}

/// A serial number as the doctor compares it: lowercase hex, no separators or leading zeros.
pub(crate) fn norm_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

pub(crate) fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

pub(crate) fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A local proxy as `GET /v1/agent/proxy/admin` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProxyAdmin {
    #[serde(rename = "ProxyID")]
    proxy_id: String,
    kind: String,
    service: String,
    admin_address: Option<SocketAddr>,
}

/// `--admin`, else the admin endpoint the sidecar of `service` registered with the agent;
/// with how it was found, for the details.
async fn admin_of(
    admin: Option<Http>,
    agent: &Http,
    service: &str,
) -> Result<(Http, String), Problem> {
    if let Some(admin) = admin {
        return Ok((admin, "from --admin".into()));
    }
    let pass_admin = "or pass the sidecar's admin address with --admin";
    let proxies: Vec<ProxyAdmin> = agent.json("/v1/agent/proxy/admin").await.map_err(|e| {
        Problem::new(
            format!("{e:#}"),
            format!("the agent does not say where its proxies' admin endpoints are: {pass_admin}"),
        )
    })?;
    let Some(proxy) = proxies
        .iter()
        .find(|p| p.kind == "sidecar" && p.service == service)
    else {
        return Err(Problem::new(
            format!("no sidecar of {service} is registered with the agent at {}", agent.addr),
            format!("give {service} a sidecar (Connect.SidecarService) in its registration with this agent, {pass_admin}"),
        ));
    };
    match proxy.admin_address {
        Some(addr) => Ok((
            Http::new(addr, agent.timeout),
            format!("registered with the agent by {}", proxy.proxy_id),
        )),
        None => Err(Problem::new(
            format!("{} has not registered an admin endpoint with the agent at {}", proxy.proxy_id, agent.addr),
            format!("start the sidecar against this agent (`strait proxy --sidecar-for {service} --agent {0}` or `strait envoy run --sidecar-for {service} --agent {0}`): it registers its --admin; {pass_admin}", agent.addr),
        )),
    }
}

/// `sidecar ready`: `/ready` answers 200; which data plane answered (Envoy says `server:
/// envoy`, then its `/server_info` gives the version and node id). None stops the service
/// checks: nothing else can be read from a sidecar that is not ready.
pub(crate) async fn ready(
    r: &mut Report,
    admin: Option<Http>,
    agent: &Http,
    service: &str,
) -> Option<Sidecar> {
    const NAME: &str = "sidecar ready";
    let (admin, how) = match admin_of(admin, agent, service).await {
        Ok(found) => found,
        Err(p) => {
            r.fail(NAME, p.detail, p.hint);
            return None;
        }
    };
    let at = admin.addr;
    let resp = match admin.get("/ready").await {
        Ok(resp) => resp,
        Err(e) => {
            r.fail(
                NAME,
                format!("{e:#}"),
                format!("no sidecar admin endpoint at {at} ({how}): start `strait proxy --sidecar-for {service}` (or `strait envoy run --sidecar-for {service}`) or pass its admin address with --admin"),
            );
            return None;
        }
    };
    let body = String::from_utf8_lossy(&resp.body).trim().to_string();
    let is_envoy = resp
        .headers
        .get(http::header::SERVER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"envoy"));
    if !is_envoy {
        if resp.status.is_success() {
            r.pass(
                NAME,
                format!("strait built-in proxy, admin {at}/ready is 200 ({how})"),
            );
            return Some(Sidecar {
                admin,
                plane: Plane::Builtin,
            });
        }
        r.fail(
            NAME,
            format!("strait built-in proxy, admin {at}/ready: {} {body}", resp.status.as_u16()),
            "the sidecar has no usable snapshot yet: read its log (agent unreachable, snapshot rejected)",
        );
        return None;
    }
    let info = match envoy::info(&admin).await {
        Ok(info) => info,
        Err(e) => {
            r.fail(
                NAME,
                format!("Envoy at {at}: {e:#}"),
                "Envoy's admin /server_info did not answer: read Envoy's log",
            );
            return None;
        }
    };
    let what = format!("Envoy {} admin {at}", info.version);
    if !resp.status.is_success() {
        r.fail(
            NAME,
            format!("{what}/ready: {} {body} (node {})", resp.status.as_u16(), info.node_id),
            "Envoy has not accepted its first configuration: check the agent's grpc_addr is the `--grpc` Envoy was started with, read Envoy's log and the agent's (`Envoy rejected a configuration`); admin /config_dump shows what Envoy holds",
        );
        return None;
    }
    r.pass(
        NAME,
        format!("{what}/ready is {body} (node {}; {how})", info.node_id),
    );
    Some(Sidecar {
        admin,
        plane: Plane::Envoy(info),
    })
}

#[derive(Debug, Deserialize)]
struct BuiltinCert {
    spiffe_id: Option<String>,
    serial: String,
    not_before_unix: i64,
    not_after_unix: i64,
}

#[derive(Debug, Deserialize)]
struct BuiltinCerts {
    leaf: Option<BuiltinCert>,
    roots: Vec<BuiltinCert>,
}

#[derive(Debug, Deserialize)]
struct BuiltinClusters {
    #[serde(default)]
    upstreams: Vec<Upstream>,
}

impl Sidecar {
    /// The page to read for certificates, in hints.
    pub fn certs_page(&self) -> &'static str {
        match self.plane {
            Plane::Builtin => "admin /certs",
            Plane::Envoy(_) => {
                "Envoy's admin /certs (and /config_dump?resource=dynamic_active_secrets)"
            }
        }
    }

    /// The page to read for upstream endpoints, in hints.
    pub fn clusters_page(&self) -> &'static str {
        match self.plane {
            Plane::Builtin => "admin /clusters",
            Plane::Envoy(_) => "Envoy's admin /clusters",
        }
    }

    /// The certificates the sidecar holds.
    pub async fn held(&self, agent: &Http) -> Result<Held, Problem> {
        if let Plane::Envoy(info) = &self.plane {
            return envoy::held(&self.admin, agent, info).await;
        }
        let at = self.admin.addr;
        let certs: BuiltinCerts = self.admin.json("/certs").await.map_err(|e| {
            Problem::new(
                format!("{e:#}"),
                "the sidecar's admin /certs did not answer; read its log",
            )
        })?;
        let leaf = certs
            .leaf
            .map(|l| Leaf {
                spiffe_id: l.spiffe_id.unwrap_or_default(),
                serial: l.serial,
                not_before_unix: l.not_before_unix,
                not_after_unix: l.not_after_unix,
            })
            .ok_or_else(|| {
                Problem::new(
                    format!("admin {at}/certs shows no leaf"),
                    "the agent has not issued a leaf for this service: read the agent log (signing errors)",
                )
            });
        let roots = certs.roots.iter().map(|c| norm_serial(&c.serial)).collect();
        Ok(Held {
            leaf,
            roots: Ok(roots),
        })
    }

    /// The sidecar's upstream `destination`.
    pub async fn upstream(
        &self,
        agent: &Http,
        service: &str,
        destination: &str,
    ) -> Result<Upstream, Problem> {
        let mut all = match &self.plane {
            Plane::Envoy(info) => envoy::upstreams(agent, info).await?,
            Plane::Builtin => {
                let clusters: BuiltinClusters =
                    self.admin.json("/clusters").await.map_err(|e| {
                        Problem::new(
                            format!("{e:#}"),
                            "the sidecar's admin /clusters did not answer; read its log",
                        )
                    })?;
                clusters.upstreams
            }
        };
        if let Some(i) = all.iter().position(|u| u.destination == destination) {
            let up = all.swap_remove(i);
            return match &self.plane {
                Plane::Builtin => Ok(up),
                Plane::Envoy(_) => Ok(Upstream {
                    endpoints: envoy::endpoints(&self.admin, &up).await?,
                    ..up
                }),
            };
        }
        let known: Vec<&str> = all.iter().map(|u| u.destination.as_str()).collect();
        Err(Problem::new(
            format!("{service}'s sidecar has no upstream {destination} (it has: {})", known.join(", ")),
            "add the upstream to the service definition (Connect.SidecarService.Proxy.Upstreams) and re-register it",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::norm_serial;

    #[test]
    fn serials_compare_without_case_separators_or_leading_zeros() {
        assert_eq!(norm_serial("6D:04:E1"), "6d04e1");
        assert_eq!(norm_serial("006d04e1"), "6d04e1");
        assert_eq!(norm_serial("00"), "0");
    }
}
