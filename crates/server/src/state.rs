//! The shared state of one server process.

use crate::ca::CaState;
use crate::config::ServerConfig;
use crate::replicated::{Command, WriteFailure};
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use strait_catalog::{Catalog, Node, Service};
use strait_identity::spiffe::SpiffeId;
use strait_identity::tls::{self, Expect, Identity, Roots};
use strait_proto::Member;

/// A CA a snapshot restore replaced: servers still trust it between them until `until`, so
/// those that apply the restore a moment later (or present the old certificate meanwhile)
/// keep talking.
#[derive(Debug, Clone)]
pub struct Replaced {
    pub trust_domain: String,
    pub roots_pem: Vec<String>,
    pub until: Instant,
}

pub struct Server {
    pub cfg: ServerConfig,
    /// The fields of `cfg` a SIGHUP reload may change; read these from here, not from `cfg`.
    pub live: crate::reload::LiveConfig,
    /// Read directly (in memory); written through [`Server::write`] only, which goes
    /// through the Raft log.
    pub catalog: Arc<Catalog>,
    /// Raft, once started ([`crate::replicated::start`]).
    pub consensus: OnceLock<strait_raft::Consensus<crate::replicated::CatalogApp>>,
    /// When each other server last answered this one's Raft RPCs (set with Raft).
    pub contacts: OnceLock<Arc<crate::replicated::Contacts>>,
    /// Joining servers, for the `raft-membership` task ([`crate::cluster`]).
    pub membership:
        OnceLock<tokio::sync::mpsc::UnboundedSender<(strait_raft::NodeId, strait_raft::Node)>>,
    /// The federation's trust domain, known from this server's first certificate (replaced
    /// with the CA by a snapshot restore).
    trust_domain: RwLock<Option<String>>,
    ca: RwLock<Option<Arc<CaState>>>,
    /// The CA a snapshot restore replaced, still trusted between servers for a while
    /// ([`crate::identity`]).
    replaced: RwLock<Option<Replaced>>,
    /// Our certificate and the roots, for server -> server calls; replaced on renewal.
    client_identity: RwLock<Option<Arc<(Identity, Roots)>>>,
    ready: AtomicBool,
    /// Why the server is not ready yet, for `/v1/status/ready`.
    pub waiting_for: Mutex<String>,
    /// API requests by route and status, for `/v1/agent/metrics` (both listeners).
    pub http_requests: Arc<strait_rpc::metrics::HttpRequests>,
    /// What ACL replication did last, for `/v1/acl/replication`.
    pub acl_replication: crate::acl_replication::Status,
}

impl Server {
    pub fn new(cfg: ServerConfig, catalog: Catalog) -> Server {
        Server {
            live: crate::reload::LiveConfig::new(&cfg),
            cfg,
            catalog: Arc::new(catalog),
            consensus: OnceLock::new(),
            contacts: OnceLock::new(),
            membership: OnceLock::new(),
            trust_domain: RwLock::new(None),
            ca: RwLock::new(None),
            replaced: RwLock::new(None),
            client_identity: RwLock::new(None),
            ready: AtomicBool::new(false),
            waiting_for: Mutex::new("starting".into()),
            http_requests: strait_rpc::metrics::HttpRequests::new(),
            acl_replication: Default::default(),
        }
    }

    /// Commits a catalog write through the Raft log and answers once it is applied here:
    /// the catalog index after it.
    /// On a follower the command is forwarded to the leader.
    pub async fn write(&self, command: Command) -> Result<u64, WriteFailure> {
        let consensus = self
            .consensus
            .get()
            .ok_or_else(|| WriteFailure::Unavailable("Raft is not started yet".into()))?;
        let outcome = match consensus.write(&command).await {
            Ok(written) => written.response,
            Err(strait_raft::WriteError::NotLeader {
                leader: Some((_, leader)),
            }) => crate::cluster::forward(self, &leader, &command)
                .await
                .map_err(|e| WriteFailure::Unavailable(format!("{e:#}")))?,
            Err(e) => return Err(WriteFailure::Unavailable(e.to_string())),
        };
        outcome.map_err(WriteFailure::Refused)
    }

    /// This server's consensus and its Raft metrics, if it is the leader: what the leader's
    /// own tasks (node liveness, autopilot, ACL bootstrap) act on. `None` on a follower or
    /// before Raft has started.
    pub fn leading(
        &self,
    ) -> Option<(
        &strait_raft::Consensus<crate::replicated::CatalogApp>,
        openraft::RaftMetrics<strait_raft::NodeId, strait_raft::Node>,
    )> {
        let consensus = self.consensus.get()?;
        let metrics = consensus.raft().metrics().borrow().clone();
        (metrics.current_leader == Some(metrics.id)).then_some((consensus, metrics))
    }

    /// The leader's read lease and the shortest silence before an election: the minimum
    /// election timeout of this server's Raft settings.
    pub fn raft_lease(&self) -> Duration {
        self.consensus.get().map_or(Duration::ZERO, |c| {
            Duration::from_millis(c.raft().config().election_timeout_min)
        })
    }

    /// The trust domain, once this server has a certificate.
    pub fn trust_domain(&self) -> Option<String> {
        strait_base::sync::read(&self.trust_domain).clone()
    }

    /// Installs the CA (again, when a snapshot restore replaced it).
    pub fn set_ca(&self, ca: CaState) {
        *strait_base::sync::write(&self.ca) = Some(Arc::new(ca));
    }

    /// The CA; only called once it is up (after `set_ca`).
    pub fn ca(&self) -> Arc<CaState> {
        self.ca_opt()
            .expect("CA is brought up before the API needs it")
    }

    pub fn ca_opt(&self) -> Option<Arc<CaState>> {
        strait_base::sync::read(&self.ca).clone()
    }

    /// The CA a restore replaced, while it is still trusted between servers.
    pub fn replaced(&self) -> Option<Replaced> {
        strait_base::sync::read(&self.replaced)
            .clone()
            .filter(|r| r.until > Instant::now())
    }

    pub fn set_replaced(&self, replaced: Option<Replaced>) {
        *strait_base::sync::write(&self.replaced) = replaced;
    }

    /// The roots this server trusts: its CA's, and the replaced CA's while it is trusted.
    pub fn trusted_roots(&self) -> Vec<String> {
        let mut roots = self.ca().roots_pem.clone();
        if let Some(old) = self.replaced() {
            roots.extend(old.roots_pem);
        }
        roots
    }

    /// The certificate this server presents to other servers, and the roots it trusts.
    pub fn client_identity(&self) -> Option<Arc<(Identity, Roots)>> {
        strait_base::sync::read(&self.client_identity).clone()
    }

    pub fn set_client_identity(&self, trust_domain: &str, identity: Identity, roots: Roots) {
        *strait_base::sync::write(&self.trust_domain) = Some(trust_domain.to_owned());
        *strait_base::sync::write(&self.client_identity) = Some(Arc::new((identity, roots)));
    }

    /// A TLS client config that presents our certificate and accepts only the servers of
    /// `dc` (the SPIFFE ID `spiffe://<td>/server/dc/<dc>`; while a CA a restore replaced is
    /// still trusted, its trust domain's too).
    pub fn client_tls_for(&self, dc: &str) -> Result<Arc<rustls::ClientConfig>> {
        let pair = self
            .client_identity()
            .ok_or_else(|| anyhow::anyhow!("the server certificate is not issued yet"))?;
        let td = self
            .trust_domain()
            .ok_or_else(|| anyhow::anyhow!("the server certificate is not issued yet"))?;
        let mut ids = vec![SpiffeId::server(&td, dc)];
        if let Some(old) = self.replaced().filter(|old| old.trust_domain != td) {
            ids.push(SpiffeId::server(&old.trust_domain, dc));
        }
        let expect = match ids.len() {
            1 => Expect::Exact(ids.remove(0)),
            _ => Expect::AnyOf(ids),
        };
        Ok(tls::client_config(Some(&pair.0), &pair.1, expect)?)
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn set_waiting_for(&self, why: impl Into<String>) {
        *strait_base::sync::lock(&self.waiting_for) = why.into();
    }

    /// Registers this server in its own catalog (node + `strait-server` service), so gateways
    /// learn where to send `server.<dc>.<td>`.
    pub async fn register_self(&self) -> Result<()> {
        let cfg = &self.cfg;
        let node = Node {
            node: cfg.node_name.clone(),
            address: cfg.https_addr.ip().to_string(),
            datacenter: cfg.datacenter.clone(),
            meta: [("strait-role".to_string(), "server".to_string())].into(),
            ..Default::default()
        };
        let service = Service {
            id: "strait-server".into(),
            service: "strait-server".into(),
            kind: "strait-server".into(),
            address: cfg.https_addr.ip().to_string(),
            port: cfg.https_addr.port(),
            ..Default::default()
        };
        self.write(Command::SyncNode {
            node,
            services: vec![service],
            checks: vec![],
        })
        .await?;
        Ok(())
    }

    /// Another server's liveness, as far as this one knows from Raft: the leader knows when
    /// each answered it last; a follower knows its leader is alive while it hears from it.
    fn server_status(&self, node: &str) -> &'static str {
        let (Some(consensus), Some(contacts)) = (self.consensus.get(), self.contacts.get()) else {
            return "unknown";
        };
        let metrics = consensus.raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let Some((id, raft_node)) = membership.nodes().find(|(_, n)| n.name == node) else {
            return "unknown";
        };
        let fresh = |d: Duration| d < crate::liveness::NODE_TIMEOUT;
        if metrics.current_leader == Some(metrics.id) {
            return match contacts.since(&raft_node.addr) {
                Some(d) if fresh(d) => "alive",
                Some(_) => "failed",
                None => "unknown",
            };
        }
        if metrics.current_leader == Some(*id) && fresh(consensus.since_leader_contact()) {
            return "alive";
        }
        "unknown"
    }

    /// This DC's members: every catalog node with its liveness.
    pub fn members(&self) -> Vec<Member> {
        // When each agent's sync was last applied here (every server applies them alike).
        let seen = self
            .consensus
            .get()
            .map(|c| strait_base::sync::lock(&c.app().synced).clone())
            .unwrap_or_default();
        self.catalog
            .nodes()
            .into_iter()
            .map(|n| {
                let is_server = n.meta.get("strait-role").map(String::as_str) == Some("server");
                let status = if n.node == self.cfg.node_name {
                    "alive"
                } else if is_server {
                    self.server_status(&n.node)
                } else {
                    match seen.get(&n.node) {
                        Some(t) if t.elapsed() < crate::liveness::NODE_TIMEOUT => "alive",
                        Some(_) => "failed",
                        None => "unknown",
                    }
                };
                Member {
                    node: n.node.clone(),
                    address: n.address.clone(),
                    datacenter: self.cfg.datacenter.clone(),
                    role: if is_server { "server" } else { "agent" }.into(),
                    status: status.into(),
                }
            })
            .collect()
    }
}
