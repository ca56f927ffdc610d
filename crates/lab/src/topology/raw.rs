//! The topology file exactly as written: serde types with spans, so that
//! [`super::validate`] can point at the line of a semantically wrong field.
//! Unknown fields are rejected by serde itself (with line and column).

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopology {
    /// `[[datacenter]]` tables.
    #[serde(default)]
    pub datacenter: Vec<RawDatacenter>,
    /// `[[vm]]` tables.
    #[serde(default)]
    pub vm: Vec<RawVm>,
    /// `[[resolver]]` tables: `service-resolver` entries `lab up` writes.
    #[serde(default)]
    pub resolver: Vec<RawResolver>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResolver {
    /// The DC whose sidecars use it: the entry is written to this DC's server.
    pub dc: Spanned<String>,
    /// The service it resolves.
    pub service: Spanned<String>,
    /// Datacenters to fail over to, in order.
    pub failover: Spanned<Vec<String>>,
    /// `ConnectTimeout` (e.g. "2s"); default: the proxy's.
    pub connect_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatacenter {
    /// DC name, also used in SNI names and SPIFFE IDs.
    pub name: Spanned<String>,
    /// The DC that holds the root CA; exactly one per topology.
    pub primary: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVm {
    /// VM (node) name.
    pub name: Spanned<String>,
    /// Name of a `[[datacenter]]`.
    pub dc: Spanned<String>,
    /// IPv4 address the VM's processes listen on.
    pub address: Spanned<String>,
    /// What the VM runs.
    pub roles: Spanned<Vec<RawRole>>,
    /// `[[vm.service]]` tables; only on VMs with the `services` role.
    #[serde(default)]
    pub service: Vec<RawService>,
    /// Data plane of the VM's gateway and sidecars (`builtin` or `envoy`); default: `lab up
    /// --proxy`.
    pub proxy: Option<super::DataPlane>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawRole {
    Server,
    Gateway,
    Services,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    /// Service name in the catalog.
    pub name: Spanned<String>,
    /// Which program runs the service.
    pub kind: Spanned<RawKind>,
    /// Port the service listens on, on the VM's address.
    pub port: Spanned<u16>,
    /// For `kind = "command"`: program and arguments.
    pub command: Option<Spanned<Vec<String>>>,
    /// HTTP health check path (default `/health`).
    pub check_path: Option<Spanned<String>>,
    /// Sidecar's public (inbound mTLS) port; default 21000 + index on the VM.
    pub sidecar_port: Option<Spanned<u16>>,
    /// `[[vm.service.upstream]]` tables.
    #[serde(default)]
    pub upstream: Vec<RawUpstream>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawKind {
    Counting,
    Dashboard,
    Command,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    /// Name of the destination service.
    pub destination: Spanned<String>,
    /// DC of the destination; default: the service's own DC.
    pub datacenter: Option<Spanned<String>>,
    /// Port of the sidecar's outbound listener on the VM's address.
    pub local_bind_port: Spanned<u16>,
    /// How traffic reaches another DC (default `local`).
    pub mesh_gateway: Option<Spanned<RawMode>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawMode {
    Local,
    Remote,
    None,
}
