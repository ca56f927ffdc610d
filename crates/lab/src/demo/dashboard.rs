//! `strait demo dashboard`: the user-facing end of the demo. The page (inline,
//! no external assets) polls `/api/count`, which calls the counting service at
//! `COUNTING_SERVICE_URL` (in the lab: the sidecar's upstream listener), so the
//! page shows at a glance whether the mesh path works.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use strait_systemd::lifecycle::Role;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::counting::CountReply;
use strait_rpc::http::get_url;

const PAGE: &str = include_str!("dashboard.html");

/// How long `/api/count` waits for counting before reporting it unreachable.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(1);

/// Command-line and environment settings of the dashboard.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardArgs {
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 9002)]
    pub port: u16,
    /// Address to listen on (the lab passes the VM's address).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Where the counting service answers (plain HTTP).
    #[arg(
        long,
        env = "COUNTING_SERVICE_URL",
        default_value = "http://localhost:5000"
    )]
    pub counting_url: String,
}

/// The routes: `/` page, `/api/count` proxy to counting, `/health`.
pub fn router(counting_url: String) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/count", get(api_count))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(Arc::new(counting_url))
}

async fn api_count(State(url): State<Arc<String>>) -> Response {
    match fetch_count(&url).await {
        Ok(reply) => Json(json!({
            "count": reply.count,
            "hostname": reply.hostname,
            "reachable": true,
        }))
        .into_response(),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "reachable": false, "error": error })),
        )
            .into_response(),
    }
}

async fn fetch_count(url: &str) -> Result<CountReply, String> {
    let response = get_url(url, UPSTREAM_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status.is_success() {
        return Err(format!(
            "counting at {url} answered HTTP {}",
            response.status
        ));
    }
    serde_json::from_slice(&response.body)
        .map_err(|e| format!("counting at {url} sent an unexpected body: {e}"))
}

/// Serves on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    counting_url: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(counting_url))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `strait demo dashboard`: binds, logs the URL, serves until the role stops (SIGTERM/Ctrl-C).
pub async fn run(args: DashboardArgs, role: Role) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("dashboard: cannot listen on {addr} (PORT / BIND_ADDR)"))?;
    println!(
        "dashboard: http://{addr} (counting at {})",
        args.counting_url
    );
    role.ready(&format!("ready: listening on {addr}"));
    serve(
        listener,
        args.counting_url,
        role.shutdown().clone().cancelled_owned(),
    )
    .await
    .context("dashboard: server failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    async fn spawn<F, Fut>(f: F) -> (SocketAddr, tokio::sync::oneshot::Sender<()>)
    where
        F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(f(listener, rx));
        (addr, tx)
    }

    async fn api(addr: SocketAddr) -> (StatusCode, Value) {
        let r = get_url(&format!("http://{addr}/api/count"), Duration::from_secs(3))
            .await
            .expect("dashboard answers");
        (r.status, serde_json::from_slice(&r.body).expect("json"))
    }

    #[tokio::test]
    async fn shows_count_then_unreachable_then_recovers() {
        // Reserve a port for counting, but start with nothing listening there.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let counting_addr = probe.local_addr().expect("addr");
        drop(probe);
        let url = format!("http://{counting_addr}");
        let (dash, _stop_dash) = spawn(|l, rx| {
            serve(l, url, async {
                let _ = rx.await;
            })
        })
        .await;

        let (status, body) = api(dash).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["reachable"], false);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains(&counting_addr.to_string())),
            "{body}"
        );

        let listener = tokio::net::TcpListener::bind(counting_addr)
            .await
            .expect("rebind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let counting = tokio::spawn(super::super::counting::serve(
            listener,
            "far-vm".into(),
            async {
                let _ = rx.await;
            },
        ));
        let (status, body) = api(dash).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"count": 1, "hostname": "far-vm", "reachable": true})
        );

        let _ = tx.send(());
        counting.await.expect("join").expect("counting stops");
        let (status, _) = api(dash).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn page_and_health() {
        let (dash, _stop) = spawn(|l, rx| {
            serve(l, "http://127.0.0.1:1".into(), async {
                let _ = rx.await;
            })
        })
        .await;
        let page = get_url(&format!("http://{dash}/"), Duration::from_secs(2))
            .await
            .expect("page");
        assert_eq!(page.status, StatusCode::OK);
        let html = String::from_utf8_lossy(&page.body);
        assert!(html.contains("Counting service unreachable") && html.contains("/api/count"));
        let health = get_url(&format!("http://{dash}/health"), Duration::from_secs(2))
            .await
            .expect("health");
        assert_eq!(health.status, StatusCode::OK);
    }
}
