//! A datacenter of three servers on Raft: formation with `bootstrap_expect` and `retry_join`,
//! writes through any server (followers forward to the leader), and `kill -9` of the leader
//! under a stream of writes: a new leader takes over and every acknowledged write is on every
//! server, including the old leader once it is back.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DC: &str = "dc1";

fn server_ip(i: usize) -> String {
    format!("127.47.0.{}", 10 + i)
}

/// A server config for server `i` of three.
fn config(dir: &Path, i: usize, extra: &str) -> PathBuf {
    let others: Vec<String> = (0..3)
        .filter(|j| *j != i)
        .map(|j| format!("\"{}:8300\"", server_ip(j)))
        .collect();
    let ip = server_ip(i);
    write(
        &dir.join(format!("server-{i}.toml")),
        &format!(
            "datacenter = \"{DC}\"\nnode_name = \"server-{i}\"\ndata_dir = \"{}\"\nhttps_addr = \"{ip}:8300\"\nhttp_addr = \"{ip}:8500\"\njoin_token = \"{}\"\nfederation_token = \"{FED_TOKEN}\"\nbootstrap_expect = 3\nretry_join = [{}]\n{extra}",
            dir.join(format!("data-{i}")).display(),
            join_token(DC),
            others.join(", ")
        ),
    )
}

fn start(dir: &Path, i: usize) -> Proc {
    let cfg = dir.join(format!("server-{i}.toml"));
    Proc::start(
        dir,
        &format!("server-{i}"),
        &["server", "--config", cfg.to_str().unwrap()],
    )
}

fn http_of(i: usize) -> SocketAddr {
    sa(&format!("{}:8500", server_ip(i)))
}

/// `GET /v1/internal/server/status` of server `i`: (member, leader address).
fn status(i: usize) -> Option<(bool, Option<String>)> {
    let (code, body) = get(http_of(i), "/v1/internal/server/status?nonce=00");
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some((
        v["Member"].as_bool()?,
        v["Leader"].as_str().map(str::to_owned),
    ))
}

/// Writes intention entry `name` through server `i`; true once acknowledged.
fn write_entry(i: usize, name: &str) -> bool {
    let body = format!(
        r#"{{"Kind":"service-intentions","Name":"{name}","Sources":[{{"Name":"web","Action":"allow"}}]}}"#
    );
    matches!(
        http("PUT", http_of(i), "/v1/config", Some(&body)),
        Ok((200, _))
    )
}

fn entries(i: usize) -> Vec<String> {
    let (code, body) = get(http_of(i), "/v1/config/service-intentions");
    assert_eq!(code, 200, "server {i}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn three_servers_form_one_cluster_and_survive_losing_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for i in 0..3 {
        config(d, i, "");
    }
    // Started in reverse: the bootstrapping server (lowest address) comes up last and must
    // find the others fresh, not start alone.
    let mut servers: Vec<Option<Proc>> = vec![None, None, None];
    for i in (0..3).rev() {
        servers[i] = Some(start(d, i));
    }
    let procs: Vec<&Proc> = servers.iter().flatten().collect();
    for i in 0..3 {
        wait_ready(http_of(i), "/v1/status/ready", &procs);
    }
    let leader = eventually(
        "one leader known to all three",
        Duration::from_secs(30),
        || {
            let seen: Vec<_> = (0..3).map(status).collect::<Option<Vec<_>>>()?;
            let first = seen[0].1.clone()?;
            seen.iter()
                .all(|(member, l)| *member && l.as_deref() == Some(first.as_str()))
                .then_some(first)
        },
    );
    let leader_i = (0..3)
        .find(|i| leader == format!("{}:8300", server_ip(*i)))
        .expect("the leader is one of the three");
    // The two others were promoted to voters by the leader.
    eventually("three voters", Duration::from_secs(30), || {
        let log = servers[leader_i].as_ref()?.log_text();
        (log.matches("server is a voter").count() == 2).then_some(())
    });

    // Writes through every server (followers forward), then kill -9 the leader mid-stream.
    let mut acked = Vec::new();
    for n in 0..30 {
        let through = n % 3;
        let name = format!("svc-{n}");
        assert!(
            write_entry(through, &name),
            "write {n} through server {through}"
        );
        acked.push(name);
    }
    let mut old = servers[leader_i].take().unwrap();
    old.child.kill().unwrap();
    old.child.wait().unwrap();
    let killed = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader_i).collect();
    let mut first_write = None;
    let mut n = 30;
    while acked.len() < 60 {
        let through = survivors[n % 2];
        let name = format!("svc-{n}");
        if write_entry(through, &name) {
            first_write.get_or_insert_with(|| killed.elapsed());
            acked.push(name);
        } else {
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "no write succeeded for 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n += 1;
    }
    eprintln!(
        "leader killed: first acknowledged write after {:?}",
        first_write.unwrap()
    );
    // Followers apply a commit shortly after the leader acknowledged it: every acknowledged
    // write shows up on every server (none is lost), within a short wait.
    for i in &survivors {
        let mut missing = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let have = entries(*i);
            missing = acked
                .iter()
                .filter(|a| !have.contains(a))
                .cloned()
                .collect();
            if missing.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(missing.is_empty(), "server {i} lost {missing:?}");
    }

    // The old leader comes back and catches up from the new one.
    servers[leader_i] = Some(start(d, leader_i));
    wait_ready(
        http_of(leader_i),
        "/v1/status/ready",
        &[servers[leader_i].as_ref().unwrap()],
    );
    eventually("the old leader catches up", Duration::from_secs(30), || {
        let have = entries(leader_i);
        acked.iter().all(|a| have.contains(a)).then_some(())
    });

    // A fourth server with the wrong join token is refused (78), and learns nothing.
    let ip = "127.47.0.20";
    let intruder = write(
        &d.join("intruder.toml"),
        &format!(
            "datacenter = \"{DC}\"\nnode_name = \"intruder\"\ndata_dir = \"{}\"\nhttps_addr = \"{ip}:8300\"\nhttp_addr = \"{ip}:8500\"\njoin_token = \"not-the-join-token-of-dc1\"\nfederation_token = \"{FED_TOKEN}\"\nbootstrap_expect = 3\nretry_join = [\"{}:8300\", \"{}:8300\"]\n",
            d.join("data-intruder").display(),
            server_ip(1),
            server_ip(2)
        ),
    );
    let mut intruder = Proc::start(
        d,
        "intruder",
        &["server", "--config", intruder.to_str().unwrap()],
    );
    let status = intruder
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the intruder still runs:\n{}", intruder.log_text()));
    let log = intruder.log_text();
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(log.contains("join token refused"), "{log}");
    assert!(
        !d.join("data-intruder/ca").exists(),
        "the intruder got no CA"
    );
}

#[test]
fn a_server_with_another_bootstrap_expect_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two servers of three up; a third claims bootstrap_expect = 5.
    let ip = |i: usize| format!("127.48.0.{}", 10 + i);
    let cfg = |i: usize, expect: u32, token: &str| {
        let others: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("\"{}:8300\"", ip(j)))
            .collect();
        write(
            &d.join(format!("s{i}.toml")),
            &format!(
                "datacenter = \"{DC}\"\nnode_name = \"s{i}\"\ndata_dir = \"{}\"\nhttps_addr = \"{}:8300\"\nhttp_addr = \"{}:8500\"\njoin_token = \"{token}\"\nfederation_token = \"{FED_TOKEN}\"\nbootstrap_expect = {expect}\nretry_join = [{}]\n",
                d.join(format!("data-s{i}")).display(),
                ip(i),
                ip(i),
                others.join(", ")
            ),
        )
    };
    let good = join_token(DC);
    let mut s0 = Proc::start(
        d,
        "s0",
        &["server", "--config", cfg(0, 5, &good).to_str().unwrap()],
    );
    let mut s1 = Proc::start(
        d,
        "s1",
        &["server", "--config", cfg(1, 3, &good).to_str().unwrap()],
    );
    // Whichever notices first (s0 probing s1, or s1 asking s0 to let it join) exits 78.
    let (code, log) = eventually(
        "a server refusing the mismatch",
        Duration::from_secs(30),
        || {
            for p in [&mut s0, &mut s1] {
                if let Ok(Some(status)) = p.child.try_wait() {
                    return Some((status.code(), p.log_text()));
                }
            }
            None
        },
    );
    assert_eq!(code, Some(78), "{log}");
    assert!(log.contains("bootstrap_expect"), "{log}");
    assert!(!log.contains(&good), "no token in the log");
}
