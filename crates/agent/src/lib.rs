//! strait-agent: runs on every VM.
//!
//! Registers the node and its services (config directory and Consul-compatible local API),
//! runs their health checks, keeps the server's catalog in step (anti-entropy), holds leaf
//! certificates, and serves each local proxy its snapshot. Flow: join (token) -> sync ->
//! mesh view -> snapshots -> proxies.
#![forbid(unsafe_code)]

mod api;
mod checks;
pub mod config;
pub mod definition;
mod join;
mod local;
mod metrics;
mod reload;
mod snapshots;
mod state;
mod sync;
mod xds;

pub use config::AgentConfig;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs an agent until `shutdown`. Definition errors and a refused join token end it with an
/// error; unreachable servers are retried.
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> Result<()> {
    serve(cfg, None, shutdown).await
}

/// [`run`] for the config file at `path`, as a service: tells systemd `READY=1` once ready,
/// and on SIGHUP re-reads the file and its `config_dir` ([`reload`]).
pub async fn run_from_file(path: &Path, shutdown: CancellationToken) -> Result<()> {
    let cfg = AgentConfig::load(path)?;
    serve(cfg, Some(path.to_owned()), shutdown).await
}

async fn serve(cfg: AgentConfig, path: Option<PathBuf>, shutdown: CancellationToken) -> Result<()> {
    // Registered first: from now on a SIGHUP waits for the reload loop instead of killing us.
    let hangup = match &path {
        Some(_) => {
            Some(strait_systemd::reload::hangup().context("cannot install the SIGHUP handler")?)
        }
        None => None,
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let local = Arc::new(local::LocalState::new(
        &cfg.node_name,
        cfg.advertise_addr,
        &cfg.data_dir,
    ));
    local.load(cfg.config_dir.as_deref())?;
    let listener = TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("cannot bind http_addr {}", cfg.http_addr))?;
    let agent = Arc::new(state::Agent::new(cfg.clone(), local.clone()));
    if let (Some(path), Some(hangup)) = (path, hangup) {
        reload::spawn(agent.clone(), path, hangup, shutdown.clone());
    }
    tokio::spawn(strait_rpc::serve::serve_plain(
        listener,
        api::router(agent.clone()),
        shutdown.clone(),
    ));
    tokio::spawn(checks::run(local.clone(), shutdown.clone()));
    if let Some(grpc) = cfg.grpc_addr {
        xds::start(agent.clone(), grpc, shutdown.clone()).await?;
    }

    let mut not_after = join_until_done(&agent, &shutdown).await?;
    let (view_tx, view_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(sync::run(agent.clone(), shutdown.clone()));
    tokio::spawn(snapshots::follow_view(
        agent.clone(),
        view_tx,
        shutdown.clone(),
    ));
    tokio::spawn(snapshots::build_loop(
        agent.clone(),
        view_rx,
        shutdown.clone(),
    ));
    tracing::info!(node = %cfg.node_name, dc = %cfg.datacenter, api = %cfg.http_addr, "agent joined");
    // Renew the agent's own certificate at half life by joining again.
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let wait = Duration::from_secs(((not_after - now) / 2).max(1) as u64);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        not_after = join_until_done(&agent, &shutdown).await?;
    }
}

async fn join_until_done(agent: &Arc<state::Agent>, shutdown: &CancellationToken) -> Result<i64> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match join::join(&agent.cfg).await {
            Ok(conn) => {
                let na = conn.not_after_unix;
                agent.set_conn(conn);
                return Ok(na);
            }
            Err(join::JoinError::Refused(msg)) => {
                anyhow::bail!("joining datacenter {} refused: {msg}", agent.cfg.datacenter)
            }
            Err(join::JoinError::Unreachable(e)) => {
                tracing::warn!(error = %format!("{e:#}"), servers = ?agent.cfg.servers, "cannot join yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => anyhow::bail!("shut down before joining"),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
