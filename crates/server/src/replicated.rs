//! What the server replicates through Raft (`strait-raft`): every catalog write is a
//! [`Command`] in the log, applied in log order to the in-memory catalog of every server.
//! Durability is Raft's: the log and the snapshots in `data_dir/raft.redb`.
//!
//! What is replicated: the catalog (nodes, services, checks, config entries, federation
//! states) and the DC's CA files ([`Command::SetCa`]; each server writes them to
//! `data_dir/ca`, keys 0600). How servers become one cluster and how followers forward writes
//! is in [`crate::cluster`].

use crate::ca::CaFiles;
use crate::state::Server;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use strait_acl::{AclCommand, AclState};
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
    /// Consul's check-and-set (`?cas=`, and the intentions API's read-modify-write): applied
    /// only if the entry's `ModifyIndex` is `cas` (0: it must not exist); else the outcome is
    /// [`CAS_LOST`] on every server.
    SetConfigEntryCas {
        entry: ConfigEntry,
        cas: u64,
    },
    DeleteConfigEntryCas {
        kind: String,
        name: String,
        cas: u64,
    },
    SetFederationState(FederationState),
    /// Replaces the whole catalog with a [`Catalog::snapshot`] image (`strait snapshot
    /// restore`); validated before it is proposed, so every server accepts it alike.
    Restore(String),
    /// The DC's CA (first one wins; the same again is accepted).
    SetCa(CaFiles),
    /// Replaces the whole state with a server image (`strait snapshot restore`): the catalog,
    /// and the CA when the image carries one (a restore into a fresh cluster brings the
    /// original CA back). Validated before it is proposed, as [`Command::Restore`].
    RestoreAll(Image),
    /// A change to the ACL state (tokens, policies, roles): prepared with its IDs, secret
    /// hash and times before it is proposed, so every server applies it alike.
    Acl(AclCommand),
    /// Node liveness (Consul's `serfHealth`): the leader found that `node`'s agent has not
    /// synced for a while ([`crate::liveness`]); its node check `serfHealth` turns critical,
    /// so none of its services is used, until the agent's next sync replaces its checks.
    NodeUnreachable {
        node: String,
        output: String,
    },
}

/// What applying a command answered: the catalog index after it, or why the catalog refused
/// it (the same refusal on every server: commands are validated deterministically).
pub type Outcome = Result<u64, String>;

/// The outcome of a check-and-set command whose index was not the entry's: Consul answers
/// `false`, not an error.
pub const CAS_LOST: &str = "check-and-set index is not the entry's ModifyIndex";

/// The replicated application: the catalog, the DC's CA and the ACL state.
pub struct CatalogApp {
    pub catalog: Arc<Catalog>,
    /// The DC's CA files once set; servers watch it to install them.
    pub ca: tokio::sync::watch::Sender<Option<CaFiles>>,
    /// Tokens, policies and roles ([`crate::acl`] reads them).
    pub acl: RwLock<AclState>,
    /// When each agent's sync was last applied here (not replicated state: every server
    /// applies the same syncs at about the same time), for node liveness.
    pub synced: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl CatalogApp {
    pub fn new(catalog: Arc<Catalog>) -> CatalogApp {
        CatalogApp {
            catalog,
            ca: tokio::sync::watch::channel(None).0,
            acl: RwLock::default(),
            synced: Default::default(),
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

    /// Applies [`Command::RestoreAll`]: unlike [`Command::SetCa`], the image's CA replaces the
    /// one set (an image without a CA leaves it alone); so does its ACL state (an image from
    /// before ACLs leaves the cluster's alone).
    fn restore_all(&self, image: Image) -> Outcome {
        self.catalog
            .restore(image.catalog.as_bytes())
            .map_err(|e| e.to_string())?;
        if let Some(acl) = image.acl {
            *strait_base::sync::write(&self.acl) = acl;
        }
        if let Some(files) = image.ca {
            self.ca.send_if_modified(|current| {
                let changed = current.as_ref() != Some(&files);
                if changed {
                    *current = Some(files);
                }
                changed
            });
        }
        Ok(self.catalog.index())
    }
}

/// A snapshot of the server's state: the catalog image, the CA (with its key) and the ACL
/// state (secrets as hashes only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// [`Catalog::snapshot`]'s JSON.
    pub catalog: String,
    pub ca: Option<CaFiles>,
    /// Absent in snapshots taken before ACLs existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<AclState>,
}

impl Replicated for CatalogApp {
    type Command = Command;
    type Response = Outcome;

    fn apply(&self, index: u64, command: Command) -> Outcome {
        let catalog = &self.catalog;
        let applied = match command {
            Command::SyncNode {
                node,
                services,
                checks,
            } => {
                strait_base::sync::lock(&self.synced)
                    .insert(node.node.clone(), std::time::Instant::now());
                catalog
                    .sync_node(node, services, checks)
                    .map(|_| catalog.index())
            }
            Command::NodeUnreachable { node, output } => {
                crate::liveness::mark_unreachable(catalog, &node, output)
            }
            Command::SetConfigEntry(entry) => catalog.set_config_entry(entry),
            Command::DeleteConfigEntry { kind, name } => catalog.delete_config_entry(&kind, &name),
            Command::SetConfigEntryCas { entry, cas } => {
                catalog.set_config_entry_cas(entry, Some(cas))
            }
            Command::DeleteConfigEntryCas { kind, name, cas } => {
                catalog.delete_config_entry_cas(&kind, &name, Some(cas))
            }
            Command::SetFederationState(state) => catalog.set_federation_state(state),
            Command::Restore(image) => catalog.restore(image.as_bytes()).map(|()| catalog.index()),
            Command::SetCa(files) => return self.set_ca(files),
            Command::RestoreAll(image) => return self.restore_all(image),
            // ACL answers carry the log index (their `CreateIndex`/`ModifyIndex`).
            Command::Acl(command) => {
                return strait_base::sync::write(&self.acl)
                    .apply(index, command)
                    .map(|()| index)
                    .map_err(|e| e.to_string())
            }
        };
        applied.map_err(|e| match e {
            strait_catalog::CatalogError::CasMismatch { .. } => CAS_LOST.to_string(),
            e => e.to_string(),
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        let image = Image {
            catalog: String::from_utf8(self.catalog.snapshot()).unwrap_or_default(),
            ca: self.ca.borrow().clone(),
            acl: Some(strait_base::sync::read(&self.acl).clone()),
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
        *strait_base::sync::write(&self.acl) = image.acl.unwrap_or_default();
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
/// (a single server never needs it). Every answer a peer gives is recorded in [`Contacts`].
#[derive(Clone, Default)]
pub struct Peers {
    tls: Arc<std::sync::RwLock<Option<MutualTls>>>,
    contacts: Arc<Contacts>,
}

impl Peers {
    pub fn set(&self, tls: MutualTls) {
        *strait_base::sync::write(&self.tls) = Some(tls);
    }

    /// When each peer last answered.
    pub fn contacts(&self) -> Arc<Contacts> {
        self.contacts.clone()
    }
}

impl Transport for Peers {
    async fn post(
        &self,
        node: &strait_raft::Node,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let tls = strait_base::sync::read(&self.tls).clone();
        let resp = match tls {
            Some(tls) => tls.post(node, path, body, timeout).await,
            None => Err(RpcError::BadUrl {
                url: node.addr.clone(),
                reason: "this server has no certificate yet for Raft RPCs".into(),
            }),
        };
        if matches!(&resp, Ok(r) if r.status.is_success()) {
            self.contacts.heard(&node.addr);
        }
        resp
    }
}

/// When each peer (by Raft address) last answered one of this server's Raft RPCs: on the
/// leader, when it last heard from each follower (heartbeats every 150 ms), for the read lease
/// ([`crate::api`]'s consistency modes) and for removing dead servers ([`crate::autopilot`]).
#[derive(Debug, Default)]
pub struct Contacts(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl Contacts {
    fn heard(&self, addr: &str) {
        let now = std::time::Instant::now();
        strait_base::sync::lock(&self.0).insert(addr.to_owned(), now);
    }

    /// How long ago `addr` last answered; `None`: never, since this server started.
    pub fn since(&self, addr: &str) -> Option<Duration> {
        strait_base::sync::lock(&self.0)
            .get(addr)
            .map(std::time::Instant::elapsed)
    }
}

/// Who may call the Raft routes: the servers of this DC (their mTLS identity), nobody else.
pub fn peer_check(datacenter: &str) -> strait_raft::service::PeerCheck {
    let dc = datacenter.to_owned();
    Arc::new(move |peer: &strait_rpc::serve::Peer| match &peer.identity {
        Some(id) if crate::api::is_server_of(id, &dc) => Ok(()),
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
    let _ = server.contacts.set(peers.contacts());
    let consensus = Consensus::start(
        id,
        &cfg.data_dir.join("raft.redb"),
        strait_raft::config(cfg.raft_multiplier),
        Arc::new(CatalogApp::new(catalog)),
        peers,
    )
    .await
    .context("cannot start Raft")?;
    Ok((consensus, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(td: &str) -> CaFiles {
        CaFiles {
            trust_domain: td.into(),
            root_pem: format!("root of {td}"),
            root_key_pem: Some(format!("key of {td}")),
            intermediate_pem: None,
            intermediate_key_pem: None,
        }
    }

    fn app_with(entry: &str, td: &str) -> CatalogApp {
        let app = CatalogApp::new(Arc::new(Catalog::replicated()));
        let entry: ConfigEntry = serde_json::from_str(&format!(
            r#"{{"Kind":"service-defaults","Name":"{entry}"}}"#
        ))
        .unwrap();
        app.apply(1, Command::SetConfigEntry(entry)).unwrap();
        app.apply(2, Command::SetCa(ca(td))).unwrap();
        app
    }

    fn names(app: &CatalogApp) -> Vec<String> {
        app.catalog
            .config_entries()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    /// A restore brings back the image's catalog and its CA, where `SetCa` would have refused
    /// a second CA; the image is the one `snapshot` makes.
    #[test]
    fn restore_all_replaces_the_catalog_and_the_ca() {
        let saved = app_with("web", "old.strait");
        let image: Image = serde_json::from_slice(&saved.snapshot()).unwrap();
        let fresh = app_with("api", "new.strait");
        assert!(fresh.apply(3, Command::SetCa(ca("old.strait"))).is_err());
        fresh.apply(4, Command::RestoreAll(image)).unwrap();
        assert_eq!(names(&fresh), ["web"]);
        assert_eq!(*fresh.ca.borrow(), Some(ca("old.strait")));
    }

    /// ACL commands apply in the log, travel in the snapshot image, and an image from before
    /// ACLs (no `acl` field) still loads, leaving the cluster's ACLs alone on a restore.
    #[test]
    fn acl_state_is_replicated_and_snapshotted() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let app = app_with("web", "td.strait");
        let (bootstrap, secret) = strait_acl::prepare_bootstrap(None, now);
        assert_eq!(app.apply(3, Command::Acl(bootstrap.clone())), Ok(3));
        let again = app.apply(4, Command::Acl(bootstrap)).unwrap_err();
        assert!(again.contains("ACL bootstrap no longer allowed"), "{again}");
        let ctx = strait_acl::Context {
            datacenter: "dc1",
            default_policy: strait_acl::DefaultPolicy::Deny,
        };
        let resolves = |app: &CatalogApp| {
            strait_base::sync::read(&app.acl)
                .resolve(Some(secret.expose()), now, &ctx)
                .is_ok_and(|a| a.is_management())
        };
        assert!(resolves(&app));

        let copy = CatalogApp::new(Arc::new(Catalog::replicated()));
        copy.restore(&app.snapshot()).unwrap();
        assert!(resolves(&copy));

        let mut old: serde_json::Value = serde_json::from_slice(&app.snapshot()).unwrap();
        old.as_object_mut().unwrap().remove("acl");
        let old: Image = serde_json::from_value(old).unwrap();
        assert!(old.acl.is_none());
        app.apply(5, Command::RestoreAll(old)).unwrap();
        assert!(resolves(&app), "an image without ACLs keeps the cluster's");
    }

    #[test]
    fn an_image_without_a_ca_keeps_the_cluster_one() {
        let fresh = app_with("api", "new.strait");
        let image = Image {
            catalog: String::from_utf8(Catalog::replicated().snapshot()).unwrap(),
            ca: None,
            acl: None,
        };
        fresh.apply(3, Command::RestoreAll(image)).unwrap();
        assert!(names(&fresh).is_empty());
        assert_eq!(*fresh.ca.borrow(), Some(ca("new.strait")));
    }
}
