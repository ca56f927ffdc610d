//! Three servers in one process, real HTTP on loopback, redb files in a temp dir: election,
//! replication, the leader killed, writes resuming under a new one, a server restarted from its
//! file catching up by snapshot and log.

mod common;

use common::{admit_all, Command, TestNode};
use openraft::{Config, ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use strait_raft::{default_config, NodeId, WriteError, Written};
use tokio::net::TcpListener;

const PATIENCE: Duration = Duration::from_secs(30);

/// Small snapshot settings so a few dozen writes snapshot and purge the log.
fn config() -> Config {
    Config {
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
        max_in_snapshot_log_to_keep: 5,
        purge_batch_size: 1,
        ..default_config()
    }
}

/// The id of a leader among `live`, as `live[0]` sees it, waiting until there is one.
async fn live_leader(live: &[&TestNode]) -> NodeId {
    let ids: BTreeSet<NodeId> = live.iter().map(|n| n.id).collect();
    let m = live[0]
        .raft()
        .wait(Some(PATIENCE))
        .metrics(
            |m| m.current_leader.is_some_and(|l| ids.contains(&l)),
            "a live leader",
        )
        .await
        .expect("a leader is elected among the live servers");
    m.current_leader.expect("leader")
}

/// Writes `command` through whichever live server leads, retrying while leadership moves.
async fn write(live: &[&TestNode], command: &Command) -> Written<Option<u64>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let leader = live_leader(live).await;
        let node = live
            .iter()
            .find(|n| n.id == leader)
            .expect("leader is live");
        match node.consensus.write(command).await {
            Ok(w) => return w,
            Err(e @ (WriteError::NotLeader { .. } | WriteError::Stopped(_))) => {
                assert!(
                    Instant::now() < deadline,
                    "no write succeeded in {PATIENCE:?}: {e}"
                );
                tracing::info!(error = %e, "write not taken, retrying");
                // Poll interval while the cluster settles on a leader.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("write {command:?}: {e}"),
        }
    }
}

async fn wait_applied(node: &TestNode, index: u64) {
    node.raft()
        .wait(Some(PATIENCE))
        .applied_index_at_least(Some(index), format!("node {} applies {index}", node.id))
        .await
        .expect("applied");
}

fn set(i: u64) -> Command {
    Command::Set {
        key: format!("k{i}"),
        value: i * 10,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_survive_the_leader_and_a_restart() {
    common::init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |id: NodeId| dir.path().join(format!("s{id}.redb"));

    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind(format!("127.0.0.{id}:0"))
            .await
            .expect("bind");
        nodes.push(TestNode::start(id, listener, &path(id), config(), admit_all()).await);
    }
    let members: BTreeMap<NodeId, strait_raft::Node> =
        nodes.iter().map(|n| (n.id, n.node())).collect();
    nodes[0]
        .raft()
        .initialize(members)
        .await
        .expect("initialize");

    // Phase 1: 50 writes through the first leader.
    let mut acked: Vec<(u64, Written<Option<u64>>)> = Vec::new();
    {
        let live: Vec<&TestNode> = nodes.iter().collect();
        for i in 0..50 {
            acked.push((i, write(&live, &set(i)).await));
        }
    }
    assert!(
        acked.iter().all(|(_, w)| w.response.is_none()),
        "each key is new"
    );
    let last = acked.last().expect("writes").1.index;
    for n in &nodes {
        wait_applied(n, last).await;
    }

    // The leader snapshots (and keeps its snapshot in its file) before it dies.
    let leader_id = live_leader(&nodes.iter().collect::<Vec<_>>()).await;
    let leader_pos = nodes
        .iter()
        .position(|n| n.id == leader_id)
        .expect("leader");
    let leader = nodes.remove(leader_pos);
    let snap = leader
        .raft()
        .wait(Some(PATIENCE))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= 20),
            "leader snapshots",
        )
        .await
        .expect("snapshot")
        .snapshot
        .expect("snapshot")
        .index;
    let leader_addr = leader.addr;
    let leader_last_log = leader
        .raft()
        .metrics()
        .borrow()
        .last_log_index
        .expect("log");

    // Phase 2: kill the leader; the two others elect one and take writes again.
    let killed_at = Instant::now();
    leader.kill().await;
    let live: Vec<&TestNode> = nodes.iter().collect();
    acked.push((50, write(&live, &set(50)).await));
    let failover = killed_at.elapsed();
    tracing::info!(
        ?failover,
        "first write committed after the leader was killed"
    );
    eprintln!("failover: first successful write {failover:?} after killing the leader");
    let new_leader = live_leader(&live).await;
    assert_ne!(new_leader, leader_id, "a new leader");
    for i in 51..100 {
        acked.push((i, write(&live, &set(i)).await));
    }
    let last = acked.last().expect("writes").1.index;
    for n in &live {
        wait_applied(n, last).await;
    }
    // Every acknowledged write is applied on every live server, and they agree.
    for n in &live {
        for (i, w) in &acked {
            assert_eq!(
                n.app().get(&format!("k{i}")),
                Some(i * 10),
                "node {} misses write {i} (index {})",
                n.id,
                w.index
            );
        }
    }
    assert_eq!(live[0].app().state(), live[1].app().state());

    // The new leader has purged the log past what the killed server holds, so it must catch
    // up by snapshot, then by log.
    let new = live
        .iter()
        .find(|n| n.id == new_leader)
        .expect("new leader");
    new.raft()
        .wait(Some(PATIENCE))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > leader_last_log),
            "new leader purges past the old leader's log",
        )
        .await
        .expect("purged");

    // Phase 3: restart the old leader from its file, on its address.
    let listener = TcpListener::bind(leader_addr)
        .await
        .expect("rebind the old address");
    let restarted =
        TestNode::start(leader_id, listener, &path(leader_id), config(), admit_all()).await;
    assert_eq!(
        restarted.app().restores(),
        1,
        "restored from its stored snapshot at start"
    );
    assert!(
        restarted.app().state().last_index >= snap,
        "state as of the stored snapshot {snap}"
    );

    wait_applied(&restarted, last).await;
    assert!(
        restarted.app().restores() >= 2,
        "installed the leader's snapshot"
    );
    assert_eq!(restarted.app().state(), new.app().state());
    assert_ne!(
        restarted.raft().metrics().borrow().state,
        ServerState::Leader
    );

    // One more write reaches all three.
    nodes.push(restarted);
    let all: Vec<&TestNode> = nodes.iter().collect();
    let w = write(&all, &set(7)).await;
    assert_eq!(w.response, Some(70), "the register held the earlier value");
    for n in &all {
        wait_applied(n, w.index).await;
        assert_eq!(n.app().get("k7"), Some(70));
    }
    for n in nodes {
        n.kill().await;
    }
}
