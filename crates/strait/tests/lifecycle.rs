//! The one role lifecycle, seen from outside: exit statuses (64 usage, 78 bad configuration
//! before anything is created or bound, 1 runtime failure, 0 clean stop), a panicking
//! background task stopping the role with its name, and SIGTERM ending each role within its
//! grace period while it is busy (a blocking query, a join retry, a drain).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `strait args` to its end: (exit status, stderr).
fn strait(args: &[&str]) -> (i32, String) {
    let out = Command::new(strait_bin())
        .args(args)
        .output()
        .expect("run strait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().expect("exited, not killed"), stderr)
}

fn sigterm(p: &Proc) {
    let ok = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -TERM {}", p.name);
}

/// SIGTERM, then the exit status and how long the stop took.
fn stop_timed(p: &mut Proc, within: Duration) -> (i32, Duration) {
    let start = Instant::now();
    sigterm(p);
    let status = p
        .wait_exit(within + Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{} still running; log:\n{}", p.name, p.log_text()));
    (status.code().expect("exited, not killed"), start.elapsed())
}

#[test]
fn usage_and_configuration_errors_exit_64_and_78_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let (code, err) = strait(&["server", "--config"]);
    assert_eq!(code, 64, "{err}");
    let (code, err) = strait(&["gateway", "--mesh", "--grace", "5 parsecs"]);
    assert_eq!(code, 64, "{err}");
    let (code, err) = strait(&["proxy", "--sidecar-for", "web", "--admin", "0.0.0.0:19000"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("loopback"), "{err}");
    // A snapshot file that is not there (or not a snapshot) is a bad configuration.
    let missing = d.join("missing.json");
    let (code, err) = strait(&[
        "gateway",
        "--mesh",
        "--address",
        "127.44.0.12:8443",
        "--snapshot-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("missing.json"), "{err}");
    let (code, out) = strait(&["--help"]);
    assert_eq!(code, 0, "{out}");

    // A server config with a typo: 78, naming the field; no data_dir, nothing bound.
    let cfg = server_config(d, "dc1", "127.44.0.10", &[]);
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}bootstrap_expectt = 3\n")).unwrap();
    let (code, err) = strait(&["server", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("bootstrap_expectt"), "{err}");
    assert!(
        !d.join("data-server-dc1").exists(),
        "data_dir created: {err}"
    );

    // An agent whose service definition is invalid: 78 before its data_dir exists.
    let agent = agent_config(
        d,
        "dc1",
        "web-1",
        "127.44.0.11",
        "127.44.0.10",
        &join_token("dc1"),
    );
    write(
        &services_dir(d, "web-1").join("web.json"),
        r#"{"Name": "web", "Port": 9100, "Chek": {}}"#,
    );
    let (code, err) = strait(&["agent", "--config", agent.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("web.json") && err.contains("Chek"), "{err}");
    assert!(
        !d.join("data-agent-web-1").exists(),
        "data_dir created: {err}"
    );

    // A short join token is refused alike by servers and agents.
    let short = std::fs::read_to_string(&agent)
        .unwrap()
        .replace(&join_token("dc1"), "short-token");
    std::fs::write(&agent, short).unwrap();
    let (code, err) = strait(&["agent", "--config", agent.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("join_token") && !err.contains("short-token"),
        "{err}"
    );

    // A valid config whose port is taken: a runtime failure (1), and still no catalog.redb.
    std::fs::write(&cfg, &good).unwrap();
    let taken = std::net::TcpListener::bind("127.44.0.10:8300").unwrap();
    let (code, err) = strait(&["server", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("https_addr") && err.contains("127.44.0.10:8300"),
        "{err}"
    );
    assert!(
        !d.join("data-server-dc1").exists(),
        "data_dir created: {err}"
    );
    drop(taken);
}

/// A server, an agent that is still trying to join, an agent whose task panics, and a
/// gateway with a connection open: each ends as it should.
#[test]
fn sigterm_ends_busy_roles_with_0_and_a_dying_task_ends_the_role_with_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server_ip, gw_ip, lonely_ip, doomed_ip) =
        ("127.45.0.10", "127.45.0.11", "127.45.0.12", "127.45.0.13");

    // An agent whose servers are not up yet keeps retrying; SIGTERM ends it with 0.
    let lonely_cfg = agent_config(d, "dc1", "lonely", lonely_ip, server_ip, &join_token("dc1"));
    let mut lonely = Proc::start(
        d,
        "lonely",
        &["agent", "--config", lonely_cfg.to_str().unwrap()],
    );
    eventually(
        "the agent retrying its join",
        Duration::from_secs(30),
        || lonely.log_text().contains("cannot join yet").then_some(()),
    );
    let (code, took) = stop_timed(&mut lonely, Duration::from_secs(10));
    assert_eq!(code, 0, "{}", lonely.log_text());
    assert!(took < Duration::from_secs(10), "{took:?}");

    let cfg = server_config(d, "dc1", server_ip, &[]);
    let mut server = Proc::start(d, "server", &["server", "--config", cfg.to_str().unwrap()]);
    let server_http = sa(&format!("{server_ip}:8500"));
    wait_ready(server_http, "/v1/status/ready", &[&server]);

    // A background task that panics stops the agent with 1 and its name in the log.
    let doomed_cfg = agent_config(d, "dc1", "doomed", doomed_ip, server_ip, &join_token("dc1"));
    let mut doomed = Proc::start_env(
        d,
        "doomed",
        &["agent", "--config", doomed_cfg.to_str().unwrap()],
        &[("STRAIT_TEST_PANIC_TASK", "anti-entropy")],
    );
    let status = doomed
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running:\n{}", doomed.log_text()));
    let log = doomed.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("task `anti-entropy` panicked"), "{log}");

    // A gateway draining an open connection stops within its --grace (1 s) with 0.
    let (mut gw_agent, _) = start_gateway_vm_agent(d, gw_ip, server_ip);
    let mut gw = Proc::start(
        d,
        "gateway",
        &[
            "gateway",
            "--mesh",
            "--agent",
            &format!("{gw_ip}:8500"),
            "--address",
            &format!("{gw_ip}:8443"),
            "--admin",
            &format!("{gw_ip}:19000"),
            "--grace",
            "1s",
        ],
    );
    wait_ready(sa(&format!("{gw_ip}:19000")), "/ready", &[&gw_agent, &gw]);
    let mut open = TcpStream::connect(sa(&format!("{gw_ip}:8443"))).unwrap();
    open.write_all(&[0x16, 0x03, 0x01]).unwrap(); // the start of a ClientHello, no more
    eventually("the connection counted", Duration::from_secs(10), || {
        let (_, stats) = get(sa(&format!("{gw_ip}:19000")), "/stats");
        stats.contains("\"connections_active\": 1").then_some(())
    });
    let (code, took) = stop_timed(&mut gw, Duration::from_secs(3));
    assert_eq!(code, 0, "{}", gw.log_text());
    assert!(took < Duration::from_secs(3), "{took:?}");

    // The server with a blocking query in flight (wait=5m) stops at once with 0, and the
    // query's connection is closed, not left hanging.
    let (_, _) = get(server_http, "/v1/catalog/services");
    let index = consul_index(server_http, "/v1/catalog/services");
    let mut query = TcpStream::connect(server_http).unwrap();
    write!(
        query,
        "GET /v1/catalog/services?index={index}&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    query
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The query is parked once the server has read it: give it a request to compare with.
    eventually(
        "the server answering beside the parked query",
        Duration::from_secs(10),
        || (get(server_http, "/v1/status/leader").0 == 200).then_some(()),
    );
    let (code, took) = stop_timed(&mut server, Duration::from_secs(10));
    assert_eq!(code, 0, "{}", server.log_text());
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Closed (EOF or reset), not left open until the read timeout.
    let mut rest = Vec::new();
    if let Err(e) = query.read_to_end(&mut rest) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the parked query's connection stayed open: {e}"
        );
    }
    gw_agent.stop();
}

/// The agent of a gateway VM (the gateway itself is started by the test, with its flags).
fn start_gateway_vm_agent(d: &Path, ip: &str, server_ip: &str) -> (Proc, std::path::PathBuf) {
    let cfg = agent_config(d, "dc1", "gateway-1", ip, server_ip, &join_token("dc1"));
    let agent = Proc::start(
        d,
        "gateway-agent",
        &["agent", "--config", cfg.to_str().unwrap()],
    );
    wait_ready(sa(&format!("{ip}:8500")), "/v1/agent/ready", &[&agent]);
    (agent, cfg)
}
