//! Entry points for the binary, run under the process lifecycle
//! ([`strait_systemd::lifecycle`], which owns the signals): validate arguments (bad ones are
//! usage errors, a bad `--snapshot-file` a configuration error, both before anything binds),
//! pick the snapshot source, start the sidecar or gateway, and run until the role stops.
//! `READY=1` once ready; SIGHUP re-fetches the snapshot from the agent or re-reads the file.

use crate::cli::{GatewayArgs, SidecarArgs};
use crate::gateway::start_gateway;
use crate::sidecar::start_sidecar;
use crate::snapshot_source::{
    gateway_registration, load_file, publish_if_newer, register_gateway, reload_file,
    SnapshotSource, SnapshotTx,
};
use anyhow::Context as _;
use http::Method;
use std::time::Duration;
use strait_snapshot::Snapshot;
use strait_systemd::lifecycle::{ExitContext, Role};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How much longer than its drain grace a proxy's whole stop may take (the lifecycle's
/// deadline): the admin endpoint and the snapshot source stop after the drain.
pub const STOP_MARGIN: Duration = Duration::from_secs(2);

/// `strait proxy --sidecar-for <service-id>`.
pub async fn run_sidecar(args: SidecarArgs, role: Role) -> anyhow::Result<()> {
    let (options, source) = args.validate().bad_usage()?;
    crate::snapshot_source::init_agent_token().bad_config()?;
    crate::rlimit::check(options.max_connections, 2);
    if !crate::heap::tune() {
        tracing::debug!("glibc refused the malloc thresholds; its defaults stay");
    }
    let shutdown = role.shutdown().clone();
    let (tx, rx) = watch::channel(None);
    if let SnapshotSource::File(path) = &source {
        // A bad file at start-up is an error, not a retry loop.
        let snapshot = load_file(path).bad_config()?;
        snapshot
            .sidecar()
            .with_context(|| format!("--snapshot-file {}", path.display()))
            .bad_config()?;
        publish_if_newer(&tx, snapshot);
    }
    let handle = start_sidecar(options, rx, shutdown.clone()).await?;
    role.spawn_cancellable(
        "snapshot-source",
        source.clone().run(tx.clone(), shutdown.clone()),
    );
    tokio::select! {
        _ = handle.ready() => serve_hangups(&role, source, tx),
        _ = shutdown.cancelled() => {}
    }
    handle.join().await
}

/// `strait gateway --mesh`.
pub async fn run_gateway(args: GatewayArgs, role: Role) -> anyhow::Result<()> {
    let (options, source) = args.validate().bad_usage()?;
    crate::snapshot_source::init_agent_token().bad_config()?;
    crate::rlimit::check(options.max_connections, 6);
    let shutdown = role.shutdown().clone();
    // A bad snapshot file is refused before anything binds.
    let from_file = match &source {
        SnapshotSource::File(path) => {
            let snapshot = load_file(path).bad_config()?;
            snapshot
                .gateway()
                .with_context(|| format!("--snapshot-file {}", path.display()))
                .bad_config()?;
            Some(snapshot)
        }
        SnapshotSource::Agent { .. } => None,
    };
    let lan_listener = TcpListener::bind(args.address)
        .await
        .with_context(|| format!("gateway: cannot listen on --address {}", args.address))?;
    // Register what was bound (a port of 0 in the arguments means "any").
    let lan = lan_listener.local_addr()?;
    let mut wan = lan;
    let mut listeners = vec![("lan".to_string(), lan_listener)];
    if let Some(wan_arg) = args.wan_address.filter(|w| *w != args.address) {
        let wan_listener = TcpListener::bind(wan_arg)
            .await
            .with_context(|| format!("gateway: cannot listen on --wan-address {wan_arg}"))?;
        wan = wan_listener.local_addr()?;
        listeners.push(("wan".to_string(), wan_listener));
    }
    let (tx, rx) = watch::channel(None);
    if let Some(snapshot) = from_file {
        publish_if_newer(&tx, snapshot);
    }
    // Started before it registers, so that the registration's check names the admin address
    // actually bound.
    let handle = start_gateway(options, listeners, rx, shutdown.clone()).await?;
    if let SnapshotSource::Agent { agent, .. } = &source {
        let admin = handle.admin_addr().unwrap_or(args.common.admin);
        let body = gateway_registration(&args.service, lan, wan, admin);
        if !register_gateway(*agent, body, &shutdown).await {
            return handle.join().await;
        }
        tracing::info!(%agent, service = args.service, "gateway registered");
    }
    role.spawn_cancellable(
        "snapshot-source",
        source.clone().run(tx.clone(), shutdown.clone()),
    );
    tokio::select! {
        _ = handle.ready() => serve_hangups(&role, source, tx),
        _ = shutdown.cancelled() => {}
    }
    handle.join().await
}

/// Once the proxy is ready (certificate and first snapshot applied): tells systemd
/// `READY=1`, then answers each SIGHUP with `RELOADING=1`, a fresh snapshot (from the agent,
/// or the file re-read), and `READY=1`.
fn serve_hangups(role: &Role, source: SnapshotSource, tx: SnapshotTx) {
    let version = |tx: &SnapshotTx| tx.borrow().as_ref().map_or(0, |s| s.version);
    role.ready(&format!("ready: snapshot version {}", version(&tx)));
    let (agent, proxy_id) = match source {
        SnapshotSource::File(path) => {
            role.on_reload(move || std::future::ready(reload_file(&path, &tx)));
            return;
        }
        SnapshotSource::Agent {
            agent, proxy_id, ..
        } => (agent, proxy_id),
    };
    let path = format!("/v1/agent/proxy/snapshot/{proxy_id}?index=0");
    role.on_reload(move || {
        let (tx, path) = (tx.clone(), path.clone());
        async move {
            let resp = crate::snapshot_source::agent_request(
                agent,
                Method::GET,
                &path,
                None,
                Duration::from_secs(10),
            )
            .await?;
            publish_if_newer(&tx, resp.json::<Snapshot>()?);
            tracing::info!(%agent, version = version(&tx), "SIGHUP: snapshot re-fetched");
            Ok::<_, strait_rpc::RpcError>(format!("snapshot re-fetched, version {}", version(&tx)))
        }
    });
}
