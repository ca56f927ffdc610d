use super::*;
use crate::token::{NodeIdentity, ServiceIdentity, Token};

/// A store over plain lists, resolving links by ID, else by name.
#[derive(Default)]
struct Mem {
    policies: Vec<Policy>,
    roles: Vec<Role>,
}

impl Store for Mem {
    fn policy(&self, link: &Link) -> Option<&Policy> {
        self.policies.iter().find(|p| {
            (!link.id.is_empty() && p.id == link.id) || (link.id.is_empty() && p.name == link.name)
        })
    }
    fn role(&self, link: &Link) -> Option<&Role> {
        self.roles.iter().find(|r| {
            (!link.id.is_empty() && r.id == link.id) || (link.id.is_empty() && r.name == link.name)
        })
    }
}

const ACCESSOR: &str = "6a1253d2-1785-24fd-91c2-f8e78c745511";

fn policy(name: &str, rules: &str) -> Policy {
    Policy {
        id: format!("id-{name}"),
        name: name.into(),
        rules: rules.into(),
        ..Policy::default()
    }
}

fn by_name(name: &str) -> Link {
    Link {
        id: String::new(),
        name: name.into(),
    }
}

fn token(policies: &[&str]) -> Token {
    Token {
        accessor_id: ACCESSOR.into(),
        grants: Grants {
            policies: policies.iter().map(|p| by_name(p)).collect(),
            ..Grants::default()
        },
        ..Token::default()
    }
}

const DENY: Context<'static> = Context {
    datacenter: "dc1",
    default_policy: DefaultPolicy::Deny,
};
const ALLOW: Context<'static> = Context {
    datacenter: "dc1",
    default_policy: DefaultPolicy::Allow,
};

fn compile(store: &Mem, tok: &Token, ctx: Context<'_>) -> Authorizer {
    Authorizer::for_token(tok, store, &ctx).unwrap()
}

#[test]
fn denied_reads_as_consuls_message() {
    let auth = compile(&Mem::default(), &token(&[]), DENY);
    let e = auth.service_write("counting").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' lacks permission 'service:write' on \"counting\""
    );
    assert_eq!(
        auth.operator_read().unwrap_err().to_string(),
        "Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' lacks permission 'operator:read'"
    );
    assert_eq!(
        auth.intention_write("db").unwrap_err().to_string(),
        "Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' lacks permission 'intention:write' on \"db\""
    );
    assert_eq!(
        auth.key_list("app/").unwrap_err().to_string(),
        "Permission denied: token with AccessorID '6a1253d2-1785-24fd-91c2-f8e78c745511' lacks permission 'key:list' on \"app/\""
    );
    let anon = Token {
        accessor_id: ANONYMOUS_TOKEN_ID.into(),
        ..Token::default()
    };
    let auth = compile(&Mem::default(), &anon, DENY);
    assert_eq!(
        auth.node_read("n1").unwrap_err().to_string(),
        "Permission denied: anonymous token lacks permission 'node:read' on \"n1\". The anonymous token is used implicitly when a request does not specify a token."
    );
}

#[test]
fn default_policy_decides_where_no_rule_applies() {
    let store = Mem {
        policies: vec![policy("p", "service \"db\" {\n  policy = \"deny\"\n}\n")],
        ..Mem::default()
    };
    let open = compile(&store, &token(&["p"]), ALLOW);
    open.service_write("web").unwrap();
    open.node_write("n1").unwrap();
    open.operator_write().unwrap();
    open.mesh_write().unwrap();
    open.key_write("k").unwrap();
    assert!(open.service_read("db").is_err(), "a rule beats the default");
    assert!(open.intention_default_allow());
    // acl and snapshots: never by default, only by a rule or management.
    assert!(open.acl_read().is_err() && open.acl_write().is_err() && open.snapshot().is_err());

    let closed = compile(&store, &token(&["p"]), DENY);
    assert!(closed.service_read("web").is_err());
    assert!(closed.agent_read("n1").is_err());
    assert!(!closed.intention_default_allow());
}

#[test]
fn exact_beats_prefix_and_longest_prefix_wins() {
    let store = Mem {
        policies: vec![policy(
            "p",
            r#"
service_prefix "" {
  policy = "read"
}
service_prefix "count" {
  policy = "write"
}
service_prefix "counting-" {
  policy = "deny"
}
service "counting-v2" {
  policy = "write"
}
"#,
        )],
        ..Mem::default()
    };
    let auth = compile(&store, &token(&["p"]), DENY);
    auth.service_read("web").unwrap();
    assert!(auth.service_write("web").is_err());
    auth.service_write("counting").unwrap();
    assert!(
        auth.service_read("counting-v1").is_err(),
        "longest prefix: deny"
    );
    auth.service_write("counting-v2").unwrap();
}

#[test]
fn across_policies_deny_beats_write_beats_read() {
    let store = Mem {
        policies: vec![
            policy("r", "service \"web\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\n"),
            policy("w", "service \"web\" {\n  policy = \"write\"\n}\nnode_prefix \"\" {\n  policy = \"write\"\n}\n"),
            policy("d", "service \"web\" {\n  policy = \"deny\"\n}\n"),
        ],
        ..Mem::default()
    };
    let rw = compile(&store, &token(&["r", "w"]), DENY);
    rw.service_write("web").unwrap();
    rw.node_write("n1").unwrap();
    let wr = compile(&store, &token(&["w", "r"]), DENY);
    wr.service_write("web").unwrap();
    let rwd = compile(&store, &token(&["r", "w", "d"]), ALLOW);
    assert!(rwd.service_read("web").is_err());
    rwd.node_write("n1").unwrap();
    // Precedence across policies is per rule: an exact deny in one policy and a prefix
    // write in another still leave the exact rule deciding.
    let store = Mem {
        policies: vec![
            policy("d", "service \"web\" {\n  policy = \"deny\"\n}\n"),
            policy("w", "service_prefix \"\" {\n  policy = \"write\"\n}\n"),
        ],
        ..Mem::default()
    };
    let auth = compile(&store, &token(&["w", "d"]), DENY);
    assert!(auth.service_read("web").is_err());
    auth.service_write("web2").unwrap();
}

#[test]
fn intentions_follow_the_service_rule_unless_given() {
    let store = Mem {
        policies: vec![policy(
            "p",
            r#"
service "web" {
  policy = "write"
}
service "db" {
  policy     = "read"
  intentions = "write"
}
service "secret" {
  policy = "deny"
}
"#,
        )],
        ..Mem::default()
    };
    let auth = compile(&store, &token(&["p"]), ALLOW);
    auth.intention_read("web").unwrap();
    assert!(
        auth.intention_write("web").is_err(),
        "write on the service gives read on its intentions"
    );
    auth.intention_write("db").unwrap();
    assert!(auth.intention_read("secret").is_err());
    auth.intention_write("other").unwrap();
}

#[test]
fn mesh_falls_back_to_operator() {
    let store = Mem {
        policies: vec![
            policy("op", "operator = \"write\"\n"),
            policy("both", "operator = \"write\"\nmesh = \"read\"\n"),
            policy("acl", "acl = \"read\"\n"),
        ],
        ..Mem::default()
    };
    compile(&store, &token(&["op"]), DENY).mesh_write().unwrap();
    let both = compile(&store, &token(&["both"]), DENY);
    both.mesh_read().unwrap();
    assert!(both.mesh_write().is_err());
    both.operator_write().unwrap();
    let acl = compile(&store, &token(&["acl"]), DENY);
    acl.acl_read().unwrap();
    assert!(acl.acl_write().is_err() && acl.snapshot().is_err());
}

#[test]
fn service_identity_is_consuls_template() {
    let mut tok = token(&[]);
    tok.grants.service_identities.push(ServiceIdentity {
        service_name: "web".into(),
        datacenters: vec![],
    });
    let auth = compile(&Mem::default(), &tok, DENY);
    auth.service_write("web").unwrap();
    auth.service_write("web-sidecar-proxy").unwrap();
    auth.service_read("counting").unwrap();
    auth.node_read("n1").unwrap();
    let e = auth.service_write("counting").unwrap_err();
    assert!(e
        .to_string()
        .ends_with("lacks permission 'service:write' on \"counting\""));
    assert!(auth.node_write("n1").is_err());
    assert!(auth.intention_write("web").is_err());
    auth.intention_read("web").unwrap();
    assert!(auth.operator_read().is_err() && auth.acl_read().is_err());

    // Limited to dc2: nothing in dc1 beyond the default.
    tok.grants.service_identities[0].datacenters = vec!["dc2".into()];
    let auth = compile(&Mem::default(), &tok, DENY);
    assert!(auth.service_read("web").is_err());
    let dc2 = Context {
        datacenter: "dc2",
        ..DENY
    };
    compile(&Mem::default(), &tok, dc2)
        .service_write("web")
        .unwrap();
}

#[test]
fn node_identity_is_consuls_template() {
    let mut tok = token(&[]);
    tok.grants.node_identities.push(NodeIdentity {
        node_name: "n1".into(),
        datacenter: "dc1".into(),
    });
    let auth = compile(&Mem::default(), &tok, DENY);
    auth.node_write("n1").unwrap();
    assert!(auth.node_write("n2").is_err() && auth.node_read("n2").is_err());
    auth.service_read("web").unwrap();
    assert!(auth.service_write("web").is_err());
    let dc2 = Context {
        datacenter: "dc2",
        ..DENY
    };
    assert!(compile(&Mem::default(), &tok, dc2)
        .node_write("n1")
        .is_err());
}

#[test]
fn roles_bring_their_policies_and_identities() {
    let store = Mem {
        policies: vec![policy("ops", "operator = \"read\"\n")],
        roles: vec![Role {
            id: "role-1".into(),
            name: "web-ops".into(),
            grants: Grants {
                policies: vec![by_name("ops"), by_name("gone")],
                service_identities: vec![ServiceIdentity {
                    service_name: "web".into(),
                    datacenters: vec![],
                }],
                ..Grants::default()
            },
            ..Role::default()
        }],
    };
    let mut tok = token(&["ops", "missing"]);
    tok.roles = vec![by_name("web-ops"), by_name("no-such-role")];
    let auth = compile(&store, &tok, DENY);
    auth.operator_read().unwrap();
    auth.service_write("web").unwrap();
    assert!(auth.operator_write().is_err());
}

#[test]
fn policies_limited_to_other_datacenters_do_not_apply() {
    let mut p = policy("p", "operator = \"write\"\n");
    p.datacenters = vec!["dc2".into()];
    let store = Mem {
        policies: vec![p],
        ..Mem::default()
    };
    assert!(compile(&store, &token(&["p"]), DENY)
        .operator_read()
        .is_err());
    let dc2 = Context {
        datacenter: "dc2",
        ..DENY
    };
    compile(&store, &token(&["p"]), dc2)
        .operator_write()
        .unwrap();
}

#[test]
fn management_allows_everything() {
    let store = Mem {
        policies: vec![Policy::global_management()],
        ..Mem::default()
    };
    let tok = Token {
        accessor_id: ACCESSOR.into(),
        grants: Grants {
            policies: vec![Link {
                id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
                name: String::new(),
            }],
            ..Grants::default()
        },
        ..Token::default()
    };
    for auth in [
        compile(&store, &tok, DENY),
        Authorizer::management(ACCESSOR),
    ] {
        assert!(auth.is_management());
        auth.acl_write().unwrap();
        auth.snapshot().unwrap();
        auth.operator_write().unwrap();
        auth.mesh_write().unwrap();
        auth.service_write("anything").unwrap();
        auth.intention_write("anything").unwrap();
        auth.node_write("n").unwrap();
        auth.agent_write("n").unwrap();
        auth.key_write("k").unwrap();
        assert_eq!(auth.accessor_id(), ACCESSOR);
    }
    // Management even where its rules would not say so: a deny elsewhere does not cut it.
    let store = Mem {
        policies: vec![
            Policy::global_management(),
            policy("d", "service \"web\" {\n  policy = \"deny\"\n}\n"),
        ],
        ..Mem::default()
    };
    let mut tok = tok;
    tok.grants.policies.push(by_name("d"));
    compile(&store, &tok, DENY).service_write("web").unwrap();
}

#[test]
fn a_corrupt_policy_is_an_error_naming_it() {
    let store = Mem {
        policies: vec![policy(
            "broken",
            "service \"web\" {\n  policy = \"all\"\n}\n",
        )],
        ..Mem::default()
    };
    let e = Authorizer::for_token(&token(&["broken"]), &store, &DENY).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("policy \"broken\": invalid Rules: line 2: "),
        "{e}"
    );
}

#[test]
fn keys_list_and_write() {
    let store = Mem {
        policies: vec![policy(
            "k",
            "key_prefix \"app/\" {\n  policy = \"list\"\n}\nkey \"app/secret\" {\n  policy = \"deny\"\n}\nkey_prefix \"app/rw/\" {\n  policy = \"write\"\n}\n",
        )],
        ..Mem::default()
    };
    let auth = compile(&store, &token(&["k"]), DENY);
    auth.key_list("app/x").unwrap();
    auth.key_read("app/x").unwrap();
    assert!(auth.key_write("app/x").is_err());
    assert!(auth.key_read("app/secret").is_err());
    auth.key_write("app/rw/x").unwrap();
    assert!(auth.key_read("other").is_err());
}

/// What a server sends an agent decides exactly as the authorizer it resolved.
#[test]
fn an_authorizer_survives_its_trip_to_an_agent() {
    let store = Mem {
        policies: vec![policy(
            "web",
            "service_prefix \"web\" {\n  policy = \"write\"\n  intentions = \"write\"\n}\nservice \"db\" {\n  policy = \"deny\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}\noperator = \"read\"\n",
        )],
        ..Mem::default()
    };
    let auth = compile(&store, &token(&["web"]), DENY);
    let json = serde_json::to_string(&auth).unwrap();
    assert!(json.contains("\"AccessorID\""), "{json}");
    let back: Authorizer = serde_json::from_str(&json).unwrap();
    assert_eq!(auth.accessor_id(), back.accessor_id());
    assert!(back.service_write("web-api").is_ok());
    assert!(back.intention_write("web").is_ok());
    assert_eq!(
        auth.service_read("db").unwrap_err(),
        back.service_read("db").unwrap_err()
    );
    assert!(back.node_read("n1").is_ok());
    assert!(back.node_write("n1").is_err());
    assert!(back.operator_read().is_ok());
    assert!(back.operator_write().is_err());
    assert!(!back.is_management());
    assert!(!back.intention_default_allow());
    let mgmt: Authorizer =
        serde_json::from_str(&serde_json::to_string(&Authorizer::management("m")).unwrap())
            .unwrap();
    assert!(mgmt.is_management() && mgmt.acl_write().is_ok());
}
