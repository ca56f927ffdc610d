//! The agent's local HTTP API (loopback only), in Consul's shapes for what we cover. Catalog
//! and health reads, config entries and members are forwarded to this DC's servers over mTLS
//! (with `?dc=` carried along, so they reach other DCs through the gateways).

use crate::acl::{Caller, Refused};
use crate::connect;
use crate::definition::{CheckDefinition, ServiceDefinition};
use crate::local::{AdminError, Source, TtlError};
use crate::maintenance;
use crate::metrics;
use crate::permissions;
use crate::state::Agent;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use strait_catalog::CheckStatus;
use strait_filter::Filter;

type S = Arc<Agent>;

pub fn router(agent: S) -> Router {
    Router::new()
        .route("/v1/agent/ready", get(ready))
        .route("/v1/agent/self", get(self_info))
        .route("/v1/agent/metrics", get(metrics::metrics))
        .route("/v1/agent/services", get(services))
        .route("/v1/agent/checks", get(checks))
        .route("/v1/agent/service/{id}", get(service))
        .route(
            "/v1/agent/health/service/name/{name}",
            get(crate::api_health::by_name),
        )
        .route(
            "/v1/agent/health/service/id/{id}",
            get(crate::api_health::by_id),
        )
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/check/register", put(register_check))
        .route("/v1/agent/maintenance", put(maintenance::node))
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(maintenance::service),
        )
        .route("/v1/agent/check/deregister/{id}", put(deregister_check))
        .route("/v1/agent/check/{verb}/{id}", put(ttl_update))
        .route("/v1/agent/members", get(members))
        .route("/v1/agent/connect/ca/roots", get(connect::roots))
        .route("/v1/agent/connect/ca/leaf/{service}", get(connect::leaf))
        // POST as Consul documents; PUT as py-consul sends it.
        .route(
            "/v1/agent/connect/authorize",
            post(connect::authorize).put(connect::authorize),
        )
        .route("/v1/agent/proxy/snapshot/{id}", get(snapshot))
        .route("/v1/agent/proxy/admin", get(proxy_admins))
        .route("/v1/agent/proxy/admin/{id}", put(set_proxy_admin))
        .fallback(forward)
        .method_not_allowed_fallback(strait_rpc::unsupported::method_fallback)
        .layer(axum::middleware::from_fn(
            strait_rpc::metrics::count_requests,
        ))
        .layer(axum::Extension(agent.http_requests.clone()))
        .with_state(agent)
}

pub(crate) fn err(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, format!("{msg}\n")).into_response()
}

async fn ready(State(a): State<S>) -> Response {
    match a.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => err(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

/// `GET /v1/agent/self`: Consul's `Config` (datacenter, node name, address, `Version` =
/// strait's) and `Member` (this agent in [`consul_member`]'s shape), and the trust domain.
async fn self_info(State(a): State<S>, caller: Caller) -> Result<Response, Refused> {
    caller.check(|z| z.agent_read(&a.cfg.node_name))?;
    let me = strait_proto::Member {
        node: a.cfg.node_name.clone(),
        address: a.cfg.advertise_addr.to_string(),
        datacenter: a.cfg.datacenter.clone(),
        role: "agent".into(),
        status: "alive".into(),
    };
    Ok(Json(json!({
        "Config": {
            "Datacenter": a.cfg.datacenter, "NodeName": a.cfg.node_name,
            "AdvertiseAddr": a.cfg.advertise_addr.to_string(), "Server": false,
            "Version": env!("CARGO_PKG_VERSION"), "Revision": "",
        },
        "Member": consul_member(&me),
        "TrustDomain": a.conn().map(|c| c.trust_domain.clone()),
    }))
    .into_response())
}

/// A member in Consul's `AgentMember` shape: `Tags.role` is `consul` for a server and `node`
/// for an agent, `Status` is serf's number (1 alive, 4 failed, 0 not heard from yet), and
/// `Port` is 0 (strait has no gossip port).
fn consul_member(m: &strait_proto::Member) -> serde_json::Value {
    let status = match m.status.as_str() {
        "alive" => 1,
        "failed" => 4,
        _ => 0,
    };
    let role = if m.role == "server" { "consul" } else { "node" };
    json!({
        "Name": m.node, "Addr": m.address, "Port": 0,
        "Tags": { "role": role, "dc": m.datacenter },
        "Status": status,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// A local service in Consul's `AgentService` shape.
pub(crate) fn agent_service(s: &strait_catalog::Service, dc: &str) -> serde_json::Value {
    json!({
        "ID": s.id, "Service": s.service, "Kind": s.kind, "Tags": s.tags, "Meta": s.meta,
        "Port": s.port, "Address": s.address, "TaggedAddresses": s.tagged_addresses,
        "Proxy": s.proxy, "Datacenter": dc,
    })
}

/// The entries of `map` whose value `?filter=` accepts (all without one); a bad expression
/// or a type error is a 400 naming it.
fn filtered(q: &HashMap<String, String>, map: BTreeMap<String, serde_json::Value>) -> Response {
    let Some(expr) = q.get("filter").filter(|f| !f.is_empty()) else {
        return Json(map).into_response();
    };
    let f = match Filter::parse(expr) {
        Ok(f) => f,
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("query parameter filter: {e}"),
            )
        }
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match f.matches(&v) {
            Ok(true) => {
                out.insert(k, v);
            }
            Ok(false) => {}
            Err(e) => return err(StatusCode::BAD_REQUEST, e),
        }
    }
    Json(out).into_response()
}

async fn services(
    State(a): State<S>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dc = a.cfg.datacenter.clone();
    let all = a
        .local
        .services()
        .into_iter()
        .filter(|s| caller.may(|z| z.service_read(&s.service)))
        .map(|s| (s.id.clone(), agent_service(&s, &dc)))
        .collect();
    filtered(&q, all)
}

/// `GET /v1/agent/service/<id>`: one local service, with Consul's `ContentHash`; blocking on
/// `?hash=` (up to `?wait=`, default 5 minutes) until the service differs from that hash.
async fn service(
    State(a): State<S>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let deadline = match wait_param(&q, Duration::from_secs(300), Duration::from_secs(600)) {
        Ok(wait) => tokio::time::Instant::now() + wait,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let mut changes = a.local.subscribe();
    loop {
        let Some(svc) = a.local.services().into_iter().find(|s| s.id == id) else {
            return err(StatusCode::NOT_FOUND, format!("unknown service ID {id:?}"));
        };
        if let Err(denied) = caller.check(|z| z.service_read(&svc.service)) {
            return denied.into_response();
        }
        let mut v = agent_service(&svc, &a.cfg.datacenter);
        let hash = content_hash(&v);
        let waiting = q.get("hash").is_some_and(|h| *h == hash);
        if !waiting || tokio::time::Instant::now() >= deadline {
            v["ContentHash"] = json!(hash);
            let mut resp = Json(v).into_response();
            if let Ok(h) = HeaderValue::from_str(&hash) {
                resp.headers_mut().insert("x-consul-contenthash", h);
            }
            return resp;
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// A blocking query's `?index=` (0 when absent); the error (a 400's) names the parameter.
pub(crate) fn index_param(q: &HashMap<String, String>) -> Result<u64, String> {
    match q.get("index").map(|v| (v, v.parse())) {
        None => Ok(0),
        Some((_, Ok(index))) => Ok(index),
        Some((v, Err(_))) => Err(format!("query parameter `index` = {v:?} is not a number")),
    }
}

/// A blocking query's `?wait=` (`default` when absent, at most `max`); the error (a 400's)
/// names the parameter.
pub(crate) fn wait_param(
    q: &HashMap<String, String>,
    default: Duration,
    max: Duration,
) -> Result<Duration, String> {
    match q.get("wait").map(|w| strait_rpc::duration::parse(w)) {
        None => Ok(default),
        Some(Ok(wait)) => Ok(wait.min(max)),
        Some(Err(e)) => Err(format!("query parameter `wait` = {e}")),
    }
}

/// A hash of the service as answered, for `?hash=` blocking (stable within one agent).
fn content_hash(v: &serde_json::Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Consul's shape: the catalog's view of each check, plus its `Notes`.
async fn checks(
    State(a): State<S>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let notes: HashMap<String, String> = a
        .local
        .check_specs()
        .into_iter()
        .map(|c| (c.check_id, c.notes))
        .collect();
    let all = a
        .local
        .checks()
        .into_iter()
        .filter(|c| permissions::read_check(&caller, &c.node, &c.service_name))
        .map(|c| {
            let mut v = json!(c);
            v["Notes"] = json!(notes.get(&c.check_id).cloned().unwrap_or_default());
            (c.check_id, v)
        })
        .collect();
    filtered(&q, all)
}

/// Runs `f` (which writes `data_dir/services.json`) on the blocking pool; a panic in it is
/// resumed here, as if it had run inline.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// `PUT /v1/agent/service/register`: a bad body is a 400 naming the field; nothing changes.
async fn register(State(a): State<S>, caller: Caller, body: Bytes) -> Response {
    let invalid = |e| {
        err(
            StatusCode::BAD_REQUEST,
            format!("invalid service definition: {e}"),
        )
    };
    let def: ServiceDefinition = match crate::decode::json(&body) {
        Ok(d) => d,
        Err(e) => return invalid(format!("{e}")),
    };
    match permissions::written_by(&a, &def) {
        Ok(services) => {
            if let Err(denied) = permissions::write_services(&caller, &services) {
                return denied.into_response();
            }
        }
        Err(e) => return invalid(format!("{e:#}")),
    }
    // The definition is persisted (a file write): off the runtime's two workers.
    let local = a.local.clone();
    match blocking(move || local.insert(def, Source::Api)).await {
        Ok(id) => {
            tracing::info!(service = %id, "service registered through the local API");
            (StatusCode::OK, "").into_response()
        }
        Err(e) => invalid(format!("{e:#}")),
    }
}

async fn deregister(State(a): State<S>, caller: Caller, Path(id): Path<String>) -> Response {
    if let Some(name) = permissions::service_name(&a, &id) {
        if let Err(denied) = caller.check(|z| z.service_write(&name)) {
            return denied.into_response();
        }
    }
    let local = a.local.clone();
    let removing = id.clone();
    match blocking(move || local.remove(&removing)).await {
        Ok(true) => (StatusCode::OK, "").into_response(),
        Ok(false) => err(StatusCode::NOT_FOUND, format!("unknown service ID {id:?}")),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// `PUT /v1/agent/check/register`: a check on its own, of the node or of a local service
/// (`ServiceID`); a bad body is a 400 naming the field.
async fn register_check(State(a): State<S>, caller: Caller, body: Bytes) -> Response {
    let def: CheckDefinition = match crate::decode::json(&body) {
        Ok(d) => d,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid check: {e}")),
    };
    // A check of a service this agent lacks is refused below, naming the field.
    let service = match def.service_id.as_str() {
        "" => Some(String::new()),
        id => permissions::service_name(&a, id),
    };
    if let Some(service) = service {
        let replaced = permissions::write_existing_check(&a, &caller, &def.check_id);
        if let Err(denied) = replaced.and(permissions::write_check(&a, &caller, &service)) {
            return denied.into_response();
        }
    }
    let local = a.local.clone();
    match blocking(move || local.add_check(def)).await {
        Ok(id) => {
            tracing::info!(check = %id, "check registered through the local API");
            (StatusCode::OK, "").into_response()
        }
        Err(e) => err(StatusCode::BAD_REQUEST, format!("invalid check: {e:#}")),
    }
}

/// `PUT /v1/agent/check/deregister/<id>`: a check registered on its own.
async fn deregister_check(State(a): State<S>, caller: Caller, Path(id): Path<String>) -> Response {
    if let Err(denied) = permissions::write_existing_check(&a, &caller, &id) {
        return denied.into_response();
    }
    let local = a.local.clone();
    let removing = id.clone();
    match blocking(move || local.remove_check(&removing)).await {
        Ok(true) => (StatusCode::OK, "").into_response(),
        Ok(false) => {
            let msg = format!("no check {id:?} was registered on its own with this agent");
            err(StatusCode::NOT_FOUND, msg)
        }
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// The body of `PUT /v1/agent/check/update/<id>`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CheckUpdate {
    status: String,
    #[serde(default)]
    output: String,
}

/// `PUT /v1/agent/check/pass|warn|fail/<id>` (`?note=` becomes the output) and
/// `PUT /v1/agent/check/update/<id>` `{"Status": "passing", "Output": "..."}`: a TTL check's
/// status, as the application reports it.
async fn ttl_update(
    State(a): State<S>,
    caller: Caller,
    Path((verb, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(denied) = permissions::write_existing_check(&a, &caller, &id) {
        return denied.into_response();
    }
    let note = q.get("note").cloned().unwrap_or_default();
    let (status, output) = match verb.as_str() {
        "pass" => (CheckStatus::Passing, note),
        "warn" => (CheckStatus::Warning, note),
        "fail" => (CheckStatus::Critical, note),
        "update" => {
            let u: CheckUpdate = match crate::decode::json(&body) {
                Ok(u) => u,
                Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
            };
            match CheckStatus::ALL
                .into_iter()
                .find(|s| s.as_str() == u.status)
            {
                Some(s) => (s, u.output),
                None => {
                    let msg = format!(
                        "field Status = {:?}: expected passing, warning or critical",
                        u.status
                    );
                    return err(StatusCode::BAD_REQUEST, msg);
                }
            }
        }
        _ => {
            let path = format!("/v1/agent/check/{verb}/{id}");
            return strait_rpc::unsupported::response(&Method::PUT, &path);
        }
    };
    match a.local.set_ttl_status(&id, status, &output) {
        Ok(()) => (StatusCode::OK, "").into_response(),
        Err(e @ TtlError::UnknownCheck(_)) => err(StatusCode::NOT_FOUND, e),
        Err(e @ TtlError::NotTtl(_)) => err(StatusCode::BAD_REQUEST, e),
    }
}

/// `GET /v1/agent/members` (`?dc=`): the DC's members in Consul's shape ([`consul_member`]);
/// strait's own shape is `/v1/internal/members`.
async fn members(
    State(a): State<S>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = match q.get("dc") {
        Some(dc) => {
            // Query values arrive decoded: check before putting one back into a URL.
            if let Err(e) = strait_identity::spiffe::validate_name("dc", dc) {
                return err(StatusCode::BAD_REQUEST, format!("query parameter {e}"));
            }
            format!("/v1/internal/members?dc={dc}")
        }
        None => "/v1/internal/members".to_string(),
    };
    let resp = match a
        .call_as(
            caller.secret(),
            Method::GET,
            &path,
            None,
            Duration::from_secs(30),
        )
        .await
    {
        Ok(resp) if resp.status.is_success() => resp,
        Ok(resp) => return resp.into_response(),
        Err(e) => return err(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    };
    match resp.json::<Vec<strait_proto::Member>>() {
        Ok(members) => {
            let visible = members
                .iter()
                .filter(|m| caller.may(|z| z.node_read(&m.node)));
            Json(visible.map(consul_member).collect::<Vec<_>>()).into_response()
        }
        Err(e) => err(
            StatusCode::BAD_GATEWAY,
            format!("the servers' member list: {e}"),
        ),
    }
}

/// A proxy's snapshot; blocking on `?index=<version>` (up to `?wait=`, default 30s).
async fn snapshot(
    State(a): State<S>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // It carries the service's private key: as much as the service's leaf.
    if let Err(denied) = write_proxy(&a, &caller, &id) {
        return denied.into_response();
    }
    let after = match index_param(&q) {
        Ok(index) => index,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let wait = match wait_param(&q, Duration::from_secs(30), Duration::from_secs(300)) {
        Ok(wait) => wait,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let mut gen = a.snapshot_gen.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = strait_base::sync::lock(&a.snapshots).get(&id).cloned();
        let timed_out = tokio::time::Instant::now() >= deadline;
        match current {
            Some(s) if s.version > after || timed_out => {
                // Checked again on the way out: a caller who asked before the proxy was
                // registered (or while it was being replaced) was let wait, not let in.
                let proxies = a.local.proxies();
                let Some(p) = proxies.iter().find(|p| p.proxy_id == id) else {
                    return err(
                        StatusCode::NOT_FOUND,
                        format!("no proxy {id:?} is registered with this agent"),
                    );
                };
                if let Err(denied) = caller.check(|z| z.service_write(&p.service)) {
                    return denied.into_response();
                }
                let mut resp = Json(&*s).into_response();
                if let Ok(v) = HeaderValue::from_str(&s.version.to_string()) {
                    resp.headers_mut().insert("x-consul-index", v);
                }
                return resp;
            }
            None if timed_out || !a.local.proxies().iter().any(|p| p.proxy_id == id) => {
                return err(StatusCode::NOT_FOUND, format!("no proxy {id:?} is registered with this agent (or its snapshot is not built yet)"));
            }
            _ => {}
        }
        tokio::select! {
            _ = gen.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// `GET /v1/agent/proxy/admin` (strait's, not Consul's): every local proxy and the admin
/// endpoint it registered (`null` until it did), for `strait doctor`.
async fn proxy_admins(State(a): State<S>, caller: Caller) -> Result<Response, Refused> {
    caller.check(|z| z.agent_read(&a.cfg.node_name))?;
    Ok(Json(
        a.local
            .proxy_admins()
            .into_iter()
            .map(|(p, admin)| {
                json!({
                    "ProxyID": p.proxy_id, "Kind": p.kind, "Service": p.service,
                    "AdminAddress": admin.map(|a| a.to_string()),
                })
            })
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// What acting for local proxy `id` needs: `service:write` on the service it serves (a
/// sidecar's destination, a gateway's own); nothing to check for an unknown proxy (the
/// handler answers 404).
fn write_proxy(a: &Agent, caller: &Caller, id: &str) -> Result<(), Refused> {
    match a.local.proxies().into_iter().find(|p| p.proxy_id == id) {
        Some(p) => caller.check(|z| z.service_write(&p.service)),
        None => Ok(()),
    }
}

/// The body of `PUT /v1/agent/proxy/admin/<proxy id>`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminBody {
    #[serde(rename = "AdminAddress")]
    admin_address: std::net::SocketAddr,
}

/// `PUT /v1/agent/proxy/admin/<proxy id>` `{"AdminAddress": "127.0.0.1:19000"}`: a proxy
/// says where its admin endpoint listens (Consul's registrations have no such field).
async fn set_proxy_admin(
    State(a): State<S>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(denied) = write_proxy(&a, &caller, &id) {
        return denied.into_response();
    }
    let body: AdminBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    let local = a.local.clone();
    let set = tokio::task::spawn_blocking(move || local.set_admin(&id, body.admin_address));
    match set.await {
        Ok(Ok(())) => (StatusCode::OK, "").into_response(),
        Ok(Err(e @ AdminError::UnknownProxy(_))) => err(StatusCode::NOT_FOUND, e),
        Ok(Err(e @ AdminError::NotLoopback(_))) => err(StatusCode::BAD_REQUEST, e),
        Ok(Err(e @ AdminError::Save { .. })) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Sends a request to the servers on behalf of the caller holding `secret` (`None`: the
/// anonymous token; see [`Agent::call_as`]) and answers with their answer.
pub(crate) async fn relay(
    a: &Agent,
    secret: Option<&strait_acl::SecretId>,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Response {
    let wait = if path.contains("wait=") {
        Duration::from_secs(610)
    } else {
        Duration::from_secs(30)
    };
    match a.call_as(secret, method, path, body, wait).await {
        Ok(r) => r.into_response(),
        Err(e) => err(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    }
}

/// Catalog, health, config, connect, ACL and federation requests go to the servers as they are, with the
/// caller's token (or `acl.tokens.default`): the servers check it.
async fn forward(State(a): State<S>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let allowed = [
        "/v1/catalog/",
        "/v1/health/",
        "/v1/config",
        "/v1/connect/",
        "/v1/internal/members",
        "/v1/internal/federation/states",
        "/v1/status/",
        "/v1/acl/",
    ];
    if !allowed.iter().any(|p| path.starts_with(p)) {
        return strait_rpc::unsupported::response(req.method(), &path);
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or(path);
    let method = req.method().clone();
    let secret = a.acl.secret_of(req.headers());
    let body = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) if b.is_empty() => None,
        Ok(b) => Some(b.to_vec()),
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    relay(&a, secret.as_ref(), method, &pq, body).await
}
