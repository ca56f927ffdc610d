//! The JSON form: flat and unchanged (a literal in the old form still parses), both kinds
//! round-trip, and a `kind` whose section is missing or foreign is refused by name.

use super::*;
use crate::types::{GatewayMode, IntentionRule, Intentions, Secret};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().expect("test address")
}

/// A snapshot as an agent serves it (the form proxies, files and bench/ use).
fn sidecar_json() -> Value {
    json!({
        "version": 4,
        "proxy_id": "web-sidecar-proxy",
        "kind": "sidecar",
        "trust_domain": "a1b2c3d4.strait",
        "datacenter": "dc1",
        "service": "web",
        "leaf": {
            "cert_chain_pem": "CERT",
            "key_pem": "KEY",
            "spiffe_id": "spiffe://a1b2c3d4.strait/ns/default/dc/dc1/svc/web",
            "serial": "01",
            "not_after_unix": 1_700_000_000
        },
        "roots_pem": ["ROOT"],
        "sidecar": {
            "public_listener": "10.0.0.1:21000",
            "local_app": "127.0.0.1:8080",
            "upstreams": [{
                "destination": "counting",
                "datacenter": "dc2",
                "bind": "127.0.0.1:5000",
                "sni": "counting.default.dc2.internal.a1b2c3d4.strait",
                "spiffe_id": "spiffe://a1b2c3d4.strait/ns/default/dc/dc2/svc/counting",
                "mode": "local",
                "endpoints": ["10.0.0.20:8443"]
            }],
            "intentions": {"rules": [{"source": "*", "allow": false}]}
        },
        "gateway": null
    })
}

fn gateway_json() -> Value {
    let mut v = sidecar_json();
    v["proxy_id"] = json!("mesh-gateway");
    v["kind"] = json!("mesh-gateway");
    v["service"] = json!("mesh-gateway");
    v["sidecar"] = Value::Null;
    v["gateway"] = json!({
        "lan": "10.0.0.20:8443",
        "wan": "192.0.2.1:8443",
        "local_services": {"api": ["10.0.0.2:21000"]},
        "local_servers": ["10.0.0.10:8300"],
        "remote_gateways": {"dc2": ["192.0.2.2:8443"]}
    });
    v
}

fn parse(v: Value) -> Result<Snapshot, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[test]
fn sidecar_form_parses_into_the_sidecar_role_and_writes_back_the_same() {
    let snap = parse(sidecar_json()).expect("sidecar");
    assert_eq!(snap.kind(), ProxyKind::Sidecar);
    assert_eq!(snap.leaf.key_pem, Secret("KEY".into()));
    let ProxyRole::Sidecar(sidecar) = &snap.role else {
        panic!("not a sidecar: {snap:?}")
    };
    assert_eq!(sidecar.local_app, addr("127.0.0.1:8080"));
    assert_eq!(sidecar.upstreams[0].mode, GatewayMode::Local);
    assert!(!sidecar.intentions.allows("anyone"));
    assert_eq!(serde_json::to_value(&snap).expect("json"), sidecar_json());
}

#[test]
fn gateway_form_parses_into_the_gateway_role_and_writes_back_the_same() {
    let snap = parse(gateway_json()).expect("gateway");
    assert_eq!(snap.kind(), ProxyKind::MeshGateway);
    let expected = GatewaySnapshot {
        lan: addr("10.0.0.20:8443"),
        wan: addr("192.0.2.1:8443"),
        local_services: BTreeMap::from([("api".into(), vec![addr("10.0.0.2:21000")])]),
        local_servers: vec![addr("10.0.0.10:8300")],
        remote_gateways: BTreeMap::from([("dc2".into(), vec![addr("192.0.2.2:8443")])]),
    };
    assert_eq!(snap.role, ProxyRole::Gateway(expected));
    assert_eq!(serde_json::to_value(&snap).expect("json"), gateway_json());
    let text = serde_json::to_string(&snap).expect("text");
    assert_eq!(serde_json::from_str::<Snapshot>(&text).expect("back"), snap);
}

#[test]
fn the_other_kinds_section_may_be_absent() {
    let mut v = sidecar_json();
    v.as_object_mut().expect("object").remove("gateway");
    assert_eq!(parse(v), parse(sidecar_json()));
}

#[test]
fn a_kind_without_its_section_is_refused() {
    let mut v = sidecar_json();
    v["sidecar"] = Value::Null;
    let err = parse(v).expect_err("no sidecar section");
    assert_eq!(
        err,
        "snapshot of proxy \"web-sidecar-proxy\": kind sidecar needs field \"sidecar\""
    );
    let mut v = gateway_json();
    v.as_object_mut().expect("object").remove("gateway");
    let err = parse(v).expect_err("no gateway section");
    assert_eq!(
        err,
        "snapshot of proxy \"mesh-gateway\": kind mesh-gateway needs field \"gateway\""
    );
}

#[test]
fn a_kind_with_the_other_kinds_section_is_refused() {
    let mut v = sidecar_json();
    v["gateway"] = gateway_json()["gateway"].clone();
    let err = parse(v).expect_err("both sections");
    assert_eq!(
        err,
        "snapshot of proxy \"web-sidecar-proxy\": field \"gateway\" is not allowed with kind sidecar"
    );
    // A gateway's JSON relabelled as a sidecar's: the sidecar section is missing, and the
    // gateway's is foreign; the foreign one is named.
    let mut v = gateway_json();
    v["kind"] = json!("sidecar");
    assert!(parse(v)
        .expect_err("relabelled")
        .contains("field \"gateway\" is not allowed"));
    let mut v = gateway_json();
    v["sidecar"] = sidecar_json()["sidecar"].clone();
    let err = parse(v).expect_err("both sections");
    assert!(
        err.contains("field \"sidecar\" is not allowed with kind mesh-gateway"),
        "{err}"
    );
}

#[test]
fn wrong_kind_names_both_kinds() {
    let gateway = parse(gateway_json()).expect("gateway");
    let err = gateway.sidecar().expect_err("not a sidecar");
    assert_eq!(
        err.to_string(),
        "snapshot 4 of proxy \"mesh-gateway\" is a mesh-gateway's, not a sidecar's"
    );
    let sidecar = parse(sidecar_json()).expect("sidecar");
    assert!(sidecar.gateway().is_err());
    assert_eq!(
        sidecar.sidecar().map(|s| s.intentions.clone()),
        Ok(Intentions {
            rules: vec![IntentionRule {
                source: "*".into(),
                allow: false
            }]
        })
    );
}

#[test]
fn a_chain_keeps_the_primary_flat_and_adds_only_what_differs() {
    let mut v = sidecar_json();
    let up = &mut v["sidecar"]["upstreams"][0];
    up["service"] = json!("counting-v2");
    up["failover"] = json!([{
        "service": "counting",
        "datacenter": "dc3",
        "sni": "counting.default.dc3.internal.a1b2c3d4.strait",
        "spiffe_id": "spiffe://a1b2c3d4.strait/ns/default/dc/dc3/svc/counting",
        "endpoints": ["10.0.0.21:8443"]
    }]);
    up["connect_timeout_ms"] = json!(1500);
    up["subset"] = json!("v2");
    up["passive_health"] = json!({"interval_ms": 10000, "max_failures": 2,
        "max_ejection_percent": 50, "base_ejection_ms": 30000});
    let snap = parse(v.clone()).expect("chain");
    let ProxyRole::Sidecar(sidecar) = &snap.role else {
        panic!("not a sidecar")
    };
    let up = &sidecar.upstreams[0];
    assert_eq!(up.destination, "counting");
    assert_eq!(
        (up.primary.service.as_str(), up.primary.datacenter.as_str()),
        ("counting-v2", "dc2"),
        "the primary's datacenter defaults to the upstream's"
    );
    assert_eq!(up.failover[0].endpoints, [addr("10.0.0.21:8443")]);
    assert_eq!(up.connect_timeout_ms, Some(1500));
    assert_eq!(up.primary.subset, "v2");
    assert_eq!(up.failover[0].subset, "", "absent: every instance");
    assert_eq!(up.passive_health.map(|p| p.max_failures), Some(2));
    assert_eq!(up.targets().count(), 2);
    assert_eq!(serde_json::to_value(&snap).expect("json"), v);
}
