//! Catalog -> the [`strait_snapshot::Instance`] list a snapshot is built from. This is where
//! Consul-shaped registrations (Kind strings, TaggedAddresses, checks) become the few facts
//! the data plane needs: kind, LAN/WAN address, destination, healthy.

use crate::catalog::Catalog;
use crate::read::instance_checks;
use crate::types::{kind, status, Service};
use std::net::{IpAddr, SocketAddr};
use strait_snapshot::{Instance, InstanceKind};

fn instance_kind(kind: &str) -> InstanceKind {
    match kind {
        kind::CONNECT_PROXY => InstanceKind::ConnectProxy,
        kind::MESH_GATEWAY => InstanceKind::MeshGateway,
        kind::STRAIT_SERVER => InstanceKind::Server,
        _ => InstanceKind::Typical,
    }
}

/// The WAN address of a gateway: `TaggedAddresses["wan"]`, whose empty parts default to the
/// LAN address's.
fn wan_addr(svc: &Service, lan: SocketAddr) -> Option<SocketAddr> {
    let wan = svc.tagged_addresses.get("wan")?;
    let ip = if wan.address.is_empty() {
        lan.ip()
    } else {
        wan.address.parse().ok()?
    };
    let port = if wan.port == 0 { lan.port() } else { wan.port };
    Some(SocketAddr::new(ip, port))
}

impl Catalog {
    /// Every service instance in this DC as the snapshot builder sees it. Healthy means no
    /// critical check (node-level or the service's). Instances whose address is not an IP
    /// (a hostname) are left out: the data plane dials IPs only.
    pub fn mesh_instances(&self) -> Vec<Instance> {
        let state = self.read_state();
        let mut out = Vec::new();
        for record in state.nodes.values() {
            for svc in record.services.values() {
                let host = if svc.address.is_empty() {
                    &record.node.address
                } else {
                    &svc.address
                };
                let Ok(ip) = host.parse::<IpAddr>() else {
                    tracing::debug!(
                        node = %record.node.node,
                        service = %svc.id,
                        address = %host,
                        "skipping mesh instance without an IP address"
                    );
                    continue;
                };
                let addr = SocketAddr::new(ip, svc.port);
                let checks = instance_checks(record, &svc.id);
                let healthy = checks.iter().all(|c| c.status != status::CRITICAL);
                let kind = instance_kind(&svc.kind);
                // A sidecar is selected (resolver subsets) by the instance it fronts.
                let fronted = svc
                    .proxy
                    .as_ref()
                    .filter(|_| kind == InstanceKind::ConnectProxy)
                    .and_then(|p| record.services.get(&p.destination_service_id));
                let passing = checks
                    .iter()
                    .chain(&fronted.map_or_else(Vec::new, |f| instance_checks(record, &f.id)))
                    .all(|c| c.status == status::PASSING);
                let labelled = fronted.unwrap_or(svc);
                out.push(Instance {
                    node: record.node.node.clone(),
                    service_id: svc.id.clone(),
                    service_name: svc.service.clone(),
                    kind,
                    addr,
                    wan: wan_addr(svc, addr),
                    destination_service: svc
                        .proxy
                        .as_ref()
                        .filter(|_| kind == InstanceKind::ConnectProxy)
                        .map(|p| p.destination_service_name.clone()),
                    healthy,
                    passing,
                    tags: labelled.tags.clone(),
                    meta: labelled.meta.clone(),
                    node_meta: record.node.meta.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Check, Node, ProxyConfig, ServiceAddress};

    fn node(name: &str, address: &str) -> Node {
        Node {
            node: name.into(),
            address: address.into(),
            ..Node::default()
        }
    }

    fn check(id: &str, service_id: &str, status: &str) -> Check {
        Check {
            check_id: id.into(),
            service_id: service_id.into(),
            status: status.into(),
            ..Check::default()
        }
    }

    fn sidecar(id: &str, dest: &str, port: u16) -> Service {
        Service {
            id: id.into(),
            service: format!("{dest}-sidecar-proxy"),
            kind: kind::CONNECT_PROXY.into(),
            port,
            proxy: Some(ProxyConfig {
                destination_service_name: dest.into(),
                ..ProxyConfig::default()
            }),
            ..Service::default()
        }
    }

    #[test]
    fn maps_kinds_addresses_and_health() {
        let cat = Catalog::replicated();
        let gw = Service {
            id: "mesh-gateway".into(),
            service: "mesh-gateway".into(),
            kind: kind::MESH_GATEWAY.into(),
            address: "10.0.0.20".into(),
            port: 8443,
            tagged_addresses: [(
                "wan".to_string(),
                ServiceAddress {
                    address: "192.0.2.1".into(),
                    port: 0,
                },
            )]
            .into(),
            ..Service::default()
        };
        let server = Service {
            id: "strait-server".into(),
            service: "strait-server".into(),
            kind: kind::STRAIT_SERVER.into(),
            port: 8300,
            ..Service::default()
        };
        let app = Service {
            id: "web".into(),
            service: "web".into(),
            port: 8080,
            ..Service::default()
        };
        cat.register(
            node("n1", "10.0.0.1"),
            vec![gw, server, app, sidecar("web-sidecar-proxy", "web", 21000)],
            vec![
                check("gw-alive", "mesh-gateway", status::PASSING),
                check("server-warn", "strait-server", status::WARNING),
                check("sidecar-dead", "web-sidecar-proxy", status::CRITICAL),
            ],
        )
        .expect("register");
        let by_id = |id: &str| {
            cat.mesh_instances()
                .into_iter()
                .find(|i| i.service_id == id)
                .expect(id)
        };
        let gw = by_id("mesh-gateway");
        assert_eq!(gw.kind, InstanceKind::MeshGateway);
        assert_eq!(gw.addr, "10.0.0.20:8443".parse().expect("addr"));
        assert_eq!(gw.wan, Some("192.0.2.1:8443".parse().expect("addr")));
        assert!(gw.healthy);
        let server = by_id("strait-server");
        assert_eq!(server.kind, InstanceKind::Server);
        assert_eq!(server.addr, "10.0.0.1:8300".parse().expect("addr"));
        assert!(server.healthy, "warning is not critical");
        assert_eq!(server.wan, None);
        let app = by_id("web");
        assert_eq!((app.kind, app.healthy), (InstanceKind::Typical, true));
        assert_eq!(app.destination_service, None);
        let sc = by_id("web-sidecar-proxy");
        assert_eq!(sc.kind, InstanceKind::ConnectProxy);
        assert_eq!(sc.destination_service.as_deref(), Some("web"));
        assert!(!sc.healthy, "own critical check");
    }

    /// A sidecar carries the tags and meta of the service instance it fronts (what resolver
    /// subsets select on) and is passing only if that instance is too.
    #[test]
    fn a_sidecar_is_labelled_by_the_instance_it_fronts() {
        let cat = Catalog::replicated();
        let app = |id: &str, tag: &str| Service {
            id: id.into(),
            service: "api".into(),
            port: 8080,
            tags: vec![tag.into()],
            meta: [("version".to_string(), tag.to_string())].into(),
            ..Service::default()
        };
        let fronting = |id: &str, app_id: &str, port: u16| {
            let mut s = sidecar(id, "api", port);
            if let Some(p) = s.proxy.as_mut() {
                p.destination_service_id = app_id.into();
            }
            s.tags = vec!["own".into()];
            s
        };
        let mut n1 = node("n1", "10.0.0.1");
        n1.meta = [("zone".to_string(), "a".to_string())].into();
        cat.register(
            n1,
            vec![
                app("api-1", "blue"),
                app("api-2", "green"),
                fronting("s1", "api-1", 21000),
                fronting("s2", "api-2", 21001),
                fronting("s3", "gone", 21002),
            ],
            vec![check("api-2-warn", "api-2", status::WARNING)],
        )
        .expect("register");
        let by_id = |id: &str| {
            cat.mesh_instances()
                .into_iter()
                .find(|i| i.service_id == id)
                .expect(id)
        };
        let s1 = by_id("s1");
        assert_eq!(s1.tags, ["blue"]);
        assert_eq!(s1.meta["version"], "blue");
        assert_eq!(s1.node_meta["zone"], "a");
        assert!(s1.healthy && s1.passing);
        let s2 = by_id("s2");
        assert_eq!(s2.tags, ["green"]);
        assert!(s2.healthy && !s2.passing, "its app's check is in warning");
        // Without its instance on the node: its own labels.
        assert_eq!(by_id("s3").tags, ["own"]);
    }

    #[test]
    fn node_check_applies_to_every_service_and_hostnames_are_skipped() {
        let cat = Catalog::replicated();
        cat.register(
            node("n1", "10.0.0.1"),
            vec![sidecar("a", "api", 21000), sidecar("b", "db", 21001)],
            vec![check("serfHealth", "", status::CRITICAL)],
        )
        .expect("register");
        cat.register(
            node("n2", "host.example"),
            vec![sidecar("c", "api", 21000)],
            vec![],
        )
        .expect("register");
        let instances = cat.mesh_instances();
        assert_eq!(instances.len(), 2, "{instances:?}");
        assert!(instances.iter().all(|i| !i.healthy));
        cat.update_check_status("n1", "serfHealth", status::PASSING, "")
            .expect("update");
        assert!(cat.mesh_instances().iter().all(|i| i.healthy));
    }
}
