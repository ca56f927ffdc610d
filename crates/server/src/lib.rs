//! strait-server: one DC's control plane.
//!
//! Holds the DC's catalog (persisted in redb), its CA, config entries and federation state,
//! and serves them over an mTLS API (agents, and other DCs' servers through the mesh
//! gateways) and a plain loopback API. Flow: agents join and sync -> catalog -> mesh view
//! (blocking query) -> agents build per-proxy snapshots.
#![forbid(unsafe_code)]

mod api;
mod ca;
pub mod config;
mod federation;
mod forward;
mod identity;
pub mod reload;
mod state;

pub use config::ServerConfig;
pub use state::Server;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs a server until `shutdown` fires. The config has been validated; this binds the
/// loopback API first (so readiness can say what the server waits for), brings the CA up
/// (joining the federation if this is a new secondary), then serves mTLS.
pub async fn run(cfg: ServerConfig, shutdown: CancellationToken) -> Result<()> {
    serve(cfg, None, shutdown).await
}

/// [`run`] for the config file at `path`, as a service: tells systemd `READY=1` once ready,
/// and re-reads the file on SIGHUP ([`reload`]).
pub async fn run_from_file(path: &Path, shutdown: CancellationToken) -> Result<()> {
    let cfg = ServerConfig::load(path)?;
    serve(cfg, Some(path.to_owned()), shutdown).await
}

async fn serve(
    cfg: ServerConfig,
    path: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<()> {
    // Registered first: from now on a SIGHUP waits for the reload loop instead of killing us.
    let hangup = match &path {
        Some(_) => {
            Some(strait_systemd::reload::hangup().context("cannot install the SIGHUP handler")?)
        }
        None => None,
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let catalog = strait_catalog::Catalog::open(cfg.data_dir.join("catalog.redb"))
        .with_context(|| format!("cannot open the catalog in {}", cfg.data_dir.display()))?;
    let http = TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("cannot bind http_addr {}", cfg.http_addr))?;
    let server = Arc::new(Server::new(cfg.clone(), catalog));
    tokio::spawn(strait_rpc::serve::serve_plain(
        http,
        api::router(server.clone(), api::Origin::Local),
        shutdown.clone(),
    ));
    tracing::info!(addr = %cfg.http_addr, "local HTTP API listening");

    let ca = tokio::select! {
        r = federation::bring_up_ca(&server) => r?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    server.set_ca(ca);
    let tls = identity::start(&server, shutdown.clone()).await?;
    let https = TcpListener::bind(cfg.https_addr)
        .await
        .with_context(|| format!("cannot bind https_addr {}", cfg.https_addr))?;
    tokio::spawn(strait_rpc::serve::serve_tls(
        https,
        tls,
        api::router(server.clone(), api::Origin::Mesh),
        shutdown.clone(),
    ));
    server.register_self()?;
    federation::spawn(server.clone(), shutdown.clone());
    server.mark_ready();
    if let (Some(path), Some(hangup)) = (path, hangup) {
        strait_systemd::notify::ready(&format!("ready: dc {}", cfg.datacenter));
        reload::spawn(server.clone(), path, hangup, shutdown.clone());
    }
    tracing::info!(
        addr = %cfg.https_addr,
        dc = %cfg.datacenter,
        trust_domain = %server.ca().trust_domain,
        "server ready"
    );
    shutdown.cancelled().await;
    Ok(())
}
