//! Raw topology -> validated [`Topology`] (per-VM checks here, cross-VM ones in
//! `checks.rs`). Every semantic error carries the line
//! of the offending field (from `toml::Spanned`) and a path such as
//! `vm[2].service[0].port`, so a user can jump straight to it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use super::raw::{RawKind, RawMode, RawRole, RawService, RawTopology, RawVm};
use super::{
    Datacenter, MeshGatewayMode, Roles, Service, ServiceKind, Topology, TopologyError, Upstream,
    Vm, FIRST_SIDECAR_PORT, HTTP_API_PORT,
};

/// The source being validated, to turn byte spans into line numbers.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub origin: &'a str,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> TopologyError {
        TopologyError::Invalid {
            origin: self.origin.to_owned(),
            line: self.line(span.start),
            field: field.into(),
            message: message.into(),
        }
    }

    fn check_name(
        &self,
        span: Range<usize>,
        field: &str,
        value: &str,
    ) -> Result<(), TopologyError> {
        strait_identity::spiffe::validate_name(field, value)
            .map_err(|e| self.err(span, field, e.to_string()))
    }
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Topology, TopologyError> {
    let raw: RawTopology = toml::from_str(text).map_err(|e| {
        let src = Source { text, origin };
        let start = e.span().map(|s| s.start).unwrap_or(0);
        let line = src.line(start);
        let line_start = text[..start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        TopologyError::Syntax {
            origin: origin.to_owned(),
            line,
            column: start.saturating_sub(line_start) + 1,
            message: e.message().to_owned(),
        }
    })?;
    let src = Source { text, origin };
    let datacenters = datacenters(&src, &raw)?;
    let mut vms = Vec::with_capacity(raw.vm.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addresses: HashMap<Ipv4Addr, usize> = HashMap::new();
    for (i, rv) in raw.vm.iter().enumerate() {
        let vm = vm(&src, i, rv, &datacenters)?;
        if let Some(first) = names.insert(rv.name.get_ref(), i) {
            return Err(src.err(
                rv.name.span(),
                format!("vm[{i}].name"),
                format!("VM name {:?} is already used by vm[{first}]", vm.name),
            ));
        }
        if let Some(first) = addresses.insert(vm.address, i) {
            return Err(src.err(
                rv.address.span(),
                format!("vm[{i}].address"),
                format!(
                    "address {} is already used by vm[{first}] ({})",
                    vm.address,
                    raw.vm[first].name.get_ref()
                ),
            ));
        }
        vms.push(vm);
    }
    let resolvers = super::resolvers::resolvers(&src, &raw, &datacenters)?;
    let topology = Topology {
        datacenters,
        vms,
        resolvers,
    };
    super::checks::per_dc_roles(&src, &raw, &topology)?;
    super::checks::upstreams(&src, &raw, &topology)?;
    for (i, (rv, vm)) in raw.vm.iter().zip(&topology.vms).enumerate() {
        super::checks::ports(&src, i, rv, vm)?;
    }
    Ok(topology)
}

fn datacenters(src: &Source<'_>, raw: &RawTopology) -> Result<Vec<Datacenter>, TopologyError> {
    if raw.datacenter.is_empty() {
        return Err(src.err(
            0..0,
            "datacenter",
            "at least one [[datacenter]] table is required",
        ));
    }
    let mut out: Vec<Datacenter> = Vec::new();
    let mut primary: Option<usize> = None;
    for (i, rd) in raw.datacenter.iter().enumerate() {
        let field = format!("datacenter[{i}].name");
        src.check_name(rd.name.span(), &field, rd.name.get_ref())?;
        if let Some(first) = out.iter().position(|d| &d.name == rd.name.get_ref()) {
            return Err(src.err(
                rd.name.span(),
                field,
                format!(
                    "datacenter {:?} is already defined by datacenter[{first}]",
                    rd.name.get_ref()
                ),
            ));
        }
        let is_primary = rd.primary.as_ref().is_some_and(|p| *p.get_ref());
        if let (true, Some(p)) = (is_primary, &rd.primary) {
            if let Some(first) = primary {
                return Err(src.err(
                    p.span(),
                    format!("datacenter[{i}].primary"),
                    format!(
                        "more than one primary datacenter: {} is already primary",
                        out[first].name
                    ),
                ));
            }
            primary = Some(i);
        }
        out.push(Datacenter {
            name: rd.name.get_ref().clone(),
            primary: is_primary,
        });
    }
    if primary.is_none() {
        let span = raw.datacenter[0].name.span();
        return Err(src.err(
            span,
            "datacenter[0].primary",
            "no datacenter has `primary = true`; exactly one must",
        ));
    }
    Ok(out)
}

fn vm(src: &Source<'_>, i: usize, rv: &RawVm, dcs: &[Datacenter]) -> Result<Vm, TopologyError> {
    src.check_name(rv.name.span(), &format!("vm[{i}].name"), rv.name.get_ref())?;
    if !dcs.iter().any(|d| &d.name == rv.dc.get_ref()) {
        let known: Vec<&str> = dcs.iter().map(|d| d.name.as_str()).collect();
        return Err(src.err(
            rv.dc.span(),
            format!("vm[{i}].dc"),
            format!(
                "unknown datacenter {:?} (defined: {})",
                rv.dc.get_ref(),
                known.join(", ")
            ),
        ));
    }
    let address: Ipv4Addr = rv.address.get_ref().parse().map_err(|_| {
        src.err(
            rv.address.span(),
            format!("vm[{i}].address"),
            format!("{:?} is not an IPv4 address", rv.address.get_ref()),
        )
    })?;
    if !address.is_loopback() {
        return Err(src.err(
            rv.address.span(),
            format!("vm[{i}].address"),
            format!("{address} is not in 127.0.0.0/8; the local driver gives each VM a loopback address"),
        ));
    }
    let mut roles = Roles::default();
    let roles_field = format!("vm[{i}].roles");
    if rv.roles.get_ref().is_empty() {
        return Err(src.err(
            rv.roles.span(),
            roles_field,
            "a VM needs at least one role (server, gateway, services)",
        ));
    }
    for role in rv.roles.get_ref() {
        let slot = match role {
            RawRole::Server => &mut roles.server,
            RawRole::Gateway => &mut roles.gateway,
            RawRole::Services => &mut roles.services,
        };
        if *slot {
            return Err(src.err(
                rv.roles.span(),
                roles_field,
                format!("role {role:?} is listed twice"),
            ));
        }
        *slot = true;
    }
    if roles.server && (roles.gateway || roles.services) {
        return Err(src.err(
            rv.roles.span(),
            roles_field,
            format!("a server VM cannot also be a gateway or services VM (the server and the agent both need {address}:{HTTP_API_PORT})"),
        ));
    }
    if !roles.services && !rv.service.is_empty() {
        return Err(src.err(
            rv.service[0].name.span(),
            format!("vm[{i}].service"),
            "services need the `services` role on their VM",
        ));
    }
    let mut services: Vec<Service> = Vec::with_capacity(rv.service.len());
    for (j, rs) in rv.service.iter().enumerate() {
        let s = service(
            src,
            &format!("vm[{i}].service[{j}]"),
            j,
            rs,
            rv.dc.get_ref(),
        )?;
        if let Some(first) = services.iter().position(|o| o.name == s.name) {
            return Err(src.err(
                rs.name.span(),
                format!("vm[{i}].service[{j}].name"),
                format!(
                    "service {:?} is already defined on this VM by service[{first}]",
                    s.name
                ),
            ));
        }
        services.push(s);
    }
    Ok(Vm {
        name: rv.name.get_ref().clone(),
        dc: rv.dc.get_ref().clone(),
        address,
        roles,
        services,
        proxy: rv.proxy,
    })
}

fn service(
    src: &Source<'_>,
    path: &str,
    index: usize,
    rs: &RawService,
    dc: &str,
) -> Result<Service, TopologyError> {
    src.check_name(rs.name.span(), &format!("{path}.name"), rs.name.get_ref())?;
    if *rs.port.get_ref() == 0 {
        return Err(src.err(
            rs.port.span(),
            format!("{path}.port"),
            "port 0 is not a fixed port",
        ));
    }
    let kind = match (rs.kind.get_ref(), &rs.command) {
        (RawKind::Command, Some(cmd)) if !cmd.get_ref().is_empty() => ServiceKind::Command {
            argv: cmd.get_ref().clone(),
        },
        (RawKind::Command, Some(cmd)) => {
            return Err(src.err(cmd.span(), format!("{path}.command"), "must name a program"))
        }
        (RawKind::Command, None) => {
            return Err(src.err(
                rs.kind.span(),
                format!("{path}.command"),
                "kind = \"command\" needs `command = [\"program\", \"arg\", ...]`",
            ))
        }
        (_, Some(cmd)) => {
            return Err(src.err(
                cmd.span(),
                format!("{path}.command"),
                "only allowed with kind = \"command\"",
            ))
        }
        (RawKind::Counting, None) => ServiceKind::Counting,
        (RawKind::Dashboard, None) => ServiceKind::Dashboard,
    };
    if kind == ServiceKind::Dashboard && rs.upstream.is_empty() {
        return Err(src.err(
            rs.kind.span(),
            format!("{path}.upstream"),
            "a dashboard needs an upstream (the counting service it shows)",
        ));
    }
    let check_path = match &rs.check_path {
        Some(p) if p.get_ref().starts_with('/') => p.get_ref().clone(),
        Some(p) => {
            return Err(src.err(
                p.span(),
                format!("{path}.check_path"),
                format!("{:?} must start with '/'", p.get_ref()),
            ))
        }
        None => "/health".to_owned(),
    };
    let default_sidecar =
        FIRST_SIDECAR_PORT.saturating_add(u16::try_from(index).unwrap_or(u16::MAX));
    let sidecar_port = rs
        .sidecar_port
        .as_ref()
        .map_or(default_sidecar, |p| *p.get_ref());
    let upstreams = rs
        .upstream
        .iter()
        .map(|ru| Upstream {
            destination: ru.destination.get_ref().clone(),
            datacenter: ru
                .datacenter
                .as_ref()
                .map_or_else(|| dc.to_owned(), |d| d.get_ref().clone()),
            local_bind_port: *ru.local_bind_port.get_ref(),
            mesh_gateway: match ru.mesh_gateway.as_ref().map(|m| *m.get_ref()) {
                None | Some(RawMode::Local) => MeshGatewayMode::Local,
                Some(RawMode::Remote) => MeshGatewayMode::Remote,
                Some(RawMode::None) => MeshGatewayMode::None,
            },
        })
        .collect();
    Ok(Service {
        name: rs.name.get_ref().clone(),
        kind,
        port: *rs.port.get_ref(),
        check_path,
        sidecar_port,
        upstreams,
    })
}
