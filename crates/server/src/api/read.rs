//! Consul's consistency modes for the reads of the replicated state (catalog, health, config
//! entries, CA roots, the mesh view, federation states):
//!
//! - default: served by the leader, from its memory, as long as its lease holds (a quorum of
//!   voters answered it within the election timeout, so no other leader can have been
//!   elected); a follower forwards the read to the leader over mutual TLS, blocking queries
//!   included, and relays its answer;
//! - `?stale`: any server answers from its own state, leader or not; with `&max_stale=<d>`
//!   (Consul's `MaxStaleDuration`) a follower that has not heard from the leader within `d`
//!   (or knows none) serves it as a default read instead;
//! - `?consistent`: the leader first confirms its leadership with a quorum
//!   (`ensure_linearizable`, which also waits until everything committed before is applied),
//!   then answers; a follower forwards it.
//!
//! Every answer carries `X-Consul-KnownLeader` (whether the server that answered knows a
//! leader) and `X-Consul-LastContact` (milliseconds since it last heard from the leader; 0 on
//! the leader), beside `X-Consul-Index`. A read a server of this DC forwarded is never
//! forwarded again: leadership views can disagree for a moment, and a read must not bounce.

use super::{authorize, parse_wait, ApiError, ApiResult, AppState, Origin};
use crate::state::Server;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use strait_identity::spiffe::SpiffeId;
use strait_rpc::mesh::Deadlines;
use strait_rpc::serve::Peer;

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Default,
    Stale,
    Consistent,
}

impl Mode {
    /// The mode a query string asks for: `stale` or `consistent` present (any value, as
    /// Consul's), not both.
    pub fn of(query: Option<&str>) -> ApiResult<Mode> {
        let keys: Vec<&str> = query
            .unwrap_or_default()
            .split('&')
            .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
            .collect();
        match (keys.contains(&"stale"), keys.contains(&"consistent")) {
            (true, true) => Err(ApiError::bad_request(
                "query parameters `stale` and `consistent` together: choose one consistency mode",
            )),
            (true, false) => Ok(Mode::Stale),
            (false, true) => Ok(Mode::Consistent),
            (false, false) => Ok(Mode::Default),
        }
    }
}

/// Who may read what a path serves (checked before a read is forwarded, so a follower never
/// reads for a caller the leader would refuse: the leader sees the follower's identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Any certificate of the federation.
    Anyone,
    /// Any identity of this datacenter (agents and their services, servers).
    ThisDc,
    /// Servers and agents of any datacenter.
    ServersAndAgents,
    /// This datacenter's servers only (a snapshot carries the CA's key).
    Servers,
}

impl Readers {
    /// The reads that follow the consistency modes, by path; `None`: answered by the server
    /// asked (status, operator, members, metrics, writes).
    pub fn of(path: &str) -> Option<Readers> {
        const ANYONE: [&str; 4] = ["/v1/catalog/", "/v1/health/", "/v1/config/", "/v1/connect/"];
        match path {
            "/v1/internal/mesh-view" => Some(Readers::ThisDc),
            "/v1/internal/federation/states" => Some(Readers::ServersAndAgents),
            "/v1/snapshot" => Some(Readers::Servers),
            "/v1/operator/raft/configuration" => Some(Readers::Anyone),
            _ if ANYONE.iter().any(|p| path.starts_with(p)) => Some(Readers::Anyone),
            _ => None,
        }
    }

    /// Whether the mTLS caller `peer` may read (local callers may).
    pub fn authorize(self, s: &Server, origin: Origin, peer: &Peer) -> ApiResult<()> {
        let dc = &s.cfg.datacenter;
        match self {
            Readers::Anyone => authorize(origin, peer, "read the catalog", |_| true),
            Readers::ThisDc => authorize(origin, peer, "read the mesh view", |id| {
                matches!(id, SpiffeId::Server { .. } | SpiffeId::Agent { .. })
                    && id.datacenter() == *dc
            }),
            Readers::ServersAndAgents => authorize(origin, peer, "read federation states", |id| {
                matches!(id, SpiffeId::Server { .. } | SpiffeId::Agent { .. })
            }),
            Readers::Servers => authorize(origin, peer, "take a snapshot", |id| {
                super::is_server_of(id, dc)
            }),
        }
    }
}

/// The middleware in front of every route: reads [`Readers::of`] names follow their mode,
/// and carry the leader headers.
pub async fn modes(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let readers = match req.method() {
        &Method::GET => Readers::of(req.uri().path()),
        _ => None,
    };
    let Some(readers) = readers else {
        return next.run(req).await;
    };
    let asked = Asked::of(&req);
    let mut resp = match route(&s, readers, asked).await {
        Ok(Route::Here) => next.run(req).await,
        Ok(Route::Answered(resp)) => resp,
        Err(e) => e.into_response(),
    };
    leader_headers(&s, &mut resp);
    resp
}

enum Route {
    /// This server answers.
    Here,
    /// The leader answered (or the read failed): relay this.
    Answered(Response),
}

/// What routing a read needs of its request (the request itself is not `Sync`).
struct Asked {
    path_and_query: String,
    query: Option<String>,
    origin: Origin,
    peer: Peer,
    /// The ACL token that travels with the read to the leader
    /// ([`super::authz::relayed_token`]).
    token: Option<String>,
}

impl Asked {
    fn of(req: &Request) -> Asked {
        let uri = req.uri();
        Asked {
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.to_string()),
            query: uri.query().map(str::to_owned),
            origin: req
                .extensions()
                .get::<Origin>()
                .copied()
                .unwrap_or(Origin::Mesh),
            peer: req.extensions().get::<Peer>().cloned().unwrap_or(Peer {
                addr: ([0, 0, 0, 0], 0).into(),
                identity: None,
            }),
            token: super::authz::relayed_token(
                req.headers(),
                req.extensions().get::<Origin>().copied(),
                req.extensions().get::<Peer>(),
            ),
        }
    }
}

async fn route(s: &AppState, readers: Readers, asked: Asked) -> ApiResult<Route> {
    let mode = Mode::of(asked.query.as_deref())?;
    let peer = &asked.peer;
    readers.authorize(s, asked.origin, peer)?;
    let consensus = s
        .consensus
        .get()
        .ok_or_else(|| unavailable("Raft is not started yet"))?;
    let metrics = consensus.raft().metrics().borrow().clone();
    if mode == Mode::Stale {
        let too_stale = match max_stale(asked.query.as_deref())? {
            Some(max) => {
                metrics.current_leader != Some(metrics.id)
                    && (metrics.current_leader.is_none() || consensus.since_leader_contact() > max)
            }
            None => false,
        };
        if !too_stale {
            return Ok(Route::Here);
        }
    }
    if metrics.current_leader == Some(metrics.id) {
        if mode == Mode::Consistent {
            consensus.raft().ensure_linearizable().await.map_err(|e| {
                unavailable(format!(
                    "this server could not confirm it leads ({e}): ask again"
                ))
            })?;
        } else if !lease_holds(s) {
            return Err(unavailable(
                "this server leads but has not heard from a quorum of servers within the election timeout (use ?stale to read its state anyway)",
            ));
        }
        return Ok(Route::Here);
    }
    let dc = &s.cfg.datacenter;
    let forwarded =
        matches!(&peer.identity, Some(SpiffeId::Server { datacenter, .. }) if datacenter == dc);
    if forwarded {
        return Err(unavailable(
            "this server is not the Raft leader (a read another server forwarded is not forwarded again)",
        ));
    }
    Ok(Route::Answered(
        to_leader(s, &asked.path_and_query, asked.token.as_deref()).await,
    ))
}

/// `?max_stale=<duration>` (with `?stale`): how far behind the leader a follower may answer.
fn max_stale(query: Option<&str>) -> ApiResult<Option<Duration>> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("max_stale=").map(str::to_owned))
    else {
        return Ok(None);
    };
    strait_rpc::duration::parse(&value)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("query parameter `max_stale` = {e}")))
}

/// Sends the read to the leader over mutual TLS, with the caller's token; a 503 when no
/// leader is known, it cannot be reached, or leadership changes while the read waits (the
/// caller asks again).
async fn to_leader(s: &Server, path_and_query: &str, token: Option<&str>) -> Response {
    let no_leader = || {
        unavailable(
            "no Raft leader is known: the cluster has no quorum (use ?stale to read this server's state)",
        )
        .into_response()
    };
    let Some(consensus) = s.consensus.get() else {
        return no_leader();
    };
    let mut metrics = consensus.raft().metrics();
    let leader = metrics.borrow().current_leader;
    let Some(addr) = crate::cluster::leader_addr(s) else {
        return no_leader();
    };
    let attempt = async {
        let addr = addr
            .parse()
            .map_err(|_| format!("leader address {addr:?} is not ip:port"))?;
        let tls = s
            .client_tls_for(&s.cfg.datacenter)
            .map_err(|e| format!("{e:#}"))?;
        let td = s
            .trust_domain()
            .ok_or("this server has no certificate yet")?;
        let header = token.map(|t| ("x-consul-token", t));
        let req = strait_rpc::mesh::Outgoing {
            method: Method::GET,
            path_and_query,
            body: None,
            headers: header.as_slice(),
        };
        strait_rpc::mesh::send(
            tls,
            addr,
            &strait_names::server_sni(&s.cfg.datacenter, &td),
            req,
            Deadlines {
                connect: Duration::from_secs(2),
                total: read_deadline(path_and_query),
            },
        )
        .await
        .map_err(|e| e.to_string())
    };
    let leader_changed = async {
        while metrics.changed().await.is_ok() {
            if metrics.borrow().current_leader != leader {
                return;
            }
        }
    };
    tokio::select! {
        answer = attempt => match answer {
            Ok(resp) => resp.into_response(),
            Err(e) => unavailable(format!("cannot forward the read to the Raft leader {addr}: {e}"))
                .into_response(),
        },
        () = leader_changed => {
            unavailable("the Raft leader changed while the read was forwarded: ask again").into_response()
        }
    }
}

/// How long a forwarded read may take: a blocking query's wait (5 minutes unless `?wait=`
/// says), plus slack.
fn read_deadline(path_and_query: &str) -> Duration {
    const SLACK: Duration = Duration::from_secs(10);
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
    };
    if param("index").is_none() {
        return SLACK;
    }
    let wait = param("wait")
        .and_then(|w| parse_wait(w).ok())
        .unwrap_or(Duration::from_secs(300));
    wait + SLACK
}

/// Whether this leader may serve reads from its memory: a quorum of the voters (itself
/// included) answered it within the election timeout, so no other server can have been
/// elected meanwhile (Consul's leader lease).
fn lease_holds(s: &Server) -> bool {
    use crate::autopilot::{silence, verdict, Verdict};
    let (Some(consensus), Some(contacts)) = (s.consensus.get(), s.contacts.get()) else {
        return false;
    };
    let lease = s.raft_lease();
    let metrics = consensus.raft().metrics().borrow().clone();
    let (voters, silence) = silence(&metrics, contacts, Duration::MAX);
    !matches!(verdict(voters, &silence, lease), Verdict::Keep { .. })
}

/// `X-Consul-KnownLeader` and `X-Consul-LastContact` of this server, unless the answer already
/// carries the leader's (a forwarded read).
fn leader_headers(s: &Server, resp: &mut Response) {
    if resp.headers().contains_key("x-consul-knownleader") {
        return;
    }
    let Some(consensus) = s.consensus.get() else {
        return;
    };
    let metrics = consensus.raft().metrics().borrow().clone();
    let last_contact = match metrics.current_leader {
        Some(leader) if leader == metrics.id => 0,
        _ => consensus.since_leader_contact().as_millis(),
    };
    let headers = resp.headers_mut();
    let known = if metrics.current_leader.is_some() {
        "true"
    } else {
        "false"
    };
    headers.insert("x-consul-knownleader", HeaderValue::from_static(known));
    if let Ok(v) = HeaderValue::from_str(&last_contact.to_string()) {
        headers.insert("x-consul-lastcontact", v);
    }
}

fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_from_the_query() {
        assert_eq!(Mode::of(None).unwrap(), Mode::Default);
        assert_eq!(Mode::of(Some("index=4&wait=1s")).unwrap(), Mode::Default);
        assert_eq!(Mode::of(Some("stale")).unwrap(), Mode::Stale);
        assert_eq!(Mode::of(Some("index=4&stale=")).unwrap(), Mode::Stale);
        assert_eq!(
            Mode::of(Some("consistent&passing")).unwrap(),
            Mode::Consistent
        );
        // A key that merely contains the word is not the flag.
        assert_eq!(Mode::of(Some("filter=stale")).unwrap(), Mode::Default);
        let both = Mode::of(Some("stale&consistent")).unwrap_err();
        assert_eq!(both.0, StatusCode::BAD_REQUEST);
        assert!(
            both.1.contains("stale") && both.1.contains("consistent"),
            "{}",
            both.1
        );
    }

    #[test]
    fn which_paths_follow_the_modes() {
        for path in [
            "/v1/catalog/services",
            "/v1/health/service/web",
            "/v1/config/service-intentions",
            "/v1/connect/ca/roots",
        ] {
            assert_eq!(Readers::of(path), Some(Readers::Anyone), "{path}");
        }
        assert_eq!(Readers::of("/v1/internal/mesh-view"), Some(Readers::ThisDc));
        assert_eq!(
            Readers::of("/v1/internal/federation/states"),
            Some(Readers::ServersAndAgents)
        );
        assert_eq!(Readers::of("/v1/snapshot"), Some(Readers::Servers));
        assert_eq!(
            Readers::of("/v1/operator/raft/configuration"),
            Some(Readers::Anyone)
        );
        for path in ["/v1/status/leader", "/v1/internal/members", "/v1/config"] {
            assert_eq!(Readers::of(path), None, "{path}");
        }
    }

    #[test]
    fn max_stale_is_a_duration() {
        assert_eq!(max_stale(Some("stale")).unwrap(), None);
        assert_eq!(
            max_stale(Some("stale&max_stale=5s")).unwrap(),
            Some(Duration::from_secs(5))
        );
        let bad = max_stale(Some("stale&max_stale=soon")).unwrap_err();
        assert_eq!(bad.0, StatusCode::BAD_REQUEST);
        assert!(bad.1.contains("max_stale"), "{}", bad.1);
    }

    #[test]
    fn a_forwarded_blocking_query_may_wait_its_wait() {
        assert_eq!(
            read_deadline("/v1/catalog/services"),
            Duration::from_secs(10)
        );
        assert_eq!(
            read_deadline("/v1/catalog/services?index=3&wait=20s"),
            Duration::from_secs(30)
        );
        assert_eq!(
            read_deadline("/v1/internal/mesh-view?index=3"),
            Duration::from_secs(310)
        );
        // `?wait` is capped at 10 minutes, as the handlers cap it.
        assert_eq!(
            read_deadline("/v1/catalog/services?index=3&wait=1h"),
            Duration::from_secs(610)
        );
    }
}
