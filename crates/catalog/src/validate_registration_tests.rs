//! Registrations that bypass an agent are held to the agent's rules: IDs, names, tags and
//! meta with control characters (or Consul's other limits) are refused, naming the field.

use crate::{Catalog, CatalogError, Check, Node, Service};

fn node(name: &str) -> Node {
    Node {
        node: name.into(),
        address: "10.0.0.1".into(),
        ..Node::default()
    }
}

fn web() -> Service {
    Service {
        id: "web-1".into(),
        service: "web".into(),
        port: 8080,
        ..Service::default()
    }
}

/// The message of the refusal of `n` with `services` and `checks`.
fn refused(n: Node, services: Vec<Service>, checks: Vec<Check>) -> String {
    let cat = Catalog::replicated();
    match cat.sync_node(n, services, checks) {
        Err(e @ CatalogError::Invalid { .. }) => e.to_string(),
        other => panic!("expected CatalogError::Invalid, got {other:?}"),
    }
}

#[test]
fn control_characters_are_refused_everywhere_a_name_goes() {
    let mut s = web();
    s.id = "web\nINFO forged".into();
    let e = refused(node("n1"), vec![s], vec![]);
    assert!(e.contains("field ID") && e.contains("control"), "{e}");

    let mut s = web();
    s.service = "web\r".into();
    assert!(refused(node("n1"), vec![s], vec![]).contains("field Service"));

    let mut s = web();
    s.tags = vec!["ok".into(), "bad\u{7}".into()];
    assert!(refused(node("n1"), vec![s], vec![]).contains("field Tags[1]"));

    let mut s = web();
    s.meta.insert("version".into(), "1\n2".into());
    assert!(refused(node("n1"), vec![s], vec![]).contains("field Meta.version"));

    let e = refused(node("n1\n"), vec![], vec![]);
    assert!(e.contains("field Node"), "{e}");

    let chk = Check {
        check_id: "c\t1".into(),
        ..Check::default()
    };
    let e = refused(node("n1"), vec![], vec![chk]);
    assert!(
        e.contains("field CheckID") && e.contains("on node \"n1\""),
        "{e}"
    );
    let chk = Check {
        check_id: "c1".into(),
        name: "probe\n".into(),
        ..Check::default()
    };
    assert!(refused(node("n1"), vec![], vec![chk]).contains("field Name"));
}

#[test]
fn consul_limits_on_ids_and_meta() {
    let mut s = web();
    s.id = "a/b".into();
    assert!(refused(node("n1"), vec![s], vec![]).contains("'/'"));
    let mut s = web();
    s.id = "x".repeat(129);
    assert!(refused(node("n1"), vec![s], vec![]).contains("1-128"));
    let mut s = web();
    s.meta.insert("consul-version".into(), "1".into());
    assert!(refused(node("n1"), vec![s], vec![]).contains("reserved"));
    let mut n = node("n1");
    n.meta.insert("a.b".into(), "1".into());
    assert!(refused(n, vec![], vec![]).contains("Meta key \"a.b\""));
    // What the agents and servers register passes.
    let cat = Catalog::replicated();
    let mut n = node("n1");
    n.meta.insert("strait-role".into(), "server".into());
    let chk = Check {
        check_id: "service:web-1:1".into(),
        service_id: "web-1".into(),
        ..Check::default()
    };
    cat.sync_node(n, vec![web()], vec![chk]).expect("valid");
}
