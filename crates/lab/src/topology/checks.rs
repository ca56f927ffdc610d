//! Checks across VMs of a parsed topology: roles per DC, upstream targets,
//! port clashes on one VM. Part of validation (see `validate.rs`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::raw::{RawTopology, RawVm};
use super::validate::Source;
use super::{
    Topology, TopologyError, Vm, GATEWAY_PORT, HTTP_API_PORT, MAX_SERVERS, SERVER_HTTPS_PORT,
};

/// One to [`MAX_SERVERS`] servers per DC (several form one Raft cluster); with more than one
/// DC every DC needs a gateway, since federation and cross-DC traffic use them.
pub(super) fn per_dc_roles(
    src: &Source<'_>,
    raw: &RawTopology,
    t: &Topology,
) -> Result<(), TopologyError> {
    for (d, dc) in t.datacenters.iter().enumerate() {
        let span = raw.datacenter[d].name.span();
        let servers: Vec<usize> = (0..t.vms.len())
            .filter(|&i| t.vms[i].dc == dc.name && t.vms[i].roles.server)
            .collect();
        if servers.is_empty() {
            return Err(src.err(
                span,
                format!("datacenter[{d}]"),
                format!("datacenter {} has no VM with the `server` role", dc.name),
            ));
        }
        if let Some(&extra) = servers.get(MAX_SERVERS) {
            return Err(src.err(
                raw.vm[extra].roles.span(),
                format!("vm[{extra}].roles"),
                format!(
                    "datacenter {} already has {MAX_SERVERS} servers, the most a cluster is formed with (3 or 5 survive losing servers)",
                    dc.name
                ),
            ));
        }
        if t.datacenters.len() > 1 && !t.vms_in(&dc.name).any(|vm| vm.roles.gateway) {
            return Err(src.err(span, format!("datacenter[{d}]"), format!("datacenter {} has no VM with the `gateway` role; federated datacenters reach each other only through mesh gateways", dc.name)));
        }
    }
    Ok(())
}

pub(super) fn upstreams(
    src: &Source<'_>,
    raw: &RawTopology,
    t: &Topology,
) -> Result<(), TopologyError> {
    let mut by_dc: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for vm in &t.vms {
        by_dc
            .entry(&vm.dc)
            .or_default()
            .extend(vm.services.iter().map(|s| s.name.as_str()));
    }
    for (i, (rv, vm)) in raw.vm.iter().zip(&t.vms).enumerate() {
        for (j, (rs, s)) in rv.service.iter().zip(&vm.services).enumerate() {
            for (k, (ru, u)) in rs.upstream.iter().zip(&s.upstreams).enumerate() {
                let path = format!("vm[{i}].service[{j}].upstream[{k}]");
                if let Some(d) = &ru.datacenter {
                    if !t.datacenters.iter().any(|dc| &dc.name == d.get_ref()) {
                        return Err(src.err(
                            d.span(),
                            format!("{path}.datacenter"),
                            format!("unknown datacenter {:?}", d.get_ref()),
                        ));
                    }
                }
                let known = by_dc
                    .get(u.datacenter.as_str())
                    .cloned()
                    .unwrap_or_default();
                if !known.contains(&u.destination.as_str()) {
                    let list = if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    };
                    return Err(src.err(
                        ru.destination.span(),
                        format!("{path}.destination"),
                        format!(
                            "no service {:?} in datacenter {} (services there: {list})",
                            u.destination, u.datacenter
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every listener of a VM binds `<address>:<port>`, so two of them clash.
pub(super) fn ports(src: &Source<'_>, i: usize, rv: &RawVm, vm: &Vm) -> Result<(), TopologyError> {
    let mut used: HashMap<u16, String> = HashMap::new();
    let mut fixed = Vec::new();
    if vm.roles.server {
        fixed.push((SERVER_HTTPS_PORT, "the server's mTLS API".to_owned()));
    }
    fixed.push((HTTP_API_PORT, "the server/agent HTTP API".to_owned()));
    if vm.roles.gateway {
        fixed.push((GATEWAY_PORT, "the mesh gateway".to_owned()));
        fixed.push((
            vm.gateway_admin_port(),
            "the gateway admin endpoint".to_owned(),
        ));
    }
    for (j, s) in vm.services.iter().enumerate() {
        fixed.push((
            vm.sidecar_admin_port(j),
            format!("the admin endpoint of {}'s sidecar", s.name),
        ));
    }
    for (port, what) in fixed {
        used.insert(port, what);
    }
    let mut claim =
        |port: u16, span: Range<usize>, field: String, what: String| match used.get(&port) {
            Some(other) => Err(src.err(
                span,
                field,
                format!("port {port} on {} is already used by {other}", vm.address),
            )),
            None => {
                used.insert(port, what);
                Ok(())
            }
        };
    for (j, (rs, s)) in rv.service.iter().zip(&vm.services).enumerate() {
        let path = format!("vm[{i}].service[{j}]");
        claim(
            s.port,
            rs.port.span(),
            format!("{path}.port"),
            format!("service {}", s.name),
        )?;
        let span = rs
            .sidecar_port
            .as_ref()
            .map_or_else(|| rs.name.span(), |p| p.span());
        claim(
            s.sidecar_port,
            span,
            format!("{path}.sidecar_port"),
            format!("{}'s sidecar", s.name),
        )?;
        for (k, (ru, u)) in rs.upstream.iter().zip(&s.upstreams).enumerate() {
            claim(
                u.local_bind_port,
                ru.local_bind_port.span(),
                format!("{path}.upstream[{k}].local_bind_port"),
                format!("{}'s upstream {}", s.name, u.destination),
            )?;
        }
    }
    Ok(())
}
