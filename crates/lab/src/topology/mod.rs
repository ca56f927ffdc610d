//! The lab's topology: which DCs, VMs and services to run. First stop of the lab
//! flow: file (or the built-in default) -> [`Topology`] -> `plan` -> supervisor.
//! The built-in default goes through the same parser and validation as a user file.

mod checks;
mod raw;
mod resolvers;
mod validate;

#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The two-DC demo of DESIGN.md ("The lab").
pub const DEFAULT_TOPOLOGY: &str = include_str!("default.toml");

/// Name shown in errors about the built-in topology.
pub const DEFAULT_ORIGIN: &str = "<built-in default topology>";

/// Three DCs, counting in dc2 failing over to dc3 (`lab up --topology failover`).
pub const FAILOVER_TOPOLOGY: &str = include_str!("failover.toml");

/// The default demo with three servers in each DC (`lab up --topology ha`).
pub const HA_TOPOLOGY: &str = include_str!("ha.toml");

/// The built-in topologies `--topology` accepts by name: (name, text).
pub const BUILTIN_TOPOLOGIES: [(&str, &str); 3] = [
    ("default", DEFAULT_TOPOLOGY),
    ("failover", FAILOVER_TOPOLOGY),
    ("ha", HA_TOPOLOGY),
];

/// The most servers a DC may list (`bootstrap_expect` goes up to 7).
pub const MAX_SERVERS: usize = 7;

/// Everything wrong with a topology names the file, the line and the field.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read topology file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// TOML syntax, unknown field, wrong type (reported by the toml parser).
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A well-formed file that does not describe a runnable lab.
    #[error("{origin}:{line}: field `{field}`: {message}")]
    Invalid {
        origin: String,
        line: usize,
        field: String,
        message: String,
    },
}

/// A validated topology: names are unique and valid, references resolve,
/// no two listeners of one VM share a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// In file order; exactly one is primary.
    pub datacenters: Vec<Datacenter>,
    /// In file order.
    pub vms: Vec<Vm>,
    /// `service-resolver` entries written once the servers are up, in file order.
    pub resolvers: Vec<Resolver>,
}

/// A `[[resolver]]`: a `service-resolver` entry for `service`, written to `dc`'s server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    pub dc: String,
    pub service: String,
    /// Datacenters of the topology, in order.
    pub failover: Vec<String>,
    /// A Go duration; `None`: the proxy's default.
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datacenter {
    pub name: String,
    /// Holds the root CA; secondaries federate with it through gateways.
    pub primary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    /// Also the node name in the catalog.
    pub name: String,
    pub dc: String,
    /// With the local driver, a 127.0.0.0/8 address on the loopback device.
    pub address: Ipv4Addr,
    pub roles: Roles,
    /// Empty unless `roles.services`.
    pub services: Vec<Service>,
    /// The file's `proxy`; `None`: whatever `lab up --proxy` says.
    pub proxy: Option<DataPlane>,
}

/// Which proxy runs a VM's gateway and sidecars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DataPlane {
    /// `strait gateway` / `strait proxy`.
    #[default]
    Builtin,
    /// `strait envoy run` (Envoy configured by the agent over xDS).
    Envoy,
}

/// A server VM runs only the server (it has no agent); gateway and services
/// VMs share one agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    pub server: bool,
    pub gateway: bool,
    pub services: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Service name and ID in the catalog; the sidecar is `<name>-sidecar-proxy`.
    pub name: String,
    pub kind: ServiceKind,
    /// The app listens on `<vm address>:port`.
    pub port: u16,
    /// Path of the HTTP health check on the app.
    pub check_path: String,
    /// The sidecar's inbound mTLS port.
    pub sidecar_port: u16,
    pub upstreams: Vec<Upstream>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// `strait demo counting`.
    Counting,
    /// `strait demo dashboard`, pointed at its first upstream.
    Dashboard,
    /// Any program; gets `PORT` and `BIND_ADDR` in its environment.
    Command { argv: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub destination: String,
    /// Resolved: the service's own DC when the file leaves it out.
    pub datacenter: String,
    /// The sidecar listens on `<vm address>:local_bind_port` for this upstream.
    pub local_bind_port: u16,
    pub mesh_gateway: MeshGatewayMode,
}

/// Consul's mesh gateway modes, with their wire spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshGatewayMode {
    Local,
    Remote,
    None,
}

impl MeshGatewayMode {
    /// The value of `MeshGateway.Mode` in a service definition.
    pub fn as_str(self) -> &'static str {
        match self {
            MeshGatewayMode::Local => "local",
            MeshGatewayMode::Remote => "remote",
            MeshGatewayMode::None => "none",
        }
    }
}

/// The servers' mTLS API (agents, other servers through gateways).
pub const SERVER_HTTPS_PORT: u16 = 8300;
/// The plain loopback HTTP API of a server or an agent.
pub const HTTP_API_PORT: u16 = 8500;
/// The agent's ADS (gRPC) port, on VMs whose proxies are Envoy.
pub const GRPC_PORT: u16 = 8502;
/// A mesh gateway's LAN and WAN port.
pub const GATEWAY_PORT: u16 = 8443;
/// Admin endpoints (`/ready`, config dump) are handed out from here per VM:
/// the gateway first, then one per sidecar.
pub const FIRST_ADMIN_PORT: u16 = 19000;
/// Default sidecar inbound port of the first service on a VM.
pub const FIRST_SIDECAR_PORT: u16 = 21000;

impl Vm {
    /// Admin port of this VM's gateway.
    pub fn gateway_admin_port(&self) -> u16 {
        FIRST_ADMIN_PORT
    }

    /// Admin port of the sidecar of the `index`-th service of this VM.
    pub fn sidecar_admin_port(&self, index: usize) -> u16 {
        let offset = usize::from(self.roles.gateway) + index;
        FIRST_ADMIN_PORT.saturating_add(u16::try_from(offset).unwrap_or(u16::MAX))
    }

    /// The VM's data plane once `lab up --proxy` has been applied.
    pub fn data_plane(&self) -> DataPlane {
        self.proxy.unwrap_or_default()
    }

    /// Whether the VM runs an agent (every VM that is not a server).
    pub fn runs_agent(&self) -> bool {
        self.roles.gateway || self.roles.services
    }
}

impl Topology {
    /// Parses and validates `text`; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Topology, TopologyError> {
        validate::parse(text, origin)
    }

    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|error| TopologyError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The built-in two-DC demo.
    pub fn builtin() -> Result<Topology, TopologyError> {
        Self::parse(DEFAULT_TOPOLOGY, DEFAULT_ORIGIN)
    }

    /// The text of the built-in topology called `name`, if there is one.
    pub fn builtin_text(name: &str) -> Option<&'static str> {
        BUILTIN_TOPOLOGIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| *text)
    }

    /// The primary DC (validation guarantees there is one).
    pub fn primary_dc(&self) -> &str {
        self.datacenters
            .iter()
            .find(|dc| dc.primary)
            .map(|dc| dc.name.as_str())
            .unwrap_or_default()
    }

    /// Gives every VM whose file entry does not name a `proxy` this one.
    pub fn with_default_proxy(mut self, proxy: DataPlane) -> Topology {
        for vm in &mut self.vms {
            vm.proxy.get_or_insert(proxy);
        }
        self
    }

    /// Server VMs of `dc`, in file order: one DC's Raft cluster.
    pub fn servers_in<'a>(&'a self, dc: &'a str) -> impl Iterator<Item = &'a Vm> + 'a {
        self.vms_in(dc).filter(|vm| vm.roles.server)
    }

    /// VMs of `dc`, in file order.
    pub fn vms_in<'a>(&'a self, dc: &'a str) -> impl Iterator<Item = &'a Vm> + 'a {
        self.vms.iter().filter(move |vm| vm.dc == dc)
    }
}
