//! `strait operator raft list-peers | remove-peer`: the Raft cluster of a datacenter's
//! servers, as Consul's `consul operator raft`. Talks to a server's loopback HTTP API (found
//! as `locate.rs` says, like `strait intention`); [`Server`] is also what `strait snapshot`
//! talks through.

use super::intention::{server_help, SERVER_ENV};
use super::locate::{self, Located};
use anyhow::{bail, Context, Result};
use http::Method;
use std::net::SocketAddr;
use std::time::Duration;
use strait_proto::RaftConfiguration;

/// The server to ask: `--http-addr`, `STRAIT_SERVER_HTTP_ADDR`, the lab's, or the local one.
#[derive(Debug, clap::Args)]
pub struct ServerAddr {
    /// A server's loopback HTTP API (`http_addr` in its config).
    #[arg(long = "http-addr", env = SERVER_ENV, global = true, long_help = server_help())]
    http_addr: Option<SocketAddr>,
}

/// A server's loopback API.
pub(crate) struct Server(Located);

impl Server {
    pub(crate) fn locate(addr: &ServerAddr) -> Result<Server> {
        let flag = locate::Flag {
            value: addr.http_addr,
            env: SERVER_ENV,
        };
        Ok(Server(locate::locate(flag, locate::Want::Server)?))
    }

    /// One exchange; a non-2xx answer is an error carrying the server's message.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<strait_rpc::http::Response> {
        self.call_as(method, path, body, timeout, None).await
    }

    /// [`Server::call`] with an ACL token (`X-Consul-Token`).
    pub(crate) async fn call_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        token: Option<&str>,
    ) -> Result<strait_rpc::http::Response> {
        let headers: Vec<(&str, &str)> = token.map(|t| ("x-consul-token", t)).into_iter().collect();
        let resp = strait_rpc::http::Client::new(self.0.addr, timeout)
            .request_with(method, path, body, &headers)
            .await
            .with_context(|| {
                format!(
                    "cannot reach the server's HTTP API at {} (run this on a server VM, or set \
                     --http-addr / {SERVER_ENV} to the server's http_addr)",
                    self.0
                )
            })?;
        if !resp.status.is_success() {
            bail!(
                "{path} on {}: HTTP {}: {}",
                self.0.addr,
                resp.status,
                String::from_utf8_lossy(&resp.body).trim()
            );
        }
        Ok(resp)
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
    let server = Server::locate(&args.server)?;
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
