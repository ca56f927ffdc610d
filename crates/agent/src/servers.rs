//! This DC's servers as the agent knows them, and the one way the agent asks them anything
//! (join, anti-entropy, the mesh view, leaf signing, relayed reads).
//!
//! The list starts as the configured `servers` and grows with the `strait-server` instances
//! the catalog shows (servers register themselves), so an agent configured with one server
//! learns the others. A request goes to the current server and moves on to the next on a
//! connection error, a timeout or a 5xx (a server without a Raft leader, or not ready, answers
//! 503); the first that answers becomes current, so a healthy server is kept. Each attempt has
//! a short deadline for the TCP connect and TLS handshake (a dead or hung server is skipped
//! quickly), and the caller's deadline for the exchange (long for blocking queries). When no
//! server answers, the error names every server tried with its own error.

use http::{Method, StatusCode};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strait_rpc::mesh::{Deadlines, Outgoing};
use strait_rpc::{Response, RpcError};
use strait_snapshot::{InstanceKind, MeshView};

/// Deadline of the TCP connect and TLS handshake with one server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Servers {
    configured: Vec<SocketAddr>,
    known: Mutex<Known>,
    connect_timeout: Duration,
}

struct Known {
    /// The configured servers, then those learned from the catalog, in the order learned.
    list: Vec<SocketAddr>,
    /// The server that answered last: asked first.
    current: Option<SocketAddr>,
}

/// The mTLS client side of a request: which identity is presented, which peer accepted, and
/// the SNI of this DC's servers.
pub struct Channel<'a> {
    pub tls: Arc<rustls::ClientConfig>,
    pub sni: &'a str,
}

impl Servers {
    pub fn new(configured: Vec<SocketAddr>) -> Servers {
        Servers::with_connect_timeout(configured, CONNECT_TIMEOUT)
    }

    pub fn with_connect_timeout(configured: Vec<SocketAddr>, connect_timeout: Duration) -> Servers {
        let mut list = configured.clone();
        dedup(&mut list);
        Servers {
            configured,
            known: Mutex::new(Known {
                current: list.first().copied(),
                list,
            }),
            connect_timeout,
        }
    }

    /// Every known server in the order the next request tries them: the current one first,
    /// then the others in list order after it.
    pub fn order(&self) -> Vec<SocketAddr> {
        let known = strait_base::sync::lock(&self.known);
        let start = known
            .current
            .and_then(|c| known.list.iter().position(|a| *a == c))
            .unwrap_or(0);
        let mut order = known.list[start..].to_vec();
        order.extend_from_slice(&known.list[..start]);
        order
    }

    /// Takes the servers `view` shows: the configured ones are kept, learned ones the catalog
    /// no longer has are dropped. Returns the addresses newly learned.
    pub fn learn(&self, view: &MeshView) -> Vec<SocketAddr> {
        let from_catalog = view
            .instances
            .iter()
            .filter(|i| i.kind == InstanceKind::Server)
            .map(|i| i.addr);
        let mut list = self.configured.clone();
        list.extend(from_catalog);
        dedup(&mut list);
        let mut known = strait_base::sync::lock(&self.known);
        let new: Vec<SocketAddr> = list
            .iter()
            .filter(|a| !known.list.contains(a))
            .copied()
            .collect();
        let gone = known.list.iter().any(|a| !list.contains(a));
        if !new.is_empty() || gone {
            tracing::info!(servers = ?list, learned = ?new, "this DC's servers, from the catalog");
        }
        if known.current.is_some_and(|c| !list.contains(&c)) {
            known.current = list.first().copied();
        }
        known.list = list;
        new
    }

    /// One request to this DC's servers: the current one, then each other in turn while the
    /// attempt fails or answers a 5xx other than 501 (a 4xx or a 501 is the answer). `timeout`
    /// bounds each attempt's exchange.
    pub async fn request(
        &self,
        channel: &Channel<'_>,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let req = Outgoing {
            method,
            path_and_query,
            body,
            headers: &[],
        };
        self.send(channel, req, timeout).await
    }

    /// [`Servers::request`] for a request with extra headers (a caller's ACL token).
    pub async fn send(
        &self,
        channel: &Channel<'_>,
        req: Outgoing<'_>,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let deadlines = Deadlines {
            connect: self.connect_timeout.min(timeout),
            total: timeout,
        };
        let order = self.order();
        let resp = strait_rpc::mesh::first_answer(&order, channel.sni, |addr| {
            let attempt = strait_rpc::mesh::send(
                channel.tls.clone(),
                addr,
                channel.sni,
                req.clone(),
                deadlines,
            );
            async move {
                let resp = attempt.await?;
                if unavailable(resp.status) {
                    resp.ok()?;
                }
                Ok(resp)
            }
        })
        .await?;
        let mut known = strait_base::sync::lock(&self.known);
        if known.current != Some(resp.peer) {
            tracing::info!(server = %resp.peer, previous = ?known.current, "now talking to this server");
            known.current = Some(resp.peer);
        }
        Ok(resp)
    }
}

/// A status that says "ask another server": this one failed or cannot serve now. 501 is
/// strait's answer for what no server implements, so asking another is pointless.
fn unavailable(status: StatusCode) -> bool {
    status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED
}

fn dedup(list: &mut Vec<SocketAddr>) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|a| seen.insert(*a));
}

#[cfg(test)]
#[path = "servers_tests.rs"]
pub(crate) mod tests;
