//! The static Envoy bootstrap: admin on loopback, and one cluster, the agent's ADS address,
//! from which everything else (listeners, clusters, endpoints, secrets) is fetched. The node
//! id is the proxy id, which tells the ADS stream whose snapshot to serve.

use serde_json::{json, Value};
use std::net::SocketAddr;

/// Name of the static cluster that reaches the agent's ADS server.
pub const ADS_CLUSTER: &str = "strait_agent";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// The proxy id in the agent (`web-sidecar-proxy`, `mesh-gateway`).
    pub proxy_id: String,
    /// Envoy's node cluster: the service the proxy fronts, or the gateway's service name.
    pub cluster: String,
    /// Envoy's admin endpoint; must be loopback.
    pub admin: SocketAddr,
    /// The agent's `grpc_addr`.
    pub ads: SocketAddr,
    /// The proxy's ACL token, sent on the ADS stream as gRPC metadata `x-consul-token` (the
    /// agent checks it with ACLs on). The bootstrap then holds a secret.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootstrapError {
    #[error("--admin {0}: Envoy's admin endpoint only listens on loopback (127.0.0.0/8 or ::1)")]
    AdminNotLoopback(SocketAddr),
    #[error("--grpc {0}: the agent's ADS address is loopback only (its grpc_addr)")]
    AdsNotLoopback(SocketAddr),
    #[error("the proxy id is empty")]
    EmptyProxyId,
}

fn socket(addr: SocketAddr) -> Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

impl Bootstrap {
    /// The bootstrap as JSON (which Envoy also reads as YAML).
    pub fn to_json(&self) -> Result<Value, BootstrapError> {
        if !self.admin.ip().is_loopback() {
            return Err(BootstrapError::AdminNotLoopback(self.admin));
        }
        if !self.ads.ip().is_loopback() {
            return Err(BootstrapError::AdsNotLoopback(self.ads));
        }
        if self.proxy_id.is_empty() {
            return Err(BootstrapError::EmptyProxyId);
        }
        let ads = json!({ "ads": {}, "resource_api_version": "V3" });
        let mut grpc = json!({ "envoy_grpc": { "cluster_name": ADS_CLUSTER } });
        if let Some(token) = &self.token {
            grpc["initial_metadata"] = json!([{ "key": "x-consul-token", "value": token }]);
        }
        Ok(json!({
            "node": { "id": self.proxy_id, "cluster": self.cluster },
            "admin": { "address": socket(self.admin) },
            "dynamic_resources": {
                "ads_config": {
                    "api_type": "GRPC",
                    "transport_api_version": "V3",
                    "grpc_services": [grpc],
                },
                "cds_config": ads,
                "lds_config": ads,
            },
            "static_resources": {
                "clusters": [{
                    "name": ADS_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": { "http2_protocol_options": {} },
                        }
                    },
                    "load_assignment": {
                        "cluster_name": ADS_CLUSTER,
                        "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(self.ads) } }] }],
                    },
                }],
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrap() -> Bootstrap {
        Bootstrap {
            proxy_id: "web-sidecar-proxy".into(),
            cluster: "web".into(),
            admin: "127.0.0.1:19000".parse().expect("addr"),
            ads: "127.0.0.1:8502".parse().expect("addr"),
            token: None,
        }
    }

    #[test]
    fn names_the_node_and_the_agent() {
        let j = bootstrap().to_json().expect("valid");
        assert_eq!(j["node"]["id"], "web-sidecar-proxy");
        assert_eq!(j["node"]["cluster"], "web");
        assert_eq!(j["admin"]["address"]["socket_address"]["port_value"], 19000);
        let ep = &j["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
        assert_eq!(ep["address"], "127.0.0.1");
        assert_eq!(ep["port_value"], 8502);
        assert_eq!(j["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        let grpc = &j["dynamic_resources"]["ads_config"]["grpc_services"][0];
        assert_eq!(grpc["envoy_grpc"]["cluster_name"], ADS_CLUSTER);
        assert!(
            grpc.get("initial_metadata").is_none(),
            "no token, no metadata"
        );
    }

    #[test]
    fn a_token_travels_as_grpc_metadata() {
        let mut b = bootstrap();
        b.token = Some("5d1c0a8e-3b7f-4e2a-9c6d-0f8e7a6b5c4d".into());
        let j = b.to_json().expect("valid");
        let grpc = &j["dynamic_resources"]["ads_config"]["grpc_services"][0];
        assert_eq!(
            grpc["initial_metadata"],
            json!([{ "key": "x-consul-token", "value": "5d1c0a8e-3b7f-4e2a-9c6d-0f8e7a6b5c4d" }])
        );
    }

    #[test]
    fn refuses_non_loopback() {
        let mut b = bootstrap();
        b.admin = "0.0.0.0:19000".parse().expect("addr");
        assert_eq!(
            b.to_json().expect_err("public admin"),
            BootstrapError::AdminNotLoopback(b.admin)
        );
        let mut b = bootstrap();
        b.ads = "10.0.0.1:8502".parse().expect("addr");
        assert!(b
            .to_json()
            .expect_err("public ads")
            .to_string()
            .contains("10.0.0.1:8502"));
        let mut b = bootstrap();
        b.proxy_id.clear();
        assert_eq!(b.to_json(), Err(BootstrapError::EmptyProxyId));
    }
}
