//! What travels between servers: the three routes and the framing of a snapshot.
//!
//! `append` and `vote` bodies are openraft's request types as JSON; answers are JSON
//! `{"Ok": response}` or `{"Err": raft_error}` (a 2xx either way: the error is the remote
//! Raft's, not the transport's). A snapshot is one request, whole: a JSON header line (vote and
//! snapshot meta), a newline, then the application's snapshot bytes as they are (no JSON
//! escaping of a possibly large blob).

use crate::{Node, NodeId};
use openraft::{SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};

pub const APPEND_PATH: &str = "/v1/internal/raft/append";
pub const VOTE_PATH: &str = "/v1/internal/raft/vote";
pub const SNAPSHOT_PATH: &str = "/v1/internal/raft/snapshot";

/// `path` addressed to Raft node `target` (`?to=<id>`). A server refuses a request for another
/// node (409): a server that lost its data comes back at the same address under a new ID, and
/// must not take the old node's log, votes or snapshot as its own (its old promises are gone,
/// so acting as that node could elect two leaders in one term). A request without `to` is
/// accepted (servers of a version that did not send it).
pub fn addressed(path: &str, target: NodeId) -> String {
    format!("{path}?to={target}")
}

/// The query of a Raft request: the node it is for ([`addressed`]).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct To {
    pub to: Option<NodeId>,
}

/// The header of a snapshot request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The sender's vote (the leader's term), checked by the receiver.
    pub vote: Vote<NodeId>,
    pub meta: SnapshotMeta<NodeId, Node>,
}

/// The body of a snapshot request.
pub fn encode_snapshot(header: &SnapshotHeader, data: &[u8]) -> Vec<u8> {
    // serde_json writes no raw newline, so the first one ends the header.
    let mut body = serde_json::to_vec(header).expect("a snapshot header encodes");
    body.push(b'\n');
    body.extend_from_slice(data);
    body
}

/// Splits a snapshot request into its header and the application's bytes.
pub fn decode_snapshot(body: &[u8]) -> Result<(SnapshotHeader, Vec<u8>), String> {
    let end = body
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("snapshot request has no header line")?;
    let header = serde_json::from_slice(&body[..end])
        .map_err(|e| format!("snapshot request header: {e}"))?;
    Ok((header, body[end + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{LogId, Membership, StoredMembership};
    use std::collections::BTreeSet;

    fn header() -> SnapshotHeader {
        let log_id = LogId::new(openraft::CommittedLeaderId::new(3, 1), 42);
        SnapshotHeader {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id),
                last_membership: StoredMembership::new(
                    Some(log_id),
                    Membership::new(vec![BTreeSet::from([1, 2, 3])], None),
                ),
                snapshot_id: "3-1-42-0".into(),
            },
        }
    }

    #[test]
    fn a_snapshot_with_newlines_and_binary_bytes_round_trips() {
        let data = b"line one\nline two\n\x00\xff".to_vec();
        let (h, d) = decode_snapshot(&encode_snapshot(&header(), &data)).expect("decode");
        assert_eq!(h, header());
        assert_eq!(d, data);
        let (_, empty) = decode_snapshot(&encode_snapshot(&header(), &[])).expect("decode");
        assert!(empty.is_empty());
    }

    #[test]
    fn a_body_without_header_is_refused_with_a_reason() {
        assert_eq!(
            decode_snapshot(b"no newline here").unwrap_err(),
            "snapshot request has no header line"
        );
        let err = decode_snapshot(b"{\"vote\":1}\ndata").unwrap_err();
        assert!(err.starts_with("snapshot request header: "), "{err}");
    }
}
