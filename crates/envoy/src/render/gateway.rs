//! A mesh gateway: `tls_inspector` reads the SNI, one filter chain per name forwards the
//! still-encrypted bytes with `tcp_proxy`. Mirrors `GatewaySnapshot::route`: local services
//! by their exact SNI, local servers by `server.<dc>.<td>` (and the bootstrap domain), and
//! every other DC by wildcard, since that DC's gateway decides what exists there.

use super::proto::{self, eds_cluster, listener, resource};
use super::Resources;
use envoy_types::pb::envoy::config::listener::v3::{
    listener_filter, FilterChain, FilterChainMatch, ListenerFilter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use std::net::SocketAddr;
use strait_identity::spiffe::{
    datacenter_sni_wildcard, server_sni, service_sni, DEFAULT_NAMESPACE,
};
use strait_snapshot::{GatewaySnapshot, Snapshot, BOOTSTRAP_TRUST_DOMAIN};

/// One SNI route: the names it answers and where it sends them.
struct Route {
    cluster: String,
    server_names: Vec<String>,
    endpoints: Vec<SocketAddr>,
}

fn routes(snapshot: &Snapshot, gw: &GatewaySnapshot) -> Vec<Route> {
    let (td, dc) = (&snapshot.trust_domain, &snapshot.datacenter);
    let mut routes: Vec<Route> = gw
        .local_services
        .iter()
        .map(|(service, endpoints)| {
            let sni = service_sni(service, DEFAULT_NAMESPACE, dc, td);
            Route {
                cluster: sni.clone(),
                server_names: vec![sni],
                endpoints: endpoints.clone(),
            }
        })
        .collect();
    routes.push(Route {
        cluster: server_sni(dc, td),
        server_names: vec![server_sni(dc, td), server_sni(dc, BOOTSTRAP_TRUST_DOMAIN)],
        endpoints: gw.local_servers.clone(),
    });
    for (remote, gateways) in gw.remote_gateways.iter().filter(|(r, _)| *r != dc) {
        routes.push(Route {
            cluster: format!("gateways.{remote}.{td}"),
            server_names: vec![
                datacenter_sni_wildcard(remote, td),
                server_sni(remote, td),
                server_sni(remote, BOOTSTRAP_TRUST_DOMAIN),
            ],
            endpoints: gateways.clone(),
        });
    }
    routes
}

/// Connect attempts per connection through a gateway.
const GATEWAY_CONNECT_ATTEMPTS: u32 = 3;

pub fn render(snapshot: &Snapshot, gw: &GatewaySnapshot, out: &mut Resources) {
    let routes = routes(snapshot, gw);
    let chains: Vec<FilterChain> = routes
        .iter()
        .map(|r| FilterChain {
            name: r.cluster.clone(),
            filter_chain_match: Some(FilterChainMatch {
                server_names: r.server_names.clone(),
                ..Default::default()
            }),
            // Up to 3 connect attempts: a dead gateway of the target DC is passed over for the
            // next within the same connection (Envoy's default is one attempt).
            filters: vec![proto::tcp_proxy_attempts(
                "mesh_gateway",
                &r.cluster,
                Some(GATEWAY_CONNECT_ATTEMPTS),
            )],
            ..Default::default()
        })
        .collect();
    let inspector = ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(proto::any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    };
    let mut addrs = vec![("lan", gw.lan)];
    if gw.wan != gw.lan {
        addrs.push(("wan", gw.wan));
    }
    for (which, addr) in addrs {
        let name = format!("mesh_gateway_{which}:{addr}");
        let mut l = listener(&name, addr, chains.clone());
        l.listener_filters = vec![inspector.clone()];
        out.listeners.push(resource(&name, &l));
    }
    for r in routes {
        proto::eds_pair(out, eds_cluster(&r.cluster), &r.endpoints);
    }
}
