//! The agent's Connect endpoints, in Consul's shapes: the CA roots (relayed to the servers),
//! a local service's leaf certificate (issued and renewed by the agent, watchable with
//! blocking queries) and `authorize`, which native Connect applications call to ask whether a
//! caller's certificate may connect (decided from the mesh view the local proxies use).

use crate::acl::Caller;
use crate::api::{err, index_param, wait_param};
use crate::snapshots;
use crate::state::{Agent, LeafEntry};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strait_identity::spiffe::SpiffeId;
use strait_snapshot::MeshView;

type S = Arc<Agent>;

/// A Unix time as RFC 3339 (UTC), the form of Consul's `time.Time` fields.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `GET /v1/agent/connect/ca/roots`: the servers' answer, as it is (public: any caller,
/// relayed as the anonymous token).
pub async fn roots(State(a): State<S>) -> Response {
    crate::api::relay(&a, None, Method::GET, "/v1/connect/ca/roots", None).await
}

/// Consul's leaf shape, including the private key: this API is loopback only.
fn leaf_body(service: &str, l: &LeafEntry) -> Response {
    let mut resp = Json(json!({
        "SerialNumber": l.serial, "CertPEM": l.chain_pem, "PrivateKeyPEM": l.key_pem.0,
        "Service": service, "ServiceURI": l.spiffe_id,
        "ValidAfter": rfc3339(l.not_before_unix), "ValidBefore": rfc3339(l.not_after_unix),
        "CreateIndex": l.index, "ModifyIndex": l.index,
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&l.index.to_string()) {
        resp.headers_mut().insert("x-consul-index", v);
    }
    resp
}

/// `GET /v1/agent/connect/ca/leaf/<service>`: the service's leaf, issued on first use and
/// renewed at half life. With `?index=N` it blocks (up to `?wait=`, default 5 minutes) until
/// the leaf's index exceeds N, that is until the agent renews it.
pub async fn leaf(
    State(a): State<S>,
    caller: Caller,
    Path(service): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = strait_identity::spiffe::validate_name("service", &service) {
        return err(StatusCode::BAD_REQUEST, e);
    }
    if let Err(denied) = caller.check(|z| z.service_write(&service)) {
        return denied.into_response();
    }
    let after = match index_param(&q) {
        Ok(index) => index,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let deadline = match wait_param(&q, Duration::from_secs(300), Duration::from_secs(600)) {
        Ok(wait) => tokio::time::Instant::now() + wait,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let mut issued = a.leaf_index.subscribe();
    loop {
        // Issues the leaf, or renews it once past half life.
        let l = match snapshots::leaf(&a, &service).await {
            Ok(l) => l,
            Err(e) => return err(StatusCode::BAD_GATEWAY, format!("{e:#}")),
        };
        if l.index > after || tokio::time::Instant::now() >= deadline {
            return leaf_body(&service, &l);
        }
        let renew_in = (l.renew_at_unix() - strait_base::unix_now()).max(1) as u64;
        let wake = deadline.min(tokio::time::Instant::now() + Duration::from_secs(renew_in));
        tokio::select! {
            _ = issued.changed() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// The body of `POST /v1/agent/connect/authorize`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AuthorizeRequest {
    #[serde(default)]
    target: String,
    #[serde(default, rename = "ClientCertURI")]
    client_cert_uri: String,
    /// Consul accepts it and decides without it; so does strait.
    #[serde(default, rename = "ClientCertSerial")]
    _client_cert_serial: String,
}

/// `POST /v1/agent/connect/authorize` `{Target, ClientCertURI, ClientCertSerial}`: may the
/// certificate's service connect to `Target`? `{Authorized, Reason}`, decided as the sidecars
/// decide (the intentions of the target, then the default).
pub async fn authorize(State(a): State<S>, caller: Caller, body: Bytes) -> Response {
    let req: AuthorizeRequest = match crate::decode::json(&body) {
        Ok(r) => r,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    if req.target.is_empty() {
        return err(StatusCode::BAD_REQUEST, "field Target: must be set");
    }
    if let Err(denied) = caller.check(|z| z.service_write(&req.target)) {
        return denied.into_response();
    }
    if req.client_cert_uri.is_empty() {
        return err(StatusCode::BAD_REQUEST, "field ClientCertURI: must be set");
    }
    let client: SpiffeId = match req.client_cert_uri.parse() {
        Ok(id) => id,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("field ClientCertURI: {e}")),
    };
    let (Some(conn), Some(view)) = (a.conn(), a.view.borrow().clone()) else {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent has no mesh view from its servers yet",
        );
    };
    match decide(&view.view, &conn.trust_domain, &req.target, &client) {
        Ok((authorized, reason)) => {
            Json(json!({ "Authorized": authorized, "Reason": reason })).into_response()
        }
        Err(e) => err(StatusCode::BAD_REQUEST, e),
    }
}

/// The decision for a caller holding `client`'s certificate connecting to `target`; an
/// identity that is not a service's is a 400 (as Consul).
fn decide(
    view: &MeshView,
    trust_domain: &str,
    target: &str,
    client: &SpiffeId,
) -> Result<(bool, String), String> {
    let SpiffeId::Service {
        trust_domain: td,
        service,
        ..
    } = client
    else {
        return Err(format!(
            "field ClientCertURI: {client} is not a service's identity"
        ));
    };
    if td != trust_domain {
        return Ok((
            false,
            format!("Identity from an external trust domain: {td}"),
        ));
    }
    let rules = strait_snapshot::resolve_intentions(view, target);
    Ok(
        match rules
            .rules
            .iter()
            .find(|r| r.source == "*" || r.source == *service)
        {
            Some(r) => {
                let action = if r.allow { "allow" } else { "deny" };
                let reason = format!("Matched L4 intention: {} => {target} ({action})", r.source);
                (r.allow, reason)
            }
            None => (
                true,
                "Default behavior: allow (no intention matches)".to_string(),
            ),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_snapshot::IntentionRule;

    fn view(entries: &[(&str, &str, bool)]) -> MeshView {
        let mut v = MeshView::default();
        for (dst, src, allow) in entries {
            v.intentions
                .entry(dst.to_string())
                .or_default()
                .push(IntentionRule {
                    source: src.to_string(),
                    allow: *allow,
                });
        }
        v
    }

    fn web() -> SpiffeId {
        SpiffeId::service("td", "dc2", "web")
    }

    #[test]
    fn intentions_of_the_target_decide_then_the_default() {
        let v = view(&[("db", "web", false), ("db", "*", true), ("*", "*", false)]);
        let (ok, reason) = decide(&v, "td", "db", &web()).unwrap();
        assert!(!ok);
        assert_eq!(reason, "Matched L4 intention: web => db (deny)");
        let api = SpiffeId::service("td", "dc1", "api");
        assert!(decide(&v, "td", "db", &api).unwrap().0);
        // `*` -> `*` deny: default deny for every other destination.
        let (ok, reason) = decide(&v, "td", "cache", &web()).unwrap();
        assert!(!ok, "{reason}");
        // No intention at all: allowed by default.
        let (ok, reason) = decide(&view(&[]), "td", "db", &web()).unwrap();
        assert!(ok);
        assert!(reason.contains("Default"), "{reason}");
    }

    #[test]
    fn other_trust_domains_and_identities() {
        let v = view(&[]);
        let (ok, reason) = decide(&v, "other", "db", &web()).unwrap();
        assert!(!ok);
        assert!(reason.contains("external trust domain: td"), "{reason}");
        let e = decide(&v, "td", "db", &SpiffeId::server("td", "dc1")).unwrap_err();
        assert!(e.starts_with("field ClientCertURI: "), "{e}");
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
