//! ACL replication, Consul's: the primary DC is the authority for global (non-`Local`)
//! tokens, policies and roles; the leader of each secondary DC copies them into its own Raft
//! log, so its servers resolve tokens created in the primary, and keep doing so from their
//! copy when the primary is unreachable.
//!
//! - The primary answers `GET /v1/internal/acl/replication?index=N&wait=D` ([`source`]) to
//!   servers of other DCs (their mTLS identity) whose `X-Consul-Token` grants `acl = "write"`
//!   there (the secondary's `acl.tokens.replication`): a blocking query that answers once its
//!   ACL index differs from `N`, with [`AclState::replica`] (secret hashes, never secrets).
//! - The secondary's leader runs the task `acl-replication` ([`spawn`]): it asks with the
//!   primary's index of its copy ([`AclState::replicated_index`], replicated, so a new leader
//!   resumes from it) and commits each new replica as one [`AclCommand::Replicate`].
//! - `GET /v1/acl/replication` ([`status`]) answers Consul's replication status.
//!
//! Secondaries forward writes of global objects to the primary (crates/server/src/api/acl.rs)
//! and wait with [`wait_for`] until they have replicated them.

use crate::api::authz::{denied, disabled, resolve, token_of, with_state};
use crate::api::{authorize, indexed, parse_wait, ApiError, ApiResult, AppState, Origin, Params};
use crate::forward;
use crate::replicated::Command;
use crate::state::Server;
use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strait_acl::{AclCommand, AclState, Replica};
use strait_identity::spiffe::SpiffeId;
use strait_rpc::mesh::Outgoing;
use strait_rpc::serve::Peer;
use strait_systemd::lifecycle::Role;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How long the primary holds a replication query without a change.
const WAIT: Duration = Duration::from_secs(30);
/// The longest pause between attempts while the primary cannot be reached or refuses.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Starts the task `acl-replication` on a secondary DC's servers with ACLs on; it replicates
/// only while this server leads its DC.
pub fn spawn(server: &Arc<Server>, role: &Role) {
    if server.cfg.is_primary() || !server.cfg.acl.enabled {
        return;
    }
    if server.cfg.acl.tokens.replication.is_none() {
        tracing::warn!(
            primary = %server.cfg.primary_datacenter,
            "acl.tokens.replication is not set: the primary will refuse to replicate ACLs to this datacenter"
        );
    }
    role.spawn_cancellable("acl-replication", replicate(server.clone()));
}

/// Whether this server leads its DC.
fn is_leader(server: &Server) -> bool {
    server.consensus.get().is_some_and(|c| {
        let m = c.raft().metrics().borrow().clone();
        m.current_leader == Some(m.id)
    })
}

async fn replicate(server: Arc<Server>) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        let leads = is_leader(&server);
        strait_base::sync::lock(&server.acl_replication.0).running = leads;
        if !leads {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        match round(&server).await {
            Ok(()) => {
                if failing {
                    tracing::info!(primary = %server.cfg.primary_datacenter, "ACL replication works again");
                }
                failing = false;
                backoff = Duration::from_millis(100);
                server.acl_replication.succeeded();
            }
            Err(e) => {
                let why = format!("{e:#}");
                if !failing {
                    tracing::warn!(primary = %server.cfg.primary_datacenter, error = %why, "ACL replication failed; serving from the replicated copy and retrying");
                }
                failing = true;
                server.acl_replication.failed(why);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One blocking query to the primary and, if its ACLs changed, their commit here.
async fn round(server: &Server) -> anyhow::Result<()> {
    let primary = &server.cfg.primary_datacenter;
    let have = replicated_index(server).context("this server's Raft is not up")?;
    let path = format!(
        "/v1/internal/acl/replication?index={have}&wait={}s",
        WAIT.as_secs()
    );
    let token = server.cfg.acl.tokens.replication.as_ref();
    let headers: Vec<(&str, &str)> = token
        .map(|t| ("x-consul-token", t.expose()))
        .into_iter()
        .collect();
    let req = Outgoing {
        method: Method::GET,
        path_and_query: &path,
        body: None,
        headers: &headers,
    };
    let resp = forward::send(server, primary, req, WAIT + Duration::from_secs(10)).await?;
    if !resp.status.is_success() {
        anyhow::bail!(
            "the primary datacenter {primary} ({}) answered {}: {}",
            resp.peer,
            resp.status,
            String::from_utf8_lossy(&resp.body).trim()
        );
    }
    let replica: Replica = serde_json::from_slice(&resp.body).with_context(|| {
        format!(
            "the primary datacenter {primary} ({}) answered an invalid replica",
            resp.peer
        )
    })?;
    // No change within the wait, or leadership lost meanwhile (the new leader replicates).
    if replica.index == have || !is_leader(server) {
        return Ok(());
    }
    let (index, tokens) = (replica.index, replica.tokens.len());
    server
        .write(Command::Acl(AclCommand::Replicate(replica)))
        .await
        .context("cannot commit the replicated ACLs")?;
    tracing::debug!(
        primary_index = index,
        tokens,
        "ACLs replicated from the primary"
    );
    Ok(())
}

/// The primary's ACL index of this server's copy.
fn replicated_index(server: &Server) -> Option<u64> {
    let consensus = server.consensus.get()?;
    Some(strait_base::sync::read(&consensus.app().acl).replicated_index())
}

/// Waits until `done` holds for this server's ACL state, or `wait` passes: woken by every
/// entry Raft applies here. Whether it holds.
pub async fn wait_for(s: &Server, wait: Duration, done: impl Fn(&AclState) -> bool) -> bool {
    let Some(consensus) = s.consensus.get() else {
        return false;
    };
    let mut applied = consensus.raft().metrics();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        applied.borrow_and_update();
        if done(&strait_base::sync::read(&consensus.app().acl)) {
            return true;
        }
        match tokio::time::timeout_at(deadline, applied.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// `GET /v1/internal/acl/replication?index=N&wait=D` on the primary: its global ACL objects
/// once its ACL index differs from `N` (or after `wait`, default 30 s), with the index in
/// `X-Consul-Index`. Servers of other DCs only, with a token granting `acl = "write"`.
pub async fn source(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    Query(q): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let dc = &s.cfg.datacenter;
    authorize(
        origin,
        &peer,
        "replicate ACLs",
        |id| matches!(id, SpiffeId::Server { datacenter, .. } if datacenter != dc),
    )?;
    if !s.cfg.acl.enabled {
        return Err(disabled());
    }
    if !s.cfg.is_primary() {
        return Err(ApiError::bad_request(format!(
            "datacenter {dc} is not the primary ({}): replicate ACLs from the primary",
            s.cfg.primary_datacenter
        )));
    }
    // What it sends are every global token's secret hash: `acl = "write"`, as Consul asks of
    // a token-replication token.
    resolve(&s, token_of(&headers))?
        .acl_write()
        .map_err(denied)?;
    let after = match q.get("index") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("query parameter `index` = {v:?} is not a number"))
        })?),
    };
    let wait = q
        .get("wait")
        .map(|w| parse_wait(w))
        .transpose()?
        .unwrap_or(WAIT);
    if let Some(after) = after {
        wait_for(&s, wait, |acl| acl.index() != after).await;
    }
    let replica = with_state(&s, AclState::replica)?;
    Ok(indexed(replica.index, replica))
}

/// What the task did last, for [`status`]; kept by each server (only the leader's runs).
#[derive(Debug, Default)]
pub struct Status(Mutex<Seen>);

#[derive(Debug, Default)]
struct Seen {
    running: bool,
    last_success: Option<OffsetDateTime>,
    last_error: Option<(OffsetDateTime, String)>,
}

impl Status {
    fn succeeded(&self) {
        strait_base::sync::lock(&self.0).last_success = Some(OffsetDateTime::now_utc());
    }

    fn failed(&self, why: String) {
        strait_base::sync::lock(&self.0).last_error = Some((OffsetDateTime::now_utc(), why));
    }
}

/// Consul's `ACLReplicationStatus`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StatusBody {
    enabled: bool,
    running: bool,
    source_datacenter: String,
    replication_type: &'static str,
    replicated_index: u64,
    replicated_role_index: u64,
    replicated_token_index: u64,
    /// RFC 3339.
    last_success: String,
    last_error: String,
    last_error_message: String,
}

/// `GET /v1/acl/replication`: whether this DC replicates ACLs from the primary, whether this
/// server runs the task (the leader does), the primary's index of the copy and when the
/// last round succeeded or failed (never: Consul's zero time). Needs no token, as Consul's.
pub async fn status(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Response> {
    if origin != Origin::Local {
        return Err(ApiError::forbidden(
            "the ACL replication status is answered only on a server's loopback API (http_addr)",
        ));
    }
    if !s.cfg.acl.enabled {
        return Err(disabled());
    }
    let index = with_state(&s, AclState::replicated_index)?;
    let seen = strait_base::sync::lock(&s.acl_replication.0);
    // Consul's zero time, 0001-01-01T00:00:00Z, for "never".
    let rfc3339 = |t: Option<OffsetDateTime>| {
        t.and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
    };
    let body = StatusBody {
        enabled: !s.cfg.is_primary(),
        running: seen.running,
        source_datacenter: s.cfg.primary_datacenter.clone(),
        replication_type: "tokens",
        replicated_index: index,
        replicated_role_index: index,
        replicated_token_index: index,
        last_success: rfc3339(seen.last_success),
        last_error: rfc3339(seen.last_error.as_ref().map(|(at, _)| *at)),
        last_error_message: seen
            .last_error
            .as_ref()
            .map(|(_, why)| why.clone())
            .unwrap_or_default(),
    };
    Ok(Json(body).into_response())
}

/// A secondary's write of a global object: sent to the primary with the caller's token, and
/// answered with the primary's answer once this DC has replicated it (the primary's index of
/// the write, its `X-Consul-Index`), or after 10 s: eventually consistent beyond that.
pub async fn to_primary(
    s: &Server,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> ApiResult<Response> {
    let primary = &s.cfg.primary_datacenter;
    let token = token_of(headers);
    let headers: Vec<(&str, &str)> = token.map(|t| ("x-consul-token", t)).into_iter().collect();
    let req = Outgoing {
        method,
        path_and_query: path,
        body: Some(body),
        headers: &headers,
    };
    let resp = forward::send(s, primary, req, Duration::from_secs(15))
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    let written = resp
        .headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let (true, Some(written)) = (resp.status.is_success(), written) {
        let replicated = wait_for(s, Duration::from_secs(10), |acl| {
            acl.replicated_index() >= written
        })
        .await;
        if !replicated {
            tracing::info!(
                primary = %primary,
                primary_index = written,
                "an ACL write forwarded to the primary is not replicated here within 10 s"
            );
        }
    }
    Ok(resp.into_response())
}
