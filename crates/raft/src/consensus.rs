//! A server's handle on its cluster: the openraft instance over the redb store and the HTTP
//! network, typed with the application's commands.

use crate::network::{Factory, Transport};
use crate::service::{self, LeaderContact, PeerCheck};
use crate::store::{self, OpenError};
use crate::{Node, NodeId, Raft, Replicated};
use axum::Router;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, SnapshotPolicy};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// openraft's settings for strait's servers at Consul's `raft_multiplier` = 1: [`config`].
pub fn default_config() -> Config {
    config(1)
}

/// The largest `raft_multiplier` (Consul's limit too).
pub const MAX_RAFT_MULTIPLIER: u32 = 10;

/// openraft's settings for strait's servers; `multiplier` (1..=[`MAX_RAFT_MULTIPLIER`], Consul's
/// `performance.raft_multiplier`) scales every timer, for slow or overloaded machines.
///
/// - At multiplier 1: heartbeats every 150 ms; election timeout 0.3–0.6 s (randomised).
///   openraft adds its leader lease (the maximum election timeout) on top, so a follower stands
///   for election 0.9–1.2 s after the last heartbeat and a vote is refused while the voter
///   heard from a leader within the lease. Measured with three servers on loopback
///   (`bench/raft.sh`): the first write is acknowledged about 1.2 s after the leader is killed
///   -9. Each RPC's deadline is the heartbeat interval.
/// - `snapshot_policy`: a snapshot every 8192 applied entries (Consul's `snapshot_threshold`);
///   the log before it is then purged except the last `max_in_snapshot_log_to_keep` = 1024
///   entries, so a follower a little behind catches up from the log, and only one far behind
///   (or new) is sent the snapshot.
/// - `install_snapshot_timeout`: 30 s for sending a whole snapshot in one request.
pub fn config(multiplier: u32) -> Config {
    let m = u64::from(multiplier.clamp(1, MAX_RAFT_MULTIPLIER));
    Config {
        cluster_name: "strait".into(),
        heartbeat_interval: 150 * m,
        election_timeout_min: 300 * m,
        election_timeout_max: 600 * m,
        install_snapshot_timeout: 30_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(8192),
        max_in_snapshot_log_to_keep: 1024,
        ..Config::default()
    }
}

/// Starting a server's Raft failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid Raft settings: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot start Raft: {0}")]
    Raft(String),
}

/// A write that did not commit (or whose outcome is unknown, for `Stopped` during a write).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Only the leader takes writes: forward to `leader` if one is known.
    #[error("this server is not the Raft leader; {}", leader_text(.leader))]
    NotLeader { leader: Option<(NodeId, Node)> },
    #[error("cannot encode the command: {0}")]
    Encode(serde_json::Error),
    #[error("cannot decode the response to log entry {index}: {error}")]
    Decode {
        index: u64,
        error: serde_json::Error,
    },
    /// Raft stopped (shutdown or a storage failure): the write may or may not have committed.
    #[error("Raft stopped: {0}")]
    Stopped(String),
    #[error("write refused by Raft: {0}")]
    Raft(String),
}

fn leader_text(leader: &Option<(NodeId, Node)>) -> String {
    match leader {
        Some((id, node)) => format!("the leader is {id}: {node}"),
        None => "no leader is known".into(),
    }
}

/// A committed write and the application's answer to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<R> {
    /// The log index the command was committed and applied at.
    pub index: u64,
    pub response: R,
}

/// One server's member of its DC's cluster.
pub struct Consensus<A: Replicated> {
    raft: Raft,
    app: Arc<A>,
    contact: Arc<LeaderContact>,
}

impl<A: Replicated> Consensus<A> {
    /// Opens the Raft file at `path` (restoring `app` from its snapshot) and starts Raft as
    /// node `id`, reaching peers through `transport`. A fresh node does nothing until it is
    /// initialised (`raft().initialize(..)`) or added to a cluster by the leader.
    pub async fn start<T: Transport>(
        id: NodeId,
        path: &Path,
        config: Config,
        app: Arc<A>,
        transport: T,
    ) -> Result<Consensus<A>, StartError> {
        let config = Arc::new(config.validate()?);
        let (log, sm) = store::open(path, app.clone()).await?;
        let raft = openraft::Raft::new(id, config, Factory::new(transport), log, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        Ok(Consensus {
            raft,
            app,
            contact: Arc::new(LeaderContact::new()),
        })
    }

    /// The openraft handle: membership, metrics, `initialize`, `ensure_linearizable`.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The application, to read from (it reflects every applied entry).
    pub fn app(&self) -> &Arc<A> {
        &self.app
    }

    /// The Raft routes for the server's peer listener.
    pub fn router(&self, check: PeerCheck) -> Router {
        let id = self.raft.metrics().borrow().id;
        service::router(id, self.raft.clone(), check, self.contact.clone())
    }

    /// How long ago this server last accepted an append from a leader (since it started, if
    /// never): Consul's `X-Consul-LastContact` on a follower.
    pub fn since_leader_contact(&self) -> Duration {
        self.contact.elapsed()
    }

    /// Appends `command` to the log and answers once it is committed and applied here (on the
    /// leader only: a follower answers [`WriteError::NotLeader`]).
    pub async fn write(&self, command: &A::Command) -> Result<Written<A::Response>, WriteError> {
        let value = serde_json::to_value(command).map_err(WriteError::Encode)?;
        let resp = self.raft.client_write(value).await.map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WriteError::NotLeader {
                leader: f.leader_id.zip(f.leader_node),
            },
            RaftError::APIError(e) => WriteError::Raft(e.to_string()),
            RaftError::Fatal(e) => WriteError::Stopped(e.to_string()),
        })?;
        let index = resp.log_id.index;
        let response = serde_json::from_value(resp.data)
            .map_err(|error| WriteError::Decode { index, error })?;
        Ok(Written { index, response })
    }

    /// Stops Raft (the store is closed once openraft's tasks end).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not shut down cleanly");
        }
    }
}
