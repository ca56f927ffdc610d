//! Unit tests of the catalog's write operations, reads and persistence.

use crate::types::{kind, status, MeshGatewayConfig, ProxyConfig, SourceIntention};
use crate::{
    Catalog, CatalogError, Check, ConfigEntry, FederationState, Node, Service, SyncOutcome,
};
use strait_snapshot::GatewayMode;

fn node(name: &str) -> Node {
    Node {
        node: name.into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        ..Node::default()
    }
}

fn svc(id: &str, name: &str, port: u16) -> Service {
    Service {
        id: id.into(),
        service: name.into(),
        port,
        tags: vec![format!("t-{id}")],
        ..Service::default()
    }
}

fn sidecar(id: &str, dest: &str) -> Service {
    Service {
        kind: kind::CONNECT_PROXY.into(),
        proxy: Some(ProxyConfig {
            destination_service_name: dest.into(),
            ..ProxyConfig::default()
        }),
        ..svc(id, &format!("{dest}-sidecar-proxy"), 21000)
    }
}

fn check(id: &str, service_id: &str, st: &str) -> Check {
    Check {
        check_id: id.into(),
        service_id: service_id.into(),
        status: st.into(),
        ..Check::default()
    }
}

fn ids(services: &[Service]) -> Vec<&str> {
    services.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn register_fills_defaults_and_stamps_modify_index() {
    let cat = Catalog::replicated();
    let idx = cat
        .register(
            node("n1"),
            vec![svc("", "web", 80)],
            vec![check("c1", "web", "")],
        )
        .expect("register");
    assert_eq!(idx, 1);
    let mut input = node("n1");
    input.modify_index = 77;
    cat.register(input, vec![], vec![])
        .expect("client-sent ModifyIndex is ignored");
    let ns = cat.node_services("n1").expect("node");
    assert_eq!(ns.node.modify_index, 1);
    assert_eq!(ids(&ns.services), ["web"], "ID defaults to the name");
    assert_eq!(ns.services[0].modify_index, 1);
    let checks = cat.node_checks("n1").expect("checks");
    assert_eq!(checks[0].node, "n1");
    assert_eq!(checks[0].name, "c1");
    assert_eq!(
        checks[0].status,
        status::CRITICAL,
        "new checks start critical"
    );
    assert_eq!(checks[0].service_name, "web");
    // Registering the same thing again is a no-op.
    let again = cat
        .register(
            node("n1"),
            vec![svc("", "web", 80)],
            vec![check("c1", "web", "")],
        )
        .expect("register");
    assert_eq!(again, 1);
    // A second service keeps the first (register is additive) and only it gets index 2.
    cat.register(node("n1"), vec![svc("api", "api", 81)], vec![])
        .expect("register");
    let ns = cat.node_services("n1").expect("node");
    assert_eq!(ids(&ns.services), ["api", "web"]);
    assert_eq!(
        (ns.services[0].modify_index, ns.services[1].modify_index),
        (2, 1)
    );
    assert_eq!(cat.index(), 2);
}

#[test]
fn validation_errors_name_the_field() {
    let cat = Catalog::replicated();
    let err = cat
        .register(Node::default(), vec![], vec![])
        .expect_err("no name");
    assert!(
        matches!(err, CatalogError::EmptyField { field: "Node", .. }),
        "{err}"
    );
    let err = cat
        .register(node("n1"), vec![svc("x", "", 1)], vec![])
        .expect_err("no service name");
    assert!(
        err.to_string().contains("Service") && err.to_string().contains("n1"),
        "{err}"
    );
    let mut bad_kind = svc("x", "x", 1);
    bad_kind.kind = "gateway".into();
    let err = cat
        .register(node("n1"), vec![bad_kind], vec![])
        .expect_err("kind");
    assert!(matches!(err, CatalogError::InvalidKind { .. }), "{err}");
    let mut no_dest = sidecar("p", "web");
    no_dest.proxy = None;
    let err = cat
        .register(node("n1"), vec![no_dest], vec![])
        .expect_err("dest");
    assert!(
        err.to_string().contains("Proxy.DestinationServiceName"),
        "{err}"
    );
    let mut bad_mode = sidecar("p", "web");
    if let Some(p) = bad_mode.proxy.as_mut() {
        p.mesh_gateway.mode = "sideways".into();
    }
    let err = cat
        .register(node("n1"), vec![bad_mode], vec![])
        .expect_err("mode");
    assert!(err.to_string().contains("sideways"), "{err}");
    let err = cat
        .register(node("n1"), vec![], vec![check("c", "missing", "passing")])
        .expect_err("check of unknown service");
    assert!(matches!(err, CatalogError::UnknownService { .. }), "{err}");
    let err = cat
        .register(node("n1"), vec![], vec![check("c", "", "ok")])
        .expect_err("status");
    assert_eq!(
        err,
        CatalogError::InvalidStatus {
            status: "ok".into()
        }
    );
    let mut other = check("c", "", "passing");
    other.node = "n2".into();
    let err = cat
        .register(node("n1"), vec![], vec![other])
        .expect_err("node");
    assert!(matches!(err, CatalogError::NodeMismatch { .. }), "{err}");
    assert_eq!(cat.index(), 0, "failed writes change nothing");
    assert!(cat.nodes().is_empty());
}

#[test]
fn sync_removes_stale_and_is_a_no_op_when_in_agreement() {
    let cat = Catalog::replicated();
    cat.register(
        node("n1"),
        vec![svc("web", "web", 80), svc("old", "old", 81)],
        vec![
            check("old-check", "old", "passing"),
            check("node", "", "passing"),
        ],
    )
    .expect("register");
    let out = cat
        .sync_node(
            node("n1"),
            vec![svc("web", "web", 80)],
            vec![check("node", "", "passing")],
        )
        .expect("sync");
    assert_eq!(
        out,
        SyncOutcome {
            changed: true,
            index: 2,
            removed_services: vec!["old".into()],
            removed_checks: vec!["old-check".into()],
        }
    );
    assert_eq!(
        ids(&cat.node_services("n1").expect("node").services),
        ["web"]
    );
    let web_index = cat.node_services("n1").expect("node").services[0].modify_index;
    assert_eq!(web_index, 1, "unchanged service keeps its ModifyIndex");

    let again = cat
        .sync_node(
            node("n1"),
            vec![svc("web", "web", 80)],
            vec![check("node", "", "passing")],
        )
        .expect("sync");
    assert!(!again.changed);
    assert_eq!((again.index, cat.index()), (2, 2));

    // A changed port is a change; a new node is a change.
    let moved = cat
        .sync_node(node("n1"), vec![svc("web", "web", 8080)], vec![])
        .expect("sync");
    assert!(moved.changed && moved.index == 3);
    assert_eq!(moved.removed_checks, vec!["node".to_string()]);
    let fresh = cat.sync_node(node("n2"), vec![], vec![]).expect("sync");
    assert!(fresh.changed && fresh.index == 4);
}

#[test]
fn check_status_updates_and_skips_no_ops() {
    let cat = Catalog::replicated();
    cat.register(
        node("n1"),
        vec![svc("web", "web", 80)],
        vec![check("c", "web", "critical")],
    )
    .expect("register");
    let idx = cat
        .update_check_status("n1", "c", "passing", "HTTP 200")
        .expect("update");
    assert_eq!(idx, 2);
    let inst = cat.service_instances("web");
    assert_eq!(inst[0].checks[0].status, "passing");
    assert_eq!(inst[0].checks[0].output, "HTTP 200");
    assert_eq!(inst[0].checks[0].modify_index, 2);
    assert!(inst[0].is_passing());
    assert_eq!(
        cat.update_check_status("n1", "c", "passing", "HTTP 200"),
        Ok(2)
    );
    assert_eq!(
        cat.update_check_status("n1", "nope", "passing", ""),
        Err(CatalogError::UnknownCheck {
            node: "n1".into(),
            check: "nope".into()
        })
    );
    assert_eq!(
        cat.update_check_status("n9", "c", "passing", ""),
        Err(CatalogError::UnknownNode { node: "n9".into() })
    );
    assert_eq!(
        cat.update_check_status("n1", "c", "fine", ""),
        Err(CatalogError::InvalidStatus {
            status: "fine".into()
        })
    );
}

#[test]
fn deregister_service_and_node() {
    let cat = Catalog::replicated();
    cat.register(
        node("n1"),
        vec![svc("web", "web", 80), svc("api", "api", 81)],
        vec![
            check("web-c", "web", "passing"),
            check("node", "", "passing"),
        ],
    )
    .expect("register");
    assert_eq!(cat.deregister_service("n1", "web"), Ok(2));
    let checks: Vec<_> = cat
        .node_checks("n1")
        .expect("checks")
        .into_iter()
        .map(|c| c.check_id)
        .collect();
    assert_eq!(checks, ["node"], "the service's checks go with it");
    assert!(matches!(
        cat.deregister_service("n1", "web"),
        Err(CatalogError::UnknownService { .. })
    ));
    assert_eq!(cat.deregister_node("n1"), Ok(3));
    assert!(cat.nodes().is_empty() && cat.services().is_empty());
    assert_eq!(
        cat.deregister_node("n1"),
        Err(CatalogError::UnknownNode { node: "n1".into() })
    );
}

#[test]
fn reads_services_instances_and_connect_instances() {
    let cat = Catalog::replicated();
    cat.register(
        node("n2"),
        vec![svc("web", "web", 80), sidecar("web-sp", "web")],
        vec![],
    )
    .expect("register");
    cat.register(
        node("n1"),
        vec![svc("web", "web", 80), sidecar("api-sp", "api")],
        vec![],
    )
    .expect("register");
    let services = cat.services();
    assert_eq!(services["web"], vec!["t-web".to_string()]);
    assert_eq!(services.len(), 3);
    let nodes: Vec<_> = cat
        .service_instances("web")
        .into_iter()
        .map(|i| i.node.node)
        .collect();
    assert_eq!(nodes, ["n1", "n2"]);
    let connect = cat.connect_instances("web");
    assert_eq!(connect.len(), 1);
    assert_eq!(connect[0].service.id, "web-sp");
    assert!(cat.connect_instances("nope").is_empty());
    let json = serde_json::to_value(&connect[0]).expect("json");
    assert_eq!(json["Service"]["Proxy"]["DestinationServiceName"], "web");
    assert_eq!(json["Node"]["Node"], "n2");
    assert!(json["Checks"].is_array());
}

#[test]
fn config_entries_and_modes() {
    let cat = Catalog::replicated();
    let entry = |k: &str, name: &str, mode: &str| ConfigEntry {
        kind: k.into(),
        name: name.into(),
        mesh_gateway: MeshGatewayConfig { mode: mode.into() },
        ..ConfigEntry::default()
    };
    assert_eq!(
        cat.set_config_entry(entry("proxy-defaults", "", "remote")),
        Ok(1)
    );
    assert_eq!(
        cat.set_config_entry(entry("proxy-defaults", "global", "remote")),
        Ok(1)
    );
    assert_eq!(
        cat.set_config_entry(entry("service-defaults", "web", "none")),
        Ok(2)
    );
    assert_eq!(cat.proxy_defaults_mode(), GatewayMode::Remote);
    assert_eq!(cat.service_defaults_modes()["web"], GatewayMode::None);
    assert_eq!(cat.config_entries().len(), 2);
    assert!(matches!(
        cat.set_config_entry(entry("proxy-defaults", "web", "local")),
        Err(CatalogError::InvalidConfigEntry { .. })
    ));
    assert!(matches!(
        cat.set_config_entry(entry("mesh", "x", "local")),
        Err(CatalogError::InvalidConfigEntry { .. })
    ));
    assert!(matches!(
        cat.set_config_entry(entry("service-defaults", "web", "LOCAL")),
        Err(CatalogError::InvalidMode { .. })
    ));
    assert_eq!(cat.delete_config_entry("service-defaults", "web"), Ok(3));
    assert!(cat.service_defaults_modes().is_empty());
}

#[test]
fn federation_states_validate_and_sort() {
    let cat = Catalog::replicated();
    let fed = |gws: &[&str]| FederationState {
        datacenter: "dc2".into(),
        mesh_gateways: gws.iter().map(|s| s.to_string()).collect(),
        updated_index: 0,
    };
    assert_eq!(
        cat.set_federation_state(fed(&["192.0.2.2:8443", "192.0.2.1:8443"])),
        Ok(1)
    );
    assert_eq!(
        cat.set_federation_state(fed(&["192.0.2.1:8443", "192.0.2.2:8443"])),
        Ok(1)
    );
    let states = cat.federation_states();
    assert_eq!(
        states[0].mesh_gateways,
        ["192.0.2.1:8443", "192.0.2.2:8443"]
    );
    assert_eq!(states[0].updated_index, 1);
    assert_eq!(cat.federation_gateways()["dc2"].len(), 2);
    let err = cat
        .set_federation_state(fed(&["gateway:8443"]))
        .expect_err("addr");
    assert!(err.to_string().contains("gateway:8443"), "{err}");
}

#[test]
fn index_is_monotonic_across_operations() {
    let cat = Catalog::replicated();
    let mut seen = vec![cat.index()];
    seen.push(
        cat.register(node("a"), vec![svc("s", "s", 1)], vec![])
            .expect("a"),
    );
    seen.push(cat.register(node("b"), vec![], vec![]).expect("b"));
    seen.push(cat.deregister_service("a", "s").expect("c"));
    seen.push(
        cat.sync_node(node("a"), vec![svc("s", "s", 2)], vec![])
            .expect("d")
            .index,
    );
    seen.push(cat.deregister_node("b").expect("e"));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[test]
fn concurrent_writers_each_get_their_own_index() {
    let cat = std::sync::Arc::new(Catalog::replicated());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let cat = cat.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| cat.register(node(&format!("n{t}-{i}")), vec![], vec![]))
                    .collect::<Result<Vec<u64>, _>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread").expect("register"))
        .collect();
    all.sort();
    assert_eq!(all, (1..=100).collect::<Vec<u64>>());
    assert_eq!(cat.nodes().len(), 100);
}

#[test]
fn service_intentions_are_validated_and_name_the_field() {
    let cat = Catalog::replicated();
    let src = |name: &str, action: &str| SourceIntention {
        name: name.into(),
        action: action.into(),
        description: String::new(),
    };
    let entry = |name: &str, sources| ConfigEntry {
        kind: "service-intentions".into(),
        name: name.into(),
        sources,
        ..Default::default()
    };
    let ok = entry(
        "counting",
        vec![src("dashboard", "allow"), src("*", "deny")],
    );
    assert_eq!(cat.set_config_entry(ok.clone()), Ok(1));
    assert_eq!(cat.config_entries()[0].sources, ok.sources);
    let reason = |e: ConfigEntry| match cat.set_config_entry(e) {
        Err(CatalogError::InvalidConfigEntry { reason, .. }) => reason,
        other => panic!("expected InvalidConfigEntry, got {other:?}"),
    };
    assert!(reason(entry("counting", vec![src("web", "permit")])).contains("Sources[0].Action"));
    assert!(reason(entry("counting", vec![src("", "deny")])).contains("Sources[0].Name"));
    let twice = entry("counting", vec![src("web", "deny"), src("web", "allow")]);
    assert!(reason(twice).contains("Sources[1].Name"));
    assert!(reason(entry("", vec![])).contains("Name"));
    // Names end up in URL paths, SNI and SPIFFE IDs: only service names or `*`.
    assert!(reason(entry("count/ing", vec![])).contains("a-z, 0-9"));
    assert!(reason(entry("counting", vec![src("we b", "deny")])).contains("Sources[0].Name"));
    let mut misplaced = entry("web", vec![src("api", "deny")]);
    misplaced.kind = "service-defaults".into();
    assert!(reason(misplaced).contains("Sources"));
    assert_eq!(cat.config_entries().len(), 1, "nothing invalid was stored");
}

/// Consul's check-and-set: 0 creates only, the current ModifyIndex replaces or deletes, any
/// other index changes nothing and says what the index is.
#[test]
fn config_entries_check_and_set() {
    let cat = Catalog::replicated();
    let entry = |mode: &str| ConfigEntry {
        kind: "service-defaults".into(),
        name: "web".into(),
        mesh_gateway: MeshGatewayConfig { mode: mode.into() },
        ..ConfigEntry::default()
    };
    assert_eq!(cat.set_config_entry_cas(entry("local"), Some(0)), Ok(1));
    let lost = cat.set_config_entry_cas(entry("remote"), Some(0));
    assert_eq!(
        lost,
        Err(CatalogError::CasMismatch {
            kind: "service-defaults".into(),
            name: "web".into(),
            cas: 0,
            actual: 1
        })
    );
    assert_eq!(cat.service_defaults_modes()["web"], GatewayMode::Local);
    assert_eq!(cat.set_config_entry_cas(entry("remote"), Some(1)), Ok(2));
    assert!(matches!(
        cat.delete_config_entry_cas("service-defaults", "web", Some(1)),
        Err(CatalogError::CasMismatch { actual: 2, .. })
    ));
    assert_eq!(cat.config_entries().len(), 1);
    assert_eq!(
        cat.delete_config_entry_cas("service-defaults", "web", Some(2)),
        Ok(3)
    );
    assert!(cat.config_entries().is_empty());
}
