//! Datacenters of three servers on Raft, real processes on loopback (each test its own
//! 127.<net>.0.0/24: 47, 48, 71-78): formation with `bootstrap_expect` and `retry_join`,
//! writes through any server (followers forward to the leader), and the faults of issue 10:
//! `kill -9` of the leader under writes through the servers and under registrations through
//! an agent (nothing acknowledged lost; one key's history checked
//! linearizable by `cluster/linearizable.rs`), SIGSTOP of a follower and of the leader, all
//! three stopped and started, the CA's creator removed for good, a server back without its
//! data, a fourth server added and removed at run time, a secondary DC federated
//! through gateways while either DC changes leader, and servers that must not join.

mod common;
#[path = "cluster/linearizable.rs"]
mod linearizable;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{put_intention, Cluster, DC};

#[test]
fn three_servers_form_one_cluster_and_survive_losing_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Cluster::start(d, 47);
    let leader_i = c.agreed_leader(&[0, 1, 2]);
    // The two others were promoted to voters by the leader.
    eventually("three voters", Duration::from_secs(30), || {
        let log = c.proc(leader_i).log_text();
        (log.matches("server is a voter").count() == 2).then_some(())
    });

    // Writes through every server (followers forward), then kill -9 the leader mid-stream.
    let mut acked = Vec::new();
    for n in 0..30 {
        let through = n % 3;
        let name = format!("svc-{n}");
        assert!(
            c.write_entry(through, &name),
            "write {n} through server {through}"
        );
        acked.push(name);
    }
    c.kill(leader_i);
    let killed = Instant::now();
    let survivors = c.running();
    let mut first_write = None;
    let mut n = 30;
    while acked.len() < 60 {
        let through = survivors[n % 2];
        let name = format!("svc-{n}");
        if c.write_entry(through, &name) {
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
        c.wait_for_entries(
            *i,
            &acked,
            &format!("server {i} to have every acknowledged write"),
        );
    }

    // The old leader comes back and catches up from the new one.
    c.up(leader_i);
    c.wait_ready();
    c.wait_for_entries(leader_i, &acked, "the old leader to catch up");

    // A fourth server with the wrong join token is refused (78), and learns nothing; so is one
    // with the DC's join token but not the federation token (an agent VM's token is not enough
    // to become a server).
    let ip = "127.47.0.20";
    for (name, join, federation) in [
        (
            "intruder",
            "not-the-join-token-of-dc1".to_string(),
            FED_TOKEN.to_string(),
        ),
        (
            "agent-vm",
            join_token(DC),
            "not-the-federation-token".to_string(),
        ),
    ] {
        let intruder = write(
            &d.join(format!("{name}.toml")),
            &format!(
                "datacenter = \"{DC}\"\nnode_name = \"{name}\"\ndata_dir = \"{}\"\nhttps_addr = \"{ip}:8300\"\nhttp_addr = \"{ip}:8500\"\njoin_token = \"{join}\"\nfederation_token = \"{federation}\"\nbootstrap_expect = 3\nretry_join = [\"{}:8300\", \"{}:8300\"]\n",
                d.join(format!("data-{name}")).display(),
                c.ip(1),
                c.ip(2)
            ),
        );
        let mut intruder =
            Proc::start(d, name, &["server", "--config", intruder.to_str().unwrap()]);
        let status = intruder
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{name} still runs:\n{}", intruder.log_text()));
        let log = intruder.log_text();
        assert_eq!(status.code(), Some(78), "{log}");
        assert!(log.contains("join token refused"), "{log}");
        assert!(
            !d.join(format!("data-{name}/ca")).exists(),
            "{name} got no CA"
        );
    }
}

/// Reads the register of the linearizability test (intention entry `lin`: the value is in its
/// one source's name, `v<n>`) through `api`; `None` when the request failed.
fn read_register(api: SocketAddr) -> Option<Option<u32>> {
    let (code, body) = get(api, "/v1/config/service-intentions?consistent");
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let entry = v.as_array()?.iter().find(|e| e["Name"] == "lin");
    Some(entry.map(|e| {
        e["Sources"][0]["Name"].as_str().unwrap()[1..]
            .parse()
            .unwrap()
    }))
}

/// The server (of `https`, indexes matching `apis`) that server `asked` says leads.
fn leader_among(apis: &[SocketAddr], https: &[String], asked: usize) -> Option<usize> {
    let (code, body) = get(apis[asked], "/v1/status/leader");
    let addr: String = (code == 200).then(|| serde_json::from_str(&body).ok())??;
    https.iter().position(|h| *h == addr)
}

/// Several clients write one key through different servers, and others read it through the
/// leader, while the leader is killed -9: the history of that key is linearizable (every
/// acknowledged write took effect once, between its request and its answer, and no read saw a
/// value older than one already acknowledged or read).
#[test]
fn one_key_written_through_every_server_while_the_leader_dies_is_linearizable() {
    use linearizable::{Kind, Op};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 71);
    let leader = c.agreed_leader(&[0, 1, 2]);
    let apis: Vec<SocketAddr> = (0..3).map(|i| c.api(i)).collect();
    let https: Vec<String> = (0..3).map(|i| c.https(i)).collect();
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for w in 0..3u32 {
        let (apis, stop, acked) = (apis.clone(), stop.clone(), acked.clone());
        clients.push(std::thread::spawn(move || {
            let mut history = Vec::new();
            for k in 0u32.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let value = w * 100_000 + k;
                let through = apis[((w + k) % 3) as usize];
                let call = t0.elapsed().as_nanos();
                let answer = put_intention(through, "lin", &format!("v{value}"));
                let ret = t0.elapsed().as_nanos();
                let ret = match answer {
                    Ok((200, _)) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                        Some(ret)
                    }
                    // Never sent: no effect, not part of the history.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    // A timeout, a reset or a 5xx: it may have committed.
                    _ => None,
                };
                history.push(Op {
                    call,
                    ret,
                    kind: Kind::Write(value),
                });
                if ret.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            history
        }));
    }
    for r in 0..2usize {
        let (apis, https, stop) = (apis.clone(), https.clone(), stop.clone());
        clients.push(std::thread::spawn(move || {
            let mut history = Vec::new();
            let mut asked = r;
            while !stop.load(Ordering::SeqCst) {
                asked = (asked + 1) % 3;
                let Some(leader) = leader_among(&apis, &https, asked) else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let call = t0.elapsed().as_nanos();
                if let Some(value) = read_register(apis[leader]) {
                    history.push(Op {
                        call,
                        ret: Some(t0.elapsed().as_nanos()),
                        kind: Kind::Read(value),
                    });
                }
            }
            history
        }));
    }
    let at_least = |n: usize, what: &str| {
        eventually(what, Duration::from_secs(60), || {
            (acked.load(Ordering::SeqCst) >= n).then_some(())
        })
    };
    at_least(30, "30 acknowledged writes before the kill");
    c.kill(leader);
    let before = acked.load(Ordering::SeqCst);
    at_least(before + 30, "30 acknowledged writes after the kill");
    stop.store(true, Ordering::SeqCst);
    let mut history: Vec<Op> = clients
        .into_iter()
        .flat_map(|t| t.join().expect("a client panicked"))
        .collect();
    // Once quiet, both survivors hold the same final value: the last write of the history.
    let survivors = c.running();
    let last = eventually("the survivors to agree", Duration::from_secs(30), || {
        let seen: Vec<Option<u32>> = survivors
            .iter()
            .map(|i| read_register(apis[*i]))
            .collect::<Option<_>>()?;
        (seen[0] == seen[1]).then_some(seen[0])
    });
    let now = t0.elapsed().as_nanos();
    history.push(Op {
        call: now,
        ret: Some(now),
        kind: Kind::Read(last),
    });
    let count = |f: fn(&Op) -> bool| history.iter().filter(|o| f(o)).count();
    eprintln!(
        "history: {} writes acknowledged, {} of unknown outcome, {} reads",
        count(|o| matches!(o.kind, Kind::Write(_)) && o.ret.is_some()),
        count(|o| o.ret.is_none()),
        count(|o| matches!(o.kind, Kind::Read(_)))
    );
    if let Err(e) = linearizable::check(&history) {
        history.sort_by_key(|o| o.call);
        for o in &history {
            eprintln!("{o:?}");
        }
        panic!("the history of key `lin` is not linearizable: {e}");
    }
}

/// Writes `count` entries `<prefix>-<n>` through server `through`, retrying each until it is
/// acknowledged (an election may be under way); returns their names.
fn write_through(c: &Cluster, through: usize, prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            let name = format!("{prefix}-{n}");
            eventually(
                &format!("write {name} through server-{through}"),
                Duration::from_secs(30),
                || c.write_entry(through, &name).then_some(()),
            );
            name
        })
        .collect()
}

/// SIGSTOP a follower: writes go on, and once resumed it catches up. SIGSTOP the leader: the
/// two others elect a new one and writes go on; resumed, the old leader steps down, and what
/// it applied is what the new leader has (a write sent to it while it was stopped, which it
/// may have appended to its log alone, is either committed by the new leader or dropped).
#[test]
fn a_paused_follower_catches_up_and_a_paused_leader_steps_down() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 72);
    let leader = c.agreed_leader(&[0, 1, 2]);
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (paused, other) = (followers[0], followers[1]);
    let mut acked = write_through(&c, other, "before", 5);

    c.signal(paused, "STOP");
    acked.extend(write_through(&c, other, "follower-paused", 20));
    c.signal(paused, "CONT");
    c.wait_for_entries(paused, &acked, "the resumed follower to catch up");

    c.signal(leader, "STOP");
    let stopped = Instant::now();
    // A write sent to the stopped leader waits in its socket until it resumes.
    let api = c.api(leader);
    let alone = std::thread::spawn(move || put_intention(api, "sent-to-paused-leader", "web"));
    let new = c.agreed_leader(&followers);
    acked.extend(write_through(&c, followers[0], "leader-paused", 10));
    eprintln!(
        "leader paused: new leader elected and 10 writes acknowledged after {:?}",
        stopped.elapsed()
    );
    c.signal(leader, "CONT");
    let answer = alone.join().unwrap();
    eprintln!("the write sent to the paused leader was answered {answer:?}");
    if let Ok((200, _)) = answer {
        acked.push("sent-to-paused-leader".into());
    }
    let all = [leader, new];
    eventually(
        "the old leader to follow the new one",
        Duration::from_secs(30),
        || {
            all.iter()
                .all(|i| c.leader_seen_by(*i) == Some(new))
                .then_some(())
        },
    );
    // The old leader has exactly what the new one has (nothing it applied alone), and every
    // acknowledged write.
    eventually(
        "the old leader's entries to be the new leader's",
        Duration::from_secs(30),
        || (c.entries(leader) == c.entries(new)).then_some(()),
    );
    for i in 0..3 {
        c.wait_for_entries(
            i,
            &acked,
            &format!("server-{i} to have every acknowledged write"),
        );
    }
    assert_eq!(c.entries(leader), c.entries(new));
}

/// Stop all three servers, start all three: entries and the CA are intact. Then remove the
/// server that created the CA for good (Raft peer removal, then kill): a new agent joining
/// through the two others still gets a leaf certificate signed by the same CA.
#[test]
fn a_restarted_cluster_keeps_its_state_and_signs_without_the_ca_creator() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Cluster::start(d, 73);
    let first = c.agreed_leader(&[0, 1, 2]);
    let creator = eventually(
        "the server that created the CA",
        Duration::from_secs(30),
        || (0..3).find(|i| c.proc(*i).log_text().contains("the DC's CA is replicated")),
    );
    let roots = c.roots(first);
    let acked = write_through(&c, (first + 1) % 3, "kept", 10);
    for i in 0..3 {
        c.wait_for_entries(i, &acked, &format!("server-{i} to have every write"));
        assert_eq!(c.roots(i), roots, "server-{i}'s roots");
    }
    let before: Vec<Vec<String>> = (0..3).map(|i| c.entries(i)).collect();

    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.up(i);
    }
    c.wait_ready();
    let leader = c.agreed_leader(&[0, 1, 2]);
    for (i, had) in before.iter().enumerate() {
        assert_eq!(&c.entries(i), had, "server-{i}'s entries after the restart");
        assert_eq!(c.roots(i), roots, "server-{i}'s roots after the restart");
    }

    // Kill the CA's creator, then remove it from the cluster through the leader (a removed
    // server that still runs asks to be re-added, as Consul's serf would have it).
    let id = c.raft_id(leader, creator);
    c.kill(creator);
    let rest = c.running();
    let leader = c.agreed_leader(&rest);
    let (code, body) = http(
        "DELETE",
        c.api(leader),
        &format!("/v1/operator/raft/peer?id={id}"),
        None,
    )
    .unwrap();
    assert_eq!(code, 200, "removing server-{creator} ({id}): {body}");
    eventually("two peers left", Duration::from_secs(30), || {
        let (code, body) = get(c.api(leader), "/v1/status/peers");
        let peers: Vec<String> = (code == 200).then(|| serde_json::from_str(&body).ok())??;
        (peers.len() == 2 && !peers.contains(&c.https(creator))).then_some(())
    });
    let after = write_through(&c, rest[0], "after-removal", 3);
    c.wait_for_entries(
        rest[1],
        &after,
        "the other server to have the writes after the removal",
    );

    // A new agent joins through the remaining servers and gets a leaf of the same CA.
    let servers: Vec<String> = rest.iter().map(|i| c.https(*i)).collect();
    let uri = new_agent_leaf_uri(d, DC, "127.73.0.20", &servers);
    assert!(uri.starts_with(&format!("spiffe://{}/", roots.0)), "{uri}");
    assert_eq!(c.roots(leader), roots, "the roots after the removal");
}

/// A steady stream of registrations through an agent while the leader is killed -9: every
/// registration the agent acknowledged reaches every server's catalog (the agent fails over to
/// another server and syncs what it has; the killed server, started again, catches up).
#[test]
fn registrations_through_an_agent_survive_killing_the_leader() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const COUNT: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Cluster::start(d, 78);
    let leader = c.agreed_leader(&[0, 1, 2]);
    let servers: Vec<String> = (0..3).map(|i| c.https(i)).collect();
    let (agent, api) = start_agent(d, DC, "web-node", "127.78.0.20", &servers);
    // Two more agents: a node is marked unreachable only while fewer than half are silent.
    let others: Vec<(Proc, SocketAddr)> =
        [("db-node", "127.78.0.21"), ("cache-node", "127.78.0.22")]
            .iter()
            .map(|(node, ip)| start_agent(d, DC, node, ip, &servers))
            .collect();
    wait_ready(api, "/v1/agent/ready", &[&agent]);
    for (proc, other) in &others {
        wait_ready(*other, "/v1/agent/ready", &[proc]);
    }

    let acked = Arc::new(AtomicUsize::new(0));
    let writer = std::thread::spawn({
        let acked = acked.clone();
        move || {
            let mut names = Vec::new();
            for n in 0..COUNT {
                let name = format!("reg-{n}");
                let body = format!(r#"{{"Name": "{name}", "Port": {}}}"#, 10_000 + n);
                let (code, resp) =
                    http("PUT", api, "/v1/agent/service/register", Some(&body)).unwrap();
                assert_eq!(code, 200, "register {name}: {resp}");
                names.push(name);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            names
        }
    });
    eventually(
        "a third of the registrations",
        Duration::from_secs(30),
        || (acked.load(Ordering::SeqCst) >= COUNT / 3).then_some(()),
    );
    c.kill(leader);
    let names = writer.join().unwrap();
    assert_eq!(names.len(), COUNT);
    let apis: Vec<SocketAddr> = (0..3).map(|i| c.api(i)).collect();
    let in_catalog = |i: usize| -> Option<Vec<String>> {
        let (code, body) = get(apis[i], "/v1/catalog/services?stale");
        let v: serde_json::Value = (code == 200).then(|| serde_json::from_str(&body).ok())??;
        Some(v.as_object()?.keys().cloned().collect())
    };
    for i in c.running() {
        eventually(
            &format!("server-{i} to have every registration"),
            Duration::from_secs(30),
            || {
                let have = in_catalog(i)?;
                names.iter().all(|n| have.contains(n)).then_some(())
            },
        );
    }
    c.up(leader);
    c.wait_ready();
    eventually(
        "the killed server, back, to have every registration",
        Duration::from_secs(30),
        || {
            let have = in_catalog(leader)?;
            names.iter().all(|n| have.contains(n)).then_some(())
        },
    );

    // Node liveness: the agent paused (SIGSTOP, as `strait lab pause` does to a VM) stops
    // syncing; the leader marks its node (one of three agents) with a critical `serfHealth`
    // check, so its services are critical, and the agent, resumed, clears it with its next
    // sync; the other agents' nodes are not marked.
    let serf_health = |i: usize| -> Option<String> {
        let (code, body) = get(apis[i], "/v1/health/node/web-node?stale");
        let checks: serde_json::Value =
            (code == 200).then(|| serde_json::from_str(&body).ok())??;
        Some(
            checks
                .as_array()?
                .iter()
                .find(|c| c["CheckID"] == "serfHealth")
                .map_or_else(String::new, |c| {
                    c["Status"].as_str().unwrap_or("").to_owned()
                }),
        )
    };
    let kill = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &agent.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} agent");
    };
    kill("-STOP");
    let paused = Instant::now();
    eventually(
        "the paused agent's node marked critical",
        Duration::from_secs(40),
        || (serf_health(leader)? == "critical").then_some(()),
    );
    let took = paused.elapsed();
    eprintln!("paused agent: node marked critical after {took:?}");
    // (12 s without a sync; the last one came up to 5 s before the pause.)
    assert!(
        took >= Duration::from_secs(6),
        "marked after {took:?}, before the timeout"
    );
    let (code, body) = get(apis[leader], "/v1/health/service/reg-0?passing&stale");
    assert_eq!(
        (code, body.trim()),
        (200, "[]"),
        "a marked node's services are not passing"
    );
    kill("-CONT");
    eventually(
        "the resumed agent's sync clears the mark",
        Duration::from_secs(30),
        || serf_health(leader)?.is_empty().then_some(()),
    );
}

/// A formed cluster grows at run time: a fourth server (configured with `bootstrap_expect = 5`,
/// as when growing to five) joins, becomes a voter and has the state; stopped and removed with
/// `strait operator raft remove-peer --address`, the three go on.
#[test]
fn a_server_is_added_and_removed_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Cluster::start(d, 77);
    let leader = c.agreed_leader(&[0, 1, 2]);
    let before = write_through(&c, leader, "before", 3);
    let ip = "127.77.0.13";
    let others: Vec<String> = (0..3).map(|i| format!("\"{}\"", c.https(i))).collect();
    let cfg = write(
        &d.join("server-3.toml"),
        &format!(
            "datacenter = \"{DC}\"\nnode_name = \"server-3\"\ndata_dir = \"{}\"\nhttps_addr = \"{ip}:8300\"\nhttp_addr = \"{ip}:8500\"\njoin_token = \"{}\"\nfederation_token = \"{FED_TOKEN}\"\nbootstrap_expect = 5\nretry_join = [{}]\n",
            d.join("data-server-3").display(),
            join_token(DC),
            others.join(", ")
        ),
    );
    let mut fourth = Proc::start(
        d,
        "server-3",
        &["server", "--config", cfg.to_str().unwrap()],
    );
    let api = sa(&format!("{ip}:8500"));
    wait_ready(api, "/v1/status/ready", &[&fourth]);
    let peers = |i: usize| -> Option<Vec<String>> {
        let (code, body) = get(c.api(i), "/v1/status/peers");
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    };
    eventually("four voters", Duration::from_secs(30), || {
        let leader = c.agreed_leader(&[0, 1, 2]);
        (peers(leader)?.len() == 4).then_some(())
    });
    eventually(
        "the fourth server has the state",
        Duration::from_secs(30),
        || {
            let (code, body) = get(api, "/v1/config/service-intentions?stale");
            (code == 200 && before.iter().all(|b| body.contains(&format!("\"{b}\"")))).then_some(())
        },
    );

    fourth.stop();
    let leader = c.agreed_leader(&[0, 1, 2]);
    let out = std::process::Command::new(strait_bin())
        .args([
            "operator",
            "raft",
            "remove-peer",
            "--address",
            &format!("{ip}:8300"),
        ])
        .args(["--http-addr", &c.api(leader).to_string()])
        .env_remove("STRAIT_LAB_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("three voters again", Duration::from_secs(30), || {
        (peers(leader)?.len() == 3).then_some(())
    });
    let after = write_through(&c, (leader + 1) % 3, "after", 3);
    c.wait_for_entries(leader, &after, "writes after the removal");
}

/// A follower loses its disk and comes back at the same address: it refuses the Raft RPCs
/// meant for its old node ID, joins under a new one, the leader replaces the old ID (the
/// configuration is three voters again, none of them dead), and the server has every write.
#[test]
fn a_server_that_lost_its_data_rejoins_under_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Cluster::start(d, 76);
    let leader = c.agreed_leader(&[0, 1, 2]);
    let lost = (leader + 1) % 3;
    let old_id = c.raft_id(leader, lost);
    let before = write_through(&c, leader, "before", 5);

    c.kill(lost);
    std::fs::remove_dir_all(d.join(format!("data-{}", c.name(lost)))).unwrap();
    c.up(lost);
    c.wait_ready();
    let new_id = eventually(
        "the wiped server back as a voter under a new ID, its old ID gone",
        Duration::from_secs(30),
        || {
            let (code, body) = get(c.api(leader), "/v1/operator/raft/configuration");
            let v: serde_json::Value =
                (code == 200).then(|| serde_json::from_str(&body).ok())??;
            let servers = v["Servers"].as_array()?;
            let at: Vec<&serde_json::Value> = servers
                .iter()
                .filter(|s| s["Address"] == c.https(lost).as_str())
                .collect();
            let all_voters = servers.len() == 3 && servers.iter().all(|s| s["Voter"] == true);
            match at.as_slice() {
                [s] if all_voters && s["ID"] != old_id.as_str() => {
                    s["ID"].as_str().map(str::to_owned)
                }
                _ => None,
            }
        },
    );
    assert_ne!(new_id, old_id);
    c.wait_for_entries(lost, &before, "the wiped server to have the earlier writes");
    let after = write_through(&c, lost, "after", 3);
    for i in 0..3 {
        c.wait_for_entries(
            i,
            &after,
            &format!("server-{i} to have the writes made through the wiped server"),
        );
    }
    assert!(
        (0..3).any(|i| c
            .proc(i)
            .log_text()
            .contains("server re-joined without its data: replaced its old Raft ID")),
        "the leader says it replaced the old ID"
    );
}

/// Starts an agent `node` of `dc` at `ip` (API on :8500) that knows `servers`; not waited for.
fn start_agent(
    dir: &Path,
    dc: &str,
    node: &str,
    ip: &str,
    servers: &[String],
) -> (Proc, SocketAddr) {
    let services = dir.join(format!("services-{node}"));
    std::fs::create_dir_all(&services).unwrap();
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let cfg = write(
        &dir.join(format!("agent-{node}.toml")),
        &format!(
            "datacenter = \"{dc}\"\nnode_name = \"{node}\"\ndata_dir = \"{}\"\nadvertise_addr = \"{ip}\"\nhttp_addr = \"{ip}:8500\"\nservers = [{}]\njoin_token = \"{}\"\nconfig_dir = \"{}\"\n",
            dir.join(format!("data-agent-{node}")).display(),
            servers.join(", "),
            join_token(dc),
            services.display()
        ),
    );
    let agent = Proc::start(
        dir,
        &format!("agent-{node}"),
        &["agent", "--config", cfg.to_str().unwrap()],
    );
    (agent, sa(&format!("{ip}:8500")))
}

/// A new agent of `dc` at `ip` joins through `servers`, registers `web` and gets its leaf
/// certificate: the leaf's SPIFFE ID.
fn new_agent_leaf_uri(dir: &Path, dc: &str, ip: &str, servers: &[String]) -> String {
    let (agent, api) = start_agent(dir, dc, &format!("agent-{dc}"), ip, servers);
    wait_ready(api, "/v1/agent/ready", &[&agent]);
    let (code, body) = http(
        "PUT",
        api,
        "/v1/agent/service/register",
        Some(r#"{"Name": "web", "Port": 8080}"#),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let body = eventually("a leaf for web", Duration::from_secs(30), || {
        let (code, body) = get(api, "/v1/agent/connect/ca/leaf/web");
        (code == 200).then_some(body)
    });
    let leaf: serde_json::Value = serde_json::from_str(&body).unwrap();
    leaf["ServiceURI"].as_str().unwrap().to_owned()
}

/// A gateway VM of `c`'s DC at `ip`: an agent knowing all three servers and a mesh gateway on
/// `ip:8443` (admin :19000), both ready.
fn gateway_vm(c: &Cluster, node: &str, ip: &str) -> (Proc, Proc) {
    let servers: Vec<String> = (0..3).map(|i| c.https(i)).collect();
    let (agent, api) = start_agent(&c.dir, c.dc, node, ip, &servers);
    wait_ready(api, "/v1/agent/ready", &[&agent]);
    let gateway = Proc::start(
        &c.dir,
        node,
        &[
            "gateway",
            "--mesh",
            "--agent",
            &api.to_string(),
            "--address",
            &format!("{ip}:8443"),
            "--wan-address",
            &format!("{ip}:8443"),
            "--admin",
            &format!("{ip}:19000"),
        ],
    );
    wait_ready(sa(&format!("{ip}:19000")), "/ready", &[&agent, &gateway]);
    (agent, gateway)
}

/// The intention entries of datacenter `dc` as server `i` of `c` reads them (`?dc=`:
/// forwarded through the gateways when `dc` is another DC); `None` when that failed.
fn entries_in(c: &Cluster, i: usize, dc: &str) -> Option<Vec<String>> {
    let (code, body) = get(c.api(i), &format!("/v1/config/service-intentions?dc={dc}"));
    let v: serde_json::Value = (code == 200).then(|| serde_json::from_str(&body).ok())??;
    Some(
        v.as_array()?
            .iter()
            .filter_map(|e| e["Name"].as_str().map(String::from))
            .collect(),
    )
}

/// The mesh gateways server `i` of `c` holds in the federation state of `dc`.
fn federation_gateways(c: &Cluster, i: usize, dc: &str) -> Option<Vec<String>> {
    let (code, body) = get(c.api(i), "/v1/internal/federation/states");
    let v: serde_json::Value = (code == 200).then(|| serde_json::from_str(&body).ok())??;
    let state = v.as_array()?.iter().find(|s| s["Datacenter"] == dc)?;
    let mut gws: Vec<String> = state["MeshGateways"]
        .as_array()?
        .iter()
        .filter_map(|g| g.as_str().map(String::from))
        .collect();
    gws.sort();
    Some(gws)
}

/// Two DCs of three servers, federated through gateways. dc1's leader is killed: without
/// restarting anything in dc2, reads go both ways (`?dc=`), and a gateway added to dc2 after
/// the kill reaches dc1's federation state (dc2 publishes to whichever dc1 server leads now).
/// Then dc2's leader is killed: its intermediate CA and the federation state survive, and a
/// new dc2 agent gets a leaf certificate from the survivors.
#[test]
fn federation_goes_on_when_either_datacenter_changes_leader() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut dc1 = Cluster::start(d, 74);
    let _gw1 = gateway_vm(&dc1, "gateway-dc1", "127.74.0.30");
    let mut dc2 = Cluster::start_dc(d, 75, "dc2", &["127.74.0.30:8443".to_string()]);
    let _gw2 = gateway_vm(&dc2, "gateway-dc2", "127.75.0.30");
    let all = [0, 1, 2];
    let gw1 = vec!["127.74.0.30:8443".to_string()];
    for i in all {
        eventually(
            &format!("dc2's server-{i} to hold dc1's federation state"),
            Duration::from_secs(30),
            || (federation_gateways(&dc2, i, "dc1")? == gw1).then_some(()),
        );
    }
    let roots = dc2.roots(0);
    let names: Vec<String> = all.iter().map(|i| dc2.name(*i)).collect();
    let intermediate = |i: usize| {
        std::fs::read_to_string(d.join(format!("data-{}/ca/intermediate.pem", names[i]))).unwrap()
    };
    let inter = intermediate(0);
    for i in all {
        assert_eq!(dc2.roots(i), roots, "dc2 server-{i}'s roots");
        assert_eq!(intermediate(i), inter, "dc2 server-{i}'s intermediate");
    }

    // dc1's leader dies; dc2 is left alone.
    let leader1 = dc1.agreed_leader(&all);
    dc1.kill(leader1);
    let rest1 = dc1.running();
    write_through(&dc1, rest1[0], "dc1-after-kill", 1);
    write_through(&dc2, 0, "dc2-after-dc1-kill", 1);
    for i in &rest1 {
        eventually(
            &format!("dc1 server-{i} to read dc2's write (?dc=dc2)"),
            Duration::from_secs(30),
            || {
                let names = entries_in(&dc1, *i, "dc2")?;
                names.contains(&"dc2-after-dc1-kill-0".into()).then_some(())
            },
        );
    }
    for i in all {
        eventually(
            &format!("dc2 server-{i} to read dc1's write (?dc=dc1)"),
            Duration::from_secs(30),
            || {
                let names = entries_in(&dc2, i, "dc1")?;
                names.contains(&"dc1-after-kill-0".into()).then_some(())
            },
        );
    }
    let _gw2b = gateway_vm(&dc2, "gateway-dc2-b", "127.75.0.31");
    let gws2 = vec![
        "127.75.0.30:8443".to_string(),
        "127.75.0.31:8443".to_string(),
    ];
    for i in &rest1 {
        eventually(
            &format!("dc1 server-{i} to learn dc2's second gateway"),
            Duration::from_secs(30),
            || (federation_gateways(&dc1, *i, "dc2")? == gws2).then_some(()),
        );
    }

    // dc2's leader dies: its CA and federation state stay, leaves are still signed.
    let leader2 = dc2.agreed_leader(&all);
    dc2.kill(leader2);
    let rest2 = dc2.running();
    dc2.agreed_leader(&rest2);
    for i in &rest2 {
        assert_eq!(dc2.roots(*i), roots, "dc2 server-{i}'s roots");
        assert_eq!(intermediate(*i), inter, "dc2 server-{i}'s intermediate");
        assert_eq!(federation_gateways(&dc2, *i, "dc1"), Some(gw1.clone()));
    }
    write_through(&dc2, rest2[0], "dc2-after-dc2-kill", 1);
    eventually(
        "dc1 to read dc2's write after dc2's leader changed",
        Duration::from_secs(30),
        || {
            let names = entries_in(&dc1, rest1[0], "dc2")?;
            names.contains(&"dc2-after-dc2-kill-0".into()).then_some(())
        },
    );
    let servers: Vec<String> = rest2.iter().map(|i| dc2.https(*i)).collect();
    let uri = new_agent_leaf_uri(d, "dc2", "127.75.0.20", &servers);
    assert!(
        uri.starts_with(&format!("spiffe://{}/", roots.0)) && uri.contains("/dc/dc2/"),
        "{uri}"
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
