//! Operations: `strait version`, `strait install` (units that `systemd-analyze verify`
//! accepts, config directory, system user), the lab's units, and the sd_notify / SIGHUP
//! reload behaviour of real server and agent processes. Addresses: 127.42.0.0/16.

mod common;

use common::lab::Lab;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn strait(args: &[&str]) -> (bool, String) {
    let out = Command::new(strait_bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn version_names_the_commit() {
    let (ok, out) = strait(&["version"]);
    assert!(ok, "{out}");
    let expected = format!("strait {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(out.starts_with(&expected), "{out}");
    let commit = out
        .trim()
        .trim_start_matches(&expected)
        .trim_end_matches(')');
    let in_git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        // A short hash, maybe marked dirty.
        let hash = commit.trim_end_matches("-dirty");
        assert!(
            hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{out}"
        );
    } else {
        assert_eq!(commit, "unknown", "{out}");
    }
    let (_, long) = strait(&["--version"]);
    assert_eq!(long.trim(), out.trim());
}

/// Runs `systemd-analyze verify` on `unit` and fails on any complaint, warnings included
/// (an unknown key is only a warning with exit code 0).
fn verify(unit: &Path) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze (Debian package systemd; scripts/test installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify {}: {}\n{stderr}\n--- unit\n{}",
        unit.display(),
        out.status,
        std::fs::read_to_string(unit).unwrap_or_default()
    );
}

/// Copies the units of `dir` to `out`, with the binary path `from` replaced by `to` if given,
/// and verifies each (template units through an instance).
fn verify_units(dir: &Path, out: &Path, rebase: Option<(&str, &str)>) -> Vec<String> {
    std::fs::create_dir_all(out).unwrap();
    let mut names = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if let Some((from, to)) = rebase {
            text = text.replace(from, to);
        }
        std::fs::write(out.join(&name), text).unwrap();
        names.push(name);
    }
    for name in &names {
        verify(&out.join(name.replace("@.", "@web.")));
    }
    names.sort();
    names
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_writes_verified_units_config_dir_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let r = root.to_str().unwrap();
    for role in ["server", "gateway"] {
        let (ok, out) = strait(&["install", "--role", role, "--root", r]);
        assert!(ok, "{out}");
    }
    let (ok, out) = strait(&[
        "install",
        "--role",
        "sidecar",
        "--service",
        "web",
        "--root",
        r,
        "--binary",
        strait_bin(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("systemctl daemon-reload && systemctl enable --now strait-agent.service strait-proxy@web.service"), "{out}");

    // The binary, 0755 and identical.
    let bin = root.join("usr/local/bin/strait");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(strait_bin()).unwrap()
    );
    // Config directory: 0750, configs 0640, never overwritten.
    let etc = root.join("etc/strait.d");
    assert_eq!(mode(&etc), 0o750);
    assert_eq!(mode(&etc.join("agent.d")), 0o750);
    for f in ["server.toml", "agent.toml", "gateway.env", "proxy-web.env"] {
        assert_eq!(mode(&etc.join(f)), 0o640, "{f}");
    }
    std::fs::write(etc.join("agent.toml"), "# mine\n").unwrap();
    let (ok, out) = strait(&["install", "--role", "agent", "--root", r]);
    assert!(ok && out.contains("kept"), "{out}");
    assert_eq!(
        std::fs::read_to_string(etc.join("agent.toml")).unwrap(),
        "# mine\n"
    );
    assert!(std::fs::read_to_string(etc.join("proxy-web.env"))
        .unwrap()
        .contains("STRAIT_PROXY_ARGS=\"--admin 127.0.0.1:19001\""));

    // Every unit passes systemd-analyze verify, run against the installed binary.
    let units = verify_units(
        &root.join("etc/systemd/system"),
        &dir.path().join("verify"),
        Some(("/usr/local/bin/strait", bin.to_str().unwrap())),
    );
    assert_eq!(
        units,
        [
            "strait-agent.service",
            "strait-gateway.service",
            "strait-proxy@.service",
            "strait-server.service"
        ]
    );

    // The system user, as systemd-sysusers creates it at boot from the installed file.
    let status = Command::new("systemd-sysusers")
        .arg("--root")
        .arg(&root)
        .status()
        .expect("systemd-sysusers");
    assert!(status.success());
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("strait:") && l.ends_with(":/var/lib/strait:/usr/sbin/nologin")),
        "{passwd}"
    );

    // Bad arguments are refused with the flag named.
    let (ok, out) = strait(&[
        "install",
        "--role",
        "agent",
        "--service",
        "web",
        "--root",
        r,
    ]);
    assert!(!ok && out.contains("--service"), "{out}");
    let (ok, out) = strait(&[
        "install",
        "--role",
        "sidecar",
        "--service",
        "a/b",
        "--root",
        r,
    ]);
    assert!(!ok && out.contains("--service"), "{out}");
}

/// The words of `ExecStart=` with `%i` and the environment file's variable expanded, as
/// systemd would run them.
fn expanded_exec(unit: &str, instance: &str, env: Option<&str>) -> Vec<String> {
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let vars: Vec<(String, String)> = env
        .unwrap_or("")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("${k}"), v.trim_matches('"').to_owned()))
        .collect();
    let mut words = vec![];
    for w in exec.split(' ') {
        match vars.iter().find(|(k, _)| k == w) {
            Some((_, v)) => words.extend(v.split(' ').map(String::from)),
            None => words.push(w.replace("%i", instance)),
        }
    }
    words
}

const TOPOLOGY: &str = r#"
[[datacenter]]
name = "dc1"
primary = true

[[vm]]
name = "ops-server"
dc = "dc1"
address = "127.42.1.10"
roles = ["server"]

[[vm]]
name = "ops-gateway"
dc = "dc1"
address = "127.42.1.11"
roles = ["gateway"]

[[vm]]
name = "ops-app"
dc = "dc1"
address = "127.42.1.12"
roles = ["services"]

[[vm.service]]
name = "counting"
kind = "counting"
port = 9003
"#;

#[test]
fn lab_units_run_exactly_what_the_lab_runs_and_verify() {
    let topo_dir = tempfile::tempdir().unwrap();
    let topology = Lab::topology_file(topo_dir.path(), "ops.toml", TOPOLOGY);
    let mut lab = Lab::up(&["--topology", topology.to_str().unwrap()]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.path().join("state.json")).unwrap())
            .unwrap();
    let bin = std::fs::canonicalize(strait_bin()).unwrap();
    let mut checked = vec![];
    for p in state["processes"].as_array().unwrap() {
        // Control-plane and proxy roles are strings; apps are `{"app": "<kind>"}`.
        let vm = p["vm"].as_str().unwrap();
        let role = p["role"].as_str().unwrap_or("app");
        // Every process runs the binary that launched the lab.
        let pid = p["pid"].as_u64().unwrap();
        if p["program"] == "strait" {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
            assert_eq!(exe, bin, "{vm} {role}");
        }
        let unit = match role {
            "server" => "strait-server.service",
            "agent" => "strait-agent.service",
            "gateway" => "strait-gateway.service",
            "sidecar" => "strait-proxy@.service",
            _ => continue,
        };
        let vm_dir = lab.path().join("vms").join(vm);
        let text = std::fs::read_to_string(vm_dir.join("systemd").join(unit)).unwrap();
        let instance = p["service"].as_str().unwrap_or("");
        let env = match role {
            "gateway" => Some(vm_dir.join("gateway.env")),
            "sidecar" => Some(vm_dir.join(format!("proxy-{instance}.env"))),
            _ => None,
        }
        .map(|f| std::fs::read_to_string(f).unwrap());
        let mut argv = vec![bin.display().to_string()];
        argv.extend(
            p["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned()),
        );
        assert_eq!(
            expanded_exec(&text, instance, env.as_deref()),
            argv,
            "{vm} {unit}"
        );
        checked.push(format!("{vm}/{unit}"));
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "ops-app/strait-agent.service",
            "ops-app/strait-proxy@.service",
            "ops-gateway/strait-agent.service",
            "ops-gateway/strait-gateway.service",
            "ops-server/strait-server.service"
        ]
    );
    for vm in ["ops-server", "ops-gateway", "ops-app"] {
        let units = lab.path().join("vms").join(vm).join("systemd");
        let out = topo_dir.path().join("verify").join(vm);
        verify_units(&units, &out, None);
    }
    lab.down();
}

/// A bound notify socket and the datagrams received on it.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path, name: &str) -> NotifySocket {
        let path = dir.join(format!("{name}.sock"));
        let sock = UnixDatagram::bind(&path).unwrap();
        NotifySocket { sock, path }
    }

    fn env(&self) -> (&'static str, &str) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap())
    }

    /// The next datagram, or panics after `timeout` showing `proc`'s log.
    fn next(&self, timeout: Duration, proc: &Proc) -> String {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => panic!(
                "no notification from {} within {timeout:?}: {e}\n{}",
                proc.name,
                tail(&proc.log_text(), 40)
            ),
        }
    }

    /// Asserts nothing arrives for a moment (used where a message would be a bug).
    fn nothing_pending(&self) -> Option<String> {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        let got = self
            .sock
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
        self.sock.set_nonblocking(false).unwrap();
        got
    }
}

fn hup(p: &Proc) {
    let ok = Command::new("kill")
        .args(["-HUP", &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// RELOADING=1 then READY=1 (whose status is returned).
fn reload_cycle(n: &NotifySocket, p: &Proc) -> String {
    hup(p);
    let first = n.next(Duration::from_secs(20), p);
    assert!(first.starts_with("RELOADING=1"), "{first}");
    let second = n.next(Duration::from_secs(20), p);
    assert!(second.starts_with("READY=1"), "{second}");
    second
}

fn agent_services(addr: std::net::SocketAddr) -> serde_json::Value {
    let (status, body) = get(addr, "/v1/agent/services");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn notify_ready_reload_and_stop_for_server_agent_and_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (server_ip, agent_ip) = ("127.42.0.10", "127.42.0.11");
    let server_http = sa(&format!("{server_ip}:8500"));
    let agent_http = sa(&format!("{agent_ip}:8500"));

    // Server: READY=1 only once its API answers ready.
    let server_cfg = server_config(d, "dc1", server_ip, &[]);
    let server_sock = NotifySocket::bind(d, "server");
    let mut server = Proc::start_env(
        d,
        "server",
        &["server", "--config", server_cfg.to_str().unwrap()],
        &[server_sock.env()],
    );
    let ready = server_sock.next(Duration::from_secs(60), &server);
    assert!(ready.starts_with("READY=1\nSTATUS="), "{ready}");
    assert_eq!(get(server_http, "/v1/status/ready").0, 200);

    // Agent: READY=1 only once joined and synced.
    let agent_cfg = agent_config(
        d,
        "dc1",
        "ops-node",
        agent_ip,
        server_ip,
        &join_token("dc1"),
    );
    let agent_sock = NotifySocket::bind(d, "agent");
    let mut agent = Proc::start_env(
        d,
        "agent",
        &["agent", "--config", agent_cfg.to_str().unwrap()],
        &[agent_sock.env()],
    );
    let ready = agent_sock.next(Duration::from_secs(60), &agent);
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert_eq!(get(agent_http, "/v1/agent/ready").0, 200);
    assert!(agent_services(agent_http).get("web").is_none());

    // A new definition file + SIGHUP: RELOADING=1, READY=1, and the service is registered.
    let services = services_dir(d, "ops-node");
    write(
        &services.join("web.json"),
        r#"{"ID": "web", "Name": "web", "Port": 9100}"#,
    );
    let status = reload_cycle(&agent_sock, &agent);
    assert!(status.contains("added [\"web\"]"), "{status}");
    assert_eq!(agent_services(agent_http)["web"]["Port"], 9100);

    // A bad config file: the reload is refused, the error names the field, web stays.
    let good = std::fs::read_to_string(&agent_cfg).unwrap();
    std::fs::write(&agent_cfg, format!("{good}config_dirr = \"/x\"\n")).unwrap();
    std::fs::remove_file(services.join("web.json")).unwrap();
    let status = reload_cycle(&agent_sock, &agent);
    assert!(status.contains("reload failed"), "{status}");
    assert!(status.contains("config_dirr"), "{status}");
    let log = agent.log_text();
    assert!(
        log.contains("reload failed") && log.contains("config_dirr"),
        "{log}"
    );
    assert_eq!(agent_services(agent_http)["web"]["Port"], 9100);

    // A bad definition: refused with its file and field named; nothing changes.
    std::fs::write(&agent_cfg, &good).unwrap();
    write(
        &services.join("bad.json"),
        r#"{"Name": "bad", "Port": 9101, "Chek": {}}"#,
    );
    let status = reload_cycle(&agent_sock, &agent);
    assert!(
        status.contains("bad.json") && status.contains("Chek"),
        "{status}"
    );
    assert_eq!(agent_services(agent_http)["web"]["Port"], 9100);

    // Fixed: the removed file deregisters web.
    std::fs::remove_file(services.join("bad.json")).unwrap();
    let status = reload_cycle(&agent_sock, &agent);
    assert!(status.contains("removed [\"web\"]"), "{status}");
    assert!(agent_services(agent_http).get("web").is_none());

    // Server: live fields apply, the others are reported as needing a restart.
    let text = std::fs::read_to_string(&server_cfg).unwrap();
    let changed =
        text.replace(&format!("{server_ip}:8300"), "127.42.0.10:8301") + "leaf_ttl_hours = 24\n";
    std::fs::write(&server_cfg, changed).unwrap();
    let status = reload_cycle(&server_sock, &server);
    assert!(
        status.contains("applied [\"leaf_ttl_hours\"]")
            && status.contains("need a restart [\"https_addr\"]"),
        "{status}"
    );
    let log = server.log_text();
    assert!(
        log.contains("needs a restart") && log.contains("https_addr"),
        "{log}"
    );
    std::fs::write(&server_cfg, "datacenter = 7\n").unwrap();
    let status = reload_cycle(&server_sock, &server);
    assert!(
        status.contains("reload failed") && status.contains("datacenter"),
        "{status}"
    );
    assert_eq!(get(server_http, "/v1/status/ready").0, 200);
    assert_eq!(get(agent_http, "/v1/agent/ready").0, 200);

    // A mesh gateway: READY=1 once its admin endpoint says ready; SIGHUP re-fetches.
    let admin = sa(&format!("{agent_ip}:19000"));
    let gateway_sock = NotifySocket::bind(d, "gateway");
    let mut gateway = Proc::start_env(
        d,
        "gateway",
        &[
            "gateway",
            "--mesh",
            "--agent",
            &agent_http.to_string(),
            "--address",
            &format!("{agent_ip}:8443"),
            "--admin",
            &admin.to_string(),
        ],
        &[gateway_sock.env()],
    );
    let ready = gateway_sock.next(Duration::from_secs(60), &gateway);
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert_eq!(get(admin, "/ready").0, 200);
    let status = reload_cycle(&gateway_sock, &gateway);
    assert!(status.contains("snapshot re-fetched"), "{status}");
    gateway.stop();
    let stopping = gateway_sock.next(Duration::from_secs(10), &gateway);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");

    // SIGTERM: STOPPING=1 before exiting.
    agent.stop();
    let stopping = agent_sock.next(Duration::from_secs(10), &agent);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    assert_eq!(agent_sock.nothing_pending(), None);
    server.stop();
    let stopping = server_sock.next(Duration::from_secs(10), &server);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
}
