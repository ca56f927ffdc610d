//! strait-raft: the consensus under a datacenter's servers (issue 10).
//!
//! Sits beside `strait-server`: the server hands it an application ([`Replicated`]: the
//! catalog, the CA, config entries) and a transport, and gets back a [`Consensus`] that
//! orders every write through a replicated log before the application sees it. The engine is
//! [`openraft`] 0.9; this crate is the glue it needs:
//!
//! - [`store`]: the log, the vote, the committed log id and the current state-machine snapshot,
//!   all in one redb file per server (blocking redb calls run on tokio's blocking pool);
//! - the state machine, which applies committed commands to the application and builds and
//!   installs snapshots of it ([`store::StateMachine`]);
//! - [`network`]: the client side of the Raft RPCs (JSON over HTTP POSTs through strait's one
//!   HTTP client, plain on loopback or mutual TLS between servers), and [`service`]: the axum
//!   routes that feed them into a local [`openraft::Raft`].
//!
//! Reads never go through this crate: the application is shared ([`Consensus::app`]) and
//! answers queries itself, so any view of the state (the full mesh view, a per-agent slice, a
//! KV lookup) is a method of the application, not of the log.
#![forbid(unsafe_code)]

mod app;
mod consensus;
pub mod network;
pub mod service;
pub mod store;
pub mod wire;

pub use app::Replicated;
pub use consensus::{
    config, default_config, Consensus, StartError, WriteError, Written, MAX_RAFT_MULTIPLIER,
};

use serde::{Deserialize, Serialize};

/// A server's id in its datacenter's Raft cluster.
pub type NodeId = u64;

/// A member of the cluster as the log records it: where its Raft routes are served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The server's name (its node name in the catalog), for logs and `list-peers`.
    pub name: String,
    /// `ip:port` of the server's listener serving [`service::router`] (the servers' mTLS
    /// listener in production, a loopback port in tests).
    pub addr: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// The openraft types of strait's servers. Commands and responses travel as JSON values;
    /// [`Consensus`] types them with the application's [`Replicated::Command`] and
    /// [`Replicated::Response`] at the edge, so the log format does not depend on a Rust type.
    pub TypeConfig:
        D = serde_json::Value,
        R = serde_json::Value,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = Vec<u8>,
);

/// The openraft handle of a server.
pub type Raft = openraft::Raft<TypeConfig>;
