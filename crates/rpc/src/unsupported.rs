//! What the agent and server APIs answer for a request no route takes: Consul's endpoints
//! that strait does not implement answer `501 {"error": "not supported by strait: GET /v1/kv/x"}`,
//! any other path `404 {"error": "no such endpoint: GET /v1/x"}`. Never an empty body: Consul
//! clients turn an empty 404 into "key not found" or `None`.
//!
//! docs/consul-compat.md is the table of what is implemented; [`CONSUL_ENDPOINTS`] lists the
//! rest of Consul's API by path prefix.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Consul's HTTP API by path prefix (a prefix matches itself and what follows a `/`). A path
/// under one of these that no route of the agent or server takes is a Consul endpoint strait
/// does not implement (or a method it does not implement there).
pub const CONSUL_ENDPOINTS: &[&str] = &[
    "/v1/acl",
    "/v1/agent",
    "/v1/catalog",
    "/v1/config",
    "/v1/connect",
    "/v1/coordinate",
    "/v1/discovery-chain",
    "/v1/event",
    "/v1/exported-services",
    "/v1/health",
    "/v1/imported-services",
    "/v1/internal/ui",
    "/v1/kv",
    "/v1/namespace",
    "/v1/namespaces",
    "/v1/operator",
    "/v1/partition",
    "/v1/partitions",
    "/v1/peering",
    "/v1/peerings",
    "/v1/query",
    "/v1/session",
    "/v1/snapshot",
    "/v1/status",
    "/v1/txn",
];

/// Is `path` under one of Consul's endpoint prefixes?
pub fn is_consul_endpoint(path: &str) -> bool {
    CONSUL_ENDPOINTS.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The answer to `method path` when no route takes it: 501 for Consul's endpoints, 404 for
/// anything else; a JSON body naming the method and path either way.
pub fn response(method: &Method, path: &str) -> Response {
    let (status, what) = if is_consul_endpoint(path) {
        (StatusCode::NOT_IMPLEMENTED, "not supported by strait")
    } else {
        (StatusCode::NOT_FOUND, "no such endpoint")
    };
    let error = format!("{what}: {method} {path}");
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

/// An axum fallback handler answering with [`response`].
pub async fn fallback(method: Method, uri: axum::http::Uri) -> Response {
    response(&method, uri.path())
}

/// The method-not-allowed fallback: a routed path asked with another method. 501 on
/// Consul's paths (`GET /v1/config/<kind>/<name>` where strait routes only `DELETE`), else
/// 405; a JSON body either way.
pub async fn method_fallback(method: Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if is_consul_endpoint(path) {
        return response(&method, path);
    }
    let error = format!("method not allowed: {method} {path}");
    let body = Json(serde_json::json!({ "error": error }));
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_families_are_501_others_404() {
        for path in [
            "/v1/kv/a/b",
            "/v1/kv",
            "/v1/session/create",
            "/v1/txn",
            "/v1/acl/token",
        ] {
            assert!(is_consul_endpoint(path), "{path}");
        }
        for path in ["/v1/kvx", "/v2/kv/a", "/", "/v1/internal/sign", "/metrics"] {
            assert!(!is_consul_endpoint(path), "{path}");
        }
        let r = response(&Method::GET, "/v1/kv/a");
        assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED);
        assert_eq!(
            response(&Method::PUT, "/nope").status(),
            StatusCode::NOT_FOUND
        );
    }
}
