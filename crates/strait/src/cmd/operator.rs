//! `strait operator raft list-peers | remove-peer`: the Raft cluster of a datacenter's
//! servers, as Consul's `consul operator raft`. Talks to a server's loopback HTTP API (found
//! as `locate.rs` says, like `strait intention`); [`ServerAddr`] is also how `strait snapshot`
//! and `strait acl` find theirs.

use super::api::{Api, Kind};
use super::intention::{server_help, SERVER_ENV};
use super::locate;
use super::token::TokenArgs;
use anyhow::{bail, Result};
use http::Method;
use std::net::SocketAddr;
use strait_proto::RaftConfiguration;

/// The server to ask: `--http-addr`, `STRAIT_SERVER_HTTP_ADDR`, the lab's, or the local one.
#[derive(Debug, clap::Args)]
pub struct ServerAddr {
    /// A server's loopback HTTP API (`http_addr` in its config).
    #[arg(long = "http-addr", env = SERVER_ENV, global = true, long_help = server_help())]
    http_addr: Option<SocketAddr>,
    #[command(flatten)]
    token: TokenArgs,
}

impl ServerAddr {
    /// The server to ask, with the token to send it.
    pub(crate) fn api(&self) -> Result<Api> {
        let flag = locate::Flag {
            value: self.http_addr,
            env: SERVER_ENV,
        };
        Api::new(
            locate::locate(flag, locate::Want::Server)?,
            Kind::Server,
            &self.token,
        )
    }
}

#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    #[command(subcommand)]
    cmd: OperatorCommand,
    #[command(flatten)]
    server: ServerAddr,
}

#[derive(Debug, clap::Subcommand)]
enum OperatorCommand {
    /// The Raft cluster of the datacenter's servers.
    #[command(subcommand)]
    Raft(RaftCommand),
}

#[derive(Debug, clap::Subcommand)]
enum RaftCommand {
    /// The servers of the Raft configuration: node, ID, address, state, voter.
    ListPeers,
    /// Remove a server from the Raft configuration (a dead one, for good). The last voter
    /// cannot be removed.
    RemovePeer {
        /// The server's ID, as `list-peers` shows it.
        #[arg(required_unless_present = "address", conflicts_with = "address")]
        id: Option<String>,
        /// The server's Raft address (`ip:port`), instead of its ID.
        #[arg(long)]
        address: Option<String>,
    },
}

pub async fn run(args: OperatorArgs) -> Result<()> {
    let server = args.server.api()?;
    let timeout = strait_rpc::http::DEFAULT_TIMEOUT;
    match args.cmd {
        OperatorCommand::Raft(RaftCommand::ListPeers) => {
            let path = "/v1/operator/raft/configuration";
            let config: RaftConfiguration = server
                .call(Method::GET, path, None, timeout)
                .await?
                .json()?;
            let rows = config
                .servers
                .into_iter()
                .map(|s| {
                    let state = match (s.leader, s.voter) {
                        (true, _) => "leader",
                        (false, true) => "follower",
                        (false, false) => "learner",
                    };
                    vec![s.node, s.id, s.address, state.into(), s.voter.to_string()]
                })
                .collect();
            super::human::table(&["Node", "ID", "Address", "State", "Voter"], rows);
        }
        OperatorCommand::Raft(RaftCommand::RemovePeer { id, address }) => {
            let (query, what) = match (id, address) {
                (Some(id), _) => (format!("id={id}"), format!("ID {id}")),
                (None, Some(addr)) => (format!("address={addr}"), format!("address {addr}")),
                (None, None) => bail!("say which server to remove: its ID, or --address"),
            };
            let path = format!("/v1/operator/raft/peer?{query}");
            server.call(Method::DELETE, &path, None, timeout).await?;
            println!("removed the server with {what} from the Raft configuration");
        }
    }
    Ok(())
}
