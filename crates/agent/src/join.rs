//! Joining the DC: the agent proves it knows the join token (an HMAC, the token never crosses
//! the wire), gets its own certificate and the federation roots, and from then on talks to its
//! servers over mTLS, accepting only `spiffe://<td>/server/dc/<dc>`.

use crate::config::AgentConfig;
use crate::servers::{Channel, Servers};
use anyhow::{bail, Context, Result};
use http::Method;
use std::sync::Arc;
use std::time::Duration;
use strait_identity::spiffe::{self, SpiffeId};
use strait_identity::tls::{self, Expect, Identity, Roots};
use strait_identity::{bootstrap, ca};
use strait_proto::{JoinRequest, JoinResponse};
use strait_rpc::RpcError;

/// Placeholder trust domain in the join CSR and SNI: the agent learns the real one in the
/// answer (the server ignores what a CSR asks for and sets the identity itself).
use strait_snapshot::BOOTSTRAP_TRUST_DOMAIN as BOOTSTRAP_TD;

/// Deadline of one server's answer to a join (signing a certificate is quick).
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// An authenticated channel to this DC's servers.
pub struct ServerConn {
    pub trust_domain: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub sni: String,
    pub not_after_unix: i64,
}

/// Why a join failed: refused (fatal: wrong token or DC) or unreachable (retry).
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the server refused this agent: {0}")]
    Refused(String),
    #[error(transparent)]
    Unreachable(anyhow::Error),
}

/// Joins through `servers` (the current one first, then the others in turn).
pub async fn join(cfg: &AgentConfig, servers: &Servers) -> Result<ServerConn, JoinError> {
    let placeholder = SpiffeId::agent(BOOTSTRAP_TD, &cfg.datacenter, &cfg.node_name);
    let (key_pem, csr_pem) =
        ca::generate_key_and_csr(&placeholder).map_err(|e| JoinError::Unreachable(e.into()))?;
    let nonce = bootstrap::nonce();
    let token = &cfg.join_token;
    let req = JoinRequest {
        node: cfg.node_name.clone(),
        datacenter: cfg.datacenter.clone(),
        mac: bootstrap::mac(
            token,
            &[
                b"agent-join",
                cfg.node_name.as_bytes(),
                cfg.datacenter.as_bytes(),
                csr_pem.as_bytes(),
                nonce.as_bytes(),
            ],
        ),
        csr_pem,
        nonce: nonce.clone(),
    };
    let path = "/v1/internal/join";
    let body = serde_json::to_vec(&req).map_err(|e| JoinError::Unreachable(e.into()))?;
    let sni = spiffe::server_sni(&cfg.datacenter, BOOTSTRAP_TD);
    let channel = Channel {
        tls: tls::dangerous_unverified_client_config(),
        sni: &sni,
    };
    let resp = servers
        .request(&channel, Method::POST, path, Some(body), JOIN_TIMEOUT)
        .await
        .map_err(|e| JoinError::Unreachable(e.into()))?;
    if resp.status.is_client_error() {
        return Err(JoinError::Refused(refusal(&resp)));
    }
    let ans: JoinResponse = resp
        .json()
        .map_err(|e: RpcError| JoinError::Unreachable(e.into()))?;
    finish(cfg, &nonce, &key_pem, ans).map_err(JoinError::Unreachable)
}

/// What a refusing server said, naming it (the one that answered, not the first configured).
fn refusal(resp: &strait_rpc::Response) -> String {
    format!(
        "server {} answered {}: {}",
        resp.peer,
        resp.status.as_u16(),
        String::from_utf8_lossy(&resp.body).trim()
    )
}

fn finish(cfg: &AgentConfig, nonce: &str, key_pem: &str, ans: JoinResponse) -> Result<ServerConn> {
    let roots_joined = ans.roots_pem.join("\n");
    let parts: [&[u8]; 5] = [
        b"agent-joined",
        nonce.as_bytes(),
        ans.trust_domain.as_bytes(),
        roots_joined.as_bytes(),
        ans.cert_pem.as_bytes(),
    ];
    if !bootstrap::verify_mac(&cfg.join_token, &parts, &ans.mac) {
        bail!("the join answer is not authenticated by our join_token (wrong server, or someone in the middle)");
    }
    let identity =
        Identity::from_pem(&ans.cert_pem, key_pem).context("the certificate the server issued")?;
    let roots = Roots::from_pems(&ans.roots_pem).context("the roots the server sent")?;
    let expect = Expect::Exact(SpiffeId::server(&ans.trust_domain, &cfg.datacenter));
    let tls = tls::client_config(Some(&identity), &roots, expect)?;
    Ok(ServerConn {
        sni: spiffe::server_sni(&cfg.datacenter, &ans.trust_domain),
        not_after_unix: identity.not_after_unix(),
        trust_domain: ans.trust_domain,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::tests::{refused, tls_server};
    use std::net::SocketAddr;

    fn config(servers: Vec<SocketAddr>) -> AgentConfig {
        AgentConfig {
            datacenter: "dc1".into(),
            node_name: "node-1".into(),
            data_dir: "/nonexistent".into(),
            advertise_addr: [127, 0, 0, 1].into(),
            http_addr: "127.0.0.1:8500".parse().expect("addr"),
            servers,
            join_token: "0123456789abcdef0123456789abcdef".into(),
            config_dir: None,
            grpc_addr: None,
            ca_file: None,
            ca_path: None,
            acl: Default::default(),
        }
    }

    async fn join_through(servers: Vec<SocketAddr>) -> Result<ServerConn, JoinError> {
        let cfg = config(servers);
        join(&cfg, &Servers::new(cfg.servers.clone())).await
    }

    #[tokio::test]
    async fn unreachable_names_every_server_with_its_error() {
        let (a, b) = (refused(), refused());
        let Err(JoinError::Unreachable(e)) = join_through(vec![a, b]).await else {
            panic!("nothing listens: the join must fail as unreachable");
        };
        let text = format!("{e:#}");
        for addr in [a, b] {
            assert!(
                text.contains(&format!("cannot connect to {addr}: ")),
                "{text}"
            );
        }
    }

    /// The refusal names the server that refused, not the first one configured; a server
    /// without a leader (503) is passed over, not taken for a refusal.
    #[tokio::test]
    async fn a_refusal_names_the_server_that_refused() {
        let down = refused();
        let (leaderless, stop_leaderless) = tls_server(axum::Router::new().route(
            "/v1/internal/join",
            axum::routing::post(|| async {
                (http::StatusCode::SERVICE_UNAVAILABLE, "no Raft leader")
            }),
        ))
        .await;
        let (up, stop) = tls_server(axum::Router::new().route(
            "/v1/internal/join",
            axum::routing::post(|| async {
                (http::StatusCode::FORBIDDEN, "join MAC does not verify")
            }),
        ))
        .await;
        let Err(JoinError::Refused(msg)) = join_through(vec![down, leaderless, up]).await else {
            panic!("the third server refuses");
        };
        assert_eq!(
            msg,
            format!("server {up} answered 403: join MAC does not verify")
        );
        stop.cancel();
        stop_leaderless.cancel();
    }
}
