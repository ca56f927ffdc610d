//! strait-server: one DC's control plane.
//!
//! Holds the DC's catalog (persisted in redb), its CA, config entries and federation state,
//! and serves them over an mTLS API (agents, and other DCs' servers through the mesh
//! gateways) and a plain loopback API. Flow: agents join and sync -> catalog -> mesh view
//! (blocking query) -> agents build per-proxy snapshots.
#![forbid(unsafe_code)]

mod acl_bootstrap;
mod acl_replication;
mod api;
mod autopilot;
mod ca;
mod cluster;
pub mod config;
mod federation;
mod forward;
mod identity;
mod liveness;
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
    server.set_waiting_for("Raft: restoring the catalog");
    let peers = replicated::Peers::default();
    let (consensus, raft_id) =
        replicated::start(&server, server.catalog.clone(), peers.clone()).await?;
    let raft_routes = consensus.router(replicated::peer_check(&cfg.datacenter));
    let _ = server.consensus.set(consensus);
    cluster::spawn_membership(&server, &role);
    autopilot::spawn(&server, &role);

    // The mTLS listener serves from now on, with a throwaway certificate until the real one.
    let tls = identity::bootstrap(&server)?;
    role.spawn(
        "mesh-api",
        strait_rpc::serve::serve_tls(
            https,
            tls.subscribe(),
            api::router(server.clone(), api::Origin::Mesh).merge(raft_routes),
            shutdown.clone(),
        ),
    );
    let formed = tokio::select! {
        r = cluster::form(&server, raft_id) => r?,
        _ = shutdown.cancelled() => return stop_raft(&server).await,
    };
    let not_after = match formed {
        // A joiner serves Raft with the certificate it was given, to receive the log that
        // carries the CA.
        cluster::Formation::Joined(joined) => {
            let not_after = identity::joined(&server, &tls, joined)?;
            peers.set(identity::mutual_tls(&server)?);
            let ca = wait_for_ca(&server, &shutdown).await?;
            server.set_ca(ca);
            not_after
        }
        cluster::Formation::Member => {
            let ca = wait_for_ca(&server, &shutdown).await?;
            server.set_ca(ca);
            let not_after = identity::first(&server, &tls)?;
            peers.set(identity::mutual_tls(&server)?);
            not_after
        }
    };
    identity::renew_from_ca(&server, &role, tls, not_after, peers);
    cluster::spawn_rejoin(&server, &role, raft_id);
    tokio::select! {
        r = register_self(&server) => r?,
        _ = shutdown.cancelled() => return stop_raft(&server).await,
    }
    federation::spawn(server.clone(), &role);
    liveness::spawn(&server, &role);
    acl_replication::spawn(&server, &role);
    acl_bootstrap::spawn(&server, &role);
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

/// The DC's CA, or `Cancelled` when the role stops first.
async fn wait_for_ca(
    server: &Arc<Server>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<ca::CaState> {
    tokio::select! {
        r = cluster::acquire_ca(server) => r,
        _ = shutdown.cancelled() => anyhow::bail!("stopped before the CA was up"),
    }
}

/// Registers this server in its own catalog, retrying while the write cannot commit: when
/// all the servers of a DC restart together there is no leader for a moment, and the leader
/// may still serve its throwaway certificate while it installs the CA, so a forwarded write
/// fails its handshake (found by the cluster test that stops and starts all three; it used to
/// make the server exit).
async fn register_self(server: &Server) -> Result<()> {
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        let e = match server.register_self().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !matches!(
            e.downcast_ref::<replicated::WriteFailure>(),
            Some(replicated::WriteFailure::Unavailable(_))
        ) {
            return Err(e);
        }
        let why = format!("{e:#}");
        tracing::info!(error = %why, "cannot register this server in the catalog yet; retrying");
        server.set_waiting_for(format!("registering this server in the catalog: {why}"));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
    }
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
