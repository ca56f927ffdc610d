//! ACL replication between two datacenters federated through real mesh gateways
//! (127.86.0.0/16), through the real `strait acl` CLI on each server's loopback API: a token
//! created in dc1 works in dc2 within seconds and stops working there once deleted in dc1;
//! bootstrap in dc2 is refused; a global write made in dc2 goes to dc1 and is answered once
//! dc2 has it; a `Local` token stays in dc2; with dc1's server down dc2 keeps serving from its
//! copy and its replication status says why it cannot replicate.

#[allow(dead_code)] // bootstrap: dc1 may have bootstrapped by itself
use crate::common;

use crate::helpers::{acl, field};
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// dc1's `acl.tokens.initial_management`, which dc2 replicates with (`acl.tokens.replication`).
const MANAGEMENT: &str = "8f0b2c1e-3a4d-4b5c-9d6e-7f8091a2b3c4";

fn ip(dc: u8, host: u8) -> String {
    format!("127.86.{dc}.{host}")
}

fn api(dc: u8) -> SocketAddr {
    sa(&format!("{}:8500", ip(dc, 10)))
}

/// A server of `dc` with ACLs on and default deny; `token` is the `[acl.tokens]` line.
fn start_server(d: &Path, dc: u8, primary_gateways: &[&str], token: &str) -> Proc {
    let name = format!("dc{dc}");
    let cfg = server_config(d, &name, &ip(dc, 10), primary_gateways);
    let text = std::fs::read_to_string(&cfg).unwrap();
    write(
        &cfg,
        &format!("{text}[acl]\nenabled = true\ndefault_policy = \"deny\"\n[acl.tokens]\n{token}\n"),
    );
    let server = Proc::start(
        d,
        &format!("server-{name}"),
        &["server", "--config", cfg.to_str().unwrap()],
    );
    wait_ready(api(dc), "/v1/status/ready", &[&server]);
    server
}

/// `strait acl ARGS` on `server` with `token`, which may fail: (success, output).
fn try_acl(server: SocketAddr, token: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["acl"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--token", token]);
    strait_at(server, &all, &[])
}

/// dc2's `GET /v1/acl/replication`.
fn replication_status(server: SocketAddr) -> serde_json::Value {
    let (code, body) = get(server, "/v1/acl/replication");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn global_acls_replicate_to_the_secondary_through_the_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s1 = start_server(d, 1, &[], &format!("initial_management = \"{MANAGEMENT}\""));
    // dc1 bootstraps with its initial_management token, by itself or when asked.
    let (ok, out) = strait_at(api(1), &["acl", "bootstrap"], &[]);
    assert!(
        ok || out.contains("ACL bootstrap no longer allowed"),
        "{out}"
    );
    eventually(
        "dc1's management token to work in dc1",
        Duration::from_secs(10),
        || {
            try_acl(api(1), MANAGEMENT, &["token", "read", "self"])
                .0
                .then_some(())
        },
    );
    let _gw1 = start_gateway_vm(d, "dc1", &ip(1, 11), &ip(1, 10));
    let pg = format!("{}:8443", ip(1, 11));
    let s2 = start_server(d, 2, &[&pg], &format!("replication = \"{MANAGEMENT}\""));
    let _gw2 = start_gateway_vm(d, "dc2", &ip(2, 11), &ip(2, 10));

    // The management token of dc1 works in dc2 once replicated.
    eventually(
        "dc1's management token to work in dc2",
        Duration::from_secs(30),
        || {
            try_acl(api(2), MANAGEMENT, &["token", "read", "self"])
                .0
                .then_some(())
        },
    );
    let status = replication_status(api(2));
    assert_eq!(status["Enabled"], true, "{status}");
    assert_eq!(status["Running"], true, "{status}");
    assert_eq!(status["SourceDatacenter"], "dc1", "{status}");
    assert!(status["ReplicatedIndex"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(replication_status(api(1))["Enabled"], false);
    // What dc1 replicates: secret hashes, never secrets, only for a token with acl:read.
    let path = "/v1/internal/acl/replication";
    assert_eq!(request("GET", api(1), path, None).unwrap().status, 403);
    let reply = request_with("GET", api(1), path, None, &[("x-consul-token", MANAGEMENT)]).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains("SecretHash") && !reply.body.contains(MANAGEMENT),
        "{}",
        reply.body
    );

    // Bootstrap happens in the primary only.
    let (ok, out) = strait_at(api(2), &["acl", "bootstrap"], &[]);
    assert!(
        !ok && out.contains("HTTP 403") && out.contains("primary datacenter dc1"),
        "{out}"
    );

    // A policy and a token made in dc1 work in dc2 within seconds.
    let rules = write(&d.join("readers.hcl"), "acl = \"read\"\n");
    let rules_arg = format!("@{}", rules.display());
    let out = acl(
        api(1),
        MANAGEMENT,
        &[
            "policy", "create", "--name", "readers", "--rules", &rules_arg,
        ],
    );
    let policy_id = field(&out, "ID");
    let out = acl(
        api(1),
        MANAGEMENT,
        &[
            "token",
            "create",
            "--description",
            "reader",
            "--policy-name",
            "readers",
        ],
    );
    let created = Instant::now();
    let accessor = field(&out, "AccessorID");
    let reader = field(&out, "SecretID");
    let out = eventually(
        "the reader token made in dc1 to work in dc2",
        Duration::from_secs(10),
        || {
            let (ok, out) = try_acl(api(2), &reader, &["token", "read", &accessor]);
            ok.then_some(out)
        },
    );
    eprintln!("created in dc1 -> works in dc2: {:?}", created.elapsed());
    assert!(
        out.contains("readers") && !out.contains("SecretID"),
        "{out}"
    );
    assert_eq!(
        field(
            &acl(api(2), &reader, &["token", "read", "self"]),
            "AccessorID"
        ),
        accessor
    );
    // Its rights are the policy's, in dc2 too; a policy write in dc2 goes to dc1 with the
    // caller's token, which dc1 refuses.
    let (ok, out) = try_acl(api(2), &reader, &["policy", "delete", &policy_id]);
    assert!(
        !ok && out.contains("HTTP 403")
            && out.contains(&format!("'{accessor}' lacks permission 'acl:write'")),
        "{out}"
    );

    // A global token written in dc2 is made in dc1, and dc2 has it when it answers.
    let out = acl(
        api(2),
        MANAGEMENT,
        &["token", "create", "--description", "made-in-dc2"],
    );
    let via_dc2 = field(&out, "AccessorID");
    let via_dc2_secret = field(&out, "SecretID");
    assert_eq!(field(&out, "Local"), "false", "{out}");
    acl(api(2), MANAGEMENT, &["token", "read", &via_dc2]);
    acl(api(1), MANAGEMENT, &["token", "read", &via_dc2]);

    // A Local token made in dc2 stays there.
    let out = acl(
        api(2),
        MANAGEMENT,
        &["token", "create", "--description", "dc2-only", "--local"],
    );
    let local = field(&out, "AccessorID");
    let local_secret = field(&out, "SecretID");
    assert_eq!(field(&out, "Local"), "true", "{out}");
    let (ok, out) = try_acl(api(1), MANAGEMENT, &["token", "read", &local]);
    assert!(!ok && out.contains("ACL not found"), "{out}");
    let (ok, out) = try_acl(api(1), &local_secret, &["token", "read", "self"]);
    assert!(!ok && out.contains("ACL not found"), "{out}");

    // Deleted in dc1: refused in dc2 within seconds; the Local token stays.
    acl(api(1), MANAGEMENT, &["token", "delete", &accessor]);
    let deleted = Instant::now();
    eventually(
        "the deleted reader token to be refused in dc2",
        Duration::from_secs(10),
        || {
            let (ok, out) = try_acl(api(2), &reader, &["token", "read", "self"]);
            (!ok && out.contains("ACL not found")).then_some(())
        },
    );
    eprintln!("deleted in dc1 -> refused in dc2: {:?}", deleted.elapsed());
    assert_eq!(
        field(
            &acl(api(2), &local_secret, &["token", "read", "self"]),
            "AccessorID"
        ),
        local
    );

    // dc1's server down: dc2 serves from its copy, and says why it cannot replicate.
    s1.stop();
    for secret in [MANAGEMENT, via_dc2_secret.as_str(), local_secret.as_str()] {
        acl(api(2), secret, &["token", "read", "self"]);
    }
    let status = eventually(
        "dc2's replication status to report the unreachable primary",
        Duration::from_secs(60),
        || {
            let status = replication_status(api(2));
            let why = status["LastErrorMessage"].as_str()?.to_owned();
            why.contains("dc1").then_some(status)
        },
    );
    assert_ne!(status["LastSuccess"], "0001-01-01T00:00:00Z", "{status}");
    acl(api(2), &via_dc2_secret, &["token", "read", "self"]);
    let logs = s2.log_text();
    for secret in [MANAGEMENT, &reader, &via_dc2_secret, &local_secret] {
        assert!(!logs.contains(secret), "a secret in dc2's log");
    }
}
