//! The follower's side of the Raft RPCs: axum routes a server mounts on the listener its peers
//! reach (its mTLS listener), feeding each request into the local [`Raft`].
//!
//! Every request is first checked against the caller's [`Peer`] (on mTLS, the verified SPIFFE
//! ID): the server decides who may take part in its cluster (its own DC's servers only); a
//! refusal is a 403 naming the caller, which the sender treats as unreachable.

use crate::wire::{self, SnapshotHeader, To};
use crate::{NodeId, Raft, TypeConfig};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use openraft::Snapshot;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_rpc::serve::Peer;

/// Decides whether a caller may send Raft RPCs; `Err` says why not.
pub type PeerCheck = Arc<dyn Fn(&Peer) -> Result<(), String> + Send + Sync>;

/// Largest request accepted: a snapshot is one request (the whole state of a DC).
pub const MAX_BODY: usize = 512 * 1024 * 1024;

/// When this server last heard from a leader: the last append (entries or heartbeat) it
/// accepted, what Consul reports as `X-Consul-LastContact` (openraft's metrics say who leads,
/// not when it was last heard).
#[derive(Debug)]
pub struct LeaderContact {
    started: Instant,
    /// Milliseconds after `started` of the last accepted append; `u64::MAX`: none yet.
    last_ms: AtomicU64,
}

impl LeaderContact {
    pub fn new() -> LeaderContact {
        LeaderContact {
            started: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn heard(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago a leader was last heard; never: how long ago this server started.
    pub fn elapsed(&self) -> Duration {
        match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => self.started.elapsed(),
            ms => self
                .started
                .elapsed()
                .saturating_sub(Duration::from_millis(ms)),
        }
    }
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact::new()
    }
}

#[derive(Clone)]
struct Routes {
    /// This server's node ID: requests for another are refused ([`wire::addressed`]).
    id: NodeId,
    raft: Raft,
    check: PeerCheck,
    contact: Arc<LeaderContact>,
}

/// The routes of [`crate::wire`], for the server to merge into its router; every append this
/// server accepts is recorded in `contact`.
pub fn router(id: NodeId, raft: Raft, check: PeerCheck, contact: Arc<LeaderContact>) -> Router {
    Router::new()
        .route(wire::APPEND_PATH, post(append))
        .route(wire::VOTE_PATH, post(vote))
        .route(wire::SNAPSHOT_PATH, post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Routes {
            id,
            raft,
            check,
            contact,
        })
}

/// A request turned away before it reached Raft: the status and a message naming the caller.
#[derive(Debug)]
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl Routes {
    /// Admits a peer the check accepts, with a request for this node.
    fn admit(&self, peer: &Peer, to: To, what: &str) -> Result<(), Refused> {
        self.allowed(peer, what)?;
        match to.to {
            Some(target) if target != self.id => {
                tracing::warn!(peer = %peer.addr, what, target, id = self.id, "Raft request for another node refused");
                Err(Refused(
                    StatusCode::CONFLICT,
                    format!(
                        "Raft {what} for node {target} reached node {} at this address: the server here lost its data or was replaced, and joins the cluster under its new ID",
                        self.id
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn allowed(&self, peer: &Peer, what: &str) -> Result<(), Refused> {
        (self.check)(peer).map_err(|reason| {
            let who = match &peer.identity {
                Some(id) => format!("{} ({id})", peer.addr),
                None => peer.addr.to_string(),
            };
            tracing::warn!(peer = %who, what, %reason, "Raft request refused");
            Refused(
                StatusCode::FORBIDDEN,
                format!("Raft {what} from {who} refused: {reason}"),
            )
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    body: &[u8],
    peer: &Peer,
    what: &str,
) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| bad_request(peer, what, &e.to_string()))
}

fn bad_request(peer: &Peer, what: &str, error: &str) -> Refused {
    tracing::warn!(peer = %peer.addr, what, error, "bad Raft request");
    Refused(
        StatusCode::BAD_REQUEST,
        format!("bad Raft {what} request from {}: {error}", peer.addr),
    )
}

/// Admits the caller, decodes its `what` request and answers with the local Raft's result.
async fn answer<Req, Fut, R>(
    s: Routes,
    peer: &Peer,
    to: To,
    body: &[u8],
    what: &str,
    call: impl FnOnce(Raft, Req) -> Fut,
) -> Result<Response, Refused>
where
    Req: serde::de::DeserializeOwned,
    Fut: std::future::Future<Output = R>,
    R: serde::Serialize,
{
    s.admit(peer, to, what)?;
    let req: Req = decode(body, peer, what)?;
    Ok(Json(call(s.raft, req).await).into_response())
}

async fn append(
    State(s): State<Routes>,
    Extension(peer): Extension<Peer>,
    Query(to): Query<To>,
    body: Bytes,
) -> Result<Response, Refused> {
    let contact = s.contact.clone();
    answer(
        s,
        &peer,
        to,
        &body,
        "append",
        |raft, req: AppendEntriesRequest<TypeConfig>| async move {
            let resp = raft.append_entries(req).await;
            // Refused for a stale term (`HigherVote`): that sender is no longer the leader.
            if matches!(&resp, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                contact.heard();
            }
            resp
        },
    )
    .await
}

async fn vote(
    State(s): State<Routes>,
    Extension(peer): Extension<Peer>,
    Query(to): Query<To>,
    body: Bytes,
) -> Result<Response, Refused> {
    answer(
        s,
        &peer,
        to,
        &body,
        "vote",
        |raft, req: VoteRequest<u64>| async move { raft.vote(req).await },
    )
    .await
}

async fn snapshot(
    State(s): State<Routes>,
    Extension(peer): Extension<Peer>,
    Query(to): Query<To>,
    body: Bytes,
) -> Result<Response, Refused> {
    s.admit(&peer, to, "snapshot")?;
    let (SnapshotHeader { vote, meta }, data) =
        wire::decode_snapshot(&body).map_err(|e| bad_request(&peer, "snapshot", &e))?;
    let snapshot = Snapshot {
        meta,
        snapshot: Box::new(data),
    };
    Ok(Json(s.raft.install_full_snapshot(vote, snapshot).await).into_response())
}

#[cfg(test)]
mod tests {
    use super::LeaderContact;
    use std::time::Duration;

    #[test]
    fn leader_contact_counts_from_the_last_append_or_the_start() {
        let ten = Duration::from_secs(10);
        let contact = LeaderContact {
            started: std::time::Instant::now() - ten,
            ..LeaderContact::new()
        };
        assert!(
            contact.elapsed() >= ten,
            "never heard: the time since start"
        );
        contact.heard();
        assert!(contact.elapsed() < ten, "{:?}", contact.elapsed());
    }
}
