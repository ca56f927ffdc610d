//! strait-proto: the bodies of strait's internal API (`/v1/internal/...`), shared by server,
//! agent and CLI. Public endpoints use Consul's shapes (defined in `strait-catalog`); these are
//! ours.
//!
//! Wire types only: what goes over the connection is `strait-rpc`'s business (plain HTTP on
//! loopback, mutual TLS between hosts). The JSON field names are the wire contract; the test at
//! the end pins them.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use strait_catalog::{Check, Node, Service};
use strait_snapshot::MeshView;

/// Agent -> server: join with a CSR, authenticated by an HMAC under the DC's join token.
/// `mac = bootstrap::mac(join_token, ["agent-join", node, datacenter, csr_pem, nonce])`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct JoinRequest {
    pub node: String,
    pub datacenter: String,
    pub csr_pem: String,
    pub nonce: String,
    pub mac: String,
}

/// Server -> agent: its certificate and the federation roots, authenticated by
/// `mac = bootstrap::mac(join_token, ["agent-joined", nonce, trust_domain, roots.join("\n"), cert_pem])`
/// so an agent that has no roots yet can trust the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct JoinResponse {
    pub trust_domain: String,
    pub roots_pem: Vec<String>,
    pub cert_pem: String,
    pub mac: String,
}

/// Secondary server -> primary: sign my intermediate CA.
/// `mac = bootstrap::mac(federation_token, ["federation-join", datacenter, csr_pem, nonce])`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct FederationJoinRequest {
    pub datacenter: String,
    pub csr_pem: String,
    pub nonce: String,
    pub mac: String,
}

/// `mac = bootstrap::mac(federation_token, ["federation-joined", nonce, trust_domain, root_pem, intermediate_pem])`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct FederationJoinResponse {
    pub trust_domain: String,
    pub root_pem: String,
    pub intermediate_pem: String,
    pub mac: String,
}

/// Agent -> server: sign a certificate for `service` (or renew the agent's own when
/// `service` is empty).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SignRequest {
    #[serde(default)]
    pub service: String,
    pub csr_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SignResponse {
    /// Leaf first, then the DC's intermediate if any.
    pub cert_chain_pem: String,
    pub spiffe_id: String,
    pub serial: String,
    pub not_after_unix: i64,
}

/// Agent -> server (anti-entropy): the node's complete local state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SyncRequest {
    pub node: Node,
    pub services: Vec<Service>,
    pub checks: Vec<Check>,
}

/// Server -> agent: the DC's mesh view (blocking query on `index`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeshViewResponse {
    pub index: u64,
    pub view: MeshView,
    pub roots_pem: Vec<String>,
}

/// Server -> a server of its DC: let me into the DC's Raft cluster and sign my server
/// certificate. Authenticated like an agent's join, under the DC's join token:
/// `mac = bootstrap::mac(join_token, ["server-join", node, datacenter, raft_id, raft_addr, csr_pem, nonce])`.
/// The answer is a [`JoinResponse`] whose MAC starts with `"server-joined"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServerJoinRequest {
    pub node: String,
    pub datacenter: String,
    /// The joiner's Raft node ID.
    pub raft_id: u64,
    /// The joiner's `https_addr`, where Raft reaches it.
    pub raft_addr: String,
    /// The joiner's `bootstrap_expect`: every server of a DC must say the same.
    pub bootstrap_expect: u32,
    pub csr_pem: String,
    pub nonce: String,
    pub mac: String,
}

/// A server's answer to `GET /v1/internal/server/status?nonce=N`: what a server about to
/// bootstrap a cluster asks the others, so that only one cluster forms. Authenticated under
/// the DC's join token: `mac = bootstrap::mac(join_token, ["server-status", nonce, node,
/// datacenter, bootstrap_expect, member ("1"/"0"), leader or ""])`, so nobody in the middle
/// can make a server bootstrap a second cluster or exit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServerStatus {
    pub node: String,
    pub datacenter: String,
    pub bootstrap_expect: u32,
    /// Already a member of an initialised Raft cluster.
    pub member: bool,
    /// The leader's `https_addr`, when one is known.
    pub leader: Option<String>,
    pub mac: String,
}

impl ServerStatus {
    /// The parts the MAC covers, for the nonce the asker sent.
    pub fn mac_parts(&self, nonce: &str) -> Vec<Vec<u8>> {
        vec![
            b"server-status".to_vec(),
            nonce.as_bytes().to_vec(),
            self.node.as_bytes().to_vec(),
            self.datacenter.as_bytes().to_vec(),
            self.bootstrap_expect.to_string().into_bytes(),
            if self.member {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            },
            self.leader.clone().unwrap_or_default().into_bytes(),
        ]
    }
}

/// One node as `strait members` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    pub node: String,
    pub address: String,
    pub datacenter: String,
    /// "server" or "agent".
    pub role: String,
    /// "alive" (heard from recently), "failed" (not heard from), "unknown" (not yet heard
    /// from since this server started).
    pub status: String,
}

/// `GET /v1/operator/raft/configuration`: every server of the DC's Raft configuration (voters
/// first, then learners), in Consul's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfiguration {
    pub servers: Vec<RaftServer>,
    /// The Raft index of this configuration.
    pub index: u64,
}

/// One server of [`RaftConfiguration`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftServer {
    /// The Raft node ID (a number, as a string like Consul's IDs).
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    /// Its `https_addr`, where Raft travels over mutual TLS.
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    /// Consul's Raft protocol 3 identifies servers by ID, as strait does.
    pub protocol_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names are the wire: servers and agents of one release talk to each other.
    #[test]
    fn field_names_are_pascal_case_and_unknown_fields_are_refused() {
        let join = JoinRequest {
            node: "n".into(),
            datacenter: "dc1".into(),
            csr_pem: "c".into(),
            nonce: "x".into(),
            mac: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&join).expect("serialize"),
            r#"{"Node":"n","Datacenter":"dc1","CsrPem":"c","Nonce":"x","Mac":"m"}"#
        );
        let sign: SignRequest =
            serde_json::from_str(r#"{"CsrPem":"c"}"#).expect("Service defaults");
        assert_eq!(sign.service, "");
        let err = serde_json::from_str::<SignRequest>(r#"{"CsrPem":"c","Extra":1}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("Extra"), "{err}");
    }
}
