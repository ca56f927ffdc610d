//! The leader's side of the Raft RPCs: `append`, `vote` and `snapshot` POSTs to another
//! server's [`crate::service`] routes, through strait's one HTTP client.
//!
//! The [`Transport`] is the server's to choose: [`MutualTls`] between servers (the server
//! supplies its rustls client config, which presents its identity and accepts only its DC's
//! servers), [`PlainHttp`] on loopback (tests). Failures reach openraft as it expects them:
//! a peer that cannot be reached or refuses us is [`Unreachable`] (the leader backs off before
//! trying again), a broken or timed-out exchange is a [`NetworkError`] (retried at once), and
//! an error of the remote Raft is a [`RemoteError`].

use crate::wire::{self, SnapshotHeader};
use crate::{Node, NodeId, TypeConfig};
use http::Method;
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Snapshot, Vote};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strait_rpc::{Response, RpcError};

/// How a POST reaches another server.
pub trait Transport: Clone + Send + Sync + 'static {
    /// POSTs `body` (JSON, or a [`wire::encode_snapshot`] frame) to `path` (with its query)
    /// on `node` within `timeout`; any HTTP status is an answer.
    fn post(
        &self,
        node: &Node,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Response, RpcError>> + Send;
}

/// Plain HTTP: servers on loopback (tests, a single-host lab).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainHttp;

impl Transport for PlainHttp {
    async fn post(
        &self,
        node: &Node,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        strait_rpc::http::Client::new(socket_addr(node)?, timeout)
            .request(Method::POST, path, Some(body))
            .await
    }
}

/// Mutual TLS between the servers of one datacenter.
#[derive(Debug, Clone)]
pub struct MutualTls {
    /// The server's client config (from `strait-identity`): its certificate, and a verifier
    /// that accepts only the DC's servers.
    pub tls: Arc<rustls::ClientConfig>,
    /// The SNI the servers answer to (`server.<dc>.<trust domain>`, from `strait-names`).
    pub sni: String,
}

impl Transport for MutualTls {
    async fn post(
        &self,
        node: &Node,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let addr = socket_addr(node)?;
        strait_rpc::mesh::request(
            self.tls.clone(),
            addr,
            &self.sni,
            Method::POST,
            path,
            Some(body),
            timeout,
        )
        .await
    }
}

fn socket_addr(node: &Node) -> Result<SocketAddr, RpcError> {
    node.addr.parse().map_err(|_| RpcError::BadUrl {
        url: node.addr.clone(),
        reason: format!("the Raft address of {} is not an ip:port", node.name),
    })
}

/// Builds a [`Network`] per peer for openraft.
#[derive(Debug, Clone)]
pub struct Factory<T> {
    transport: T,
}

impl<T: Transport> Factory<T> {
    pub fn new(transport: T) -> Factory<T> {
        Factory { transport }
    }
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for Factory<T> {
    type Network = Network<T>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Network<T> {
        Network {
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// The RPCs to one peer.
#[derive(Debug, Clone)]
pub struct Network<T> {
    target: NodeId,
    node: Node,
    transport: T,
}

/// Why an exchange did not produce the remote Raft's answer.
#[derive(Debug)]
pub enum Failure {
    /// Back off: nothing listens, the handshake or the peer check failed, no such route.
    Unreachable(Unreachable),
    /// Retry: the exchange broke or timed out, or the answer was garbled.
    Network(NetworkError),
}

impl Failure {
    /// Classifies a transport error.
    pub fn of(error: &RpcError) -> Failure {
        match error {
            RpcError::Connect { .. }
            | RpcError::Resolve { .. }
            | RpcError::Handshake { .. }
            | RpcError::BadSni { .. }
            | RpcError::BadUrl { .. }
            | RpcError::NoAddress { .. }
            | RpcError::AllFailed { .. } => Failure::Unreachable(Unreachable::new(error)),
            // Refused (403: the peer check), the routes are not mounted (404), or another
            // Raft node answers at that address now (409, [`wire::addressed`]): asking again at
            // once would get the same answer.
            RpcError::Status {
                status: 403 | 404 | 409,
                ..
            } => Failure::Unreachable(Unreachable::new(error)),
            RpcError::Status { .. }
            | RpcError::Timeout { .. }
            | RpcError::Closed { .. }
            | RpcError::Http { .. }
            | RpcError::Decode { .. } => Failure::Network(NetworkError::new(error)),
        }
    }

    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, Node, E> {
        match self {
            Failure::Unreachable(e) => RPCError::Unreachable(e),
            Failure::Network(e) => RPCError::Network(e),
        }
    }

    fn into_streaming(self) -> StreamingError<TypeConfig, Fatal<NodeId>> {
        match self {
            Failure::Unreachable(e) => StreamingError::Unreachable(e),
            Failure::Network(e) => StreamingError::Network(e),
        }
    }
}

impl<T: Transport> Network<T> {
    /// POSTs `body` to the peer's `path`, addressed to the node it should be
    /// ([`wire::addressed`]), and decodes the remote Raft's `Result`.
    async fn call<R, E>(
        &self,
        path: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Result<R, E>, Failure>
    where
        R: DeserializeOwned,
        E: DeserializeOwned,
    {
        let resp = self
            .transport
            .post(
                &self.node,
                &wire::addressed(path, self.target),
                body,
                timeout,
            )
            .await
            .map_err(|e| Failure::of(&e))?;
        resp.json().map_err(|e| Failure::of(&e))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RemoteError<NodeId, Node, E> {
        RemoteError::new_with_node(self.target, self.node.clone(), e)
    }

    async fn rpc<Req, R>(
        &self,
        path: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<R, RPCError<NodeId, Node, RaftError<NodeId>>>
    where
        Req: serde::Serialize,
        R: DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        match self
            .call::<R, RaftError<NodeId>>(path, body, option.hard_ttl())
            .await
        {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            Err(f) => Err(f.into_rpc()),
        }
    }
}

impl<T: Transport> RaftNetwork<TypeConfig> for Network<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.rpc(wire::APPEND_PATH, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.rpc(wire::VOTE_PATH, &rpc, &option).await
    }

    /// The whole snapshot in one request, abandoned if openraft closes the replication.
    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta,
        };
        let body = wire::encode_snapshot(&header, &snapshot.snapshot);
        let send = self.call::<SnapshotResponse<NodeId>, Fatal<NodeId>>(
            wire::SNAPSHOT_PATH,
            body,
            option.hard_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(closed.into()),
            res = send => match res {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(fatal)) => Err(self.remote(fatal).into()),
                Err(f) => Err(f.into_streaming()),
            },
        }
    }
}
