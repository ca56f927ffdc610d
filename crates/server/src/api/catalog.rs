//! Public read endpoints in Consul's shapes, plus config entries.

use super::authz::Caller;
use super::{authorize, block, indexed, ApiError, ApiResult, AppState, Origin, Params};
use crate::replicated::Command;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Extension;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use strait_catalog::{Check, ConfigEntry, Node, Service, ServiceInstance};
use strait_filter::Filter;
use strait_rpc::serve::Peer;

/// Readers over mTLS: any certificate of the federation (agents, servers of any DC).
fn can_read(origin: Origin, peer: &Peer) -> ApiResult<()> {
    authorize(origin, peer, "read the catalog", |_| true)
}

/// A catalog read, as every read handler starts: the caller may read, the list parameters
/// parse, and the blocking query (`?index=&wait=`), if any, has returned. `index` is the
/// catalog index to answer with; `caller` what the caller's ACL token lets it see (reads
/// leave out what it may not, as Consul's do).
pub struct Read {
    pub s: AppState,
    pub list: ListQuery,
    pub index: u64,
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Read {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> ApiResult<Read> {
        let origin = parts
            .extensions
            .get::<Origin>()
            .copied()
            .unwrap_or(Origin::Mesh);
        let anonymous = Peer {
            addr: ([0, 0, 0, 0], 0).into(),
            identity: None,
        };
        let peer = parts.extensions.get::<Peer>().unwrap_or(&anonymous);
        can_read(origin, peer)?;
        let caller = Caller::of(s, parts)?;
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, s)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let list = ListQuery::parse(&pairs)?;
        let q: Params = pairs.into_iter().collect();
        let index = block(s, &q).await?;
        Ok(Read {
            s: s.clone(),
            list,
            index,
            caller,
        })
    }
}

/// What Consul's list endpoints narrow their answer with: `?tag=` (repeatable: every tag,
/// compared regardless of case as Consul does), `?node-meta=key:value` (repeatable),
/// `?passing` and `?filter=`. `?near` is refused: strait keeps no network coordinates.
#[derive(Default)]
pub struct ListQuery {
    tags: Vec<String>,
    node_meta: Vec<(String, String)>,
    passing: bool,
    filter: Option<Filter>,
}

impl ListQuery {
    fn parse(pairs: &[(String, String)]) -> ApiResult<ListQuery> {
        let mut out = ListQuery::default();
        for (k, v) in pairs {
            match k.as_str() {
                "tag" => out.tags.push(v.to_lowercase()),
                "node-meta" => {
                    let (key, value) = v.split_once(':').ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "query parameter node-meta = {v:?}: expected key:value"
                        ))
                    })?;
                    out.node_meta.push((key.to_string(), value.to_string()));
                }
                // Consul: present without a value is true; otherwise Go's ParseBool.
                "passing" => {
                    out.passing = match v.as_str() {
                        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "query parameter passing = {v:?}: expected true or false"
                            )))
                        }
                    }
                }
                "filter" if !v.is_empty() => {
                    let f = Filter::parse(v).map_err(|e| {
                        ApiError::bad_request(format!("query parameter filter: {e}"))
                    })?;
                    out.filter = Some(f);
                }
                "near" => {
                    return Err(ApiError::bad_request(
                        "query parameter near: strait keeps no network coordinates to sort by",
                    ))
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn node_matches(&self, node: &Node) -> bool {
        self.node_meta
            .iter()
            .all(|(k, v)| node.meta.get(k) == Some(v))
    }

    fn tags_match(&self, tags: &[String]) -> bool {
        self.tags
            .iter()
            .all(|want| tags.iter().any(|t| t.to_lowercase() == *want))
    }

    /// Keeps the items `?filter=` accepts, judged on the JSON they are answered as.
    fn filtered<T: Serialize>(&self, items: Vec<T>) -> ApiResult<Vec<T>> {
        match &self.filter {
            None => Ok(items),
            Some(f) => f
                .retain(items, |i| serde_json::to_value(i).unwrap_or_default())
                .map_err(|e| ApiError::bad_request(e.to_string())),
        }
    }

    /// Instances narrowed by tag, node meta, `?passing` and `?filter=`.
    fn instances(&self, mut v: Vec<ServiceInstance>) -> ApiResult<Vec<ServiceInstance>> {
        v.retain(|i| {
            self.tags_match(&i.service.tags)
                && self.node_matches(&i.node)
                && (!self.passing || i.is_passing())
        });
        self.filtered(v)
    }

    /// Checks narrowed by node meta (`nodes` looks up each check's node) and `?filter=`.
    fn checks(&self, s: &AppState, mut v: Vec<Check>) -> ApiResult<Vec<Check>> {
        if !self.node_meta.is_empty() {
            let nodes: BTreeMap<String, Node> = s
                .catalog
                .nodes()
                .into_iter()
                .map(|n| (n.node.clone(), n))
                .collect();
            v.retain(|c| nodes.get(&c.node).is_some_and(|n| self.node_matches(n)));
        }
        self.filtered(v)
    }
}

/// Every datacenter this server can reach: its own first, then the others by name.
pub fn datacenters(s: &AppState) -> Vec<String> {
    let mut others: Vec<String> = s
        .catalog
        .federation_states()
        .into_iter()
        .map(|f| f.datacenter)
        .chain([s.cfg.primary_datacenter.clone()])
        .filter(|dc| *dc != s.cfg.datacenter)
        .collect();
    others.sort();
    others.dedup();
    let mut out = vec![s.cfg.datacenter.clone()];
    out.extend(others);
    out
}

/// Whether the caller may see this instance: its service and its node.
fn sees_instance(caller: &Caller, i: &ServiceInstance) -> bool {
    caller.may(|a| a.service_read(&i.service.service)) && caller.may(|a| a.node_read(&i.node.node))
}

/// Whether the caller may see this check: its node, and its service if it has one.
fn sees_check(caller: &Caller, c: &Check) -> bool {
    caller.may(|a| a.node_read(&c.node))
        && (c.service_name.is_empty() || caller.may(|a| a.service_read(&c.service_name)))
}

pub async fn services(
    Read {
        s,
        list,
        index,
        caller,
    }: Read,
) -> ApiResult<Response> {
    if list.filter.is_none() && list.node_meta.is_empty() {
        let mut all = s.catalog.services();
        all.retain(|name, _| caller.may(|a| a.service_read(name)));
        return Ok(indexed(index, all));
    }
    // Consul filters the service instances (in the flattened shape), then lists names.
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in s.catalog.services().into_keys() {
        let mut instances = s.catalog.service_instances(&name);
        instances.retain(|i| list.node_matches(&i.node) && sees_instance(&caller, i));
        for i in list.filtered(instances.iter().map(flat).collect())? {
            let tags = i["ServiceTags"].as_array().cloned().unwrap_or_default();
            out.entry(name.clone())
                .or_default()
                .extend(tags.iter().filter_map(|t| t.as_str().map(str::to_string)));
        }
    }
    Ok(indexed(index, out))
}

pub async fn nodes(
    Read {
        s,
        list,
        index,
        caller,
    }: Read,
) -> ApiResult<Response> {
    let mut nodes = s.catalog.nodes();
    nodes.retain(|n| list.node_matches(n) && caller.may(|a| a.node_read(&n.node)));
    Ok(indexed(index, list.filtered(nodes)?))
}

pub async fn health_service(read: Read, Path(name): Path<String>) -> ApiResult<Response> {
    let instances = read.s.catalog.service_instances(&name);
    let out = read
        .list
        .instances(visible(&read.caller, &name, instances))?;
    Ok(indexed(read.index, out))
}

pub async fn health_connect(read: Read, Path(name): Path<String>) -> ApiResult<Response> {
    let instances = read.s.catalog.connect_instances(&name);
    let out = read
        .list
        .instances(visible(&read.caller, &name, instances))?;
    Ok(indexed(read.index, out))
}

/// The instances of `service` (or of the proxies in front of it) the caller may see: none
/// without `service:read` on it, and only those on nodes it may read.
fn visible(caller: &Caller, service: &str, mut v: Vec<ServiceInstance>) -> Vec<ServiceInstance> {
    if !caller.may(|a| a.service_read(service)) {
        return Vec::new();
    }
    v.retain(|i| caller.may(|a| a.node_read(&i.node.node)));
    v
}

/// `/v1/health/checks/:service`: the checks of every instance of the service.
pub async fn health_checks(
    Read {
        s,
        list,
        index,
        caller,
    }: Read,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let checks = all_checks(&s)
        .into_iter()
        .filter(|c| c.service_name == name && sees_check(&caller, c))
        .collect();
    Ok(indexed(index, list.checks(&s, checks)?))
}

/// `/v1/health/node/:node`: the node's checks (an unknown node has none).
pub async fn health_node(
    Read {
        s,
        list,
        index,
        caller,
    }: Read,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    let mut checks = s.catalog.node_checks(&node).unwrap_or_default();
    checks.retain(|c| sees_check(&caller, c));
    Ok(indexed(index, list.checks(&s, checks)?))
}

/// `/v1/health/state/:state`: every check in `passing`, `warning` or `critical`, or `any`.
pub async fn health_state(
    Read {
        s,
        list,
        index,
        caller,
    }: Read,
    Path(state): Path<String>,
) -> ApiResult<Response> {
    if state != "any" && !strait_catalog::status::ALL.contains(&state.as_str()) {
        return Err(ApiError::bad_request(format!(
            "invalid check state {state:?}: expected any, passing, warning or critical"
        )));
    }
    let checks = all_checks(&s)
        .into_iter()
        .filter(|c| (state == "any" || c.status == state) && sees_check(&caller, c))
        .collect();
    Ok(indexed(index, list.checks(&s, checks)?))
}

fn all_checks(s: &AppState) -> Vec<Check> {
    s.catalog
        .nodes()
        .iter()
        .filter_map(|n| s.catalog.node_checks(&n.node))
        .flatten()
        .collect()
}

/// `/v1/catalog/service/:name`: Consul's flattened node+service objects.
pub async fn catalog_service(read: Read, Path(name): Path<String>) -> ApiResult<Response> {
    let instances = read.s.catalog.service_instances(&name);
    catalog_list(
        &read.list,
        visible(&read.caller, &name, instances),
        read.index,
    )
}

/// `/v1/catalog/connect/:service`: the same shape, for the proxies fronting the service.
pub async fn catalog_connect(read: Read, Path(name): Path<String>) -> ApiResult<Response> {
    let instances = read.s.catalog.connect_instances(&name);
    catalog_list(
        &read.list,
        visible(&read.caller, &name, instances),
        read.index,
    )
}

fn catalog_list(
    list: &ListQuery,
    mut instances: Vec<ServiceInstance>,
    index: u64,
) -> ApiResult<Response> {
    instances.retain(|i| list.tags_match(&i.service.tags) && list.node_matches(&i.node));
    let out = list.filtered(instances.iter().map(flat).collect())?;
    Ok(indexed(index, out))
}

/// One instance as Consul's `ServiceNode` (the catalog's flattened shape).
fn flat(i: &ServiceInstance) -> serde_json::Value {
    json!({
        "Node": i.node.node,
        "Address": i.node.address,
        "Datacenter": i.node.datacenter,
        "NodeMeta": i.node.meta,
        "ServiceID": i.service.id,
        "ServiceName": i.service.service,
        "ServiceKind": i.service.kind,
        "ServiceAddress": i.service.address,
        "ServicePort": i.service.port,
        "ServiceTags": i.service.tags,
        "ServiceMeta": i.service.meta,
        "ServiceTaggedAddresses": i.service.tagged_addresses,
        "ServiceProxy": i.service.proxy,
        "ModifyIndex": i.service.modify_index,
    })
}

/// `/v1/catalog/node/:node`: the node and its services by ID (`null` for an unknown node,
/// as Consul answers); `?filter=` applies to the services.
pub async fn catalog_node(
    Read {
        s,
        list,
        index,
        caller,
    }: Read,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    let Some(ns) = node_services(&s, &caller, &node) else {
        return Ok(indexed(index, serde_json::Value::Null));
    };
    let services: BTreeMap<String, Service> = list
        .filtered(ns.services)?
        .into_iter()
        .map(|svc| (svc.id.clone(), svc))
        .collect();
    Ok(indexed(
        index,
        json!({ "Node": ns.node, "Services": services }),
    ))
}

/// `/v1/catalog/node-services/:node`: the node and its services as a list (`Node: null` and
/// no services for an unknown node, as Consul answers).
pub async fn catalog_node_services(
    Read {
        s,
        list,
        index,
        caller,
    }: Read,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    let Some(ns) = node_services(&s, &caller, &node) else {
        return Ok(indexed(index, json!({ "Node": null, "Services": [] })));
    };
    let services = list.filtered(ns.services)?;
    Ok(indexed(
        index,
        json!({ "Node": ns.node, "Services": services }),
    ))
}

/// A node and the services on it the caller may see; `None` for an unknown node or one the
/// caller may not read (Consul answers both alike).
fn node_services(
    s: &AppState,
    caller: &Caller,
    node: &str,
) -> Option<strait_catalog::NodeServices> {
    if !caller.may(|a| a.node_read(node)) {
        return None;
    }
    let mut ns = s.catalog.node_services(node)?;
    ns.services
        .retain(|svc| caller.may(|a| a.service_read(&svc.service)));
    Some(ns)
}

/// `/v1/catalog/datacenters`: see [`datacenters`].
pub async fn catalog_datacenters(Read { s, index, .. }: Read) -> ApiResult<Response> {
    Ok(indexed(index, datacenters(&s)))
}

/// `GET /v1/connect/ca/configuration` in Consul's shape: strait's built-in CA (`Provider`
/// `strait`), its leaf lifetime (`leaf_ttl_hours`) and a secondary's intermediate lifetime.
/// Changing the CA configuration (`PUT`) is not supported (501).
pub async fn ca_configuration(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: Caller,
) -> ApiResult<Response> {
    can_read(origin, &peer)?;
    caller.check(|a| a.operator_read())?;
    let ca = super::internal::ca_of(&s)?;
    let hours = |d: std::time::Duration| format!("{}h", d.as_secs() / 3600);
    Ok(indexed(
        s.catalog.index(),
        json!({
            "Provider": "strait",
            "Config": {
                "LeafCertTTL": hours(s.live.leaf_ttl()),
                "IntermediateCertTTL": hours(crate::ca::INTERMEDIATE_TTL),
                "PrivateKeyType": "ec",
                "PrivateKeyBits": 256,
                "TrustDomain": ca.trust_domain,
            },
            "State": null,
            "ForceWithoutCrossSigning": false,
        }),
    ))
}

/// `/v1/connect/ca/roots` in Consul's shape.
pub async fn ca_roots(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
) -> ApiResult<Response> {
    can_read(origin, &peer)?;
    let ca = super::internal::ca_of(&s)?;
    // A secondary's leaves chain through its intermediate, as Consul lists it.
    let intermediates: Vec<&str> = ca.intermediate_pem().into_iter().collect();
    let roots: Vec<_> = ca
        .roots_pem
        .iter()
        .map(|pem| {
            let info = strait_identity::ca::cert_info(pem).ok();
            let at = |unix: Option<i64>| {
                time::OffsetDateTime::from_unix_timestamp(unix.unwrap_or_default())
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
            };
            let serial = info
                .as_ref()
                .map(|i| i.serial_hex.clone())
                .unwrap_or_default();
            // strait keeps no Raft index for the CA: a root's indexes are its NotBefore
            // (stable, and a newer root's is higher).
            let index = info.as_ref().map(|i| i.not_before_unix).unwrap_or_default();
            json!({
                "ID": serial, "Name": "strait root CA", "SerialNumber": serial,
                "NotBefore": at(info.as_ref().map(|i| i.not_before_unix)),
                "NotAfter": at(info.as_ref().map(|i| i.not_after_unix)),
                "RootCert": pem, "IntermediateCerts": intermediates, "Active": true,
                "CreateIndex": index, "ModifyIndex": index,
            })
        })
        .collect();
    let active = roots
        .first()
        .and_then(|r| r["ID"].as_str())
        .unwrap_or_default()
        .to_string();
    Ok(indexed(
        s.catalog.index(),
        json!({ "ActiveRootID": active, "TrustDomain": ca.trust_domain, "Roots": roots }),
    ))
}

/// What reading and writing a config entry needs, as Consul's: `proxy-defaults` and `mesh`
/// anyone may read and `mesh:write` may write; `service-intentions` need `intention:read` /
/// `intention:write` on their destination; the others `service:read` / `service:write` on
/// the service they configure.
pub(super) fn entry_access(caller: &Caller, kind: &str, name: &str, write: bool) -> ApiResult<()> {
    caller.check(|a| match (kind, write) {
        ("proxy-defaults" | "mesh", false) => Ok(()),
        ("proxy-defaults" | "mesh", true) => a.mesh_write(),
        ("service-intentions", false) => a.intention_read(name),
        ("service-intentions", true) => a.intention_write(name),
        (_, false) => a.service_read(name),
        (_, true) => a.service_write(name),
    })
}

pub async fn config_list(
    Read {
        s, index, caller, ..
    }: Read,
    Path(kind): Path<String>,
) -> ApiResult<Response> {
    let entries: Vec<ConfigEntry> = s
        .catalog
        .config_entries()
        .into_iter()
        .filter(|e| e.kind == kind && entry_access(&caller, &e.kind, &e.name, false).is_ok())
        .collect();
    Ok(indexed(index, entries))
}

/// `GET /v1/config/{kind}/{name}`: one entry (with its `ModifyIndex`, for `?cas=`), or 404
/// naming it.
pub async fn config_get(
    Read {
        s, index, caller, ..
    }: Read,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    entry_access(&caller, &kind, &name, false)?;
    let entry = s
        .catalog
        .config_entries()
        .into_iter()
        .find(|e| e.kind == kind && e.name == name)
        .ok_or_else(|| {
            ApiError(
                http::StatusCode::NOT_FOUND,
                format!("Config entry not found for {kind:?} / {name:?}"),
            )
        })?;
    Ok(indexed(index, entry))
}

/// `PUT /v1/config`: proxy-defaults, service-defaults, service-resolver and
/// service-intentions. Local callers (operators on the server VM); over mTLS, agents of this DC
/// (any agent relays writes, as Consul's) and servers of this DC and of the primary DC (an
/// operator there writing with `?dc=`); with ACLs on, the caller's token must allow it
/// ([`entry_access`]).
/// With `?cas=<index>` (Consul's check-and-set) it writes only if `index` is the entry's
/// `ModifyIndex` (0: only if there is none) and answers `false` otherwise.
pub async fn config_set(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: Caller,
    Query(q): Query<Params>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    config_writer(&s, origin, &peer)?;
    // Any Content-Type (curl -d sends form encoding), as Consul accepts.
    let entry: ConfigEntry = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid config entry: {e}")))?;
    entry_access(&caller, &entry.kind, &entry.name, true)?;
    let command = match cas_param(&q)? {
        Some(cas) => Command::SetConfigEntryCas { entry, cas },
        None => Command::SetConfigEntry(entry),
    };
    write_cas(&s, command).await
}

/// Consul's `?cas=<index>` on a config write.
fn cas_param(q: &Params) -> ApiResult<Option<u64>> {
    q.get("cas")
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!("query parameter `cas` = {v:?} is not a number"))
            })
        })
        .transpose()
}

/// Writes a config entry command and answers Consul's `true`, or `false` when its
/// check-and-set lost.
async fn write_cas(s: &AppState, command: Command) -> ApiResult<Response> {
    Ok(match write_checked(s, command).await? {
        Some(index) => indexed(index, true),
        None => indexed(s.catalog.index(), false),
    })
}

/// Writes a config entry command: the index after it, or `None` when its check-and-set lost.
pub(super) async fn write_checked(s: &AppState, command: Command) -> ApiResult<Option<u64>> {
    match s.write(command).await {
        Ok(index) => Ok(Some(index)),
        Err(crate::replicated::WriteFailure::Refused(why))
            if why == crate::replicated::CAS_LOST =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Who may write config entries: see [`config_set`].
pub(super) fn config_writer(s: &AppState, origin: Origin, peer: &Peer) -> ApiResult<()> {
    use strait_identity::spiffe::SpiffeId;
    authorize(origin, peer, "write config entries", |id| match id {
        SpiffeId::Server { datacenter, .. } => {
            *datacenter == s.cfg.datacenter || *datacenter == s.cfg.primary_datacenter
        }
        SpiffeId::Agent { datacenter, .. } => *datacenter == s.cfg.datacenter,
        _ => false,
    })
}

/// `DELETE /v1/config/{kind}/{name}`: removes an entry; same callers and `?cas=` as
/// [`config_set`].
pub async fn config_delete(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: Caller,
    Path((kind, name)): Path<(String, String)>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    config_writer(&s, origin, &peer)?;
    entry_access(&caller, &kind, &name, true)?;
    let exists = s
        .catalog
        .config_entries()
        .iter()
        .any(|e| e.kind == kind && e.name == name);
    if !exists {
        return Err(ApiError(
            http::StatusCode::NOT_FOUND,
            format!("no config entry {kind:?}/{name:?}"),
        ));
    }
    let command = match cas_param(&q)? {
        Some(cas) => Command::DeleteConfigEntryCas { kind, name, cas },
        None => Command::DeleteConfigEntry { kind, name },
    };
    write_cas(&s, command).await
}
