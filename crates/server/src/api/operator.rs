//! Consul's status and operator endpoints over this DC's Raft cluster, and backups:
//!
//! - `GET /v1/status/leader`, `GET /v1/status/peers`: the leader's and the voters' Raft
//!   addresses (`ip:port` of their mTLS listener);
//! - `GET /v1/operator/raft/configuration`, `DELETE /v1/operator/raft/peer?id=|address=`;
//! - `GET /v1/snapshot` (a linearizable copy of the whole state machine, the CA and its key
//!   included, in an [`envelope`]) and `PUT /v1/snapshot` (restore it, through the log).
//!
//! Reads answer from this server's view of the cluster (openraft's metrics), on both
//! listeners; writes (remove a peer, restore) only on the loopback API, like operators'
//! config writes.

mod envelope;

use super::authz::Caller;
use super::{indexed, ApiError, ApiResult, AppState, Origin, Params};
use crate::ca::CaFiles;
use crate::replicated::{Command, Image};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use openraft::error::{ForwardToLeader, RaftError};
use openraft::{ChangeMembers, RaftMetrics, TryAsRef};
use serde::Serialize;
use std::collections::BTreeSet;
use strait_proto::{RaftConfiguration, RaftServer};
use strait_raft::{Node, NodeId};

/// The largest snapshot `PUT /v1/snapshot` takes: the restore is one Raft log entry.
pub const MAX_SNAPSHOT: usize = 64 << 20;

/// This server's Raft, or 503 while it starts.
fn consensus(s: &AppState) -> ApiResult<&strait_raft::Consensus<crate::replicated::CatalogApp>> {
    s.consensus.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "Raft is not started yet".into(),
        )
    })
}

/// What this server knows of its cluster now.
fn metrics(s: &AppState) -> ApiResult<RaftMetrics<NodeId, Node>> {
    Ok(consensus(s)?.raft().metrics().borrow().clone())
}

/// Writes that change the cluster are for operators on this server.
pub(super) fn local_only(origin: Origin, what: &str) -> ApiResult<()> {
    match origin {
        Origin::Local => Ok(()),
        Origin::Mesh => Err(ApiError::forbidden(format!(
            "{what} is accepted only on a server's loopback API (http_addr)"
        ))),
    }
}

/// A Raft call this server could not make: not the leader (say who is), or Raft failing.
fn raft_failed<E>(what: &str, e: RaftError<NodeId, E>) -> ApiError
where
    E: std::error::Error + TryAsRef<ForwardToLeader<NodeId, Node>>,
{
    let msg = match e.forward_to_leader::<Node>() {
        Some(ForwardToLeader {
            leader_id: Some(id),
            leader_node: Some(node),
        }) => format!("this server is not the Raft leader: ask the leader, server {id}, {node}"),
        Some(_) => "no Raft leader is known: the cluster has no quorum".to_string(),
        None => e.to_string(),
    };
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot {what}: {msg}"),
    )
}

/// `GET /v1/status/leader`: `"ip:port"` of the leader's Raft (mTLS) listener, `""` when no
/// leader is known (as Consul).
pub async fn leader(State(s): State<AppState>) -> ApiResult<Json<String>> {
    consensus(&s)?;
    Ok(Json(crate::cluster::leader_addr(&s).unwrap_or_default()))
}

/// `GET /v1/status/peers`: the voters' Raft addresses.
pub async fn peers(State(s): State<AppState>) -> ApiResult<Json<Vec<String>>> {
    let m = metrics(&s)?;
    let membership = m.membership_config.membership();
    let addrs = membership
        .voter_ids()
        .filter_map(|id| membership.get_node(&id).map(|n| n.addr.clone()))
        .collect();
    Ok(Json(addrs))
}

/// `GET /v1/operator/raft/configuration`: every member (voters first, then learners).
pub async fn configuration(State(s): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.check(|a| a.operator_read())?;
    let m = metrics(&s)?;
    let index = m.membership_config.log_id().map_or(0, |l| l.index);
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let mut servers: Vec<RaftServer> = membership
        .nodes()
        .map(|(id, node)| RaftServer {
            id: id.to_string(),
            node: node.name.clone(),
            address: node.addr.clone(),
            leader: m.current_leader == Some(*id),
            voter: voters.contains(id),
            protocol_version: "3".into(),
        })
        .collect();
    servers.sort_by_key(|s| !s.voter);
    Ok(indexed(index, RaftConfiguration { servers, index }))
}

/// `DELETE /v1/operator/raft/peer?id=<id>` (or `?address=<ip:port>`): removes a server from
/// the cluster (a voter is not kept as a learner). The last voter cannot be removed.
pub async fn remove_peer(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    local_only(origin, "removing a Raft peer")?;
    caller.check(|a| a.operator_write())?;
    let m = metrics(&s)?;
    let membership = m.membership_config.membership();
    let known = || {
        let mut all: Vec<String> = membership
            .nodes()
            .map(|(id, n)| format!("{id} ({}, {})", n.name, n.addr))
            .collect();
        all.sort();
        all.join(", ")
    };
    let id: NodeId = match (q.get("id"), q.get("address")) {
        (Some(id), _) => {
            let parsed = id.parse::<NodeId>().ok();
            parsed
                .filter(|n| membership.get_node(n).is_some())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "no server with ID {id:?} in the Raft configuration (servers: {})",
                        known()
                    ))
                })?
        }
        (None, Some(addr)) => membership
            .nodes()
            .find(|(_, n)| n.addr == *addr)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "no server with address {addr:?} in the Raft configuration (servers: {})",
                    known()
                ))
            })?,
        (None, None) => {
            return Err(ApiError::bad_request(
                "say which server to remove: ?id=<ID> or ?address=<ip:port> (see /v1/operator/raft/configuration)",
            ))
        }
    };
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let name = membership.get_node(&id).map(|n| n.to_string());
    let name = name.unwrap_or_default();
    let change = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(ApiError::bad_request(format!(
                "server {id} ({name}) is the last voter of the cluster: removing it would leave datacenter {} without a Raft cluster",
                s.cfg.datacenter
            )));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    consensus(&s)?
        .raft()
        .change_membership(change, false)
        .await
        .map_err(|e| raft_failed(&format!("remove server {id}"), e))?;
    tracing::info!(node_id = id, server = %name, "removed from the Raft configuration");
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/snapshot`: a point-in-time copy of everything replicated (catalog, config
/// entries, federation states, the CA with its key). Only this DC's servers (and local callers)
/// may take one ([`super::read::Readers::Servers`]). Served as Consul's: by the leader, which
/// confirms its leadership first, so the copy includes every write committed before the
/// request (a follower forwards it); with `?stale` by the server asked, from its own state.
pub async fn snapshot_save(State(s): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.check(|a| a.snapshot())?;
    let consensus = consensus(&s)?;
    let metrics = consensus.raft().metrics().borrow().clone();
    let read = if metrics.current_leader == Some(metrics.id) {
        consensus
            .raft()
            .ensure_linearizable()
            .await
            .map_err(|e| raft_failed("take a snapshot", e))?
    } else {
        metrics.last_applied
    };
    let raft_index = read.map_or(0, |l| l.index);
    // The whole replicated image: the catalog and the CA (its key too).
    let body = strait_raft::Replicated::snapshot(consensus.app().as_ref());
    let header = envelope::Header {
        datacenter: s.cfg.datacenter.clone(),
        trust_domain: s.ca_opt().map(|ca| ca.trust_domain.clone()),
        raft_index,
        created_unix: strait_base::clock::unix_now(),
        strait_version: env!("CARGO_PKG_VERSION").into(),
        size: 0,
    };
    let file = envelope::seal(header, &body);
    let mut resp = (StatusCode::OK, file).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert("x-consul-index", HeaderValue::from(raft_index));
    Ok(resp)
}

/// What `PUT /v1/snapshot` answers: the restored snapshot's header.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Restored {
    datacenter: String,
    raft_index: u64,
    created_unix: i64,
    /// The catalog index after the restore.
    index: u64,
    /// The trust domain of the CA the snapshot carries (absent: it carries none, and the
    /// cluster keeps its CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_domain: Option<String>,
    /// The snapshot's CA differs from the one the cluster had: every server signs and serves
    /// with it as it applies the restore (the old one stays trusted between servers for a
    /// while, see `crate::identity`).
    ca_replaced: bool,
}

/// `PUT /v1/snapshot`: replaces the whole replicated state (catalog, config entries,
/// federation states, and the CA when the snapshot carries one) with a snapshot of this
/// datacenter, through the Raft log (every server applies it). Checked first, so a corrupt,
/// truncated or foreign file is refused (400, saying what is wrong) and nothing changes.
pub async fn snapshot_restore(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    local_only(origin, "restoring a snapshot")?;
    caller.check(|a| a.snapshot())?;
    let refused =
        |why: String| ApiError::bad_request(format!("cannot restore this snapshot: {why}"));
    let opened = envelope::open(&body).map_err(|e| refused(e.to_string()))?;
    let header = opened.header;
    if header.datacenter != s.cfg.datacenter {
        return Err(refused(format!(
            "it was taken in datacenter {}, this server is in {} (a snapshot is restored into its own datacenter)",
            header.datacenter, s.cfg.datacenter
        )));
    }
    let image: Image = serde_json::from_slice(opened.body)
        .map_err(|e| refused(format!("its body is not a server image: {e}")))?;
    // The same checks every server's apply depends on, made here: a bad image is refused
    // rather than committed to the log.
    strait_catalog::Catalog::replicated()
        .restore(image.catalog.as_bytes())
        .map_err(|e| refused(e.to_string()))?;
    if let Some(ca) = &image.ca {
        check_ca(ca).map_err(|e| refused(format!("its CA ({}): {e}", ca.trust_domain)))?;
    }
    let ca_replaced = image
        .ca
        .as_ref()
        .is_some_and(|ca| consensus(&s).is_ok_and(|c| c.app().ca.borrow().as_ref() != Some(ca)));
    let trust_domain = image.ca.as_ref().map(|ca| ca.trust_domain.clone());
    let new_root = image.ca.as_ref().map(|ca| ca.root_pem.clone());
    let index = s.write(Command::RestoreAll(image)).await?;
    if let (true, Some(root)) = (ca_replaced, new_root) {
        // This server installs the new CA as it applies the restore (`crate::identity`):
        // answer once it signs with it, so what the caller asks next is signed by it.
        let installed = async {
            while !s.ca_opt().is_some_and(|ca| ca.roots_pem.contains(&root)) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), installed)
            .await
            .is_err()
        {
            tracing::warn!("the restored CA is not installed on this server after 10 s");
        }
    }
    tracing::info!(
        raft_index = header.raft_index,
        created_unix = header.created_unix,
        "restored a snapshot"
    );
    if ca_replaced {
        tracing::warn!(
            trust_domain = trust_domain.as_deref().unwrap_or_default(),
            "the snapshot replaced the DC's CA: every server switches to it"
        );
    }
    Ok(indexed(
        index,
        Restored {
            datacenter: header.datacenter,
            raft_index: header.raft_index,
            created_unix: header.created_unix,
            index,
            trust_domain,
            ca_replaced,
        },
    ))
}

/// A snapshot's CA must be one a server can sign with: a root with its key (primary DC) or an
/// intermediate with its key (secondary DC), each key matching its certificate.
fn check_ca(ca: &CaFiles) -> Result<(), String> {
    let (cert, key) = match (
        &ca.root_key_pem,
        &ca.intermediate_pem,
        &ca.intermediate_key_pem,
    ) {
        (Some(key), None, None) => (&ca.root_pem, key),
        (None, Some(cert), Some(key)) => (cert, key),
        _ => return Err("neither a root key nor an intermediate with its key".into()),
    };
    strait_identity::spiffe::validate_trust_domain(&ca.trust_domain).map_err(|e| e.to_string())?;
    let signer = strait_identity::ca::CaCert::from_pem(cert, key).map_err(|e| e.to_string())?;
    match signer.trust_domain() {
        Ok(td) if td == ca.trust_domain => Ok(()),
        Ok(td) => Err(format!("its certificate is of trust domain {td}")),
        Err(e) => Err(e.to_string()),
    }
}
