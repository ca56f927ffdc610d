//! ACLs enforced on the agent's local API (127.83.0.0/24): one server and two agents with
//! `[acl] enabled = true, default_policy = "deny"`, the second with a `tokens.default`.
//! Bootstrap with the real CLI, then: no token cannot read a leaf, register or deregister; a
//! service-identity token for `web` registers web (and its sidecar) and gets web's leaf, and
//! is refused for `counting` with Consul's message; an unknown token is "ACL not found";
//! relayed reads carry the caller's token to the server (which filters by it); the agent's
//! default token stands in for a missing one; py-consul and the npm client with a token;
//! Envoy's ADS stream needs web's token to get web's sidecar config; a deleted token stops
//! working within the agent's `token_ttl`; no secret is logged; with the server down,
//! `extend-cache` keeps the tokens the agent resolved.

use crate::common;

use crate::helpers::{acl, bootstrap, call, field};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER: &str = "127.83.0.10";
/// Agent A: no default token (a request without one is the anonymous token's).
const AGENT_A: &str = "127.83.0.11";
/// Agent B: `acl.tokens.default` is [`DEFAULT_SECRET`].
const AGENT_B: &str = "127.83.0.12";
const DEFAULT_SECRET: &str = "5d1c0a8e-3b7f-4e2a-9c6d-0f8e7a6b5c4d";
/// Agent A's ADS address, for Envoy.
const GRPC_A: &str = "127.83.0.11:8502";
const BOGUS: &str = "6a1f0c2e-9d4b-4e7a-8c3f-2b5d7e9a1c4f";
const TOKEN_TTL: Duration = Duration::from_secs(1);

/// py-consul (`token=`) and the `consul` npm package (`defaults: {token}`) as their users
/// pass a token: web's registers web and gets its leaf, is refused counting; none is refused.
const PY_CONSUL: &str = r#"
import os, sys, consul
host, token = os.environ["AGENT_HOST"], os.environ["WEB_TOKEN"]
c = consul.Consul(host=host, port=8500, token=token)
c.agent.service.register("web", service_id="web-py", port=9092)
leaf = c.agent.connect.ca.leaf("web")
assert "PRIVATE KEY" in leaf["PrivateKeyPEM"], leaf
try:
    c.agent.service.register("counting", service_id="counting-py", port=9003)
    sys.exit("py-consul: counting registered with web's token")
except consul.ACLPermissionDenied as e:
    assert "lacks permission 'service:write' on \"counting\"" in str(e), str(e)
try:
    consul.Consul(host=host, port=8500).agent.service.register("web", service_id="web-anon", port=9093)
    sys.exit("py-consul: registered without a token")
except consul.ACLPermissionDenied as e:
    assert "anonymous token" in str(e), str(e)
assert c.agent.service.deregister("web-py")
"#;

const NPM_CONSUL: &str = r#"
const assert = require("node:assert/strict");
const Consul = require("consul");
const host = process.env.AGENT_HOST;
const web = new Consul({ host, port: 8500, defaults: { token: process.env.WEB_TOKEN } });
const refused = (p, text) => p.then(
  () => { throw new Error("accepted: " + text); },
  (e) => { assert.equal(e.response && e.response.statusCode, 403, String(e)); assert.match(String(e.response.body), text); });
(async () => {
  await web.agent.service.register({ name: "web", id: "web-npm", port: 9094 });
  await refused(web.agent.service.register({ name: "counting", id: "counting-npm", port: 9003 }),
    /lacks permission 'service:write' on "counting"/);
  await refused(new Consul({ host, port: 8500 }).agent.service.register({ name: "web", id: "web-anon", port: 9095 }),
    /anonymous token/);
  await web.agent.service.deregister("web-npm");
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// Runs a client script with web's token in `WEB_TOKEN`; it must succeed.
fn client(what: &str, mut cmd: Command, web: &str) {
    let out = cmd
        .env("AGENT_HOST", AGENT_A)
        .env("WEB_TOKEN", web)
        .env_remove("CONSUL_HTTP_TOKEN")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const ACL: &str = "[acl]\nenabled = true\ndefault_policy = \"deny\"\n";

fn append(path: &std::path::Path, text: &str) {
    let mut all = std::fs::read_to_string(path).unwrap();
    all.push_str(text);
    write(path, &all);
}

/// Asserts a 403 whose body contains `message`.
fn refused(r: &Reply, message: &str) {
    assert!(
        r.status == 403 && r.body.contains(message),
        "expected 403 with {message:?}, got {}: {}",
        r.status,
        r.body
    );
}

fn denied(accessor: &str, permission: &str, name: &str) -> String {
    format!("Permission denied: token with AccessorID '{accessor}' lacks permission '{permission}' on \"{name}\"")
}

fn anonymous(permission: &str, name: &str) -> String {
    format!("Permission denied: anonymous token lacks permission '{permission}' on \"{name}\"")
}

#[test]
fn agent_endpoints_check_the_callers_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_cfg = server_config(d, "dc1", SERVER, &[]);
    append(&server_cfg, ACL);
    let agent_acl = format!("{ACL}token_ttl = \"{}ms\"\n", TOKEN_TTL.as_millis());
    let a_cfg = agent_config(d, "dc1", "node-a", AGENT_A, SERVER, &join_token("dc1"));
    append(&a_cfg, &format!("grpc_addr = \"{GRPC_A}\"\n{agent_acl}"));
    let b_cfg = agent_config(d, "dc1", "node-b", AGENT_B, SERVER, &join_token("dc1"));
    append(
        &b_cfg,
        &format!("{agent_acl}[acl.tokens]\ndefault = \"{DEFAULT_SECRET}\"\n"),
    );
    let mut server = Proc::start(
        d,
        "server",
        &["server", "--config", server_cfg.to_str().unwrap()],
    );
    let api = sa(&format!("{SERVER}:8500"));
    let agents: Vec<Proc> = [("agent-a", &a_cfg), ("agent-b", &b_cfg)]
        .into_iter()
        .map(|(name, cfg)| Proc::start(d, name, &["agent", "--config", cfg.to_str().unwrap()]))
        .collect();
    let a = sa(&format!("{AGENT_A}:8500"));
    let b = sa(&format!("{AGENT_B}:8500"));
    let procs: Vec<&Proc> = std::iter::once(&server).chain(&agents).collect();
    wait_ready(api, "/v1/status/ready", &procs);
    wait_ready(a, "/v1/agent/ready", &procs);
    wait_ready(b, "/v1/agent/ready", &procs);

    let management = bootstrap(api);
    let out = acl(
        api,
        &management,
        &[
            "token",
            "create",
            "--description",
            "web",
            "--service-identity",
            "web",
        ],
    );
    let (web_accessor, web) = (field(&out, "AccessorID"), field(&out, "SecretID"));

    // No token: the anonymous token, which default deny allows nothing.
    let leaf = "/v1/agent/connect/ca/leaf/web";
    refused(
        &call(a, "GET", leaf, None, None),
        &anonymous("service:write", "web"),
    );
    let web_def = r#"{"Name":"web","Port":9090,"Connect":{"SidecarService":{}}}"#;
    let register = "/v1/agent/service/register";
    refused(
        &call(a, "PUT", register, Some(web_def), None),
        &anonymous("service:write", "web"),
    );
    refused(
        &call(a, "GET", "/v1/agent/self", None, None),
        &anonymous("agent:read", "node-a"),
    );
    // An unknown token: Consul's "ACL not found", on the agent and relayed to the server.
    refused(&call(a, "GET", leaf, None, Some(BOGUS)), "ACL not found");
    refused(
        &call(a, "GET", "/v1/catalog/services", None, Some(BOGUS)),
        "ACL not found",
    );

    // The ACL API through the agent (as Consul's agents relay it): the caller's token
    // decides; bootstrap only on a server's loopback API.
    let r = call(a, "GET", "/v1/acl/token/self", None, Some(&web));
    assert!(
        r.status == 200 && r.body.contains(&web_accessor),
        "{}",
        r.body
    );
    refused(
        &call(a, "GET", "/v1/acl/tokens", None, Some(&web)),
        "lacks permission 'acl:read'",
    );
    let r = call(a, "GET", "/v1/acl/tokens", None, Some(&management));
    assert!(
        r.status == 200 && r.body.contains(&web_accessor),
        "{}",
        r.body
    );
    let r = call(a, "PUT", "/v1/acl/bootstrap", None, None);
    assert_eq!(r.status, 403, "{}", r.body);

    // web's service identity: web and its sidecar, web's leaf; not counting.
    let r = call(a, "PUT", register, Some(web_def), Some(&web));
    assert_eq!(r.status, 200, "{}", r.body);
    // (The servers sign once the agent has synced the service.)
    eventually(
        "web's leaf for web's token",
        Duration::from_secs(10),
        || {
            let r = call(a, "GET", leaf, None, Some(&web));
            (r.status == 200 && r.body.contains("PrivateKeyPEM")).then_some(())
        },
    );
    let counting_def = r#"{"Name":"counting","Port":9003}"#;
    let web_lacks = |name: &str| denied(&web_accessor, "service:write", name);
    refused(
        &call(a, "PUT", register, Some(counting_def), Some(&web)),
        &web_lacks("counting"),
    );
    refused(
        &call(
            a,
            "GET",
            "/v1/agent/connect/ca/leaf/counting",
            None,
            Some(&web),
        ),
        &web_lacks("counting"),
    );
    // A service only the management token may write: deregistering it needs that too.
    let r = call(a, "PUT", register, Some(counting_def), Some(&management));
    assert_eq!(r.status, 200, "{}", r.body);
    let deregister = "/v1/agent/service/deregister/counting";
    refused(
        &call(a, "PUT", deregister, None, None),
        &anonymous("service:write", "counting"),
    );
    refused(
        &call(a, "PUT", deregister, None, Some(&web)),
        &web_lacks("counting"),
    );
    // Reads leave out what the token may not see: anonymous sees no service.
    let r = call(a, "GET", "/v1/agent/services", None, None);
    assert!(r.status == 200 && r.body.trim() == "{}", "{}", r.body);
    let r = call(a, "GET", "/v1/agent/services", None, Some(&web));
    assert!(
        r.body.contains("\"counting\"") && r.body.contains("web-sidecar-proxy"),
        "{}",
        r.body
    );
    let r = call(a, "PUT", deregister, None, Some(&management));
    assert_eq!(r.status, 200, "{}", r.body);

    // Relayed reads carry the token: the server shows web to web's token (once the agent
    // synced it), and nothing to the anonymous token.
    eventually(
        "the catalog to show web to web's token",
        Duration::from_secs(10),
        || {
            let r = call(a, "GET", "/v1/catalog/services", None, Some(&web));
            (r.status == 200 && r.body.contains("\"web\"")).then_some(())
        },
    );
    let r = call(a, "GET", "/v1/catalog/services", None, None);
    assert!(r.status == 200 && !r.body.contains("\"web\""), "{}", r.body);

    // Agent B's default token stands in for a missing one (and a token sent wins over it).
    let body = format!(
        r#"{{"SecretID":"{DEFAULT_SECRET}","Description":"node-b default","ServiceIdentities":[{{"ServiceName":"api"}}]}}"#
    );
    let bearer = [("x-consul-token", management.as_str())];
    let r = request_with("PUT", api, "/v1/acl/token", Some(&body), &bearer).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let created: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let default_accessor = created["AccessorID"].as_str().unwrap().to_owned();
    let r = call(
        b,
        "PUT",
        register,
        Some(r#"{"Name":"api","Port":8080}"#),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    refused(
        &call(b, "PUT", register, Some(counting_def), None),
        &denied(&default_accessor, "service:write", "counting"),
    );
    let r = call(b, "PUT", register, Some(web_def), Some(&web));
    assert_eq!(r.status, 200, "{}", r.body);

    // Real clients with a token (scripts/test installs both).
    let mut py = Command::new("python3");
    py.args(["-c", PY_CONSUL]);
    client("py-consul", py, &web);
    let modules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/compat-npm/node_modules");
    let mut node = Command::new("node");
    node.args(["-e", NPM_CONSUL]).env("NODE_PATH", &modules);
    client("consul npm", node, &web);

    // Envoy's ADS stream: web's sidecar needs a token with service:write on web.
    let envoy = |name: &str, admin: &str, token: &[&str]| {
        let agent = a.to_string();
        let mut args = vec!["envoy", "run", "--sidecar-for", "web", "--no-register"];
        args.extend(["--grpc", GRPC_A, "--admin", admin, "--agent", &agent]);
        args.extend(token);
        Proc::start(d, name, &args)
    };
    let anonymous_envoy = envoy("envoy-anonymous", "127.83.0.11:19001", &[]);
    let web_envoy = envoy("envoy-web", "127.83.0.11:19000", &["--token", &web]);
    eventually(
        "Envoy with web's token to get web's listener",
        Duration::from_secs(20),
        || {
            let (_, listeners) = get(sa("127.83.0.11:19000"), "/listeners");
            listeners.contains("public_listener").then_some(())
        },
    );
    let agent_log = &agents[0];
    eventually(
        "the agent to refuse the anonymous ADS stream",
        Duration::from_secs(20),
        || {
            let log = agent_log.log_text();
            (log.contains("ADS stream refused") && log.contains(&anonymous("service:write", "web")))
                .then_some(())
        },
    );
    let (status, listeners) = get(sa("127.83.0.11:19001"), "/listeners");
    assert!(
        status == 200 && !listeners.contains("public_listener"),
        "{status} {listeners}"
    );
    for p in [&anonymous_envoy, &web_envoy] {
        assert!(!p.log_text().contains(&web), "{} logs the token", p.name);
    }
    drop(anonymous_envoy);

    // A deleted token stops working within the agents' token_ttl. Used just before, both
    // agents hold it freshly resolved in their caches, so refusal takes about token_ttl.
    for agent in [a, b] {
        let r = call(agent, "GET", "/v1/agent/services", None, Some(&web));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    acl(api, &management, &["token", "delete", &web_accessor]);
    let deleted = Instant::now();
    for agent in [a, b] {
        eventually("the deleted token to be refused", TOKEN_TTL * 5, || {
            let r = call(agent, "GET", leaf, None, Some(&web));
            (r.status == 403).then_some(r)
        });
    }
    let took = deleted.elapsed();
    eprintln!("a deleted token refused by both agents {took:?} after the delete (token_ttl {TOKEN_TTL:?})");
    assert!(took < TOKEN_TTL * 3, "revocation took {took:?}");
    refused(&call(a, "GET", leaf, None, Some(&web)), "ACL not found");
    // The open ADS stream of web's Envoy is checked again every token_ttl: ended, though no
    // snapshot changed.
    eventually(
        "the agent to end the revoked token's ADS stream",
        TOKEN_TTL * 10,
        || {
            let log = agent_log.log_text();
            let refused = log.lines().filter(|l| l.contains("ADS stream refused"));
            refused
                .clone()
                .any(|l| l.contains("ACL not found"))
                .then_some(())
        },
    );
    drop(web_envoy);

    // No secret in any log.
    for p in &procs {
        let log = p.log_text();
        for secret in [&management, &web, DEFAULT_SECRET] {
            assert!(!log.contains(secret), "{} logs a secret", p.name);
        }
    }

    // The server down: with down_policy = "extend-cache" the agent keeps using what it
    // resolved, however old (management's entry is long past token_ttl), and refuses a token
    // it never resolved.
    server.stop();
    let r = call(a, "GET", "/v1/agent/services", None, Some(&management));
    assert!(
        r.status == 200 && r.body.contains("web-sidecar-proxy"),
        "{}",
        r.body
    );
    refused(
        &call(a, "GET", "/v1/agent/services", None, Some(DEFAULT_SECRET)),
        "no server answered to resolve the token",
    );
}
