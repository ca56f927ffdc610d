//! The command line: roles (server, agent, proxy, gateway), the lab, the demo services, and
//! commands for humans that talk to an agent (found as `cmd/locate.rs` says).

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The version and the git commit it was built from (`-dirty`: with uncommitted changes).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STRAIT_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "strait",
    version = VERSION,
    about = "A service mesh for virtual machines, federated through mesh gateways"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

/// The commands that mirror Consul's CLI, whose flags Consul spells with one dash.
const CONSUL_STYLE: &[&str] = &[
    "acl",
    "intention",
    "operator",
    "snapshot",
    "members",
    "catalog",
];

/// The command line with Consul's one-dash long flags (`-token-file`, `-policy-name=x`)
/// spelled as clap's two-dash ones, after a command that mirrors Consul's (`strait acl token
/// create -policy-name readers` works as in Consul). One-letter flags (`-h`) stay; so does
/// what follows `--`. A value that itself starts with `-word` is given as `--flag=-word`.
pub fn consul_style(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args = args.into_iter();
    let mut out: Vec<std::ffi::OsString> = args.next().into_iter().collect();
    let mut consul = false;
    for arg in args.by_ref() {
        let text = arg.to_str().unwrap_or_default();
        if text == "--" {
            out.push(arg);
            break;
        }
        let name = text.strip_prefix('-').unwrap_or_default();
        let flag = name.split('=').next().unwrap_or_default();
        let long = flag.len() > 1
            && flag.starts_with(|c: char| c.is_ascii_lowercase())
            && flag.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        if consul && long {
            out.push(format!("--{name}").into());
        } else {
            consul |= CONSUL_STYLE.contains(&text);
            out.push(arg);
        }
    }
    out.extend(args);
    out
}

impl Cli {
    /// Proxies run on one thread (`main` gives them a current-thread runtime: no cross-thread
    /// wake-ups, one malloc arena); every other command uses up to two workers.
    pub fn worker_threads(&self) -> usize {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        match self.cmd {
            Command::Proxy(_) | Command::Gateway(_) => 1,
            _ => cores.min(2),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a server (control plane of one datacenter).
    Server {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run an agent (one per VM).
    Agent {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a sidecar proxy.
    Proxy(strait_proxy::SidecarArgs),
    /// Run a mesh gateway.
    Gateway(strait_proxy::GatewayArgs),
    /// Envoy as a sidecar or mesh gateway, configured by the local agent over xDS.
    Envoy {
        #[command(subcommand)]
        cmd: crate::cmd::envoy::EnvoyCommand,
    },
    /// Bring up, inspect and tear down a whole multi-DC mesh on this machine.
    Lab(strait_lab::LabArgs),
    /// The demo services (counting, dashboard).
    Demo(strait_lab::DemoArgs),
    /// Check every hop (agent, servers, federation, a service and its upstream) and name the
    /// broken one; exit code 0 only if every check passed.
    Doctor {
        #[command(flatten)]
        args: strait_doctor::DoctorArgs,
        #[command(flatten)]
        token: crate::cmd::token::TokenArgs,
    },
    /// Nodes per datacenter, with status.
    Members {
        #[command(flatten)]
        agent: AgentAddr,
    },
    /// Read the catalog.
    Catalog {
        #[command(subcommand)]
        cmd: CatalogCommand,
        #[command(flatten)]
        agent: AgentAddr,
    },
    /// Who may call whom (service-intentions), on a server's loopback API.
    Intention(crate::cmd::intention::IntentionArgs),
    /// The Raft cluster of a datacenter's servers (list-peers, remove-peer), on a server's
    /// loopback API.
    Operator(crate::cmd::operator::OperatorArgs),
    /// ACL tokens, policies and roles (bootstrap, token, policy, role), on a server's loopback
    /// API.
    Acl(crate::cmd::acl::AclArgs),
    /// Save or restore a snapshot of a datacenter's catalog, config entries and CA (backups),
    /// on a server's loopback API.
    Snapshot(crate::cmd::snapshot::SnapshotArgs),
    /// Configuration files.
    Config {
        #[command(subcommand)]
        cmd: ConfigCommand,
    },
    /// Install this VM's systemd units, config directory and system user (and the binary).
    Install(crate::cmd::install::InstallArgs),
    /// Print the version and the git commit this binary was built from.
    Version,
}

#[derive(Debug, clap::Args)]
pub struct AgentAddr {
    /// The agent's HTTP API.
    #[arg(long = "http-addr", env = "STRAIT_HTTP_ADDR", global = true, long_help = agent_help())]
    pub http_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub token: crate::cmd::token::TokenArgs,
}

fn agent_help() -> String {
    format!(
        "The agent's HTTP API. {}",
        crate::cmd::locate::help("agent")
    )
}

impl AgentAddr {
    /// The agent to ask (see [`crate::cmd::locate`]), with the token to send it.
    pub(crate) fn api(&self) -> anyhow::Result<crate::cmd::api::Api> {
        use crate::cmd::{api, locate};
        let flag = locate::Flag {
            value: self.http_addr,
            env: "STRAIT_HTTP_ADDR",
        };
        let at = locate::locate(flag, locate::Want::Agent)?;
        api::Api::new(at, api::Kind::Agent, &self.token)
    }
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Services and their tags.
    Services {
        /// Another datacenter (forwarded through the mesh gateways).
        #[arg(long)]
        dc: Option<String>,
    },
    /// Nodes and their addresses.
    Nodes {
        #[arg(long)]
        dc: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(line: &str) -> String {
        let args = line.split(' ').map(std::ffi::OsString::from);
        let out: Vec<String> = consul_style(args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        out.join(" ")
    }

    /// clap checks a command's arguments (unique names, valid conflicts) only when that
    /// subcommand is parsed; this checks them all.
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn consuls_one_dash_flags_are_read_after_consul_commands_only() {
        assert_eq!(
            rewrite("strait acl token create -policy-name=readers -service-identity web -local"),
            "strait acl token create --policy-name=readers --service-identity web --local"
        );
        assert_eq!(
            rewrite("strait acl token list -token-file /t --http-addr 127.0.0.1:1 -h"),
            "strait acl token list --token-file /t --http-addr 127.0.0.1:1 -h"
        );
        assert_eq!(
            rewrite("strait lab exec vm -- strait acl -x -token t"),
            "strait lab exec vm -- strait acl -x -token t"
        );
        assert_eq!(
            rewrite("strait server -c f.toml -token t"),
            "strait server -c f.toml -token t"
        );
        assert_eq!(
            rewrite("strait snapshot save -stale f -- -token"),
            "strait snapshot save --stale f -- -token"
        );
        // And clap takes the result.
        let args = consul_style(
            "strait acl role create -name ops -policy-name readers -token-file /t"
                .split(' ')
                .map(std::ffi::OsString::from),
        );
        Cli::try_parse_from(args).unwrap();
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a server or agent config file without starting anything.
    Check { file: PathBuf },
}
