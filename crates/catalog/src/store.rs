//! The catalog's state in memory, and the one way it changes ([`State::apply`] of an
//! [`Edit`]). It is durable through the server's Raft log and snapshots, not on its own: a
//! node is one record (node + services + checks).

use crate::types::{Check, ConfigEntry, FederationState, Node, Service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A node with everything registered on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    pub node: Node,
    /// Service ID -> service.
    pub services: BTreeMap<String, Service>,
    /// Check ID -> check.
    pub checks: BTreeMap<String, Check>,
}

/// Config entries are keyed by (Kind, Name).
pub(crate) type ConfigKey = (String, String);

/// The whole catalog state, held in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub index: u64,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub config: BTreeMap<ConfigKey, ConfigEntry>,
    pub federation: BTreeMap<String, FederationState>,
}

/// One operation's change: the new value of one item, or `None` to delete it.
pub(crate) enum Edit {
    Node(String, Option<NodeRecord>),
    Config(ConfigKey, Option<ConfigEntry>),
    Federation(String, Option<FederationState>),
}

impl State {
    pub fn apply(&mut self, index: u64, edit: Edit) {
        self.index = index;
        match edit {
            Edit::Node(k, Some(v)) => drop(self.nodes.insert(k, v)),
            Edit::Node(k, None) => drop(self.nodes.remove(&k)),
            Edit::Config(k, Some(v)) => drop(self.config.insert(k, v)),
            Edit::Config(k, None) => drop(self.config.remove(&k)),
            Edit::Federation(k, Some(v)) => drop(self.federation.insert(k, v)),
            Edit::Federation(k, None) => drop(self.federation.remove(&k)),
        }
    }
}
