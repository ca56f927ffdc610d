//! Whose request this is, on the agent's local API: the caller's token (`X-Consul-Token`,
//! else `Authorization: Bearer`, else the agent's `acl.tokens.default`, else the anonymous
//! token) resolved through this DC's servers (`GET /v1/internal/acl/authorizer`) into an
//! [`Authorizer`] that the handlers ask before they act.
//!
//! Resolved tokens are cached by the hash of their secret for `acl.token_ttl` (Consul's
//! `token_ttl`, default 30 s), so a revoked token stops working within it. When no server
//! answers, `acl.down_policy` decides: `extend-cache` keeps using what was resolved last
//! (a token never resolved is refused), `deny` refuses, `allow` allows everything. With
//! `acl.enabled = false` every caller may do anything and no server is asked; the token a
//! caller sent still travels with the requests the agent relays, so servers with ACLs on
//! check it.
//!
//! Secrets are never logged; logs name a token by its `AccessorID`.

use crate::api::err;
use crate::state::Agent;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strait_acl::{AclConfig, Authorizer, Denied, DownPolicy, SecretHash, SecretId};

pub use strait_acl::ANONYMOUS_SECRET;

/// The servers' endpoint that compiles a token into its [`Authorizer`].
const RESOLVE_PATH: &str = "/v1/internal/acl/authorizer";

/// How long one resolution may take before the servers count as unreachable.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request the caller's token does not allow (403, Consul's message), or whose token
/// cannot be resolved; answered as `status` with `message`.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, message: impl std::fmt::Display) -> Refused {
        let message = message.to_string();
        Refused { status, message }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        err(self.status, self.message)
    }
}

/// The agent's ACL settings and its cache of resolved tokens.
pub struct Acl {
    cfg: AclConfig,
    ttl: Duration,
    /// By the hash of the secret (`None`: the anonymous token).
    cache: Mutex<HashMap<Option<SecretHash>, Cached>>,
    /// What every caller gets with ACLs off (or from `down_policy = "allow"`).
    allow_all: Arc<Authorizer>,
}

#[derive(Clone)]
struct Cached {
    auth: Arc<Authorizer>,
    resolved: Instant,
}

/// What the cache holds for a token at some instant.
enum Lookup {
    Fresh(Arc<Authorizer>),
    Stale(Arc<Authorizer>),
    Missing,
}

/// Why a token could not be resolved through the servers.
#[derive(Debug)]
enum Unresolved {
    /// The servers' answer (403 "ACL not found" for an unknown or expired token): final.
    Refused(StatusCode, String),
    /// No server answered (or not in a way that says anything about the token):
    /// `down_policy` decides.
    Down(String),
}

impl Acl {
    pub fn new(cfg: &AclConfig) -> Acl {
        Acl {
            ttl: cfg.token_ttl(),
            cfg: cfg.clone(),
            cache: Mutex::new(HashMap::new()),
            allow_all: Arc::new(Authorizer::management("acls-disabled")),
        }
    }

    /// The secret a request acts with: the one it presents, else `acl.tokens.default`;
    /// `None` is the anonymous token.
    pub fn secret_of(&self, headers: &HeaderMap) -> Option<SecretId> {
        self.or_default(presented(headers))
    }

    /// `presented`, else `acl.tokens.default`; `None` is the anonymous token.
    pub fn or_default(&self, presented: Option<&str>) -> Option<SecretId> {
        presented
            .map(SecretId::new)
            .or_else(|| self.cfg.tokens.default.clone())
    }

    fn lookup(&self, key: &Option<SecretHash>, now: Instant) -> Lookup {
        match strait_base::sync::lock(&self.cache).get(key) {
            None => Lookup::Missing,
            Some(c) if now.saturating_duration_since(c.resolved) < self.ttl => {
                Lookup::Fresh(c.auth.clone())
            }
            Some(c) => Lookup::Stale(c.auth.clone()),
        }
    }

    fn remember(&self, key: Option<SecretHash>, auth: Arc<Authorizer>, now: Instant) {
        let cached = Cached {
            auth,
            resolved: now,
        };
        strait_base::sync::lock(&self.cache).insert(key, cached);
    }

    fn forget(&self, key: &Option<SecretHash>) {
        strait_base::sync::lock(&self.cache).remove(key);
    }

    /// What `down_policy` makes of a token no server could resolve, given what the cache
    /// still holds for it.
    fn when_down(
        &self,
        stale: Option<Arc<Authorizer>>,
        why: &str,
    ) -> Result<Arc<Authorizer>, Refused> {
        let refuse = |policy: &str| {
            Refused::new(
                StatusCode::FORBIDDEN,
                format!("ACL not found: no server answered to resolve the token ({why}) and acl.down_policy = {policy}"),
            )
        };
        match self.cfg.down_policy {
            DownPolicy::Allow => Ok(self.allow_all.clone()),
            DownPolicy::Deny => Err(refuse("deny")),
            DownPolicy::ExtendCache => {
                stale.ok_or_else(|| refuse("extend-cache (token not cached)"))
            }
        }
    }
}

/// The secret a request presents: `X-Consul-Token`, else `Authorization: Bearer` (an empty
/// header is none).
fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = |name| {
        let text = headers.get(name)?.to_str().ok()?;
        Some(text.trim()).filter(|t| !t.is_empty())
    };
    value("x-consul-token").or_else(|| {
        value("authorization")?
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

impl Agent {
    /// What the holder of `secret` (`None`: the anonymous token) may do on this agent; the
    /// `Err` is the response to answer with (403 for an unknown token).
    pub async fn authorizer(&self, secret: Option<&SecretId>) -> Result<Arc<Authorizer>, Refused> {
        let acl = &self.acl;
        if !acl.cfg.enabled {
            return Ok(acl.allow_all.clone());
        }
        let key = secret.map(SecretId::hash);
        let stale = match acl.lookup(&key, Instant::now()) {
            Lookup::Fresh(auth) => return Ok(auth),
            Lookup::Stale(auth) => Some(auth),
            Lookup::Missing => None,
        };
        match self.resolve(secret).await {
            Ok(auth) => {
                tracing::debug!(
                    accessor = auth.accessor_id(),
                    "token resolved through the servers"
                );
                let auth = Arc::new(auth);
                acl.remember(key, auth.clone(), Instant::now());
                Ok(auth)
            }
            Err(Unresolved::Refused(status, msg)) => {
                acl.forget(&key);
                Err(Refused::new(status, msg))
            }
            Err(Unresolved::Down(why)) => {
                tracing::warn!(error = %why, down_policy = ?acl.cfg.down_policy,
                    cached = stale.is_some(), "cannot resolve an ACL token through the servers");
                acl.when_down(stale, &why)
            }
        }
    }

    async fn resolve(&self, secret: Option<&SecretId>) -> Result<Authorizer, Unresolved> {
        let resp = self
            .call_as(secret, Method::GET, RESOLVE_PATH, None, RESOLVE_TIMEOUT)
            .await
            .map_err(|e| Unresolved::Down(format!("{e:#}")))?;
        let text = || String::from_utf8_lossy(&resp.body).trim().to_string();
        match resp.status {
            StatusCode::OK => resp
                .json::<Authorizer>()
                .map_err(|e| Unresolved::Down(format!("the servers' authorizer: {e}"))),
            StatusCode::FORBIDDEN => Err(Unresolved::Refused(StatusCode::FORBIDDEN, text())),
            StatusCode::UNAUTHORIZED => Err(Unresolved::Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "this agent has acl.enabled = true but its servers answer {:?}: enable ACLs on the servers or disable them on the agent",
                    text()
                ),
            )),
            // Unreachable or without a leader: down_policy decides.
            status if status.is_server_error() => Err(Unresolved::Down(format!(
                "{} answered {status}: {}",
                resp.peer,
                text()
            ))),
            // Any other answer is a refusal, never a reason to apply down_policy (with
            // `allow`, a caller who could provoke one would be let in).
            status => Err(Unresolved::Refused(
                StatusCode::FORBIDDEN,
                format!("the servers could not resolve the token ({status}): {}", text()),
            )),
        }
    }
}

/// The caller of a local API request, as an extractor: its token resolved (see
/// [`Agent::authorizer`]); an unknown token is refused before the handler runs.
pub struct Caller {
    auth: Arc<Authorizer>,
    secret: Option<SecretId>,
}

impl Caller {
    /// `Ok` if `allowed` says so, else the 403 with Consul's message.
    pub fn check(
        &self,
        allowed: impl FnOnce(&Authorizer) -> Result<(), Denied>,
    ) -> Result<(), Refused> {
        allowed(&self.auth).map_err(|d| Refused::new(StatusCode::FORBIDDEN, d))
    }

    /// Whether `allowed` says so (for filtering what a read shows).
    pub fn may(&self, allowed: impl FnOnce(&Authorizer) -> Result<(), Denied>) -> bool {
        allowed(&self.auth).is_ok()
    }

    /// The secret to relay to the servers with the caller's requests.
    pub fn secret(&self) -> Option<&SecretId> {
        self.secret.as_ref()
    }
}

impl FromRequestParts<Arc<Agent>> for Caller {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, a: &Arc<Agent>) -> Result<Self, Refused> {
        let secret = a.acl.secret_of(&parts.headers);
        let auth = a.authorizer(secret.as_ref()).await?;
        Ok(Caller { auth, secret })
    }
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
