//! The JSON form of a [`Snapshot`]: flat, with a `kind` and one section per kind, of which
//! exactly the one named by `kind` is set. The agent serves it to proxies, `strait proxy
//! --snapshot-file` and `strait envoy ads` read it, bench/run.sh writes it; it is the form
//! snapshots had before [`ProxyRole`] existed, so none of them changed.
//!
//! Parsing checks what the type cannot say: a `kind` without its section, or with the other
//! kind's section, is refused naming the proxy and the field.

use crate::types::{
    GatewayMode, GatewaySnapshot, Leaf, PassiveHealth, ProxyKind, ProxyRole, SidecarSnapshot,
    Snapshot, UpstreamSnapshot, UpstreamTarget,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Serialize, Deserialize)]
pub(crate) struct WireSnapshot {
    version: u64,
    proxy_id: String,
    kind: ProxyKind,
    trust_domain: String,
    datacenter: String,
    service: String,
    leaf: Leaf,
    roots_pem: Vec<String>,
    /// Set exactly when `kind` is `sidecar`.
    #[serde(default)]
    sidecar: Option<SidecarSnapshot>,
    /// Set exactly when `kind` is `mesh-gateway`.
    #[serde(default)]
    gateway: Option<GatewaySnapshot>,
}

/// A snapshot's JSON whose sections disagree with its `kind`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("snapshot of proxy {proxy_id:?}: kind {kind} needs field {field:?}")]
    MissingSection {
        proxy_id: String,
        kind: ProxyKind,
        field: &'static str,
    },
    #[error("snapshot of proxy {proxy_id:?}: field {field:?} is not allowed with kind {kind}")]
    ForeignSection {
        proxy_id: String,
        kind: ProxyKind,
        field: &'static str,
    },
}

impl TryFrom<WireSnapshot> for Snapshot {
    type Error = WireError;

    fn try_from(w: WireSnapshot) -> Result<Snapshot, WireError> {
        let (kind, proxy_id) = (w.kind, w.proxy_id);
        let (own, other) = match kind {
            ProxyKind::Sidecar => ("sidecar", "gateway"),
            ProxyKind::MeshGateway => ("gateway", "sidecar"),
        };
        let role = match (kind, w.sidecar, w.gateway) {
            (ProxyKind::Sidecar, Some(sidecar), None) => ProxyRole::Sidecar(sidecar),
            (ProxyKind::MeshGateway, None, Some(gateway)) => ProxyRole::Gateway(gateway),
            (ProxyKind::Sidecar, _, Some(_)) | (ProxyKind::MeshGateway, Some(_), _) => {
                return Err(WireError::ForeignSection {
                    proxy_id,
                    kind,
                    field: other,
                })
            }
            (_, None, None) => {
                return Err(WireError::MissingSection {
                    proxy_id,
                    kind,
                    field: own,
                })
            }
        };
        Ok(Snapshot {
            version: w.version,
            proxy_id,
            trust_domain: w.trust_domain,
            datacenter: w.datacenter,
            service: w.service,
            leaf: w.leaf,
            roots_pem: w.roots_pem,
            role,
        })
    }
}

impl From<Snapshot> for WireSnapshot {
    fn from(s: Snapshot) -> WireSnapshot {
        let kind = s.kind();
        let (sidecar, gateway) = match s.role {
            ProxyRole::Sidecar(sidecar) => (Some(sidecar), None),
            ProxyRole::Gateway(gateway) => (None, Some(gateway)),
        };
        WireSnapshot {
            version: s.version,
            proxy_id: s.proxy_id,
            kind,
            trust_domain: s.trust_domain,
            datacenter: s.datacenter,
            service: s.service,
            leaf: s.leaf,
            roots_pem: s.roots_pem,
            sidecar,
            gateway,
        }
    }
}

/// The JSON form of an [`UpstreamSnapshot`]: the primary target flat, as single-target
/// upstreams always were, so proxies and files from before chains read and write the same.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireUpstream {
    destination: String,
    datacenter: String,
    bind: SocketAddr,
    sni: String,
    spiffe_id: String,
    mode: GatewayMode,
    endpoints: Vec<SocketAddr>,
    /// The primary target's service, when a resolver redirects to another service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    /// The primary target's datacenter, when a resolver redirects to another DC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failover: Vec<UpstreamTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect_timeout_ms: Option<u64>,
    /// The primary target's subset, when it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    subset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passive_health: Option<PassiveHealth>,
}

impl From<WireUpstream> for UpstreamSnapshot {
    fn from(w: WireUpstream) -> UpstreamSnapshot {
        UpstreamSnapshot {
            primary: UpstreamTarget {
                service: w.service.unwrap_or_else(|| w.destination.clone()),
                subset: w.subset,
                datacenter: w.target_datacenter.unwrap_or_else(|| w.datacenter.clone()),
                sni: w.sni,
                spiffe_id: w.spiffe_id,
                endpoints: w.endpoints,
            },
            destination: w.destination,
            datacenter: w.datacenter,
            bind: w.bind,
            mode: w.mode,
            failover: w.failover,
            connect_timeout_ms: w.connect_timeout_ms,
            passive_health: w.passive_health,
        }
    }
}

impl From<UpstreamSnapshot> for WireUpstream {
    fn from(u: UpstreamSnapshot) -> WireUpstream {
        let p = u.primary;
        WireUpstream {
            service: (p.service != u.destination).then_some(p.service),
            target_datacenter: (p.datacenter != u.datacenter).then_some(p.datacenter),
            destination: u.destination,
            datacenter: u.datacenter,
            bind: u.bind,
            sni: p.sni,
            spiffe_id: p.spiffe_id,
            mode: u.mode,
            endpoints: p.endpoints,
            failover: u.failover,
            connect_timeout_ms: u.connect_timeout_ms,
            subset: p.subset,
            passive_health: u.passive_health,
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
