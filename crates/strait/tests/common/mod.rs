//! Test harness: starts real `strait` processes on loopback addresses, waits for readiness by
//! polling (no fixed sleeps), and stops everything on drop. Each test uses its own
//! 127.<net>.x.y addresses so tests can run in parallel.
#![allow(dead_code)]

pub mod browser;
pub mod cluster;
pub mod doctor;
pub mod lab;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn strait_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strait")
}

/// A running `strait` process; SIGTERM then SIGKILL on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn start(dir: &Path, name: &str, args: &[&str]) -> Proc {
        Self::start_env(dir, name, args, &[])
    }

    pub fn start_env(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(strait_bin())
            .args(args)
            .envs(env.iter().copied())
            .env("STRAIT_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit on its own; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- log of {} ----\n{}",
                self.name,
                tail(&self.log_text(), 60)
            );
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `strait ARGS --http-addr SERVER` (no lab, no token from the environment) with `env`
/// set: (success, stdout + stderr).
pub fn strait_at(server: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(strait_bin())
        .args(args)
        .args(["--http-addr", &server.to_string()])
        .env_remove("STRAIT_LAB_DIR")
        .env_remove("STRAIT_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A minimal blocking HTTP/1.1 client for the tests: (status, body).
pub fn http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    request(method, addr, path, body).map(|r| (r.status, r.body))
}

/// An answer with its headers (names in lower case).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// [`http`], with the answer's headers.
pub fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Reply> {
    request_with(method, addr, path, body, &[])
}

/// [`request`] with extra request headers (`X-Consul-Token: …`).
pub fn request_with(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `X-Consul-Index` of GET `path` (the catalog's index for blocking queries).
pub fn consul_index(addr: SocketAddr, path: &str) -> u64 {
    let reply = request("GET", addr, path, None).unwrap();
    reply
        .header("x-consul-index")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-Consul-Index in:\n{:?}\n{}", reply.headers, reply.body))
}

/// Sum of the values of the metric lines that start with `name` and contain every label in
/// `labels` (exact `key="value"` text).
pub fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> u64 {
    let (status, text) = get(admin, "/metrics");
    assert_eq!(status, 200, "GET http://{admin}/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http("GET", addr, path, None).unwrap_or((0, String::new()))
}

/// Polls until `f` returns Some, or panics with `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until GET `path` on `addr` answers 200.
pub fn wait_ready(addr: SocketAddr, path: &str, procs: &[&Proc]) {
    let what = format!("http://{addr}{path} to answer 200");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get(addr, path).0 == 200 {
            return;
        }
        if Instant::now() > deadline {
            for p in procs {
                eprintln!("---- log of {} ----\n{}", p.name, tail(&p.log_text(), 40));
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn write(path: &Path, text: &str) -> PathBuf {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

pub const FED_TOKEN: &str = "federation-token-0123456789";

pub fn join_token(dc: &str) -> String {
    format!("join-token-{dc}-0123456789")
}

/// Writes a server config for `dc` at `ip` (https :8300, http :8500).
pub fn server_config(dir: &Path, dc: &str, ip: &str, primary_gateways: &[&str]) -> PathBuf {
    let pg: Vec<String> = primary_gateways
        .iter()
        .map(|g| format!("\"{g}\""))
        .collect();
    let primary = if primary_gateways.is_empty() {
        dc
    } else {
        "dc1"
    };
    write(
        &dir.join(format!("server-{dc}.toml")),
        &format!(
            "datacenter = \"{dc}\"\nprimary_datacenter = \"{primary}\"\nnode_name = \"server-{dc}\"\ndata_dir = \"{}\"\nhttps_addr = \"{ip}:8300\"\nhttp_addr = \"{ip}:8500\"\njoin_token = \"{}\"\nfederation_token = \"{FED_TOKEN}\"\nprimary_gateways = [{}]\n",
            dir.join(format!("data-server-{dc}")).display(),
            join_token(dc),
            pg.join(", ")
        ),
    )
}

/// Writes an agent config for node `node` at `ip` whose server is at `server_ip`.
pub fn agent_config(
    dir: &Path,
    dc: &str,
    node: &str,
    ip: &str,
    server_ip: &str,
    token: &str,
) -> PathBuf {
    let svc_dir = dir.join(format!("services-{node}"));
    std::fs::create_dir_all(&svc_dir).unwrap();
    write(
        &dir.join(format!("agent-{node}.toml")),
        &format!(
            "datacenter = \"{dc}\"\nnode_name = \"{node}\"\ndata_dir = \"{}\"\nadvertise_addr = \"{ip}\"\nhttp_addr = \"{ip}:8500\"\nservers = [\"{server_ip}:8300\"]\njoin_token = \"{token}\"\nconfig_dir = \"{}\"\n",
            dir.join(format!("data-agent-{node}")).display(),
            svc_dir.display()
        ),
    )
}

pub fn services_dir(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("services-{node}"))
}

/// Starts an agent + mesh gateway on a gateway VM at `ip` (gateway on :8443, admin :19000).
pub fn start_gateway_vm(dir: &Path, dc: &str, ip: &str, server_ip: &str) -> (Proc, Proc) {
    let node = format!("gateway-{dc}");
    let cfg = agent_config(dir, dc, &node, ip, server_ip, &join_token(dc));
    let agent = Proc::start(
        dir,
        &format!("agent-{node}"),
        &["agent", "--config", cfg.to_str().unwrap()],
    );
    wait_ready(sa(&format!("{ip}:8500")), "/v1/agent/ready", &[&agent]);
    let gw = Proc::start(
        dir,
        &format!("gateway-{dc}"),
        &[
            "gateway",
            "--mesh",
            "--agent",
            &format!("{ip}:8500"),
            "--address",
            &format!("{ip}:8443"),
            "--wan-address",
            &format!("{ip}:8443"),
            "--admin",
            &format!("{ip}:19000"),
        ],
    );
    wait_ready(sa(&format!("{ip}:19000")), "/ready", &[&agent, &gw]);
    (agent, gw)
}
