//! The server's HTTP API: one router, served on the loopback listener (`Origin::Local`, trusted
//! like Consul's local API) and on the mTLS listener (`Origin::Mesh`, where every route but the
//! token-authenticated joins needs a verified peer certificate).
//!
//! Reads accept `?dc=` (forwarded to that DC's servers through the gateways), blocking
//! queries (`?index=N&wait=30s`, answered with `X-Consul-Index`) and Consul's consistency
//! modes (default: the leader answers; `?stale`; `?consistent`: see [`read`]).

mod acl;
pub(crate) mod authz;
mod catalog;
mod intentions;
pub(crate) mod internal;
mod metrics;
mod operator;
mod read;

use crate::forward;
use crate::state::Server;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strait_identity::spiffe::SpiffeId;
use strait_rpc::serve::Peer;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Local,
    Mesh,
}

pub type AppState = Arc<Server>;

pub fn router(server: Arc<Server>, origin: Origin) -> Router {
    Router::new()
        .route("/v1/status/ready", get(internal::ready))
        .route("/v1/status/leader", get(operator::leader))
        .route("/v1/status/peers", get(operator::peers))
        .route(
            "/v1/operator/raft/configuration",
            get(operator::configuration),
        )
        .route("/v1/operator/raft/peer", delete(operator::remove_peer))
        .route(
            "/v1/snapshot",
            get(operator::snapshot_save)
                .put(operator::snapshot_restore)
                .layer(DefaultBodyLimit::max(operator::MAX_SNAPSHOT)),
        )
        .route("/v1/acl/bootstrap", put(acl::bootstrap))
        .route("/v1/acl/token", put(acl::token_create))
        .route("/v1/acl/token/self", get(acl::token_self))
        .route(
            "/v1/acl/token/{id}",
            get(acl::token_read)
                .put(acl::token_update)
                .delete(acl::token_delete),
        )
        .route("/v1/acl/tokens", get(acl::token_list))
        .route("/v1/acl/policy", put(acl::policy_create))
        .route(
            "/v1/acl/policy/{id}",
            get(acl::policy_read)
                .put(acl::policy_update)
                .delete(acl::policy_delete),
        )
        .route("/v1/acl/policies", get(acl::policy_list))
        .route("/v1/acl/role", put(acl::role_create))
        .route(
            "/v1/acl/role/{id}",
            get(acl::role_read)
                .put(acl::role_update)
                .delete(acl::role_delete),
        )
        .route("/v1/acl/roles", get(acl::role_list))
        .route("/v1/acl/replication", get(crate::acl_replication::status))
        .route("/v1/agent/metrics", get(metrics::metrics))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/service/{name}", get(catalog::catalog_service))
        .route("/v1/health/service/{name}", get(catalog::health_service))
        .route("/v1/health/connect/{name}", get(catalog::health_connect))
        .route("/v1/health/checks/{name}", get(catalog::health_checks))
        .route("/v1/health/node/{node}", get(catalog::health_node))
        .route("/v1/health/state/{state}", get(catalog::health_state))
        .route("/v1/catalog/connect/{name}", get(catalog::catalog_connect))
        .route("/v1/catalog/node/{node}", get(catalog::catalog_node))
        .route(
            "/v1/catalog/node-services/{node}",
            get(catalog::catalog_node_services),
        )
        .route("/v1/catalog/datacenters", get(catalog::catalog_datacenters))
        .route("/v1/connect/ca/roots", get(catalog::ca_roots))
        .route(
            "/v1/connect/ca/configuration",
            get(catalog::ca_configuration),
        )
        .route("/v1/connect/intentions", get(intentions::list))
        .route(
            "/v1/connect/intentions/exact",
            get(intentions::exact_get)
                .put(intentions::exact_put)
                .delete(intentions::exact_delete),
        )
        .route("/v1/connect/intentions/match", get(intentions::matching))
        .route("/v1/connect/intentions/check", get(intentions::check))
        .route("/v1/config/{kind}", get(catalog::config_list))
        .route("/v1/config", put(catalog::config_set))
        .route(
            "/v1/config/{kind}/{name}",
            get(catalog::config_get).delete(catalog::config_delete),
        )
        .route("/v1/internal/members", get(internal::members))
        .route("/v1/internal/mesh-view", get(internal::mesh_view))
        .route("/v1/internal/join", post(internal::join))
        .route("/v1/internal/server/status", get(crate::cluster::status))
        .route("/v1/internal/server/join", post(crate::cluster::join))
        .route(
            "/v1/internal/raft/write",
            post(crate::cluster::forwarded_write),
        )
        .route("/v1/internal/sign", post(internal::sign))
        .route("/v1/internal/acl/authorizer", get(authz::authorizer))
        .route(
            "/v1/internal/acl/replication",
            get(crate::acl_replication::source),
        )
        .route("/v1/internal/sync", put(internal::sync))
        .route(
            "/v1/internal/federation/join",
            post(internal::federation_join),
        )
        .route(
            "/v1/internal/federation/state",
            put(internal::federation_state),
        )
        .route(
            "/v1/internal/federation/states",
            get(internal::federation_states),
        )
        .fallback(strait_rpc::unsupported::fallback)
        .method_not_allowed_fallback(strait_rpc::unsupported::method_fallback)
        .layer(middleware::from_fn_with_state(server.clone(), read::modes))
        .layer(middleware::from_fn_with_state(server.clone(), forward_dc))
        .layer(middleware::from_fn(strait_rpc::metrics::count_requests))
        .layer(Extension(server.http_requests.clone()))
        .layer(Extension(origin))
        .with_state(server)
}

/// An API error: a status and a message naming what was wrong.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::FORBIDDEN, msg.into())
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

impl From<strait_catalog::CatalogError> for ApiError {
    fn from(e: strait_catalog::CatalogError) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<crate::replicated::WriteFailure> for ApiError {
    fn from(e: crate::replicated::WriteFailure) -> Self {
        use crate::replicated::WriteFailure;
        match e {
            WriteFailure::Refused(msg) => ApiError(StatusCode::BAD_REQUEST, msg),
            WriteFailure::Unavailable(_) => {
                ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body with the `X-Consul-Index` header.
pub fn indexed<T: Serialize>(index: u64, body: T) -> Response {
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        resp.headers_mut().insert("x-consul-index", v);
    }
    resp
}

/// Query parameters as a map (Consul ignores ones it does not know; so do we).
pub type Params = HashMap<String, String>;

/// Parses Consul's `wait`: `30s`, `5m`, `100ms`, or plain seconds; at most 10 minutes.
pub fn parse_wait(v: &str) -> Result<Duration, ApiError> {
    let d = strait_rpc::duration::parse(v)
        .map_err(|e| ApiError::bad_request(format!("query parameter `wait` = {e}")))?;
    Ok(d.min(Duration::from_secs(600)))
}

/// Blocks while the catalog index is at most `?index=` (up to `?wait=`, default 5m); returns
/// the index to answer with.
pub async fn block(server: &Server, params: &Params) -> ApiResult<u64> {
    let Some(index) = params.get("index") else {
        return Ok(server.catalog.index());
    };
    let index: u64 = index.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "query parameter `index` = {index:?} is not a number"
        ))
    })?;
    let wait = match params.get("wait") {
        Some(w) => parse_wait(w)?,
        None => Duration::from_secs(300),
    };
    Ok(server.catalog.wait_for_change(index, wait).await)
}

/// Whether `id` is a server of datacenter `dc` (what server-to-server routes accept).
pub fn is_server_of(id: &SpiffeId, dc: &str) -> bool {
    matches!(id, SpiffeId::Server { datacenter, .. } if datacenter == dc)
}

/// Authorisation for `Origin::Mesh`: the peer must hold a certificate that `allowed` accepts.
/// Local callers are trusted (the routes that check a token beside it).
pub fn authorize(
    origin: Origin,
    peer: &Peer,
    what: &str,
    allowed: impl Fn(&SpiffeId) -> bool,
) -> ApiResult<()> {
    if origin == Origin::Local {
        return Ok(());
    }
    authorize_peer(peer, what, allowed)
}

/// Authorisation for the routes only strait processes call, over mTLS (leaf signing,
/// anti-entropy, forwarded Raft writes, federation states): the peer's certificate must be one
/// `allowed` accepts. The loopback API refuses them, so a local user on a server VM cannot
/// sign any service's leaf, rewrite a node or propose a Raft command without a token.
pub fn authorize_peer(
    peer: &Peer,
    what: &str,
    allowed: impl Fn(&SpiffeId) -> bool,
) -> ApiResult<()> {
    match &peer.identity {
        Some(id) if allowed(id) => Ok(()),
        Some(id) => Err(ApiError::forbidden(format!("{id} may not {what}"))),
        None => Err(ApiError::forbidden(format!(
            "{what} needs a client certificate; {} presented none (strait processes call this over mTLS only)",
            peer.addr
        ))),
    }
}

/// `?dc=X` for another DC: forward the request to X's servers through the gateways.
async fn forward_dc(State(server): State<AppState>, req: Request, next: Next) -> Response {
    let Some(query) = req.uri().query() else {
        return next.run(req).await;
    };
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect();
    let dc = params
        .iter()
        .find(|(k, _)| k == "dc")
        .map(|(_, v)| v.clone());
    let Some(dc) = dc.filter(|dc| !dc.is_empty() && *dc != server.cfg.datacenter) else {
        return next.run(req).await;
    };
    if !catalog::datacenters(&server).contains(&dc) {
        // Consul's answer for a datacenter it has no route to.
        return ApiError::internal("No path to datacenter").into_response();
    }
    let origin = req
        .extensions()
        .get::<Origin>()
        .copied()
        .unwrap_or(Origin::Mesh);
    let peer = req.extensions().get::<Peer>().cloned();
    if origin == Origin::Mesh && peer.as_ref().and_then(|p| p.identity.as_ref()).is_none() {
        return ApiError::forbidden("forwarding to another datacenter needs a client certificate")
            .into_response();
    }
    // The target DC trusts this server's identity, not the caller's: only operators on this
    // server's loopback API may have writes forwarded.
    if origin == Origin::Mesh && req.method() != axum::http::Method::GET {
        return ApiError::forbidden(
            "writes to another datacenter are forwarded only from a server's loopback API",
        )
        .into_response();
    }
    if server.ca_opt().is_none() {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is not ready yet".into(),
        )
        .into_response();
    }
    let rest: Vec<String> = params
        .iter()
        .filter(|(k, _)| k != "dc")
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    let path = if rest.is_empty() {
        req.uri().path().to_string()
    } else {
        format!("{}?{}", req.uri().path(), rest.join("&"))
    };
    let method = req.method().clone();
    let token = authz::relayed_token(req.headers(), Some(origin), peer.as_ref());
    let body = match axum::body::to_bytes(req.into_body(), 4 << 20).await {
        Ok(b) if b.is_empty() => None,
        Ok(b) => Some(b.to_vec()),
        Err(e) => {
            return ApiError::bad_request(format!("reading the request body: {e}")).into_response()
        }
    };
    let wait = params
        .iter()
        .find(|(k, _)| k == "wait")
        .and_then(|(_, v)| parse_wait(v).ok())
        .unwrap_or(Duration::ZERO);
    let header = token.as_deref().map(|t| ("x-consul-token", t));
    let forwarded = strait_rpc::mesh::Outgoing {
        method,
        path_and_query: &path,
        body,
        headers: header.as_slice(),
    };
    match forward::send(&server, &dc, forwarded, wait + Duration::from_secs(10)).await {
        Ok(r) => r.into_response(),
        Err(e) => ApiError(StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
    }
}
