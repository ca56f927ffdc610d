//! End-to-end tests of `strait lab`: the default two-DC demo (dashboard in dc1, counting in
//! dc2, through both mesh gateways), `lab kill` / `lab start` of dc2's server, a three-DC
//! topology with `remote` and `local` gateway modes, the dashboard page in headless
//! Chromium, and `lab down` leaving no process.
//!
//! The default topology's addresses (127.20.x.y) are fixed, so only
//! `default_lab_end_to_end` uses them (and there also the commands for humans, which find the
//! lab from `STRAIT_LAB_DIR`); the three-DC test uses 127.21-23.x.y.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::browser::{artifact, chromium_dump, element_text};
use common::lab::{alive, processes_mentioning, Lab};
use common::{eventually, get, metric, sa};

/// `/api/count` of a dashboard: (reachable, count, hostname).
fn dashboard_count(dash: SocketAddr) -> Option<(bool, u64, String)> {
    let (status, body) = get(dash, "/api/count");
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status != 0).then(|| {
        (
            v["reachable"].as_bool().unwrap_or(false),
            v["count"].as_u64().unwrap_or(0),
            v["hostname"].as_str().unwrap_or("").to_string(),
        )
    })
}

/// Waits until the dashboard reports a count, then checks that counts keep increasing and
/// come from `hostname`.
fn assert_counts_increase(dash: SocketAddr, hostname: &str) {
    let first = eventually(
        &format!("{dash} to report a count"),
        Duration::from_secs(30),
        || dashboard_count(dash).filter(|c| c.0).map(|c| c.1),
    );
    let mut last = first;
    for _ in 0..3 {
        let (ok, count, host) = dashboard_count(dash).expect("dashboard answers");
        assert!(ok, "counting became unreachable from {dash}");
        assert_eq!(host, hostname, "count served by the wrong instance");
        assert!(count > last, "count did not increase: {last} then {count}");
        last = count;
    }
}

/// Like [`assert_counts_increase`], after waiting for counting to become reachable again.
fn assert_counts_increase_eventually(dash: SocketAddr, hostname: &str) {
    eventually(
        "counting to be reachable again",
        Duration::from_secs(15),
        || dashboard_count(dash).filter(|c| c.0).map(|_| ()),
    );
    assert_counts_increase(dash, hostname);
}

/// Speaks plain HTTP to a sidecar's mTLS port; returns whatever came back before the close.
fn plaintext_exchange(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: counting\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn default_lab_end_to_end() {
    let mut lab = Lab::up(&[]);

    // A second `up` on the same directory refuses and changes nothing.
    let again = lab.run(&["up"]);
    assert!(!again.status.success());
    let msg = String::from_utf8_lossy(&again.stderr);
    assert!(msg.contains("already running"), "{msg}");

    cli_finds_the_lab(&lab);

    // The dashboard's API reports increasing counts from counting in dc2...
    let dash = sa("127.20.1.12:9002");
    let gw1 = sa("127.20.1.11:19000");
    let gw2 = sa("127.20.2.11:19000");
    let to_dc2 = ["dc=\"dc2\"", "sni=\"*\""];
    let to_counting = ["dc=\"dc2\"", "sni=\"counting.default.dc2.internal."];
    let (dash_admin, counting_admin) = (sa("127.20.1.12:19000"), sa("127.20.2.12:19000"));
    let state = || {
        (
            metric(gw1, "strait_gateway_routed_total", &to_dc2),
            metric(gw2, "strait_gateway_routed_total", &to_counting),
            metric(gw1, "strait_gateway_bytes_total", &[]),
            metric(gw2, "strait_gateway_bytes_total", &[]),
            tunnel_streams(dash_admin, "outbound"),
            tunnel_streams(counting_admin, "inbound"),
        )
    };
    let before = state();
    assert_counts_increase(dash, "secondary-services");

    // ...each request a connection carried as a stream of a tunnel between the two sidecars,
    // and the tunnels (TCP connections, routed by SNI) and their bytes crossed both gateways.
    let after = state();
    assert!(
        after.4 >= before.4 + 3 && after.5 >= before.5 + 3,
        "tunnel streams: {before:?} -> {after:?}"
    );
    assert!(after.0 >= 1, "dc1 gateway: {before:?} -> {after:?}");
    assert!(after.1 >= 1, "dc2 gateway: {before:?} -> {after:?}");
    assert!(
        after.2 > before.2 && after.3 > before.3,
        "{before:?} -> {after:?}"
    );

    // A plaintext connection to counting's sidecar gets no answer: the mTLS handshake fails.
    let inbound = ["direction=\"inbound\""];
    let failures = metric(
        counting_admin,
        "strait_sidecar_handshake_failures_total",
        &inbound,
    );
    let reply = plaintext_exchange(sa("127.20.2.12:21000"));
    assert!(
        !reply.contains("HTTP/1"),
        "plaintext got an answer: {reply}"
    );
    eventually(
        "the refused handshake counted",
        Duration::from_secs(5),
        || {
            (metric(
                counting_admin,
                "strait_sidecar_handshake_failures_total",
                &inbound,
            ) > failures)
                .then_some(())
        },
    );

    // ACLs (the lab's default: on, default deny): a leaf needs service:write on its service.
    // Nobody gets one without a token; the dashboard sidecar's token (a service identity the
    // lab created, in a 0600 file) gets dashboard's, not counting's.
    let agent = sa("127.20.1.12:8500");
    let (status, body) = get(agent, "/v1/agent/connect/ca/leaf/dashboard");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("anonymous token lacks permission 'service:write'"),
        "{body}"
    );
    let sidecar_token = lab
        .path()
        .join("vms/primary-services/dashboard-sidecar.token");
    assert_private(&sidecar_token);
    let sidecar_token = std::fs::read_to_string(&sidecar_token).unwrap();
    let with = |token: &str, path: &str| {
        let r = common::request_with(
            "GET",
            agent,
            path,
            None,
            &[("X-Consul-Token", token.trim())],
        )
        .unwrap();
        (r.status, r.body)
    };
    let (status, body) = with(&sidecar_token, "/v1/agent/connect/ca/leaf/dashboard");
    assert_eq!(status, 200, "{body}");
    let (status, body) = with(&sidecar_token, "/v1/agent/connect/ca/leaf/counting");
    assert_eq!(status, 403, "{body}");
    // An agent gets certificates only for the services its node runs: even the management
    // token gets no leaf for counting on primary-services.
    let (status, body) = lab.http("GET", agent, "/v1/agent/connect/ca/leaf/counting", None);
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("runs no such service"), "{body}");
    // No secret of the lab in a log, in state.json, or in a file others can read.
    assert_no_secret_leaks(&lab);

    // The page in a real browser shows a count from counting's host.
    let dom = chromium_dump(&format!("http://{dash}/"), &artifact("dashboard.png"));
    let count = element_text(&dom, "count");
    assert!(
        count.parse::<u64>().is_ok_and(|n| n > 0),
        "no count on the page: {count:?}\n{dom}"
    );
    assert_eq!(element_text(&dom, "hostname"), "secondary-services");
    assert_eq!(element_text(&dom, "status"), "connected");

    // Stopping counting turns the dashboard to "unreachable"; starting it again recovers.
    lab.ok(&["stop", "counting"]);
    eventually(
        "dashboard to report counting unreachable",
        Duration::from_secs(10),
        || dashboard_count(dash).filter(|c| !c.0).map(|_| ()),
    );
    let dom = chromium_dump(
        &format!("http://{dash}/"),
        &artifact("dashboard-unreachable.png"),
    );
    assert_eq!(element_text(&dom, "status"), "unreachable");
    lab.ok(&["start", "counting"]);
    assert_counts_increase(dash, "secondary-services");

    // A deny intention written on the primary's server for dc2 (found from the lab
    // directory) stops new connections at counting's sidecar; deleting it lets them through.
    let primary_server = sa("127.20.1.10:8500");
    let intention = |args: &[&str]| {
        let mut all = vec!["intention"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--dc", "dc2"]);
        lab.cli(&all)
    };
    let (code, text) = intention(&["deny", "dashboard", "counting"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = intention(&["check", "dashboard", "counting"]);
    assert_eq!(
        (code, text.trim()),
        (Some(1), "dashboard -> counting: denied")
    );
    let (code, text) = intention(&["list"]);
    assert!(
        code == Some(0) && text.contains("dashboard  deny    counting"),
        "{text}"
    );
    let bad = r#"{"Kind":"service-intentions","Name":"counting",
        "Sources":[{"Name":"dashboard","Action":"block"}]}"#;
    let (status, body) = lab.http("PUT", primary_server, "/v1/config?dc=dc2", Some(bad));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Sources[0].Action"), "{body}");
    // A local write without a Content-Type (as `curl -d` sends it) is accepted.
    let defaults =
        r#"{"Kind":"service-defaults","Name":"dashboard","MeshGateway":{"Mode":"local"}}"#;
    let (status, body) = lab.http("PUT", primary_server, "/v1/config", Some(defaults));
    assert_eq!(status, 200, "{body}");
    eventually(
        "the deny intention to take effect",
        Duration::from_secs(15),
        || dashboard_count(dash).filter(|c| !c.0).map(|_| ()),
    );
    assert!(
        metric(
            counting_admin,
            "strait_sidecar_intentions_denied_total",
            &[]
        ) > 0
    );
    // Deleted, no intention matches: ACLs' default deny still refuses; allowed again, the
    // counts come back.
    let (code, text) = intention(&["delete", "dashboard", "counting"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = intention(&["check", "dashboard", "counting"]);
    assert_eq!(
        (code, text.trim()),
        (Some(1), "dashboard -> counting: denied")
    );
    let (code, text) = intention(&["allow", "dashboard", "counting"]);
    assert_eq!(code, Some(0), "{text}");
    assert_counts_increase_eventually(dash, "secondary-services");

    kill_and_start_a_server(&lab, dash);

    // Status lists every process as running and ready.
    let status = lab.ok(&["status"]);
    for line in status.lines().filter(|l| l.contains("127.20.")) {
        assert!(
            line.contains("running") && line.contains("ready"),
            "{status}"
        );
    }
    assert_eq!(
        status.lines().filter(|l| l.contains("127.20.")).count(),
        12,
        "{status}"
    );

    // `down` stops every process the lab started.
    let pids = lab.pids();
    assert_eq!(pids.len(), 12);
    lab.down();
    eventually(
        "every lab process to be gone",
        Duration::from_secs(10),
        || {
            let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
            left.is_empty().then_some(())
        },
    );
    assert_eq!(
        processes_mentioning(&lab.path().display().to_string()),
        Vec::<u32>::new()
    );
    assert_eq!(processes_mentioning("127.20.1.12:8500"), Vec::<u32>::new());
}

/// `lab kill secondary-server` stops dc2's only server (its API no longer answers); `lab start
/// secondary-server` brings it back ready (its Raft state from disk), and dc2's catalog answers
/// through it again while the dashboard keeps counting.
/// `path` is readable by its owner only.
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
}

/// Every token of the lab (the management token and each process's) appears only in files
/// that are 0600, and in no log and not in state.json.
fn assert_no_secret_leaks(lab: &Lab) {
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut all = Vec::new();
    files(lab.path(), &mut all);
    let secrets: Vec<String> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "token"))
        .map(|p| std::fs::read_to_string(p).unwrap().trim().to_owned())
        .collect();
    assert!(secrets.len() >= 5, "{all:?}");
    for path in &all {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        if !secrets.iter().any(|s| text.contains(s.as_str())) {
            continue;
        }
        let name = path.display().to_string();
        assert!(
            !name.ends_with(".log") && !name.ends_with("state.json"),
            "a secret in {name}"
        );
        assert_private(path);
    }
}

fn kill_and_start_a_server(lab: &Lab, dash: SocketAddr) {
    let server = sa("127.20.2.10:8500");
    let before = lab.pids();
    lab.ok(&["kill", "secondary-server"]);
    eventually(
        "the killed server's API to stop answering",
        Duration::from_secs(5),
        || (get(server, "/v1/status/ready").0 == 0).then_some(()),
    );
    let started = std::time::Instant::now();
    lab.ok(&["start", "secondary-server"]);
    let (status, body) = get(server, "/v1/status/ready");
    assert_eq!(
        status,
        200,
        "{body}\n{}",
        lab.log_tail("secondary-server", "server")
    );
    let after = lab.pids();
    let restarted: Vec<u32> = after
        .iter()
        .filter(|p| !before.contains(p))
        .copied()
        .collect();
    assert_eq!(restarted.len(), 1, "{before:?} -> {after:?}");
    let services = eventually(
        "dc2's catalog to answer through the restarted server",
        Duration::from_secs(15),
        || {
            let (code, services) = lab.cli(&["catalog", "services", "--dc", "dc2"]);
            (code == Some(0) && services.lines().any(|l| l == "counting")).then_some(services)
        },
    );
    assert!(services.contains("mesh-gateway"), "{services}");
    eprintln!(
        "kill/start secondary-server: ready and dc2's catalog answering after {:?}",
        started.elapsed()
    );
    assert_counts_increase(dash, "secondary-services");
}

/// After `lab up`, the commands for humans work from the lab directory with no address flag:
/// the agents and servers the lab recorded answer (docs/lab.md, "The CLI in a lab").
fn cli_finds_the_lab(lab: &Lab) {
    let (code, members) = lab.cli(&["members"]);
    assert_eq!(code, Some(0), "{members}");
    for node in [
        "primary-server",
        "primary-gateway",
        "primary-services",
        "secondary-server",
        "secondary-gateway",
        "secondary-services",
    ] {
        let line = members.lines().find(|l| l.starts_with(node));
        assert!(
            line.is_some_and(|l| l.contains("alive")),
            "{node} not alive in:\n{members}"
        );
    }
    let (code, services) = lab.cli(&["catalog", "services", "--dc", "dc2"]);
    assert_eq!(code, Some(0), "{services}");
    let names: Vec<&str> = services.lines().collect();
    for want in ["counting", "counting-sidecar-proxy", "mesh-gateway"] {
        assert!(names.contains(&want), "no {want} in:\n{services}");
    }
    assert!(
        !names.contains(&"dashboard"),
        "dc1's service in dc2:\n{services}"
    );
    // The lab allowed the upstream its topology declares (ACLs' default deny closes the rest).
    let (code, list) = lab.cli(&["intention", "list"]);
    assert_eq!(code, Some(0), "{list}");
    assert!(
        list.contains("dashboard  allow   counting     declared upstream (strait lab)"),
        "{list}"
    );
    // The doctor asks the agent of the VM running the service, and that agent where the
    // sidecar's admin endpoint is (the sidecar registered it).
    let lab_dir = lab.path().to_str().unwrap();
    let d = common::doctor::until(
        "the doctor to pass from the lab directory",
        || {
            common::doctor::doctor_env(
                &["--service", "dashboard", "--upstream", "counting"],
                &[("STRAIT_LAB_DIR", lab_dir)],
            )
        },
        common::doctor::healthy,
    );
    for want in [
        "✓ local agent: node primary-services in dc1 at 127.20.1.12:8500",
        "admin 127.20.1.12:19000/ready is 200 (registered with the agent by dashboard-sidecar-proxy)",
    ] {
        assert!(d.out.contains(want), "no {want:?} in:\n{}", d.out);
    }
}

#[test]
fn cli_without_lab_or_agent_says_what_it_tried() {
    let empty = tempfile::tempdir().unwrap();
    let run = |args: &[&str], lab_dir: Option<&Path>| {
        let mut cmd = Command::new(common::strait_bin());
        cmd.args(args)
            .current_dir(empty.path())
            .env_remove("STRAIT_HTTP_ADDR")
            .env_remove("STRAIT_SERVER_HTTP_ADDR")
            .env_remove("STRAIT_LAB_DIR");
        if let Some(dir) = lab_dir {
            cmd.env("STRAIT_LAB_DIR", dir);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    // Outside a lab: the local agent on 127.0.0.1:8500 (none runs on a test machine), and the
    // error lists every place looked at.
    let lab_dir = empty.path().join(".strait-lab");
    for args in [&["members"][..], &["catalog", "services", "--dc", "dc2"]] {
        let err = run(args, None);
        for tried in [
            "127.0.0.1:8500",
            "no --http-addr, no STRAIT_HTTP_ADDR",
            &format!("no lab in {}", lab_dir.display()),
            "STRAIT_LAB_DIR not set",
        ] {
            assert!(err.contains(tried), "{args:?}: no {tried:?} in: {err}");
        }
    }
    let err = run(&["intention", "list"], None);
    assert!(
        err.contains("127.0.0.1:8500") && err.contains("no STRAIT_SERVER_HTTP_ADDR"),
        "{err}"
    );
    let err = run(&["doctor"], None);
    assert!(
        err.contains("hint: is `strait agent` running with http_addr 127.0.0.1:8500? (the default: no --http-addr"),
        "{err}"
    );
    // A STRAIT_LAB_DIR without a lab is an error, not a fallback to some other agent.
    let err = run(&["members"], Some(empty.path()));
    assert!(
        err.contains(&format!(
            "no lab in {} (STRAIT_LAB_DIR)",
            empty.path().display()
        )),
        "{err}"
    );
}

const THREE_DCS: &str = r#"
[[datacenter]]
name = "dc1"
primary = true

[[datacenter]]
name = "dc2"

[[datacenter]]
name = "dc3"

[[vm]]
name = "dc1-server"
dc = "dc1"
address = "127.21.1.10"
roles = ["server"]

[[vm]]
name = "dc1-gateway"
dc = "dc1"
address = "127.21.1.11"
roles = ["gateway"]

[[vm]]
name = "dc1-web"
dc = "dc1"
address = "127.21.1.12"
roles = ["services"]

[[vm.service]]
name = "dash-remote"
kind = "dashboard"
port = 9002

[[vm.service.upstream]]
destination = "counting-remote"
datacenter = "dc3"
local_bind_port = 5000
mesh_gateway = "remote"

[[vm.service]]
name = "dash-local"
kind = "dashboard"
port = 9004

[[vm.service.upstream]]
destination = "counting-local"
datacenter = "dc3"
local_bind_port = 5001
mesh_gateway = "local"

[[vm]]
name = "dc2-server"
dc = "dc2"
address = "127.22.1.10"
roles = ["server"]

[[vm]]
name = "dc2-gateway"
dc = "dc2"
address = "127.22.1.11"
roles = ["gateway"]

[[vm]]
name = "dc3-server"
dc = "dc3"
address = "127.23.1.10"
roles = ["server"]

[[vm]]
name = "dc3-gateway"
dc = "dc3"
address = "127.23.1.11"
roles = ["gateway"]

[[vm]]
name = "dc3-app"
dc = "dc3"
address = "127.23.1.12"
roles = ["services"]

[[vm.service]]
name = "counting-remote"
kind = "counting"
port = 9003

[[vm.service]]
name = "counting-local"
kind = "counting"
port = 9005
"#;

#[test]
fn three_datacenters_remote_and_local_gateway_modes() {
    let topo_dir = tempfile::tempdir().unwrap();
    let topo = Lab::topology_file(topo_dir.path(), "three.toml", THREE_DCS);
    let mut lab = Lab::up(&["--topology", topo.to_str().unwrap()]);

    let gw1 = sa("127.21.1.11:19000");
    let gw3 = sa("127.23.1.11:19000");
    let via_gw1 = ["dc=\"dc3\"", "sni=\"*\""];
    let remote_sni = ["sni=\"counting-remote.default.dc3.internal."];
    let local_sni = ["sni=\"counting-local.default.dc3.internal."];
    let routed = |admin, labels: &[&str]| metric(admin, "strait_gateway_routed_total", labels);

    // remote mode: dc1's sidecar goes straight to dc3's gateway; dc1's gateway is not used.
    // Each request is a stream of a tunnel (a TCP connection through the gateways, routed
    // by SNI); a tunnel takes new streams for 5 s, so a few requests may share one.
    let remote_app = sa("127.21.1.12:9002");
    let (remote_admin, local_admin) = (sa("127.21.1.12:19000"), sa("127.21.1.12:19001"));
    let before = (
        routed(gw1, &via_gw1),
        tunnel_streams(remote_admin, "outbound"),
    );
    assert_counts_increase(remote_app, "dc3-app");
    let after = (
        routed(gw1, &via_gw1),
        tunnel_streams(remote_admin, "outbound"),
    );
    assert_eq!(after.0, before.0, "remote mode went through dc1's gateway");
    assert!(after.1 >= before.1 + 3, "streams: {before:?} -> {after:?}");
    assert!(
        routed(gw3, &remote_sni) >= 1,
        "dc3 gateway routed no tunnel"
    );

    // local mode: through dc1's gateway, then dc3's.
    let before = (
        routed(gw1, &via_gw1),
        tunnel_streams(local_admin, "outbound"),
    );
    assert_counts_increase(sa("127.21.1.12:9004"), "dc3-app");
    let after = (
        routed(gw1, &via_gw1),
        tunnel_streams(local_admin, "outbound"),
    );
    assert!(after.0 >= 1, "dc1 gateway: {before:?} -> {after:?}");
    assert!(after.1 >= before.1 + 3, "streams: {before:?} -> {after:?}");
    assert!(routed(gw3, &local_sni) >= 1, "dc3 gateway routed no tunnel");

    // dc2 federates too: its catalog is visible from dc1.
    let (status, body) = lab.http(
        "GET",
        sa("127.21.1.12:8500"),
        "/v1/catalog/nodes?dc=dc2",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("dc2-gateway"), "{body}");

    let pids = lab.pids();
    lab.down();
    eventually(
        "every lab process to be gone",
        Duration::from_secs(10),
        || pids.iter().all(|&p| !alive(p)).then_some(()),
    );
}

#[test]
fn invalid_topology_names_line_and_field_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topo = Lab::topology_file(
        dir.path(),
        "bad.toml",
        "[[datacenter]]\nname = \"dc1\"\nprimary = true\n\n[[vm]]\nname = \"a\"\ndc = \"dc1\"\naddress = \"10.0.0.1\"\nroles = [\"server\"]\n",
    );
    let lab_dir = dir.path().join("lab");
    let out = common::lab::run_lab(&lab_dir, &["up", "--topology", topo.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:8"), "no file:line in: {err}");
    assert!(err.contains("address"), "no field in: {err}");
    assert!(!lab_dir.join("state.json").exists());
}

/// Connections a sidecar carried as tunnel streams (`direction`: inbound or outbound).
fn tunnel_streams(admin: SocketAddr, direction: &str) -> u64 {
    let labels = [
        format!("direction=\"{direction}\""),
        "result=\"opened\"".to_string(),
    ];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    metric(admin, "strait_sidecar_tunnel_streams_total", &labels)
}
