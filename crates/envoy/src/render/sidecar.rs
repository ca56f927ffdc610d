//! A sidecar's listeners and clusters: inbound mTLS -> local app, and one outbound
//! `tcp_proxy` listener per upstream -> mTLS with the upstream's SNI and SPIFFE ID.

use super::proto::{self, common_tls, eds_cluster, listener, resource, tcp_proxy};
use super::Resources;
use envoy_types::pb::envoy::config::cluster::v3::OutlierDetection;
use envoy_types::pb::envoy::config::listener::v3::FilterChain;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    subject_alt_name_matcher::SanType, CertificateValidationContext, DownstreamTlsContext,
    SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{BoolValue, Duration, UInt32Value};
use std::collections::BTreeSet;
use strait_snapshot::{SidecarSnapshot, UpstreamSnapshot, UpstreamTarget};

/// Name of the cluster that reaches the local app.
pub const LOCAL_APP: &str = "local_app";

pub fn render(sidecar: &SidecarSnapshot, out: &mut Resources) {
    // Any certificate chaining to the roots completes the handshake; intentions (RBAC on
    // the caller's SPIFFE ID) then decide whether the connection reaches the app.
    let inbound = DownstreamTlsContext {
        common_tls_context: Some(common_tls(CertificateValidationContext::default())),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    let chain = FilterChain {
        filters: super::rbac::filter(&sidecar.intentions)
            .into_iter()
            .chain([tcp_proxy("public_listener", LOCAL_APP)])
            .collect(),
        transport_socket: Some(proto::transport_socket(&inbound)),
        ..Default::default()
    };
    let name = format!("public_listener:{}", sidecar.public_listener);
    out.listeners.push(resource(
        &name,
        &listener(&name, sidecar.public_listener, vec![chain]),
    ));
    out.clusters.push(resource(
        LOCAL_APP,
        &proto::static_cluster(LOCAL_APP, sidecar.local_app),
    ));
    // A target of any chain gets outlier detection, whichever upstream renders it first.
    let in_chains: BTreeSet<&str> = sidecar
        .upstreams
        .iter()
        .filter(|u| !u.failover.is_empty())
        .flat_map(|u| u.targets().map(|t| t.sni.as_str()))
        .collect();
    for upstream in &sidecar.upstreams {
        outbound(upstream, &in_chains, out);
    }
}

/// The outlier detection of a target's cluster: the upstream's `PassiveHealthCheck` when the
/// `service-defaults` entry gives one (consecutive connect or handshake failures are 5xx
/// for TCP in Envoy), else the chain default ([`proto::outlier_detection`]) for a target of
/// a chain, else none.
fn outlier(upstream: &UpstreamSnapshot, in_chain: bool) -> Option<OutlierDetection> {
    let Some(p) = &upstream.passive_health else {
        return in_chain.then(proto::outlier_detection);
    };
    let duration = proto::millis;
    Some(OutlierDetection {
        consecutive_5xx: Some(UInt32Value {
            value: p.max_failures,
        }),
        interval: Some(duration(p.interval_ms)),
        base_ejection_time: Some(duration(p.base_ejection_ms)),
        max_ejection_percent: Some(UInt32Value {
            value: p.max_ejection_percent,
        }),
        enforcing_consecutive_5xx: p
            .enforcing_consecutive_5xx
            .map(|value| UInt32Value { value }),
        ..Default::default()
    })
}

/// Tries per connection, for every upstream: through a chain, enough for a first attempt to
/// fail, the failing target's endpoint to be ejected ([`outlier_detection`]) and the next
/// target to serve; for a single target, the next endpoint (one of two local gateways killed,
/// hashicorp/consul#15703) rather than Envoy's default of one attempt.
const CONNECT_ATTEMPTS: u32 = 3;

/// Each connect attempt's deadline unless the resolver's `ConnectTimeout` says otherwise: the
/// built-in sidecar's per-attempt default, well under a client's patience (Envoy's own
/// default is 5 s, which a hung endpoint would cost every connection).
const ATTEMPT_TIMEOUT_MS: u64 = 500;

/// Name of the aggregate cluster of a chain whose primary target has SNI `primary_sni`.
pub fn chain_cluster_name(primary_sni: &str) -> String {
    format!("failover:{primary_sni}")
}

/// Each target's cluster is named by its SNI, unique per (service, DC), and rendered once
/// however many upstreams reach it. A single target is the listener's cluster itself; a
/// `service-resolver` chain is an aggregate cluster over its targets' clusters in order
/// (Envoy sends to the first whose endpoints are healthy), whose targets eject an endpoint
/// after consecutive connect or handshake failures, so a connection moves to the next target
/// within its connect attempts and later ones go there at once.
fn outbound(upstream: &UpstreamSnapshot, in_chains: &BTreeSet<&str>, out: &mut Resources) {
    let targets: Vec<&UpstreamTarget> = upstream.targets().collect();
    let chained = targets.len() > 1;
    let cluster_name = if chained {
        chain_cluster_name(&upstream.primary.sni)
    } else {
        upstream.primary.sni.clone()
    };
    let name = format!("upstream:{}", upstream.bind);
    let proxy = proto::tcp_proxy_attempts(
        &format!("upstream_{}", upstream.destination),
        &cluster_name,
        Some(CONNECT_ATTEMPTS),
    );
    let chain = FilterChain {
        filters: vec![proxy],
        ..Default::default()
    };
    out.listeners.push(resource(
        &name,
        &listener(&name, upstream.bind, vec![chain]),
    ));
    let timeout = proto::millis(upstream.connect_timeout_ms.unwrap_or(ATTEMPT_TIMEOUT_MS));
    for target in &targets {
        let outlier = outlier(upstream, in_chains.contains(target.sni.as_str()));
        target_cluster(target, outlier, timeout, out);
    }
    if chained && !rendered(out, &cluster_name) {
        let order = targets.iter().map(|t| t.sni.clone()).collect();
        out.clusters.push(resource(
            &cluster_name,
            &proto::aggregate_cluster(&cluster_name, order),
        ));
    }
}

fn rendered(out: &Resources, cluster: &str) -> bool {
    out.clusters.iter().any(|c| c.name == cluster)
}

/// The cluster of one target: mTLS with its SNI, accepting only its exact SPIFFE ID, each
/// connect attempt bounded by `timeout` (the first upstream naming a target sets it).
fn target_cluster(
    target: &UpstreamTarget,
    outlier: Option<OutlierDetection>,
    timeout: Duration,
    out: &mut Resources,
) {
    if rendered(out, &target.sni) {
        return;
    }
    let exact_id = SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(
                target.spiffe_id.clone(),
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tls = UpstreamTlsContext {
        common_tls_context: Some(common_tls(CertificateValidationContext {
            match_typed_subject_alt_names: vec![exact_id],
            ..Default::default()
        })),
        sni: target.sni.clone(),
        ..Default::default()
    };
    let mut cluster = eds_cluster(&target.sni);
    cluster.transport_socket = Some(proto::transport_socket(&tls));
    cluster.outlier_detection = outlier;
    cluster.connect_timeout = Some(timeout);
    proto::eds_pair(out, cluster, &target.endpoints);
}
