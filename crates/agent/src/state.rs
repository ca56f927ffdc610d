//! The shared state of one agent process.

use crate::config::AgentConfig;
use crate::join::ServerConn;
use crate::local::LocalState;
use crate::servers::{Channel, Servers};
use anyhow::{Context, Result};
use http::Method;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use strait_acl::SecretId;
use strait_proto::MeshViewResponse;
use strait_rpc::mesh::Outgoing;
use strait_rpc::Response;
use strait_snapshot::Snapshot;
use tokio::sync::watch;

/// A service's leaf certificate and key, held by the agent and handed to local proxies.
#[derive(Debug, Clone)]
pub struct LeafEntry {
    pub key_pem: strait_snapshot::Secret,
    pub chain_pem: String,
    pub spiffe_id: String,
    pub serial: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub issued_unix: i64,
    /// The agent's leaf index when this leaf was issued: `X-Consul-Index` and
    /// `CreateIndex`/`ModifyIndex` of the leaf endpoint, which blocks until it grows.
    pub index: u64,
}

impl LeafEntry {
    /// When the agent issues a new leaf in its place: at half life.
    pub fn renew_at_unix(&self) -> i64 {
        self.issued_unix + (self.not_after_unix - self.issued_unix) / 2
    }
}

pub struct Agent {
    pub cfg: AgentConfig,
    pub local: Arc<LocalState>,
    /// `[acl]` and the tokens resolved through the servers (see [`crate::acl`]).
    pub acl: crate::acl::Acl,
    /// This DC's servers: configured and learned from the catalog; every request goes
    /// through [`Servers::request`] (failover, stickiness).
    pub servers: Servers,
    conn: RwLock<Option<Arc<ServerConn>>>,
    /// service name -> leaf
    pub leaves: Mutex<HashMap<String, LeafEntry>>,
    /// proxy id -> its current snapshot
    pub snapshots: Mutex<HashMap<String, Arc<Snapshot>>>,
    /// Bumped whenever `snapshots` changes (wakes blocking snapshot queries).
    pub snapshot_gen: watch::Sender<u64>,
    /// Bumped whenever a leaf is issued (wakes blocking leaf queries); starts from the clock
    /// so leaf indexes keep increasing across agent restarts.
    pub leaf_index: watch::Sender<u64>,
    /// The latest mesh view from the servers (`None` until the first arrives): what the local
    /// proxies are built from, and what `/v1/agent/connect/authorize` decides with.
    pub view: watch::Sender<Option<Arc<MeshViewResponse>>>,
    synced: AtomicBool,
    viewed: AtomicBool,
    /// Background-loop counters, for `/v1/agent/metrics`.
    pub counters: crate::metrics::Counters,
    /// Local API requests by route and status, for `/v1/agent/metrics`.
    pub http_requests: Arc<strait_rpc::metrics::HttpRequests>,
}

impl Agent {
    pub fn new(cfg: AgentConfig, local: Arc<LocalState>) -> Agent {
        Agent {
            servers: Servers::new(cfg.servers.clone()),
            acl: crate::acl::Acl::new(&cfg.acl),
            cfg,
            local,
            conn: RwLock::new(None),
            leaves: Mutex::new(HashMap::new()),
            snapshots: Mutex::new(HashMap::new()),
            snapshot_gen: watch::channel(0).0,
            leaf_index: watch::channel(strait_base::unix_now_millis()).0,
            view: watch::channel(None).0,
            synced: AtomicBool::new(false),
            viewed: AtomicBool::new(false),
            counters: crate::metrics::Counters::default(),
            http_requests: strait_rpc::metrics::HttpRequests::new(),
        }
    }

    pub fn set_conn(&self, conn: ServerConn) {
        *strait_base::sync::write(&self.conn) = Some(Arc::new(conn));
    }

    pub fn conn(&self) -> Option<Arc<ServerConn>> {
        strait_base::sync::read(&self.conn).clone()
    }

    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    pub fn mark_viewed(&self) {
        self.viewed.store(true, Ordering::SeqCst);
    }

    /// Ready: joined, first anti-entropy sync done, first mesh view received.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.conn().is_none() {
            return Err("not joined to a server yet");
        }
        if !self.synced.load(Ordering::SeqCst) {
            return Err("first catalog sync not done yet");
        }
        if !self.viewed.load(Ordering::SeqCst) {
            return Err("no mesh view from the server yet");
        }
        Ok(())
    }

    /// One mTLS request to this DC's servers: the current one, then the others in turn (see
    /// [`Servers::request`]); `timeout` bounds each attempt's exchange. The agent's own
    /// request: it carries no token, and the servers grant it what its certificate allows.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Response> {
        self.send(&[], method, path, body, timeout).await
    }

    /// [`Agent::call`] on behalf of a local caller holding `secret` (`None`: the anonymous
    /// token, sent as Consul's literal `anonymous` so the servers do not take the request
    /// for the agent's own); the token travels as `X-Consul-Token` and the servers check it.
    pub async fn call_as(
        &self,
        secret: Option<&SecretId>,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Response> {
        let token = secret.map_or(crate::acl::ANONYMOUS_SECRET, SecretId::expose);
        let headers = [("x-consul-token", token)];
        self.send(&headers, method, path, body, timeout).await
    }

    async fn send(
        &self,
        headers: &[(&str, &str)],
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Response> {
        let conn = self
            .conn()
            .context("the agent has not joined its servers yet")?;
        let channel = Channel {
            tls: conn.tls.clone(),
            sni: &conn.sni,
        };
        let req = Outgoing {
            method,
            path_and_query: path,
            body,
            headers,
        };
        Ok(self.servers.send(&channel, req, timeout).await?)
    }

    /// Drops every leaf (their CA is gone) and wakes the blocking leaf queries, which then
    /// ask for new ones.
    pub fn forget_leaves(&self) {
        let mut leaves = strait_base::sync::lock(&self.leaves);
        leaves.clear();
        self.leaf_index.send_modify(|i| *i += 1);
    }

    pub fn publish_snapshots(&self) {
        self.snapshot_gen.send_modify(|g| *g += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_leaves_wakes_their_watchers() {
        let cfg = AgentConfig::parse(
            "datacenter = \"dc1\"\nnode_name = \"n1\"\ndata_dir = \"/nonexistent\"\n\
             advertise_addr = \"127.0.0.1\"\nhttp_addr = \"127.0.0.1:8500\"\n\
             servers = [\"127.0.0.1:8300\"]\njoin_token = \"0123456789abcdef0\"\n",
        )
        .unwrap();
        let local = Arc::new(LocalState::new("n1", cfg.advertise_addr, &cfg.data_dir));
        let agent = Agent::new(cfg, local);
        let leaf = LeafEntry {
            key_pem: strait_snapshot::Secret(String::new()),
            chain_pem: String::new(),
            spiffe_id: String::new(),
            serial: "01".into(),
            not_before_unix: 0,
            not_after_unix: 100,
            issued_unix: 0,
            index: *agent.leaf_index.borrow(),
        };
        assert_eq!(leaf.renew_at_unix(), 50);
        strait_base::sync::lock(&agent.leaves).insert("web".into(), leaf);
        let mut watcher = agent.leaf_index.subscribe();
        watcher.borrow_and_update();
        agent.forget_leaves();
        assert!(watcher.has_changed().unwrap());
        assert!(strait_base::sync::lock(&agent.leaves).is_empty());
    }
}
