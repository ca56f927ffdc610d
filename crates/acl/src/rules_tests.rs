use super::*;

fn hcl(text: &str) -> Rules {
    Rules::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn err(text: &str) -> String {
    Rules::parse(text).unwrap_err().to_string()
}

const EVERYTHING_HCL: &str = r#"
service "web" {
  policy     = "write"
  intentions = "read"
}
service_prefix "" {
  policy = "read"
}
node "n1" { policy = "write" }
node_prefix "" { policy = "read" }
agent "n1" { policy = "write" }
agent_prefix "" { policy = "read" }
key "app/secret" { policy = "deny" }
key_prefix "app/" { policy = "list" }
operator = "read"
mesh     = "write"
acl      = "deny"
"#;

const EVERYTHING_JSON: &str = r#"{
  "service": {"web": {"policy": "write", "intentions": "read"}},
  "service_prefix": {"": {"policy": "read"}},
  "node": {"n1": {"policy": "write"}},
  "node_prefix": [{"": {"policy": "read"}}],
  "agent": {"n1": {"policy": "write"}},
  "agent_prefix": {"": {"policy": "read"}},
  "key": {"app/secret": {"policy": "deny"}},
  "key_prefix": {"app/": {"policy": "list"}},
  "operator": "read",
  "mesh": "write",
  "acl": "deny"
}"#;

#[test]
fn hcl_and_json_say_the_same() {
    let r = hcl(EVERYTHING_HCL);
    assert_eq!(r, hcl(EVERYTHING_JSON));
    assert_eq!(
        r.service.exact["web"],
        ServiceRule {
            policy: Access::Write,
            intentions: Some(Access::Read)
        }
    );
    assert_eq!(r.service.prefix[""].policy, Access::Read);
    assert_eq!(r.node.exact["n1"], Access::Write);
    assert_eq!(r.node.prefix[""], Access::Read);
    assert_eq!(r.agent.exact["n1"], Access::Write);
    assert_eq!(r.agent.prefix[""], Access::Read);
    assert_eq!(r.key.exact["app/secret"], Access::Deny);
    assert_eq!(r.key.prefix["app/"], Access::List);
    assert_eq!(
        (r.operator, r.mesh, r.acl),
        (Some(Access::Read), Some(Access::Write), Some(Access::Deny))
    );
}

#[test]
fn several_blocks_of_one_kind() {
    let r = hcl("service \"a\" { policy = \"read\" }\nservice \"b\" { policy = \"write\" }\n");
    assert_eq!(r.service.exact.len(), 2);
    assert_eq!(r.service.exact["b"].policy, Access::Write);
    assert_eq!(hcl(""), Rules::default());
    assert_eq!(hcl("# nothing but a comment\n"), Rules::default());
}

#[test]
fn hcl_errors_name_rule_key_and_line() {
    let e = err(
        "operator = \"read\"\n\nservice \"web\" {\n  policy = \"write\"\n  polcy = \"read\"\n}\n",
    );
    assert!(e.starts_with("line 5: "), "{e}");
    assert!(
        e.contains("service \"web\"") && e.contains("`polcy`"),
        "{e}"
    );

    let e = err("service \"web\" {\n  policy = \"wrte\"\n}\n");
    assert!(e.starts_with("line 2: "), "{e}");
    assert!(
        e.contains("service \"web\"") && e.contains("`policy` = \"wrte\""),
        "{e}"
    );

    let e = err("operator = \"read\"\nservce \"web\" {\n  policy = \"read\"\n}\n");
    assert!(e.starts_with("line 2: ") && e.contains("`servce`"), "{e}");

    let e = err("node \"n\" {\n  policy = \"read\"\n  intentions = \"read\"\n}\n");
    assert!(
        e.starts_with("line 3: ") && e.contains("`intentions`"),
        "{e}"
    );

    let e = err("\n\nnode \"n\" {\n}\n");
    assert!(
        e.starts_with("line 3: ") && e.contains("`policy` is missing"),
        "{e}"
    );

    let e = err("service {\n  policy = \"read\"\n}\n");
    assert!(
        e.starts_with("line 1: ") && e.contains("takes one name"),
        "{e}"
    );

    let e = err("mesh = \"list\"\n");
    assert!(e.contains("`mesh` = \"list\""), "{e}");
    let e = err("service \"a\" { policy = \"list\" }\n");
    assert!(e.contains("`policy` = \"list\""), "{e}");

    let e = err("service \"a\" { policy = \"read\" }\nservice \"a\" { policy = \"write\" }\n");
    assert!(
        e.starts_with("line 2: ") && e.contains("given twice"),
        "{e}"
    );
    let e = err("operator = \"read\"\noperator = \"write\"\n");
    assert!(e.contains("operator"), "{e}");

    let e = err("service \"a\" {\n  policy = \n");
    assert!(e.contains("line 2"), "hcl-rs names the position: {e}");
    assert!(!e.contains("one attribute per line"), "{e}");
    let e = err("\nservice \"a\" { policy = \"write\" intentions = \"read\" }\n");
    assert!(
        e.contains("line 2") && e.contains("one attribute per line"),
        "{e}"
    );
}

#[test]
fn json_errors_name_rule_key_and_position() {
    let e = err("{\n  \"service\": {\"web\": {\"policy\": \"wrte\"}}\n}");
    assert!(e.contains("service \"web\""), "{e}");
    assert!(
        e.contains("`policy` = \"wrte\"") && e.contains("line 2"),
        "{e}"
    );
    let e = err("{\"node\": {\"n\": {\"policy\": \"read\", \"extra\": 1}}}");
    assert!(e.contains("node \"n\"") && e.contains("`extra`"), "{e}");
    let e = err("{\"operator\": 3}");
    assert!(e.contains("`operator`"), "{e}");
    let e = err("{\"keyring\": \"read\"}");
    assert!(e.contains("`keyring`"), "{e}");
    let e = err("{\"service\": {\"a\": {\"policy\": \"read\"}}} trailing");
    assert!(e.contains("trailing"), "{e}");
}

#[test]
fn lookup_exact_then_longest_prefix() {
    let r = hcl(r#"
node_prefix ""      { policy = "read" }
node_prefix "web"   { policy = "deny" }
node_prefix "web-1" { policy = "write" }
node "web"          { policy = "write" }
"#);
    assert_eq!(r.node.lookup("db"), Some(Access::Read));
    assert_eq!(
        r.node.lookup("web"),
        Some(Access::Write),
        "exact beats prefix"
    );
    assert_eq!(r.node.lookup("webby"), Some(Access::Deny));
    assert_eq!(
        r.node.lookup("web-10"),
        Some(Access::Write),
        "longest prefix"
    );
    assert_eq!(Rules::default().node.lookup("web"), None);
    assert_eq!(r.node.lookup("wé"), Some(Access::Read), "char boundaries");
}

#[test]
fn merge_strongest_wins_per_rule() {
    let mut a = hcl("service \"web\" { policy = \"read\" }\noperator = \"write\"\nnode \"n\" { policy = \"write\" }\n");
    let b = hcl("service \"web\" { policy = \"write\" }\noperator = \"deny\"\nnode \"n\" { policy = \"read\" }\nacl = \"read\"\n");
    a.merge(&b);
    assert_eq!(a.service.exact["web"].policy, Access::Write);
    assert_eq!(a.operator, Some(Access::Deny));
    assert_eq!(a.node.exact["n"], Access::Write);
    assert_eq!(a.acl, Some(Access::Read));
    let deny = hcl("service \"web\" { policy = \"deny\" }\n");
    a.merge(&deny);
    assert_eq!(a.service.exact["web"].policy, Access::Deny);
}

#[test]
fn intentions_derive_from_policy_unless_given() {
    let rule = |policy, intentions| ServiceRule { policy, intentions }.intentions();
    assert_eq!(rule(Access::Write, None), Access::Read);
    assert_eq!(rule(Access::Read, None), Access::Read);
    assert_eq!(rule(Access::Deny, None), Access::Deny);
    assert_eq!(rule(Access::Read, Some(Access::Write)), Access::Write);
    // Merging: an explicit level from one policy is kept over another's derived one.
    let mut a = hcl("service \"web\" { policy = \"write\" }\n");
    a.merge(&hcl(
        "service \"web\" {\n policy = \"read\"\n intentions = \"write\"\n}\n",
    ));
    assert_eq!(a.service.exact["web"].intentions(), Access::Write);
}

#[test]
fn grants() {
    use Level::*;
    assert!(
        Access::Write.grants(Write) && Access::Write.grants(List) && Access::Write.grants(Read)
    );
    assert!(!Access::List.grants(Write) && Access::List.grants(List) && Access::List.grants(Read));
    assert!(!Access::Read.grants(Write) && !Access::Read.grants(List) && Access::Read.grants(Read));
    assert!(!Access::Deny.grants(Read));
}
