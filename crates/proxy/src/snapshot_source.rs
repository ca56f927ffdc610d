//! Where snapshots come from: a JSON file (re-read on SIGHUP) or the local agent's blocking
//! query `GET /v1/agent/proxy/snapshot/<proxy_id>?index=<version>&wait=30s`.
//!
//! Both publish into one `watch` channel, and only a snapshot newer than the one published
//! wins, so a stale answer never rolls a proxy back.
//!
//! Following the agent, the proxy also registers where its admin endpoint listens
//! (`PUT /v1/agent/proxy/admin/<proxy_id>`), before its first query and again after the agent
//! stopped answering, so that `strait doctor` finds it without `--admin`.
//!
//! Every request to the agent carries the proxy's ACL token (with ACLs on, the agent gives a
//! proxy its snapshot, which holds its private key, only for `service:write` on its service):
//! `STRAIT_HTTP_TOKEN[_FILE]` or `CONSUL_HTTP_TOKEN[_FILE]`, read once at start-up
//! ([`init_agent_token`]).

use http::{Method, StatusCode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use strait_snapshot::Snapshot;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Channel of the latest snapshot; `None` until the first one arrives.
pub type SnapshotRx = watch::Receiver<Option<Arc<Snapshot>>>;
pub type SnapshotTx = watch::Sender<Option<Arc<Snapshot>>>;

/// How long the agent may hold a blocking query.
const WAIT: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSource {
    /// A JSON [`Snapshot`] on disk.
    File(PathBuf),
    /// The local agent's HTTP API.
    Agent {
        agent: SocketAddr,
        proxy_id: String,
        /// The proxy's admin endpoint, registered with the agent; `None`, or a port of 0
        /// (whose bound port only the proxy knows; tests), registers nothing.
        admin: Option<SocketAddr>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("snapshot file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("snapshot file {path}: not a snapshot: {error}")]
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// The token this proxy presents to its agent; set once by [`init_agent_token`].
static AGENT_TOKEN: OnceLock<Option<String>> = OnceLock::new();

/// Reads the proxy's ACL token from the environment (see the module); a token file that
/// cannot be used is an error naming it. Called once, before the proxy talks to its agent.
pub fn init_agent_token() -> Result<(), strait_rpc::token::TokenFileError> {
    let token = strait_rpc::token::from_env()?;
    let _ = AGENT_TOKEN.set(token);
    Ok(())
}

/// Sets the token this process presents to its agent from a command's own token flags
/// (`strait envoy --token`), instead of [`init_agent_token`]; the first of the two wins.
pub fn set_agent_token(token: Option<String>) {
    let _ = AGENT_TOKEN.set(token);
}

/// One request to the local agent, with the proxy's token.
pub(crate) async fn agent_request(
    agent: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<strait_rpc::Response, strait_rpc::RpcError> {
    let token = AGENT_TOKEN.get().and_then(Option::as_deref);
    let header = token.map(|t| ("x-consul-token", t));
    strait_rpc::http::Client::new(agent, timeout)
        .request_with(method, path, body, header.as_slice())
        .await
}

/// Reads and parses a snapshot file.
pub fn load_file(path: &Path) -> Result<Snapshot, SourceError> {
    let bytes = std::fs::read(path).map_err(|error| SourceError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    serde_json::from_slice(&bytes).map_err(|error| SourceError::Parse {
        path: path.to_path_buf(),
        error,
    })
}

/// Publishes `snapshot` if it is newer than the one in `tx`; returns whether it did.
pub fn publish_if_newer(tx: &SnapshotTx, snapshot: Snapshot) -> bool {
    let mut snapshot = Some(snapshot);
    tx.send_if_modified(|current| {
        let newer = match (current.as_ref(), snapshot.as_ref()) {
            (Some(cur), Some(new)) => new.version > cur.version,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if newer {
            *current = snapshot.take().map(Arc::new);
        }
        newer
    })
}

impl SnapshotSource {
    /// Follows the source until `shutdown`, publishing newer snapshots into `tx`.
    pub async fn run(self, tx: SnapshotTx, shutdown: CancellationToken) {
        match self {
            // Loaded before start-up and re-read on SIGHUP (`reload_file`): nothing to follow.
            SnapshotSource::File(_) => shutdown.cancelled().await,
            SnapshotSource::Agent {
                agent,
                proxy_id,
                admin,
            } => follow_agent(agent, proxy_id, admin, tx, shutdown).await,
        }
    }
}

/// Re-reads the snapshot file (on SIGHUP) and publishes it if newer; a bad file keeps the
/// current snapshot. Returns what happened, for systemd's status line.
pub fn reload_file(path: &Path, tx: &SnapshotTx) -> anyhow::Result<String> {
    let snapshot = load_file(path)?;
    let version = snapshot.version;
    if publish_if_newer(tx, snapshot) {
        tracing::info!(path = %path.display(), version, "snapshot loaded");
        Ok(format!(
            "snapshot {} loaded, version {version}",
            path.display()
        ))
    } else {
        tracing::warn!(path = %path.display(), version,
            "snapshot version is not newer than the applied one; ignored");
        Ok(format!(
            "snapshot {} not newer (version {version}); ignored",
            path.display()
        ))
    }
}

async fn follow_agent(
    agent: SocketAddr,
    proxy_id: String,
    admin: Option<SocketAddr>,
    tx: SnapshotTx,
    shutdown: CancellationToken,
) {
    let admin = admin.filter(|a| a.port() != 0);
    let mut admin_pending = admin;
    let mut backoff = Duration::from_millis(200);
    loop {
        if let Some(addr) = admin_pending {
            let registered = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = register_admin(agent, &proxy_id, addr) => r,
            };
            match registered {
                Ok(()) => {
                    tracing::info!(%agent, proxy_id, admin = %addr, "admin endpoint registered");
                    admin_pending = None;
                }
                // The query below fails the same way and backs off; a proxy the agent does
                // not know yet (404) is registered once it does.
                Err(err) => tracing::warn!(%agent, proxy_id, %err,
                    "admin endpoint registration failed; retrying"),
            }
        }
        let index = tx.borrow().as_ref().map_or(0, |s| s.version);
        let path = format!("/v1/agent/proxy/snapshot/{proxy_id}?index={index}&wait=30s");
        let request = agent_request(
            agent,
            Method::GET,
            &path,
            None,
            WAIT + Duration::from_secs(10),
        );
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request => r,
        };
        let retry = match result {
            Ok(resp) if resp.status == StatusCode::OK => {
                match serde_json::from_slice::<Snapshot>(&resp.body) {
                    Ok(snapshot) => {
                        let version = snapshot.version;
                        if publish_if_newer(&tx, snapshot) {
                            tracing::info!(%agent, proxy_id, version, "snapshot received");
                        }
                        backoff = Duration::from_millis(200);
                        false
                    }
                    Err(err) => {
                        tracing::error!(%agent, proxy_id, %err, "agent sent an unreadable snapshot");
                        true
                    }
                }
            }
            Ok(resp) if resp.status == StatusCode::NOT_FOUND => {
                tracing::warn!(%agent, proxy_id,
                    "agent does not know this proxy (is its service registered?); retrying");
                true
            }
            Ok(resp) => {
                tracing::warn!(%agent, proxy_id, status = %resp.status,
                    body = %String::from_utf8_lossy(&resp.body).trim(), "snapshot query failed");
                true
            }
            Err(err) => {
                tracing::warn!(%agent, proxy_id, %err, "snapshot query failed");
                // A restarted agent may have lost it (a new data_dir): register again.
                admin_pending = admin;
                true
            }
        };
        if retry {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// The agent registration of a mesh gateway at `lan` (and `wan`) whose admin endpoint
/// (strait's or Envoy's, on loopback beside the agent) is `admin`, shared by `strait gateway`
/// and `strait envoy run --gateway mesh`.
///
/// Two checks: Consul's "Mesh Gateway Listening" (TCP on the LAN address), and "Mesh Gateway
/// Ready", an HTTP GET of the admin's `/ready` every second. The second needs an answer from
/// the process: a stopped (SIGSTOP) or wedged gateway still passes a TCP check (the kernel
/// completes handshakes into its backlog) but not this one, and a draining gateway (503)
/// stops getting new connections. Snapshots elsewhere route only to passing gateways.
pub fn gateway_registration(
    service: &str,
    lan: SocketAddr,
    wan: SocketAddr,
    admin: SocketAddr,
) -> serde_json::Value {
    serde_json::json!({
        "Kind": "mesh-gateway",
        "ID": service,
        "Name": service,
        "Address": lan.ip().to_string(),
        "Port": lan.port(),
        "TaggedAddresses": {
            "lan": {"Address": lan.ip().to_string(), "Port": lan.port()},
            "wan": {"Address": wan.ip().to_string(), "Port": wan.port()},
        },
        "Checks": [
            {
                "Name": "Mesh Gateway Listening",
                "TCP": lan.to_string(),
                "Interval": "10s",
            },
            {
                "Name": "Mesh Gateway Ready",
                "HTTP": format!("http://{admin}/ready"),
                "Interval": "1s",
                "Timeout": "1s",
            },
        ],
    })
}

/// Registers the mesh gateway with the local agent, retrying until it answers 2xx.
pub async fn register_gateway(
    agent: SocketAddr,
    body: serde_json::Value,
    shutdown: &CancellationToken,
) -> bool {
    let body = body.to_string().into_bytes();
    let mut backoff = Duration::from_millis(200);
    loop {
        let request = agent_request(
            agent,
            Method::PUT,
            "/v1/agent/service/register",
            Some(body.clone()),
            strait_rpc::http::DEFAULT_TIMEOUT,
        );
        let result = tokio::select! {
            _ = shutdown.cancelled() => return false,
            r = request => r,
        };
        match result.and_then(|r| r.ok()) {
            Ok(()) => return true,
            Err(err) => tracing::warn!(%agent, %err, "gateway registration failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Tells the local agent where the admin endpoint of proxy `proxy_id` listens
/// (`PUT /v1/agent/proxy/admin/<proxy_id>`); the agent answers 404 for a proxy it does not
/// know (yet).
pub async fn register_admin(
    agent: SocketAddr,
    proxy_id: &str,
    admin: SocketAddr,
) -> Result<(), strait_rpc::RpcError> {
    let body = serde_json::json!({ "AdminAddress": admin.to_string() });
    let path = format!("/v1/agent/proxy/admin/{proxy_id}");
    agent_request(
        agent,
        Method::PUT,
        &path,
        Some(body.to_string().into_bytes()),
        strait_rpc::http::DEFAULT_TIMEOUT,
    )
    .await?
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_snapshot::{Leaf, ProxyRole, Secret, SidecarSnapshot};

    fn snapshot(version: u64) -> Snapshot {
        Snapshot {
            version,
            proxy_id: "web-sidecar-proxy".into(),
            trust_domain: "td.strait".into(),
            datacenter: "dc1".into(),
            service: "web".into(),
            leaf: Leaf {
                cert_chain_pem: String::new(),
                key_pem: Secret(String::new()),
                spiffe_id: String::new(),
                serial: String::new(),
                not_after_unix: 0,
            },
            roots_pem: vec![],
            role: ProxyRole::Sidecar(SidecarSnapshot {
                public_listener: "127.0.0.1:21000".parse().expect("listener"),
                local_app: "127.0.0.1:8080".parse().expect("local app"),
                upstreams: vec![],
                intentions: Default::default(),
            }),
        }
    }

    #[test]
    fn only_newer_versions_are_published() {
        let (tx, rx) = watch::channel(None);
        assert!(publish_if_newer(&tx, snapshot(3)));
        assert!(!publish_if_newer(&tx, snapshot(3)));
        assert!(!publish_if_newer(&tx, snapshot(2)));
        assert!(publish_if_newer(&tx, snapshot(4)));
        assert_eq!(rx.borrow().as_ref().map(|s| s.version), Some(4));
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap.json");
        let err = load_file(&path).expect_err("missing");
        assert!(err.to_string().contains("snap.json"), "{err}");
        std::fs::write(&path, b"{}").expect("write");
        let err = load_file(&path).expect_err("not a snapshot");
        assert!(err.to_string().contains("not a snapshot"), "{err}");
        let json = serde_json::to_vec(&snapshot(7)).expect("json");
        std::fs::write(&path, json).expect("write");
        assert_eq!(load_file(&path).expect("load").version, 7);
    }
}
