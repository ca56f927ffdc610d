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
