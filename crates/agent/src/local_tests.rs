//! The local state: TTL statuses, checks registered on their own, proxies' admin addresses.

use super::*;
use strait_catalog::CheckStatus;

#[test]
fn ttl_status_is_set_only_on_ttl_checks() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalState::new("n1", "127.0.0.1".parse().unwrap(), dir.path());
    let web = r#"{"Name": "web", "Port": 9100, "Checks": [
        {"CheckID": "web-ttl", "TTL": "10s", "Status": "warning"},
        {"CheckID": "web-tcp", "TCP": "127.0.0.1:9100"}]}"#;
    local
        .insert(crate::decode::json(web.as_bytes()).unwrap(), Source::Api)
        .unwrap();
    let status = |id: &str| {
        let c = local
            .checks()
            .into_iter()
            .find(|c| c.check_id == id)
            .unwrap();
        (c.status, c.output)
    };
    assert_eq!(status("web-ttl").0, "warning", "the initial Status");
    let set_at = local.ttl_set_at("web-ttl").unwrap();
    local
        .set_ttl_status("web-ttl", CheckStatus::Passing, "all good")
        .unwrap();
    assert_eq!(status("web-ttl"), ("passing".into(), "all good".into()));
    assert!(
        local.ttl_set_at("web-ttl").unwrap() > set_at,
        "the TTL starts over"
    );
    let err = local
        .set_ttl_status("web-tcp", CheckStatus::Passing, "")
        .unwrap_err();
    assert!(matches!(err, TtlError::NotTtl(_)), "{err}");
    let err = local
        .set_ttl_status("nope", CheckStatus::Passing, "")
        .unwrap_err();
    assert!(matches!(err, TtlError::UnknownCheck(_)), "{err}");
    local.remove("web").unwrap();
    assert_eq!(local.ttl_set_at("web-ttl"), None);
}

#[test]
fn checks_registered_on_their_own_persist_and_go_with_their_service() {
    let dir = tempfile::tempdir().unwrap();
    let new = || LocalState::new("n1", "127.0.0.1".parse().unwrap(), dir.path());
    let local = new();
    let check = |json: &str| -> CheckDefinition { crate::decode::json(json.as_bytes()).unwrap() };
    let err = local
        .add_check(check(r#"{"name": "x", "ttl": "10s", "serviceid": "web"}"#))
        .unwrap_err();
    assert!(err.to_string().contains("ServiceID = \"web\""), "{err}");
    let web = r#"{"Name": "web", "Port": 9100, "Check": {"TTL": "10s"}}"#;
    local
        .insert(crate::decode::json(web.as_bytes()).unwrap(), Source::Api)
        .unwrap();
    let err = local
        .add_check(check(r#"{"name": "x", "id": "service:web", "ttl": "10s"}"#))
        .unwrap_err();
    assert!(
        err.to_string().contains("service \"web\"'s definition"),
        "{err}"
    );
    let err = local.add_check(check(r#"{"ttl": "10s"}"#)).unwrap_err();
    assert!(err.to_string().contains("Name is required"), "{err}");

    let id = local
        .add_check(check(
            r#"{"name": "web-extra", "ttl": "10s", "service_id": "web"}"#,
        ))
        .unwrap();
    assert_eq!(id, "web-extra", "the Name is the default CheckID");
    local
        .add_check(check(
            r#"{"Name": "disk", "TTL": "10s", "Status": "passing"}"#,
        ))
        .unwrap();
    local
        .set_ttl_status("web-extra", CheckStatus::Warning, "slow")
        .unwrap();
    assert_eq!(local.service_status("web"), CheckStatus::Critical);
    let names = |l: &LocalState| -> Vec<(String, String)> {
        let checks = l.checks().into_iter();
        checks.map(|c| (c.check_id, c.service_name)).collect()
    };
    let all = vec![
        ("service:web".to_owned(), "web".to_owned()),
        ("disk".to_owned(), String::new()),
        ("web-extra".to_owned(), "web".to_owned()),
    ];
    assert_eq!(names(&local), all);

    // A restarted agent has them again.
    let again = new();
    again.load(None).unwrap();
    assert_eq!(names(&again), all);

    // Deregistering the service takes its checks along; the node's check stays.
    assert!(again.remove("web").unwrap());
    assert_eq!(names(&again), [("disk".to_owned(), String::new())]);
    assert!(again.remove_check("disk").unwrap());
    assert!(!again.remove_check("disk").unwrap());
    let last = new();
    last.load(None).unwrap();
    assert!(last.checks().is_empty(), "{:?}", last.checks());
}

#[test]
fn admin_addresses_only_for_registered_proxies_on_loopback_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let new = || LocalState::new("n1", "127.0.0.1".parse().unwrap(), dir.path());
    let local = new();
    let web = r#"{"Name": "web", "Port": 9100, "Connect": {"SidecarService": {}}}"#;
    local
        .insert(serde_json::from_str(web).unwrap(), Source::Api)
        .unwrap();
    let admin: SocketAddr = "127.0.0.1:19001".parse().unwrap();
    let err = local.set_admin("db-sidecar-proxy", admin).unwrap_err();
    assert!(err.to_string().contains("\"db-sidecar-proxy\""), "{err}");
    let err = local
        .set_admin("web-sidecar-proxy", "10.0.0.1:19001".parse().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    assert_eq!(local.proxy_admins()[0].1, None);

    local.set_admin("web-sidecar-proxy", admin).unwrap();
    let found = local.proxy_admins();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0.proxy_id, "web-sidecar-proxy");
    assert_eq!(found[0].1, Some(admin));

    // A restarted agent still knows it (Envoy registers once, before it starts).
    let again = new();
    again.load(None).unwrap();
    assert_eq!(again.proxy_admins()[0].1, Some(admin));
}
