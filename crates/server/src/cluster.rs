//! How the servers of one DC become one Raft cluster, and how a server that is not the leader
//! still takes writes.
//!
//! Formation (`bootstrap_expect`, `retry_join`, as Consul's):
//! - `bootstrap_expect = 1`: the server initialises a cluster of itself on first start.
//! - More: exactly one server bootstraps, the one whose `https_addr` is the lowest of its own
//!   and its `retry_join` addresses (every server of the DC lists the same set, so they
//!   agree). It first asks the others (`GET /v1/internal/server/status`): if any already is
//!   in a cluster it joins that one instead; it initialises only once `bootstrap_expect - 1`
//!   others answered that they are fresh and expect the same number, so a restarted server
//!   that lost its disk cannot start a second cluster beside the first. A different
//!   `bootstrap_expect` among servers forming a cluster is a configuration error; a formed
//!   cluster takes a joining server whatever its `bootstrap_expect` (adding servers at run
//!   time, e.g. growing from 3 to 5).
//! - Every other server joins (`POST /v1/internal/server/join`) proving the DC's join token
//!   and the federation token together ([`server_secret`]; an agent knows only the first): the leader signs its server certificate (the answer is authenticated
//!   with the token, so the joiner can trust roots it did not have), adds it as a learner,
//!   and promotes it to voter once it has caught up. The CA's keys then reach the joiner
//!   through the Raft log, inside mutual TLS.
//!
//! Writes: [`Server::write`] on a follower forwards the command to the leader over mutual
//! TLS (`POST /v1/internal/raft/write`), so an agent may talk to any server.

use crate::api::{authorize_peer, ApiError, ApiResult, AppState};
use crate::replicated::{Command, Outcome};
use crate::state::Server;
use anyhow::{bail, Context, Result};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::Method;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_identity::spiffe::SpiffeId;
use strait_identity::tls::{self, Identity, Roots};
use strait_identity::{bootstrap, ca};
use strait_proto::{JoinResponse, ServerJoinRequest, ServerStatus};
use strait_raft::NodeId;
use strait_rpc::serve::Peer;
use strait_systemd::lifecycle::{ExitContext, Role};
use tokio::sync::mpsc;

/// A server certificate another server of the DC signed for this one (a joiner has no CA
/// until the log brings it).
pub struct Joined {
    pub identity: Identity,
    pub roots: Roots,
    pub trust_domain: String,
}

/// How this server became a member.
pub enum Formation {
    /// It initialised the cluster, or was a member before this start: its CA comes from the
    /// replicated state (or, for the first leader, from disk or the federation).
    Member,
    /// It has just joined: it serves with the certificate it was given until the CA arrives.
    Joined(Joined),
}

/// The trust domain a server claims before it knows the real one.
const BOOTSTRAP_TD: &str = strait_names::BOOTSTRAP_TRUST_DOMAIN;
const ATTEMPT: Duration = Duration::from_secs(5);

/// Makes this server a member of its DC's cluster (see the module docs).
pub async fn form(server: &Server, id: NodeId) -> Result<Formation> {
    let consensus = server.consensus.get().context("Raft is not started")?;
    let raft = consensus.raft();
    if raft.is_initialized().await.context("Raft stopped")? {
        return Ok(Formation::Member);
    }
    let cfg = &server.cfg;
    if cfg.bootstrap_expect == 1 {
        initialize(server, id).await?;
        return Ok(Formation::Member);
    }
    let lowest = cfg.retry_join.iter().all(|peer| cfg.https_addr < *peer);
    let mut backoff = Duration::from_millis(200);
    let mut leader_hint = None;
    loop {
        if lowest {
            match probe(server).await? {
                Probe::Fresh => {
                    initialize(server, id).await?;
                    return Ok(Formation::Member);
                }
                Probe::Cluster(leader) => leader_hint = leader.or(leader_hint),
                Probe::Waiting(why) => server.set_waiting_for(why),
            }
        }
        match join_once(server, id, leader_hint).await {
            Ok(joined) => return Ok(Formation::Joined(joined)),
            Err(JoinFailure::Refused(why)) => {
                return Err(anyhow::anyhow!(
                    "joining the cluster of {}: {why}",
                    cfg.datacenter
                ))
                .bad_config()
            }
            Err(JoinFailure::Retry { why, leader }) => {
                leader_hint = leader.or(leader_hint);
                tracing::info!(reason = %why, "not in a cluster yet; retrying");
                if !lowest {
                    server.set_waiting_for(format!("joining the Raft cluster: {why}"));
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn initialize(server: &Server, id: NodeId) -> Result<()> {
    let consensus = server.consensus.get().context("Raft is not started")?;
    let me = raft_node(server);
    consensus
        .raft()
        .initialize(BTreeMap::from([(id, me)]))
        .await
        .context("cannot initialise the Raft cluster")?;
    tracing::info!(
        node_id = id,
        expect = server.cfg.bootstrap_expect,
        "initialised the Raft cluster"
    );
    Ok(())
}

fn raft_node(server: &Server) -> strait_raft::Node {
    strait_raft::Node {
        name: server.cfg.node_name.clone(),
        addr: server.cfg.https_addr.to_string(),
    }
}

enum Probe {
    /// Enough servers answered, none in a cluster: bootstrap.
    Fresh,
    /// A server already is in a cluster (with this leader, if it knows it): join it.
    Cluster(Option<SocketAddr>),
    /// Not enough servers answered yet.
    Waiting(String),
}

/// Asks every `retry_join` server whether it is in a cluster.
async fn probe(server: &Server) -> Result<Probe> {
    let cfg = &server.cfg;
    let mut fresh = 0;
    let mut silent = Vec::new();
    for peer in &cfg.retry_join {
        let status = match status_of(server, *peer).await {
            Ok(status) => status,
            Err(e) => {
                silent.push(format!("{peer}: {e:#}"));
                continue;
            }
        };
        if status.datacenter != cfg.datacenter {
            return Err(anyhow::anyhow!(
                "field `retry_join`: {peer} is a server of datacenter {}, not {}",
                status.datacenter,
                cfg.datacenter
            ))
            .bad_config();
        }
        // A formed cluster is joined whatever it was bootstrapped with (adding servers).
        if status.member {
            let leader = status.leader.and_then(|l| l.parse().ok());
            return Ok(Probe::Cluster(leader));
        }
        if status.bootstrap_expect != cfg.bootstrap_expect {
            return Err(anyhow::anyhow!(
                "field `bootstrap_expect` = {} but server {} ({peer}) expects {}: every server of a datacenter must say the same",
                cfg.bootstrap_expect, status.node, status.bootstrap_expect
            ))
            .bad_config();
        }
        fresh += 1;
    }
    if fresh + 1 >= cfg.bootstrap_expect as usize {
        return Ok(Probe::Fresh);
    }
    Ok(Probe::Waiting(format!(
        "bootstrap: {} of {} servers known ({fresh} other(s) answered); waiting for: {}",
        fresh + 1,
        cfg.bootstrap_expect,
        silent.join("; ")
    )))
}

/// Asks `peer` for its status; the answer must carry a MAC under our join token over our
/// nonce (the TLS of a forming cluster authenticates nobody).
async fn status_of(server: &Server, peer: SocketAddr) -> Result<ServerStatus> {
    let nonce = bootstrap::nonce();
    let resp = strait_rpc::mesh::request(
        tls::dangerous_unverified_client_config(),
        peer,
        &strait_names::server_sni(&server.cfg.datacenter, BOOTSTRAP_TD),
        Method::GET,
        &format!("/v1/internal/server/status?nonce={nonce}"),
        None,
        ATTEMPT,
    )
    .await?;
    let status: ServerStatus = resp.json()?;
    let parts = status.mac_parts(&nonce);
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    if !bootstrap::verify_mac(&server_secret(server), &parts, &status.mac) {
        bail!("the answer is not authenticated by our join_token and federation_token (another DC's server, different tokens, or someone in the middle)");
    }
    Ok(status)
}

enum JoinFailure {
    /// The token or the settings are wrong: retrying will not help.
    Refused(String),
    Retry {
        why: String,
        leader: Option<SocketAddr>,
    },
}

/// Asks the leader (if known), then each `retry_join` server, to let this server in.
async fn join_once(
    server: &Server,
    id: NodeId,
    leader: Option<SocketAddr>,
) -> Result<Joined, JoinFailure> {
    let cfg = &server.cfg;
    let placeholder = SpiffeId::server(BOOTSTRAP_TD, &cfg.datacenter);
    let retry = |why: String| JoinFailure::Retry { why, leader: None };
    let (key_pem, csr_pem) =
        ca::generate_key_and_csr(&placeholder).map_err(|e| retry(e.to_string()))?;
    let nonce = bootstrap::nonce();
    let token = server_secret(server);
    let raft_addr = cfg.https_addr.to_string();
    let raft_id = id.to_string();
    let req = ServerJoinRequest {
        node: cfg.node_name.clone(),
        datacenter: cfg.datacenter.clone(),
        raft_id: id,
        raft_addr: raft_addr.clone(),
        bootstrap_expect: cfg.bootstrap_expect,
        mac: bootstrap::mac(
            &token,
            &[
                b"server-join",
                cfg.node_name.as_bytes(),
                cfg.datacenter.as_bytes(),
                raft_id.as_bytes(),
                raft_addr.as_bytes(),
                csr_pem.as_bytes(),
                nonce.as_bytes(),
            ],
        ),
        csr_pem,
        nonce: nonce.clone(),
    };
    let body = serde_json::to_vec(&req).map_err(|e| retry(e.to_string()))?;
    let targets: Vec<SocketAddr> = leader
        .into_iter()
        .chain(cfg.retry_join.iter().copied())
        .collect();
    let mut reasons = Vec::new();
    let mut hint = None;
    for target in targets {
        let resp = match strait_rpc::mesh::request(
            tls::dangerous_unverified_client_config(),
            target,
            &strait_names::server_sni(&cfg.datacenter, BOOTSTRAP_TD),
            Method::POST,
            "/v1/internal/server/join",
            Some(body.clone()),
            ATTEMPT,
        )
        .await
        {
            Ok(resp) => resp,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        let text = String::from_utf8_lossy(&resp.body).trim().to_owned();
        match resp.status.as_u16() {
            200 => {
                let ans: JoinResponse = resp.json().map_err(|e| retry(e.to_string()))?;
                return finish(&token, &nonce, &key_pem, ans).map_err(JoinFailure::Refused);
            }
            403 | 400 => {
                return Err(JoinFailure::Refused(format!(
                    "server {target} answered {}: {text}",
                    resp.status.as_u16()
                )))
            }
            _ => {
                if let Ok(refusal) = serde_json::from_slice::<NotLeader>(&resp.body) {
                    hint = refusal.leader.and_then(|l| l.parse().ok()).or(hint);
                }
                reasons.push(format!("{target}: {text}"));
            }
        }
    }
    Err(JoinFailure::Retry {
        why: reasons.join("; "),
        leader: hint,
    })
}

fn finish(token: &str, nonce: &str, key_pem: &str, ans: JoinResponse) -> Result<Joined, String> {
    let roots_joined = ans.roots_pem.join("\n");
    let parts: [&[u8]; 5] = [
        b"server-joined",
        nonce.as_bytes(),
        ans.trust_domain.as_bytes(),
        roots_joined.as_bytes(),
        ans.cert_pem.as_bytes(),
    ];
    if !bootstrap::verify_mac(token, &parts, &ans.mac) {
        return Err("the answer is not authenticated by our join_token and federation_token (another DC's server, or someone in the middle)".into());
    }
    let identity = Identity::from_pem(&ans.cert_pem, key_pem)
        .map_err(|e| format!("the certificate we were given: {e}"))?;
    let roots =
        Roots::from_pems(&ans.roots_pem).map_err(|e| format!("the roots we were given: {e}"))?;
    Ok(Joined {
        identity,
        roots,
        trust_domain: ans.trust_domain,
    })
}

/// The body of a 503 from a server that is not the leader (or not in a cluster yet).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NotLeader {
    error: String,
    leader: Option<String>,
}

fn not_leader(server: &Server, error: impl Into<String>) -> Response {
    let body = NotLeader {
        error: error.into(),
        leader: leader_addr(server),
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The leader's `https_addr`, if this server knows one.
pub fn leader_addr(server: &Server) -> Option<String> {
    let consensus = server.consensus.get()?;
    let metrics = consensus.raft().metrics().borrow().clone();
    let leader = metrics.current_leader?;
    metrics
        .membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
}

fn is_leader(server: &Server) -> bool {
    server.consensus.get().is_some_and(|c| {
        let m = c.raft().metrics().borrow().clone();
        m.current_leader == Some(m.id)
    })
}

/// What servers of one DC prove to each other when they form a cluster or join it: the DC's
/// `join_token` and the federation's `federation_token` together. Agents know the first only
/// and servers of other DCs the second only, so neither can join this DC's cluster as a
/// server (and receive its CA key with the log).
fn server_secret(server: &Server) -> String {
    format!(
        "{}\n{}",
        server.live.join_token(),
        server.cfg.federation_token
    )
}

/// `GET /v1/internal/server/status`: what a bootstrapping server asks (no secret in it).
pub async fn status(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Response> {
    let nonce = q.get("nonce").map(String::as_str).unwrap_or_default();
    if nonce.is_empty() || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "query parameter `nonce`: 1 to 64 hex digits required",
        ));
    }
    let member = match s.consensus.get() {
        Some(c) => c
            .raft()
            .is_initialized()
            .await
            .map_err(ApiError::internal)?,
        None => false,
    };
    let mut status = ServerStatus {
        node: s.cfg.node_name.clone(),
        datacenter: s.cfg.datacenter.clone(),
        bootstrap_expect: s.cfg.bootstrap_expect,
        member,
        leader: leader_addr(&s),
        mac: String::new(),
    };
    let parts = status.mac_parts(nonce);
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    status.mac = bootstrap::mac(&server_secret(&s), &parts);
    Ok(Json(status).into_response())
}

/// `POST /v1/internal/server/join`: another server of this DC joins the cluster (leader only;
/// others answer 503 naming the leader).
pub async fn join(
    State(s): State<AppState>,
    Json(req): Json<ServerJoinRequest>,
) -> ApiResult<Response> {
    let token = server_secret(&s);
    let raft_id = req.raft_id.to_string();
    let parts: [&[u8]; 7] = [
        b"server-join",
        req.node.as_bytes(),
        req.datacenter.as_bytes(),
        raft_id.as_bytes(),
        req.raft_addr.as_bytes(),
        req.csr_pem.as_bytes(),
        req.nonce.as_bytes(),
    ];
    crate::api::internal::admit_joiner(
        &s,
        crate::api::internal::Joiner {
            what: "server",
            node: &req.node,
            datacenter: &req.datacenter,
            mac: &req.mac,
        },
        &token,
        &parts,
        "its join_token and federation_token (a server proves both; an agent knows only the join_token) are not those of datacenter",
    )?;
    let addr: SocketAddr = req.raft_addr.parse().map_err(|_| {
        ApiError::bad_request(format!("field RaftAddr {:?}: not ip:port", req.raft_addr))
    })?;
    if !is_leader(&s) {
        return Ok(not_leader(&s, "this server is not the Raft leader"));
    }
    // The cluster is formed (this server leads it): a server joins whatever its
    // `bootstrap_expect` says, as Consul's (that is how a DC grows from 3 servers to 5).
    if req.bootstrap_expect != s.cfg.bootstrap_expect {
        tracing::info!(
            node = %req.node,
            theirs = req.bootstrap_expect,
            ours = s.cfg.bootstrap_expect,
            "a server with another bootstrap_expect joins the formed cluster"
        );
    }
    if let Some(busy) = address_in_use(&s, req.raft_id, &req.raft_addr) {
        return Ok(not_leader(&s, busy));
    }
    let Some(ca) = s.ca_opt() else {
        return Ok(not_leader(&s, "the CA is not up yet"));
    };
    let id = SpiffeId::server(&ca.trust_domain, &s.cfg.datacenter);
    let signed = ca
        .sign(&req.csr_pem, &id, s.live.leaf_ttl())
        .map_err(|e| ApiError::bad_request(format!("field CsrPem: {e:#}")))?;
    let roots = ca.roots_pem.join("\n");
    let mac = bootstrap::mac(
        &token,
        &[
            b"server-joined",
            req.nonce.as_bytes(),
            ca.trust_domain.as_bytes(),
            roots.as_bytes(),
            signed.chain_pem.as_bytes(),
        ],
    );
    let node = strait_raft::Node {
        name: req.node.clone(),
        addr: addr.to_string(),
    };
    if let Some(tx) = s.membership.get() {
        let _ = tx.send((req.raft_id, node));
    }
    tracing::info!(node = %req.node, raft_id = req.raft_id, %addr, "server joining the cluster");
    Ok(Json(JoinResponse {
        trust_domain: ca.trust_domain.clone(),
        roots_pem: ca.roots_pem.clone(),
        cert_pem: signed.chain_pem,
        mac,
    })
    .into_response())
}

/// How long the member at a joiner's address must have been silent before the joiner may take
/// its place: several heartbeats, so a server that answers is never replaced.
const REPLACE_AFTER: Duration = Duration::from_secs(1);

/// Why a server joining as `id` at `addr` must wait: another member of the cluster has that
/// address and still answers Raft. A member there that went silent is the same server, back
/// without its data under a new ID ([`strait_raft::wire::addressed`]): the membership task
/// replaces it ([`replace_stale`]).
fn address_in_use(server: &Server, id: NodeId, addr: &str) -> Option<String> {
    let consensus = server.consensus.get()?;
    let contacts = server.contacts.get()?;
    let metrics = consensus.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let (old, _) = membership
        .nodes()
        .find(|(other, n)| **other != id && n.addr == addr)?;
    match contacts.since(addr) {
        Some(silent) if silent < REPLACE_AFTER.max(server.raft_lease()) => Some(format!(
            "server {old} of the Raft configuration answers at {addr}: a server joining under a new ID takes that address only once the old one is silent"
        )),
        _ => None,
    }
}

/// Removes the members other than `id` at `node`'s address (a server back without its data,
/// see [`address_in_use`]), as Consul does before adding a server that reuses an address: the
/// configuration never counts a node that can no longer vote.
async fn replace_stale(raft: &strait_raft::Raft, id: NodeId, node: &strait_raft::Node) {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let stale: Vec<NodeId> = membership
        .nodes()
        .filter(|(other, n)| **other != id && n.addr == node.addr)
        .map(|(other, _)| *other)
        .collect();
    for old in stale {
        let change = if voters.contains(&old) {
            openraft::ChangeMembers::RemoveVoters(BTreeSet::from([old]))
        } else {
            openraft::ChangeMembers::RemoveNodes(BTreeSet::from([old]))
        };
        match raft.change_membership(change, false).await {
            Ok(_) => tracing::warn!(
                node = %node.name, old_id = old, new_id = id, addr = %node.addr,
                "server re-joined without its data: replaced its old Raft ID"
            ),
            Err(e) => tracing::warn!(
                node = %node.name, old_id = old, error = %e,
                "cannot remove the old Raft ID of a re-joining server"
            ),
        }
    }
}

/// The task `raft-membership`: adds each joining server as a learner (replacing a member it
/// was before it lost its data), then, once it has caught up, as a voter.
pub async fn membership(
    server: Arc<Server>,
    mut joins: mpsc::UnboundedReceiver<(NodeId, strait_raft::Node)>,
) {
    while let Some((id, node)) = joins.recv().await {
        let Some(consensus) = server.consensus.get() else {
            continue;
        };
        let raft = consensus.raft().clone();
        let name = node.name.clone();
        let voter = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id);
        if voter {
            // A member that asked again (it heard from no leader for a while): nothing to add.
            continue;
        }
        replace_stale(&raft, id, &node).await;
        let added =
            tokio::time::timeout(Duration::from_secs(60), raft.add_learner(id, node, true)).await;
        match added {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(node = %name, raft_id = id, error = %e, "cannot add the server as a learner");
                continue;
            }
            Err(_) => {
                tracing::warn!(node = %name, raft_id = id, "the server did not catch up within 60 s; not promoted");
                continue;
            }
        }
        let voters = BTreeSet::from([id]);
        match raft
            .change_membership(openraft::ChangeMembers::AddVoterIds(voters), false)
            .await
        {
            Ok(_) => tracing::info!(node = %name, raft_id = id, "server is a voter"),
            Err(e) => {
                tracing::warn!(node = %name, raft_id = id, error = %e, "cannot make the server a voter")
            }
        }
    }
}

/// How often a member checks that it still belongs to the cluster ([`rejoin`]).
const REJOIN_CHECK: Duration = Duration::from_secs(2);
/// A follower that has heard from no leader for this long asks to be re-added.
const REJOIN_AFTER: Duration = Duration::from_secs(3);

/// The task `raft-rejoin`. Consul's leader re-adds a live server that autopilot or an operator
/// removed (serf still sees it); in strait the server asks itself: one whose own configuration
/// no longer lists it (it saw its removal), or a follower that has heard from no leader for
/// [`REJOIN_AFTER`] (removed while it was down or cut off, no leader sends it anything now),
/// joins again through the leader with the join token, keeping its ID and its data; the
/// leader adds it as a learner and promotes it once caught up (a learner left unpromoted for
/// [`REJOIN_AFTER`], its leader deposed in between, asks again). A follower that is still a
/// voter (only cut off for a while) is left as it is by the leader. Nothing to do without
/// `retry_join` (a single server).
pub fn spawn_rejoin(server: &Arc<Server>, role: &Role, id: NodeId) {
    if server.cfg.retry_join.is_empty() {
        return;
    }
    role.spawn_cancellable("raft-rejoin", rejoin(server.clone(), id));
}

async fn rejoin(server: Arc<Server>, id: NodeId) -> Result<()> {
    let mut leader_hint = None;
    let mut learner_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(REJOIN_CHECK).await;
        let Some(consensus) = server.consensus.get() else {
            continue;
        };
        let m = consensus.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let removed = membership.get_node(&id).is_none();
        let unheard = m.current_leader != Some(id)
            && consensus.since_leader_contact() > REJOIN_AFTER.max(server.raft_lease() * 4);
        // Added as a learner but never promoted: the leader that added it lost its leadership
        // in between (the returning server's own elections can cause that), and its
        // successor does not know a promotion is due.
        let learner = !removed && !membership.voter_ids().any(|v| v == id);
        let stuck =
            learner && learner_since.get_or_insert_with(Instant::now).elapsed() > REJOIN_AFTER;
        if !learner {
            learner_since = None;
        }
        if !(removed || unheard || stuck) {
            continue;
        }
        if stuck {
            learner_since = None;
            tracing::info!(
                "this server is a learner that was never made a voter: asking the leader again"
            );
        }
        match join_once(&server, id, leader_hint).await {
            Ok(_) if removed => {
                tracing::info!("this server was removed from the Raft configuration: asked the leader to add it again")
            }
            Ok(_) => {}
            Err(JoinFailure::Retry { why, leader }) => {
                leader_hint = leader.or(leader_hint);
                tracing::debug!(reason = %why, "cannot ask to be re-added to the Raft cluster yet");
            }
            Err(JoinFailure::Refused(why)) => {
                tracing::warn!(reason = %why, "asking to be re-added to the Raft cluster was refused")
            }
        }
    }
}

/// Starts the `raft-membership` task and lets the join handler reach it.
pub fn spawn_membership(server: &Arc<Server>, role: &Role) {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = server.membership.set(tx);
    role.spawn_cancellable("raft-membership", membership(server.clone(), rx));
}

/// `POST /v1/internal/raft/write`: a follower forwards a write to the leader (this DC's
/// servers only).
pub async fn forwarded_write(
    State(s): State<AppState>,
    Extension(peer): Extension<Peer>,
    Json(command): Json<Command>,
) -> ApiResult<Response> {
    authorize_peer(&peer, "forward Raft writes", |id| {
        crate::api::is_server_of(id, &s.cfg.datacenter)
    })?;
    let Some(consensus) = s.consensus.get() else {
        return Ok(not_leader(&s, "Raft is not started"));
    };
    match consensus.write(&command).await {
        Ok(written) => Ok(Json(written.response).into_response()),
        Err(strait_raft::WriteError::NotLeader { .. }) => {
            Ok(not_leader(&s, "this server is no longer the Raft leader"))
        }
        Err(e) => Ok(not_leader(&s, e.to_string())),
    }
}

/// Sends `command` to the leader at `leader` and returns its outcome.
pub async fn forward(
    server: &Server,
    leader: &strait_raft::Node,
    command: &Command,
) -> Result<Outcome> {
    let addr: SocketAddr = leader
        .addr
        .parse()
        .with_context(|| format!("leader address {:?}", leader.addr))?;
    let tls = server.client_tls_for(&server.cfg.datacenter)?;
    let Some(td) = server.trust_domain() else {
        bail!("this server has no certificate yet");
    };
    let resp = strait_rpc::mesh::request(
        tls,
        addr,
        &strait_names::server_sni(&server.cfg.datacenter, &td),
        Method::POST,
        "/v1/internal/raft/write",
        Some(serde_json::to_vec(command)?),
        Duration::from_secs(10),
    )
    .await?;
    if resp.status != StatusCode::OK {
        bail!(
            "leader {} answered {}: {}",
            leader.addr,
            resp.status.as_u16(),
            String::from_utf8_lossy(&resp.body).trim()
        );
    }
    Ok(resp.json()?)
}

/// The DC's CA for this server: from the replicated state when it is there (written to
/// `data_dir/ca`, keys 0600); the leader of a cluster without one brings it up as a lone
/// server would (loads it from disk, creates it, or joins the federation) and replicates it.
pub async fn acquire_ca(server: &Arc<Server>) -> Result<crate::ca::CaState> {
    use crate::ca::CaFiles;
    use crate::replicated::WriteFailure;
    let consensus = server.consensus.get().context("Raft is not started")?;
    let mut ca_rx = consensus.app().ca.subscribe();
    let mut metrics = consensus.raft().metrics();
    let (dir, dc) = (server.cfg.data_dir.clone(), server.cfg.datacenter.clone());
    loop {
        let replicated = ca_rx.borrow_and_update().clone();
        if let Some(files) = replicated {
            return tokio::task::spawn_blocking(move || files.install(&dir, &dc)).await?;
        }
        if is_leader(server) {
            let ca = crate::federation::bring_up_ca(server).await?;
            let read_dir = dir.clone();
            let files = tokio::task::spawn_blocking(move || CaFiles::read(&read_dir)).await??;
            match server.write(Command::SetCa(files)).await {
                Ok(_) => {
                    tracing::info!(trust_domain = %ca.trust_domain, "the DC's CA is replicated");
                    return Ok(ca);
                }
                // Another leader's CA won the race: the next turn installs it.
                Err(WriteFailure::Refused(why)) => {
                    tracing::warn!(%why, "CA not replicated");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot replicate the CA yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            continue;
        }
        server.set_waiting_for("waiting for the DC's CA from the Raft leader");
        // Either sender gone means Raft stopped: fail, rather than spin on closed channels.
        tokio::select! {
            r = ca_rx.changed() => r.context("the replicated state machine is gone")?,
            r = metrics.changed() => r.context("Raft stopped while waiting for the DC's CA")?,
        }
    }
}
