//! Maintenance mode as Consul's agent has it: `PUT /v1/agent/maintenance?enable=&reason=`
//! adds (or removes) the critical check `_node_maintenance`, and
//! `PUT /v1/agent/service/maintenance/:id?enable=&reason=` the check
//! `_service_maintenance:<id>` of one local service. They are checks registered on their own,
//! so they are kept across restarts and go with their service.

use crate::acl::Caller;
use crate::api::{blocking, err};
use crate::definition::{CheckDefinition, NODE_MAINTENANCE, SERVICE_MAINTENANCE_PREFIX};
use crate::state::Agent;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

/// `PUT /v1/agent/maintenance`.
pub async fn node(
    State(a): State<Arc<Agent>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(denied) = caller.check(|z| z.node_write(&a.cfg.node_name)) {
        return denied.into_response();
    }
    let def = CheckDefinition {
        check_id: NODE_MAINTENANCE.into(),
        name: "Node Maintenance Mode".into(),
        notes: reason(&q, "node"),
        ..Default::default()
    };
    set(&a, &q, def).await
}

/// `PUT /v1/agent/service/maintenance/:id`; 404 for a service this agent does not have.
pub async fn service(
    State(a): State<Arc<Agent>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(name) = crate::permissions::service_name(&a, &id) else {
        return err(StatusCode::NOT_FOUND, format!("Unknown service ID {id:?}"));
    };
    if let Err(denied) = caller.check(|z| z.service_write(&name)) {
        return denied.into_response();
    }
    let def = CheckDefinition {
        check_id: format!("{SERVICE_MAINTENANCE_PREFIX}{id}"),
        name: "Service Maintenance Mode".into(),
        notes: reason(&q, "service"),
        service_id: id,
        ..Default::default()
    };
    set(&a, &q, def).await
}

/// `?reason=`, else Consul's default text.
fn reason(q: &HashMap<String, String>, what: &str) -> String {
    match q.get("reason").filter(|r| !r.is_empty()) {
        Some(r) => r.clone(),
        None => format!(
            "Maintenance mode is enabled for this {what}, but no reason was provided. This is a default message."
        ),
    }
}

/// Adds `def` when `?enable=` is true, removes its check when false (a no-op when there is
/// none); `enable` is Go's ParseBool, as Consul's.
async fn set(a: &Agent, q: &HashMap<String, String>, def: CheckDefinition) -> Response {
    let enable = match q.get("enable").map(String::as_str) {
        None => return err(StatusCode::BAD_REQUEST, "Missing value for enable"),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
        Some(v) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("Invalid value for enable: {v:?}"),
            )
        }
    };
    let local = a.local.clone();
    let id = def.check_id.clone();
    let done = blocking(move || match enable {
        true => local.add_check(def).map(drop),
        false => local.remove_check(&def.check_id).map(drop),
    })
    .await;
    match done {
        Ok(()) => {
            tracing::info!(check = %id, enable, "maintenance mode set through the local API");
            (StatusCode::OK, "").into_response()
        }
        Err(e) => err(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}
