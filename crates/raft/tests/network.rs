//! The Raft RPC transport's failure modes, over real sockets: what openraft is told when a
//! peer is down, refuses us, or is sent garbage.

mod common;

use common::{admit_all, TestNode};
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::Vote;
use std::sync::Arc;
use std::time::Duration;
use strait_raft::network::{Factory, PlainHttp};
use strait_raft::{default_config, wire, Node};
use tokio::net::TcpListener;

fn vote_request() -> VoteRequest<u64> {
    VoteRequest::new(Vote::new(1, 9), None)
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(5))
}

/// Raft node `id` on a loopback port with its store in a new temporary directory (kept with
/// it) and `check` on its routes.
async fn node(id: u64, check: strait_raft::service::PeerCheck) -> (tempfile::TempDir, TestNode) {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = TestNode::start(
        id,
        listener,
        &dir.path().join("raft.redb"),
        default_config(),
        check,
    )
    .await;
    (dir, server)
}

#[tokio::test]
async fn a_down_peer_is_unreachable_so_the_leader_backs_off() {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let node = Node {
        name: "s2".into(),
        addr: addr.to_string(),
    };
    let mut net = Factory::new(PlainHttp).new_client(2, &node).await;
    match net.vote(vote_request(), option()).await {
        Err(RPCError::Unreachable(e)) => assert!(e.to_string().contains(&addr.to_string()), "{e}"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let bad = Node {
        name: "s3".into(),
        addr: "not-an-address".into(),
    };
    let mut net = Factory::new(PlainHttp).new_client(3, &bad).await;
    match net.vote(vote_request(), option()).await {
        Err(RPCError::Unreachable(e)) => {
            assert!(
                e.to_string()
                    .contains("the Raft address of s3 is not an ip:port"),
                "{e}"
            )
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refusing_peer_check_answers_403_naming_the_caller() {
    let check =
        Arc::new(|p: &strait_rpc::serve::Peer| Err(format!("{} is not a server of dc1", p.addr)));
    let (_dir, server) = node(1, check).await;
    let mut net = Factory::new(PlainHttp).new_client(1, &server.node()).await;
    match net.vote(vote_request(), option()).await {
        Err(RPCError::Unreachable(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("403") && text.contains("Raft vote from 127.0.0.1:"),
                "{text}"
            );
            assert!(text.contains("is not a server of dc1"), "{text}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    server.kill().await;
}

#[tokio::test]
async fn garbage_is_a_400_and_a_valid_vote_gets_the_remote_answer() {
    let (_dir, server) = node(1, admit_all()).await;
    for path in [wire::APPEND_PATH, wire::VOTE_PATH, wire::SNAPSHOT_PATH] {
        let resp =
            strait_rpc::http::request(server.addr, http::Method::POST, path, Some(b"{}".to_vec()))
                .await
                .expect("answer");
        assert_eq!(resp.status, 400, "{path}");
        let body = String::from_utf8_lossy(&resp.body);
        assert!(
            body.starts_with("bad Raft ") && body.contains("request from 127.0.0.1:"),
            "{body}"
        );
    }
    // An uninitialised node still answers a vote (granting it: it has no log).
    let mut net = Factory::new(PlainHttp).new_client(1, &server.node()).await;
    let resp = net
        .vote(vote_request(), option())
        .await
        .expect("vote answered");
    assert!(resp.vote_granted, "{resp:?}");
    server.kill().await;
}

/// A server that lost its data comes back at its old address under a new ID: the RPCs the
/// leader still sends to the old ID are refused (409, Unreachable for openraft), so the fresh
/// node never takes the old node's votes or log as its own.
#[tokio::test]
async fn a_request_for_another_node_id_is_refused() {
    let (_dir, server) = node(7, admit_all()).await;
    let mut old = Factory::new(PlainHttp).new_client(3, &server.node()).await;
    match old.vote(vote_request(), option()).await {
        Err(RPCError::Unreachable(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("409") && text.contains("for node 3 reached node 7"),
                "{text}"
            );
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let mut right = Factory::new(PlainHttp).new_client(7, &server.node()).await;
    let resp = right
        .vote(vote_request(), option())
        .await
        .expect("vote answered");
    assert!(resp.vote_granted, "{resp:?}");
    server.kill().await;
}
