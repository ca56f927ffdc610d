//! The `ha` lab end to end: `strait lab up --topology ha` (three servers in each of dc1 and
//! dc2, otherwise the default demo), counts flow from dc2 to the dashboard, each DC's servers
//! are one cluster of three, and after `lab kill` (SIGKILL) of dc1's leader, a service
//! registered through an agent reaches the surviving servers' catalog within seconds (the
//! agent fails over; a new leader is elected).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::lab::Lab;
use common::{eventually, get, sa};

/// (VM, loopback API, mTLS API) of each server, per DC.
const DC1_SERVERS: [(&str, &str, &str); 3] = [
    ("primary-server-1", "127.26.1.10:8500", "127.26.1.10:8300"),
    ("primary-server-2", "127.26.1.13:8500", "127.26.1.13:8300"),
    ("primary-server-3", "127.26.1.14:8500", "127.26.1.14:8300"),
];
const DC2_SERVERS: [(&str, &str, &str); 3] = [
    ("secondary-server-1", "127.26.2.10:8500", "127.26.2.10:8300"),
    ("secondary-server-2", "127.26.2.13:8500", "127.26.2.13:8300"),
    ("secondary-server-3", "127.26.2.14:8500", "127.26.2.14:8300"),
];
/// The agent of dc1's services VM (the dashboard's).
const DC1_AGENT: &str = "127.26.1.12:8500";
const DASHBOARD: &str = "127.26.1.12:9002";

/// A JSON body of a 200 answer, else `None`.
fn json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let (status, body) = get(addr, path);
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// `GET /v1/status/leader` on `api`: the leader's address (`""` when there is none).
fn leader(api: &str) -> Option<String> {
    json(sa(api), "/v1/status/leader")?
        .as_str()
        .map(String::from)
}

/// `GET /v1/status/peers` on `api`, sorted.
fn peers(api: &str) -> Option<Vec<String>> {
    let v = json(sa(api), "/v1/status/peers")?;
    let mut list: Vec<String> = v
        .as_array()?
        .iter()
        .filter_map(|p| p.as_str().map(String::from))
        .collect();
    list.sort();
    Some(list)
}

/// Every server of `dc` reports the same three peers, its DC's servers.
fn check_cluster(dc: &str, servers: &[(&str, &str, &str); 3]) {
    let mut expected: Vec<String> = servers
        .iter()
        .map(|(_, _, https)| https.to_string())
        .collect();
    expected.sort();
    for (vm, api, _) in servers {
        let seen = eventually(
            &format!("{vm} ({dc}) to report three peers"),
            Duration::from_secs(30),
            || peers(api).filter(|p| p.len() == 3),
        );
        assert_eq!(seen, expected, "{vm} ({dc})");
    }
}

#[test]
fn ha_lab_survives_losing_the_dc1_leader() {
    let lab = Lab::up(&["--topology", "ha"]);

    // Counts flow from counting in dc2 to the dashboard in dc1 (`lab up` waited for one).
    let count = eventually(
        "the dashboard to show a count",
        Duration::from_secs(30),
        || json(sa(DASHBOARD), "/api/count").filter(|v| v["reachable"] == true),
    );
    assert!(count["count"].as_u64().is_some(), "{count}");

    check_cluster("dc1", &DC1_SERVERS);
    check_cluster("dc2", &DC2_SERVERS);

    let old = eventually("dc1 to have a leader", Duration::from_secs(30), || {
        leader(DC1_SERVERS[0].1).filter(|l| !l.is_empty())
    });
    let (dead_vm, _, _) = DC1_SERVERS
        .iter()
        .find(|(_, _, https)| *https == old)
        .unwrap_or_else(|| panic!("the leader {old:?} is none of dc1's servers"));
    let survivors: Vec<&(&str, &str, &str)> =
        DC1_SERVERS.iter().filter(|s| s.0 != *dead_vm).collect();

    lab.ok(&["kill", dead_vm]);
    let killed = Instant::now();
    let body = r#"{"Name": "after-failover", "Port": 7777}"#;
    // The lab runs with ACLs (default deny): its management token may register.
    let (status, text) = lab.http(
        "PUT",
        sa(DC1_AGENT),
        "/v1/agent/service/register",
        Some(body),
    );
    assert_eq!(status, 200, "{text}");
    for (vm, api, _) in &survivors {
        eventually(
            &format!("{vm}'s catalog to show the service registered after the kill"),
            Duration::from_secs(15),
            || {
                let path = "/v1/catalog/service/after-failover?stale";
                let (_, body) = lab.http("GET", sa(api), path, None);
                let list: serde_json::Value = serde_json::from_str(&body).ok()?;
                (list.as_array()?.len() == 1).then_some(())
            },
        );
    }
    let new = eventually("dc1 to elect a new leader", Duration::from_secs(15), || {
        leader(survivors[0].1).filter(|l| !l.is_empty() && *l != old)
    });
    println!(
        "dc1 leader {old} killed; registration through the agent visible on both survivors and {new} leading after {:.1} s",
        killed.elapsed().as_secs_f64()
    );
}
