//! `strait envoy bootstrap|run`: Envoy as a strait proxy (like `consul connect envoy`). The
//! bootstrap points Envoy at the local agent's ADS server (`grpc_addr`) with the proxy id as
//! its node id; `run` also registers a mesh gateway with the agent (the same registration
//! `strait gateway` makes) and Envoy's admin address (for `strait doctor`), then execs Envoy.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use strait_envoy::bootstrap::Bootstrap;
use strait_systemd::lifecycle::{ExitContext, Role};

#[derive(Debug, Subcommand)]
pub enum EnvoyCommand {
    /// Print the Envoy bootstrap (JSON) for a sidecar or a mesh gateway.
    Bootstrap {
        #[command(flatten)]
        proxy: EnvoyProxyArgs,
        /// Gateway only: also register the gateway with the agent (as `run` does).
        #[arg(long)]
        register: bool,
    },
    /// Register (gateways), then exec Envoy with the bootstrap.
    Run {
        #[command(flatten)]
        proxy: EnvoyProxyArgs,
        /// The Envoy executable.
        #[arg(long, default_value = "envoy", env = "STRAIT_ENVOY_BIN")]
        envoy_bin: String,
        /// Register nothing with the agent, neither a gateway nor the admin endpoint (the
        /// snapshot comes from `strait envoy ads`).
        #[arg(long)]
        no_register: bool,
        /// Further arguments for Envoy, after `--`.
        #[arg(last = true)]
        envoy_args: Vec<String>,
    },
    /// Serve ADS from snapshot files, without an agent: what `strait proxy --snapshot-file`
    /// is to the built-in proxy (benchmarks, experiments). Each file's `proxy_id` is the
    /// Envoy node id it serves.
    Ads {
        /// Loopback address to serve gRPC on.
        #[arg(long, default_value = "127.0.0.1:8502", value_name = "ADDR")]
        listen: SocketAddr,
        /// A snapshot (JSON, as `strait proxy --snapshot-file` reads); repeat for more proxies.
        #[arg(long = "snapshot-file", required = true, value_name = "FILE")]
        snapshot_files: Vec<std::path::PathBuf>,
    },
}

/// Snapshots read once from files; they never change.
struct FileSnapshots {
    by_proxy: std::collections::HashMap<String, std::sync::Arc<strait_snapshot::Snapshot>>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl strait_envoy::SnapshotSource for FileSnapshots {
    fn snapshot(&self, proxy_id: &str) -> Option<std::sync::Arc<strait_snapshot::Snapshot>> {
        self.by_proxy.get(proxy_id).cloned()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

async fn serve_files(listen: SocketAddr, files: &[std::path::PathBuf], role: &Role) -> Result<()> {
    if !listen.ip().is_loopback() {
        return Err(anyhow::anyhow!(
            "--listen {listen}: ADS hands out private keys in clear; loopback only"
        ))
        .bad_usage();
    }
    let mut by_proxy = std::collections::HashMap::new();
    for file in files {
        let snapshot = strait_proxy::snapshot_source::load_file(file).bad_config()?;
        let id = snapshot.proxy_id.clone();
        if by_proxy
            .insert(id.clone(), std::sync::Arc::new(snapshot))
            .is_some()
        {
            return Err(anyhow::anyhow!(
                "{}: proxy_id {id:?} is in two snapshot files",
                file.display()
            ))
            .bad_config();
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on --listen {listen}"))?;
    tracing::info!(%listen, proxies = by_proxy.len(), "serving ADS from snapshot files");
    let source = std::sync::Arc::new(FileSnapshots {
        by_proxy,
        changes: tokio::sync::watch::channel(0).0,
    });
    role.ready(&format!("ready: serving ADS on {listen}"));
    strait_envoy::serve(listener, source, role.shutdown().clone()).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GatewayKind {
    Mesh,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["sidecar_for", "gateway"])))]
pub struct EnvoyProxyArgs {
    /// Service ID this sidecar fronts; the proxy ID is `<service-id>-sidecar-proxy`.
    #[arg(long, value_name = "SERVICE_ID")]
    sidecar_for: Option<String>,
    /// Run as a gateway of this kind.
    #[arg(long, value_enum)]
    gateway: Option<GatewayKind>,
    /// Gateway: LAN address Envoy listens on and the agent registers.
    #[arg(long, value_name = "ADDR", required_if_eq("gateway", "mesh"))]
    address: Option<SocketAddr>,
    /// Gateway: WAN address other DCs dial. Default: --address.
    #[arg(long, value_name = "ADDR")]
    wan_address: Option<SocketAddr>,
    /// Gateway: service name and ID to register (and the proxy id).
    #[arg(long, default_value = "mesh-gateway")]
    service: String,
    /// Override the proxy ID (the Envoy node id).
    #[arg(long)]
    proxy_id: Option<String>,
    /// Envoy's admin endpoint (loopback only).
    #[arg(long, default_value = "127.0.0.1:19000", value_name = "ADDR")]
    admin: SocketAddr,
    /// The agent's ADS (gRPC) address: its `grpc_addr`.
    #[arg(long, default_value = "127.0.0.1:8502", value_name = "ADDR")]
    grpc: SocketAddr,
    /// The agent's HTTP API (gateway and admin endpoint registration).
    #[arg(long, default_value = "127.0.0.1:8500", value_name = "ADDR")]
    agent: SocketAddr,
    /// The proxy's ACL token: Envoy presents it on the ADS stream (gRPC metadata
    /// `x-consul-token`) and `run` with the registrations; it needs `service:write` on the
    /// proxy's service.
    #[command(flatten)]
    token: super::token::TokenArgs,
}

impl EnvoyProxyArgs {
    /// The bootstrap, holding the proxy's token; the registrations with the agent carry the
    /// same token.
    fn bootstrap(&self) -> Result<serde_json::Value> {
        let token = self
            .token
            .resolve()
            .bad_config()?
            .map(|t| t.expose().to_owned());
        strait_proxy::snapshot_source::set_agent_token(token.clone());
        let (proxy_id, cluster) = match (&self.sidecar_for, self.gateway) {
            (Some(service), _) => (format!("{service}-sidecar-proxy"), service.clone()),
            (None, _) => (self.service.clone(), self.service.clone()),
        };
        let bootstrap = Bootstrap {
            proxy_id: self.proxy_id.clone().unwrap_or(proxy_id),
            cluster,
            admin: self.admin,
            ads: self.grpc,
            token,
        };
        Ok(bootstrap.to_json()?)
    }

    /// Tells the agent where Envoy's admin listens, for `strait doctor` (once: Envoy cannot
    /// repeat it; the agent keeps it across restarts). A failure only costs doctor's
    /// `--admin` default, so Envoy starts anyway.
    async fn register_admin(&self, bootstrap: &serde_json::Value) {
        let proxy_id = bootstrap["node"]["id"].as_str().unwrap_or_default();
        let agent = self.agent;
        match strait_proxy::snapshot_source::register_admin(agent, proxy_id, self.admin).await {
            Ok(()) => tracing::info!(%agent, proxy_id, admin = %self.admin, "admin registered"),
            Err(err) => tracing::warn!(%agent, proxy_id, %err,
                "cannot register Envoy's admin endpoint; `strait doctor` needs --admin"),
        }
    }

    /// Registers the gateway with the agent (sidecars: nothing), retrying until the agent
    /// answers; `false` when the role was stopped before the agent answered.
    async fn register_gateway(&self, role: &Role) -> Result<bool> {
        let Some(lan) = self.address.filter(|_| self.gateway.is_some()) else {
            return Ok(true);
        };
        let wan = self.wan_address.unwrap_or(lan);
        let body = strait_proxy::snapshot_source::gateway_registration(
            &self.service,
            lan,
            wan,
            self.admin,
        );
        if !strait_proxy::snapshot_source::register_gateway(self.agent, body, role.shutdown()).await
        {
            tracing::info!("stopped before the gateway was registered");
            return Ok(false);
        }
        tracing::info!(agent = %self.agent, service = %self.service, "gateway registered");
        Ok(true)
    }
}

/// Hands Envoy its bootstrap: on the command line, or, when it holds a token (a command line
/// is world-readable), as Envoy's standard input (`--config-path /dev/fd/0`, read as JSON;
/// Envoy refuses other paths under `/dev`): an unnamed file (`O_TMPFILE`, only this user can
/// open it), so that no copy of the token is ever named in `$TMPDIR` or left behind.
fn config_arg(envoy: &mut std::process::Command, bootstrap: &serde_json::Value) -> Result<()> {
    use std::io::{Seek as _, Write as _};
    let grpc = &bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0];
    if grpc.get("initial_metadata").is_none() {
        envoy.arg("--config-yaml").arg(bootstrap.to_string());
        return Ok(());
    }
    let mut file = tempfile::tempfile()
        .context("cannot create a file for Envoy's bootstrap (it holds the token)")?;
    file.write_all(bootstrap.to_string().as_bytes())
        .and_then(|()| file.rewind())
        .context("cannot write Envoy's bootstrap (it holds the token)")?;
    envoy.stdin(file).arg("--config-path").arg("/dev/fd/0");
    Ok(())
}

/// Runs under the lifecycle: SIGTERM/SIGINT stop `ads`, and a registration still waiting
/// for the agent (then the process is Envoy, which handles its own signals).
pub async fn run(cmd: EnvoyCommand, role: Role) -> Result<()> {
    match cmd {
        EnvoyCommand::Ads {
            listen,
            snapshot_files,
        } => serve_files(listen, &snapshot_files, &role).await,
        EnvoyCommand::Bootstrap { proxy, register } => {
            let bootstrap = proxy.bootstrap()?;
            if register && !proxy.register_gateway(&role).await? {
                return Ok(());
            }
            println!("{}", serde_json::to_string_pretty(&bootstrap)?);
            Ok(())
        }
        EnvoyCommand::Run {
            proxy,
            envoy_bin,
            no_register,
            envoy_args,
        } => {
            let bootstrap = proxy.bootstrap()?;
            if !no_register && !proxy.register_gateway(&role).await? {
                return Ok(());
            }
            if !no_register {
                proxy.register_admin(&bootstrap).await;
            }
            // Several Envoys share a VM: hot restart (shared memory per base id) is off.
            let mut envoy = std::process::Command::new(&envoy_bin);
            config_arg(&mut envoy, &bootstrap)?;
            let err = envoy.arg("--disable-hot-restart").args(&envoy_args).exec();
            Err(err).with_context(|| format!("cannot run Envoy ({envoy_bin}); install Envoy 1.40 or name it with --envoy-bin"))
        }
    }
}
