//! Unit tests of [`super::build`]: mode precedence, endpoint selection per mode, health
//! filtering, gateway tables, determinism and redaction.

use super::*;
use crate::types::{Instance, IntentionRule};

const TD: &str = "a1b2c3d4.strait";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn leaf() -> Leaf {
    Leaf {
        cert_chain_pem: "CERT".into(),
        key_pem: Secret("KEY".into()),
        spiffe_id: service_spiffe_id("web", "dc1", TD),
        serial: "01".into(),
        not_after_unix: 1_700_000_000,
    }
}

fn instance(id: &str, kind: InstanceKind, a: &str, dest: Option<&str>, healthy: bool) -> Instance {
    Instance {
        node: format!("node-{id}"),
        service_id: id.into(),
        service_name: id.into(),
        kind,
        addr: addr(a),
        wan: None,
        destination_service: dest.map(str::to_string),
        healthy,
        passing: healthy,
        tags: vec![],
        meta: BTreeMap::new(),
        node_meta: BTreeMap::new(),
    }
}

fn view() -> MeshView {
    use InstanceKind::*;
    MeshView {
        trust_domain: TD.into(),
        datacenter: "dc1".into(),
        instances: vec![
            instance("api-2", ConnectProxy, "10.0.0.3:21000", Some("api"), true),
            instance("api-1", ConnectProxy, "10.0.0.2:21000", Some("api"), true),
            instance("api-dup", ConnectProxy, "10.0.0.2:21000", Some("api"), true),
            instance(
                "api-sick",
                ConnectProxy,
                "10.0.0.4:21000",
                Some("api"),
                false,
            ),
            instance("api-app", Typical, "10.0.0.2:8080", None, true),
            instance("db-sick", ConnectProxy, "10.0.0.9:21000", Some("db"), false),
            instance("gw-1", MeshGateway, "10.0.0.20:8443", None, true),
            instance("gw-sick", MeshGateway, "10.0.0.21:8443", None, false),
            instance("server-1", Server, "10.0.0.10:8300", None, true),
            instance("server-sick", Server, "10.0.0.11:8300", None, false),
        ],
        federation: BTreeMap::from([
            ("dc1".into(), vec![addr("192.0.2.1:8443")]),
            (
                "dc2".into(),
                vec![addr("192.0.2.3:8443"), addr("192.0.2.2:8443")],
            ),
            ("dc3".into(), vec![]),
        ]),
        remote_sidecars: BTreeMap::from([(
            "dc2".into(),
            BTreeMap::from([("counting".into(), vec![addr("10.2.0.5:21000")])]),
        )]),
        proxy_defaults_mode: GatewayMode::Default,
        service_defaults_mode: BTreeMap::new(),
        intentions: BTreeMap::new(),
        intentions_default_deny: false,
        resolvers: BTreeMap::new(),
        upstream_configs: BTreeMap::new(),
    }
}

fn upstream(dest: &str, dc: &str, port: u16, mode: GatewayMode) -> UpstreamRegistration {
    UpstreamRegistration {
        destination: dest.into(),
        datacenter: dc.into(),
        bind: SocketAddr::from(([127, 0, 0, 1], port)),
        mode,
    }
}

fn sidecar(upstreams: Vec<UpstreamRegistration>) -> ProxyRegistration {
    ProxyRegistration {
        proxy_id: "web-sidecar-proxy".into(),
        kind: ProxyKind::Sidecar,
        service: "web".into(),
        bind: addr("10.0.0.1:21000"),
        wan: None,
        local_app: Some(addr("127.0.0.1:8080")),
        mode: GatewayMode::Default,
        upstreams,
    }
}

fn only_upstream(view: &MeshView, proxy: &ProxyRegistration) -> UpstreamSnapshot {
    let snap = build(view, proxy, leaf(), vec![], 1).expect("build");
    let ProxyRole::Sidecar(sidecar) = snap.role else {
        panic!("not a sidecar: {snap:?}")
    };
    assert_eq!(sidecar.upstreams.len(), 1);
    sidecar.upstreams.into_iter().next().expect("one upstream")
}

#[test]
fn mode_precedence_upstream_proxy_service_defaults_proxy_defaults_local() {
    use GatewayMode::*;
    let mut v = view();
    let mut p = sidecar(vec![upstream("counting", "dc2", 5000, Default)]);
    assert_eq!(effective_mode(&v, &p, &p.upstreams[0]), Local, "fallback");
    v.proxy_defaults_mode = None;
    assert_eq!(effective_mode(&v, &p, &p.upstreams[0]), None);
    v.service_defaults_mode.insert("other".into(), Local);
    assert_eq!(
        effective_mode(&v, &p, &p.upstreams[0]),
        None,
        "other service"
    );
    v.service_defaults_mode.insert("web".into(), Remote);
    assert_eq!(effective_mode(&v, &p, &p.upstreams[0]), Remote);
    p.mode = Local;
    assert_eq!(effective_mode(&v, &p, &p.upstreams[0]), Local);
    p.upstreams[0].mode = None;
    assert_eq!(effective_mode(&v, &p, &p.upstreams[0]), None);
}

#[test]
fn same_dc_upstream_uses_healthy_sidecars_sorted_and_deduped() {
    let up = only_upstream(
        &view(),
        &sidecar(vec![upstream("api", "", 5000, GatewayMode::Remote)]),
    );
    assert_eq!(up.datacenter, "dc1");
    assert_eq!(up.primary.sni, "api.default.dc1.internal.a1b2c3d4.strait");
    assert_eq!(
        up.primary.spiffe_id,
        "spiffe://a1b2c3d4.strait/ns/default/dc/dc1/svc/api"
    );
    assert_eq!(
        up.primary.endpoints,
        vec![addr("10.0.0.2:21000"), addr("10.0.0.3:21000")]
    );
    assert_eq!(
        up.mode,
        GatewayMode::Remote,
        "mode resolved even when unused"
    );
    // Explicit own DC behaves like "".
    let explicit = only_upstream(
        &view(),
        &sidecar(vec![upstream("api", "dc1", 5000, GatewayMode::Default)]),
    );
    assert_eq!(explicit.primary.endpoints, up.primary.endpoints);
    assert_eq!(explicit.mode, GatewayMode::Local);
}

#[test]
fn same_dc_upstream_with_only_unhealthy_sidecars_has_no_endpoints() {
    let up = only_upstream(
        &view(),
        &sidecar(vec![upstream("db", "", 5000, GatewayMode::Default)]),
    );
    assert!(up.primary.endpoints.is_empty());
    let unknown = only_upstream(
        &view(),
        &sidecar(vec![upstream("nope", "", 5000, GatewayMode::Default)]),
    );
    assert!(unknown.primary.endpoints.is_empty());
}

#[test]
fn remote_dc_mode_local_uses_own_healthy_gateways() {
    let up = only_upstream(
        &view(),
        &sidecar(vec![upstream(
            "counting",
            "dc2",
            5000,
            GatewayMode::Default,
        )]),
    );
    assert_eq!(up.mode, GatewayMode::Local);
    assert_eq!(
        up.primary.sni,
        "counting.default.dc2.internal.a1b2c3d4.strait"
    );
    assert_eq!(
        up.primary.spiffe_id,
        "spiffe://a1b2c3d4.strait/ns/default/dc/dc2/svc/counting"
    );
    assert_eq!(up.primary.endpoints, vec![addr("10.0.0.20:8443")]);
}

#[test]
fn remote_dc_mode_remote_uses_target_dc_gateways() {
    let up = only_upstream(
        &view(),
        &sidecar(vec![upstream("counting", "dc2", 5000, GatewayMode::Remote)]),
    );
    assert_eq!(
        up.primary.endpoints,
        vec![addr("192.0.2.2:8443"), addr("192.0.2.3:8443")]
    );
    let unknown_dc = only_upstream(
        &view(),
        &sidecar(vec![upstream("counting", "dc9", 5000, GatewayMode::Remote)]),
    );
    assert!(unknown_dc.primary.endpoints.is_empty());
}

#[test]
fn remote_dc_mode_none_uses_remote_sidecars() {
    let mut v = view();
    v.proxy_defaults_mode = GatewayMode::None;
    let up = only_upstream(
        &v,
        &sidecar(vec![upstream(
            "counting",
            "dc2",
            5000,
            GatewayMode::Default,
        )]),
    );
    assert_eq!(up.mode, GatewayMode::None);
    assert_eq!(up.primary.endpoints, vec![addr("10.2.0.5:21000")]);
    let missing = only_upstream(
        &v,
        &sidecar(vec![upstream("other", "dc2", 5000, GatewayMode::Default)]),
    );
    assert!(missing.primary.endpoints.is_empty());
}

/// `counting` fails over dc2 -> dc3 -> dc1 (the proxy's own DC).
fn failover_view() -> MeshView {
    let mut v = view();
    v.instances.push(instance(
        "counting-local",
        InstanceKind::ConnectProxy,
        "10.0.0.7:21000",
        Some("counting"),
        true,
    ));
    let dc = |d: &str| crate::TargetName {
        datacenter: d.into(),
        ..crate::TargetName::default()
    };
    v.resolvers.insert(
        "counting".into(),
        crate::Resolver {
            connect_timeout_ms: Some(2000),
            redirect: None,
            failover: vec![dc("dc3"), dc("dc1")],
            ..crate::Resolver::default()
        },
    );
    v
}

#[test]
fn failover_chain_has_a_target_per_datacenter_in_order() {
    let up = only_upstream(
        &failover_view(),
        &sidecar(vec![upstream("counting", "dc2", 5000, GatewayMode::Remote)]),
    );
    let names: Vec<_> = up
        .targets()
        .map(|t| (t.service.as_str(), t.datacenter.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("counting", "dc2"),
            ("counting", "dc3"),
            ("counting", "dc1")
        ]
    );
    assert_eq!(up.connect_timeout_ms, Some(2000));
    let dc3 = &up.failover[0];
    assert_eq!(dc3.sni, "counting.default.dc3.internal.a1b2c3d4.strait");
    assert_eq!(
        dc3.spiffe_id,
        "spiffe://a1b2c3d4.strait/ns/default/dc/dc3/svc/counting"
    );
    // Mode remote: each DC's own gateways (dc3 has none known); the own DC's sidecars.
    assert_eq!(
        up.primary.endpoints,
        vec![addr("192.0.2.2:8443"), addr("192.0.2.3:8443")]
    );
    assert!(dc3.endpoints.is_empty());
    assert_eq!(up.failover[1].endpoints, vec![addr("10.0.0.7:21000")]);
    assert_eq!(
        remote_targets(
            &failover_view(),
            &sidecar(vec![upstream("counting", "dc2", 5000, GatewayMode::Remote)])
        )
        .into_iter()
        .map(|t| t.datacenter)
        .collect::<Vec<_>>(),
        ["dc2", "dc3"]
    );
}

#[test]
fn a_target_its_datacenter_reports_unhealthy_has_no_endpoints_in_any_mode() {
    let mut v = failover_view();
    v.remote_sidecars
        .get_mut("dc2")
        .expect("dc2")
        .insert("counting".into(), vec![]);
    v.remote_sidecars.insert(
        "dc3".into(),
        BTreeMap::from([("counting".into(), vec![addr("10.3.0.5:21000")])]),
    );
    for (mode, dc3) in [
        (GatewayMode::Local, vec![addr("10.0.0.20:8443")]),
        (GatewayMode::None, vec![addr("10.3.0.5:21000")]),
    ] {
        let up = only_upstream(&v, &sidecar(vec![upstream("counting", "dc2", 5000, mode)]));
        assert!(up.primary.endpoints.is_empty(), "{mode:?}");
        assert_eq!(up.failover[0].endpoints, dc3, "{mode:?}");
    }
    // Without failover targets there is nowhere else to go: the gateways are kept, and
    // the agent does not even follow the target's health (mode local).
    let single = sidecar(vec![upstream("api", "dc2", 5001, GatewayMode::Local)]);
    v.remote_sidecars
        .get_mut("dc2")
        .expect("dc2")
        .insert("api".into(), vec![]);
    assert_eq!(
        only_upstream(&v, &single).primary.endpoints,
        vec![addr("10.0.0.20:8443")]
    );
    assert!(remote_targets(&v, &single).is_empty());
    let direct = sidecar(vec![upstream("api", "dc2", 5001, GatewayMode::None)]);
    assert_eq!(remote_targets(&v, &direct).len(), 1);
    // Unknown (not fetched, or the fetch failed): the gateways are dialled.
    v.remote_sidecars.remove("dc2");
    let up = only_upstream(
        &v,
        &sidecar(vec![upstream("counting", "dc2", 5000, GatewayMode::Local)]),
    );
    assert_eq!(up.primary.endpoints, vec![addr("10.0.0.20:8443")]);
}

#[test]
fn a_redirect_moves_the_primary_target_but_not_the_listener() {
    let mut v = view();
    v.resolvers.insert(
        "api".into(),
        crate::Resolver {
            redirect: Some(crate::TargetName {
                service: "counting".into(),
                datacenter: "dc2".into(),
                ..crate::TargetName::default()
            }),
            ..crate::Resolver::default()
        },
    );
    let up = only_upstream(
        &v,
        &sidecar(vec![upstream("api", "", 5000, GatewayMode::None)]),
    );
    assert_eq!(
        (up.destination.as_str(), up.datacenter.as_str()),
        ("api", "dc1")
    );
    assert_eq!(up.primary.service, "counting");
    assert_eq!(up.primary.datacenter, "dc2");
    assert_eq!(up.primary.endpoints, vec![addr("10.2.0.5:21000")]);
    assert!(up.failover.is_empty());
}

#[test]
fn sidecar_requires_local_app_and_names_proxy_and_field() {
    let mut p = sidecar(vec![]);
    p.local_app = None;
    let err = build(&view(), &p, leaf(), vec![], 1).expect_err("no local_app");
    assert_eq!(
        err,
        BuildError::MissingField {
            proxy: "web-sidecar-proxy".into(),
            field: "local_app"
        }
    );
    assert!(err.to_string().contains("web-sidecar-proxy") && err.to_string().contains("local_app"));
}

#[test]
fn missing_view_fields_and_duplicate_binds_are_errors() {
    let mut v = view();
    v.trust_domain.clear();
    let err = build(&v, &sidecar(vec![]), leaf(), vec![], 1).expect_err("no td");
    assert!(matches!(
        err,
        BuildError::MissingField {
            field: "view.trust_domain",
            ..
        }
    ));
    let p = sidecar(vec![
        upstream("api", "", 5000, GatewayMode::Default),
        upstream("db", "", 5000, GatewayMode::Default),
    ]);
    let err = build(&view(), &p, leaf(), vec![], 1).expect_err("same bind");
    assert!(
        matches!(err, BuildError::DuplicateUpstreamBind { .. }),
        "{err}"
    );
    let p = sidecar(vec![upstream("", "", 5000, GatewayMode::Default)]);
    let err = build(&view(), &p, leaf(), vec![], 1).expect_err("empty destination");
    assert!(matches!(
        err,
        BuildError::MissingField {
            field: "upstreams[].destination",
            ..
        }
    ));
}

#[test]
fn sidecar_fields_and_upstream_order_are_deterministic() {
    let a = sidecar(vec![
        upstream("counting", "dc2", 5001, GatewayMode::Default),
        upstream("api", "", 5000, GatewayMode::Default),
    ]);
    let mut b = a.clone();
    b.upstreams.reverse();
    let mut v2 = view();
    v2.instances.reverse();
    let roots = vec!["R2".to_string(), "R1".to_string(), "R2".to_string()];
    let sa = build(&view(), &a, leaf(), roots.clone(), 7).expect("a");
    let sb = build(&v2, &b, leaf(), vec!["R1".into(), "R2".into()], 7).expect("b");
    assert_eq!(sa, sb);
    assert_eq!(sa.roots_pem, vec!["R1".to_string(), "R2".to_string()]);
    assert_eq!(
        (sa.version, sa.kind(), sa.service.as_str()),
        (7, ProxyKind::Sidecar, "web")
    );
    let sc = sa.sidecar().expect("sidecar");
    assert_eq!(sc.public_listener, addr("10.0.0.1:21000"));
    assert_eq!(sc.local_app, addr("127.0.0.1:8080"));
    let names: Vec<_> = sc
        .upstreams
        .iter()
        .map(|u| u.destination.as_str())
        .collect();
    assert_eq!(names, ["api", "counting"]);
}

fn gateway(wan: Option<&str>) -> ProxyRegistration {
    ProxyRegistration {
        proxy_id: "mesh-gateway".into(),
        kind: ProxyKind::MeshGateway,
        service: "mesh-gateway".into(),
        bind: addr("10.0.0.20:8443"),
        wan: wan.map(addr),
        local_app: None,
        mode: GatewayMode::Default,
        upstreams: vec![],
    }
}

#[test]
fn gateway_tables_filter_health_and_own_dc() {
    let snap = build(&view(), &gateway(None), leaf(), vec![], 3).expect("gateway");
    assert_eq!(snap.kind(), ProxyKind::MeshGateway);
    let gw = snap.gateway().expect("gateway part");
    assert_eq!(gw.lan, addr("10.0.0.20:8443"));
    assert_eq!(gw.wan, gw.lan, "wan defaults to bind");
    assert_eq!(
        gw.local_services,
        BTreeMap::from([
            (
                "api".to_string(),
                vec![addr("10.0.0.2:21000"), addr("10.0.0.3:21000")]
            ),
            ("db".to_string(), vec![]),
        ])
    );
    assert_eq!(gw.local_servers, vec![addr("10.0.0.10:8300")]);
    assert_eq!(
        gw.remote_gateways,
        BTreeMap::from([(
            "dc2".to_string(),
            vec![addr("192.0.2.2:8443"), addr("192.0.2.3:8443")]
        )]),
        "own DC and DCs without gateways are left out"
    );
    let with_wan =
        build(&view(), &gateway(Some("192.0.2.1:8443")), leaf(), vec![], 3).expect("gateway");
    assert_eq!(
        with_wan.gateway().expect("gateway part").wan,
        addr("192.0.2.1:8443")
    );
}

#[test]
fn redacted_hides_only_the_key() {
    let snap = build(&view(), &gateway(None), leaf(), vec!["R".into()], 3).expect("gateway");
    let red = redacted(&snap);
    assert_eq!(red.leaf.key_pem, Secret("<redacted>".into()));
    let json = serde_json::to_string(&red).expect("json");
    assert!(!json.contains("\"KEY\""), "{json}");
    assert_eq!(red.leaf.cert_chain_pem, snap.leaf.cert_chain_pem);
    let mut back = red.clone();
    back.leaf.key_pem = snap.leaf.key_pem.clone();
    assert_eq!(back, snap);
}

#[test]
fn intentions_resolve_in_precedence_order() {
    let rule = |source: &str, allow: bool| IntentionRule {
        source: source.into(),
        allow,
    };
    let mut v = view();
    let p = sidecar(vec![]);
    let none = build(&v, &p, leaf(), vec![], 1).expect("build");
    let open = &none.sidecar().expect("sidecar").intentions;
    assert!(open.allows("anyone"), "no intentions: allow");

    // Wildcard destination: default deny, except web.
    v.intentions
        .insert("*".into(), vec![rule("*", false), rule("web", true)]);
    // The proxy's own service: deny web explicitly, allow everyone else.
    v.intentions
        .insert(p.service.clone(), vec![rule("*", true), rule("web", false)]);
    v.intentions
        .insert("other".into(), vec![rule("api", false)]);
    let snap = build(&v, &p, leaf(), vec![], 2).expect("build");
    let ints = &snap.sidecar().expect("sidecar").intentions;
    assert_eq!(
        ints.rules,
        [
            rule("web", false),
            rule("*", true),
            rule("web", true),
            rule("*", false)
        ],
        "exact destination first; within it exact source first; other services' ignored"
    );
    assert!(
        !ints.allows("web"),
        "exact source on exact destination wins"
    );
    assert!(
        ints.allows("api"),
        "exact destination's wildcard beats the global deny"
    );

    v.intentions.remove(&p.service);
    let global = resolve_intentions(&v, &p.service);
    assert!(global.allows("web"));
    assert!(!global.allows("api"), "global default deny");

    // ACLs with default deny: no matching intention denies; an allow still allows.
    v.intentions.clear();
    v.intentions
        .insert(p.service.clone(), vec![rule("web", true)]);
    v.intentions_default_deny = true;
    let closed = resolve_intentions(&v, &p.service);
    assert!(closed.allows("web"));
    assert!(!closed.allows("api"), "ACL default deny closes the mesh");
    v.intentions_default_deny = false;
    assert!(resolve_intentions(&v, &p.service).allows("api"));
}

/// A `DefaultSubset` picks the local instances its filter selects (on the fronted service's
/// tags and meta), `OnlyPassing` leaves out warnings, the SNI names the subset, and a
/// failover target in another DC takes every instance there (through its gateways).
#[test]
fn subsets_select_local_instances_by_filter() {
    let mut v = view();
    let tagged = |id: &str, a: &str, tags: &[&str], version: &str, passing: bool| {
        let mut i = instance(id, InstanceKind::ConnectProxy, a, Some("counting"), true);
        i.tags = tags.iter().map(|t| t.to_string()).collect();
        i.meta = BTreeMap::from([("version".to_string(), version.to_string())]);
        i.passing = passing;
        i
    };
    v.instances.extend([
        tagged("c-1", "10.0.1.1:21000", &["blue"], "1", true),
        tagged("c-2", "10.0.1.2:21000", &["green"], "2", true),
        tagged("c-3", "10.0.1.3:21000", &["blue"], "2", false),
    ]);
    v.resolvers.insert(
        "counting".into(),
        crate::Resolver {
            default_subset: "blue".into(),
            subsets: BTreeMap::from([
                (
                    "blue".to_string(),
                    crate::Subset {
                        filter: r#"Service.Tags contains "blue""#.into(),
                        only_passing: false,
                    },
                ),
                (
                    "v2".to_string(),
                    crate::Subset {
                        filter: "Service.Meta.version == 2".into(),
                        only_passing: true,
                    },
                ),
            ]),
            failover: vec![
                crate::TargetName {
                    subset: "v2".into(),
                    ..crate::TargetName::default()
                },
                crate::TargetName {
                    datacenter: "dc2".into(),
                    ..crate::TargetName::default()
                },
            ],
            ..crate::Resolver::default()
        },
    );
    let up = only_upstream(
        &v,
        &sidecar(vec![upstream("counting", "", 5000, GatewayMode::Local)]),
    );
    assert_eq!(up.primary.subset, "blue");
    assert_eq!(
        up.primary.endpoints,
        vec![addr("10.0.1.1:21000"), addr("10.0.1.3:21000")]
    );
    assert_eq!(
        up.primary.sni,
        format!("blue.counting.default.dc1.internal.{TD}")
    );
    // The SPIFFE ID is the service's: subsets are instances of the same service.
    assert_eq!(
        up.primary.spiffe_id,
        service_spiffe_id("counting", "dc1", TD)
    );
    let v2 = &up.failover[0];
    assert_eq!((v2.subset.as_str(), v2.datacenter.as_str()), ("v2", "dc1"));
    assert_eq!(
        v2.endpoints,
        vec![addr("10.0.1.2:21000")],
        "c-3 is not passing"
    );
    let remote = &up.failover[1];
    assert_eq!(
        (remote.subset.as_str(), remote.datacenter.as_str()),
        ("", "dc2")
    );
    assert_eq!(remote.sni, service_sni("counting", "dc2", TD));
    assert_eq!(remote.endpoints, vec![addr("10.0.0.20:8443")]);
    // An unknown subset selects nothing (the catalog refuses it; a hand-made view).
    v.resolvers.get_mut("counting").unwrap().default_subset = "nope".into();
    let up = only_upstream(
        &v,
        &sidecar(vec![upstream("counting", "", 5000, GatewayMode::Local)]),
    );
    assert!(up.primary.endpoints.is_empty());
}

/// `UpstreamConfig`: the override naming the upstream, else `Defaults`, of the downstream
/// service's `service-defaults`; another service's entry does not apply.
#[test]
fn passive_health_comes_from_the_downstream_service_defaults() {
    let mut v = view();
    let custom = crate::PassiveHealth {
        max_failures: 2,
        ..crate::PassiveHealth::DEFAULT
    };
    v.upstream_configs.insert(
        "web".into(),
        crate::UpstreamConfigs {
            defaults: Some(crate::PassiveHealth::DEFAULT),
            overrides: BTreeMap::from([("db".to_string(), custom)]),
        },
    );
    v.upstream_configs.insert(
        "api".into(),
        crate::UpstreamConfigs {
            defaults: Some(custom),
            overrides: BTreeMap::new(),
        },
    );
    let snap = build(
        &v,
        &sidecar(vec![
            upstream("api", "", 5000, GatewayMode::Local),
            upstream("db", "", 5001, GatewayMode::Local),
        ]),
        leaf(),
        vec![],
        1,
    )
    .expect("build");
    let ups = &snap.sidecar().expect("sidecar").upstreams;
    assert_eq!(ups[0].passive_health, Some(crate::PassiveHealth::DEFAULT));
    assert_eq!(ups[1].passive_health, Some(custom));
    v.upstream_configs.clear();
    let up = only_upstream(
        &v,
        &sidecar(vec![upstream("api", "", 5000, GatewayMode::Local)]),
    );
    assert_eq!(up.passive_health, None);
}
