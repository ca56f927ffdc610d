//! ACLs enforced on the servers' own endpoints, on a datacenter of three servers
//! (127.88.0.0/24) with `default_policy = "deny"`: config entries, intentions, catalog and
//! health reads (filtered, as Consul's), operator and snapshot endpoints, each asked with no
//! token, a bogus one, a token for `web` only and the management token; reads asked on a
//! follower reach the leader with the caller's token (never with the follower's rights).

use crate::common;

use common::cluster::{Cluster, DC};
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// [`crate::helpers::call`] with a JSON body.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Reply {
    let body = body.map(Value::to_string);
    crate::helpers::call(addr, method, path, body.as_deref(), token)
}

fn ok_json(r: Reply, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", r.body))
}

fn denied(r: Reply, what: &str, permission: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.body);
    assert!(
        r.body.contains("Permission denied") && r.body.contains(permission),
        "{what}: {}",
        r.body
    );
}

/// The names in a JSON list of objects' `field`.
fn names(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|e| e[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn server_endpoints_check_the_callers_token() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start_with(
        dir.path(),
        88,
        DC,
        &[],
        "[acl]\nenabled = true\ndefault_policy = \"deny\"\n",
    );
    let leader = c.agreed_leader(&[0, 1, 2]);
    let (f, l) = (c.api((leader + 1) % 3), c.api(leader));
    let defaults = |name: &str| json!({"Kind": "service-defaults", "Name": name, "MeshGateway": {"Mode": "local"}});

    // Nothing is open before bootstrap: the anonymous token grants nothing.
    denied(
        call(f, "PUT", "/v1/config", Some(&defaults("web")), None),
        "anonymous config write",
        "anonymous token lacks permission 'service:write' on \"web\"",
    );
    let boot = ok_json(call(f, "PUT", "/v1/acl/bootstrap", None, None), "bootstrap");
    let root_secret = boot["SecretID"].as_str().unwrap().to_owned();
    let root = Some(root_secret.as_str());

    // A team token: write on web (and its intentions), read on the servers and every node.
    let rules = "service \"web\" {\n  policy = \"write\"\n  intentions = \"write\"\n}\nservice_prefix \"strait-\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\n";
    let policy = json!({"Name": "web-team", "Rules": rules});
    ok_json(
        call(f, "PUT", "/v1/acl/policy", Some(&policy), root),
        "policy",
    );
    let token = json!({"Description": "web team", "Policies": [{"Name": "web-team"}]});
    let team = ok_json(call(f, "PUT", "/v1/acl/token", Some(&token), root), "token");
    let accessor = team["AccessorID"].as_str().unwrap().to_owned();
    let team_secret = team["SecretID"].as_str().unwrap().to_owned();
    let team = Some(team_secret.as_str());

    // Config entries: by the service they configure.
    for name in ["web", "counting"] {
        let r = call(f, "PUT", "/v1/config", Some(&defaults(name)), root);
        assert_eq!(ok_json(r, "management write"), json!(true));
    }
    let r = call(f, "PUT", "/v1/config", Some(&defaults("web")), team);
    assert_eq!(ok_json(r, "team writes web"), json!(true));
    denied(
        call(f, "PUT", "/v1/config", Some(&defaults("counting")), team),
        "team writes counting",
        &format!(
            "token with AccessorID '{accessor}' lacks permission 'service:write' on \"counting\""
        ),
    );
    denied(
        call(
            f,
            "DELETE",
            "/v1/config/service-defaults/counting",
            None,
            team,
        ),
        "team deletes counting",
        "'service:write' on \"counting\"",
    );
    // Reads asked on a follower are answered by the leader with the caller's token.
    for (addr, query) in [(f, ""), (l, ""), (f, "?stale"), (f, "?consistent")] {
        let path = format!("/v1/config/service-defaults{query}");
        let seen = ok_json(call(addr, "GET", &path, None, team), &path);
        assert_eq!(names(&seen, "Name"), ["web"], "{path}");
        let seen = ok_json(call(addr, "GET", &path, None, None), &path);
        assert_eq!(
            names(&seen, "Name"),
            Vec::<String>::new(),
            "{path} anonymous"
        );
        let seen = ok_json(call(addr, "GET", &path, None, root), &path);
        assert_eq!(
            names(&seen, "Name"),
            ["counting", "web"],
            "{path} management"
        );
    }
    denied(
        call(f, "GET", "/v1/config/service-defaults/counting", None, team),
        "team reads counting",
        "'service:read' on \"counting\"",
    );

    // An unknown token is refused outright, in either header.
    let r = call(f, "GET", "/v1/catalog/services", None, Some("bogus"));
    assert_eq!((r.status, r.body.trim()), (403, "ACL not found"));
    let bearer = format!("Bearer {team_secret}");
    let r = request_with(
        "GET",
        f,
        "/v1/catalog/nodes",
        None,
        &[("Authorization", &bearer)],
    )
    .unwrap();
    assert_eq!(names(&ok_json(r, "nodes by bearer"), "Node").len(), 3);

    // Catalog and health reads leave out what the token may not read.
    let services = ok_json(
        call(f, "GET", "/v1/catalog/services", None, team),
        "services",
    );
    assert!(services.get("strait-server").is_some(), "{services}");
    let services = ok_json(
        call(f, "GET", "/v1/catalog/services", None, None),
        "services",
    );
    assert_eq!(services, json!({}));
    assert_eq!(
        ok_json(call(f, "GET", "/v1/catalog/nodes", None, None), "nodes"),
        json!([])
    );
    let health = "/v1/health/service/strait-server";
    assert_eq!(
        ok_json(call(f, "GET", health, None, team), health)
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        ok_json(call(f, "GET", health, None, None), health),
        json!([])
    );

    // Intentions: by their destination; with default deny, no intention means denied.
    let exact = |src: &str, dst: &str| {
        format!("/v1/connect/intentions/exact?source={src}&destination={dst}")
    };
    let allow = json!({"Action": "allow"});
    ok_json(
        call(f, "PUT", &exact("dashboard", "web"), Some(&allow), team),
        "team intention on web",
    );
    denied(
        call(
            f,
            "PUT",
            &exact("dashboard", "counting"),
            Some(&allow),
            team,
        ),
        "team intention on counting",
        "'intention:write' on \"counting\"",
    );
    ok_json(
        call(
            f,
            "PUT",
            &exact("dashboard", "counting"),
            Some(&allow),
            root,
        ),
        "management intention",
    );
    let listed = ok_json(
        call(f, "GET", "/v1/connect/intentions", None, team),
        "intentions",
    );
    assert_eq!(names(&listed, "DestinationName"), ["web"]);
    let listed = ok_json(
        call(f, "GET", "/v1/connect/intentions", None, root),
        "intentions",
    );
    assert_eq!(names(&listed, "DestinationName").len(), 2);
    let check = |src: &str| {
        let path = format!("/v1/connect/intentions/check?source={src}&destination=web");
        ok_json(call(f, "GET", &path, None, team), &path)["Allowed"].clone()
    };
    assert_eq!(check("dashboard"), json!(true));
    assert_eq!(
        check("intruder"),
        json!(false),
        "ACL default deny closes the mesh"
    );

    // Operator and snapshot endpoints.
    let raft = "/v1/operator/raft/configuration";
    denied(call(f, "GET", raft, None, team), raft, "'operator:read'");
    ok_json(call(f, "GET", raft, None, root), raft);
    denied(
        call(f, "GET", "/v1/snapshot", None, team),
        "snapshot",
        "Permission denied",
    );
    let r = call(f, "GET", "/v1/snapshot", None, root);
    assert_eq!(r.status, 200, "management snapshot: {}", r.body);
    denied(
        call(f, "GET", "/v1/agent/metrics", None, team),
        "metrics",
        "'agent:read'",
    );

    // The routes only strait processes call (over mTLS) refuse the loopback API outright,
    // whatever the token: no leaf for any service, no Raft command, no node rewritten.
    let anonymous_admin = json!({"acl": {"update_token": {
        "AccessorID": "00000000-0000-0000-0000-000000000002",
        "Policies": [{"ID": "00000000-0000-0000-0000-000000000001"}]}}});
    let sign = json!({"Service": "counting", "CsrPem": "-----BEGIN CERTIFICATE REQUEST-----"});
    let sync =
        json!({"Node": {"Node": "intruder", "Address": "127.0.0.9"}, "Services": [], "Checks": []});
    let state = json!({"Datacenter": "dc2", "MeshGateways": []});
    for (method, path, body) in [
        ("POST", "/v1/internal/raft/write", &anonymous_admin),
        ("POST", "/v1/internal/sign", &sign),
        ("PUT", "/v1/internal/sync", &sync),
        ("PUT", "/v1/internal/federation/state", &state),
    ] {
        for addr in [f, l] {
            let headers = [
                ("Content-Type", "application/json"),
                ("X-Consul-Token", root_secret.as_str()),
            ];
            let r = request_with(method, addr, path, Some(&body.to_string()), &headers).unwrap();
            assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
            assert!(r.body.contains("needs a client certificate"), "{}", r.body);
        }
    }
    let r = call(f, "GET", "/v1/acl/token/self", None, None);
    assert!(
        r.body.contains("\"Policies\":[]"),
        "the anonymous token is still nobody: {}",
        r.body
    );
    // The whole mesh at once (every instance, intention, resolver): operator:read.
    for path in ["/v1/internal/mesh-view", "/v1/internal/federation/states"] {
        denied(call(f, "GET", path, None, team), path, "'operator:read'");
        denied(call(f, "GET", path, None, None), path, "'operator:read'");
        assert_eq!(call(f, "GET", path, None, root).status, 200, "{path}");
    }
}

/// With `acl.tokens.initial_management`, the primary's leader bootstraps by itself (as
/// Consul's): the token works without `strait acl bootstrap`, and bootstrap is then refused.
#[test]
fn initial_management_bootstraps_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "6f1d0c4e-8a2b-4b7e-9c3d-2e5f7a9b1c0d";
    let c = Cluster::start_with(
        dir.path(),
        89,
        DC,
        &[],
        &format!("[acl]\nenabled = true\ndefault_policy = \"deny\"\n[acl.tokens]\ninitial_management = \"{secret}\"\n"),
    );
    let me = eventually(
        "the initial management token",
        std::time::Duration::from_secs(20),
        || {
            let r = call(c.api(2), "GET", "/v1/acl/token/self", None, Some(secret));
            (r.status == 200).then_some(r)
        },
    );
    assert!(me.body.contains("global-management"), "{}", me.body);
    denied(
        call(c.api(0), "PUT", "/v1/acl/bootstrap", None, None),
        "bootstrap after initial_management",
        "ACL bootstrap no longer allowed",
    );
}
