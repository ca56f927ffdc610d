use super::*;
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, transport_socket};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig as AggregateConfig;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, secret, subject_alt_name_matcher,
    DownstreamTlsContext, Secret, UpstreamTlsContext,
};
use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use strait_snapshot::{
    GatewayMode, GatewaySnapshot, Leaf, Secret as Key, SidecarSnapshot, UpstreamSnapshot,
    UpstreamTarget,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn base(role: ProxyRole) -> Snapshot {
    Snapshot {
        version: 7,
        proxy_id: "web-sidecar-proxy".into(),
        trust_domain: "td.strait".into(),
        datacenter: "dc1".into(),
        service: "web".into(),
        leaf: Leaf {
            cert_chain_pem: "LEAF-PEM".into(),
            key_pem: Key("KEY-PEM".into()),
            spiffe_id: "spiffe://td.strait/ns/default/dc/dc1/svc/web".into(),
            serial: "01".into(),
            not_after_unix: 0,
        },
        roots_pem: vec!["ROOT-A".into(), "ROOT-B\n".into()],
        role,
    }
}

fn sidecar() -> Snapshot {
    base(ProxyRole::Sidecar(SidecarSnapshot {
        public_listener: addr("10.0.0.5:21000"),
        local_app: addr("127.0.0.1:8080"),
        upstreams: vec![UpstreamSnapshot {
            destination: "counting".into(),
            datacenter: "dc2".into(),
            bind: addr("127.0.0.1:5000"),
            mode: GatewayMode::Local,
            primary: UpstreamTarget {
                service: "counting".into(),
                subset: String::new(),
                datacenter: "dc2".into(),
                sni: "counting.default.dc2.internal.td.strait".into(),
                spiffe_id: "spiffe://td.strait/ns/default/dc/dc2/svc/counting".into(),
                endpoints: vec![addr("10.0.0.20:8443")],
            },
            failover: vec![],
            connect_timeout_ms: None,
            passive_health: None,
        }],
        intentions: Default::default(),
    }))
}

fn decode<M: Message + Default>(r: &Resource) -> M {
    M::decode(r.body.value.as_slice()).expect("decodes")
}

fn names(rs: &[Resource]) -> Vec<&str> {
    rs.iter().map(|r| r.name.as_str()).collect()
}

fn tcp_cluster(l: &Listener, chain: usize) -> String {
    let f = &l.filter_chains[chain].filters[0];
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no typed config");
    };
    let t = TcpProxy::decode(any.value.as_slice()).expect("tcp_proxy");
    match t.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn port(a: &Option<envoy_types::pb::envoy::config::core::v3::Address>) -> u32 {
    match a.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => match s.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(p)) => p,
            _ => 0,
        },
        _ => 0,
    }
}

fn typed<M: Message + Default>(
    ts: &Option<envoy_types::pb::envoy::config::core::v3::TransportSocket>,
) -> M {
    match ts.as_ref().and_then(|t| t.config_type.as_ref()) {
        Some(transport_socket::ConfigType::TypedConfig(any)) => {
            M::decode(any.value.as_slice()).expect("tls context")
        }
        None => panic!("no transport socket"),
    }
}

#[test]
fn secrets_carry_leaf_and_roots() {
    let r = render(&sidecar());
    assert_eq!(names(&r.secrets), [LEAF_SECRET, ROOTS_SECRET]);
    let leaf: Secret = decode(&r.secrets[0]);
    let Some(secret::Type::TlsCertificate(cert)) = leaf.r#type else {
        panic!("leaf is not a certificate");
    };
    assert!(format!("{:?}", cert.certificate_chain).contains("LEAF-PEM"));
    assert!(format!("{:?}", cert.private_key).contains("KEY-PEM"));
    let roots: Secret = decode(&r.secrets[1]);
    let Some(secret::Type::ValidationContext(v)) = roots.r#type else {
        panic!("roots are not a validation context");
    };
    assert!(format!("{:?}", v.trusted_ca).contains("ROOT-A\\nROOT-B\\n"));
}

#[test]
fn sidecar_inbound_requires_client_certificates() {
    let r = render(&sidecar());
    assert_eq!(
        names(&r.listeners),
        ["public_listener:10.0.0.5:21000", "upstream:127.0.0.1:5000"]
    );
    let inbound: Listener = decode(&r.listeners[0]);
    assert_eq!(port(&inbound.address), 21000);
    assert_eq!(tcp_cluster(&inbound, 0), "local_app");
    let tls: DownstreamTlsContext = typed(&inbound.filter_chains[0].transport_socket);
    assert_eq!(tls.require_client_certificate.map(|b| b.value), Some(true));
    let common = tls.common_tls_context.expect("common");
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        LEAF_SECRET
    );
    let Some(ValidationContextType::CombinedValidationContext(v)) = common.validation_context_type
    else {
        panic!("no validation context");
    };
    assert_eq!(
        v.validation_context_sds_secret_config.expect("roots").name,
        ROOTS_SECRET
    );
    let app: Cluster = decode(&r.clusters[0]);
    assert_eq!(app.name, "local_app");
    assert!(format!("{:?}", app.load_assignment).contains("127.0.0.1"));
}

#[test]
fn sidecar_upstream_verifies_the_exact_spiffe_id() {
    let r = render(&sidecar());
    let outbound: Listener = decode(&r.listeners[1]);
    assert_eq!(port(&outbound.address), 5000);
    let sni = "counting.default.dc2.internal.td.strait";
    assert_eq!(tcp_cluster(&outbound, 0), sni);
    assert_eq!(names(&r.clusters), ["local_app", sni]);
    let cluster: Cluster = decode(&r.clusters[1]);
    let tls: UpstreamTlsContext = typed(&cluster.transport_socket);
    assert_eq!(tls.sni, sni);
    let Some(ValidationContextType::CombinedValidationContext(v)) = tls
        .common_tls_context
        .expect("common")
        .validation_context_type
    else {
        panic!("no validation context");
    };
    let sans = v
        .default_validation_context
        .expect("default")
        .match_typed_subject_alt_names;
    assert_eq!(sans.len(), 1);
    assert_eq!(
        sans[0].san_type,
        subject_alt_name_matcher::SanType::Uri as i32
    );
    assert!(format!("{:?}", sans[0].matcher)
        .contains("Exact(\"spiffe://td.strait/ns/default/dc/dc2/svc/counting\")"));
    assert_eq!(names(&r.endpoints), [sni]);
    let cla: ClusterLoadAssignment = decode(&r.endpoints[0]);
    let eps = &cla.endpoints[0].lb_endpoints;
    assert_eq!(eps.len(), 1);
    assert!(matches!(
        eps[0].host_identifier,
        Some(lb_endpoint::HostIdentifier::Endpoint(_))
    ));
}

fn target(service: &str, dc: &str, endpoints: &[&str]) -> UpstreamTarget {
    UpstreamTarget {
        service: service.into(),
        subset: String::new(),
        datacenter: dc.into(),
        sni: format!("{service}.default.{dc}.internal.td.strait"),
        spiffe_id: format!("spiffe://td.strait/ns/default/dc/{dc}/svc/{service}"),
        endpoints: endpoints.iter().map(|a| addr(a)).collect(),
    }
}

/// A chain is an aggregate cluster over its targets' clusters in order, each with outlier
/// detection; a target two upstreams share is rendered once, the same whichever comes
/// first; the listener retries connects.
#[test]
fn a_failover_chain_is_an_aggregate_cluster_over_its_targets() {
    let mut snap = sidecar();
    let ProxyRole::Sidecar(s) = &mut snap.role else {
        unreachable!()
    };
    s.upstreams[0].failover = vec![target("counting", "dc3", &["10.0.0.20:8443"])];
    let mut other = s.upstreams[0].clone();
    other.destination = "counting-dc3".into();
    other.bind = addr("127.0.0.1:5001");
    other.primary = target("counting", "dc3", &["10.0.0.20:8443"]);
    other.failover = vec![];
    s.upstreams.push(other);
    let r = render(&snap);

    let (dc2, dc3) = (
        "counting.default.dc2.internal.td.strait",
        "counting.default.dc3.internal.td.strait",
    );
    let chain = format!("failover:{dc2}");
    assert_eq!(names(&r.clusters), ["local_app", dc2, dc3, chain.as_str()]);
    assert_eq!(names(&r.endpoints), [dc2, dc3]);
    let outbound: Listener = decode(&r.listeners[1]);
    assert_eq!(tcp_cluster(&outbound, 0), chain);
    let Some(filter::ConfigType::TypedConfig(any)) =
        &outbound.filter_chains[0].filters[0].config_type
    else {
        panic!("no typed config");
    };
    let proxy = TcpProxy::decode(any.value.as_slice()).expect("tcp_proxy");
    assert_eq!(proxy.max_connect_attempts.map(|v| v.value), Some(3));
    // The single-target upstream to dc3 uses dc3's cluster directly, with three attempts too
    // (the next endpoint when one is dead).
    let single: Listener = decode(&r.listeners[2]);
    assert_eq!(tcp_cluster(&single, 0), dc3);
    let Some(filter::ConfigType::TypedConfig(any)) =
        &single.filter_chains[0].filters[0].config_type
    else {
        panic!("no typed config");
    };
    let proxy = TcpProxy::decode(any.value.as_slice()).expect("tcp_proxy");
    assert_eq!(proxy.max_connect_attempts.map(|v| v.value), Some(3));
    // Each attempt is bounded by 500 ms unless the resolver says otherwise.
    let target: Cluster = decode(&r.clusters[1]);
    assert_eq!(
        target.connect_timeout.map(|d| (d.seconds, d.nanos)),
        Some((0, 500_000_000))
    );

    let aggregate: Cluster = decode(&r.clusters[3]);
    let Some(cluster::ClusterDiscoveryType::ClusterType(custom)) =
        &aggregate.cluster_discovery_type
    else {
        panic!("not a custom cluster type");
    };
    assert_eq!(custom.name, "envoy.clusters.aggregate");
    let config = AggregateConfig::decode(
        custom
            .typed_config
            .as_ref()
            .expect("config")
            .value
            .as_slice(),
    )
    .expect("aggregate config");
    assert_eq!(config.clusters, [dc2, dc3], "the chain's order");
    assert_eq!(
        aggregate.lb_policy,
        cluster::LbPolicy::ClusterProvided as i32
    );
    for c in &r.clusters[1..3] {
        let c: Cluster = decode(c);
        let od = c
            .outlier_detection
            .expect("outlier detection on a chain's target");
        assert_eq!(od.max_ejection_percent.map(|v| v.value), Some(100));
        let tls: UpstreamTlsContext = typed(&c.transport_socket);
        assert_eq!(tls.sni, c.name, "each target keeps its own SNI");
    }
    let ProxyRole::Sidecar(s) = &mut snap.role else {
        unreachable!()
    };
    s.upstreams.reverse();
    let reversed = render(&snap);
    let sorted = |rs: &[Resource]| {
        let mut v = rs.to_vec();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    assert_eq!(sorted(&reversed.clusters), sorted(&r.clusters));
    // Without failover targets nothing changes.
    let plain = render(&sidecar());
    let c: Cluster = decode(&plain.clusters[1]);
    assert!(c.outlier_detection.is_none());
}

fn gateway(wan: &str) -> Snapshot {
    let mut s = base(ProxyRole::Gateway(GatewaySnapshot {
        lan: addr("10.0.0.11:8443"),
        wan: addr(wan),
        local_services: BTreeMap::from([("counting".into(), vec![addr("10.0.0.12:21000")])]),
        local_servers: vec![addr("10.0.0.10:8300")],
        remote_gateways: BTreeMap::from([("dc2".into(), vec![addr("192.0.2.2:8443")])]),
    }));
    s.proxy_id = "mesh-gateway".into();
    s
}

#[test]
fn gateway_routes_by_sni_without_decrypting() {
    let r = render(&gateway("10.0.0.11:8443"));
    assert_eq!(names(&r.listeners), ["mesh_gateway_lan:10.0.0.11:8443"]);
    let l: Listener = decode(&r.listeners[0]);
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let chains: Vec<(Vec<String>, String)> = (0..l.filter_chains.len())
        .map(|i| {
            let m = l.filter_chains[i]
                .filter_chain_match
                .clone()
                .expect("match");
            assert!(
                l.filter_chains[i].transport_socket.is_none(),
                "gateway decrypts"
            );
            (m.server_names, tcp_cluster(&l, i))
        })
        .collect();
    assert_eq!(
        chains,
        [
            (
                vec!["counting.default.dc1.internal.td.strait".to_string()],
                "counting.default.dc1.internal.td.strait".to_string()
            ),
            (
                vec![
                    "server.dc1.td.strait".to_string(),
                    "server.dc1.bootstrap.strait".to_string()
                ],
                "server.dc1.td.strait".to_string()
            ),
            (
                vec![
                    "*.dc2.internal.td.strait".to_string(),
                    "server.dc2.td.strait".to_string(),
                    "server.dc2.bootstrap.strait".to_string()
                ],
                "gateways.dc2.td.strait".to_string()
            ),
        ]
    );
    assert_eq!(names(&r.clusters), names(&r.endpoints));
    for c in &r.clusters {
        let c: Cluster = decode(c);
        assert!(c.transport_socket.is_none(), "{} re-encrypts", c.name);
    }
}

#[test]
fn gateway_listens_on_wan_when_it_differs() {
    let r = render(&gateway("192.0.2.1:8443"));
    assert_eq!(
        names(&r.listeners),
        [
            "mesh_gateway_lan:10.0.0.11:8443",
            "mesh_gateway_wan:192.0.2.1:8443"
        ]
    );
}

#[test]
fn same_snapshot_renders_the_same() {
    assert_eq!(render(&sidecar()), render(&sidecar()));
    assert_eq!(
        render(&gateway("10.0.0.11:8443")),
        render(&gateway("10.0.0.11:8443"))
    );
}

/// A `PassiveHealthCheck` of the upstream is rendered as given, on a single target too; the
/// chain's default values are not used then.
#[test]
fn passive_health_of_the_upstream_is_the_outlier_detection() {
    let mut snap = sidecar();
    let ProxyRole::Sidecar(s) = &mut snap.role else {
        unreachable!()
    };
    s.upstreams[0].passive_health = Some(strait_snapshot::PassiveHealth {
        interval_ms: 2_500,
        max_failures: 3,
        max_ejection_percent: 50,
        base_ejection_ms: 7_000,
        enforcing_consecutive_5xx: Some(80),
    });
    let r = render(&snap);
    let c: Cluster = decode(&r.clusters[1]);
    let od = c
        .outlier_detection
        .expect("outlier detection from the entry");
    assert_eq!(od.consecutive_5xx.map(|v| v.value), Some(3));
    assert_eq!(
        od.interval.map(|d| (d.seconds, d.nanos)),
        Some((2, 500_000_000))
    );
    assert_eq!(od.base_ejection_time.map(|d| d.seconds), Some(7));
    assert_eq!(od.max_ejection_percent.map(|v| v.value), Some(50));
    assert_eq!(od.enforcing_consecutive_5xx.map(|v| v.value), Some(80));
}

/// The resolver's `ConnectTimeout` bounds each connect attempt of the upstream's clusters.
#[test]
fn a_resolver_connect_timeout_bounds_each_attempt() {
    let mut snap = sidecar();
    let ProxyRole::Sidecar(s) = &mut snap.role else {
        unreachable!()
    };
    s.upstreams[0].connect_timeout_ms = Some(1500);
    let r = render(&snap);
    let sni = "counting.default.dc2.internal.td.strait";
    let at = names(&r.clusters)
        .iter()
        .position(|n| *n == sni)
        .expect("the target's cluster");
    let target: Cluster = decode(&r.clusters[at]);
    assert_eq!(
        target.connect_timeout.map(|d| (d.seconds, d.nanos)),
        Some((1, 500_000_000))
    );
}
