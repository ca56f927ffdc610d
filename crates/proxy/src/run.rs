//! Entry points for the binary: validate arguments, pick the snapshot source, start the
//! sidecar or gateway, and run until shutdown (the given token, SIGTERM or SIGINT). Under
//! systemd: `READY=1` once ready, SIGHUP re-fetches the snapshot (`RELOADING=1`, `READY=1`).

use crate::cli::{GatewayArgs, SidecarArgs};
use crate::gateway::start_gateway;
use crate::sidecar::start_sidecar;
use crate::snapshot_source::{
    gateway_registration, load_file, publish_if_newer, register_gateway, SnapshotSource, SnapshotTx,
};
use anyhow::Context as _;
use http::Method;
use std::time::Duration;
use strait_snapshot::Snapshot;
use tokio::net::TcpListener;
use tokio::signal::unix::Signal;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `strait proxy --sidecar-for <service-id>`.
pub async fn run_sidecar(args: SidecarArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (options, source) = args.validate()?;
    crate::rlimit::check(options.max_connections, 2);
    let shutdown = crate::runtime::with_signals(&shutdown);
    let hangup = hangup_signal()?;
    let (tx, rx) = watch::channel(None);
    if let SnapshotSource::File(path) = &source {
        // A bad file at start-up is an error, not a retry loop.
        publish_if_newer(&tx, load_file(path)?);
    }
    let handle = start_sidecar(options, rx, shutdown.clone()).await?;
    tokio::spawn(source.clone().run(tx.clone(), shutdown.clone()));
    tokio::select! {
        _ = handle.ready() => serve_hangups(hangup, source, tx, shutdown.clone()),
        _ = shutdown.cancelled() => {}
    }
    handle.join().await
}

/// `strait gateway --mesh`.
pub async fn run_gateway(args: GatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (options, source) = args.validate()?;
    crate::rlimit::check(options.max_connections, 6);
    let shutdown = crate::runtime::with_signals(&shutdown);
    let hangup = hangup_signal()?;
    // A bad snapshot file is refused before anything binds.
    let from_file = match &source {
        SnapshotSource::File(path) => Some(load_file(path)?),
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
    match &source {
        SnapshotSource::File(_) => {
            if let Some(snapshot) = from_file {
                publish_if_newer(&tx, snapshot);
            }
        }
        SnapshotSource::Agent { agent, .. } => {
            let body = gateway_registration(&args.service, lan, wan);
            if !register_gateway(*agent, body, &shutdown).await {
                return Ok(());
            }
            tracing::info!(%agent, service = args.service, "gateway registered");
        }
    }
    let handle = start_gateway(options, listeners, rx, shutdown.clone()).await?;
    tokio::spawn(source.clone().run(tx.clone(), shutdown.clone()));
    tokio::select! {
        _ = handle.ready() => serve_hangups(hangup, source, tx, shutdown.clone()),
        _ = shutdown.cancelled() => {}
    }
    handle.join().await
}

/// Registered before anything else, so a SIGHUP never kills a proxy (its default action).
fn hangup_signal() -> anyhow::Result<Signal> {
    strait_systemd::reload::hangup().context("cannot install the SIGHUP handler")
}

/// Once the proxy is ready (certificate and first snapshot applied): tells systemd
/// `READY=1`, then answers each SIGHUP with `RELOADING=1`, a fresh snapshot from the agent,
/// and `READY=1`. With `--snapshot-file` the source itself re-reads the file on SIGHUP.
fn serve_hangups(
    hangup: Signal,
    source: SnapshotSource,
    tx: SnapshotTx,
    shutdown: CancellationToken,
) {
    let version = |tx: &SnapshotTx| tx.borrow().as_ref().map_or(0, |s| s.version);
    strait_systemd::notify::ready(&format!("ready: snapshot version {}", version(&tx)));
    let SnapshotSource::Agent { agent, proxy_id } = source else {
        return;
    };
    let path = format!("/v1/agent/proxy/snapshot/{proxy_id}?index=0");
    tokio::spawn(strait_systemd::reload::serve(hangup, shutdown, move || {
        let (tx, path) = (tx.clone(), path.clone());
        async move {
            let resp = strait_rpc::http::request_with_timeout(
                agent,
                Method::GET,
                &path,
                None,
                Duration::from_secs(10),
            )
            .await?;
            publish_if_newer(&tx, resp.json::<Snapshot>(agent, &path)?);
            tracing::info!(%agent, version = version(&tx), "SIGHUP: snapshot re-fetched");
            Ok::<_, strait_rpc::RpcError>(format!("snapshot re-fetched, version {}", version(&tx)))
        }
    }));
}
