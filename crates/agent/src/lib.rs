//! strait-agent: runs on every VM.
//!
//! Registers the node and its services (config directory and Consul-compatible local API),
//! runs their health checks, keeps the server's catalog in step (anti-entropy), holds leaf
//! certificates, and serves each local proxy its snapshot. Flow: join (token) -> sync ->
//! mesh view -> snapshots -> proxies.
#![forbid(unsafe_code)]

mod acl;
mod api;
mod api_health;
pub mod check_definition;
mod checks;
pub mod config;
mod connect;
pub mod decode;
pub mod definition;
pub mod http_check;
mod join;
mod local;
mod maintenance;
mod metrics;
mod permissions;
mod reload;
mod servers;
mod service_file;
mod snapshots;
mod state;
mod sync;
mod xds;

pub use config::AgentConfig;

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use strait_systemd::lifecycle::{ExitContext, Role};
use tokio_util::sync::CancellationToken;

/// Runs an agent with the validated `cfg`, read from `path` (re-read with its `config_dir` on
/// SIGHUP, see [`reload`]), until `role` stops. A refused join token is a configuration error;
/// unreachable servers are retried, and a stop while waiting for them is a clean stop.
///
/// Validate, then act: the service definitions are read and checked and the listen addresses
/// taken before `data_dir` is created.
pub async fn run(cfg: AgentConfig, path: PathBuf, role: Role) -> Result<()> {
    let local = Arc::new(local::LocalState::new(
        &cfg.node_name,
        cfg.advertise_addr,
        &cfg.data_dir,
    ));
    local.load(cfg.config_dir.as_deref()).bad_config()?;
    let trust = http_check::Trust::load(cfg.ca_file.as_deref(), cfg.ca_path.as_deref())
        .context("invalid agent config")
        .bad_config()?;
    let listener = strait_rpc::serve::bind("http_addr", cfg.http_addr).await?;
    let grpc = match cfg.grpc_addr {
        Some(addr) => Some(strait_rpc::serve::bind("grpc_addr", addr).await?),
        None => None,
    };
    tokio::fs::create_dir_all(&cfg.data_dir)
        .await
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let shutdown = role.shutdown().clone();
    let agent = Arc::new(state::Agent::new(cfg.clone(), local.clone()));
    role.spawn(
        "local-api",
        strait_rpc::serve::serve_plain(listener, api::router(agent.clone()), shutdown.clone()),
    );
    role.spawn_cancellable(
        "checks",
        checks::run(local.clone(), trust, shutdown.clone()),
    );
    if let Some(grpc) = grpc {
        xds::start(agent.clone(), grpc, &role);
    }

    let Some(mut not_after) = join_until_done(&agent, &shutdown).await? else {
        return Ok(());
    };
    let view_rx = agent.view.subscribe();
    role.spawn_cancellable("anti-entropy", sync::run(agent.clone(), shutdown.clone()));
    role.spawn_cancellable(
        "mesh-view",
        snapshots::follow_view(agent.clone(), shutdown.clone()),
    );
    role.spawn_cancellable(
        "snapshots",
        snapshots::build_loop(agent.clone(), view_rx, shutdown.clone()),
    );
    tracing::info!(node = %cfg.node_name, dc = %cfg.datacenter, api = %cfg.http_addr, "agent joined");
    if !reload::when_ready(agent.clone(), path, &role).await {
        return Ok(());
    }
    // Renew the agent's own certificate at half life by joining again.
    loop {
        let wait = Duration::from_secs(((not_after - strait_base::unix_now()) / 2).max(1) as u64);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        match join_until_done(&agent, &shutdown).await? {
            Some(na) => not_after = na,
            None => return Ok(()),
        }
    }
}

/// Joins (or re-joins) the DC, retrying unreachable servers with backoff; `None` when the
/// role stopped first.
async fn join_until_done(
    agent: &Arc<state::Agent>,
    shutdown: &CancellationToken,
) -> Result<Option<i64>> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let joined = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            r = join::join(&agent.cfg, &agent.servers) => r,
        };
        match joined {
            Ok(conn) => {
                let na = conn.not_after_unix;
                agent.set_conn(conn);
                return Ok(Some(na));
            }
            Err(join::JoinError::Refused(msg)) => {
                return Err(anyhow::anyhow!(
                    "joining datacenter {} refused: {msg}",
                    agent.cfg.datacenter
                ))
                .bad_config()
            }
            Err(join::JoinError::Unreachable(e)) => {
                tracing::warn!(error = %format!("{e:#}"), servers = ?agent.servers.order(), "cannot join yet; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
