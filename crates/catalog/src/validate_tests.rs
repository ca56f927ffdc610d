//! `service-resolver` entries: Consul's JSON shape, what is refused and why, redirect cycles
//! across entries, and the form the snapshot builder takes.

use super::duration_ms;
use crate::{Catalog, CatalogError, ConfigEntry};
use strait_snapshot::{Resolver, TargetName};

fn parse(json: &str) -> ConfigEntry {
    serde_json::from_str(json).expect("resolver JSON")
}

fn reason(cat: &Catalog, json: &str) -> String {
    match cat.set_config_entry(parse(json)) {
        Err(CatalogError::InvalidConfigEntry { reason, .. }) => reason,
        other => panic!("expected InvalidConfigEntry for {json}, got {other:?}"),
    }
}

fn name(service: &str, dc: &str) -> TargetName {
    TargetName {
        service: service.into(),
        subset: String::new(),
        datacenter: dc.into(),
    }
}

#[test]
fn consul_shaped_resolver_is_stored_and_resolved() {
    let cat = Catalog::replicated();
    let json = r#"{"Kind":"service-resolver","Name":"counting","ConnectTimeout":"1.5s",
        "Failover":{"*":{"Datacenters":["dc3","dc4"]}}}"#;
    cat.set_config_entry(parse(json)).expect("valid");
    let stored = cat.config_entries().pop().expect("stored");
    assert_eq!(
        stored.resolver(),
        Resolver {
            connect_timeout_ms: Some(1500),
            redirect: None,
            failover: vec![name("", "dc3"), name("", "dc4")],
            ..Resolver::default()
        }
    );
    let out = serde_json::to_value(&stored).expect("json");
    assert_eq!(out["Failover"]["*"]["Datacenters"][1], "dc4");
    assert_eq!(out["ConnectTimeout"], "1.5s");
    assert!(out.get("Redirect").is_none() && out.get("Subsets").is_none());

    let targets = parse(
        r#"{"Kind":"service-resolver","Name":"api","Failover":{"*":{"Targets":[
            {"Service":"api-backup"},{"Datacenter":"dc2"},{"Service":"x","Datacenter":"dc9"}]}}}"#,
    );
    assert_eq!(
        targets.resolver().failover,
        [name("api-backup", ""), name("", "dc2"), name("x", "dc9")]
    );
    let same_dc_service =
        parse(r#"{"Kind":"service-resolver","Name":"api","Failover":{"*":{"Service":"api-v1"}}}"#);
    assert_eq!(same_dc_service.resolver().failover, [name("api-v1", "")]);
    let redirect = parse(
        r#"{"Kind":"service-resolver","Name":"old","Redirect":{"Service":"new","Datacenter":"dc2"}}"#,
    );
    assert_eq!(redirect.resolver().redirect, Some(name("new", "dc2")));
}

#[test]
fn subsets_and_passive_health_are_stored_and_converted() {
    let cat = Catalog::replicated();
    let json = r#"{"Kind":"service-resolver","Name":"counting","DefaultSubset":"blue",
        "Subsets":{"blue":{"Filter":"Service.Tags contains \"blue\""},"v2":{"Filter":"Service.Meta.version == 2","OnlyPassing":true}},
        "Failover":{"*":{"Datacenters":["dc3"]},"v2":{"Targets":[{"ServiceSubset":"blue"},{"Service":"other","ServiceSubset":"x"}]}}}"#;
    cat.set_config_entry(parse(json)).expect("valid");
    let r = cat.config_entries().pop().expect("stored").resolver();
    assert_eq!(r.default_subset, "blue");
    assert_eq!(r.subsets["v2"].filter, "Service.Meta.version == 2");
    assert!(r.subsets["v2"].only_passing && !r.subsets["blue"].only_passing);
    assert_eq!(r.failover, [name("", "dc3")]);
    let sub = |service: &str, subset: &str| TargetName {
        subset: subset.into(),
        ..name(service, "")
    };
    assert_eq!(
        r.subset_failover["v2"],
        [sub("", "blue"), sub("other", "x")]
    );

    let json = r#"{"Kind":"service-defaults","Name":"dashboard","UpstreamConfig":{
        "Defaults":{"PassiveHealthCheck":{"MaxFailures":3}},
        "Overrides":[{"Name":"counting","PassiveHealthCheck":{"Interval":"2s","MaxFailures":2,
            "EnforcingConsecutive5xx":100,"MaxEjectionPercent":50,"BaseEjectionTime":"5s"}},
            {"Name":"plain"}]}}"#;
    cat.set_config_entry(parse(json)).expect("valid");
    let entry = cat
        .config_entries()
        .into_iter()
        .find(|e| e.kind == "service-defaults")
        .expect("stored");
    let configs = entry.upstream_configs().expect("passive health set");
    let counting = strait_snapshot::PassiveHealth {
        interval_ms: 2000,
        max_failures: 2,
        max_ejection_percent: 50,
        base_ejection_ms: 5000,
        enforcing_consecutive_5xx: Some(100),
    };
    assert_eq!(configs.passive_health("counting"), Some(counting));
    let defaults = strait_snapshot::PassiveHealth {
        max_failures: 3,
        ..strait_snapshot::PassiveHealth::DEFAULT
    };
    // An override without PassiveHealthCheck takes the Defaults'.
    assert_eq!(configs.passive_health("plain"), Some(defaults));
    assert_eq!(configs.passive_health("api"), Some(defaults));
    let out = serde_json::to_value(&entry).expect("json");
    assert_eq!(
        out["UpstreamConfig"]["Overrides"][0]["PassiveHealthCheck"]["BaseEjectionTime"],
        "5s"
    );
}

#[test]
fn invalid_resolvers_are_refused_with_the_field() {
    let cat = Catalog::replicated();
    let cases = [
        (r#"{"Kind":"service-resolver","Name":"*"}"#, "Name"),
        (
            r#"{"Kind":"service-resolver","Name":"c","ConnectTimeout":"5 seconds"}"#,
            "ConnectTimeout: \"5 seconds\" is not a duration",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","ConnectTimeout":"0s"}"#,
            "ConnectTimeout must be greater than zero",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Failover":{"v1":{"Datacenters":["dc2"]}}}"#,
            "Failover[\"v1\"]: \"v1\" is neither \"*\" nor one of Subsets",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Failover":{"*":{}}}"#,
            "Failover[\"*\"] needs Datacenters, Targets, Service or ServiceSubset",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Failover":{"*":{"Datacenters":["dc2"],"Targets":[{"Datacenter":"dc3"}]}}}"#,
            "Targets cannot be combined",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Failover":{"*":{"Datacenters":["dc 2"]}}}"#,
            "Failover[\"*\"].Datacenters[0]",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Failover":{"*":{"Targets":[{}]}}}"#,
            "Failover[\"*\"].Targets[0] needs Service, ServiceSubset or Datacenter",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Redirect":{}}"#,
            "Redirect needs Service, ServiceSubset or Datacenter",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Redirect":{"Datacenter":"dc2"},"Failover":{"*":{"Datacenters":["dc3"]}}}"#,
            "Redirect and Failover cannot both be set",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Subsets":{"v1":{"Filter":"Service.Meta.version ==","OnlyPassing":true}}}"#,
            "Subsets[\"v1\"].Filter: ",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Subsets":{"v.1":{}}}"#,
            "Subsets[\"v.1\"]",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","DefaultSubset":"v1"}"#,
            "DefaultSubset \"v1\" is not one of Subsets",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Redirect":{"ServiceSubset":"v1"}}"#,
            "Redirect.ServiceSubset \"v1\" is not one of Subsets",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","Subsets":{"v1":{}},"Failover":{"*":{"Targets":[{"ServiceSubset":"v1","Datacenter":"dc2"}]}}}"#,
            "Failover[\"*\"].Targets[0].ServiceSubset: a subset in another datacenter is not supported",
        ),
        (
            r#"{"Kind":"service-defaults","Name":"c","UpstreamConfig":{"Defaults":{"PassiveHealthCheck":{"Interval":"soon"}}}}"#,
            "UpstreamConfig.Defaults.PassiveHealthCheck.Interval: \"soon\" is not a duration",
        ),
        (
            r#"{"Kind":"service-defaults","Name":"c","UpstreamConfig":{"Overrides":[{"Name":"a","PassiveHealthCheck":{"BaseEjectionTime":"0s"}}]}}"#,
            "UpstreamConfig.Overrides[0].PassiveHealthCheck.BaseEjectionTime must be greater than zero",
        ),
        (
            r#"{"Kind":"service-defaults","Name":"c","UpstreamConfig":{"Overrides":[{"Name":"a"},{"Name":"a"}]}}"#,
            "UpstreamConfig.Overrides[1].Name \"a\" appears twice",
        ),
        (
            r#"{"Kind":"service-defaults","Name":"c","UpstreamConfig":{"Overrides":[{"PassiveHealthCheck":{}}]}}"#,
            "UpstreamConfig.Overrides[0].Name",
        ),
        (
            r#"{"Kind":"service-defaults","Name":"c","UpstreamConfig":{"Defaults":{"PassiveHealthCheck":{"MaxEjectionPercent":150}}}}"#,
            "UpstreamConfig.Defaults.PassiveHealthCheck.MaxEjectionPercent is 150; expected 0 to 100",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","UpstreamConfig":{}}"#,
            "UpstreamConfig belongs to service-defaults only",
        ),
        (
            r#"{"Kind":"service-defaults","Name":"c","Failover":{"*":{"Datacenters":["dc3"]}}}"#,
            "Failover belongs to service-resolver only",
        ),
        (
            r#"{"Kind":"service-resolver","Name":"c","MeshGateway":{"Mode":"local"}}"#,
            "MeshGateway is not a field of service-resolver",
        ),
        (
            r#"{"Kind":"service-router","Name":"c"}"#,
            "Kind must be one of proxy-defaults, service-defaults, service-intentions, service-resolver",
        ),
    ];
    for (json, expected) in cases {
        let got = reason(&cat, json);
        assert!(got.contains(expected), "{json}: {got:?} lacks {expected:?}");
    }
    assert!(
        cat.config_entries().is_empty(),
        "nothing invalid was stored"
    );
    // Unknown fields are a typo, not a silent drop.
    let err = serde_json::from_str::<ConfigEntry>(
        r#"{"Kind":"service-resolver","Name":"c","Failover":{"*":{"Datacenter":["dc2"]}}}"#,
    )
    .expect_err("typo");
    assert!(err.to_string().contains("Datacenter"), "{err}");
}

#[test]
fn redirect_cycles_across_entries_are_refused_and_unknown_dcs_allowed() {
    let cat = Catalog::replicated();
    cat.set_config_entry(parse(
        r#"{"Kind":"service-resolver","Name":"a","Redirect":{"Service":"b","Datacenter":"dc-not-yet"}}"#,
    ))
    .expect("a -> b is fine, whatever the DC");
    let got = reason(
        &cat,
        r#"{"Kind":"service-resolver","Name":"b","Redirect":{"Service":"a"}}"#,
    );
    assert_eq!(
        got,
        "redirects form a cycle: a@dc-not-yet -> b@dc-not-yet -> a@dc-not-yet"
    );
    let got = reason(
        &cat,
        r#"{"Kind":"service-resolver","Name":"self","Redirect":{"Service":"self"}}"#,
    );
    assert_eq!(got, "Redirect points at \"self\" itself");
    cat.set_config_entry(parse(
        r#"{"Kind":"service-resolver","Name":"b","Redirect":{"Datacenter":"dc2"}}"#,
    ))
    .expect("b moves to dc2: a fixed point");
    assert_eq!(cat.config_entries().len(), 2);
}

#[test]
fn durations_in_go_syntax() {
    assert_eq!(duration_ms(""), Ok(None));
    assert_eq!(duration_ms("5s"), Ok(Some(5000)));
    assert_eq!(duration_ms("500ms"), Ok(Some(500)));
    assert_eq!(duration_ms("1m30s"), Ok(Some(90_000)));
    assert_eq!(duration_ms("1.5h"), Ok(Some(5_400_000)));
    for bad in ["5", "s", "5x", "-1s", "1s5", "five"] {
        assert!(duration_ms(bad).is_err(), "{bad}");
    }
}
