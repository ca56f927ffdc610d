//! Consul's consistency modes on a datacenter of three servers, and autopilot's dead-server
//! cleanup: a write through a follower is at once in default and `?consistent` reads from the
//! other follower (forwarded to the leader, blocking queries included); `?stale` answers from
//! the follower itself with `X-Consul-KnownLeader` and `X-Consul-LastContact`; a follower cut
//! off from the others (SIGSTOP) answers `?stale` with no known leader and a growing last
//! contact, and default reads (and `?stale&max_stale=` shorter than that) with 503 rather
//! than stale data; snapshots asked of a follower (forwarded, or `?stale`); a leader cut off from both
//! followers refuses default reads once its lease runs out and removes neither; a follower
//! killed for good is removed by the leader after `dead_server_cleanup`, and started again
//! asks to be re-added and is a voter again. Addresses:
//! 127.62.0.0/16.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DC: &str = "dc1";

fn ip(i: usize) -> String {
    format!("127.62.0.{}", 10 + i)
}

fn http_of(i: usize) -> SocketAddr {
    sa(&format!("{}:8500", ip(i)))
}

/// Server `i` of three, removing dead servers after 4 s.
fn start(dir: &Path, i: usize) -> Proc {
    let others: Vec<String> = (0..3)
        .filter(|j| *j != i)
        .map(|j| format!("\"{}:8300\"", ip(j)))
        .collect();
    let cfg = write(
        &dir.join(format!("s{i}.toml")),
        &format!(
            "datacenter = \"{DC}\"\nnode_name = \"s{i}\"\ndata_dir = \"{}\"\nhttps_addr = \"{ip}:8300\"\nhttp_addr = \"{ip}:8500\"\njoin_token = \"{}\"\nfederation_token = \"{FED_TOKEN}\"\nbootstrap_expect = 3\nretry_join = [{}]\ndead_server_cleanup = \"4s\"\n",
            dir.join(format!("data-s{i}")).display(),
            join_token(DC),
            others.join(", "),
            ip = ip(i),
        ),
    );
    Proc::start(
        dir,
        &format!("s{i}"),
        &["server", "--config", cfg.to_str().unwrap()],
    )
}

/// The server every one of `servers` names as leader, once they agree.
fn leader(servers: &[usize]) -> usize {
    eventually("one leader known to all", Duration::from_secs(30), || {
        let named: Vec<String> = servers
            .iter()
            .map(|i| get(http_of(*i), "/v1/status/leader").1)
            .collect();
        let first = named[0].trim_matches('"');
        let agreed = named.iter().all(|n| n.trim_matches('"') == first);
        (0..3).find(|i| agreed && first == format!("{}:8300", ip(*i)))
    })
}

/// Writes intention entry `name` through server `i`, again after a 503 (an election on a
/// loaded machine: clients retry, as Consul's do).
fn write_entry(i: usize, name: &str) {
    let body = format!(
        r#"{{"Kind":"service-intentions","Name":"{name}","Sources":[{{"Name":"web","Action":"allow"}}]}}"#
    );
    let (status, resp) = eventually(
        &format!("write {name} through s{i} answered"),
        Duration::from_secs(10),
        || {
            let (status, resp) = http("PUT", http_of(i), "/v1/config", Some(&body)).unwrap();
            (status != 503).then_some((status, resp))
        },
    );
    assert_eq!(status, 200, "write {name} through s{i}: {resp}");
}

/// A read of the intentions: status, body, and the leader headers.
struct Read {
    status: u16,
    body: String,
    known_leader: Option<String>,
    last_contact: Option<u64>,
    index: Option<u64>,
}

fn read(i: usize, query: &str) -> Read {
    let reply = request(
        "GET",
        http_of(i),
        &format!("/v1/config/service-intentions{query}"),
        None,
    )
    .unwrap_or_else(|e| panic!("s{i}: {e}"));
    let header = |name: &str| reply.header(name).map(str::to_owned);
    Read {
        status: reply.status,
        known_leader: header("x-consul-knownleader"),
        last_contact: header("x-consul-lastcontact").and_then(|v| v.parse().ok()),
        index: header("x-consul-index").and_then(|v| v.parse().ok()),
        body: reply.body,
    }
}

/// `GET /v1/snapshot{query}` on server `i`'s loopback API: the status, and the body as text
/// for an error.
fn snapshot(i: usize, query: &str) -> (u16, String) {
    let reply = request("GET", http_of(i), &format!("/v1/snapshot{query}"), None)
        .unwrap_or_else(|e| panic!("s{i}: {e}"));
    let text = if reply.status == 200 {
        String::new()
    } else {
        reply.body
    };
    (reply.status, text)
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {}", p.name);
}

fn voters(i: usize) -> usize {
    let (status, body) = get(http_of(i), "/v1/status/peers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Vec<String>>(&body).unwrap().len()
}

#[test]
fn consistency_modes_and_dead_server_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut servers: Vec<Proc> = (0..3).map(|i| start(d, i)).collect();
    for i in 0..3 {
        wait_ready(
            http_of(i),
            "/v1/status/ready",
            &servers.iter().collect::<Vec<_>>(),
        );
    }
    let lead = leader(&[0, 1, 2]);
    eventually("three voters", Duration::from_secs(30), || {
        (voters(lead) == 3).then_some(())
    });
    let (f1, f2) = match lead {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };

    // A write through one follower is in the other's default and consistent reads at once:
    // both are answered by the leader (its headers: a known leader, last contact 0).
    write_entry(f1, "first");
    for query in ["", "?consistent"] {
        // (A 503 only while an election runs, as a loaded machine can start one.)
        let r = eventually(
            "a read forwarded to the leader",
            Duration::from_secs(10),
            || {
                let r = read(f2, query);
                (r.status != 503).then_some(r)
            },
        );
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        assert!(r.body.contains("\"first\""), "{query}: {}", r.body);
        assert_eq!(r.known_leader.as_deref(), Some("true"), "{query}");
        assert_eq!(r.last_contact, Some(0), "{query}");
        assert!(r.index.is_some(), "{query}");
    }
    // Stale: the follower answers itself, having heard the leader's heartbeat moments ago.
    let stale = eventually(
        "the follower applied the write",
        Duration::from_secs(10),
        || {
            let r = read(f2, "?stale");
            r.body.contains("\"first\"").then_some(r)
        },
    );
    assert_eq!(stale.status, 200, "{}", stale.body);
    assert_eq!(stale.known_leader.as_deref(), Some("true"));
    let contact = stale.last_contact.expect("X-Consul-LastContact");
    assert!(
        contact < 1000,
        "last contact {contact} ms on a healthy follower"
    );
    let r = read(f2, "?stale&consistent");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = read(f2, "?stale&max_stale=10s");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.known_leader.as_deref(), Some("true"));
    let r = read(f2, "?stale&max_stale=soon");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("max_stale"), "{}", r.body);
    // A snapshot asked of a follower: taken by the leader (forwarded), or by the follower
    // itself with ?stale.
    for query in ["", "?stale"] {
        let (status, _) = snapshot(f2, query);
        assert_eq!(status, 200, "snapshot{query} on a follower");
    }

    // Blocking queries on a follower, default (forwarded to the leader) and stale: with
    // nothing written they wait out their `wait`; they wake on the next commit.
    let index = read(f2, "").index.unwrap();
    let block = |query: String| {
        std::thread::spawn(move || {
            let started = Instant::now();
            (read(f2, &query), started.elapsed(), query)
        })
    };
    let quiet: Vec<_> = ["", "&stale"]
        .map(|mode| block(format!("?index={index}&wait=1s{mode}")))
        .into_iter()
        .collect();
    for handle in quiet {
        let (r, waited, query) = handle.join().unwrap();
        assert_eq!(
            (r.status, r.index),
            (200, Some(index)),
            "{query}: {}",
            r.body
        );
        assert!(
            waited >= Duration::from_millis(900),
            "{query} waited {waited:?}"
        );
    }
    let woken: Vec<_> = ["", "&stale"]
        .map(|mode| block(format!("?index={index}&wait=30s{mode}")))
        .into_iter()
        .collect();
    write_entry(f1, "second");
    for handle in woken {
        let (r, waited, query) = handle.join().unwrap();
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        assert!(r.body.contains("\"second\""), "{query}: {}", r.body);
        assert!(
            waited < Duration::from_secs(20),
            "{query} waited {waited:?}"
        );
        assert!(r.index.unwrap() > index, "{query}");
    }

    // Cut f2 off: stop the two others. It keeps answering ?stale from its own state, knows no
    // leader after its election timeout, its last contact grows; default and consistent reads
    // fail rather than answer stale data.
    signal(&servers[lead], "-STOP");
    signal(&servers[f1], "-STOP");
    let cut = eventually("f2 knows no leader", Duration::from_secs(20), || {
        let r = read(f2, "?stale");
        (r.known_leader.as_deref() == Some("false")).then_some(r)
    });
    assert_eq!(cut.status, 200, "{}", cut.body);
    assert!(cut.body.contains("\"second\""), "{}", cut.body);
    let before = cut.last_contact.expect("X-Consul-LastContact");
    assert!(before >= 500, "last contact {before} ms without a leader");
    eventually("a growing last contact", Duration::from_secs(10), || {
        (read(f2, "?stale").last_contact? > before).then_some(())
    });
    // Too stale for the caller: served as a default read, which no leader can answer.
    let r = read(f2, "?stale&max_stale=100ms");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        snapshot(f2, "?stale").0,
        200,
        "a stale snapshot with no leader"
    );
    let (status, body) = snapshot(f2, "");
    assert_eq!(status, 503, "a snapshot with no leader: {body}");
    for query in ["", "?consistent"] {
        let r = eventually("a refused read", Duration::from_secs(20), || {
            let r = read(f2, query);
            (r.status != 200).then_some(r)
        });
        assert_eq!(r.status, 503, "{query}: {}", r.body);
        assert!(r.body.contains("leader"), "{query}: {}", r.body);
        assert_eq!(r.known_leader.as_deref(), Some("false"), "{query}");
    }
    signal(&servers[lead], "-CONT");
    signal(&servers[f1], "-CONT");
    eventually("reads served again", Duration::from_secs(30), || {
        let r = read(f2, "");
        (r.status == 200 && r.body.contains("\"second\"")).then_some(())
    });

    // The other way round: a leader cut off from both followers (stopped) still believes it
    // leads, but its lease runs out: default and consistent reads fail, ?stale answers; and it
    // removes neither follower, however long they are silent (2 of 3 is no minority).
    let lead = leader(&[0, 1, 2]);
    let followers: Vec<usize> = (0..3).filter(|i| *i != lead).collect();
    for f in &followers {
        signal(&servers[*f], "-STOP");
    }
    for query in ["", "?consistent"] {
        let r = eventually("the lease to run out", Duration::from_secs(20), || {
            let r = read(lead, query);
            (r.status != 200).then_some(r)
        });
        assert_eq!(r.status, 503, "{query}: {}", r.body);
    }
    let r = read(lead, "");
    assert!(r.body.contains("quorum"), "{}", r.body);
    assert_eq!(read(lead, "?stale").status, 200);
    eventually(
        "the leader refusing to remove both",
        Duration::from_secs(30),
        || {
            servers[lead]
                .log_text()
                .contains("dead servers not removed")
                .then_some(())
        },
    );
    for f in &followers {
        signal(&servers[*f], "-CONT");
    }
    eventually("reads served again", Duration::from_secs(30), || {
        (read(f2, "").status == 200).then_some(())
    });
    assert_eq!(voters(leader(&[0, 1, 2])), 3);

    // Kill a follower for good: after dead_server_cleanup (4 s) the leader removes it, and the
    // two left still take writes.
    let lead = leader(&[0, 1, 2]);
    let victim = (0..3).find(|i| *i != lead).unwrap();
    servers[victim].child.kill().unwrap();
    servers[victim].child.wait().unwrap();
    let killed = Instant::now();
    let left: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    eventually("the dead server removed", Duration::from_secs(30), || {
        let lead = leader(&left);
        (voters(lead) == 2).then_some(())
    });
    let took = killed.elapsed();
    assert!(took >= Duration::from_secs(4), "removed after {took:?}");
    // Said by whichever server led then (leadership may have moved since), once the change
    // has committed: the configuration shows two voters a moment before the log line.
    let removal = eventually("the removal logged", Duration::from_secs(10), || {
        left.iter().map(|i| servers[*i].log_text()).find_map(|log| {
            log.lines()
                .find(|l| l.contains("removed dead servers"))
                .map(str::to_owned)
        })
    });
    assert!(
        removal.contains(&format!("{}:8300", ip(victim))),
        "{removal}"
    );
    write_entry(left[0], "third");
    let r = read(left[1], "?consistent");
    assert!(r.body.contains("\"third\""), "{}", r.body);

    // The removed server comes back with its data: no leader talks to it, so it asks to be
    // re-added, and is a voter again with every write.
    servers[victim] = start(d, victim);
    eventually(
        "the removed server a voter again",
        Duration::from_secs(30),
        || (voters(leader(&left)) == 3).then_some(()),
    );
    eventually(
        "the re-added server has the writes",
        Duration::from_secs(30),
        || {
            read(victim, "?stale")
                .body
                .contains("\"third\"")
                .then_some(())
        },
    );
}
