//! Input checks and defaults applied before anything is written: a registration is either
//! accepted whole (normalised) or rejected with an error naming the field at fault.

use crate::error::{CatalogError, Result};
use crate::types::{
    config_kind, intention_action, kind, status, Check, ConfigEntry, FederationState,
    MeshGatewayConfig, Node, Service,
};
use std::net::SocketAddr;

/// Consul's rules for the names and labels of a registration, shared by the agent (which
/// checks definitions before they are stored) and the catalog (which refuses writes that
/// bypass an agent). Each error is the whole message, naming the field and the value.
pub mod rules {
    use std::collections::BTreeMap;

    /// A service, check or node ID: it goes into URL paths and log lines, so 1-128
    /// characters, no '/' and no control characters.
    pub fn id(field: &str, id: &str) -> Result<(), String> {
        if id.is_empty() || id.len() > 128 || id.contains('/') || id.chars().any(char::is_control) {
            return Err(format!(
                "field {field} = {id:?}: must be 1-128 characters without '/' or control characters"
            ));
        }
        Ok(())
    }

    /// A free-text label (a name, a tag): no control characters (a newline would forge a
    /// line in a log that prints it).
    pub fn text(field: &str, value: &str) -> Result<(), String> {
        if value.chars().any(char::is_control) {
            return Err(format!(
                "field {field} = {value:?}: must not contain control characters"
            ));
        }
        Ok(())
    }

    /// Tags: see [`text`].
    pub fn tags(tags: &[String]) -> Result<(), String> {
        for (i, tag) in tags.iter().enumerate() {
            text(&format!("Tags[{i}]"), tag)?;
        }
        Ok(())
    }

    /// Consul's rules for `Meta` (ValidateServiceMetadata): at most 64 pairs; keys of 1-128
    /// letters, digits, `_` and `-`, not starting with `consul-` (reserved); values of at
    /// most 512 characters, without control characters.
    pub fn meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
        if meta.len() > 64 {
            return Err(format!(
                "field Meta: {} pairs, at most 64 are allowed",
                meta.len()
            ));
        }
        for (k, v) in meta {
            if k.is_empty() || k.len() > 128 {
                return Err(format!("field Meta key {k:?}: must be 1-128 characters"));
            }
            if !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "field Meta key {k:?}: only letters, digits, '_' and '-' are allowed"
                ));
            }
            if k.starts_with("consul-") {
                return Err(format!(
                    "field Meta key {k:?}: the prefix 'consul-' is reserved"
                ));
            }
            if v.chars().count() > 512 {
                return Err(format!(
                    "field Meta.{k}: the value is longer than 512 characters"
                ));
            }
            text(&format!("Meta.{k}"), v)?;
        }
        Ok(())
    }
}

/// A rule of [`rules`] broken by `what`.
fn ruled(what: impl FnOnce() -> String, r: Result<(), String>) -> Result<()> {
    r.map_err(|reason| CatalogError::Invalid {
        what: what(),
        reason,
    })
}

fn non_empty(value: &str, what: impl FnOnce() -> String, field: &'static str) -> Result<()> {
    if value.is_empty() {
        return Err(CatalogError::EmptyField {
            what: what(),
            field,
        });
    }
    Ok(())
}

fn mode(cfg: &MeshGatewayConfig, what: impl FnOnce() -> String, field: &'static str) -> Result<()> {
    match cfg.gateway_mode() {
        Some(_) => Ok(()),
        None => Err(CatalogError::InvalidMode {
            what: what(),
            field,
            mode: cfg.mode.clone(),
        }),
    }
}

pub(crate) fn check_status(s: &str) -> Result<()> {
    if status::ALL.contains(&s) {
        Ok(())
    } else {
        Err(CatalogError::InvalidStatus {
            status: s.to_string(),
        })
    }
}

pub(crate) fn node(node: &Node) -> Result<()> {
    non_empty(&node.node, || "node".into(), "Node")?;
    let what = || format!("node {:?}", node.node);
    ruled(what, rules::id("Node", &node.node))?;
    ruled(what, rules::meta(&node.meta))?;
    non_empty(&node.address, what, "Address")
}

/// Checks a service and fills in its defaults (ID = name).
pub(crate) fn service(node: &str, mut svc: Service) -> Result<Service> {
    non_empty(
        &svc.service,
        || format!("service on node {node:?}"),
        "Service",
    )?;
    if svc.id.is_empty() {
        svc.id = svc.service.clone();
    }
    let what = || format!("service {:?} on node {node:?}", svc.id);
    ruled(what, rules::id("ID", &svc.id))?;
    ruled(what, rules::text("Service", &svc.service))?;
    ruled(what, rules::tags(&svc.tags))?;
    ruled(what, rules::meta(&svc.meta))?;
    if !kind::ALL.contains(&svc.kind.as_str()) {
        return Err(CatalogError::InvalidKind {
            service: svc.id.clone(),
            kind: svc.kind.clone(),
        });
    }
    if let Some(proxy) = &svc.proxy {
        mode(&proxy.mesh_gateway, what, "Proxy.MeshGateway.Mode")?;
        for up in &proxy.upstreams {
            non_empty(
                &up.destination_name,
                what,
                "Proxy.Upstreams[].DestinationName",
            )?;
            mode(&up.mesh_gateway, what, "Proxy.Upstreams[].MeshGateway.Mode")?;
        }
    }
    if svc.kind == kind::CONNECT_PROXY {
        let dest = svc
            .proxy
            .as_ref()
            .map(|p| p.destination_service_name.as_str());
        non_empty(dest.unwrap_or(""), what, "Proxy.DestinationServiceName")?;
    }
    for (tag, addr) in &svc.tagged_addresses {
        if addr.address.is_empty() && addr.port == 0 {
            return Err(CatalogError::InvalidAddress {
                what: format!(
                    "service {:?} on node {node:?}, tagged address {tag:?}",
                    svc.id
                ),
                field: "TaggedAddresses",
                value: String::new(),
            });
        }
    }
    Ok(svc)
}

/// Checks a check and fills in its defaults. `service_name` looks up a service ID on the
/// node being written (after its services are applied).
pub(crate) fn check<'a>(
    node: &str,
    mut chk: Check,
    service_name: impl Fn(&str) -> Option<&'a str>,
) -> Result<Check> {
    non_empty(
        &chk.check_id,
        || format!("check on node {node:?}"),
        "CheckID",
    )?;
    let what = || format!("check {:?} on node {node:?}", chk.check_id);
    ruled(what, rules::id("CheckID", &chk.check_id))?;
    ruled(what, rules::text("Name", &chk.name))?;
    if chk.node.is_empty() {
        chk.node = node.to_string();
    } else if chk.node != node {
        return Err(CatalogError::NodeMismatch {
            node: node.to_string(),
            check: chk.check_id,
            check_node: chk.node,
        });
    }
    if chk.name.is_empty() {
        chk.name = chk.check_id.clone();
    }
    if chk.status.is_empty() {
        chk.status = status::CRITICAL.to_string();
    }
    check_status(&chk.status)?;
    if !chk.service_id.is_empty() {
        let name = service_name(&chk.service_id).ok_or_else(|| CatalogError::UnknownService {
            node: node.to_string(),
            service: chk.service_id.clone(),
        })?;
        chk.service_name = name.to_string();
    } else {
        chk.service_name.clear();
    }
    Ok(chk)
}

/// Checks a config entry; a proxy-defaults entry without a name is named `global`.
pub(crate) fn config_entry(mut entry: ConfigEntry) -> Result<ConfigEntry> {
    let invalid = |entry: &ConfigEntry, reason: &str| CatalogError::InvalidConfigEntry {
        kind: entry.kind.clone(),
        name: entry.name.clone(),
        reason: reason.to_string(),
    };
    match entry.kind.as_str() {
        config_kind::PROXY_DEFAULTS => {
            if entry.name.is_empty() {
                entry.name = "global".into();
            }
            if entry.name != "global" {
                return Err(invalid(&entry, "proxy-defaults must be named \"global\""));
            }
        }
        config_kind::SERVICE_DEFAULTS => {
            if entry.name.is_empty() {
                return Err(invalid(&entry, "Name (the service) must not be empty"));
            }
            if let Some(config) = &entry.upstream_config {
                upstream_config(config).map_err(|reason| invalid(&entry, &reason))?;
            }
        }
        config_kind::SERVICE_INTENTIONS => {
            service_or_wildcard("Name", &entry.name).map_err(|reason| invalid(&entry, &reason))?;
            if !entry.mesh_gateway.mode.is_empty() {
                return Err(invalid(
                    &entry,
                    "MeshGateway is not a field of service-intentions",
                ));
            }
            intention_sources(&entry).map_err(|reason| invalid(&entry, &reason))?;
        }
        config_kind::SERVICE_RESOLVER => {
            strait_identity::spiffe::validate_name("Name", &entry.name)
                .map_err(|e| invalid(&entry, &e.to_string()))?;
            if !entry.mesh_gateway.mode.is_empty() {
                return Err(invalid(
                    &entry,
                    "MeshGateway is not a field of service-resolver",
                ));
            }
            resolver(&entry).map_err(|reason| invalid(&entry, &reason))?;
        }
        _ => {
            return Err(invalid(
                &entry,
                &format!("Kind must be one of {}", config_kind::ALL.join(", ")),
            ))
        }
    }
    if entry.kind != config_kind::SERVICE_INTENTIONS && !entry.sources.is_empty() {
        return Err(invalid(
            &entry,
            "Sources belongs to service-intentions only",
        ));
    }
    if entry.kind != config_kind::SERVICE_DEFAULTS && entry.upstream_config.is_some() {
        return Err(invalid(
            &entry,
            "UpstreamConfig belongs to service-defaults only",
        ));
    }
    if entry.kind != config_kind::SERVICE_RESOLVER {
        let resolver_fields = [
            ("ConnectTimeout", !entry.connect_timeout.is_empty()),
            ("Redirect", entry.redirect.is_some()),
            ("Failover", !entry.failover.is_empty()),
            ("DefaultSubset", !entry.default_subset.is_empty()),
            ("Subsets", !entry.subsets.is_empty()),
        ];
        if let Some((field, _)) = resolver_fields.iter().find(|(_, set)| *set) {
            return Err(invalid(
                &entry,
                &format!("{field} belongs to service-resolver only"),
            ));
        }
    }
    let what = || format!("config entry {}/{}", entry.kind, entry.name);
    mode(&entry.mesh_gateway, what, "MeshGateway.Mode")?;
    Ok(entry)
}

/// A Go-style duration (`"1.5s"`, `"500ms"`, `"1m30s"`) in whole milliseconds; empty is
/// `None` (not set).
pub(crate) fn duration_ms(value: &str) -> std::result::Result<Option<u64>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || format!("{value:?} is not a duration (e.g. \"5s\", \"500ms\", \"1m30s\")");
    let mut rest = value;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms_per_unit = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * ms_per_unit;
    }
    Ok(Some(total.round() as u64))
}

/// A `service-resolver`'s own fields; what needs the other entries (redirect cycles) is
/// [`resolver_graph`]'s.
fn resolver(entry: &ConfigEntry) -> std::result::Result<(), String> {
    for (subset, s) in &entry.subsets {
        let at = format!("Subsets[{subset:?}]");
        // A subset name is a DNS label of the SNI `<subset>.<service>...`.
        strait_identity::spiffe::validate_name(&at, subset).map_err(|e| e.to_string())?;
        if !s.filter.is_empty() {
            strait_filter::Filter::parse(&s.filter).map_err(|e| format!("{at}.Filter: {e}"))?;
        }
    }
    // A subset of this resolver's own service must be one of its Subsets; one of another
    // service is that service's resolver's business (an unknown one selects nothing).
    let known = |field: &str, service: &str, subset: &str| {
        if subset.is_empty() || !(service.is_empty() || service == entry.name) {
            return Ok(());
        }
        if entry.subsets.contains_key(subset) {
            return Ok(());
        }
        Err(format!("{field} {subset:?} is not one of Subsets"))
    };
    known("DefaultSubset", "", &entry.default_subset)?;
    // Another DC's gateways route by service: a subset there cannot be honoured.
    let remote_subset = |field: &str, subset: &str, datacenter: bool| {
        if datacenter && !subset.is_empty() {
            return Err(format!(
                "{field}: a subset in another datacenter is not supported (its gateways route by service)"
            ));
        }
        Ok(())
    };
    match duration_ms(&entry.connect_timeout) {
        Ok(Some(0)) => return Err("ConnectTimeout must be greater than zero".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("ConnectTimeout: {e}")),
    }
    let name = |field: String, value: &str| {
        if value.is_empty() {
            return Ok(());
        }
        strait_identity::spiffe::validate_name(&field, value).map_err(|e| e.to_string())
    };
    if let Some(r) = &entry.redirect {
        if !entry.failover.is_empty() {
            return Err("Redirect and Failover cannot both be set".into());
        }
        if r.service.is_empty() && r.datacenter.is_empty() && r.service_subset.is_empty() {
            return Err("Redirect needs Service, ServiceSubset or Datacenter".into());
        }
        if r.service == entry.name && r.datacenter.is_empty() && r.service_subset.is_empty() {
            return Err(format!("Redirect points at {:?} itself", entry.name));
        }
        name("Redirect.Service".into(), &r.service)?;
        name("Redirect.Datacenter".into(), &r.datacenter)?;
        known("Redirect.ServiceSubset", &r.service, &r.service_subset)?;
        remote_subset(
            "Redirect.ServiceSubset",
            &r.service_subset,
            !r.datacenter.is_empty(),
        )?;
    }
    for (subset, f) in &entry.failover {
        let at = format!("Failover[{subset:?}]");
        if subset != "*" && !entry.subsets.contains_key(subset) {
            return Err(format!(
                "{at}: {subset:?} is neither \"*\" nor one of Subsets"
            ));
        }
        if !f.targets.is_empty()
            && (!f.datacenters.is_empty() || !f.service.is_empty() || !f.service_subset.is_empty())
        {
            return Err(format!(
                "{at}: Targets cannot be combined with Service, ServiceSubset or Datacenters"
            ));
        }
        if f.targets.is_empty()
            && f.datacenters.is_empty()
            && f.service.is_empty()
            && f.service_subset.is_empty()
        {
            return Err(format!(
                "{at} needs Datacenters, Targets, Service or ServiceSubset"
            ));
        }
        name(format!("{at}.Service"), &f.service)?;
        known(
            &format!("{at}.ServiceSubset"),
            &f.service,
            &f.service_subset,
        )?;
        remote_subset(
            &format!("{at}.ServiceSubset"),
            &f.service_subset,
            !f.datacenters.is_empty(),
        )?;
        for (i, dc) in f.datacenters.iter().enumerate() {
            if dc.is_empty() {
                return Err(format!("{at}.Datacenters[{i}] must not be empty"));
            }
            name(format!("{at}.Datacenters[{i}]"), dc)?;
        }
        for (i, t) in f.targets.iter().enumerate() {
            let at = format!("{at}.Targets[{i}]");
            if t.service.is_empty() && t.datacenter.is_empty() && t.service_subset.is_empty() {
                return Err(format!("{at} needs Service, ServiceSubset or Datacenter"));
            }
            name(format!("{at}.Service"), &t.service)?;
            name(format!("{at}.Datacenter"), &t.datacenter)?;
            known(
                &format!("{at}.ServiceSubset"),
                &t.service,
                &t.service_subset,
            )?;
            remote_subset(
                &format!("{at}.ServiceSubset"),
                &t.service_subset,
                !t.datacenter.is_empty(),
            )?;
        }
    }
    Ok(())
}

/// A `service-defaults` entry's `UpstreamConfig`: each override names a distinct upstream,
/// `Defaults` none; passive health values in range.
fn upstream_config(config: &crate::types::UpstreamConfig) -> std::result::Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    let settings = config
        .defaults
        .iter()
        .map(|d| ("UpstreamConfig.Defaults".to_string(), d))
        .chain(
            config
                .overrides
                .iter()
                .enumerate()
                .map(|(i, o)| (format!("UpstreamConfig.Overrides[{i}]"), o)),
        );
    for (at, s) in settings {
        if at.ends_with("Defaults") {
            if !s.name.is_empty() {
                return Err(format!(
                    "{at}.Name: Defaults apply to every upstream; name none"
                ));
            }
        } else {
            strait_identity::spiffe::validate_name(&format!("{at}.Name"), &s.name)
                .map_err(|e| e.to_string())?;
            if !seen.insert(s.name.as_str()) {
                return Err(format!("{at}.Name {:?} appears twice", s.name));
            }
        }
        let Some(check) = &s.passive_health_check else {
            continue;
        };
        let at = format!("{at}.PassiveHealthCheck");
        for (field, value) in [
            ("Interval", &check.interval),
            ("BaseEjectionTime", &check.base_ejection_time),
        ] {
            match duration_ms(value) {
                Ok(Some(0)) => return Err(format!("{at}.{field} must be greater than zero")),
                Ok(_) => {}
                Err(e) => return Err(format!("{at}.{field}: {e}")),
            }
        }
        for (field, value) in [
            ("MaxEjectionPercent", check.max_ejection_percent),
            ("EnforcingConsecutive5xx", check.enforcing_consecutive_5xx),
        ] {
            if let Some(v) = value.filter(|v| *v > 100) {
                return Err(format!("{at}.{field} is {v}; expected 0 to 100"));
            }
        }
    }
    Ok(())
}

/// Refuses a `service-resolver` whose redirects, with the DC's other resolvers, form a
/// cycle. Datacenter names are not checked against anything: a resolver may name a DC that
/// is not federated yet.
pub(crate) fn resolver_graph<'a>(
    entry: &ConfigEntry,
    existing: impl Iterator<Item = &'a ConfigEntry>,
) -> Result<()> {
    if entry.kind != config_kind::SERVICE_RESOLVER {
        return Ok(());
    }
    let mut resolvers: std::collections::BTreeMap<String, strait_snapshot::Resolver> = existing
        .filter(|e| e.kind == config_kind::SERVICE_RESOLVER)
        .map(|e| (e.name.clone(), e.resolver()))
        .collect();
    resolvers.insert(entry.name.clone(), entry.resolver());
    match strait_snapshot::find_redirect_cycle(&resolvers) {
        None => Ok(()),
        Some(cycle) => Err(CatalogError::InvalidConfigEntry {
            kind: entry.kind.clone(),
            name: entry.name.clone(),
            reason: cycle.to_string(),
        }),
    }
}

/// A service name (as SNI and SPIFFE IDs carry it) or `*`.
fn service_or_wildcard(field: &str, name: &str) -> std::result::Result<(), String> {
    if name == "*" {
        return Ok(());
    }
    strait_identity::spiffe::validate_name(field, name).map_err(|e| format!("{e} (or \"*\")"))
}

/// Each source names a service (or `*`) once, with action allow or deny.
fn intention_sources(entry: &ConfigEntry) -> std::result::Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, src) in entry.sources.iter().enumerate() {
        service_or_wildcard(&format!("Sources[{i}].Name"), &src.name)?;
        if ![intention_action::ALLOW, intention_action::DENY].contains(&src.action.as_str()) {
            return Err(format!(
                "Sources[{i}].Action is {:?}; expected \"allow\" or \"deny\"",
                src.action
            ));
        }
        if !seen.insert(src.name.as_str()) {
            return Err(format!("Sources[{i}].Name {:?} appears twice", src.name));
        }
    }
    Ok(())
}

pub(crate) fn federation_state(fed: &FederationState) -> Result<()> {
    non_empty(&fed.datacenter, || "federation state".into(), "Datacenter")?;
    for gw in &fed.mesh_gateways {
        if gw.parse::<SocketAddr>().is_err() {
            return Err(CatalogError::InvalidAddress {
                what: format!("federation state of {:?}", fed.datacenter),
                field: "MeshGateways",
                value: gw.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "validate_registration_tests.rs"]
mod registration_tests;
