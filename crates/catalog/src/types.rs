//! The catalog's values, in the JSON shapes of Consul's HTTP API (PascalCase field names) so
//! the server's HTTP API can return them directly and existing clients understand them.
//! Input types reject unknown fields: a typo in a registration is an error, not a silent drop.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use strait_snapshot::GatewayMode;

/// `Service.Kind` values.
pub mod kind {
    /// An application service.
    pub const TYPICAL: &str = "";
    pub const CONNECT_PROXY: &str = "connect-proxy";
    pub const MESH_GATEWAY: &str = "mesh-gateway";
    /// A strait server, registered by the server itself.
    pub const STRAIT_SERVER: &str = "strait-server";
    pub const ALL: [&str; 4] = [TYPICAL, CONNECT_PROXY, MESH_GATEWAY, STRAIT_SERVER];
}

/// `Check.Status` values (the wire spelling of [`CheckStatus`]).
pub mod status {
    use super::CheckStatus;
    pub const PASSING: &str = CheckStatus::Passing.as_str();
    pub const WARNING: &str = CheckStatus::Warning.as_str();
    pub const CRITICAL: &str = CheckStatus::Critical.as_str();
    pub const ALL: [&str; 3] = [PASSING, WARNING, CRITICAL];
}

/// A check's result, ordered from best to worst so that the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    pub const ALL: [CheckStatus; 3] = [
        CheckStatus::Passing,
        CheckStatus::Warning,
        CheckStatus::Critical,
    ];

    /// The wire value (`Check.Status`), also the `status` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    /// Reads a wire value; anything unknown (or empty: not run yet) counts as critical.
    pub fn parse(value: &str) -> CheckStatus {
        CheckStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .unwrap_or(CheckStatus::Critical)
    }
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ConfigEntry.Kind` values.
pub mod config_kind {
    /// Global defaults; its only valid name is `global`.
    pub const PROXY_DEFAULTS: &str = "proxy-defaults";
    /// Defaults of the service named by `Name`.
    pub const SERVICE_DEFAULTS: &str = "service-defaults";
    /// Who may call the service named by `Name` (`*`: every service); see [`SourceIntention`].
    pub const SERVICE_INTENTIONS: &str = "service-intentions";
    /// Where connections to the service named by `Name` go: `Redirect`, or the primary
    /// target then `Failover` targets, bounded by `ConnectTimeout`.
    pub const SERVICE_RESOLVER: &str = "service-resolver";
    pub const ALL: [&str; 4] = [
        PROXY_DEFAULTS,
        SERVICE_DEFAULTS,
        SERVICE_INTENTIONS,
        SERVICE_RESOLVER,
    ];
}

/// `SourceIntention.Action` values.
pub mod intention_action {
    pub const ALLOW: &str = "allow";
    pub const DENY: &str = "deny";
}

/// A machine (VM) in this DC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Node {
    /// Node name, unique in the DC.
    pub node: String,
    /// LAN address; services without an address of their own use it.
    pub address: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Catalog index of the last change to this node; set by the catalog.
    #[serde(default)]
    pub modify_index: u64,
}

/// An address in `Service.TaggedAddresses` (`"wan"` for gateways).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ServiceAddress {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
}

/// A service instance registered on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Service {
    /// Unique on its node; defaults to the service name.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Service name.
    pub service: String,
    /// One of [`kind::ALL`].
    #[serde(default)]
    pub kind: String,
    /// Empty: the node's address.
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Connect proxies only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Set by the catalog.
    #[serde(default)]
    pub modify_index: u64,
}

/// `Service.Proxy` of a connect proxy (sidecar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// The service this sidecar fronts.
    #[serde(default)]
    pub destination_service_name: String,
    #[serde(rename = "DestinationServiceID", default)]
    pub destination_service_id: String,
    #[serde(default)]
    pub local_service_address: String,
    #[serde(default)]
    pub local_service_port: u16,
    /// Consul's proxy mode (`transparent` / `direct`); kept for compatibility, unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default)]
    pub mesh_gateway: MeshGatewayConfig,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
}

/// `MeshGateway: {"Mode": "" | "local" | "remote" | "none"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MeshGatewayConfig {
    /// Empty: inherit from the next level of precedence.
    #[serde(default)]
    pub mode: String,
}

impl MeshGatewayConfig {
    /// The typed mode, or `None` (the Option) when the string is not a valid mode.
    pub fn gateway_mode(&self) -> Option<GatewayMode> {
        match self.mode.as_str() {
            "" | "default" => Some(GatewayMode::Default),
            "local" => Some(GatewayMode::Local),
            "remote" => Some(GatewayMode::Remote),
            "none" => Some(GatewayMode::None),
            _ => None,
        }
    }
}

/// An upstream of a connect proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Upstream {
    pub destination_name: String,
    /// Empty: the proxy's own DC.
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub local_bind_address: String,
    #[serde(default)]
    pub local_bind_port: u16,
    #[serde(default)]
    pub mesh_gateway: MeshGatewayConfig,
}

/// A health check of a node (`ServiceID` empty) or of one service on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Check {
    /// Empty on input: the node it is registered with.
    #[serde(default)]
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Empty on input: the check ID.
    #[serde(default)]
    pub name: String,
    /// One of [`status::ALL`]; empty on input means `critical` until the first result.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// Filled in by the catalog from the service.
    #[serde(default)]
    pub service_name: String,
    /// Set by the catalog.
    #[serde(default)]
    pub modify_index: u64,
}

/// A config entry, in Consul's shape: mesh gateway mode defaults (`proxy-defaults` named
/// `global`, or `service-defaults`), the intentions of a destination service
/// (`service-intentions`, with `Sources`), or where its connections go (`service-resolver`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ConfigEntry {
    /// One of [`config_kind`].
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub mesh_gateway: MeshGatewayConfig,
    /// `service-intentions` only: who may call `Name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceIntention>,
    /// `service-resolver` only: bound on one connection attempt over every target, as a
    /// duration (`"5s"`, `"500ms"`); empty: the proxy's default.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub connect_timeout: String,
    /// `service-resolver` only: the service is served by another service and/or DC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<ResolverTarget>,
    /// `service-resolver` only: subset (`*`: any other) -> where to go when it has no
    /// healthy instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failover: BTreeMap<String, ResolverFailover>,
    /// `service-resolver` only: the subset of `Subsets` a target that names none selects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_subset: String,
    /// `service-resolver` only: named subsets of the service's instances.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subsets: BTreeMap<String, ResolverSubset>,
    /// `service-defaults` only: settings of this service's upstreams, for all of them
    /// (`Defaults`) and per upstream (`Overrides`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_config: Option<Box<UpstreamConfig>>,
    /// Set by the catalog.
    #[serde(default)]
    pub modify_index: u64,
}

/// `service-resolver` `Redirect`, or one of `Failover[subset].Targets`: a service in a
/// datacenter, an empty field keeping the target's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ResolverTarget {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// A subset of `Service`'s resolver; only in this DC (not with `Datacenter`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
}

/// `service-resolver` `Failover[subset]`: `Datacenters` (in order, of `Service` or the
/// resolver's own service) or `Targets`, not both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ResolverFailover {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// A subset of `Service`'s resolver; only in this DC (not with `Datacenters`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ResolverTarget>,
}

/// `service-resolver` `Subsets[name]`: instances selected by a filter on tags and meta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ResolverSubset {
    /// A filter expression (`?filter=`'s language) on `Service.Tags`, `Service.Meta.<key>`,
    /// `Node.Node`, `Node.Meta.<key>` of the instance; empty: every instance.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Leave out instances with a check in `warning`.
    #[serde(default)]
    pub only_passing: bool,
}

/// `service-defaults` `UpstreamConfig`: what applies to every upstream of the service
/// (`Defaults`), and to the one each `Overrides` entry names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<UpstreamSettings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<UpstreamSettings>,
}

/// One `UpstreamConfig.Defaults` or `Overrides[i]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UpstreamSettings {
    /// `Overrides` only: the upstream service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_health_check: Option<PassiveHealthCheck>,
}

/// Consul's `PassiveHealthCheck` (outlier detection); a field left out takes Envoy's
/// default ([`strait_snapshot::PassiveHealth::DEFAULT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PassiveHealthCheck {
    /// A duration (`"10s"`): the window of a failure streak.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interval: String,
    /// Consecutive connect or handshake failures that eject an endpoint; 0: the default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_failures: u32,
    /// Envoy only: the % of ejections enforced (0-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_5xx: Option<u32>,
    /// At most this % of a target's endpoints ejected at once (0-100; at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    /// A duration (`"30s"`): the first ejection's length, multiplied by recent ejections.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_ejection_time: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl PassiveHealthCheck {
    /// A (validated) check as the snapshot builder takes it, defaults filled in.
    pub fn passive_health(&self) -> strait_snapshot::PassiveHealth {
        let d = strait_snapshot::PassiveHealth::DEFAULT;
        let ms = |value: &str, default: u64| {
            crate::validate::duration_ms(value)
                .ok()
                .flatten()
                .unwrap_or(default)
        };
        strait_snapshot::PassiveHealth {
            interval_ms: ms(&self.interval, d.interval_ms),
            max_failures: if self.max_failures == 0 {
                d.max_failures
            } else {
                self.max_failures
            },
            max_ejection_percent: self.max_ejection_percent.unwrap_or(d.max_ejection_percent),
            base_ejection_ms: ms(&self.base_ejection_time, d.base_ejection_ms),
            enforcing_consecutive_5xx: self.enforcing_consecutive_5xx,
        }
    }
}

impl ConfigEntry {
    /// A `service-intentions` entry's sources as the snapshot builder takes them.
    pub fn intention_rules(&self) -> Vec<strait_snapshot::IntentionRule> {
        self.sources
            .iter()
            .map(|s| strait_snapshot::IntentionRule {
                source: s.name.clone(),
                allow: s.action == intention_action::ALLOW,
            })
            .collect()
    }

    /// A (validated) `service-defaults` entry's `UpstreamConfig` as the snapshot builder
    /// takes it; `None` when it sets no passive health.
    pub fn upstream_configs(&self) -> Option<strait_snapshot::UpstreamConfigs> {
        let config = self.upstream_config.as_ref()?;
        let health =
            |s: &UpstreamSettings| s.passive_health_check.as_ref().map(|c| c.passive_health());
        let out = strait_snapshot::UpstreamConfigs {
            defaults: config.defaults.as_ref().and_then(health),
            overrides: config
                .overrides
                .iter()
                .filter_map(|o| Some((o.name.clone(), health(o)?)))
                .collect(),
        };
        (out != strait_snapshot::UpstreamConfigs::default()).then_some(out)
    }

    /// A (validated) `service-resolver` entry as the snapshot builder takes it.
    pub fn resolver(&self) -> strait_snapshot::Resolver {
        let name = |service: &str, subset: &str, datacenter: &str| strait_snapshot::TargetName {
            service: service.to_string(),
            subset: subset.to_string(),
            datacenter: datacenter.to_string(),
        };
        let targets = |f: &ResolverFailover| {
            if f.targets.is_empty() && f.datacenters.is_empty() {
                vec![name(&f.service, &f.service_subset, "")]
            } else if f.targets.is_empty() {
                f.datacenters
                    .iter()
                    .map(|dc| name(&f.service, &f.service_subset, dc))
                    .collect()
            } else {
                f.targets
                    .iter()
                    .map(|t| name(&t.service, &t.service_subset, &t.datacenter))
                    .collect()
            }
        };
        strait_snapshot::Resolver {
            connect_timeout_ms: crate::validate::duration_ms(&self.connect_timeout)
                .ok()
                .flatten(),
            redirect: self
                .redirect
                .as_ref()
                .map(|r| name(&r.service, &r.service_subset, &r.datacenter)),
            failover: self.failover.get("*").map_or_else(Vec::new, targets),
            subset_failover: self
                .failover
                .iter()
                .filter(|(subset, _)| *subset != "*")
                .map(|(subset, f)| (subset.clone(), targets(f)))
                .collect(),
            default_subset: self.default_subset.clone(),
            subsets: self
                .subsets
                .iter()
                .map(|(n, s)| {
                    let subset = strait_snapshot::Subset {
                        filter: s.filter.clone(),
                        only_passing: s.only_passing,
                    };
                    (n.clone(), subset)
                })
                .collect(),
        }
    }
}

/// One source of a `service-intentions` entry: may service `Name` (`*`: any) call the entry's
/// destination? Enforced by the destination's sidecar on every new inbound connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SourceIntention {
    pub name: String,
    /// [`intention_action::ALLOW`] or [`intention_action::DENY`].
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Where a DC's mesh gateways are reachable from other DCs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FederationState {
    pub datacenter: String,
    /// WAN `ip:port` of each gateway.
    #[serde(default)]
    pub mesh_gateways: Vec<String>,
    /// Catalog index of the last change; set by the catalog.
    #[serde(default)]
    pub updated_index: u64,
}

/// One instance as `/v1/health/service/:name` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceInstance {
    pub node: Node,
    pub service: Service,
    /// Node-level checks and the service's own checks.
    pub checks: Vec<Check>,
}

impl ServiceInstance {
    /// Healthy means no check is critical (no check at all counts as healthy).
    pub fn is_healthy(&self) -> bool {
        self.checks.iter().all(|c| c.status != status::CRITICAL)
    }

    /// All checks passing (Consul's `?passing` filter).
    pub fn is_passing(&self) -> bool {
        self.checks.iter().all(|c| c.status == status::PASSING)
    }
}

/// A node and its services, as `/v1/catalog/node-services/:node` returns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServices {
    pub node: Node,
    pub services: Vec<Service>,
}

/// Result of [`crate::Catalog::sync_node`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncOutcome {
    /// Whether anything was written (and the index bumped).
    pub changed: bool,
    /// Catalog index after the sync.
    pub index: u64,
    /// IDs of services the sync removed from the node.
    pub removed_services: Vec<String>,
    /// IDs of checks the sync removed from the node.
    pub removed_checks: Vec<String>,
}

/// Items stamped with the index of their last change.
pub(crate) trait Indexed {
    fn modify_index(&self) -> u64;
    fn set_modify_index(&mut self, index: u64);
}

macro_rules! indexed {
    ($ty:ty, $field:ident) => {
        impl Indexed for $ty {
            fn modify_index(&self) -> u64 {
                self.$field
            }
            fn set_modify_index(&mut self, index: u64) {
                self.$field = index;
            }
        }
    };
}
indexed!(Node, modify_index);
indexed!(Service, modify_index);
indexed!(Check, modify_index);
indexed!(ConfigEntry, modify_index);
indexed!(FederationState, updated_index);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_json_uses_consul_field_names() {
        let json = r#"{"ID":"web-sidecar-proxy","Service":"web-sidecar-proxy","Kind":"connect-proxy",
            "Port":21000,"TaggedAddresses":{"wan":{"Address":"192.0.2.1","Port":8443}},
            "Proxy":{"DestinationServiceName":"web","DestinationServiceID":"web",
              "LocalServicePort":8080,"MeshGateway":{"Mode":"local"},
              "Upstreams":[{"DestinationName":"counting","Datacenter":"dc2","LocalBindPort":5000,
                "MeshGateway":{"Mode":"remote"}}]}}"#;
        let svc: Service = serde_json::from_str(json).expect("parse");
        let proxy = svc.proxy.as_ref().expect("proxy");
        assert_eq!(proxy.destination_service_name, "web");
        assert_eq!(
            proxy.upstreams[0].mesh_gateway.gateway_mode(),
            Some(GatewayMode::Remote)
        );
        assert_eq!(svc.tagged_addresses["wan"].port, 8443);
        let out = serde_json::to_value(&svc).expect("json");
        assert_eq!(out["ID"], "web-sidecar-proxy");
        assert_eq!(out["Proxy"]["DestinationServiceID"], "web");
        assert!(out["Proxy"].get("Mode").is_none());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err =
            serde_json::from_str::<Service>(r#"{"Service":"web","Prot":80}"#).expect_err("typo");
        assert!(err.to_string().contains("Prot"), "{err}");
        let err = serde_json::from_str::<Check>(r#"{"CheckID":"c","Staus":"passing"}"#)
            .expect_err("typo");
        assert!(err.to_string().contains("Staus"), "{err}");
    }

    #[test]
    fn check_status_spelling_and_order() {
        for st in CheckStatus::ALL {
            assert_eq!(CheckStatus::parse(st.as_str()), st);
        }
        assert_eq!(status::ALL, CheckStatus::ALL.map(CheckStatus::as_str));
        assert_eq!(status::ALL, ["passing", "warning", "critical"]);
        // Not run yet, or garbage: critical, the worst.
        assert_eq!(CheckStatus::parse(""), CheckStatus::Critical);
        assert_eq!(CheckStatus::parse("Passing"), CheckStatus::Critical);
        let worst = [CheckStatus::Warning, CheckStatus::Passing]
            .into_iter()
            .max();
        assert_eq!(worst, Some(CheckStatus::Warning));
        assert!(CheckStatus::Critical > CheckStatus::Warning);
    }

    #[test]
    fn instance_health() {
        let check = |s: &str| Check {
            check_id: "c".into(),
            status: s.into(),
            ..Check::default()
        };
        let mut inst = ServiceInstance {
            node: Node::default(),
            service: Service::default(),
            checks: vec![],
        };
        assert!(inst.is_healthy() && inst.is_passing());
        inst.checks = vec![check("passing"), check("warning")];
        assert!(inst.is_healthy() && !inst.is_passing());
        inst.checks.push(check("critical"));
        assert!(!inst.is_healthy());
    }
}
