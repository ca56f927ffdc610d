//! strait's own endpoints: readiness, members, the mesh view agents build snapshots from,
//! agent join / certificate signing / anti-entropy sync, and federation.

use super::read::Readers;
use super::{
    authorize, authorize_peer, block, indexed, ApiError, ApiResult, AppState, Origin, Params,
};
use crate::federation;
use crate::replicated::Command;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use strait_catalog::FederationState;
use strait_identity::bootstrap;
use strait_identity::spiffe::SpiffeId;
use strait_proto::{
    FederationJoinRequest, FederationJoinResponse, JoinRequest, JoinResponse, MeshViewResponse,
    SignRequest, SignResponse, SyncRequest,
};
use strait_rpc::serve::Peer;
use strait_snapshot::{GatewayMode, MeshView};

pub async fn ready(State(s): State<AppState>) -> Response {
    if s.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let why = strait_base::sync::lock(&s.waiting_for).clone();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response()
    }
}

pub async fn members(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: super::authz::Caller,
) -> ApiResult<Response> {
    authorize(origin, &peer, "list members", |_| true)?;
    let mut members = s.members();
    members.retain(|m| caller.may(|a| a.node_read(&m.node)));
    Ok(indexed(s.catalog.index(), members))
}

fn mode_of(m: &str) -> GatewayMode {
    match m {
        "local" => GatewayMode::Local,
        "remote" => GatewayMode::Remote,
        "none" => GatewayMode::None,
        _ => GatewayMode::Default,
    }
}

/// What agents build per-proxy snapshots from (blocking query).
pub async fn mesh_view(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: super::authz::Caller,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    Readers::ThisDc.authorize(&s, origin, &peer)?;
    caller.operator_or_process()?;
    let index = block(&s, &q).await?;
    let ca = s.ca_opt().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the CA is not up yet".into(),
        )
    })?;
    let mut federation: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
    for st in s.catalog.federation_states() {
        let addrs = st
            .mesh_gateways
            .iter()
            .filter_map(|g| g.parse().ok())
            .collect();
        federation.insert(st.datacenter.clone(), addrs);
    }
    let mut view = MeshView {
        trust_domain: ca.trust_domain.clone(),
        datacenter: s.cfg.datacenter.clone(),
        instances: s.catalog.mesh_instances(),
        federation,
        intentions_default_deny: !s.cfg.acl.intentions_default_allow(),
        ..Default::default()
    };
    for e in s.catalog.config_entries() {
        let mode = mode_of(&e.mesh_gateway.mode);
        match e.kind.as_str() {
            "proxy-defaults" => view.proxy_defaults_mode = mode,
            "service-defaults" => {
                view.service_defaults_mode.insert(e.name.clone(), mode);
                if let Some(configs) = e.upstream_configs() {
                    view.upstream_configs.insert(e.name.clone(), configs);
                }
            }
            "service-intentions" => {
                view.intentions.insert(e.name.clone(), e.intention_rules());
            }
            "service-resolver" => {
                view.resolvers.insert(e.name.clone(), e.resolver());
            }
            _ => {}
        }
    }
    Ok(indexed(
        index,
        MeshViewResponse {
            index,
            view,
            roots_pem: ca.roots_pem.clone(),
        },
    ))
}

/// The CA, or 503 while it is not up yet.
pub(super) fn ca_of(s: &AppState) -> ApiResult<std::sync::Arc<crate::ca::CaState>> {
    s.ca_opt().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the CA is not up yet".into(),
        )
    })
}

/// Who asks to join (an agent's node or a server), as its request says.
pub(crate) struct Joiner<'a> {
    /// `node` or `server`, for messages.
    pub what: &'static str,
    pub node: &'a str,
    pub datacenter: &'a str,
    pub mac: &'a str,
}

/// Admits a joiner: its MAC over `parts` under `secret` (403 saying `wrong`, then the DC),
/// this DC, and a valid node name (400s naming them).
pub(crate) fn admit_joiner(
    s: &AppState,
    joiner: Joiner<'_>,
    secret: &str,
    parts: &[&[u8]],
    wrong: &str,
) -> ApiResult<()> {
    let Joiner {
        what,
        node,
        datacenter,
        mac,
    } = joiner;
    if !bootstrap::verify_mac(secret, parts, mac) {
        tracing::warn!(%node, what, "join refused: wrong token");
        return Err(ApiError::forbidden(format!(
            "join token refused for {what} {node}: {wrong} {}",
            s.cfg.datacenter
        )));
    }
    if datacenter != s.cfg.datacenter {
        return Err(ApiError::bad_request(format!(
            "{what} {node} says it is in datacenter {datacenter} but this cluster is {}",
            s.cfg.datacenter
        )));
    }
    strait_identity::spiffe::validate_name("Node", node)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// An agent joins: proves it knows the DC's join token and gets its certificate.
pub async fn join(State(s): State<AppState>, Json(req): Json<JoinRequest>) -> ApiResult<Response> {
    let ca = ca_of(&s)?;
    let token = &s.live.join_token();
    let parts: [&[u8]; 5] = [
        b"agent-join",
        req.node.as_bytes(),
        req.datacenter.as_bytes(),
        req.csr_pem.as_bytes(),
        req.nonce.as_bytes(),
    ];
    admit_joiner(
        &s,
        Joiner {
            what: "node",
            node: &req.node,
            datacenter: &req.datacenter,
            mac: &req.mac,
        },
        token,
        &parts,
        "the agent's join_token is not the one of datacenter",
    )?;
    let id = SpiffeId::agent(&ca.trust_domain, &s.cfg.datacenter, &req.node);
    let signed = ca
        .sign(&req.csr_pem, &id, s.live.leaf_ttl())
        .map_err(|e| ApiError::bad_request(format!("field CsrPem: {e:#}")))?;
    let roots = ca.roots_pem.join("\n");
    let mac = bootstrap::mac(
        token,
        &[
            b"agent-joined",
            req.nonce.as_bytes(),
            ca.trust_domain.as_bytes(),
            roots.as_bytes(),
            signed.chain_pem.as_bytes(),
        ],
    );
    tracing::info!(node = %req.node, "agent joined");
    Ok(Json(JoinResponse {
        trust_domain: ca.trust_domain.clone(),
        roots_pem: ca.roots_pem.clone(),
        cert_pem: signed.chain_pem,
        mac,
    })
    .into_response())
}

/// An agent asks for a service's leaf certificate (or renews its own when `Service` is empty).
pub async fn sign(
    State(s): State<AppState>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<SignRequest>,
) -> ApiResult<Response> {
    let dc = s.cfg.datacenter.clone();
    authorize_peer(
        &peer,
        "request certificates",
        |id| matches!(id, SpiffeId::Agent { datacenter, .. } if *datacenter == dc),
    )?;
    let ca = ca_of(&s)?;
    let id = if req.service.is_empty() {
        peer.identity.clone().ok_or_else(|| {
            ApiError::bad_request(
                "field Service is empty: only an agent can renew its own certificate",
            )
        })?
    } else {
        strait_identity::spiffe::validate_name("Service", &req.service)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let Some(SpiffeId::Agent { node, .. }) = &peer.identity else {
            return Err(ApiError::forbidden(
                "only an agent may request a certificate",
            ));
        };
        runs_on(&s, node, &req.service)?;
        SpiffeId::service(&ca.trust_domain, &dc, &req.service)
    };
    let signed = ca
        .sign(&req.csr_pem, &id, s.live.leaf_ttl())
        .map_err(|e| ApiError::bad_request(format!("field CsrPem: {e:#}")))?;
    Ok(Json(SignResponse {
        cert_chain_pem: signed.chain_pem,
        spiffe_id: id.to_string(),
        serial: signed.issued.serial_hex,
        not_after_unix: signed.issued.not_after_unix,
    })
    .into_response())
}

/// An agent gets certificates only for services its node runs (the service itself, or a
/// sidecar fronting it), so one compromised VM cannot impersonate the rest of the DC.
fn runs_on(s: &AppState, node: &str, service: &str) -> ApiResult<()> {
    let services = s.catalog.node_services(node).map(|n| n.services);
    let found = services.iter().flatten().any(|svc| {
        svc.service == service
            || svc
                .proxy
                .as_ref()
                .is_some_and(|p| p.destination_service_name == service)
    });
    if found {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "field Service = {service:?}: node {node:?} runs no such service (register it, \
                 and let the agent sync, before asking for its certificate)"
            ),
        ))
    }
}

/// Anti-entropy: an agent's complete local state replaces what the catalog holds for its node.
pub async fn sync(
    State(s): State<AppState>,
    Extension(peer): Extension<Peer>,
    Json(mut req): Json<SyncRequest>,
) -> ApiResult<Response> {
    let dc = s.cfg.datacenter.clone();
    let node = req.node.node.clone();
    authorize_peer(
        &peer,
        &format!("sync node {node}"),
        |id| matches!(id, SpiffeId::Agent { datacenter, node: n, .. } if *datacenter == dc && *n == node),
    )?;
    if node == s.cfg.node_name {
        return Err(ApiError::bad_request(format!(
            "node {node} is this server's own node"
        )));
    }
    req.node.datacenter = dc;
    s.write(Command::SyncNode {
        node: req.node,
        services: req.services,
        checks: req.checks,
    })
    .await?;
    Ok(indexed(s.catalog.index(), true))
}

/// Primary: a new secondary asks for its intermediate CA.
pub async fn federation_join(
    State(s): State<AppState>,
    Json(req): Json<FederationJoinRequest>,
) -> ApiResult<Response> {
    if !s.cfg.is_primary() {
        return Err(ApiError::bad_request(format!(
            "datacenter {} is not the primary; federation joins go to {}",
            s.cfg.datacenter, s.cfg.primary_datacenter
        )));
    }
    let ca = ca_of(&s)?;
    let token = &s.cfg.federation_token;
    let parts: [&[u8]; 4] = [
        b"federation-join",
        req.datacenter.as_bytes(),
        req.csr_pem.as_bytes(),
        req.nonce.as_bytes(),
    ];
    if !bootstrap::verify_mac(token, &parts, &req.mac) {
        tracing::warn!(dc = %req.datacenter, "federation join refused: wrong federation token");
        return Err(ApiError::forbidden(format!(
            "federation token refused for datacenter {}",
            req.datacenter
        )));
    }
    strait_identity::spiffe::validate_name("Datacenter", &req.datacenter)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let inter = ca
        .sign_intermediate(&req.csr_pem, &req.datacenter)
        .map_err(|e| ApiError::bad_request(format!("field CsrPem: {e:#}")))?;
    let root = ca.root_pem().to_string();
    let mac = bootstrap::mac(
        token,
        &[
            b"federation-joined",
            req.nonce.as_bytes(),
            ca.trust_domain.as_bytes(),
            root.as_bytes(),
            inter.cert_pem.as_bytes(),
        ],
    );
    tracing::info!(dc = %req.datacenter, serial = %inter.serial_hex, "signed a secondary DC's intermediate CA");
    Ok(Json(FederationJoinResponse {
        trust_domain: ca.trust_domain.clone(),
        root_pem: root,
        intermediate_pem: inter.cert_pem,
        mac,
    })
    .into_response())
}

/// Primary: a secondary publishes its gateways.
pub async fn federation_state(
    State(s): State<AppState>,
    Extension(peer): Extension<Peer>,
    Json(state): Json<FederationState>,
) -> ApiResult<Response> {
    let dc = state.datacenter.clone();
    authorize_peer(
        &peer,
        &format!("publish the federation state of {dc}"),
        |id| super::is_server_of(id, &dc),
    )?;
    if !s.cfg.is_primary() {
        return Err(ApiError::bad_request(
            "federation states are published to the primary datacenter",
        ));
    }
    federation::store_if_changed(&s, state)
        .await
        .map_err(ApiError::internal)?;
    Ok(indexed(s.catalog.index(), true))
}

/// All DCs' federation states (blocking query); servers of the federation only.
pub async fn federation_states(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: super::authz::Caller,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    Readers::ServersAndAgents.authorize(&s, origin, &peer)?;
    caller.operator_or_process()?;
    let index = block(&s, &q).await?;
    Ok(indexed(index, s.catalog.federation_states()))
}
