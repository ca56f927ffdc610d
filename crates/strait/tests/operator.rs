//! The operator's view of a DC's servers and backups, on real processes: `strait operator raft
//! list-peers / remove-peer`, the status and operator endpoints, and `strait snapshot save /
//! restore` (a saved catalog and config entry come back; a corrupt, truncated or other DC's
//! file is refused and changes nothing; a fresh server restored from it gets the original CA
//! back and serves with it at once: the original's agent works against it).  Addresses: 127.61.0.0/16.

mod common;

use common::*;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Runs `strait ARGS --http-addr SERVER`: (success, stdout + stderr).
fn strait(server: SocketAddr, args: &[&str]) -> (bool, String) {
    strait_at(server, args, &[])
}

fn start_server(dir: &Path, dc: &str, ip: &str) -> (Proc, SocketAddr) {
    let cfg = server_config(dir, dc, ip, &[]);
    let proc = Proc::start(
        dir,
        &format!("server-{dc}"),
        &["server", "--config", cfg.to_str().unwrap()],
    );
    (proc, sa(&format!("{ip}:8500")))
}

/// What a restore must change, or leave alone: the services, nodes and config entries.
fn state(server: SocketAddr) -> String {
    let mut out = String::new();
    for path in [
        "/v1/catalog/services",
        "/v1/catalog/nodes",
        "/v1/config/service-defaults",
    ] {
        let (status, body) = get(server, path);
        assert_eq!(status, 200, "{path}: {body}");
        out.push_str(&body);
        out.push('\n');
    }
    out
}

fn has_web(server: SocketAddr) -> bool {
    let (status, body) = get(server, "/v1/catalog/service/web");
    status == 200 && body.contains("\"ServiceName\":\"web\"")
}

fn has_web_defaults(server: SocketAddr) -> bool {
    let (status, body) = get(server, "/v1/config/service-defaults");
    status == 200 && body.contains("\"Name\":\"web\"")
}

/// What the snapshot saved: the service and its config entry.
fn saved_state(server: SocketAddr) -> bool {
    has_web(server) && has_web_defaults(server)
}

#[test]
fn peers_status_and_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (mut s1, server) = start_server(d, "dc1", "127.61.1.10");
    let (s2, other_dc) = start_server(d, "dc2", "127.61.2.10");
    wait_ready(server, "/v1/status/ready", &[&s1]);
    wait_ready(other_dc, "/v1/status/ready", &[&s2]);
    let cfg_agent = agent_config(
        d,
        "dc1",
        "web-node",
        "127.61.1.11",
        "127.61.1.10",
        &join_token("dc1"),
    );
    let agent_addr = sa("127.61.1.11:8500");
    let mut agent = Proc::start(
        d,
        "agent",
        &["agent", "--config", cfg_agent.to_str().unwrap()],
    );
    wait_ready(agent_addr, "/v1/agent/ready", &[&agent, &s1]);

    // Status: the one server leads and is the only voter, also as an agent relays it.
    let raft_addr = "\"127.61.1.10:8300\"";
    assert_eq!(get(server, "/v1/status/leader"), (200, raft_addr.into()));
    assert_eq!(
        get(agent_addr, "/v1/status/leader"),
        (200, raft_addr.into())
    );
    assert_eq!(
        get(server, "/v1/status/peers"),
        (200, format!("[{raft_addr}]"))
    );
    let (status, body) = get(server, "/v1/operator/raft/configuration");
    assert_eq!(status, 200, "{body}");
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    let servers = config["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{body}");
    let me = &servers[0];
    assert_eq!(me["Node"], "server-dc1", "{body}");
    assert_eq!(me["Address"], "127.61.1.10:8300", "{body}");
    assert_eq!(
        (&me["Leader"], &me["Voter"]),
        (&true.into(), &true.into()),
        "{body}"
    );
    // (openraft's first membership is log entry 0.)
    assert!(config["Index"].is_u64(), "{body}");
    let id = me["ID"].as_str().unwrap().to_string();

    let (ok, out) = strait(server, &["operator", "raft", "list-peers"]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["Node", "ID", "Address", "State", "Voter"], "{out}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        [
            "server-dc1",
            id.as_str(),
            "127.61.1.10:8300",
            "leader",
            "true"
        ],
        "{out}"
    );

    // The last voter cannot be removed, nor a server that is not there; both say which.
    let (ok, out) = strait(server, &["operator", "raft", "remove-peer", &id]);
    assert!(!ok, "{out}");
    assert!(out.contains(&id) && out.contains("last voter"), "{out}");
    let (ok, out) = strait(server, &["operator", "raft", "remove-peer", "12345"]);
    assert!(!ok, "{out}");
    assert!(out.contains("\"12345\"") && out.contains(&id), "{out}");
    let (ok, out) = strait(
        server,
        &[
            "operator",
            "raft",
            "remove-peer",
            "--address",
            "127.61.9.9:8300",
        ],
    );
    assert!(!ok && out.contains("127.61.9.9:8300"), "{out}");
    let (status, body) = http("DELETE", server, "/v1/operator/raft/peer", None).unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(server, "/v1/status/peers").1, format!("[{raft_addr}]"));

    // A service and a config entry, saved.
    let (status, body) = http(
        "PUT",
        agent_addr,
        "/v1/agent/service/register",
        Some(r#"{"Name":"web","Port":8080}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let defaults = r#"{"Kind":"service-defaults","Name":"web","MeshGateway":{"Mode":"local"}}"#;
    let (status, body) = http("PUT", server, "/v1/config", Some(defaults)).unwrap();
    assert_eq!(status, 200, "{body}");
    eventually("web in the catalog", Duration::from_secs(20), || {
        has_web(server).then_some(())
    });
    let saved = d.join("backups/dc1.snap");
    std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
    let (ok, out) = strait(server, &["snapshot", "save", saved.to_str().unwrap()]);
    assert!(ok && out.contains("saved a snapshot"), "{out}");
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", saved.display());
    let file = std::fs::read(&saved).unwrap();
    assert!(file.starts_with(b"strait-snapshot 2\n{\"datacenter\":\"dc1\""));
    // The CA travels in the snapshot, its key too (hence 0600).
    let trust = roots(server);
    assert!(
        String::from_utf8_lossy(&file).contains("PRIVATE KEY"),
        "the snapshot carries no CA key"
    );
    let foreign = d.join("backups/dc2.snap");
    let (ok, out) = strait(other_dc, &["snapshot", "save", foreign.to_str().unwrap()]);
    assert!(ok, "{out}");
    let stale = d.join("backups/dc1-stale.snap");
    let (ok, out) = strait(
        server,
        &["snapshot", "save", "--stale", stale.to_str().unwrap()],
    );
    assert!(ok && out.contains("saved a snapshot"), "{out}");
    assert!(std::fs::read(&stale)
        .unwrap()
        .starts_with(b"strait-snapshot 2\n{\"datacenter\":\"dc1\""));

    // Changed since: the service deregistered, the entry deleted.
    let (status, body) = http("PUT", agent_addr, "/v1/agent/service/deregister/web", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = http("DELETE", server, "/v1/config/service-defaults/web", None).unwrap();
    assert_eq!(status, 200, "{body}");
    eventually("web gone from the catalog", Duration::from_secs(20), || {
        (!has_web(server)).then_some(())
    });
    assert!(!has_web_defaults(server));
    let before = state(server);

    // A flipped byte, a cut file, another DC's snapshot: refused, saying why; nothing changes.
    let mut flipped = file.clone();
    let i = flipped.len() - 10;
    flipped[i] ^= 0x01;
    let truncated = &file[..file.len() - 7];
    let cases: [(&str, &[u8], &str); 3] = [
        ("flipped.snap", &flipped, "corrupt"),
        ("truncated.snap", truncated, "truncated"),
        (
            "foreign.snap",
            &std::fs::read(&foreign).unwrap(),
            "datacenter dc2",
        ),
    ];
    for (name, bytes, why) in cases {
        let path = d.join(name);
        std::fs::write(&path, bytes).unwrap();
        let (ok, out) = strait(server, &["snapshot", "restore", path.to_str().unwrap()]);
        assert!(!ok, "{name} was restored: {out}");
        assert!(
            out.contains(why) && out.contains("HTTP 400"),
            "{name}: {out}"
        );
        assert_eq!(state(server), before, "{name} changed the state");
    }

    // The agent would put its own node's truth back (anti-entropy, as Consul's): stop it, then
    // restore; what was saved is back.
    // A blocking query waiting on the current index wakes on the restore (which moves the
    // catalog index back to the snapshot's).
    agent.stop();
    let index = consul_index(server, "/v1/catalog/services");
    let blocked = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let path = format!("/v1/catalog/services?index={index}&wait=60s");
        (get(server, &path), started.elapsed())
    });
    let (ok, out) = strait(server, &["snapshot", "restore", saved.to_str().unwrap()]);
    assert!(ok, "{out}");
    let ((status, body), waited) = blocked.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"web\""), "{body}");
    assert!(
        waited < Duration::from_secs(30),
        "the blocking query waited {waited:?}"
    );
    assert!(
        out.contains("restored the snapshot of datacenter dc1"),
        "{out}"
    );
    assert!(has_web(server), "{}", state(server));
    assert!(has_web_defaults(server), "{}", state(server));
    // The same CA: the cluster's own was in the snapshot.
    assert!(!out.contains("replaced the cluster's"), "{out}");
    assert_eq!(roots(server), trust);
    // And the server still takes writes afterwards.
    let (status, body) = http("DELETE", server, "/v1/config/service-defaults/web", None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!has_web_defaults(server));

    // Disaster recovery: a fresh server of dc1 (its own new CA) restored from the snapshot has
    // the catalog, the config entries and the CA of the original, and serves with that CA at
    // once: the original's agent, pointed at it with its old certificate, works again, and a
    // leaf is signed by the restored CA; no restart.
    let fresh_dir = d.join("fresh");
    let cfg = server_config(&fresh_dir, "dc1", "127.61.1.20", &[]);
    let fresh = sa("127.61.1.20:8500");
    let args = ["server", "--config", cfg.to_str().unwrap()];
    let mut s3 = Proc::start(&fresh_dir, "server-fresh", &args);
    wait_ready(fresh, "/v1/status/ready", &[&s3]);
    assert_ne!(roots(fresh).0, trust.0, "a fresh server has its own CA");
    let (ok, out) = strait(fresh, &["snapshot", "restore", saved.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "the snapshot's CA (trust domain {}) replaced the cluster's",
            trust.0
        )),
        "{out}"
    );
    assert!(saved_state(fresh), "{}", state(fresh));
    assert_eq!(roots(fresh), trust);
    eventually(
        "the fresh server serving with the restored CA",
        Duration::from_secs(20),
        || {
            s3.log_text()
                .contains("a snapshot restore replaced the DC's CA")
                .then_some(())
        },
    );
    let key = fresh_dir.join("data-server-dc1/ca/root.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    s1.stop();
    agent_config(
        d,
        "dc1",
        "web-node",
        "127.61.1.11",
        "127.61.1.20",
        &join_token("dc1"),
    );
    let agent = Proc::start(
        d,
        "agent",
        &["agent", "--config", cfg_agent.to_str().unwrap()],
    );
    wait_ready(agent_addr, "/v1/agent/ready", &[&agent, &s3]);
    let (status, body) = http(
        "PUT",
        agent_addr,
        "/v1/agent/service/register",
        Some(r#"{"Name": "api", "Port": 9090}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let leaf = eventually("a leaf for api", Duration::from_secs(30), || {
        let (code, body) = get(agent_addr, "/v1/agent/connect/ca/leaf/api");
        (code == 200).then_some(body)
    });
    let leaf: serde_json::Value = serde_json::from_str(&leaf).unwrap();
    let uri = leaf["ServiceURI"].as_str().unwrap();
    assert!(uri.starts_with(&format!("spiffe://{}/", trust.0)), "{uri}");
    eventually(
        "api registered on the fresh server",
        Duration::from_secs(30),
        || {
            let (status, body) = get(fresh, "/v1/catalog/service/api");
            (status == 200 && body.contains("\"ServiceName\":\"api\"")).then_some(())
        },
    );
    s3.stop();
}

/// The trust domain and root certificates a server serves (`/v1/connect/ca/roots`).
fn roots(server: SocketAddr) -> (String, Vec<String>) {
    let (status, body) = get(server, "/v1/connect/ca/roots");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let pems = v["Roots"].as_array().unwrap().iter();
    let pems = pems.map(|r| r["RootCert"].as_str().unwrap().to_owned());
    (
        v["TrustDomain"].as_str().unwrap().to_owned(),
        pems.collect(),
    )
}
