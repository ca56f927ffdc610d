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
mod replicated;
mod state;

pub use config::ServerConfig;
pub use state::Server;

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use strait_systemd::lifecycle::Role;

/// Runs a server with the validated `cfg`, read from `path` (re-read on SIGHUP, see
/// [`reload`]), until `role` stops.
///
/// Validate, then act: the config is valid and both listen addresses are taken before
/// anything is written, so a taken port leaves no `data_dir` behind. Then: the loopback API
/// (so readiness can say what the server waits for), Raft (the catalog restored from its
/// snapshot and log, this server elected), the CA (joining the federation if this is a new
/// secondary), the mTLS API with the Raft routes, and `READY=1`.
pub async fn run(cfg: ServerConfig, path: PathBuf, role: Role) -> Result<()> {
    let http = strait_rpc::serve::bind("http_addr", cfg.http_addr).await?;
    let https = strait_rpc::serve::bind("https_addr", cfg.https_addr).await?;
    create_data_dir(cfg.data_dir.clone()).await?;
    let server = Arc::new(Server::new(
        cfg.clone(),
        strait_catalog::Catalog::replicated(),
    ));
    let shutdown = role.shutdown().clone();
    role.spawn(
        "local-api",
        strait_rpc::serve::serve_plain(
            http,
            api::router(server.clone(), api::Origin::Local),
            shutdown.clone(),
        ),
    );
    tracing::info!(addr = %cfg.http_addr, "local HTTP API listening");

    // The catalog is restored from Raft's snapshot and log, then follows the log.
    server.set_waiting_for("Raft: restoring the catalog and electing a leader");
    let peers = replicated::Peers::default();
    let consensus = tokio::select! {
        r = replicated::start(&server, server.catalog.clone(), peers.clone()) => r?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let raft_routes = consensus.router(replicated::peer_check(&cfg.datacenter));
    let _ = server.consensus.set(consensus);

    let ca = tokio::select! {
        r = federation::bring_up_ca(&server) => r?,
        _ = shutdown.cancelled() => return stop_raft(&server).await,
    };
    server.set_ca(ca);
    let tls = identity::start(&server, &role)?;
    peers.set(strait_raft::network::MutualTls {
        tls: server.client_tls_for(&cfg.datacenter)?,
        sni: strait_names::server_sni(&cfg.datacenter, &server.ca().trust_domain),
    });
    role.spawn(
        "mesh-api",
        strait_rpc::serve::serve_tls(
            https,
            tls,
            api::router(server.clone(), api::Origin::Mesh).merge(raft_routes),
            shutdown.clone(),
        ),
    );
    server.register_self().await?;
    federation::spawn(server.clone(), &role);
    server.mark_ready();
    role.ready(&format!("ready: dc {}", cfg.datacenter));
    reload::spawn(server.clone(), path, &role);
    tracing::info!(
        addr = %cfg.https_addr,
        dc = %cfg.datacenter,
        trust_domain = %server.ca().trust_domain,
        "server ready"
    );
    shutdown.cancelled().await;
    stop_raft(&server).await
}

/// Stops Raft (its tasks are openraft's own) once the role stops.
async fn stop_raft(server: &Server) -> Result<()> {
    if let Some(consensus) = server.consensus.get() {
        consensus.shutdown().await;
    }
    Ok(())
}

/// Creates `data_dir` (0700: it holds the CA key and the Raft log), on a blocking thread.
async fn create_data_dir(data_dir: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data_dir {}", data_dir.display()))
    })
    .await?
}
