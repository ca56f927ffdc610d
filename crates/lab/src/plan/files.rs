//! The files the lab writes for its processes, in the shapes the server, the
//! agent and Consul-style service definitions expect.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::topology::{Service, Vm};

/// `strait server --config FILE`.
#[derive(Debug, Serialize)]
pub(super) struct ServerToml<'a> {
    pub datacenter: &'a str,
    pub primary_datacenter: &'a str,
    pub node_name: &'a str,
    pub data_dir: &'a Path,
    pub https_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub join_token: &'a str,
    pub federation_token: &'a str,
    /// Only secondaries have them; the primary's file leaves the key out.
    #[serde(skip_serializing_if = "<[SocketAddr]>::is_empty")]
    pub primary_gateways: &'a [SocketAddr],
    /// The number of servers in this DC; left out (the default, 1) for a lone server.
    #[serde(skip_serializing_if = "is_one")]
    pub bootstrap_expect: usize,
    /// The other servers of this DC (their `https_addr`); empty for a lone server.
    #[serde(skip_serializing_if = "<[SocketAddr]>::is_empty")]
    pub retry_join: &'a [SocketAddr],
    /// `[acl]`, when the lab runs with ACLs (a table: serialized after every value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<AclToml<'a>>,
}

/// The `[acl]` table of a server's or an agent's config.
#[derive(Debug, Serialize)]
pub(super) struct AclToml<'a> {
    pub enabled: bool,
    pub default_policy: &'a str,
    pub down_policy: &'a str,
    pub tokens: AclTokensToml<'a>,
}

/// `[acl.tokens]`.
#[derive(Debug, Default, Serialize)]
pub(super) struct AclTokensToml<'a> {
    /// Primary servers: the management token they bootstrap with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_management: Option<&'a str>,
    /// Secondary servers: what ACL replication presents to the primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<&'a str>,
    /// Agents: their own token (a node identity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<&'a str>,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// `strait agent --config FILE`.
#[derive(Debug, Serialize)]
pub(super) struct AgentToml<'a> {
    pub datacenter: &'a str,
    pub node_name: &'a str,
    pub data_dir: &'a Path,
    pub advertise_addr: Ipv4Addr,
    pub http_addr: SocketAddr,
    pub servers: &'a [SocketAddr],
    pub join_token: &'a str,
    pub config_dir: &'a Path,
    /// Only on VMs whose proxies are Envoy: the agent's ADS server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<SocketAddr>,
    /// `[acl]`, when the lab runs with ACLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<AclToml<'a>>,
}

const HEADER: &str = "# Written by `strait lab up`; regenerated on every start.\n";

pub(super) fn server_toml(config: &ServerToml<'_>) -> String {
    // Serializing plain strings, paths and addresses cannot fail; an empty
    // body would be caught by the server's own validation anyway.
    format!("{HEADER}{}", toml::to_string(config).unwrap_or_default())
}

pub(super) fn agent_toml(config: &AgentToml<'_>) -> String {
    format!("{HEADER}{}", toml::to_string(config).unwrap_or_default())
}

/// A service definition in the Consul API shape. `local` is where upstream listeners bind
/// and the app listens: 127.0.0.1 in a VM of its own (netns driver), the VM's own address
/// with the local driver, since all its VMs share 127.0.0.1.
pub(super) fn service_definition(vm: &Vm, service: &Service, local: Ipv4Addr) -> String {
    let address = vm.address.to_string();
    let local = local.to_string();
    let upstreams: Vec<serde_json::Value> = service
        .upstreams
        .iter()
        .map(|u| {
            json!({
                "DestinationName": u.destination,
                "Datacenter": u.datacenter,
                "LocalBindAddress": local,
                "LocalBindPort": u.local_bind_port,
                "MeshGateway": { "Mode": u.mesh_gateway.as_str() },
            })
        })
        .collect();
    let definition = json!({
        "ID": service.name,
        "Name": service.name,
        "Address": address,
        "Port": service.port,
        "Check": {
            "HTTP": format!("http://{local}:{}{}", service.port, service.check_path),
            "Interval": "1s",
        },
        "Connect": {
            "SidecarService": {
                "Port": service.sidecar_port,
                "Proxy": { "Upstreams": upstreams, "LocalServiceAddress": local },
            }
        },
    });
    let mut text = serde_json::to_string_pretty(&definition).unwrap_or_default();
    text.push('\n');
    text
}
