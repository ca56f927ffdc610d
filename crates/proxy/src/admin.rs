//! The admin endpoint on loopback: `/ready`, `/config`, `/clusters`, `/certs`, `/stats`,
//! `/metrics`. Everything it shows comes from the applied snapshot and the atomic counters,
//! so serving it never blocks the data path.

use crate::metrics::Metrics;
use crate::sidecar::state::UpstreamKey;
use crate::snapshot_source::SnapshotRx;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use strait_identity::ca::cert_info;
use strait_identity::spiffe;
use strait_snapshot::{GatewaySnapshot, ProxyRole, SidecarSnapshot, Snapshot};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the admin pages read.
#[derive(Debug)]
pub(crate) struct AdminState {
    pub metrics: Arc<Metrics>,
    /// The snapshot the data plane runs with (its configs were built successfully).
    pub applied: SnapshotRx,
    /// Set when shutdown begins: `/ready` turns 503 so load balancers stop sending.
    pub draining: AtomicBool,
}

/// Serves admin requests on `listener` until `stop`.
pub(crate) async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(%err, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(err) = r { tracing::debug!(%err, "admin connection") },
                _ = stop.cancelled() => {}
            }
        });
    }
}

fn handle(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    let applied = state.applied.borrow().clone();
    match req.uri().path() {
        "/ready" => {
            if state.draining.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
            } else if applied.is_some() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: no usable snapshot (certificate + config) yet\n".into(),
                )
            }
        }
        "/config" => match applied {
            Some(snapshot) => json_response(
                serde_json::to_value(strait_snapshot::redacted(&snapshot)).unwrap_or(Value::Null),
            ),
            None => not_yet(),
        },
        "/clusters" => match applied {
            Some(snapshot) => json_response(clusters(&snapshot, &state.metrics)),
            None => not_yet(),
        },
        "/certs" => match applied {
            Some(snapshot) => json_response(certs(&snapshot)),
            None => not_yet(),
        },
        "/stats" => json_response(state.metrics.to_json()),
        "/metrics" => {
            let mut resp = text(StatusCode::OK, state.metrics.to_prometheus());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        "/" => text(
            StatusCode::OK,
            "/ready /config /clusters /certs /stats /metrics\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Upstreams (sidecar) or routes (gateway) with their endpoints.
pub(crate) fn clusters(snapshot: &Snapshot, metrics: &Metrics) -> Value {
    let mut out = json!({"version": snapshot.version, "proxy_id": snapshot.proxy_id});
    match &snapshot.role {
        ProxyRole::Sidecar(sidecar) => sidecar_clusters(sidecar, metrics, &mut out),
        ProxyRole::Gateway(gw) => gateway_routes(snapshot, gw, &mut out),
    }
    out
}

/// Each upstream with its primary target's fields at the top (as before chains), its whole
/// chain with each target's counters and endpoints ejected by passive health, and the
/// active target: the one that served the latest connection.
fn sidecar_clusters(sidecar: &SidecarSnapshot, metrics: &Metrics, out: &mut Value) {
    out["inbound"] = json!({
        "listener": sidecar.public_listener,
        "local_app": sidecar.local_app,
    });
    out["upstreams"] = sidecar
        .upstreams
        .iter()
        .map(|u| {
            let listener = UpstreamKey {
                destination: u.destination.clone(),
                datacenter: u.datacenter.clone(),
            }
            .listener_name();
            let mut active = (0, Value::Null);
            let chain: Vec<Value> = u
                .targets()
                .map(|t| {
                    let m = metrics.target(&listener, &t.sni);
                    let seq = m.last_seq.load(Relaxed);
                    if seq > active.0 {
                        active = (seq, json!(t.sni));
                    }
                    json!({
                        "service": t.service,
                        "subset": t.subset,
                        "datacenter": t.datacenter,
                        "sni": t.sni,
                        "spiffe_id": t.spiffe_id,
                        "endpoints": t.endpoints,
                        "connections": m.connections.load(Relaxed),
                        "failovers": m.failovers.load(Relaxed),
                        "ejections": m.ejections.load(Relaxed),
                        "ejected": m
                            .ejected()
                            .into_iter()
                            .map(|(endpoint, ms)| json!({"endpoint": endpoint, "for_ms": ms}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "destination": u.destination,
                "datacenter": u.datacenter,
                "bind": u.bind,
                "sni": u.primary.sni,
                "spiffe_id": u.primary.spiffe_id,
                "mode": u.mode,
                "endpoints": u.primary.endpoints,
                "connect_timeout_ms": u.connect_timeout_ms,
                "passive_health": u.passive_health,
                "chain": chain,
                "active": active.1,
            })
        })
        .collect();
}

fn gateway_routes(snapshot: &Snapshot, gw: &GatewaySnapshot, out: &mut Value) {
    let (dc, td) = (&snapshot.datacenter, &snapshot.trust_domain);
    let local: Vec<Value> = gw
        .local_services
        .iter()
        .map(|(service, endpoints)| {
            json!({
                "sni": spiffe::service_sni(service, spiffe::DEFAULT_NAMESPACE, dc, td),
                "service": service,
                "endpoints": endpoints,
            })
        })
        .collect();
    out["routes"] = json!({
        "local_services": local,
        "local_servers": {
            "sni": spiffe::server_sni(dc, td),
            "endpoints": gw.local_servers,
        },
        "remote_datacenters": gw.remote_gateways,
    });
}

fn certs(snapshot: &Snapshot) -> Value {
    let describe = |pem: &str| match cert_info(pem) {
        Ok(info) => json!({
            "spiffe_id": info.spiffe_id,
            "serial": info.serial_hex,
            "subject": info.subject,
            "not_before_unix": info.not_before_unix,
            "not_after_unix": info.not_after_unix,
            "is_ca": info.is_ca,
        }),
        Err(err) => json!({"error": err.to_string()}),
    };
    let leaf = if snapshot.leaf.cert_chain_pem.is_empty() {
        Value::Null
    } else {
        describe(&snapshot.leaf.cert_chain_pem)
    };
    json!({
        "leaf": leaf,
        "roots": snapshot.roots_pem.iter().map(|pem| describe(pem)).collect::<Vec<_>>(),
    })
}

fn not_yet() -> Response<Full<Bytes>> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "no snapshot applied yet\n".into(),
    )
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(value: Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(&value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}
