//! Whose request this is, for ACLs: the caller's token (`X-Consul-Token`, else
//! `Authorization: Bearer`, else the anonymous token) resolved in this server's copy of the
//! replicated ACL state into an [`Authorizer`]. With `acl.enabled = false` every caller may
//! do anything (the [`Caller`] is a management authorizer), as in Consul.
//!
//! Agents relay their clients' requests with the client's token (or the agent's
//! `tokens.default`), so a request through an agent is checked here like one on the loopback
//! API; what agents do for themselves (joins, anti-entropy, leaf signing after their own
//! check, the mesh view) is authorised by their certificate instead. Agents resolve the
//! tokens of their own endpoints through [`authorizer`].

use super::{authorize, ApiError, ApiResult, AppState, Origin};
use crate::state::Server;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use strait_acl::{
    AclState, Authorizer, Context, DefaultPolicy, Denied, ResolveError, ANONYMOUS_SECRET,
};
use strait_identity::spiffe::SpiffeId;
use strait_rpc::serve::Peer;
use time::OffsetDateTime;

/// A header's token, if it holds one.
fn given(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

/// The caller's secret: `X-Consul-Token`, else `Authorization: Bearer`.
pub fn token_of(headers: &HeaderMap) -> Option<&str> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-consul-token").and_then(given).or_else(|| {
        header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(given)
    })
}

/// Consul's answer when ACLs are off (on the `/v1/acl/` endpoints).
pub fn disabled() -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, "ACL support disabled".into())
}

/// Consul's answer for an unknown or expired token.
pub fn not_found() -> ApiError {
    ApiError::forbidden("ACL not found")
}

/// A refusal, answered with 403 and Consul's message.
pub fn denied(e: Denied) -> ApiError {
    ApiError::forbidden(e.to_string())
}

/// Runs `f` on this server's copy of the ACL state.
pub fn with_state<T>(s: &Server, f: impl FnOnce(&AclState) -> T) -> ApiResult<T> {
    let consensus = s.consensus.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "Raft is not started yet".into(),
        )
    })?;
    let acl = strait_base::sync::read(&consensus.app().acl);
    Ok(f(&acl))
}

/// What the holder of `secret` (none, or Consul's literal `anonymous`: the anonymous token)
/// may do here. ACLs off: anything.
pub fn resolve(s: &Server, secret: Option<&str>) -> ApiResult<Authorizer> {
    if !s.cfg.acl.enabled {
        return Ok(Authorizer::management("acls-disabled"));
    }
    let ctx = Context {
        datacenter: &s.cfg.datacenter,
        default_policy: s.cfg.acl.default_policy,
    };
    let now = OffsetDateTime::now_utc();
    let secret = secret.filter(|t| *t != ANONYMOUS_SECRET);
    with_state(s, |acl| acl.resolve(secret, now, &ctx))?.map_err(|e| match e {
        ResolveError::NotFound => not_found(),
        e @ ResolveError::Invalid(_) => ApiError::internal(e),
    })
}

/// The token a request relayed for its caller carries (to the leader, to another DC): the
/// caller's, or [`ANONYMOUS_SECRET`] for a caller that sent none, so the server it reaches
/// never takes it for this server's own request; none for a strait process's own request
/// (the server it reaches sees this server's certificate and grants the same rights).
pub fn relayed_token(
    headers: &HeaderMap,
    origin: Option<Origin>,
    peer: Option<&Peer>,
) -> Option<String> {
    match token_of(headers) {
        Some(token) => Some(token.to_owned()),
        None if is_process(origin, peer) => None,
        None => Some(ANONYMOUS_SECRET.to_owned()),
    }
}

/// Whether a request comes from an agent or a server of the federation (over mTLS).
fn is_process(origin: Option<Origin>, peer: Option<&Peer>) -> bool {
    match (origin, peer) {
        (Some(Origin::Mesh), Some(peer)) => matches!(
            peer.identity,
            Some(SpiffeId::Agent { .. } | SpiffeId::Server { .. })
        ),
        _ => false,
    }
}

/// The accessor of [`internal_reader`] (no token has it: tokens' are UUIDs).
const INTERNAL_READER: &str = "strait-internal";

/// The rights of a strait process's own requests, which carry no token: an agent or a server
/// of the federation, identified by its certificate, reading the catalog for its proxies and
/// its failover targets (Consul's agents use their agent token for this). They read every
/// service and node, and write nothing.
fn internal_reader() -> Authorizer {
    static RULES: std::sync::OnceLock<strait_acl::Rules> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(|| {
        strait_acl::Rules::parse(
            "service_prefix \"\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\n",
        )
        .expect("the internal reader's rules parse")
    });
    Authorizer::from_rules(INTERNAL_READER, rules.clone(), DefaultPolicy::Deny)
}

/// The caller of a request, as an extractor: handlers take `caller: Caller` and ask it
/// (`caller.check(|a| a.service_write(name))?`). An unknown token is refused before the
/// handler runs (403 "ACL not found"). A request with a token is its token's; one without is
/// the anonymous token's, except over mTLS from an agent or server of the federation, which
/// is that process's own ([`internal_reader`]).
pub struct Caller(pub Authorizer);

impl Caller {
    /// `Ok` if `allowed` says so, else the 403.
    pub fn check(&self, allowed: impl FnOnce(&Authorizer) -> Result<(), Denied>) -> ApiResult<()> {
        allowed(&self.0).map_err(denied)
    }

    /// Whether `allowed` says so (for filtering what a read shows).
    pub fn may(&self, allowed: impl FnOnce(&Authorizer) -> Result<(), Denied>) -> bool {
        allowed(&self.0).is_ok()
    }

    /// Whether this is a strait process's own request (an agent or server of the federation,
    /// over mTLS, without a token), not a user's.
    pub fn is_process(&self) -> bool {
        self.0.accessor_id() == INTERNAL_READER
    }

    /// Routes that expose the whole mesh at once (the mesh view, federation states): a
    /// process's own request, or a caller whose token grants `operator:read` (Consul's rule
    /// for federation states).
    pub fn operator_or_process(&self) -> ApiResult<()> {
        match self.is_process() {
            true => Ok(()),
            false => self.check(|a| a.operator_read()),
        }
    }

    /// The caller of a request with these headers and extensions.
    pub fn of(s: &Server, parts: &Parts) -> ApiResult<Caller> {
        let token = token_of(&parts.headers);
        let origin = parts.extensions.get::<Origin>().copied();
        let process = is_process(origin, parts.extensions.get::<Peer>());
        if token.is_none() && process && s.cfg.acl.enabled {
            return Ok(Caller(internal_reader()));
        }
        resolve(s, token).map(Caller)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        Caller::of(s, parts).map_err(IntoResponse::into_response)
    }
}

/// `GET /v1/internal/acl/authorizer`: an agent of this DC (or a server) resolves the token
/// its caller sent (in `X-Consul-Token`; none: the anonymous token) and gets the compiled
/// [`Authorizer`] to check its own endpoints with. 401 with ACLs off, 403 "ACL not found"
/// for an unknown token.
pub async fn authorizer(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(origin, &peer, "resolve ACL tokens", |id| match id {
        SpiffeId::Agent { datacenter, .. } | SpiffeId::Server { datacenter, .. } => {
            *datacenter == s.cfg.datacenter
        }
        _ => false,
    })?;
    if !s.cfg.acl.enabled {
        return Err(disabled());
    }
    Ok(Json(resolve(&s, token_of(&headers))?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_x_consul_token_else_a_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(token_of(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(token_of(&h), Some("abc"));
        h.insert("x-consul-token", " def ".parse().unwrap());
        assert_eq!(token_of(&h), Some("def"));
        h.insert("x-consul-token", "".parse().unwrap());
        assert_eq!(token_of(&h), Some("abc"), "an empty header is no token");
        h.insert("authorization", "Basic abc".parse().unwrap());
        h.remove("x-consul-token");
        assert_eq!(token_of(&h), None);
    }
}
