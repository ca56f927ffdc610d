//! A sidecar's listeners and clusters: inbound mTLS -> local app, and one outbound
//! `tcp_proxy` listener per upstream -> mTLS with the upstream's SNI and SPIFFE ID.

use super::proto::{self, common_tls, eds_cluster, listener, resource, tcp_proxy};
use super::Resources;
use envoy_types::pb::envoy::config::listener::v3::FilterChain;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    subject_alt_name_matcher::SanType, CertificateValidationContext, DownstreamTlsContext,
    SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::BoolValue;
use strait_snapshot::{SidecarSnapshot, UpstreamSnapshot};

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
    for upstream in &sidecar.upstreams {
        outbound(upstream, out);
    }
}

/// The upstream's cluster is named by its SNI, unique per (service, DC). Only the primary
/// target is rendered: Envoy does not fail over to a resolver's failover targets yet.
fn outbound(upstream: &UpstreamSnapshot, out: &mut Resources) {
    let target = &upstream.primary;
    let cluster_name = target.sni.as_str();
    let name = format!("upstream:{}", upstream.bind);
    let chain = FilterChain {
        filters: vec![tcp_proxy(
            &format!("upstream_{}", upstream.destination),
            cluster_name,
        )],
        ..Default::default()
    };
    out.listeners.push(resource(
        &name,
        &listener(&name, upstream.bind, vec![chain]),
    ));
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
    let mut cluster = eds_cluster(cluster_name);
    cluster.transport_socket = Some(proto::transport_socket(&tls));
    proto::eds_pair(out, cluster, &target.endpoints);
}
