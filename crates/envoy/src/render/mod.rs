//! Snapshot -> Envoy v3 resources. Pure: the same snapshot always renders the same resources,
//! so the ADS server can send them under the snapshot's version.
//!
//! What each proxy kind gets:
//! - sidecar ([`sidecar`]): one inbound listener on the public address that requires a client
//!   certificate from the federation's roots and forwards to the local app; one outbound
//!   `tcp_proxy` listener per upstream, whose cluster dials with the proxy's leaf, the
//!   upstream's SNI, and accepts only the exact destination SPIFFE ID (a failover chain: an
//!   aggregate cluster over one such cluster per target, with outlier detection); intentions become a
//!   network RBAC filter on the inbound listener ([`rbac`]);
//! - mesh gateway ([`gateway`]): a listener per address (LAN, and WAN when it differs) with
//!   `tls_inspector` and one filter chain per SNI (`server_names`) that forwards the bytes
//!   without decrypting: local services, local servers, and every remote DC as a wildcard.
//!
//! Certificates travel as SDS secrets ([`LEAF_SECRET`], [`ROOTS_SECRET`]) so a rotation is a
//! secret update, not a listener or cluster change.

mod gateway;
mod proto;
mod rbac;
mod sidecar;

#[cfg(test)]
mod tests;

use envoy_types::pb::google::protobuf::Any;
use strait_snapshot::{ProxyRole, Snapshot};

pub use proto::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE};

/// SDS name of the proxy's own certificate and key.
pub const LEAF_SECRET: &str = "leaf";
/// SDS name of the federation's root certificates.
pub const ROOTS_SECRET: &str = "roots";

/// One resource, named as Envoy subscribes to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    pub body: Any,
}

/// Everything one proxy needs, per xDS type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub listeners: Vec<Resource>,
    pub clusters: Vec<Resource>,
    pub endpoints: Vec<Resource>,
    pub secrets: Vec<Resource>,
}

impl Resources {
    /// The resources of one xDS type URL; `None` for a type strait does not serve.
    pub fn of_type(&self, type_url: &str) -> Option<&[Resource]> {
        match type_url {
            LISTENER_TYPE => Some(&self.listeners),
            CLUSTER_TYPE => Some(&self.clusters),
            ENDPOINT_TYPE => Some(&self.endpoints),
            SECRET_TYPE => Some(&self.secrets),
            _ => None,
        }
    }
}

/// Renders a snapshot: the secrets, then what its role needs.
pub fn render(snapshot: &Snapshot) -> Resources {
    let mut out = Resources {
        secrets: vec![
            proto::leaf_secret(LEAF_SECRET, &snapshot.leaf),
            proto::roots_secret(ROOTS_SECRET, &snapshot.roots_pem),
        ],
        ..Resources::default()
    };
    match &snapshot.role {
        ProxyRole::Sidecar(sidecar) => sidecar::render(sidecar, &mut out),
        ProxyRole::Gateway(gw) => gateway::render(snapshot, gw, &mut out),
    }
    out
}
