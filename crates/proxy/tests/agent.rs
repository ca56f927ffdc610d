//! The proxy against a fake local agent: blocking snapshot queries (404 then 200, only newer
//! versions applied) and the gateway's self-registration.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strait_proxy::{GatewayArgs, SnapshotSource};
use strait_snapshot::Snapshot;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Requests the fake agent saw: (method, path and query, body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A fake agent: the first snapshot query answers 404, later ones `snapshot`; a query whose
/// index is already current is held for a while, like a blocking query.
async fn fake_agent(snapshot: Snapshot) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind(ANY).await.expect("bind agent");
    let addr = listener.local_addr().expect("agent addr");
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let snapshot = Arc::new(snapshot);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, snapshot) = (log.clone(), snapshot.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (log, snapshot) = (log.clone(), snapshot.clone());
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let queries = {
                            let mut log = log.lock().expect("log");
                            log.push((
                                method.clone(),
                                path.clone(),
                                String::from_utf8_lossy(&body).into(),
                            ));
                            log.iter().filter(|(m, _, _)| m == "GET").count()
                        };
                        let mut resp = http::Response::new(Full::new(Bytes::new()));
                        if method == "PUT" {
                            return Ok::<_, Infallible>(resp);
                        }
                        if queries == 1 {
                            *resp.status_mut() = http::StatusCode::NOT_FOUND;
                            return Ok(resp);
                        }
                        if path.contains(&format!("index={}", snapshot.version)) {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let json = serde_json::to_vec(&*snapshot).expect("json");
                        let mut resp = http::Response::new(Full::new(Bytes::from(json)));
                        resp.headers_mut()
                            .insert("x-consul-index", snapshot.version.into());
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn agent_source_retries_unknown_proxy_then_follows_versions() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let snapshot = sidecar_snapshot(&pki, 5, "dc1", "web", echo, vec![]);
    let (agent, seen) = fake_agent(snapshot).await;
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let stop = CancellationToken::new();
    let source = SnapshotSource::Agent {
        agent,
        proxy_id: "web-sidecar-proxy".into(),
        admin: None,
    };
    let task = tokio::spawn(source.run(tx, stop.clone()));
    let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.is_some()))
        .await
        .expect("snapshot within 10s")
        .expect("channel open")
        .clone();
    assert_eq!(got.expect("snapshot").version, 5);
    // It keeps polling with the version it has.
    eventually("blocking query with index=5", || {
        let seen = seen.clone();
        async move {
            seen.lock().expect("log").iter().any(|(_, path, _)| {
                path == "/v1/agent/proxy/snapshot/web-sidecar-proxy?index=5&wait=30s"
            })
        }
    })
    .await;
    {
        let seen = seen.lock().expect("log");
        assert_eq!(
            seen[0].1,
            "/v1/agent/proxy/snapshot/web-sidecar-proxy?index=0&wait=30s"
        );
    }
    // Same version again: not re-published.
    assert!(!rx.has_changed().expect("open"));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("source stops")
        .expect("join");
}

#[tokio::test]
async fn gateway_registers_itself_then_follows_its_snapshot() {
    init_tracing();
    let web = tag_server("web").await;
    let snapshot = gateway_snapshot(
        1,
        "dc1",
        BTreeMap::from([("web".into(), vec![web])]),
        BTreeMap::new(),
    );
    let (agent, seen) = fake_agent(snapshot).await;
    let args = GatewayArgs {
        mesh: true,
        address: addr(ANY),
        wan_address: Some(addr("127.0.0.2:0")),
        service: "mesh-gateway".into(),
        hello_timeout: Duration::from_secs(5),
        max_hello_size: 16 * 1024,
        common: strait_proxy::cli::CommonArgs {
            snapshot_file: None,
            agent,
            admin: addr("127.0.0.1:0"),
            grace: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(30),
            max_connections: 100,
            connect_timeout: Duration::from_secs(2),
        },
    };
    let life = strait_systemd::lifecycle::Lifecycle::new("gateway").expect("lifecycle");
    let stop = life.role();
    let task = tokio::spawn(strait_proxy::run_gateway(args, life.role()));
    eventually("registration and snapshot query", || {
        let seen = seen.clone();
        async move {
            let seen = seen.lock().expect("log");
            seen.iter().any(|(m, _, _)| m == "PUT")
                && seen.iter().filter(|(m, _, _)| m == "GET").count() >= 2
        }
    })
    .await;
    let put = seen
        .lock()
        .expect("log")
        .iter()
        .find(|(m, _, _)| m == "PUT")
        .cloned()
        .expect("PUT");
    assert_eq!(put.1, "/v1/agent/service/register");
    let body: serde_json::Value = serde_json::from_str(&put.2).expect("json body");
    assert_eq!(body["Kind"], "mesh-gateway");
    assert_eq!(body["ID"], "mesh-gateway");
    let port = body["Port"].as_u64().expect("port");
    assert_ne!(port, 0, "the bound port is registered");
    // The registered address really is the gateway.
    let hello_free = tokio::net::TcpStream::connect(("127.0.0.1", port as u16)).await;
    assert!(hello_free.is_ok());
    assert_eq!(body["TaggedAddresses"]["lan"]["Address"], "127.0.0.1");
    assert_ne!(body["TaggedAddresses"]["wan"]["Port"], 0);
    assert_eq!(body["TaggedAddresses"]["wan"]["Address"], "127.0.0.2");
    // Its readiness check asks the admin endpoint actually bound, which answers once the
    // snapshot is applied.
    assert_eq!(body["Checks"][0]["Name"], "Mesh Gateway Listening");
    assert_eq!(body["Checks"][1]["Name"], "Mesh Gateway Ready");
    let url = body["Checks"][1]["HTTP"].as_str().expect("an HTTP check");
    let admin: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/ready"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not an admin /ready URL: {url}"));
    assert_ne!(admin.port(), 0, "the bound admin port is registered");
    eventually("the admin's /ready to answer 200", || async move {
        let r = strait_rpc::http::request(admin, http::Method::GET, "/ready", None).await;
        r.is_ok_and(|r| r.status.is_success())
    })
    .await;
    assert!(seen
        .lock()
        .expect("log")
        .iter()
        .any(|(_, p, _)| p.starts_with("/v1/agent/proxy/snapshot/mesh-gateway?")));
    stop.stop();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("gateway stops")
        .expect("join")
        .expect("run_gateway");
}

#[tokio::test]
async fn agent_source_registers_the_admin_endpoint_before_its_first_query() {
    init_tracing();
    let pki = Pki::new(TD);
    let echo = echo_server().await;
    let (agent, seen) = fake_agent(sidecar_snapshot(&pki, 1, "dc1", "web", echo, vec![])).await;
    let (tx, _rx) = tokio::sync::watch::channel(None);
    let stop = CancellationToken::new();
    let source = SnapshotSource::Agent {
        agent,
        proxy_id: "web-sidecar-proxy".into(),
        admin: Some(addr("127.0.0.1:19555")),
    };
    let task = tokio::spawn(source.run(tx, stop.clone()));
    eventually("a snapshot query", || {
        let seen = seen.clone();
        async move { seen.lock().expect("log").iter().any(|(m, _, _)| m == "GET") }
    })
    .await;
    let first = seen.lock().expect("log")[0].clone();
    assert_eq!(
        (first.0.as_str(), first.1.as_str()),
        ("PUT", "/v1/agent/proxy/admin/web-sidecar-proxy")
    );
    let body: serde_json::Value = serde_json::from_str(&first.2).expect("json body");
    assert_eq!(body, serde_json::json!({"AdminAddress": "127.0.0.1:19555"}));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("source stops")
        .expect("join");
}
