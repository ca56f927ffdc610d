//! Consul compatibility as users meet it: real third-party clients (py-consul from PyPI, the
//! `consul` npm package; `scripts/test` installs both) drive a real agent, and a
//! `/etc/consul.d`-style directory of HCL and JSON service files in Consul's forms loads and
//! reloads. What strait does not implement answers 501 with a body; unknown paths 404.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SERVER: &str = "127.46.0.10";
const AGENT: &str = "127.46.0.11";
/// The HTTP app the checks probe (py-consul: HTTP check; npm: TCP check).
const APP_PORT: u16 = 9100;
/// The agent's node name.
const NODE: &str = "compat-node";

/// An HTTP app answering 200 to everything, until the test process ends.
fn serve_app(addr: &str) {
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
}

const WEB_HCL: &str = r#"
service {
  name = "web"
  port = 9100
  tags = ["v1"]
  check {
    id       = "web-http"
    http     = "http://127.46.0.11:9100/health"
    interval = "1s"
  }
  connect {
    sidecar_service {
      proxy {
        upstreams = [
          {
            destination_name = "counting"
            datacenter       = "dc2"
            local_bind_port  = 5000
            mesh_gateway     = { mode = "local" }
          }
        ]
      }
    }
  }
}
"#;

const MORE_JSON: &str = r#"{
  "services": [
    {"name": "db", "port": 5432, "check": {"ttl": "30s", "status": "passing"}},
    {"Name": "cache", "Port": 6379, "Meta": {"tier": "hot"}}
  ]
}"#;

fn agent_services() -> serde_json::Value {
    let (status, body) = get(sa(&format!("{AGENT}:8500")), "/v1/agent/services");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn sighup(p: &Proc) {
    let pid = p.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
}

/// Runs a client script; its output is shown when it fails.
fn run_client(what: &str, mut cmd: Command, procs: &[&Proc]) {
    let out = cmd
        .env("AGENT_HOST", AGENT)
        .env("APP_PORT", APP_PORT.to_string())
        .env("NODE_NAME", NODE)
        .env("SERVER_HOST", SERVER)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        for p in procs {
            eprintln!("---- log of {} ----\n{}", p.name, tail(&p.log_text(), 30));
        }
        panic!("{what} failed ({}):\n{text}", out.status);
    }
    assert!(text.contains("all steps passed"), "{what}: {text}");
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// Where scripts/test installs the `consul` npm package.
fn npm_modules() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let modules = root.join("target/compat-npm/node_modules");
    assert!(
        modules.join("consul/package.json").exists(),
        "the consul npm package is not installed in {}: run ./scripts/test, which installs it",
        modules.display()
    );
    modules
}

/// 501 with `{"error": "not supported by strait: <method> <path>"}`, or 404 naming the path.
fn assert_json_error(addr: &str, method: &str, path: &str, want: u16) {
    let (status, body) = http(method, sa(addr), path, Some("")).unwrap();
    assert_eq!(status, want, "{method} {path} on {addr}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
    let what = if want == 501 {
        "not supported by strait"
    } else {
        "no such endpoint"
    };
    assert_eq!(v["error"], format!("{what}: {method} {path}"), "{body}");
}

#[test]
fn consul_clients_and_service_files_work_against_strait() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_cfg = server_config(d, "dc1", SERVER, &[]);
    let server = Proc::start(
        d,
        "server",
        &["server", "--config", server_cfg.to_str().unwrap()],
    );
    wait_ready(
        sa(&format!("{SERVER}:8500")),
        "/v1/status/ready",
        &[&server],
    );

    // A consul.d-style directory: HCL and JSON, one and several services per file.
    let agent_cfg = agent_config(d, "dc1", NODE, AGENT, SERVER, &join_token("dc1"));
    // Consul's `ca_file`: HTTPS checks trust the mesh's root CA besides the system's.
    let root = d.join("data-server-dc1/ca/root.pem");
    let cfg = std::fs::read_to_string(&agent_cfg).unwrap();
    write(
        &agent_cfg,
        &format!("{cfg}ca_file = \"{}\"\n", root.display()),
    );
    let services = services_dir(d, NODE);
    write(&services.join("web.hcl"), WEB_HCL);
    write(&services.join("more.json"), MORE_JSON);
    serve_app(&format!("{AGENT}:{APP_PORT}"));
    let agent = Proc::start(
        d,
        "agent",
        &["agent", "--config", agent_cfg.to_str().unwrap()],
    );
    let agent_http = format!("{AGENT}:8500");
    wait_ready(sa(&agent_http), "/v1/agent/ready", &[&server, &agent]);

    let s = agent_services();
    assert_eq!(s["web"]["Tags"], serde_json::json!(["v1"]), "{s}");
    let upstream = &s["web-sidecar-proxy"]["Proxy"]["Upstreams"][0];
    assert_eq!(upstream["DestinationName"], "counting", "{s}");
    assert_eq!(upstream["MeshGateway"]["Mode"], "local", "{s}");
    assert_eq!(s["cache"]["Meta"]["tier"], "hot", "{s}");
    let (_, checks) = get(sa(&agent_http), "/v1/agent/checks");
    let checks: serde_json::Value = serde_json::from_str(&checks).unwrap();
    assert_eq!(checks["service:db"]["Status"], "passing", "{checks}");
    eventually("web's HTTP check passing", Duration::from_secs(30), || {
        let (_, c) = get(sa(&agent_http), "/v1/agent/checks");
        let c: serde_json::Value = serde_json::from_str(&c).ok()?;
        (c["web-http"]["Status"] == "passing").then_some(())
    });

    // The clients, as their users drive them.
    let mut py = Command::new("python3");
    py.arg(scripts().join("py_consul.py"));
    run_client("py-consul", py, &[&server, &agent]);
    let mut node_js = Command::new("node");
    node_js
        .arg(scripts().join("npm_consul.js"))
        .env("NODE_PATH", npm_modules());
    run_client("consul npm", node_js, &[&server, &agent]);

    // Nothing answers empty: 501 for Consul's endpoints strait lacks, 404 for the rest.
    let server_http = format!("{SERVER}:8500");
    for addr in [&agent_http, &server_http] {
        assert_json_error(addr, "GET", "/v1/kv/config/x", 501);
        assert_json_error(addr, "PUT", "/v1/session/create", 501);
        assert_json_error(addr, "PUT", "/v1/txn", 501);
        assert_json_error(addr, "GET", "/v1/operator/autopilot/configuration", 501);
        // The legacy, ID-based intentions API.
        assert_json_error(addr, "POST", "/v1/connect/intentions", 501);
        assert_json_error(addr, "GET", "/v1/connect/intentions/9b2a3c1e", 501);
        assert_json_error(addr, "GET", "/v2/nothing", 404);
    }
    assert_json_error(&agent_http, "PUT", "/v1/agent/join/10.0.0.1", 501);
    // ACL endpoints: the servers have them (Consul's 401 with ACLs off), and agents relay
    // them to their servers.
    for addr in [&server_http, &agent_http] {
        let (status, body) = get(sa(addr), "/v1/acl/tokens");
        assert_eq!(
            (status, body.contains("ACL support disabled")),
            (401, true),
            "{addr}: {body}"
        );
    }
    // Deleting a config entry that does not exist is a 404 naming it.
    let path = "/v1/config/service-defaults/nothing";
    let (status, body) = http("DELETE", sa(&server_http), path, Some("")).unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"nothing\""), "{body}");

    // A reload picks up an edit; a bad file is refused with its name and changes nothing.
    write(
        &services.join("web.hcl"),
        &WEB_HCL.replace("\"v1\"", "\"v2\""),
    );
    sighup(&agent);
    eventually(
        "the edited tags after SIGHUP",
        Duration::from_secs(30),
        || (agent_services()["web"]["Tags"] == serde_json::json!(["v2"])).then_some(()),
    );
    write(
        &services.join("bad.hcl"),
        "service {\n  name = \"bad\"\n  prot = 1\n}\n",
    );
    sighup(&agent);
    let log = eventually(
        "the refused reload in the log",
        Duration::from_secs(30),
        || {
            let log = agent.log_text();
            log.contains("bad.hcl").then_some(log)
        },
    );
    assert!(
        log.contains("`prot`") && log.contains("line 3"),
        "{}",
        tail(&log, 10)
    );
    let s = agent_services();
    assert!(s.get("bad").is_none() && s.get("web").is_some(), "{s}");
}
