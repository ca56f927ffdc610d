//! End-to-end tests of `strait lab --driver netns` (root: CI runs as root; skipped with a
//! printed reason otherwise): refused without root; the default demo with a network namespace per VM. From the
//! host, the dashboard (through the veth into dc1's LAN) shows counts from dc2; from inside
//! primary-services, TCP to secondary-services and to dc2's server fails (no route) while the
//! count through localhost:5000 works; faults (partition/heal, isolate/rejoin, pause/resume,
//! kill/start) break and restore the dashboard's cross-DC path; `lab down` leaves no
//! namespace, link or process, also after an `up` that failed half-way.
//!
//! One lab at a time: the netns driver's names and addresses are fixed, so everything runs
//! in one test.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::lab::{processes_mentioning, run_lab};
use common::{eventually, get, sa};

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

fn down_leaves_nothing(dir: &Path) {
    let out = run_lab(dir, &["down"]);
    assert!(out.status.success(), "lab down: {}", text(&out));
    assert_eq!(leftovers(), Vec::<String>::new(), "lab down left these");
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

    // The demo.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guard = Down(dir.path(), false);
    let out = run_lab(dir.path(), &["up", "--driver", "netns"]);
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

    faults(dir.path(), dashboard);

    guard.1 = true;
    down_leaves_nothing(dir.path());
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

/// Each fault breaks the dashboard's path to counting in dc2; undoing it restores the path.
fn faults(dir: &Path, dashboard: std::net::SocketAddr) {
    lab_ok(dir, &["partition", "dc1", "dc2"]);
    wait_reachable(dashboard, false, "the partition to cut dc1 from dc2");
    // Inside dc1 the network is whole.
    connect_from(dir, "primary-services", "10.213.1.11", 8443).expect("dc1's LAN still works");
    connect_from(dir, "primary-services", "10.213.1.10", 8300).expect("dc1's LAN still works");
    let status = lab_ok(dir, &["status"]);
    assert!(
        status.contains("fault in force: partition dc1 dc2"),
        "{status}"
    );
    lab_ok(dir, &["heal", "dc1", "dc2"]);
    let healed = wait_reachable(dashboard, true, "cross-DC traffic to recover after heal");
    eprintln!("heal: the dashboard reached counting again after {healed:?}");
    assert!(!lab_ok(dir, &["status"]).contains("fault in force"));

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
