//! Input checks and defaults applied before anything is written: a registration is either
//! accepted whole (normalised) or rejected with an error naming the field at fault.

use crate::error::{CatalogError, Result};
use crate::types::{
    config_kind, intention_action, kind, status, Check, ConfigEntry, FederationState,
    MeshGatewayConfig, Node, Service,
};
use std::net::SocketAddr;

fn non_empty(value: &str, what: impl FnOnce() -> String, field: &'static str) -> Result<()> {
    if value.is_empty() {
        return Err(CatalogError::EmptyField {
            what: what(),
            field,
        });
    }
    Ok(())
}

fn mode(cfg: &MeshGatewayConfig, what: impl FnOnce() -> String, field: &'static str) -> Result<()> {
    match cfg.gateway_mode() {
        Some(_) => Ok(()),
        None => Err(CatalogError::InvalidMode {
            what: what(),
            field,
            mode: cfg.mode.clone(),
        }),
    }
}

pub(crate) fn check_status(s: &str) -> Result<()> {
    if status::ALL.contains(&s) {
        Ok(())
    } else {
        Err(CatalogError::InvalidStatus {
            status: s.to_string(),
        })
    }
}

pub(crate) fn node(node: &Node) -> Result<()> {
    non_empty(&node.node, || "node".into(), "Node")?;
    non_empty(&node.address, || format!("node {:?}", node.node), "Address")
}

/// Checks a service and fills in its defaults (ID = name).
pub(crate) fn service(node: &str, mut svc: Service) -> Result<Service> {
    non_empty(
        &svc.service,
        || format!("service on node {node:?}"),
        "Service",
    )?;
    if svc.id.is_empty() {
        svc.id = svc.service.clone();
    }
    let what = || format!("service {:?} on node {node:?}", svc.id);
    if !kind::ALL.contains(&svc.kind.as_str()) {
        return Err(CatalogError::InvalidKind {
            service: svc.id.clone(),
            kind: svc.kind.clone(),
        });
    }
    if let Some(proxy) = &svc.proxy {
        mode(&proxy.mesh_gateway, what, "Proxy.MeshGateway.Mode")?;
        for up in &proxy.upstreams {
            non_empty(
                &up.destination_name,
                what,
                "Proxy.Upstreams[].DestinationName",
            )?;
            mode(&up.mesh_gateway, what, "Proxy.Upstreams[].MeshGateway.Mode")?;
        }
    }
    if svc.kind == kind::CONNECT_PROXY {
        let dest = svc
            .proxy
            .as_ref()
            .map(|p| p.destination_service_name.as_str());
        non_empty(dest.unwrap_or(""), what, "Proxy.DestinationServiceName")?;
    }
    for (tag, addr) in &svc.tagged_addresses {
        if addr.address.is_empty() && addr.port == 0 {
            return Err(CatalogError::InvalidAddress {
                what: format!(
                    "service {:?} on node {node:?}, tagged address {tag:?}",
                    svc.id
                ),
                field: "TaggedAddresses",
                value: String::new(),
            });
        }
    }
    Ok(svc)
}

/// Checks a check and fills in its defaults. `service_name` looks up a service ID on the
/// node being written (after its services are applied).
pub(crate) fn check<'a>(
    node: &str,
    mut chk: Check,
    service_name: impl Fn(&str) -> Option<&'a str>,
) -> Result<Check> {
    non_empty(
        &chk.check_id,
        || format!("check on node {node:?}"),
        "CheckID",
    )?;
    if chk.node.is_empty() {
        chk.node = node.to_string();
    } else if chk.node != node {
        return Err(CatalogError::NodeMismatch {
            node: node.to_string(),
            check: chk.check_id,
            check_node: chk.node,
        });
    }
    if chk.name.is_empty() {
        chk.name = chk.check_id.clone();
    }
    if chk.status.is_empty() {
        chk.status = status::CRITICAL.to_string();
    }
    check_status(&chk.status)?;
    if !chk.service_id.is_empty() {
        let name = service_name(&chk.service_id).ok_or_else(|| CatalogError::UnknownService {
            node: node.to_string(),
            service: chk.service_id.clone(),
        })?;
        chk.service_name = name.to_string();
    } else {
        chk.service_name.clear();
    }
    Ok(chk)
}

/// Checks a config entry; a proxy-defaults entry without a name is named `global`.
pub(crate) fn config_entry(mut entry: ConfigEntry) -> Result<ConfigEntry> {
    let invalid = |entry: &ConfigEntry, reason: &str| CatalogError::InvalidConfigEntry {
        kind: entry.kind.clone(),
        name: entry.name.clone(),
        reason: reason.to_string(),
    };
    match entry.kind.as_str() {
        config_kind::PROXY_DEFAULTS => {
            if entry.name.is_empty() {
                entry.name = "global".into();
            }
            if entry.name != "global" {
                return Err(invalid(&entry, "proxy-defaults must be named \"global\""));
            }
        }
        config_kind::SERVICE_DEFAULTS => {
            if entry.name.is_empty() {
                return Err(invalid(&entry, "Name (the service) must not be empty"));
            }
        }
        config_kind::SERVICE_INTENTIONS => {
            service_or_wildcard("Name", &entry.name).map_err(|reason| invalid(&entry, &reason))?;
            if !entry.mesh_gateway.mode.is_empty() {
                return Err(invalid(
                    &entry,
                    "MeshGateway is not a field of service-intentions",
                ));
            }
            intention_sources(&entry).map_err(|reason| invalid(&entry, &reason))?;
        }
        _ => {
            return Err(invalid(
                &entry,
                "Kind must be proxy-defaults, service-defaults or service-intentions",
            ))
        }
    }
    if entry.kind != config_kind::SERVICE_INTENTIONS && !entry.sources.is_empty() {
        return Err(invalid(
            &entry,
            "Sources belongs to service-intentions only",
        ));
    }
    let what = || format!("config entry {}/{}", entry.kind, entry.name);
    mode(&entry.mesh_gateway, what, "MeshGateway.Mode")?;
    Ok(entry)
}

/// A service name (as SNI and SPIFFE IDs carry it) or `*`.
fn service_or_wildcard(field: &str, name: &str) -> std::result::Result<(), String> {
    if name == "*" {
        return Ok(());
    }
    strait_identity::spiffe::validate_name(field, name).map_err(|e| format!("{e} (or \"*\")"))
}

/// Each source names a service (or `*`) once, with action allow or deny.
fn intention_sources(entry: &ConfigEntry) -> std::result::Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, src) in entry.sources.iter().enumerate() {
        service_or_wildcard(&format!("Sources[{i}].Name"), &src.name)?;
        if ![intention_action::ALLOW, intention_action::DENY].contains(&src.action.as_str()) {
            return Err(format!(
                "Sources[{i}].Action is {:?}; expected \"allow\" or \"deny\"",
                src.action
            ));
        }
        if !seen.insert(src.name.as_str()) {
            return Err(format!("Sources[{i}].Name {:?} appears twice", src.name));
        }
    }
    Ok(())
}

pub(crate) fn federation_state(fed: &FederationState) -> Result<()> {
    non_empty(&fed.datacenter, || "federation state".into(), "Datacenter")?;
    for gw in &fed.mesh_gateways {
        if gw.parse::<SocketAddr>().is_err() {
            return Err(CatalogError::InvalidAddress {
                what: format!("federation state of {:?}", fed.datacenter),
                field: "MeshGateways",
                value: gw.clone(),
            });
        }
    }
    Ok(())
}
