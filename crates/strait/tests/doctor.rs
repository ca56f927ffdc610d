//! `strait doctor` against a real lab (the two-DC demo moved to 127.30.x.y): healthy, then
//! broken on purpose one hop at a time (stopped counting, stopped dc2 gateway, a counting
//! sidecar holding a certificate from another CA), each time asserting the failing hop is
//! named and the exit code says so, then restored. The same lab is scraped for Prometheus
//! metrics (server, agent, sidecar, gateway), each checked by `promtool check metrics`.
//!
//! One lab for everything: each bring-up costs seconds.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::doctor::{doctor, failed_line, healthy, until, Doctor};
use common::lab::Lab;
use common::{sa, Proc};

const DASHBOARD_AGENT: &str = "127.30.1.12:8500";
const DASHBOARD_ADMIN: &str = "127.30.1.12:19000";
const COUNTING_AGENT: &str = "127.30.2.12:8500";
const COUNTING_ADMIN: &str = "127.30.2.12:19000";

/// The built-in topology on this test's addresses (127.20 -> 127.30).
fn topology() -> String {
    let default = include_str!("../../lab/src/topology/default.toml");
    assert!(default.contains("127.20.1.12") && default.contains("127.20.2.12"));
    default
        .replace("127.20.1.", "127.30.1.")
        .replace("127.20.2.", "127.30.2.")
}

/// Doctor for the dashboard and its upstream counting (dc1 -> dc2 through both gateways);
/// the sidecar's admin address is the one it registered with the agent.
fn dashboard_doctor() -> Doctor {
    doctor(&[
        "--http-addr",
        DASHBOARD_AGENT,
        "--service",
        "dashboard",
        "--upstream",
        "counting",
    ])
}

/// With `--admin` given (the stale sidecar below registers nothing: it has no agent).
fn counting_doctor() -> Doctor {
    doctor(&[
        "--http-addr",
        COUNTING_AGENT,
        "--service",
        "counting",
        "--admin",
        COUNTING_ADMIN,
    ])
}

#[test]
fn doctor_unreachable_agent_is_the_first_and_only_check() {
    let d = doctor(&["--http-addr", "127.30.9.9:8500", "--timeout", "2"]);
    assert!(!d.ok, "{}", d.out);
    let line = failed_line(&d, "local agent").unwrap_or_else(|| panic!("{}", d.out));
    assert!(line.contains("127.30.9.9:8500"), "{line}");
    assert!(
        d.out.contains("hint: is `strait agent` running"),
        "{}",
        d.out
    );
    assert!(d.out.contains("1 of 1 checks failed"), "{}", d.out);
}

#[test]
fn doctor_names_the_broken_hop_and_metrics_pass_promtool() {
    let topo_dir = tempfile::tempdir().unwrap();
    let topo = Lab::topology_file(topo_dir.path(), "doctor.toml", &topology());
    let mut lab = Lab::up(&["--topology", topo.to_str().unwrap()]);

    // Healthy: every check passes, the handshake reached counting's exact identity.
    let d = until("a healthy lab", dashboard_doctor, healthy);
    assert!(
        d.out
            .contains("✓ sidecar ready: strait built-in proxy, admin 127.30.1.12:19000/ready is 200 (registered with the agent by dashboard-sidecar-proxy)"),
        "{}",
        d.out
    );
    assert!(d.out.contains("✓ mTLS handshake: spiffe://"), "{}", d.out);
    assert!(
        d.out.contains("/dc/dc2/svc/counting via 127.30.1.11:8443"),
        "{}",
        d.out
    );
    assert!(
        d.out.contains("✓ remote gateway: 127.30.2.11:8443"),
        "{}",
        d.out
    );
    assert!(healthy(&counting_doctor()));

    metrics_pass_promtool(&lab);

    // Stopped counting: its DC reports no healthy instance, and the exit code says so.
    lab.ok(&["stop", "counting"]);
    let d = until(
        "doctor to report counting unhealthy",
        dashboard_doctor,
        |d| failed_line(d, "counting healthy in dc2").is_some(),
    );
    assert!(!d.ok, "{}", d.out);
    assert!(d.out.contains("✓ local gateway"), "{}", d.out);
    lab.ok(&["start", "counting"]);
    until(
        "recovery after counting restarted",
        dashboard_doctor,
        healthy,
    );

    // Stopped dc2 gateway: the federation and the remote hop are named, not the local one.
    lab.ok(&["stop", "gateway", "--vm", "secondary-gateway"]);
    let d = until("doctor to report dc2's gateway", dashboard_doctor, |d| {
        failed_line(d, "federation dc2 gateways").is_some()
            && failed_line(d, "remote gateway").is_some()
    });
    assert!(!d.ok);
    assert!(d.out.contains("✓ local gateway"), "{}", d.out);
    assert!(
        failed_line(&d, "federation dc1 gateways").is_none(),
        "{}",
        d.out
    );
    lab.ok(&["start", "gateway", "--vm", "secondary-gateway"]);
    until(
        "recovery after the gateway restarted",
        dashboard_doctor,
        healthy,
    );

    wrong_ca(&lab);

    lab.down();
}

/// Counting's sidecar replaced by one following a snapshot whose leaf and roots come from
/// another CA of the same trust domain (what a sidecar started with a stale `--snapshot-file`
/// from a recreated CA would hold). Simulated: the servers never hand out two CAs.
fn wrong_ca(lab: &Lab) {
    let (status, body) = lab.http(
        "GET",
        sa(COUNTING_AGENT),
        "/v1/agent/proxy/snapshot/counting-sidecar-proxy",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let mut snap: serde_json::Value = serde_json::from_str(&body).unwrap();
    let td = snap["trust_domain"].as_str().unwrap().to_string();
    let id: strait_identity::SpiffeId =
        snap["leaf"]["spiffe_id"].as_str().unwrap().parse().unwrap();
    let other_ca = strait_identity::testing::test_ca(&td);
    let (chain, key) = strait_identity::testing::issue_identity(&other_ca, &id);
    let info = strait_identity::ca::cert_info(&chain).unwrap();
    snap["leaf"]["cert_chain_pem"] = chain.into();
    snap["leaf"]["key_pem"] = key.into();
    snap["leaf"]["serial"] = info.serial_hex.into();
    snap["leaf"]["not_after_unix"] = info.not_after_unix.into();
    snap["roots_pem"] = serde_json::json!([other_ca.cert_pem]);
    let file = lab.path().join("stale-counting-snapshot.json");
    std::fs::write(&file, serde_json::to_vec(&snap).unwrap()).unwrap();

    lab.ok(&["stop", "counting-sidecar"]);
    let mut stale = Proc::start(
        lab.path(),
        "stale-counting-sidecar",
        &[
            "proxy",
            "--snapshot-file",
            file.to_str().unwrap(),
            "--admin",
            COUNTING_ADMIN,
        ],
    );
    common::wait_ready(sa(COUNTING_ADMIN), "/ready", &[&stale]);

    // From the dashboard: the handshake refuses counting's certificate (unknown issuer).
    // (Until counting's health check sees the replacement sidecar, the gateway has no
    // healthy instance and the handshake fails for that reason instead: wait past it.)
    let d = until(
        "doctor to refuse counting's certificate",
        dashboard_doctor,
        |d| failed_line(d, "mTLS handshake").is_some_and(|l| l.contains("UnknownIssuer")),
    );
    let line = failed_line(&d, "mTLS handshake").unwrap();
    assert!(line.contains("UnknownIssuer"), "{}", d.out);
    assert!(
        d.out.contains("hint: the two sides do not share a CA"),
        "{}",
        d.out
    );
    // On counting's side: its sidecar's roots are not the servers' roots.
    let d = counting_doctor();
    assert!(!d.ok);
    let line = failed_line(&d, "roots").unwrap_or_else(|| panic!("{}", d.out));
    assert!(line.contains("but the servers hand out"), "{line}");

    stale.stop();
    lab.ok(&["start", "counting-sidecar"]);
    until(
        "recovery after the real sidecar restarted",
        dashboard_doctor,
        healthy,
    );
}

/// Scrapes a server, an agent, a sidecar and a gateway of the lab and checks each exposition
/// with `promtool check metrics` (any complaint fails).
fn metrics_pass_promtool(lab: &Lab) {
    let targets = [
        (
            "server",
            "127.30.1.10:8500",
            "/v1/agent/metrics?format=prometheus",
        ),
        ("agent", DASHBOARD_AGENT, "/v1/agent/metrics"),
        ("sidecar", DASHBOARD_ADMIN, "/metrics"),
        ("gateway", "127.30.1.11:19000", "/metrics"),
    ];
    for (what, addr, path) in targets {
        let (status, text) = lab.http("GET", sa(addr), path, None);
        assert_eq!(status, 200, "GET http://{addr}{path}: {text}");
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "promtool not found: install the Debian package `prometheus` (scripts/test does)",
            );
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let complaints = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && complaints.trim().is_empty(),
            "promtool check metrics on the {what} ({addr}{path}):\n{complaints}\n--- exposition\n{text}"
        );
    }
    let value = |addr: &str, path: &str, line_prefix: &str| -> f64 {
        let (_, text) = lab.http("GET", sa(addr), path, None);
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
            .unwrap_or_else(|| panic!("no {line_prefix} in {addr}{path}:\n{text}"))
    };
    let server = ("127.30.1.10:8500", "/v1/agent/metrics");
    assert!(
        value(
            server.0,
            server.1,
            "strait_server_leaf_certificates_signed_total "
        ) >= 1.0
    );
    assert_eq!(value(server.0, server.1, "strait_server_ready "), 1.0);
    assert_eq!(
        value(server.0, server.1, "strait_server_federation_states "),
        2.0
    );
    let agent = (DASHBOARD_AGENT, "/v1/agent/metrics");
    assert!(
        value(
            agent.0,
            agent.1,
            "strait_agent_sync_runs_total{result=\"ok\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(agent.0, agent.1, "strait_agent_leaf_certificates "),
        1.0
    );
    assert!(
        value(
            agent.0,
            agent.1,
            "strait_agent_http_requests_total{route=\"/v1/agent/proxy/snapshot/{id}\""
        ) >= 1.0
    );
}
