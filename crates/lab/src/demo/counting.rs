//! `strait demo counting`: the service at the far end of the demo. Every request
//! except `/health` increments a counter and answers `{"count":N,"hostname":"..."}`,
//! so a dashboard can show both liveness and which VM answered.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use strait_systemd::lifecycle::Role;

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Command-line and environment settings of the counting service.
#[derive(Debug, Clone, clap::Args)]
pub struct CountingArgs {
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 9003)]
    pub port: u16,
    /// Address to listen on (the lab passes the VM's address).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

/// The body of every counted response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountReply {
    pub count: u64,
    pub hostname: String,
}

struct Counter {
    count: AtomicU64,
    hostname: String,
}

/// The routes: `/health` is free, everything else counts.
pub fn router(hostname: String) -> Router {
    let state = Arc::new(Counter {
        count: AtomicU64::new(0),
        hostname,
    });
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .fallback(count)
        .with_state(state)
}

async fn count(State(counter): State<Arc<Counter>>) -> Json<CountReply> {
    let count = counter.count.fetch_add(1, Ordering::Relaxed) + 1;
    Json(CountReply {
        count,
        hostname: counter.hostname.clone(),
    })
}

/// The name shown to users: `STRAIT_HOSTNAME` (the lab sets the VM name, since
/// all local-driver VMs share one kernel), else the system hostname.
pub fn hostname() -> String {
    if let Ok(name) = std::env::var("STRAIT_HOSTNAME") {
        if !name.trim().is_empty() {
            return name.trim().to_owned();
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Serves on an already-bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hostname: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(hostname))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `strait demo counting`: binds, logs the address, serves until the role stops (SIGTERM/Ctrl-C).
pub async fn run(args: CountingArgs, role: Role) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("counting: cannot listen on {addr} (PORT / BIND_ADDR)"))?;
    let name = hostname();
    println!("counting: listening on http://{addr} as {name}");
    role.ready(&format!("ready: listening on {addr}"));
    serve(listener, name, role.shutdown().clone().cancelled_owned())
        .await
        .context("counting: server failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use strait_rpc::http::get_url;

    #[tokio::test]
    async fn counts_every_request_but_health() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, "vm-7".into(), async {
            let _ = stopped.await;
        }));
        let t = Duration::from_secs(2);
        for expected in 1..=3u64 {
            let r = get_url(&format!("http://{addr}/any/path"), t)
                .await
                .expect("get");
            let reply: CountReply = serde_json::from_slice(&r.body).expect("json");
            assert_eq!(
                reply,
                CountReply {
                    count: expected,
                    hostname: "vm-7".into()
                }
            );
            let h = get_url(&format!("http://{addr}/health"), t)
                .await
                .expect("health");
            assert_eq!(h.status, 200);
        }
        let _ = stop.send(());
        server.await.expect("join").expect("clean shutdown");
    }
}
