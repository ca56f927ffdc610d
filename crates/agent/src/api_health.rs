//! `GET /v1/agent/health/service/name/<name>` and `/id/<id>`: a local service's health as
//! the agent sees it, in Consul's shape (`AggregatedStatus`, `Service`, `Checks`) and with
//! Consul's status codes, so a load balancer or script can probe the agent: 200 passing, 429
//! warning, 503 critical, 404 no such service.

use crate::acl::Caller;
use crate::api::{agent_service, err};
use crate::state::Agent;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use strait_catalog::{CheckStatus, Service};

/// One service's entry and its worst status (its checks and the node's, as Consul counts).
fn entry(a: &Agent, svc: &Service) -> (CheckStatus, serde_json::Value) {
    let checks: Vec<_> = a
        .local
        .checks()
        .into_iter()
        .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
        .collect();
    let worst = checks
        .iter()
        .map(|c| CheckStatus::parse(&c.status))
        .max()
        .unwrap_or(CheckStatus::Passing);
    let v = json!({
        "AggregatedStatus": worst.as_str(),
        "Service": agent_service(svc, &a.cfg.datacenter),
        "Checks": checks,
    });
    (worst, v)
}

fn code(status: CheckStatus) -> StatusCode {
    match status {
        CheckStatus::Passing => StatusCode::OK,
        CheckStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
        CheckStatus::Critical => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Every local instance of service `name`; the status code is the worst instance's.
pub async fn by_name(
    State(a): State<Arc<Agent>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(denied) = caller.check(|z| z.service_read(&name)) {
        return denied.into_response();
    }
    let entries: Vec<_> = a
        .local
        .services()
        .iter()
        .filter(|s| s.service == name)
        .map(|s| entry(&a, s))
        .collect();
    let Some(worst) = entries.iter().map(|(s, _)| *s).max() else {
        return err(
            StatusCode::NOT_FOUND,
            format!("no service named {name:?} is registered with this agent"),
        );
    };
    let body: Vec<_> = entries.into_iter().map(|(_, v)| v).collect();
    (code(worst), Json(body)).into_response()
}

/// One local service by ID.
pub async fn by_id(
    State(a): State<Arc<Agent>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let Some(svc) = a.local.services().into_iter().find(|s| s.id == id) else {
        return err(StatusCode::NOT_FOUND, format!("unknown service ID {id:?}"));
    };
    if let Err(denied) = caller.check(|z| z.service_read(&svc.service)) {
        return denied.into_response();
    }
    let (worst, body) = entry(&a, &svc);
    (code(worst), Json(body)).into_response()
}
