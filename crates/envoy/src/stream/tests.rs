use super::*;
use crate::render::Resource;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;

fn res(name: &str) -> Resource {
    Resource {
        name: name.into(),
        body: Any {
            type_url: String::new(),
            value: name.as_bytes().to_vec(),
        },
    }
}

fn rendered(version: u64) -> Rendered {
    Rendered {
        version,
        resources: Resources {
            listeners: vec![res("l1")],
            clusters: vec![res("c1"), res("c2")],
            endpoints: vec![res("c1"), res("c2")],
            secrets: vec![res("leaf"), res("roots")],
        },
    }
}

fn req(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: "web-sidecar-proxy".into(),
            ..Default::default()
        }),
        type_url: type_url.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn sent_names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| String::from_utf8(a.value.clone()).expect("utf8"))
        .collect()
}

#[test]
fn first_request_then_ack() {
    let mut st = StreamState::default();
    let mut out = Vec::new();
    let snap = rendered(5);
    let o = st.on_request(&req(CLUSTER_TYPE, &[], "", ""), Some(&snap), &mut out);
    assert_eq!(o, RequestOutcome::Answered);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].version_info, "5");
    assert_eq!(sent_names(&out[0]), ["c1", "c2"]);
    let nonce = out[0].nonce.clone();
    out.clear();
    let o = st.on_request(&req(CLUSTER_TYPE, &[], "5", &nonce), Some(&snap), &mut out);
    assert_eq!(o, RequestOutcome::Acked);
    assert!(out.is_empty());
}

#[test]
fn endpoints_and_secrets_are_sent_by_name() {
    let mut st = StreamState::default();
    let mut out = Vec::new();
    let snap = rendered(5);
    st.on_request(&req(ENDPOINT_TYPE, &["c2"], "", ""), Some(&snap), &mut out);
    assert_eq!(sent_names(&out[0]), ["c2"]);
    // New names with the same version (a new cluster after CDS) get an answer.
    let nonce = out[0].nonce.clone();
    out.clear();
    let o = st.on_request(
        &req(ENDPOINT_TYPE, &["c2", "c1"], "5", &nonce),
        Some(&snap),
        &mut out,
    );
    assert_eq!(o, RequestOutcome::Answered);
    assert_eq!(sent_names(&out[0]), ["c1", "c2"]);
    out.clear();
    st.on_request(&req(SECRET_TYPE, &["leaf"], "", ""), Some(&snap), &mut out);
    assert_eq!(sent_names(&out[0]), ["leaf"]);
}

#[test]
fn new_snapshot_pushes_every_subscribed_type_in_order() {
    let mut st = StreamState::default();
    let mut out = Vec::new();
    let snap = rendered(5);
    for t in [LISTENER_TYPE, ENDPOINT_TYPE, CLUSTER_TYPE, SECRET_TYPE] {
        st.on_request(&req(t, &["c1", "leaf"], "", ""), Some(&snap), &mut out);
    }
    out.clear();
    st.on_snapshot(&rendered(6), &mut out);
    let types: Vec<&str> = out.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(
        types,
        [SECRET_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE]
    );
    assert!(out.iter().all(|r| r.version_info == "6"));
    let nonces: std::collections::BTreeSet<&str> = out.iter().map(|r| r.nonce.as_str()).collect();
    assert_eq!(nonces.len(), 4, "nonces are unique");
    out.clear();
    st.on_snapshot(&rendered(6), &mut out);
    assert!(out.is_empty(), "the same version is not sent twice");
}

#[test]
fn nack_is_not_answered_with_the_same_version() {
    let mut st = StreamState::default();
    let mut out = Vec::new();
    let snap = rendered(5);
    st.on_request(&req(LISTENER_TYPE, &[], "", ""), Some(&snap), &mut out);
    let nonce = out[0].nonce.clone();
    out.clear();
    let mut nack = req(LISTENER_TYPE, &[], "", &nonce);
    nack.error_detail = Some(Status {
        code: 3,
        message: "bad listener".into(),
        ..Default::default()
    });
    let o = st.on_request(&nack, Some(&snap), &mut out);
    assert_eq!(
        o,
        RequestOutcome::Rejected {
            version: String::new(),
            message: "bad listener".into()
        }
    );
    assert!(out.is_empty());
    st.on_snapshot(&rendered(6), &mut out);
    assert_eq!(out.len(), 1, "the next version is sent");
}

#[test]
fn stale_nonce_and_unknown_types_are_ignored() {
    let mut st = StreamState::default();
    let mut out = Vec::new();
    let snap = rendered(5);
    st.on_request(&req(CLUSTER_TYPE, &[], "", ""), Some(&snap), &mut out);
    out.clear();
    let o = st.on_request(
        &req(CLUSTER_TYPE, &["x"], "4", "old"),
        Some(&snap),
        &mut out,
    );
    assert_eq!(o, RequestOutcome::Stale);
    let o = st.on_request(
        &req(
            "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            &[],
            "",
            "",
        ),
        Some(&snap),
        &mut out,
    );
    assert_eq!(o, RequestOutcome::UnknownType);
    assert!(out.is_empty());
}

#[test]
fn requests_before_the_first_snapshot_are_answered_when_it_arrives() {
    let mut st = StreamState::default();
    let mut out = Vec::new();
    let o = st.on_request(&req(CLUSTER_TYPE, &[], "", ""), None, &mut out);
    assert_eq!(o, RequestOutcome::Waiting);
    assert!(out.is_empty());
    st.on_snapshot(&rendered(1), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].type_url, CLUSTER_TYPE);
}
