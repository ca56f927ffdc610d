//! Joining the DC: the agent proves it knows the join token (an HMAC, the token never crosses
//! the wire), gets its own certificate and the federation roots, and from then on talks to its
//! servers over mTLS, accepting only `spiffe://<td>/server/dc/<dc>`.

use crate::config::AgentConfig;
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

pub async fn join(cfg: &AgentConfig) -> Result<ServerConn, JoinError> {
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
    let resp = strait_rpc::mesh::request_any(
        tls::dangerous_unverified_client_config(),
        &cfg.servers,
        &spiffe::server_sni(&cfg.datacenter, BOOTSTRAP_TD),
        Method::POST,
        path,
        Some(body),
        Duration::from_secs(10),
    )
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
    use std::net::SocketAddr;
    use strait_identity::tls::ClientAuth;
    use tokio_util::sync::CancellationToken;

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
        }
    }

    fn refused_addr() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    }

    /// A TLS server (any certificate: a joining agent does not verify it yet) whose join
    /// endpoint refuses, as a server does for a wrong token.
    async fn refusing_server() -> (SocketAddr, CancellationToken) {
        let td = "test.strait";
        let root = ca::generate_root(td, Duration::from_secs(3600)).expect("root");
        let root_ca = ca::CaCert::from_pem(&root.cert_pem, &root.key_pem).expect("root ca");
        let id = SpiffeId::server(td, "dc1");
        let (key, csr) = ca::generate_key_and_csr(&id).expect("csr");
        let leaf = root_ca
            .sign_leaf(&csr, &id, Duration::from_secs(3600))
            .expect("leaf");
        let identity = Identity::from_pem(&leaf.cert_pem, &key).expect("identity");
        let roots = Roots::from_pems(&[root.cert_pem]).expect("roots");
        let tls = tls::server_config(&identity, &roots, ClientAuth::Optional).expect("tls");
        let router = axum::Router::new().route(
            "/v1/internal/join",
            axum::routing::post(|| async {
                (http::StatusCode::FORBIDDEN, "join MAC does not verify")
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_tx, rx) = tokio::sync::watch::channel(tls);
        let stop = CancellationToken::new();
        tokio::spawn(strait_rpc::serve::serve_tls(
            listener,
            rx,
            router,
            stop.clone(),
        ));
        (addr, stop)
    }

    #[tokio::test]
    async fn unreachable_names_every_server_with_its_error() {
        let (a, b) = (refused_addr(), refused_addr());
        let Err(JoinError::Unreachable(e)) = join(&config(vec![a, b])).await else {
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

    /// The refusal names the server that refused, not the first one configured.
    #[tokio::test]
    async fn a_refusal_names_the_server_that_refused() {
        let down = refused_addr();
        let (up, stop) = refusing_server().await;
        let Err(JoinError::Refused(msg)) = join(&config(vec![down, up])).await else {
            panic!("the second server refuses");
        };
        assert_eq!(
            msg,
            format!("server {up} answered 403: join MAC does not verify")
        );
        stop.cancel();
    }
}
