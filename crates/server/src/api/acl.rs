//! Consul's `/v1/acl/` endpoints: bootstrap, tokens, policies and roles, stored in the
//! replicated ACL state ([`strait_acl::AclState`], changed by `Command::Acl` through the Raft
//! log, so any server takes a write: a follower forwards it to the leader).
//!
//! On the loopback API; on the mTLS API also for this DC's agents, which relay their callers'
//! requests (as Consul's agents do) with the caller's token, and on the primary for the
//! servers of other DCs, which forward their callers' writes of global objects (below);
//! bootstrap only on the loopback API. With `acl.enabled = false` every one answers Consul's
//! 401 "ACL support disabled". Reads need `acl = "read"`, writes `acl = "write"` (or a
//! management token); before bootstrap no token exists, so only `PUT /v1/acl/bootstrap` is
//! answered. Reads are answered from the asked server's copy (as
//! Consul's `?stale`), which a write made on that server has reached when it is answered.
//!
//! In a secondary DC ([`crate::acl_replication`]): bootstrap is refused (it happens in the
//! primary); writes of global tokens, of policies and of roles go to the primary with the
//! caller's token and are answered once replicated here; `Local` tokens are written here.
//! Answers carry the ACL index in `X-Consul-Index`.
//!
//! Secrets are stored as hashes (`strait_acl::secret`): the `SecretID` appears only in the
//! answers to bootstrap and token creation; reads and lists cannot show it, and leave it out.

use super::authz::{denied, disabled, not_found, resolve, token_of, with_state};
use super::{indexed, ApiError, ApiResult, AppState, Origin};
use crate::acl_replication::to_primary;
use crate::replicated::Command;
use crate::state::Server;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde::de::DeserializeOwned;
use strait_acl::{AclCommand, AclState, Authorizer, Policy, Role, SecretId, StoredToken, Token};
use strait_identity::spiffe::SpiffeId;
use strait_rpc::serve::Peer;
use time::OffsetDateTime;

/// A caller these endpoints take: the loopback API; an agent of this DC relaying its caller's
/// request with the caller's token; on the primary also a server of another DC, which
/// forwards its caller's write with the caller's token ([`to_primary`]). The token decides.
pub struct Admitted;

impl FromRequestParts<AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> ApiResult<Self> {
        let origin = parts.extensions.get::<Origin>().copied();
        let peer = parts
            .extensions
            .get::<Peer>()
            .and_then(|p| p.identity.as_ref());
        let other_dc = |id: &SpiffeId| matches!(id, SpiffeId::Server { datacenter, .. } if *datacenter != s.cfg.datacenter);
        let our_agent = |id: &SpiffeId| matches!(id, SpiffeId::Agent { datacenter, .. } if *datacenter == s.cfg.datacenter);
        match origin {
            Some(Origin::Local) => Ok(Admitted),
            _ if peer.is_some_and(our_agent) => Ok(Admitted),
            _ if s.cfg.is_primary() && peer.is_some_and(other_dc) => Ok(Admitted),
            _ => super::operator::local_only(Origin::Mesh, "managing ACLs").map(|()| Admitted),
        }
    }
}

/// ACLs on, or Consul's 401.
fn enabled(s: &Server) -> ApiResult<()> {
    match s.cfg.acl.enabled {
        true => Ok(()),
        false => Err(disabled()),
    }
}

/// The caller's authorizer, on a server with ACLs on.
fn caller(s: &Server, headers: &HeaderMap) -> ApiResult<Authorizer> {
    enabled(s)?;
    resolve(s, token_of(headers))
}

fn reader(s: &Server, headers: &HeaderMap) -> ApiResult<()> {
    caller(s, headers)?.acl_read().map_err(denied)
}

fn writer(s: &Server, headers: &HeaderMap) -> ApiResult<()> {
    caller(s, headers)?.acl_write().map_err(denied)
}

/// In a secondary DC, a write of a global object goes to the primary: the path it takes
/// there (`None`: this server writes it). Path IDs must be UUIDs, so the path needs no
/// escaping.
fn global_write(
    s: &Server,
    global: bool,
    path: &str,
    id: Option<&str>,
) -> ApiResult<Option<String>> {
    if s.cfg.is_primary() || !global {
        return Ok(None);
    }
    match id {
        None => Ok(Some(path.to_owned())),
        Some(id) if strait_acl::is_uuid(id) => Ok(Some(format!("{path}/{id}"))),
        Some(id) => Err(ApiError::bad_request(format!(
            "ID {id:?} in the path is not a UUID"
        ))),
    }
}

fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

/// Commits `command` and waits until this server has applied it (a follower forwards it to
/// the leader, which answers once it applied it), so the answer shows what was written and a
/// read on this server right after sees it.
async fn propose(s: &Server, command: AclCommand) -> ApiResult<u64> {
    let index = s.write(Command::Acl(command)).await?;
    applied(s, index).await?;
    Ok(index)
}

/// Waits until this server has applied log `index`.
async fn applied(s: &Server, index: u64) -> ApiResult<()> {
    let consensus = s
        .consensus
        .get()
        .ok_or_else(|| ApiError::internal("no Raft"))?;
    consensus
        .raft()
        .wait(Some(std::time::Duration::from_secs(10)))
        .applied_index_at_least(Some(index), "an ACL write")
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the write was committed but this server has not applied it yet: {e}"),
            )
        })?;
    Ok(())
}

/// A stored token as the API shows it, with its secret when the caller just chose or got it.
fn shown(s: &Server, accessor_id: &str, secret: Option<SecretId>) -> ApiResult<Response> {
    let (token, index) = with_state(s, |acl| {
        (acl.token(accessor_id).map(|t| t.token.clone()), acl.index())
    })?;
    let mut token = token.ok_or_else(not_found)?;
    token.secret_id = secret;
    Ok(indexed(index, token))
}

/// `true` (the answer to a delete), with the ACL index.
fn deleted(s: &Server) -> ApiResult<Response> {
    Ok(indexed(with_state(s, AclState::index)?, true))
}

/// `PUT /v1/acl/bootstrap`: once per cluster, the management token (its secret is
/// `acl.tokens.initial_management` when set); again: Consul's 403. Loopback only, and in
/// the primary DC only.
pub async fn bootstrap(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
) -> ApiResult<Response> {
    super::operator::local_only(origin, "managing ACLs")?;
    enabled(&s)?;
    if !s.cfg.is_primary() {
        return Err(ApiError::forbidden(format!(
            "Permission denied: ACL bootstrap happens in the primary datacenter {}; datacenter {} replicates its ACLs from there",
            s.cfg.primary_datacenter, s.cfg.datacenter
        )));
    }
    let initial = s.cfg.acl.tokens.initial_management.clone();
    let (command, secret) = strait_acl::prepare_bootstrap(initial, OffsetDateTime::now_utc());
    let AclCommand::Bootstrap(stored) = &command else {
        unreachable!("prepare_bootstrap prepares a bootstrap");
    };
    let accessor = stored.token.accessor_id.clone();
    match s.write(Command::Acl(command)).await {
        Err(crate::replicated::WriteFailure::Refused(why)) => {
            Err(ApiError::forbidden(format!("Permission denied: {why}")))
        }
        Err(e) => Err(e.into()),
        Ok(index) => {
            applied(&s, index).await?;
            tracing::info!(accessor_id = %accessor, "ACLs bootstrapped");
            shown(&s, &accessor, Some(secret))
        }
    }
}

/// `PUT /v1/acl/token`: a new token (its secret is generated unless the body gives one);
/// the answer is the only one that shows the `SecretID`.
pub async fn token_create(
    State(s): State<AppState>,
    _: Admitted,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    enabled(&s)?;
    let token: Token = parse("token", &body)?;
    if let Some(path) = global_write(&s, !token.local, "/v1/acl/token", None)? {
        return to_primary(&s, Method::PUT, &path, &headers, body.to_vec()).await;
    }
    writer(&s, &headers)?;
    let (stored, secret) = StoredToken::create(token, OffsetDateTime::now_utc());
    let accessor = stored.token.accessor_id.clone();
    propose(&s, AclCommand::CreateToken(stored)).await?;
    shown(&s, &accessor, Some(secret))
}

/// `PUT /v1/acl/token/:AccessorID`: replaces what the token grants and its description.
pub async fn token_update(
    State(s): State<AppState>,
    _: Admitted,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    enabled(&s)?;
    if let Some(path) = global_write(&s, !is_local(&s, &id)?, "/v1/acl/token", Some(&id))? {
        return to_primary(&s, Method::PUT, &path, &headers, body.to_vec()).await;
    }
    writer(&s, &headers)?;
    let mut token: Token = parse("token", &body)?;
    same_id("AccessorID", &mut token.accessor_id, &id)?;
    propose(&s, AclCommand::UpdateToken(token)).await?;
    shown(&s, &id, None)
}

/// Whether `accessor_id` is a `Local` token of this DC (one it does not know is not).
fn is_local(s: &Server, accessor_id: &str) -> ApiResult<bool> {
    with_state(s, |acl| {
        acl.token(accessor_id).is_some_and(|t| t.token.local)
    })
}

/// An update's body names the object of its path, or none.
fn same_id(field: &str, body: &mut String, path: &str) -> ApiResult<()> {
    if !body.is_empty() && body != path {
        return Err(ApiError::bad_request(format!(
            "{field} {body} in the body is not the {path} of the path"
        )));
    }
    *body = path.to_owned();
    Ok(())
}

/// `GET /v1/acl/token/:AccessorID` (no `SecretID`: only its hash is stored).
pub async fn token_read(
    State(s): State<AppState>,
    _: Admitted,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    reader(&s, &headers)?;
    shown(&s, &id, None)
}

/// `GET /v1/acl/token/self`: the caller's own token; needs no rights.
pub async fn token_self(
    State(s): State<AppState>,
    _: Admitted,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let me = caller(&s, &headers)?;
    shown(&s, me.accessor_id(), None)
}

/// `DELETE /v1/acl/token/:AccessorID`: `true`, as Consul answers.
pub async fn token_delete(
    State(s): State<AppState>,
    _: Admitted,
    Path(accessor_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    enabled(&s)?;
    let global = !is_local(&s, &accessor_id)?;
    if let Some(path) = global_write(&s, global, "/v1/acl/token", Some(&accessor_id))? {
        return to_primary(&s, Method::DELETE, &path, &headers, Vec::new()).await;
    }
    writer(&s, &headers)?;
    propose(&s, AclCommand::DeleteToken { accessor_id }).await?;
    deleted(&s)
}

/// `GET /v1/acl/tokens`: every token, without secrets.
pub async fn token_list(
    State(s): State<AppState>,
    _: Admitted,
    headers: HeaderMap,
) -> ApiResult<Response> {
    reader(&s, &headers)?;
    let (tokens, index) = with_state(&s, |acl| {
        let tokens: Vec<Token> = acl.tokens().map(|t| t.token.clone()).collect();
        (tokens, acl.index())
    })?;
    Ok(indexed(index, tokens))
}

/// Policies and roles: objects with an `ID`, created, replaced, read, listed and deleted
/// alike.
trait Object: serde::Serialize + DeserializeOwned + Clone {
    const WHAT: &'static str;
    /// Fields Consul's list answers leave out.
    const NOT_LISTED: &'static [&'static str];
    fn id(&mut self) -> &mut String;
    fn id_of(&self) -> &str;
    fn set(self) -> AclCommand;
    /// Replaces the existing object only (refused in the log if it was deleted meanwhile).
    fn update(self) -> AclCommand;
    fn delete(id: String) -> AclCommand;
    fn each(acl: &AclState) -> Vec<&Self>;

    fn find(acl: &AclState, id: &str) -> Option<Self> {
        Self::each(acl)
            .into_iter()
            .find(|o| o.id_of() == id)
            .cloned()
    }

    fn all(acl: &AclState) -> Vec<serde_json::Value> {
        let listed = |o: &Self| {
            let mut v = serde_json::to_value(o).ok()?;
            let fields = v.as_object_mut()?;
            for name in Self::NOT_LISTED {
                fields.remove(*name);
            }
            Some(v)
        };
        Self::each(acl).into_iter().filter_map(listed).collect()
    }
}

macro_rules! object {
    ($kind:ty, $what:literal, $not_listed:expr, $set:ident, $update:ident, $delete:ident, $each:ident) => {
        impl Object for $kind {
            const WHAT: &'static str = $what;
            const NOT_LISTED: &'static [&'static str] = $not_listed;
            fn id(&mut self) -> &mut String {
                &mut self.id
            }
            fn id_of(&self) -> &str {
                &self.id
            }
            fn set(self) -> AclCommand {
                AclCommand::$set(self)
            }
            fn update(self) -> AclCommand {
                AclCommand::$update(self)
            }
            fn delete(id: String) -> AclCommand {
                AclCommand::$delete { id }
            }
            fn each(acl: &AclState) -> Vec<&Self> {
                acl.$each().collect()
            }
        }
    };
}

object!(
    Policy,
    "policy",
    &["Rules"],
    SetPolicy,
    UpdatePolicy,
    DeletePolicy,
    policies
);
object!(Role, "role", &[], SetRole, UpdateRole, DeleteRole, roles);

fn read_object<T: Object>(s: &Server, id: &str) -> ApiResult<Response> {
    let (found, index) = with_state(s, |acl| (T::find(acl, id), acl.index()))?;
    Ok(indexed(index, found.ok_or_else(not_found)?))
}

/// `/v1/acl/policy` or `/v1/acl/role`.
fn path_of<T: Object>() -> String {
    format!("/v1/acl/{}", T::WHAT)
}

/// `PUT /v1/acl/policy` and `/v1/acl/role`: a new one (its `ID` is chosen here).
async fn create<T: Object>(s: AppState, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    enabled(&s)?;
    if let Some(path) = global_write(&s, true, &path_of::<T>(), None)? {
        return to_primary(&s, Method::PUT, &path, &headers, body.to_vec()).await;
    }
    writer(&s, &headers)?;
    let mut object: T = parse(T::WHAT, &body)?;
    if !object.id().is_empty() {
        return Err(ApiError::bad_request(format!(
            "ID: cannot be given when creating a {what}; update one with PUT /v1/acl/{what}/<ID>",
            what = T::WHAT
        )));
    }
    let id = strait_acl::new_uuid();
    *object.id() = id.clone();
    propose(&s, object.set()).await?;
    read_object::<T>(&s, &id)
}

/// `PUT /v1/acl/policy/:id` and `/v1/acl/role/:id`: replaces an existing one.
async fn update<T: Object>(
    s: AppState,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    enabled(&s)?;
    if let Some(path) = global_write(&s, true, &path_of::<T>(), Some(&id))? {
        return to_primary(&s, Method::PUT, &path, &headers, body.to_vec()).await;
    }
    writer(&s, &headers)?;
    let mut object: T = parse(T::WHAT, &body)?;
    same_id("ID", object.id(), &id)?;
    if with_state(&s, |acl| T::find(acl, &id))?.is_none() {
        return Err(not_found());
    }
    propose(&s, object.update()).await?;
    read_object::<T>(&s, &id)
}

async fn read<T: Object>(s: AppState, id: String, headers: HeaderMap) -> ApiResult<Response> {
    reader(&s, &headers)?;
    read_object::<T>(&s, &id)
}

async fn delete<T: Object>(s: AppState, id: String, headers: HeaderMap) -> ApiResult<Response> {
    enabled(&s)?;
    if let Some(path) = global_write(&s, true, &path_of::<T>(), Some(&id))? {
        return to_primary(&s, Method::DELETE, &path, &headers, Vec::new()).await;
    }
    writer(&s, &headers)?;
    propose(&s, T::delete(id)).await?;
    deleted(&s)
}

async fn list<T: Object>(s: AppState, headers: HeaderMap) -> ApiResult<Response> {
    reader(&s, &headers)?;
    let (all, index) = with_state(&s, |acl| (T::all(acl), acl.index()))?;
    Ok(indexed(index, all))
}

/// The handlers of one kind of object, for the router.
macro_rules! object_routes {
    ($kind:ty, $create:ident, $update:ident, $read:ident, $delete:ident, $list:ident) => {
        pub async fn $create(
            State(s): State<AppState>,
            _: Admitted,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult<Response> {
            create::<$kind>(s, headers, body).await
        }
        pub async fn $update(
            State(s): State<AppState>,
            _: Admitted,
            Path(id): Path<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult<Response> {
            update::<$kind>(s, id, headers, body).await
        }
        pub async fn $read(
            State(s): State<AppState>,
            _: Admitted,
            Path(id): Path<String>,
            headers: HeaderMap,
        ) -> ApiResult<Response> {
            read::<$kind>(s, id, headers).await
        }
        pub async fn $delete(
            State(s): State<AppState>,
            _: Admitted,
            Path(id): Path<String>,
            headers: HeaderMap,
        ) -> ApiResult<Response> {
            delete::<$kind>(s, id, headers).await
        }
        pub async fn $list(
            State(s): State<AppState>,
            _: Admitted,
            headers: HeaderMap,
        ) -> ApiResult<Response> {
            list::<$kind>(s, headers).await
        }
    };
}

object_routes!(
    Policy,
    policy_create,
    policy_update,
    policy_read,
    policy_delete,
    policy_list
);
object_routes!(
    Role,
    role_create,
    role_update,
    role_read,
    role_delete,
    role_list
);
