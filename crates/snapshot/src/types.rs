//! The snapshot value and the inputs it is built from. Serialised as JSON between agent and
//! proxy (`GET /v1/agent/proxy/snapshot/:proxy_id`, a blocking query on `version`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// How an upstream in another DC is reached. Precedence when resolving: upstream > proxy >
/// service defaults > proxy defaults; [`GatewayMode::Default`] means "not set at this level".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayMode {
    /// Not set at this level: inherit.
    #[default]
    #[serde(alias = "")]
    Default,
    /// sidecar -> own DC's gateway -> target DC's gateway -> sidecar.
    Local,
    /// sidecar -> target DC's gateway -> sidecar.
    Remote,
    /// sidecar -> sidecar directly, where the network allows.
    None,
}

/// A value that must never reach a log line or an admin page (private keys).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The proxy's own certificate: chain (leaf first, then intermediates) and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    /// PEM, leaf first then any intermediates up to (not including) the root.
    pub cert_chain_pem: String,
    /// PEM private key (PKCS#8). Redacted in admin output.
    pub key_pem: Secret,
    /// The only URI SAN of the leaf.
    pub spiffe_id: String,
    /// Hex serial number, for `/certs` and rotation logs.
    pub serial: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after_unix: i64,
}

/// What a proxy is; the `kind` of a registration and of a snapshot's JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyKind {
    Sidecar,
    MeshGateway,
}

impl fmt::Display for ProxyKind {
    /// The wire name: `sidecar`, `mesh-gateway`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::MeshGateway => "mesh-gateway",
        })
    }
}

/// One proxy's complete configuration: what every proxy needs, then what its role needs.
///
/// The JSON form (`wire.rs`) is flat, with `kind` and the section it names:
/// `{"version":..,"kind":"sidecar",..,"sidecar":{..},"gateway":null}`; parsing refuses a
/// `kind` without its section or with the other kind's ([`WireError`](crate::WireError)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "crate::wire::WireSnapshot",
    into = "crate::wire::WireSnapshot"
)]
pub struct Snapshot {
    /// Monotonic per proxy; a proxy applies a snapshot only if its version is newer.
    pub version: u64,
    /// The proxy's service ID in the agent (`web-sidecar-proxy`, `mesh-gateway`).
    pub proxy_id: String,
    pub trust_domain: String,
    pub datacenter: String,
    /// For a sidecar: the service it fronts (its identity). For a gateway: its service name.
    pub service: String,
    pub leaf: Leaf,
    /// PEM roots of the federation (the primary's root CA, plus any being rotated in).
    pub roots_pem: Vec<String>,
    /// What the proxy does, with the configuration only that role has.
    pub role: ProxyRole,
}

/// The part of a snapshot only one kind of proxy has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRole {
    Sidecar(SidecarSnapshot),
    Gateway(GatewaySnapshot),
}

impl ProxyRole {
    pub fn kind(&self) -> ProxyKind {
        match self {
            ProxyRole::Sidecar(_) => ProxyKind::Sidecar,
            ProxyRole::Gateway(_) => ProxyKind::MeshGateway,
        }
    }
}

/// A snapshot handed to a proxy of another kind (a sidecar given a gateway's snapshot: a
/// `--snapshot-file` or `--sidecar-for` naming the wrong proxy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot {version} of proxy {proxy_id:?} is a {actual}'s, not a {expected}'s")]
pub struct WrongKind {
    pub version: u64,
    pub proxy_id: String,
    pub expected: ProxyKind,
    pub actual: ProxyKind,
}

impl Snapshot {
    pub fn kind(&self) -> ProxyKind {
        self.role.kind()
    }

    /// The sidecar's part, or why this snapshot is not a sidecar's.
    pub fn sidecar(&self) -> Result<&SidecarSnapshot, WrongKind> {
        match &self.role {
            ProxyRole::Sidecar(sidecar) => Ok(sidecar),
            ProxyRole::Gateway(_) => Err(self.wrong_kind(ProxyKind::Sidecar)),
        }
    }

    /// The gateway's part, or why this snapshot is not a gateway's.
    pub fn gateway(&self) -> Result<&GatewaySnapshot, WrongKind> {
        match &self.role {
            ProxyRole::Gateway(gateway) => Ok(gateway),
            ProxyRole::Sidecar(_) => Err(self.wrong_kind(ProxyKind::MeshGateway)),
        }
    }

    fn wrong_kind(&self, expected: ProxyKind) -> WrongKind {
        WrongKind {
            version: self.version,
            proxy_id: self.proxy_id.clone(),
            expected,
            actual: self.kind(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarSnapshot {
    /// Public mTLS listener (the sidecar service's address and port).
    pub public_listener: SocketAddr,
    /// Where inbound connections are forwarded: the local app.
    pub local_app: SocketAddr,
    pub upstreams: Vec<UpstreamSnapshot>,
    /// Who may call this service; checked on every new inbound connection.
    #[serde(default)]
    pub intentions: Intentions,
}

/// The intentions of one destination service, resolved in precedence order (Consul's): exact
/// destination before `*`, and within each, exact source before `*`. The first rule whose
/// source matches decides; a caller no rule matches is allowed (Consul's default without
/// ACLs). A `*` -> `*` deny turns that into default-deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Intentions {
    pub rules: Vec<IntentionRule>,
}

/// One resolved intention: may `source` (a service name, or `*`) connect?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentionRule {
    pub source: String,
    pub allow: bool,
}

impl Intentions {
    /// Whether the service named `source` may open a connection.
    pub fn allows(&self, source: &str) -> bool {
        self.rules
            .iter()
            .find(|r| r.source == "*" || r.source == source)
            .is_none_or(|r| r.allow)
    }
}

/// One upstream: the local listener and its chain of targets, tried in order.
///
/// The JSON form (`wire.rs`) keeps the primary target's `sni`, `spiffe_id` and `endpoints`
/// at the top level, as before chains existed; `service`/`target_datacenter` appear only when
/// a resolver redirects, `failover` only when there are failover targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "crate::wire::WireUpstream", into = "crate::wire::WireUpstream")]
pub struct UpstreamSnapshot {
    /// Destination service name, as the upstream names it (the listener's identity).
    pub destination: String,
    /// The upstream's datacenter (the proxy's own when the registration left it empty).
    pub datacenter: String,
    /// Local listener, e.g. 127.0.0.1:5000.
    pub bind: SocketAddr,
    /// Effective mode after precedence resolution (never `Default`); applies to every target.
    pub mode: GatewayMode,
    /// Where connections go while it has healthy endpoints: `destination` in `datacenter`,
    /// or where a `service-resolver` redirects it.
    pub primary: UpstreamTarget,
    /// `service-resolver` failover targets, tried in order when every endpoint of the ones
    /// before fails (or they have none).
    pub failover: Vec<UpstreamTarget>,
    /// Bound on one connection attempt over every target (the resolver's `ConnectTimeout`);
    /// `None`: the proxy's default.
    pub connect_timeout_ms: Option<u64>,
    /// Passive health of every target's endpoints (`service-defaults` `UpstreamConfig`
    /// `PassiveHealthCheck`); `None`: not configured.
    pub passive_health: Option<PassiveHealth>,
}

/// Passive health (outlier detection): an endpoint (a sidecar or a gateway) that fails
/// `max_failures` connections in a row (connect or handshake) within `interval_ms` is
/// ejected for `base_ejection_ms` times the number of its recent ejections, as Envoy does;
/// at most `max_ejection_percent` of a target's endpoints (and at least one) at a time.
/// Consul's `PassiveHealthCheck`, with Envoy's defaults for the fields left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassiveHealth {
    /// `Interval`: the window of a failure streak; also how often an ejection multiplier
    /// decays while the endpoint is not ejected.
    pub interval_ms: u64,
    /// `MaxFailures`: consecutive failures that eject.
    pub max_failures: u32,
    /// `MaxEjectionPercent`.
    pub max_ejection_percent: u32,
    /// `BaseEjectionTime`.
    pub base_ejection_ms: u64,
    /// `EnforcingConsecutive5xx`: Envoy only (the % of ejections enforced); the built-in
    /// sidecar always enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_5xx: Option<u32>,
}

impl PassiveHealth {
    /// Envoy's defaults, which Consul leaves in place for fields not given.
    pub const DEFAULT: PassiveHealth = PassiveHealth {
        interval_ms: 10_000,
        max_failures: 5,
        max_ejection_percent: 10,
        base_ejection_ms: 30_000,
        enforcing_consecutive_5xx: None,
    };
    /// Envoy's cap on one ejection (`max_ejection_time`), unless the base time is longer.
    pub const MAX_EJECTION_MS: u64 = 300_000;
}

/// A downstream service's `service-defaults` `UpstreamConfig`, as far as the data plane
/// uses it: passive health for every upstream (`Defaults`) and per upstream (`Overrides`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UpstreamConfigs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<PassiveHealth>,
    /// Upstream service name -> its passive health; an upstream not named here takes
    /// `defaults`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, PassiveHealth>,
}

impl UpstreamConfigs {
    /// The passive health of upstream `destination`.
    pub fn passive_health(&self, destination: &str) -> Option<PassiveHealth> {
        self.overrides.get(destination).copied().or(self.defaults)
    }
}

impl UpstreamSnapshot {
    /// The primary target, then each failover target.
    pub fn targets(&self) -> impl Iterator<Item = &UpstreamTarget> {
        std::iter::once(&self.primary).chain(&self.failover)
    }
}

/// One target of an upstream's chain: a service in a datacenter, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTarget {
    pub service: String,
    /// The `service-resolver` subset whose instances `endpoints` are; empty: every instance.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    pub datacenter: String,
    /// SNI sent in the ClientHello: `[<subset>.]<service>.<ns>.<dc>.internal.<td>`.
    pub sni: String,
    /// The exact SPIFFE ID the destination must present.
    pub spiffe_id: String,
    /// Healthy addresses to dial: sidecars (same DC or mode none) or gateways. Empty when
    /// the target has no healthy instance (as far as this DC knows).
    pub endpoints: Vec<SocketAddr>,
}

/// A service (or one subset of it) in a datacenter: what a resolver's redirect or failover
/// names. An empty field means "the same as the target it applies to" (for `subset`: the
/// resolver's `DefaultSubset` when the service changes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct TargetName {
    pub service: String,
    /// `ServiceSubset`; empty: every instance (or the default subset). Only a target in the
    /// proxy's own DC is narrowed to it: another DC's gateways route by service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    pub datacenter: String,
}

/// A `service-resolver` `Subsets[name]`: the instances a filter selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Subset {
    /// A filter expression (go-bexpr) on the instance as `/v1/health/service` shows it:
    /// `Service.Tags`, `Service.Meta.<key>`, `Service.ID`, `Node.Node`, `Node.Meta.<key>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Leave out instances with a check in `warning` (critical ones are always left out).
    #[serde(default)]
    pub only_passing: bool,
}

/// A `service-resolver` config entry as the builder takes it (the catalog validated it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resolver {
    /// `ConnectTimeout`, in milliseconds.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// `Redirect`: the service is served elsewhere (no failover then).
    #[serde(default)]
    pub redirect: Option<TargetName>,
    /// `Failover["*"]`, in order: `Datacenters` (same service) or `Targets`.
    #[serde(default)]
    pub failover: Vec<TargetName>,
    /// `Failover[subset]`: the failover of a target of that subset, instead of `"*"`'s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subset_failover: BTreeMap<String, Vec<TargetName>>,
    /// `DefaultSubset`: the subset of a target that names none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_subset: String,
    /// `Subsets`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subsets: BTreeMap<String, Subset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySnapshot {
    /// LAN listener (where local sidecars and servers send).
    pub lan: SocketAddr,
    /// WAN address other DCs' gateways dial. May equal `lan`.
    pub wan: SocketAddr,
    /// service name -> healthy sidecar addresses in this DC.
    pub local_services: BTreeMap<String, Vec<SocketAddr>>,
    /// Servers of this DC (for SNI `server.<dc>.<td>`).
    pub local_servers: Vec<SocketAddr>,
    /// Other DC -> its gateways' WAN addresses.
    pub remote_gateways: BTreeMap<String, Vec<SocketAddr>>,
}

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceKind {
    /// An application service.
    #[default]
    Typical,
    ConnectProxy,
    MeshGateway,
    /// A strait server (registered by the server itself as service `strait-server`).
    Server,
}

/// A service instance in the agent's DC, as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub node: String,
    pub service_id: String,
    pub service_name: String,
    pub kind: InstanceKind,
    /// LAN address (service address, or the node's when the service has none).
    pub addr: SocketAddr,
    /// WAN address (gateways only).
    pub wan: Option<SocketAddr>,
    /// For a connect-proxy: the service it fronts.
    pub destination_service: Option<String>,
    /// No check critical (no check counts as healthy).
    pub healthy: bool,
    /// Every check passing (none in `warning` either), for a `Subset`'s `OnlyPassing`. For
    /// a connect-proxy, its fronted service instance's checks count too.
    #[serde(default)]
    pub passing: bool,
    /// Tags: a connect-proxy's are those of the service instance it fronts, which is what a
    /// resolver's subset filter selects on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Service meta; for a connect-proxy, its fronted service instance's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// The node's meta (`Node.Meta` in subset filters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_meta: BTreeMap<String, String>,
}

/// Everything outside the proxy's own registration that the snapshot depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MeshView {
    pub trust_domain: String,
    pub datacenter: String,
    /// Instances in this DC.
    pub instances: Vec<Instance>,
    /// DC -> its mesh gateways' WAN addresses (federation states, replicated by the primary).
    pub federation: BTreeMap<String, Vec<SocketAddr>>,
    /// (dc, service) -> healthy sidecar addresses in that DC, fetched by the agent for the
    /// targets [`remote_targets`](crate::remote_targets) names. Mode `none` dials them; in
    /// the other modes, in a chain with failover targets, an empty list means the target has
    /// no healthy instance (skipped), a missing one "unknown" (its gateways are dialled).
    pub remote_sidecars: BTreeMap<String, BTreeMap<String, Vec<SocketAddr>>>,
    /// Proxy defaults (global config entry).
    pub proxy_defaults_mode: GatewayMode,
    /// Service defaults: service name -> mode.
    pub service_defaults_mode: BTreeMap<String, GatewayMode>,
    /// `service-intentions` entries of this DC: destination (or `*`) -> its sources, in the
    /// entry's order.
    #[serde(default)]
    pub intentions: BTreeMap<String, Vec<IntentionRule>>,
    /// No intention matching denies (the servers have ACLs on with `default_policy =
    /// "deny"`: Consul's rule closes the mesh too), as if a `*` -> `*` deny came last.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intentions_default_deny: bool,
    /// `service-resolver` entries of this DC, by service name.
    #[serde(default)]
    pub resolvers: BTreeMap<String, Resolver>,
    /// `service-defaults` `UpstreamConfig` of this DC, by (downstream) service name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream_configs: BTreeMap<String, UpstreamConfigs>,
}

/// The proxy's registration, as the agent holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyRegistration {
    pub proxy_id: String,
    pub kind: ProxyKind,
    /// Sidecar: the destination service it fronts. Gateway: its own service name.
    pub service: String,
    /// Address the proxy's public listener binds (sidecar inbound / gateway LAN).
    pub bind: SocketAddr,
    /// Gateway only: WAN address.
    pub wan: Option<SocketAddr>,
    /// Sidecar only: the local app.
    pub local_app: Option<SocketAddr>,
    /// Proxy-level mode.
    pub mode: GatewayMode,
    pub upstreams: Vec<UpstreamRegistration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRegistration {
    pub destination: String,
    /// Empty: the proxy's own DC.
    pub datacenter: String,
    pub bind: SocketAddr,
    pub mode: GatewayMode,
}
