use super::*;

/// The answer of Consul's `PUT /v1/acl/token` as its API docs show it.
const CONSUL_TOKEN: &str = r#"{
  "AccessorID": "6a1253d2-1785-24fd-91c2-f8e78c745511",
  "SecretID": "45a3bd52-07c7-47a4-52fd-0745e0cfe967",
  "Description": "Agent token for 'node1'",
  "Policies": [
    {"ID": "165d4317-e379-f732-ce70-86278c4558f7", "Name": "node1-write"},
    {"ID": "e359bd81-baca-903e-7e64-1ccd9fdc78f5", "Name": "node-read"}
  ],
  "Roles": [{"Name": "ops"}],
  "ServiceIdentities": [{"ServiceName": "web", "Datacenters": ["dc1"]}],
  "NodeIdentities": [{"NodeName": "node-1", "Datacenter": "dc2"}],
  "Local": false,
  "ExpirationTime": "2030-01-02T03:04:05Z",
  "CreateTime": "2018-10-24T12:25:06.921933-04:00",
  "Hash": "UuiRkOQPRCvoRZHRtUxxbrmwZ5crYrOdZ0Z1FTFbTbA=",
  "CreateIndex": 59,
  "ModifyIndex": 59
}"#;

fn t(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

#[test]
fn decodes_consuls_token_shape() {
    let tok: Token = serde_json::from_str(CONSUL_TOKEN).unwrap();
    assert_eq!(tok.accessor_id, "6a1253d2-1785-24fd-91c2-f8e78c745511");
    assert_eq!(
        tok.secret_id.as_ref().unwrap().expose(),
        "45a3bd52-07c7-47a4-52fd-0745e0cfe967"
    );
    assert_eq!(tok.grants.policies[1].name, "node-read");
    assert_eq!(tok.roles[0].id, "");
    assert_eq!(tok.grants.service_identities[0].datacenters, ["dc1"]);
    assert_eq!(tok.grants.node_identities[0].datacenter, "dc2");
    assert_eq!(tok.expiration_time, Some(t("2030-01-02T03:04:05Z")));
    assert_eq!(tok.revision.create_index, 59);
    tok.validate().unwrap();
    // Round trip: the same keys come back.
    let back = serde_json::to_value(&tok).unwrap();
    let orig: serde_json::Value = serde_json::from_str(CONSUL_TOKEN).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&back), keys(&orig));
    assert_eq!(back["Roles"], serde_json::json!([{"Name": "ops"}]));
}

#[test]
fn a_token_never_prints_its_secret() {
    let tok: Token = serde_json::from_str(CONSUL_TOKEN).unwrap();
    let secret = "45a3bd52-07c7-47a4-52fd-0745e0cfe967";
    assert!(!format!("{tok:?}").contains(secret));
    assert!(!format!("{tok:#?}").contains(secret));
    let (stored, returned) = StoredToken::create(tok, t("2026-01-01T00:00:00Z"));
    assert_eq!(returned.expose(), secret);
    assert!(stored.secret_hash.matches(secret));
    let json = serde_json::to_string(&stored).unwrap();
    assert!(!json.contains(secret), "{json}");
    assert!(!json.contains("SecretID"), "{json}");
    assert!(!format!("{stored:?}").contains(secret));
    let back: StoredToken = serde_json::from_str(&json).unwrap();
    assert_eq!(back, stored);
}

#[test]
fn create_fills_what_is_missing() {
    let now = t("2026-01-01T00:00:00Z");
    let (stored, secret) = StoredToken::create(Token::default(), now);
    assert!(is_uuid(&stored.token.accessor_id));
    assert!(is_uuid(secret.expose()));
    assert!(stored.secret_hash.matches(secret.expose()));
    assert_eq!(stored.token.secret_id, None);
    assert_eq!(stored.token.create_time, Some(now));
    assert_eq!(stored.token.revision.hash, Token::default().content_hash());
    let (other, _) = StoredToken::create(Token::default(), now);
    assert_ne!(other.token.accessor_id, stored.token.accessor_id);
    assert_ne!(other.secret_hash, stored.secret_hash);
}

#[test]
fn content_hash_follows_what_the_token_grants() {
    let mut a = Token::default();
    let h0 = a.content_hash();
    a.revision.modify_index = 7;
    assert_eq!(a.content_hash(), h0, "indexes are not content");
    a.grants.policies.push(Link {
        id: String::new(),
        name: "p".into(),
    });
    assert_ne!(a.content_hash(), h0);
    assert_eq!(h0.len(), 44, "base64 of 32 bytes: {h0}");
}

#[test]
fn expiry() {
    let mut tok = Token::default();
    assert!(!tok.is_expired(t("2100-01-01T00:00:00Z")));
    tok.expiration_time = Some(t("2030-01-01T00:00:00Z"));
    assert!(!tok.is_expired(t("2029-12-31T23:59:59Z")));
    assert!(tok.is_expired(t("2030-01-01T00:00:00Z")));
    let err = serde_json::from_str::<Token>(r#"{"ExpirationTime": "tomorrow"}"#).unwrap_err();
    assert!(
        err.to_string()
            .contains("\"tomorrow\" is not an RFC 3339 time"),
        "{err}"
    );
}

#[test]
fn validation_names_the_field() {
    let bad = |json: &str| {
        serde_json::from_str::<Token>(json)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string()
    };
    assert_eq!(bad(r#"{"AccessorID": "x"}"#), "AccessorID: must be a UUID");
    assert_eq!(bad(r#"{"SecretID": "short"}"#), "SecretID: must be a UUID");
    let empty: Token = serde_json::from_str(r#"{"SecretID": "", "AccessorID": ""}"#).unwrap();
    assert_eq!(empty.secret_id, None, "empty means: generate one");
    empty.validate().unwrap();
    assert_eq!(
        bad(r#"{"Policies": [{"Name": "a"}, {}]}"#),
        "Policies[1]: needs an ID or a Name"
    );
    let e = bad(r#"{"ServiceIdentities": [{"ServiceName": "Web!"}]}"#);
    assert!(
        e.starts_with("ServiceIdentities[0].ServiceName: \"Web!\" is not"),
        "{e}"
    );
    let e = bad(r#"{"NodeIdentities": [{"NodeName": "n1", "Datacenter": ""}]}"#);
    assert_eq!(e, "NodeIdentities[0].Datacenter: is required");
    assert!(serde_json::from_str::<Token>(r#"{"NodeIdentities": [{"NodeName": "n1"}]}"#).is_err());
    assert!(
        valid_identity_name("web-1_a")
            && !valid_identity_name("-web")
            && !valid_identity_name("web-")
    );
}

#[test]
fn policies_and_roles() {
    let p: Policy = serde_json::from_str(
        r#"{"ID": "e359bd81-baca-903e-7e64-1ccd9fdc78f5", "Name": "node-read",
            "Description": "Grants read access to all node information",
            "Rules": "node_prefix \"\" {\n  policy = \"read\"\n}\n",
            "Datacenters": ["dc1"], "Hash": "OtZUUKhInTLEqTPfNSSOYbRiSBKm3c4vI2p6MxZnGWc=",
            "CreateIndex": 14, "ModifyIndex": 14}"#,
    )
    .unwrap();
    let rules = p.validate().unwrap();
    assert!(rules.node.prefix.contains_key(""));
    assert!(p.applies_in("dc1") && !p.applies_in("dc2"));
    let mut broken = p.clone();
    broken.rules = "node_prefix \"\" {\n  policy = \"rw\"\n}\n".into();
    let e = broken.validate().unwrap_err().to_string();
    assert!(
        e.starts_with("policy \"node-read\": invalid Rules: line 2: "),
        "{e}"
    );
    assert_eq!(
        Policy::default().validate().unwrap_err().to_string(),
        "Name: is required"
    );

    let r: Role = serde_json::from_str(
        r#"{"Name": "ops", "Policies": [{"ID": "e359bd81-baca-903e-7e64-1ccd9fdc78f5"}],
            "ServiceIdentities": [{"ServiceName": "web"}]}"#,
    )
    .unwrap();
    r.validate().unwrap();
    let mut bad = r.clone();
    bad.grants.policies.push(Link::default());
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "Policies[1]: needs an ID or a Name"
    );
    assert_ne!(r.content_hash(), bad.content_hash());
}

#[test]
fn global_management_is_consuls() {
    let p = Policy::global_management();
    assert_eq!(p.id, GLOBAL_MANAGEMENT_POLICY_ID);
    assert_eq!(p.name, "global-management");
    let rules = p.validate().unwrap();
    assert_eq!(rules.acl, Some(crate::Access::Write));
    assert_eq!(rules.service.prefix[""].intentions(), crate::Access::Write);
}
