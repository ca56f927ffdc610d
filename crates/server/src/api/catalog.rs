//! Public read endpoints in Consul's shapes, plus config entries.

use super::{authorize, block, indexed, ApiError, ApiResult, AppState, Origin, Params};
use crate::replicated::Command;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Extension;
use serde_json::json;
use strait_catalog::{ConfigEntry, ServiceInstance};
use strait_rpc::serve::Peer;

/// Readers over mTLS: any certificate of the federation (agents, servers of any DC).
fn can_read(origin: Origin, peer: &Peer) -> ApiResult<()> {
    authorize(origin, peer, "read the catalog", |_| true)
}

/// A catalog read, as every read handler starts: the caller may read, and the blocking query
/// (`?index=&wait=`), if any, has returned. `index` is the catalog index to answer with.
pub struct Read {
    pub s: AppState,
    pub q: Params,
    pub index: u64,
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
        let Query(q) = Query::<Params>::from_request_parts(parts, s)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let index = block(s, &q).await?;
        Ok(Read {
            s: s.clone(),
            q,
            index,
        })
    }
}

pub async fn services(Read { s, index, .. }: Read) -> ApiResult<Response> {
    Ok(indexed(index, s.catalog.services()))
}

pub async fn nodes(Read { s, index, .. }: Read) -> ApiResult<Response> {
    Ok(indexed(index, s.catalog.nodes()))
}

fn passing_only(mut v: Vec<ServiceInstance>, q: &Params) -> Vec<ServiceInstance> {
    if q.contains_key("passing") {
        v.retain(|i| i.checks.iter().all(|c| c.status == "passing"));
    }
    v
}

pub async fn health_service(
    Read { s, q, index }: Read,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(indexed(
        index,
        passing_only(s.catalog.service_instances(&name), &q),
    ))
}

pub async fn health_connect(
    Read { s, q, index }: Read,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(indexed(
        index,
        passing_only(s.catalog.connect_instances(&name), &q),
    ))
}

/// `/v1/catalog/service/:name`: Consul's flattened node+service objects.
pub async fn catalog_service(
    Read { s, index, .. }: Read,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let out: Vec<_> = s
        .catalog
        .service_instances(&name)
        .into_iter()
        .map(|i| {
            json!({
                "Node": i.node.node,
                "Address": i.node.address,
                "Datacenter": i.node.datacenter,
                "ServiceID": i.service.id,
                "ServiceName": i.service.service,
                "ServiceKind": i.service.kind,
                "ServiceAddress": i.service.address,
                "ServicePort": i.service.port,
                "ServiceTags": i.service.tags,
                "ServiceMeta": i.service.meta,
                "ServiceTaggedAddresses": i.service.tagged_addresses,
                "ServiceProxy": i.service.proxy,
            })
        })
        .collect();
    Ok(indexed(index, out))
}

/// `/v1/connect/ca/roots` in Consul's shape.
pub async fn ca_roots(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
) -> ApiResult<Response> {
    can_read(origin, &peer)?;
    let ca = s.ca_opt().ok_or_else(|| {
        ApiError(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "the CA is not up yet".into(),
        )
    })?;
    let roots: Vec<_> = ca
        .roots_pem
        .iter()
        .map(|pem| {
            let info = strait_identity::ca::cert_info(pem).ok();
            json!({
                "ID": info.as_ref().map(|i| i.serial_hex.clone()).unwrap_or_default(),
                "Name": "strait root CA",
                "SerialNumber": info.as_ref().map(|i| i.serial_hex.clone()).unwrap_or_default(),
                "NotAfter": info.as_ref().map(|i| i.not_after_unix).unwrap_or_default(),
                "RootCert": pem,
                "Active": true,
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

pub async fn config_list(
    Read { s, index, .. }: Read,
    Path(kind): Path<String>,
) -> ApiResult<Response> {
    let entries: Vec<ConfigEntry> = s
        .catalog
        .config_entries()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect();
    Ok(indexed(index, entries))
}

/// `PUT /v1/config`: proxy-defaults, service-defaults (mesh gateway mode) and
/// service-intentions. Local callers only (operators on the server VM); over mTLS, servers of
/// this DC and of the primary DC (an operator there writing with `?dc=`).
pub async fn config_set(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    config_writer(&s, origin, &peer)?;
    // Any Content-Type (curl -d sends form encoding), as Consul accepts.
    let entry: ConfigEntry = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid config entry: {e}")))?;
    s.write(Command::SetConfigEntry(entry)).await?;
    Ok(indexed(s.catalog.index(), true))
}

/// Who may write config entries: see [`config_set`].
fn config_writer(s: &AppState, origin: Origin, peer: &Peer) -> ApiResult<()> {
    authorize(origin, peer, "write config entries", |id| {
        matches!(id, strait_identity::spiffe::SpiffeId::Server { datacenter, .. }
            if *datacenter == s.cfg.datacenter || *datacenter == s.cfg.primary_datacenter)
    })
}

/// `DELETE /v1/config/{kind}/{name}`: removes an entry; same callers as [`config_set`].
pub async fn config_delete(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    config_writer(&s, origin, &peer)?;
    s.write(Command::DeleteConfigEntry { kind, name }).await?;
    Ok(indexed(s.catalog.index(), true))
}
