//! catalog view + proxy registration -> [`Snapshot`]. Pure: no I/O, no clock, no randomness.
//!
//! Runs in the agent every time the catalog or the proxy's registration changes; the result
//! is compared with the previous snapshot so that only real changes bump the version a proxy
//! sees. Every list is sorted and deduplicated so equal inputs give equal snapshots.

use crate::chain;
use crate::types::{
    GatewayMode, GatewaySnapshot, Instance, InstanceKind, IntentionRule, Intentions, Leaf,
    MeshView, ProxyKind, ProxyRegistration, ProxyRole, Secret, SidecarSnapshot, Snapshot,
    TargetName, UpstreamRegistration, UpstreamSnapshot, UpstreamTarget,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// Namespace of every service: strait has a single namespace for now.
pub const NAMESPACE: &str = strait_names::DEFAULT_NAMESPACE;

/// Why a snapshot could not be built. Each variant names the proxy and the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("proxy {proxy:?}: field {field} is required")]
    MissingField { proxy: String, field: &'static str },
    #[error("proxy {proxy:?}: upstreams {first:?} and {second:?} both bind {bind}")]
    DuplicateUpstreamBind {
        proxy: String,
        bind: SocketAddr,
        first: String,
        second: String,
    },
}

/// Builds the snapshot of one proxy.
///
/// Empty endpoint lists are not an error: the proxy then refuses connections on that
/// upstream and says why, which is more useful than having no snapshot at all.
pub fn build(
    view: &MeshView,
    proxy: &ProxyRegistration,
    leaf: Leaf,
    roots_pem: Vec<String>,
    version: u64,
) -> Result<Snapshot, BuildError> {
    let missing = |field: &'static str| BuildError::MissingField {
        proxy: proxy.proxy_id.clone(),
        field,
    };
    if view.trust_domain.is_empty() {
        return Err(missing("view.trust_domain"));
    }
    if view.datacenter.is_empty() {
        return Err(missing("view.datacenter"));
    }
    if proxy.service.is_empty() {
        return Err(missing("service"));
    }
    let role = match proxy.kind {
        ProxyKind::Sidecar => ProxyRole::Sidecar(build_sidecar(view, proxy)?),
        ProxyKind::MeshGateway => ProxyRole::Gateway(build_gateway(view, proxy)),
    };
    let roots_pem: BTreeSet<String> = roots_pem.into_iter().collect();
    Ok(Snapshot {
        version,
        proxy_id: proxy.proxy_id.clone(),
        trust_domain: view.trust_domain.clone(),
        datacenter: view.datacenter.clone(),
        service: proxy.service.clone(),
        leaf,
        roots_pem: roots_pem.into_iter().collect(),
        role,
    })
}

/// A copy safe to show on admin pages and in logs: the private key is replaced.
pub fn redacted(snapshot: &Snapshot) -> Snapshot {
    let mut copy = snapshot.clone();
    copy.leaf.key_pem = Secret("<redacted>".to_string());
    copy
}

/// SNI of `service` in `dc`: `<service>.default.<dc>.internal.<td>`.
pub fn service_sni(service: &str, dc: &str, trust_domain: &str) -> String {
    strait_names::service_sni(service, NAMESPACE, dc, trust_domain)
}

/// SPIFFE ID `service` in `dc` presents: `spiffe://<td>/ns/default/dc/<dc>/svc/<service>`.
pub fn service_spiffe_id(service: &str, dc: &str, trust_domain: &str) -> String {
    strait_names::service_uri(trust_domain, NAMESPACE, dc, service)
}

/// Effective gateway mode: upstream > proxy > service defaults > proxy defaults > `Local`.
pub fn effective_mode(
    view: &MeshView,
    proxy: &ProxyRegistration,
    upstream: &UpstreamRegistration,
) -> GatewayMode {
    let service_default = view
        .service_defaults_mode
        .get(&proxy.service)
        .copied()
        .unwrap_or_default();
    [
        upstream.mode,
        proxy.mode,
        service_default,
        view.proxy_defaults_mode,
    ]
    .into_iter()
    .find(|mode| *mode != GatewayMode::Default)
    .unwrap_or(GatewayMode::Local)
}

fn build_sidecar(
    view: &MeshView,
    proxy: &ProxyRegistration,
) -> Result<SidecarSnapshot, BuildError> {
    let local_app = proxy.local_app.ok_or_else(|| BuildError::MissingField {
        proxy: proxy.proxy_id.clone(),
        field: "local_app",
    })?;
    let mut by_bind: BTreeMap<SocketAddr, &str> = BTreeMap::new();
    let mut upstreams = Vec::with_capacity(proxy.upstreams.len());
    for upstream in &proxy.upstreams {
        if upstream.destination.is_empty() {
            return Err(BuildError::MissingField {
                proxy: proxy.proxy_id.clone(),
                field: "upstreams[].destination",
            });
        }
        if let Some(first) = by_bind.insert(upstream.bind, &upstream.destination) {
            return Err(BuildError::DuplicateUpstreamBind {
                proxy: proxy.proxy_id.clone(),
                bind: upstream.bind,
                first: first.to_string(),
                second: upstream.destination.clone(),
            });
        }
        upstreams.push(build_upstream(view, proxy, upstream));
    }
    upstreams.sort_by(|a, b| {
        (&a.destination, &a.datacenter, a.bind).cmp(&(&b.destination, &b.datacenter, b.bind))
    });
    Ok(SidecarSnapshot {
        public_listener: proxy.bind,
        local_app,
        upstreams,
        intentions: resolve_intentions(view, &proxy.service),
    })
}

/// The rules that apply to `service`, in precedence order (see [`Intentions`]).
pub fn resolve_intentions(view: &MeshView, service: &str) -> Intentions {
    let mut rules = Vec::new();
    for destination in [service, "*"] {
        let Some(sources) = view.intentions.get(destination) else {
            continue;
        };
        let (wild, exact): (Vec<_>, Vec<_>) = sources.iter().partition(|r| r.source == "*");
        rules.extend(exact.into_iter().chain(wild).cloned());
    }
    if view.intentions_default_deny {
        rules.push(IntentionRule {
            source: "*".into(),
            allow: false,
        });
    }
    Intentions { rules }
}

fn build_upstream(
    view: &MeshView,
    proxy: &ProxyRegistration,
    upstream: &UpstreamRegistration,
) -> UpstreamSnapshot {
    let dc = if upstream.datacenter.is_empty() {
        view.datacenter.as_str()
    } else {
        upstream.datacenter.as_str()
    };
    let mode = effective_mode(view, proxy, upstream);
    let chain = local_chain(view, &upstream.destination, dc);
    // Only a chain has somewhere else to go: a single target keeps its gateways whatever its
    // DC reports, and the far gateway or sidecar says why it refuses.
    let skip_unhealthy = chain.targets.len() > 1;
    let mut targets = chain
        .targets
        .iter()
        .map(|name| build_target(view, mode, name, skip_unhealthy));
    let primary = targets.next().expect("a chain has a primary target");
    UpstreamSnapshot {
        destination: upstream.destination.clone(),
        datacenter: dc.to_string(),
        bind: upstream.bind,
        mode,
        primary,
        failover: targets.collect(),
        connect_timeout_ms: chain.connect_timeout_ms,
        passive_health: view
            .upstream_configs
            .get(&proxy.service)
            .and_then(|c| c.passive_health(&upstream.destination)),
    }
}

/// The chain of `service` in `dc` as this DC can serve it: a target in another DC selects
/// every instance there (its gateways route by service, not subset), so its subset is
/// dropped and a target that then repeats an earlier one is left out.
fn local_chain(view: &MeshView, service: &str, dc: &str) -> chain::Chain {
    let mut chain = chain::resolve(&view.resolvers, service, dc);
    let mut seen = BTreeSet::new();
    chain.targets = std::mem::take(&mut chain.targets)
        .into_iter()
        .map(|mut t| {
            if t.datacenter != view.datacenter {
                t.subset.clear();
            }
            t
        })
        .filter(|t| seen.insert(t.clone()))
        .collect();
    chain
}

/// Whether a sidecar `instance` of `name`'s service is in `name`'s subset: every instance
/// when the target names none; none when the subset is unknown or its filter does not parse
/// (the catalog refuses such entries, so only from a hand-made view).
fn in_subset(view: &MeshView, name: &TargetName, instance: &Instance) -> bool {
    if name.subset.is_empty() {
        return true;
    }
    let Some(subset) = view
        .resolvers
        .get(&name.service)
        .and_then(|r| r.subsets.get(&name.subset))
    else {
        return false;
    };
    if subset.only_passing && !instance.passing {
        return false;
    }
    if subset.filter.is_empty() {
        return true;
    }
    let Ok(filter) = strait_filter::Filter::parse(&subset.filter) else {
        return false;
    };
    filter
        .matches(&subset_item(name, instance))
        .unwrap_or(false)
}

/// What a subset filter sees of an instance: the selectors of `/v1/health/service`.
fn subset_item(name: &TargetName, instance: &Instance) -> serde_json::Value {
    serde_json::json!({
        "Node": {"Node": instance.node, "Meta": instance.node_meta},
        "Service": {
            "Service": name.service,
            "Tags": instance.tags,
            "Meta": instance.meta,
            "Address": instance.addr.ip().to_string(),
            "Port": instance.addr.port(),
        },
    })
}

/// One target of a chain: its names, and the healthy addresses that reach it in `mode`;
/// none when `skip_unhealthy` and its DC reports no healthy instance.
fn build_target(
    view: &MeshView,
    mode: GatewayMode,
    name: &TargetName,
    skip_unhealthy: bool,
) -> UpstreamTarget {
    let (dest, dc) = (name.service.as_str(), name.datacenter.as_str());
    let remote = view
        .remote_sidecars
        .get(dc)
        .and_then(|services| services.get(dest));
    let endpoints = if dc == view.datacenter {
        sorted(
            view.instances
                .iter()
                .filter(|i| i.healthy && i.kind == InstanceKind::ConnectProxy)
                .filter(|i| i.destination_service.as_deref() == Some(dest))
                .filter(|i| in_subset(view, name, i))
                .map(|i| i.addr),
        )
    } else if skip_unhealthy && remote.is_some_and(Vec::is_empty) && mode != GatewayMode::None {
        // The target's DC says it has no healthy instance: its gateways would refuse it.
        Vec::new()
    } else {
        match mode {
            GatewayMode::Remote => sorted(view.federation.get(dc).into_iter().flatten().copied()),
            GatewayMode::None => sorted(remote.into_iter().flatten().copied()),
            // effective_mode never returns Default; treat it like the fallback, Local.
            GatewayMode::Local | GatewayMode::Default => sorted(
                view.instances
                    .iter()
                    .filter(|i| i.healthy && i.kind == InstanceKind::MeshGateway)
                    .map(|i| i.addr),
            ),
        }
    };
    let sni = if name.subset.is_empty() {
        service_sni(dest, dc, &view.trust_domain)
    } else {
        strait_names::subset_sni(&name.subset, dest, NAMESPACE, dc, &view.trust_domain)
    };
    UpstreamTarget {
        service: dest.to_string(),
        subset: name.subset.clone(),
        datacenter: dc.to_string(),
        sni,
        spiffe_id: service_spiffe_id(dest, dc, &view.trust_domain),
        endpoints,
    }
}

/// The targets in other DCs whose health the agent fetches from those DCs into
/// [`MeshView::remote_sidecars`]: every remote target of a chain with failover targets, and
/// the remote target of an upstream in mode `none` (whose sidecars are dialled directly).
pub fn remote_targets(view: &MeshView, proxy: &ProxyRegistration) -> BTreeSet<TargetName> {
    let mut out = BTreeSet::new();
    for u in &proxy.upstreams {
        let dc = if u.datacenter.is_empty() {
            &view.datacenter
        } else {
            &u.datacenter
        };
        let chain = local_chain(view, &u.destination, dc);
        if chain.targets.len() > 1 || effective_mode(view, proxy, u) == GatewayMode::None {
            out.extend(
                chain
                    .targets
                    .into_iter()
                    .filter(|t| t.datacenter != view.datacenter),
            );
        }
    }
    out
}

fn build_gateway(view: &MeshView, proxy: &ProxyRegistration) -> GatewaySnapshot {
    // Services whose sidecars are all unhealthy keep an empty entry, so the gateway can say
    // "no healthy endpoints" rather than "unknown service".
    let mut local: BTreeMap<String, BTreeSet<SocketAddr>> = BTreeMap::new();
    for instance in &view.instances {
        if instance.kind != InstanceKind::ConnectProxy {
            continue;
        }
        let Some(dest) = instance.destination_service.as_deref() else {
            continue;
        };
        let addrs = local.entry(dest.to_string()).or_default();
        if instance.healthy {
            addrs.insert(instance.addr);
        }
    }
    let local_servers = sorted(
        view.instances
            .iter()
            .filter(|i| i.healthy && i.kind == InstanceKind::Server)
            .map(|i| i.addr),
    );
    let remote_gateways = view
        .federation
        .iter()
        .filter(|(dc, _)| **dc != view.datacenter)
        .map(|(dc, addrs)| (dc.clone(), sorted(addrs.iter().copied())))
        .filter(|(_, addrs)| !addrs.is_empty())
        .collect();
    GatewaySnapshot {
        lan: proxy.bind,
        wan: proxy.wan.unwrap_or(proxy.bind),
        local_services: local
            .into_iter()
            .map(|(name, addrs)| (name, addrs.into_iter().collect()))
            .collect(),
        local_servers,
        remote_gateways,
    }
}

fn sorted(addrs: impl Iterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    addrs.collect::<BTreeSet<_>>().into_iter().collect()
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
