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
use std::path::PathBuf;
use std::sync::Arc;
use strait_systemd::lifecycle::Role;

/// Runs a server with the validated `cfg`, read from `path` (re-read on SIGHUP, see
/// [`reload`]), until `role` stops.
///
/// Validate, then act: the config is valid and both listen addresses are taken before
/// anything is written, so a taken port leaves no `catalog.redb` behind. Then: the catalog,
/// the loopback API (so readiness can say what the server waits for), the CA (joining the
/// federation if this is a new secondary), the mTLS API, and `READY=1`.
pub async fn run(cfg: ServerConfig, path: PathBuf, role: Role) -> Result<()> {
    let http = strait_rpc::serve::bind("http_addr", cfg.http_addr).await?;
    let https = strait_rpc::serve::bind("https_addr", cfg.https_addr).await?;
    let catalog = open_catalog(cfg.data_dir.clone()).await?;
    let server = Arc::new(Server::new(cfg.clone(), catalog));
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

    let ca = tokio::select! {
        r = federation::bring_up_ca(&server) => r?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    server.set_ca(ca);
    let tls = identity::start(&server, &role)?;
    role.spawn(
        "mesh-api",
        strait_rpc::serve::serve_tls(
            https,
            tls,
            api::router(server.clone(), api::Origin::Mesh),
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
    Ok(())
}

/// Creates `data_dir` and opens the catalog in it, on a blocking thread (redb reads the
/// whole file).
async fn open_catalog(data_dir: PathBuf) -> Result<strait_catalog::Catalog> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
        strait_catalog::Catalog::open(data_dir.join("catalog.redb"))
            .with_context(|| format!("cannot open the catalog in {}", data_dir.display()))
    })
    .await?
}
