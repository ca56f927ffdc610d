//! End-to-end tests of `strait lab --driver netns` (root: CI runs as root; skipped with a
//! printed reason otherwise): refused without root; the default demo (plus a caller and a
//! callee inside dc1) with a network namespace per VM. From the host, the dashboard (through
//! the veth into dc1's LAN) shows counts from dc2, also in headless Chromium; from inside
//! primary-services, TCP to secondary-services and to dc2's server fails (no route) while the
//! count through localhost:5000 works; `strait doctor` passes. Faults: `partition dc1 dc2`
//! cuts cross-DC requests while requests inside dc1 keep working and the doctor names the WAN
//! hop; `heal` recovers with no process restarted and no gateway applying a snapshot without
//! routes to dc2 on the way; dc2's server isolated for 30 s: cross-DC requests keep flowing
//! from the proxies' last snapshots and registrations made meanwhile reach the catalog after
//! `rejoin`; isolate/rejoin, pause/resume and kill/start of a services VM. Then the same lab
//! with `--proxy envoy`, the `ha` and the `failover` topologies: up, counts, down. `lab down`
//! leaves no namespace, link or process after each, also after an `up` that failed half-way
//! and after the lab's own process was killed -9 during `up`.
//!
//! One lab at a time: the netns driver's names and addresses are fixed, so everything runs
//! in one test.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::browser::{artifact, chromium_dump, element_text};
use common::lab::{alive, processes_mentioning, recorded_pids, run_lab};
use common::{eventually, get, sa};

/// The built-in demo plus, in dc1, `frontend` (a dashboard on primary-frontend) calling
/// `counting` on primary-backend: two services talking inside dc1 while dc1 is cut off.
fn demo_topology() -> String {
    strait_lab::topology::DEFAULT_TOPOLOGY.to_owned()
        + r#"
[[vm]]
name = "primary-backend"
dc = "dc1"
address = "127.20.1.13"
roles = ["services"]

[[vm.service]]
name = "counting"
kind = "counting"
port = 9003

[[vm]]
name = "primary-frontend"
dc = "dc1"
address = "127.20.1.14"
roles = ["services"]

[[vm.service]]
name = "frontend"
kind = "dashboard"
port = 9002

[[vm.service.upstream]]
destination = "counting"
datacenter = "dc1"
local_bind_port = 5000
"#
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2).map(|u| u == "0")
        })
        .unwrap_or(false)
}

fn text(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What of the lab is on the host: namespaces and links named `strait…`.
fn leftovers() -> Vec<String> {
    let namespaces = ip(&["netns", "list"]);
    let links = ip(&["-o", "link", "show"]);
    namespaces
        .lines()
        .filter(|l| l.starts_with("strait"))
        .map(|l| format!("namespace {l}"))
        .chain(
            links
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .filter(|n| n.starts_with("strait"))
                .map(|n| format!("link {n}")),
        )
        .collect()
}

/// Runs `strait lab down` on drop unless the test already did.
struct Down<'a>(&'a Path, bool);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let _ = run_lab(self.0, &["down"]);
        }
    }
}

/// `lab down`, then no namespace or link of the lab is left, and no process it recorded in
/// `state.json` (servers, agents, gateways, sidecars, apps) nor any mentioning its directory.
fn down_leaves_nothing(dir: &Path) {
    let pids = recorded_pids(dir);
    assert!(!pids.is_empty(), "no process recorded in {}", dir.display());
    let out = run_lab(dir, &["down"]);
    assert!(out.status.success(), "lab down: {}", text(&out));
    assert_eq!(leftovers(), Vec::<String>::new(), "lab down left these");
    let survivors: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(
        survivors.is_empty(),
        "recorded processes of the lab survive `down`: {survivors:?} of {pids:?}"
    );
    let procs = processes_mentioning(&dir.display().to_string());
    assert!(procs.is_empty(), "processes of the lab survive: {procs:?}");
}

/// `strait lab exec <vm> -- bash -c <script>`.
fn exec(dir: &Path, vm: &str, script: &str) -> Output {
    run_lab(dir, &["exec", vm, "--", "bash", "-c", script])
}

/// Opens a TCP connection from inside `vm`; the error text when it fails.
fn connect_from(dir: &Path, vm: &str, host: &str, port: u16) -> Result<(), String> {
    let out = exec(dir, vm, &format!("exec 3<>/dev/tcp/{host}/{port}"));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn netns_lab_end_to_end() {
    if !is_root() {
        eprintln!("skipped: the netns driver needs root (network namespaces); CI runs as root");
        return;
    }
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "another netns lab is running on this machine"
    );

    // Without root: a clear error, nothing created (setpriv: util-linux, essential in Debian).
    let nobody = tempfile::tempdir().expect("tempdir");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::strait_bin())
        .args(["lab", "up", "--driver", "netns", "--dir"])
        .arg(nobody.path().join("lab"))
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("needs root") && text(&out).contains("uid 65534"),
        "{}",
        text(&out)
    );
    assert!(!nobody.path().join("lab").exists());
    assert_eq!(leftovers(), Vec::<String>::new());

    // An `up` that fails half-way (an app that exits at once) leaves its processes up for
    // inspection; `down` then removes them and the whole network.
    let failed = tempfile::tempdir().expect("tempdir");
    let topology = strait_lab::topology::DEFAULT_TOPOLOGY.to_owned()
        + "\n[[vm.service]]\nname = \"broken\"\nkind = \"command\"\nport = 9100\ncommand = [\"false\"]\n";
    let file = common::write(&failed.path().join("broken.toml"), &topology);
    let out = run_lab(
        failed.path(),
        &[
            "up",
            "--driver",
            "netns",
            "--topology",
            &file.display().to_string(),
        ],
    );
    assert!(
        !out.status.success(),
        "up with a broken app: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("broken") && text(&out).contains("partly up"),
        "{}",
        text(&out)
    );
    assert!(!leftovers().is_empty(), "the network stays for inspection");
    down_leaves_nothing(failed.path());

    // The lab's own process killed (-9) half-way through `up`: what it created is recorded
    // in the lab directory before it is created, so `down` still removes all of it.
    let killed = tempfile::tempdir().expect("tempdir");
    let mut up = Command::new(common::strait_bin())
        .args(["lab", "--dir"])
        .arg(killed.path())
        .args(["up", "--driver", "netns"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strait lab up");
    eventually(
        "`lab up` to have started some processes",
        Duration::from_secs(60),
        || {
            let state = std::fs::read_to_string(killed.path().join("state.json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&state).ok()?;
            (v["processes"].as_array()?.len() >= 2).then_some(())
        },
    );
    up.kill().expect("kill -9 lab up");
    up.wait().expect("reaped");
    assert!(
        !leftovers().is_empty(),
        "its network was up when it was killed"
    );
    down_leaves_nothing(killed.path());

    // The demo.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guard = Down(dir.path(), false);
    let file = common::write(&dir.path().join("demo.toml"), &demo_topology());
    let out = run_lab(
        dir.path(),
        &[
            "up",
            "--driver",
            "netns",
            "--topology",
            &file.display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "lab up --driver netns: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("dashboard: http://10.213.1.12:9002\n"),
        "{stdout}"
    );

    // The host reaches the dashboard through its veth into dc1's LAN; counts come from dc2.
    let dashboard = sa("10.213.1.12:9002");
    let count = || {
        let (status, body) = get(dashboard, "/api/count");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["reachable"] == true).then(|| {
            assert_eq!(v["hostname"], "secondary-services", "{body}");
            v["count"].as_u64().unwrap_or(0)
        })
    };
    let first = eventually(
        "the dashboard to show a count",
        Duration::from_secs(20),
        count,
    );
    let second = count().expect("a second count");
    assert!(
        second > first,
        "counts do not increase: {first} then {second}"
    );

    // The page in a real browser on the host shows a count from dc2.
    let dom = chromium_dump("http://10.213.1.12:9002/", &artifact("netns-dashboard.png"));
    let shown = element_text(&dom, "count");
    assert!(
        shown.parse::<u64>().is_ok_and(|n| n > 0),
        "no count on the page: {shown:?}\n{dom}"
    );
    assert_eq!(element_text(&dom, "hostname"), "secondary-services");
    assert_eq!(element_text(&dom, "status"), "connected");

    // Inside primary-services: its own loopback has the upstream listener...
    let out = exec(
        dir.path(),
        "primary-services",
        "exec 3<>/dev/tcp/127.0.0.1/5000 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"hostname\":\"secondary-services\""),
        "{}",
        text(&out)
    );
    // ... but no route to dc2: not to secondary-services' sidecar, not to dc2's server.
    for (host, port) in [("10.213.2.12", 21000), ("10.213.2.10", 8300)] {
        let err = connect_from(dir.path(), "primary-services", host, port)
            .expect_err("dc2 must be unreachable from a dc1 services VM");
        assert!(
            err.contains("Network is unreachable"),
            "{host}:{port}: {err}"
        );
    }
    // The agent API is the VM's own 127.0.0.1:8500, as on a real VM.
    let out = run_lab(
        dir.path(),
        &["exec", "primary-services", "--", "strait", "members"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("secondary-services  10.213.2.12"),
        "{}",
        text(&out)
    );
    // On the host, the CLI finds that the agents answer inside their namespaces and runs
    // itself there.
    let out = Command::new(common::strait_bin())
        .arg("members")
        .env("STRAIT_LAB_DIR", dir.path())
        .env_remove("STRAIT_HTTP_ADDR")
        .output()
        .expect("strait members");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("secondary-services  10.213.2.12"),
        "{}",
        text(&out)
    );
    // `lab status` names the driver and every VM's addresses.
    let out = run_lab(dir.path(), &["status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("driver netns")
            && status.contains(
                "primary-gateway (dc1): 10.213.1.11, WAN 10.213.0.10, namespace strait-primary-gateway"
            ),
        "{status}"
    );
    assert!(!status.contains("exited"), "{status}");

    // The doctor, run from the host in the dashboard's VM, passes every check: the WAN
    // addresses it cannot route to from a services VM are not failures.
    let (code, report) = doctor(dir.path());
    assert_eq!(code, Some(0), "{report}");

    faults(dir.path(), dashboard);

    guard.1 = true;
    down_leaves_nothing(dir.path());

    other_labs();
}

/// `strait doctor --service dashboard --upstream counting` from the host in the lab `dir`
/// (it runs itself in primary-services' namespace): (exit code, output).
fn doctor(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(common::strait_bin())
        .args(["doctor", "--service", "dashboard", "--upstream", "counting"])
        .args(["--timeout", "3"])
        .env("STRAIT_LAB_DIR", dir)
        .env_remove("STRAIT_HTTP_ADDR")
        .output()
        .expect("strait doctor");
    (out.status.code(), text(&out))
}

/// Issue 13's item 5: the netns driver with Envoy as data plane and with the `ha` and
/// `failover` topologies: each comes up, its dashboard (on the host's side of the veth)
/// counts through both DCs' gateways, and `down` leaves nothing.
fn other_labs() {
    if Command::new("envoy").arg("--version").output().is_err() {
        panic!("envoy is not on PATH (scripts/test installs it)");
    }
    for (args, hostname) in [
        (&["--proxy", "envoy"][..], "secondary-services"),
        (&["--topology", "ha"][..], "secondary-services"),
        (&["--topology", "failover"][..], "dc2-services"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut guard = Down(dir.path(), false);
        let mut up = vec!["up", "--driver", "netns"];
        up.extend_from_slice(args);
        let started = std::time::Instant::now();
        let stdout = lab_ok(dir.path(), &up);
        let url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("dashboard: http://"))
            .unwrap_or_else(|| panic!("{args:?}: no dashboard URL in\n{stdout}"));
        let dashboard = sa(url.trim());
        let count = || {
            let (status, body) = get(dashboard, "/api/count");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status == 200 && v["reachable"] == true && v["hostname"] == hostname)
                .then(|| v["count"].as_u64().unwrap_or(0))
        };
        let first = eventually(
            &format!("{args:?}: the dashboard to count from {hostname}"),
            Duration::from_secs(20),
            count,
        );
        let second = eventually("a higher count", Duration::from_secs(10), || {
            count().filter(|c| *c > first)
        });
        eprintln!(
            "netns {args:?}: up and counting ({first} then {second}) after {:?}",
            started.elapsed()
        );
        guard.1 = true;
        down_leaves_nothing(dir.path());
    }
}

/// Whether the dashboard gets a count through the mesh right now.
fn reachable(dashboard: std::net::SocketAddr) -> bool {
    let (status, body) = get(dashboard, "/api/count");
    status == 200
        && serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["reachable"] == true)
}

fn wait_reachable(dashboard: std::net::SocketAddr, want: bool, what: &str) -> Duration {
    let started = std::time::Instant::now();
    eventually(what, Duration::from_secs(20), || {
        (reachable(dashboard) == want).then_some(())
    });
    started.elapsed()
}

fn lab_ok(dir: &Path, args: &[&str]) -> String {
    let out = run_lab(dir, args);
    assert!(out.status.success(), "lab {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `remote_dcs` of every `gateway snapshot applied` line of each gateway's log, in order.
fn applied_snapshots(dir: &Path) -> Vec<(&'static str, Vec<u64>)> {
    ["primary-gateway", "secondary-gateway"]
        .into_iter()
        .map(|vm| {
            let log = lab_ok(dir, &["logs", vm, "--process", "gateway"]);
            let remote = log
                .lines()
                .filter(|l| l.contains("gateway snapshot applied"))
                .map(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("remote_dcs="))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("no remote_dcs in {l:?}"))
                })
                .collect();
            (vm, remote)
        })
        .collect()
}

/// The dc1 pair's path: `frontend` on primary-frontend through its sidecar to `counting` on
/// primary-backend.
fn frontend_count() -> Option<u64> {
    let (status, body) = get(sa("10.213.1.14:9002"), "/api/count");
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200 && v["reachable"] == true && v["hostname"] == "primary-backend")
        .then(|| v["count"].as_u64().unwrap_or(0))
}

/// An HTTP request to the agent of `vm` (on its own 127.0.0.1:8500), from inside the VM;
/// the raw answer.
fn agent_request(dir: &Path, vm: &str, method: &str, path: &str, body: &str) -> String {
    // `lab exec` hands the command the lab's management token (the lab runs with ACLs).
    let script = format!(
        "body='{body}'; token=$(cat \"$STRAIT_HTTP_TOKEN_FILE\") && exec 3<>/dev/tcp/127.0.0.1/8500 && \
         printf '{method} {path} HTTP/1.0\\r\\nX-Consul-Token: %s\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n%s' \"$token\" \"${{#body}}\" \"$body\" >&3 && cat <&3"
    );
    let out = exec(dir, vm, &script);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each fault breaks the dashboard's path to counting in dc2; undoing it restores the path.
fn faults(dir: &Path, dashboard: std::net::SocketAddr) {
    partition_and_heal(dir, dashboard);
    isolate_the_server(dir, dashboard);

    lab_ok(dir, &["isolate", "secondary-services"]);
    wait_reachable(dashboard, false, "the isolated VM to drop off");
    lab_ok(dir, &["rejoin", "secondary-services"]);
    wait_reachable(dashboard, true, "the rejoined VM to serve again");

    lab_ok(dir, &["pause", "secondary-services"]);
    let status = lab_ok(dir, &["status"]);
    assert!(
        status
            .lines()
            .filter(|l| l.starts_with("secondary-services "))
            .all(|l| l.contains("paused")),
        "{status}"
    );
    wait_reachable(dashboard, false, "the paused VM to stop answering");
    lab_ok(dir, &["resume", "secondary-services"]);
    wait_reachable(dashboard, true, "the resumed VM to serve again");

    lab_ok(dir, &["kill", "secondary-services"]);
    let status = lab_ok(dir, &["status"]);
    let vm_lines: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("secondary-services "))
        .collect();
    assert!(
        vm_lines.len() == 3 && vm_lines.iter().all(|l| l.contains("exited")),
        "{status}"
    );
    wait_reachable(dashboard, false, "the killed VM to stop answering");
    // `lab start <vm>` brings back every process of the VM, its agent included.
    lab_ok(dir, &["start", "secondary-services"]);
    wait_reachable(dashboard, true, "the restarted VM to serve again");
}

/// `partition dc1 dc2`: cross-DC requests fail, the dc1 pair keeps working, the doctor names
/// the WAN hop. `heal`: cross-DC requests recover within 5 s, no process restarted, and no
/// gateway applied a snapshot without routes to the other DC meanwhile.
fn partition_and_heal(dir: &Path, dashboard: std::net::SocketAddr) {
    let pids = recorded_pids(dir);
    let before = applied_snapshots(dir);
    for (vm, remote) in &before {
        assert_eq!(
            remote.last(),
            Some(&1),
            "{vm}'s last applied snapshot: routes to the other DC? {remote:?}"
        );
    }
    eventually(
        "the dc1 pair to count",
        Duration::from_secs(20),
        frontend_count,
    );

    lab_ok(dir, &["partition", "dc1", "dc2"]);
    wait_reachable(dashboard, false, "the partition to cut dc1 from dc2");
    // Inside dc1 the network is whole, and requests between its services keep working.
    connect_from(dir, "primary-services", "10.213.1.11", 8443).expect("dc1's LAN still works");
    connect_from(dir, "primary-services", "10.213.1.10", 8300).expect("dc1's LAN still works");
    // For 30 s (long enough for anything that expires a DC's routes to show), requests
    // between two services of dc1 keep working.
    let started = std::time::Instant::now();
    let (mut requests, mut failures) = (0u32, 0u32);
    while started.elapsed() < Duration::from_secs(30) {
        requests += 1;
        if frontend_count().is_none() {
            failures += 1;
        }
    }
    eprintln!(
        "partition for 30 s: {requests} requests inside dc1 (frontend -> counting), {failures} failures"
    );
    assert_eq!(failures, 0, "of {requests} requests inside dc1");
    // The doctor names the WAN hop.
    let (code, report) = doctor(dir);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains(
            "✗ federation dc2 servers: dc1 gateway cannot reach dc2's gateways at 10.213.0.11:8443"
        ) && report.contains("hint: the WAN hop dc1 gateway -> dc2 gateway is broken"),
        "{report}"
    );
    assert!(
        report.contains("✓ local gateway: 10.213.1.11:8443"),
        "{report}"
    );
    let status = lab_ok(dir, &["status"]);
    assert!(
        status.contains("fault in force: partition dc1 dc2"),
        "{status}"
    );

    let heal = std::time::Instant::now();
    lab_ok(dir, &["heal", "dc1", "dc2"]);
    wait_reachable(dashboard, true, "cross-DC traffic to recover after heal");
    let healed = heal.elapsed();
    eprintln!("heal: the dashboard reached counting in dc2 again after {healed:?}");
    assert!(
        healed <= Duration::from_secs(5),
        "recovery took {healed:?} (goal: at most 5 s)"
    );
    assert!(!lab_ok(dir, &["status"]).contains("fault in force"));
    assert_eq!(recorded_pids(dir), pids, "a process was restarted");
    assert!(pids.iter().all(|p| alive(*p)), "a process died: {pids:?}");
    let mut applied = 0;
    for ((vm, before), (_, after)) in before.iter().zip(applied_snapshots(dir)) {
        let meanwhile = &after[before.len()..];
        assert!(
            meanwhile.iter().all(|remote| *remote == 1),
            "{vm} applied a snapshot without routes to the other DC during partition/heal: remote_dcs {meanwhile:?}"
        );
        applied += meanwhile.len();
    }
    eprintln!("partition/heal: the gateways applied {applied} snapshot(s) meanwhile, all with remote_dcs=1");
}

/// dc2's server isolated for 30 s: cross-DC requests keep flowing from the proxies' last
/// snapshots (0 failures); a service registered meanwhile on dc2's agent (which has no route
/// to its server) is not in dc2's catalog until `rejoin`, and is soon after.
fn isolate_the_server(dir: &Path, dashboard: std::net::SocketAddr) {
    // The agent resolved the operator's token while its server answered; cut off, it keeps
    // using what it resolved (ACLs' down_policy = "extend-cache", the lab's setting).
    let answer = agent_request(dir, "secondary-services", "GET", "/v1/agent/self", "");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    lab_ok(dir, &["isolate", "secondary-server"]);
    let answer = agent_request(
        dir,
        "secondary-services",
        "PUT",
        "/v1/agent/service/register",
        r#"{"Name":"registered-while-isolated","Port":7000}"#,
    );
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let started = std::time::Instant::now();
    let (mut requests, mut failures) = (0u32, 0u32);
    while started.elapsed() < Duration::from_secs(30) {
        requests += 1;
        if !reachable(dashboard) {
            failures += 1;
        }
    }
    eprintln!(
        "isolate secondary-server for 30 s: {requests} cross-DC requests, {failures} failures"
    );
    assert_eq!(failures, 0, "of {requests} cross-DC requests");
    assert!(requests > 30, "only {requests} requests in 30 s");
    // The isolation is real: after 30 s the agent still cannot reach its server, and dc2's
    // catalog does not have the registration.
    let err = connect_from(dir, "secondary-services", "10.213.2.10", 8300)
        .expect_err("the isolated server must be unreachable from dc2's services VM");
    assert!(err.contains("No route to host"), "10.213.2.10:8300: {err}");
    assert!(
        !registered_in_dc2(dir),
        "the registration reached dc2's catalog while its server was isolated"
    );
    lab_ok(dir, &["rejoin", "secondary-server"]);
    let catalog = || registered_in_dc2(dir).then_some(());
    let rejoined = std::time::Instant::now();
    eventually(
        "the registration made while dc2's server was isolated to reach the catalog",
        Duration::from_secs(30),
        catalog,
    );
    eprintln!(
        "rejoin: the registration reached dc2's catalog after {:?}",
        rejoined.elapsed()
    );
}

/// Whether `strait catalog services --dc dc2`, run from the host in the lab `dir`, lists
/// `registered-while-isolated`.
fn registered_in_dc2(dir: &Path) -> bool {
    let out = Command::new(common::strait_bin())
        .args(["catalog", "services", "--dc", "dc2"])
        .env("STRAIT_LAB_DIR", dir)
        .env_remove("STRAIT_HTTP_ADDR")
        .output()
        .expect("strait catalog services");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "registered-while-isolated")
}
