//! Entry points for the binary: validate arguments, pick the snapshot source, start the
//! sidecar or gateway, and run until shutdown (the given token, SIGTERM or SIGINT).

use crate::cli::{GatewayArgs, SidecarArgs};
use crate::gateway::start_gateway;
use crate::sidecar::start_sidecar;
use crate::snapshot_source::{load_file, publish_if_newer, register_gateway, SnapshotSource};
use anyhow::Context as _;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// `strait proxy --sidecar-for <service-id>`.
pub async fn run_sidecar(args: SidecarArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (options, source) = args.validate()?;
    crate::rlimit::check(options.max_connections, 2);
    let shutdown = crate::runtime::with_signals(&shutdown);
    let (tx, rx) = watch::channel(None);
    if let SnapshotSource::File(path) = &source {
        // A bad file at start-up is an error, not a retry loop.
        publish_if_newer(&tx, load_file(path)?);
    }
    let handle = start_sidecar(options, rx, shutdown.clone()).await?;
    tokio::spawn(source.run(tx, shutdown.clone()));
    handle.join().await
}

/// `strait gateway --mesh`.
pub async fn run_gateway(args: GatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (options, source) = args.validate()?;
    crate::rlimit::check(options.max_connections, 6);
    let shutdown = crate::runtime::with_signals(&shutdown);
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
        SnapshotSource::File(path) => {
            publish_if_newer(&tx, load_file(path)?);
        }
        SnapshotSource::Agent { agent, .. } => {
            let body = json!({
                "Kind": "mesh-gateway",
                "ID": args.service,
                "Name": args.service,
                "Address": lan.ip().to_string(),
                "Port": lan.port(),
                "TaggedAddresses": {
                    "lan": {"Address": lan.ip().to_string(), "Port": lan.port()},
                    "wan": {"Address": wan.ip().to_string(), "Port": wan.port()},
                },
                // As Consul does for gateways: a stopped gateway turns critical, and
                // snapshots elsewhere stop routing to it.
                "Check": {
                    "Name": "Mesh Gateway Listening",
                    "TCP": lan.to_string(),
                    "Interval": "10s",
                },
            });
            if !register_gateway(*agent, body, &shutdown).await {
                return Ok(());
            }
            tracing::info!(%agent, service = args.service, "gateway registered");
        }
    }
    let handle = start_gateway(options, listeners, rx, shutdown.clone()).await?;
    tokio::spawn(source.run(tx, shutdown.clone()));
    handle.join().await
}
