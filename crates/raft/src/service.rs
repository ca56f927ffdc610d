//! The follower's side of the Raft RPCs: axum routes a server mounts on the listener its peers
//! reach (its mTLS listener), feeding each request into the local [`Raft`].
//!
//! Every request is first checked against the caller's [`Peer`] (on mTLS, the verified SPIFFE
//! ID): the server decides who may take part in its cluster (its own DC's servers only); a
//! refusal is a 403 naming the caller, which the sender treats as unreachable.

use crate::wire::{self, SnapshotHeader};
use crate::{Raft, TypeConfig};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::Snapshot;
use std::sync::Arc;
use strait_rpc::serve::Peer;

/// Decides whether a caller may send Raft RPCs; `Err` says why not.
pub type PeerCheck = Arc<dyn Fn(&Peer) -> Result<(), String> + Send + Sync>;

/// Largest request accepted: a snapshot is one request (the whole state of a DC).
pub const MAX_BODY: usize = 512 * 1024 * 1024;

#[derive(Clone)]
struct Routes {
    raft: Raft,
    check: PeerCheck,
}

/// The routes of [`crate::wire`], for the server to merge into its router.
pub fn router(raft: Raft, check: PeerCheck) -> Router {
    Router::new()
        .route(wire::APPEND_PATH, post(append))
        .route(wire::VOTE_PATH, post(vote))
        .route(wire::SNAPSHOT_PATH, post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Routes { raft, check })
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
    fn admit(&self, peer: &Peer, what: &str) -> Result<(), Refused> {
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
    body: &[u8],
    what: &str,
    call: impl FnOnce(Raft, Req) -> Fut,
) -> Result<Response, Refused>
where
    Req: serde::de::DeserializeOwned,
    Fut: std::future::Future<Output = R>,
    R: serde::Serialize,
{
    s.admit(peer, what)?;
    let req: Req = decode(body, peer, what)?;
    Ok(Json(call(s.raft, req).await).into_response())
}

async fn append(
    State(s): State<Routes>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, Refused> {
    answer(
        s,
        &peer,
        &body,
        "append",
        |raft, req: AppendEntriesRequest<TypeConfig>| async move { raft.append_entries(req).await },
    )
    .await
}

async fn vote(
    State(s): State<Routes>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, Refused> {
    answer(
        s,
        &peer,
        &body,
        "vote",
        |raft, req: VoteRequest<u64>| async move { raft.vote(req).await },
    )
    .await
}

async fn snapshot(
    State(s): State<Routes>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, Refused> {
    s.admit(&peer, "snapshot")?;
    let (SnapshotHeader { vote, meta }, data) =
        wire::decode_snapshot(&body).map_err(|e| bad_request(&peer, "snapshot", &e))?;
    let snapshot = Snapshot {
        meta,
        snapshot: Box::new(data),
    };
    Ok(Json(s.raft.install_full_snapshot(vote, snapshot).await).into_response())
}
