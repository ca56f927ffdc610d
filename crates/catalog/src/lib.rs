//! strait-catalog: one DC's catalog, held by `strait server`.
//!
//! Flow position: agents register nodes, services and checks (and keep them in sync) ->
//! [`Catalog`] (in memory; durable through the server's Raft log and snapshots) -> the HTTP
//! API returns its Consul-shaped values directly, blocking queries wait on its index, and
//! [`Catalog::mesh_instances`] feeds the snapshot builder (`strait-snapshot`).

#![forbid(unsafe_code)]

mod catalog;
mod error;
mod mesh;
mod read;
mod store;
mod types;
mod validate;
mod write;

pub use catalog::Catalog;
pub use error::{CatalogError, Result};
pub use types::{
    config_kind, intention_action, kind, status, Check, CheckStatus, ConfigEntry, FederationState,
    MeshGatewayConfig, Node, NodeServices, PassiveHealthCheck, ProxyConfig, ResolverFailover,
    ResolverSubset, ResolverTarget, Service, ServiceAddress, ServiceInstance, SourceIntention,
    SyncOutcome, Upstream, UpstreamConfig, UpstreamSettings,
};
pub use validate::rules;
