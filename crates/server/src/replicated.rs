//! What the server replicates through Raft (`strait-raft`): every catalog write is a
//! [`Command`] in the log, applied in log order to the in-memory catalog of every server.
//! Durability is Raft's: the log and the snapshots in `data_dir/raft.redb`.
//!
//! This slice runs one server per datacenter through the log (a single-voter cluster it
//! initialises itself); the CA still lives in files under `data_dir`. Several servers,
//! forwarding to the leader, the CA in the state machine and the operator endpoints come next
//! (issue 10).

use crate::ca::CaFiles;
use crate::state::Server;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strait_catalog::{Catalog, CatalogError, Check, ConfigEntry, FederationState, Node, Service};
use strait_raft::network::{MutualTls, Transport};
use strait_raft::{Consensus, NodeId, Replicated};
use strait_rpc::{Response, RpcError};

/// A catalog write, as the Raft log records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Command {
    /// Anti-entropy: the node's complete services and checks.
    SyncNode {
        node: Node,
        services: Vec<Service>,
        checks: Vec<Check>,
    },
    SetConfigEntry(ConfigEntry),
    DeleteConfigEntry {
        kind: String,
        name: String,
    },
    SetFederationState(FederationState),
    /// Replaces the whole catalog with a [`Catalog::snapshot`] image (`strait snapshot
    /// restore`); validated before it is proposed, so every server accepts it alike.
    Restore(String),
    /// The DC's CA (first one wins; the same again is accepted).
    SetCa(CaFiles),
}

/// What applying a command answered: the catalog index after it, or why the catalog refused
/// it (the same refusal on every server: commands are validated deterministically).
pub type Outcome = Result<u64, String>;

/// The replicated application: the catalog and the DC's CA.
pub struct CatalogApp {
    pub catalog: Arc<Catalog>,
    /// The DC's CA files once set; servers watch it to install them.
    pub ca: tokio::sync::watch::Sender<Option<CaFiles>>,
}

impl CatalogApp {
    pub fn new(catalog: Arc<Catalog>) -> CatalogApp {
        CatalogApp {
            catalog,
            ca: tokio::sync::watch::channel(None).0,
        }
    }

    fn set_ca(&self, files: CaFiles) -> Outcome {
        let mut outcome = Ok(self.catalog.index());
        self.ca.send_if_modified(|current| match current {
            Some(set) if *set != files => {
                outcome = Err(format!(
                    "the CA of this DC is already set (trust domain {})",
                    set.trust_domain
                ));
                false
            }
            Some(_) => false,
            None => {
                *current = Some(files);
                true
            }
        });
        outcome
    }
}

/// A snapshot of the server's state: the catalog image and the CA.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    catalog: String,
    ca: Option<CaFiles>,
}

impl Replicated for CatalogApp {
    type Command = Command;
    type Response = Outcome;

    fn apply(&self, _index: u64, command: Command) -> Outcome {
        let catalog = &self.catalog;
        let applied = match command {
            Command::SyncNode {
                node,
                services,
                checks,
            } => catalog
                .sync_node(node, services, checks)
                .map(|_| catalog.index()),
            Command::SetConfigEntry(entry) => catalog.set_config_entry(entry),
            Command::DeleteConfigEntry { kind, name } => catalog.delete_config_entry(&kind, &name),
            Command::SetFederationState(state) => catalog.set_federation_state(state),
            Command::Restore(image) => catalog.restore(image.as_bytes()).map(|()| catalog.index()),
            Command::SetCa(files) => return self.set_ca(files),
        };
        applied.map_err(|e| e.to_string())
    }

    fn snapshot(&self) -> Vec<u8> {
        let image = Image {
            catalog: String::from_utf8(self.catalog.snapshot()).unwrap_or_default(),
            ca: self.ca.borrow().clone(),
        };
        serde_json::to_vec(&image).unwrap_or_default()
    }

    fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let image: Image = serde_json::from_slice(snapshot)
            .map_err(|e| format!("invalid server snapshot: {e}"))?;
        self.catalog
            .restore(image.catalog.as_bytes())
            .map_err(|e: CatalogError| e.to_string())?;
        self.ca.send_replace(image.ca);
        Ok(())
    }
}

/// A write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteFailure {
    /// The catalog refused the command (invalid input): the caller's fault.
    #[error("{0}")]
    Refused(String),
    /// Raft could not commit it (no leader, stopped): try again.
    #[error("the write was not committed: {0}")]
    Unavailable(String),
}

/// How this server's Raft reaches the other servers of its DC: mutual TLS with its own
/// certificate, accepting only the DC's servers. Empty until the certificate is issued
/// (a single server never needs it).
#[derive(Clone, Default)]
pub struct Peers(Arc<std::sync::RwLock<Option<MutualTls>>>);

impl Peers {
    pub fn set(&self, tls: MutualTls) {
        *strait_base::sync::write(&self.0) = Some(tls);
    }
}

impl Transport for Peers {
    async fn post(
        &self,
        node: &strait_raft::Node,
        path: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let tls = strait_base::sync::read(&self.0).clone();
        match tls {
            Some(tls) => tls.post(node, path, body, timeout).await,
            None => Err(RpcError::BadUrl {
                url: node.addr.clone(),
                reason: "this server has no certificate yet for Raft RPCs".into(),
            }),
        }
    }
}

/// Who may call the Raft routes: the servers of this DC (their mTLS identity), nobody else.
pub fn peer_check(datacenter: &str) -> strait_raft::service::PeerCheck {
    let dc = datacenter.to_owned();
    Arc::new(move |peer: &strait_rpc::serve::Peer| match &peer.identity {
        Some(strait_identity::spiffe::SpiffeId::Server { datacenter, .. }) if *datacenter == dc => {
            Ok(())
        }
        Some(other) => Err(format!("{other} is not a server of datacenter {dc}")),
        None => Err(format!("{} presented no certificate", peer.addr)),
    })
}

/// This server's Raft node ID: random at first start, kept in `data_dir/node-id` (0600 not
/// needed: it is no secret).
pub fn node_id(data_dir: &Path) -> anyhow::Result<NodeId> {
    use anyhow::Context;
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{}: not a node ID", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id: NodeId = rand::random::<u64>().max(1);
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Starts Raft over `data_dir/raft.redb` (restoring the catalog from its snapshot and log);
/// [`crate::cluster::form`] then makes the server a member.
pub async fn start(
    server: &Server,
    catalog: Arc<Catalog>,
    peers: Peers,
) -> anyhow::Result<(Consensus<CatalogApp>, NodeId)> {
    use anyhow::Context;
    let cfg = &server.cfg;
    let id = node_id(&cfg.data_dir)?;
    let consensus = Consensus::start(
        id,
        &cfg.data_dir.join("raft.redb"),
        strait_raft::default_config(),
        Arc::new(CatalogApp::new(catalog)),
        peers,
    )
    .await
    .context("cannot start Raft")?;
    Ok((consensus, id))
}
