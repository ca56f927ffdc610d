//! ACLs on a datacenter of three servers (127.81.0.0/24), through the real `strait acl` CLI:
//! bootstrap once, a policy from an HCL file and a token with it written through a follower
//! and read on every server, what a token may do per its rights, Consul's 403s for an unknown
//! token and for missing rights, roles and updates of tokens, roles and policies, tokens sent
//! from files (a file others may read refused), and the tokens kept across a snapshot restore
//! and a restart of all three servers.

use crate::common;
use crate::helpers::{acl, field};

use common::cluster::{Cluster, DC};
use common::*;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn strait(server: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    strait_at(server, args, env)
}

/// `text` in a new file of mode 0600.
fn private_file(path: &Path, text: &str) -> PathBuf {
    let path = write(path, &format!("{text}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Through the CLI on `server`: roles created, read, updated, listed and deleted (a token
/// linked to one loses its rights with it); a token's policy swapped and a policy's rules
/// updated, its rights following; `token self`; tokens from files, a shared one refused.
/// (Writes and the reads right after go to one server, which has applied them by then.)
fn roles_updates_and_token_files(d: &Path, server: SocketAddr, management: &str, reader: &str) {
    let denied = |secret: &str, args: &[&str], permission: &str| {
        let mut all = vec!["acl"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--token", secret]);
        let (ok, out) = strait(server, &all, &[]);
        assert!(
            !ok && out.contains(&format!("lacks permission '{permission}'")),
            "{all:?}: {out}"
        );
    };

    // A role: created with a policy, read, renamed and given an identity, listed.
    let out = acl(
        server,
        management,
        &[
            "role",
            "create",
            "--name",
            "auditors",
            "--description",
            "read ACLs",
            "--policy-name",
            "readers",
        ],
    );
    let role_id = field(&out, "ID");
    assert!(out.contains(" - readers"), "{out}");
    let out = acl(
        server,
        management,
        &[
            "role",
            "update",
            &role_id,
            "--description",
            "read ACLs, write web",
            "--service-identity",
            "web:dc1",
        ],
    );
    assert_eq!(field(&out, "Description"), "read ACLs, write web");
    assert!(
        out.contains(" - readers") && out.contains("web (Datacenters: dc1)"),
        "the policy stays, the identity is added: {out}"
    );
    let out = acl(server, management, &["role", "read", &role_id]);
    assert_eq!(field(&out, "Name"), "auditors");
    // Consul's spellings: by name, `-id`.
    let out = acl(server, management, &["role", "read", "-name", "auditors"]);
    assert_eq!(field(&out, "ID"), role_id);
    let out = acl(server, management, &["role", "read", "-id", &role_id]);
    assert_eq!(field(&out, "Name"), "auditors");
    let (ok, out) = strait(
        server,
        &[
            "acl", "role", "read", "--name", "nobody", "--token", management,
        ],
        &[],
    );
    assert!(
        !ok && out.contains("--name \"nobody\": no role has that name"),
        "{out}"
    );
    let out = acl(server, management, &["role", "list"]);
    assert!(
        out.contains(&role_id) && out.contains("readers, service-identity:web"),
        "{out}"
    );

    // A token with only the role reads ACLs through it; the role deleted, it may not.
    let out = acl(
        server,
        management,
        &["token", "create", "--role-name", "auditors"],
    );
    let auditor = field(&out, "SecretID");
    assert!(out.contains(&format!("{role_id} - auditors")), "{out}");
    acl(server, &auditor, &["token", "list"]);
    let out = acl(server, management, &["role", "delete", &role_id]);
    assert!(out.contains("deleted"), "{out}");
    denied(&auditor, &["token", "list"], "acl:read");
    let out = acl(server, management, &["role", "list"]);
    assert!(!out.contains(&role_id), "{out}");

    // Token update: the policy swapped for one without ACL rights, then that policy's rules
    // updated from a file: the token's rights follow; its secret and description stay.
    let out = acl(
        server,
        management,
        &[
            "policy",
            "create",
            "--name",
            "nodes",
            "--rules",
            "node_prefix \"\" {\n  policy = \"read\"\n}\n",
        ],
    );
    let nodes_id = field(&out, "ID");
    let out = acl(
        server,
        management,
        &[
            "token",
            "create",
            "--description",
            "swapped",
            "--policy-name",
            "readers",
            "--node-identity",
            "n1:dc1",
        ],
    );
    let (swapped_id, swapped) = (field(&out, "AccessorID"), field(&out, "SecretID"));
    assert!(out.contains("n1 (Datacenter: dc1)"), "{out}");
    acl(server, &swapped, &["token", "list"]);
    let out = acl(
        server,
        management,
        &[
            "token",
            "update",
            "-id",
            &swapped_id,
            "-policy-name",
            "nodes",
        ],
    );
    assert!(
        out.contains(&format!("{nodes_id} - nodes")) && !out.contains(" - readers"),
        "{out}"
    );
    assert!(
        !out.contains("SecretID") && !out.contains(&swapped),
        "an update shows no secret: {out}"
    );
    assert_eq!(field(&out, "Description"), "swapped");
    assert!(
        out.contains("n1 (Datacenter: dc1)"),
        "unnamed lists stay: {out}"
    );
    denied(&swapped, &["token", "list"], "acl:read");
    let rules = write(
        &d.join("nodes.hcl"),
        "acl = \"read\"\nnode_prefix \"\" {\n  policy = \"read\"\n}\n",
    );
    let out = acl(
        server,
        management,
        &[
            "policy",
            "update",
            &nodes_id,
            "--rules",
            &format!("@{}", rules.display()),
        ],
    );
    assert!(
        out.contains("acl = \"read\"") && field(&out, "Name") == "nodes",
        "{out}"
    );
    let out = acl(server, &swapped, &["token", "list"]);
    assert!(out.contains(&swapped_id), "{out}");
    // `token self`: the token sent, as the servers know it now.
    let out = acl(server, &swapped, &["token", "self"]);
    assert_eq!(field(&out, "AccessorID"), swapped_id);
    assert!(out.contains(" - nodes"), "{out}");
    let out = acl(server, &swapped, &["token", "read", "-self"]);
    assert_eq!(field(&out, "AccessorID"), swapped_id);
    let out = acl(server, management, &["policy", "read", "--name", "nodes"]);
    assert_eq!(field(&out, "ID"), nodes_id);
    // Consul's -append-*: added to the token's lists, which stay.
    let out = acl(
        server,
        management,
        &[
            "token",
            "update",
            &swapped_id,
            "-append-policy-name",
            "readers",
            "-append-service-identity",
            "db",
        ],
    );
    for want in [
        " - nodes",
        " - readers",
        "n1 (Datacenter: dc1)",
        "db (Datacenters: all)",
    ] {
        assert!(out.contains(want), "{want} not in {out}");
    }

    // Tokens from files: a private one is sent (the flag spelled as Consul's, then Consul's
    // variable); one others may read is refused, naming the file; so are an empty and a
    // missing one.
    let file = private_file(&d.join("reader.token"), reader);
    let (ok, out) = strait(
        server,
        &[
            "acl",
            "token",
            "self",
            "-token-file",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok && !out.contains(reader), "{out}");
    let reader_id = field(&out, "AccessorID");
    let (ok, out) = strait(
        server,
        &["acl", "token", "self"],
        &[("CONSUL_HTTP_TOKEN_FILE", file.to_str().unwrap())],
    );
    assert!(ok && field(&out, "AccessorID") == reader_id, "{out}");
    let shared = write(&d.join("shared.token"), reader);
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let empty = private_file(&d.join("empty.token"), "");
    let missing = d.join("missing.token");
    for (path, why) in [
        (&shared, "readable by group or others (mode 0644)"),
        (&empty, "is empty"),
        (&missing, "cannot be read"),
    ] {
        let (ok, out) = strait(
            server,
            &[
                "acl",
                "token",
                "list",
                "--token-file",
                path.to_str().unwrap(),
            ],
            &[],
        );
        assert!(
            !ok && out.contains(why) && out.contains(path.to_str().unwrap()),
            "{path:?}: {out}"
        );
        assert!(!out.contains(reader), "{out}");
    }
    // Every command sends it: `operator` refuses the shared file before asking anything.
    let (ok, out) = strait(
        server,
        &["operator", "raft", "list-peers"],
        &[("STRAIT_HTTP_TOKEN_FILE", shared.to_str().unwrap())],
    );
    assert!(
        !ok && out.contains("shared.token") && out.contains("mode 0644"),
        "{out}"
    );
}

#[test]
fn tokens_and_policies_are_replicated_enforced_on_acl_endpoints_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Cluster::start_with(
        d,
        81,
        DC,
        &[],
        "[acl]\nenabled = true\ndefault_policy = \"deny\"\n",
    );
    let leader = c.agreed_leader(&[0, 1, 2]);
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // Before bootstrap nothing resolves: not even reading is allowed.
    let (ok, out) = strait(c.api(follower), &["acl", "token", "list"], &[]);
    assert!(
        !ok && out.contains("HTTP 403")
            && out.contains("Permission denied: anonymous token lacks permission 'acl:read'"),
        "{out}"
    );

    // Bootstrap through a follower (forwarded to the leader); once only.
    let (ok, out) = strait(c.api(follower), &["acl", "bootstrap"], &[]);
    assert!(ok, "{out}");
    let management = field(&out, "SecretID");
    assert!(out.contains("global-management"), "{out}");
    let (ok, out) = strait(c.api(other), &["acl", "bootstrap"], &[]);
    assert!(
        !ok && out.contains("HTTP 403")
            && out.contains("Permission denied: ACL bootstrap no longer allowed"),
        "{out}"
    );

    // A policy from an HCL file and a token with it, written through a follower.
    let rules = write(
        &d.join("readers.hcl"),
        "acl = \"read\"\nservice_prefix \"\" {\n  policy = \"read\"\n}\n",
    );
    let rules_arg = format!("@{}", rules.display());
    let out = acl(
        c.api(follower),
        &management,
        &[
            "policy", "create", "--name", "readers", "--rules", &rules_arg,
        ],
    );
    let policy_id = field(&out, "ID");
    assert!(out.contains("service_prefix"), "{out}");
    let out = acl(
        c.api(follower),
        &management,
        &[
            "token",
            "create",
            "--description",
            "reader",
            "--policy-name",
            "readers",
        ],
    );
    let accessor = field(&out, "AccessorID");
    let reader = field(&out, "SecretID");
    assert!(out.contains(&format!("{policy_id} - readers")), "{out}");

    // Replicated: every server reads the token and the policy from its own copy, and no
    // read shows a secret.
    for i in 0..3 {
        let out = eventually(
            &format!("server-{i} to have the reader token"),
            Duration::from_secs(20),
            || {
                let (ok, out) = strait(
                    c.api(i),
                    &["acl", "token", "read", &accessor, "--token", &management],
                    &[],
                );
                ok.then_some(out)
            },
        );
        assert!(
            out.contains("readers") && !out.contains("SecretID"),
            "{out}"
        );
        let out = acl(c.api(i), &management, &["policy", "read", &policy_id]);
        assert!(out.contains("service_prefix"), "{out}");
    }

    // The reader token reads (also as Consul's CONSUL_HTTP_TOKEN), and may not write.
    let (ok, out) = strait(
        c.api(other),
        &["acl", "token", "list"],
        &[("CONSUL_HTTP_TOKEN", &reader)],
    );
    assert!(ok && out.contains(&accessor), "{out}");
    assert!(
        !out.contains(&reader) && !out.contains(&management),
        "{out}"
    );
    let out = acl(c.api(other), &reader, &["token", "read", "self"]);
    assert_eq!(field(&out, "AccessorID"), accessor);
    let (ok, out) = strait(
        c.api(other),
        &["acl", "policy", "delete", &policy_id],
        &[("STRAIT_HTTP_TOKEN", &reader)],
    );
    assert!(
        !ok && out.contains(&format!(
            "Permission denied: token with AccessorID '{accessor}' lacks permission 'acl:write'"
        )),
        "{out}"
    );
    // Roles and the policy list over HTTP, a token sent as `Authorization: Bearer`.
    let bearer = format!("Bearer {management}");
    let as_management = [("authorization", bearer.as_str())];
    let role = r#"{"Name":"ops","Policies":[{"Name":"readers"}]}"#;
    let reply = request_with(
        "PUT",
        c.api(other),
        "/v1/acl/role",
        Some(role),
        &as_management,
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let role: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(role["Policies"][0]["ID"], policy_id.as_str(), "{role}");
    let reply = request_with("GET", c.api(other), "/v1/acl/roles", None, &as_management).unwrap();
    assert!(
        reply.status == 200 && reply.body.contains("\"ops\""),
        "{}",
        reply.body
    );
    let reply = request_with(
        "GET",
        c.api(other),
        "/v1/acl/policies",
        None,
        &as_management,
    )
    .unwrap();
    assert!(
        reply.status == 200 && reply.body.contains("readers") && !reply.body.contains("Rules"),
        "the list leaves the rules out: {}",
        reply.body
    );
    let reply = request("PUT", c.api(other), "/v1/acl/role", Some(r#"{"Name":"x"}"#)).unwrap();
    assert_eq!(reply.status, 403, "no token, no write: {}", reply.body);

    // A token nobody created: Consul's 403 "ACL not found".
    let (ok, out) = strait(
        c.api(leader),
        &[
            "acl",
            "token",
            "list",
            "--token",
            "6a1f0c2e-9d4b-4e7a-8c3f-2b5d7e9a1c4f",
        ],
        &[],
    );
    assert!(
        !ok && out.contains("HTTP 403") && out.contains("ACL not found"),
        "{out}"
    );

    roles_updates_and_token_files(d, c.api(follower), &management, &reader);

    // A snapshot keeps them: delete the token, restore, it resolves again (the management
    // token sent from a 0600 file named by STRAIT_HTTP_TOKEN_FILE).
    let management_file = private_file(&d.join("management.token"), &management);
    let snap = d.join("acl.snap");
    let (ok, out) = strait(
        c.api(leader),
        &["snapshot", "save", snap.to_str().unwrap()],
        &[("STRAIT_HTTP_TOKEN_FILE", management_file.to_str().unwrap())],
    );
    assert!(ok, "{out}");
    acl(
        c.api(follower),
        &management,
        &["token", "delete", &accessor],
    );
    let (ok, out) = strait(
        c.api(follower),
        &["acl", "token", "read", "self", "--token", &reader],
        &[],
    );
    assert!(!ok && out.contains("ACL not found"), "{out}");
    let (ok, out) = strait(
        c.api(follower),
        &["snapshot", "restore", snap.to_str().unwrap()],
        &[("STRAIT_HTTP_TOKEN_FILE", management_file.to_str().unwrap())],
    );
    assert!(ok, "{out}");
    for i in 0..3 {
        eventually(
            &format!("server-{i} to resolve the restored token"),
            Duration::from_secs(20),
            || {
                let (ok, out) = strait(
                    c.api(i),
                    &["acl", "token", "read", "self", "--token", &reader],
                    &[],
                );
                (ok && out.contains(&accessor)).then_some(())
            },
        );
    }

    // All three stopped and started: the tokens still resolve, on every server.
    for i in 0..3 {
        c.stop(i);
    }
    for i in (0..3).rev() {
        c.up(i);
    }
    c.wait_ready();
    for i in 0..3 {
        for (secret, accessor_of) in [(&reader, Some(&accessor)), (&management, None)] {
            let out = eventually(
                &format!("server-{i} to resolve the tokens after the restart"),
                Duration::from_secs(30),
                || {
                    let (ok, out) = strait(
                        c.api(i),
                        &["acl", "token", "read", "self", "--token", secret],
                        &[],
                    );
                    ok.then_some(out)
                },
            );
            if let Some(accessor) = accessor_of {
                assert_eq!(field(&out, "AccessorID"), *accessor);
            }
        }
    }
}

/// With `acl.enabled = false` (the default) the ACL endpoints answer Consul's 401.
#[test]
fn acl_endpoints_say_when_acls_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_config(dir.path(), "dc1", "127.81.0.20", &[]);
    let server = Proc::start(
        dir.path(),
        "server-dc1",
        &["server", "--config", cfg.to_str().unwrap()],
    );
    let api = sa("127.81.0.20:8500");
    wait_ready(api, "/v1/status/ready", &[&server]);
    for args in [&["acl", "bootstrap"][..], &["acl", "policy", "list"]] {
        let (ok, out) = strait(api, args, &[]);
        assert!(
            !ok && out.contains("HTTP 401") && out.contains("ACL support disabled"),
            "{out}"
        );
    }
}

/// `strait doctor` and `strait members` against an agent with ACLs on and default deny: no
/// token is reported as an ACL refusal naming the permission and how to send a token (not
/// as an unreachable agent); with the management token from a 0600 file the checks pass.
#[test]
fn doctor_tells_a_missing_permission_from_a_network_fault() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let acl_on = "[acl]\nenabled = true\ndefault_policy = \"deny\"\n";
    let server_cfg = server_config(d, "dc1", "127.81.0.30", &[]);
    let text = std::fs::read_to_string(&server_cfg).unwrap() + acl_on;
    write(&server_cfg, &text);
    let agent_cfg = agent_config(
        d,
        "dc1",
        "node-a",
        "127.81.0.31",
        "127.81.0.30",
        &join_token("dc1"),
    );
    let text = std::fs::read_to_string(&agent_cfg).unwrap() + acl_on;
    write(&agent_cfg, &text);
    let server = Proc::start(
        d,
        "server",
        &["server", "--config", server_cfg.to_str().unwrap()],
    );
    let agent = Proc::start(
        d,
        "agent",
        &["agent", "--config", agent_cfg.to_str().unwrap()],
    );
    let (api, a) = (sa("127.81.0.30:8500"), sa("127.81.0.31:8500"));
    wait_ready(api, "/v1/status/ready", &[&server, &agent]);
    wait_ready(a, "/v1/agent/ready", &[&server, &agent]);
    let (ok, out) = strait(api, &["acl", "bootstrap"], &[]);
    assert!(ok, "{out}");
    let management = private_file(&d.join("management.token"), &field(&out, "SecretID"));

    let (ok, out) = strait(a, &["doctor"], &[]);
    assert!(!ok, "{out}");
    for want in [
        "✗ local agent: refused by ACLs, not a network fault",
        "needs 'agent:read on \"node-a\"', which anonymous token lacks",
        "the doctor sent no token",
        "--token-file",
        "X-Consul-Token",
    ] {
        assert!(out.contains(want), "{want} not in:\n{out}");
    }
    assert!(!out.contains("is `strait agent` running"), "{out}");
    let (ok, out) = strait(a, &["members"], &[]);
    assert!(!ok && out.contains("lacks permission"), "{out}");

    let file = management.to_str().unwrap();
    // (Federation fails here for want of a mesh gateway, which is no ACL matter.)
    let (_, out) = strait(a, &["doctor", "--token-file", file], &[]);
    assert!(
        out.contains("✓ local agent")
            && out.contains("✓ server")
            && out.contains("federation dc1 gateways: no mesh gateway")
            && !out.contains("refused by ACLs"),
        "{out}"
    );
    let (ok, out) = strait(a, &["members"], &[("CONSUL_HTTP_TOKEN_FILE", file)]);
    assert!(ok && out.contains("node-a"), "{out}");
}
