//! Builders for the Envoy protobuf messages the renderers share. Only shapes live here;
//! which listener gets what is decided in `sidecar` and `gateway`.

use super::{Resource, LEAF_SECRET, ROOTS_SECRET};
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster, OutlierDetection};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, data_source, socket_address, transport_socket, Address,
    AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::clusters::aggregate::v3::ClusterConfig as AggregateConfig;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, secret, CertificateValidationContext, CommonTlsContext, SdsSecretConfig,
    Secret, TlsCertificate,
};
use envoy_types::pb::google::protobuf::{Any, Duration, UInt32Value};
use prost::Name;
use std::net::SocketAddr;
use strait_snapshot::Leaf;

pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Packs a message into `Any` under its own type URL.
pub fn any<M: Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

pub fn resource<M: Name>(name: &str, message: &M) -> Resource {
    Resource {
        name: name.to_string(),
        body: any(message),
    }
}

pub fn address(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// Resources that follow the ADS stream itself.
pub fn ads_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ads_source()),
    }
}

fn inline(text: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineString(text.to_string())),
        ..Default::default()
    })
}

pub fn leaf_secret(name: &str, leaf: &Leaf) -> Resource {
    let secret = Secret {
        name: name.to_string(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&leaf.cert_chain_pem),
            private_key: inline(&leaf.key_pem.0),
            ..Default::default()
        })),
    };
    resource(name, &secret)
}

pub fn roots_secret(name: &str, roots_pem: &[String]) -> Resource {
    let bundle: String = roots_pem
        .iter()
        .map(|r| format!("{}\n", r.trim_end()))
        .collect();
    let secret = Secret {
        name: name.to_string(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: inline(&bundle),
                ..Default::default()
            },
        )),
    };
    resource(name, &secret)
}

/// The proxy's leaf as its certificate, the federation's roots as trust anchors, and any
/// further checks of the peer (`peer`, e.g. its exact SPIFFE ID) on top.
pub fn common_tls(peer: CertificateValidationContext) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(LEAF_SECRET)],
        validation_context_type: Some(
            common_tls_context::ValidationContextType::CombinedValidationContext(
                common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(peer),
                    validation_context_sds_secret_config: Some(sds(ROOTS_SECRET)),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

pub fn transport_socket<M: Name>(tls: &M) -> TransportSocket {
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(tls))),
    }
}

/// A `tcp_proxy` network filter to `cluster`.
pub fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Filter {
    tcp_proxy_attempts(stat_prefix, cluster, None)
}

/// A `tcp_proxy` making up to `attempts` connect attempts per connection (Envoy's default: 1).
pub fn tcp_proxy_attempts(stat_prefix: &str, cluster: &str, attempts: Option<u32>) -> Filter {
    let config = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        max_connect_attempts: attempts.map(|value| UInt32Value { value }),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&config))),
    }
}

pub fn listener(name: &str, addr: SocketAddr, filter_chains: Vec<FilterChain>) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(address(addr)),
        stat_prefix: name.replace([':', '.'], "_"),
        filter_chains,
        ..Default::default()
    }
}

pub fn load_assignment(cluster: &str, endpoints: &[SocketAddr]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints
                .iter()
                .map(|a| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(address(*a)),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

const CONNECT_TIMEOUT: Duration = Duration {
    seconds: 5,
    nanos: 0,
};

/// `ms` milliseconds as a protobuf duration.
pub fn millis(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A cluster whose endpoints come over EDS under the cluster's own name.
pub fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_source()),
            service_name: name.to_string(),
        }),
        connect_timeout: Some(CONNECT_TIMEOUT),
        ..Default::default()
    }
}

/// A cluster with its endpoints inline (the local app: never changes without the listener).
pub fn static_cluster(name: &str, endpoint: SocketAddr) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(load_assignment(name, &[endpoint])),
        connect_timeout: Some(CONNECT_TIMEOUT),
        ..Default::default()
    }
}

/// Envoy's aggregate cluster over `clusters`: the first with healthy endpoints gets the
/// connections (priority by order).
pub fn aggregate_cluster(name: &str, clusters: Vec<String>) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::ClusterType(
            cluster::CustomClusterType {
                name: "envoy.clusters.aggregate".to_string(),
                typed_config: Some(any(&AggregateConfig { clusters })),
            },
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(CONNECT_TIMEOUT),
        ..Default::default()
    }
}

/// Passive health of a failover target: an endpoint (a sidecar or a gateway) is ejected
/// after two consecutive connect or handshake failures (for TCP, Envoy counts those as
/// 5xx), for 5 s at first; every endpoint of a target may be ejected, so the chain moves on.
pub fn outlier_detection() -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: Some(UInt32Value { value: 2 }),
        interval: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        base_ejection_time: Some(Duration {
            seconds: 5,
            nanos: 0,
        }),
        max_ejection_percent: Some(UInt32Value { value: 100 }),
        ..Default::default()
    }
}

/// An EDS cluster and its endpoints, pushed together.
pub fn eds_pair(out: &mut super::Resources, cluster: Cluster, endpoints: &[SocketAddr]) {
    out.endpoints.push(resource(
        &cluster.name,
        &load_assignment(&cluster.name, endpoints),
    ));
    out.clusters.push(resource(&cluster.name, &cluster));
}
