//! Read operations of the [`Catalog`], all served from memory. Results are sorted (by node,
//! then service ID) so equal catalogs give equal answers.

use crate::catalog::Catalog;
use crate::store::NodeRecord;
use crate::types::{
    config_kind, Check, ConfigEntry, FederationState, Node, NodeServices, Service, ServiceInstance,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use strait_snapshot::GatewayMode;

/// The checks that decide a service's health: the node's own checks and the service's.
pub(crate) fn instance_checks(record: &NodeRecord, service_id: &str) -> Vec<Check> {
    record
        .checks
        .values()
        .filter(|c| c.service_id.is_empty() || c.service_id == service_id)
        .cloned()
        .collect()
}

fn instance(record: &NodeRecord, svc: &Service) -> ServiceInstance {
    ServiceInstance {
        node: record.node.clone(),
        service: svc.clone(),
        checks: instance_checks(record, &svc.id),
    }
}

impl Catalog {
    /// All nodes, by name.
    pub fn nodes(&self) -> Vec<Node> {
        self.read_state()
            .nodes
            .values()
            .map(|r| r.node.clone())
            .collect()
    }

    /// Service name -> union of its instances' tags (sorted), as `/v1/catalog/services`.
    pub fn services(&self) -> BTreeMap<String, Vec<String>> {
        let state = self.read_state();
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for svc in state.nodes.values().flat_map(|r| r.services.values()) {
            out.entry(svc.service.clone())
                .or_default()
                .extend(svc.tags.iter().cloned());
        }
        out.into_iter()
            .map(|(name, tags)| (name, tags.into_iter().collect()))
            .collect()
    }

    /// Every instance of service `name`, healthy or not, as `/v1/health/service/:name`.
    pub fn service_instances(&self, name: &str) -> Vec<ServiceInstance> {
        self.instances_where(|svc| svc.service == name)
    }

    /// The connect-proxy instances fronting `destination`, as `/v1/health/connect/:service`.
    pub fn connect_instances(&self, destination: &str) -> Vec<ServiceInstance> {
        self.instances_where(|svc| {
            svc.kind == crate::types::kind::CONNECT_PROXY
                && svc
                    .proxy
                    .as_ref()
                    .is_some_and(|p| p.destination_service_name == destination)
        })
    }

    fn instances_where(&self, keep: impl Fn(&Service) -> bool) -> Vec<ServiceInstance> {
        let state = self.read_state();
        state
            .nodes
            .values()
            .flat_map(|r| r.services.values().map(move |s| (r, s)))
            .filter(|(_, s)| keep(s))
            .map(|(r, s)| instance(r, s))
            .collect()
    }

    /// A node and its services, or `None` for an unknown node.
    pub fn node_services(&self, node: &str) -> Option<NodeServices> {
        let state = self.read_state();
        let record = state.nodes.get(node)?;
        Some(NodeServices {
            node: record.node.clone(),
            services: record.services.values().cloned().collect(),
        })
    }

    /// All checks of a node (node-level and per service), or `None` for an unknown node.
    pub fn node_checks(&self, node: &str) -> Option<Vec<Check>> {
        let state = self.read_state();
        let record = state.nodes.get(node)?;
        Some(record.checks.values().cloned().collect())
    }

    /// All config entries, by kind then name.
    pub fn config_entries(&self) -> Vec<ConfigEntry> {
        self.read_state().config.values().cloned().collect()
    }

    /// All federation states, by datacenter.
    pub fn federation_states(&self) -> Vec<FederationState> {
        self.read_state().federation.values().cloned().collect()
    }

    /// The `proxy-defaults` mesh gateway mode (`Default` when unset).
    pub fn proxy_defaults_mode(&self) -> GatewayMode {
        let key = (
            config_kind::PROXY_DEFAULTS.to_string(),
            "global".to_string(),
        );
        self.read_state()
            .config
            .get(&key)
            .and_then(|e| e.mesh_gateway.gateway_mode())
            .unwrap_or_default()
    }

    /// Service name -> its `service-defaults` mesh gateway mode, for entries that set one.
    pub fn service_defaults_modes(&self) -> BTreeMap<String, GatewayMode> {
        self.read_state()
            .config
            .values()
            .filter(|e| e.kind == config_kind::SERVICE_DEFAULTS)
            .filter_map(|e| Some((e.name.clone(), e.mesh_gateway.gateway_mode()?)))
            .filter(|(_, mode)| *mode != GatewayMode::Default)
            .collect()
    }

    /// DC -> its gateways' WAN addresses, parsed (validated on write), for
    /// `MeshView::federation`.
    pub fn federation_gateways(&self) -> BTreeMap<String, Vec<SocketAddr>> {
        self.read_state()
            .federation
            .values()
            .map(|f| {
                let addrs = f.mesh_gateways.iter().filter_map(|a| a.parse().ok());
                (f.datacenter.clone(), addrs.collect())
            })
            .collect()
    }
}
